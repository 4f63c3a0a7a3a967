#!/bin/bash
# Downloads the RDS CA bundle for the region, against which Orthanc verifies the database's
# certificate (sslmode=verify-full). Keeps the present bundle if the download fails.
# Prints "rds-ca.pem" when the bundle changed.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

url=${ORTHWEB_RDS_CA_URL:-https://truststore.pki.rds.amazonaws.com/$ORTHWEB_REGION/$ORTHWEB_REGION-bundle.pem}
dest=$ORTHWEB_TLS_DIR/rds-ca.pem
install -d -m 0755 "$ORTHWEB_TLS_DIR"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

if ! curl -fsSL --proto '=https' --retry 5 --max-time 60 -o "$tmp" "$url" ||
  ! grep -q "BEGIN CERTIFICATE" "$tmp" || ! openssl x509 -in "$tmp" -noout 2>/dev/null; then
  [ -s "$dest" ] || die "cannot download the RDS CA bundle from $url"
  log "warning: cannot refresh the RDS CA bundle; keeping the present one"
  exit 0
fi
if replace_file "$dest" 0444 <"$tmp"; then echo rds-ca.pem; fi
