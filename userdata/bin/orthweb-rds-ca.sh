#!/bin/bash
# Downloads the RDS CA bundle for the region, against which Orthanc verifies the database's
# certificate (sslmode=verify-full). With no bundle yet (first boot) the download is retried with
# back-off; once there is one, a failed download keeps it. Prints "rds-ca.pem" when it changed.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

url=${ORTHWEB_RDS_CA_URL:-https://truststore.pki.rds.amazonaws.com/$ORTHWEB_REGION/$ORTHWEB_REGION-bundle.pem}
dest=$ORTHWEB_TLS_DIR/rds-ca.pem
install -d -m 0755 "$ORTHWEB_TLS_DIR"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# download: the bundle into $tmp, and it must hold certificates.
download() {
  curl -fsSL --proto '=https' --max-time 60 -o "$tmp" "$url" &&
    grep -q "BEGIN CERTIFICATE" "$tmp" && openssl x509 -in "$tmp" -noout 2>/dev/null
}

if [ -s "$dest" ]; then
  if ! download; then
    log "warning: cannot refresh the RDS CA bundle from $url; keeping the present one"
    exit 0
  fi
else
  retry "download the RDS CA bundle from $url" download
fi
if replace_file "$dest" 0444 <"$tmp"; then echo rds-ca.pem; fi
