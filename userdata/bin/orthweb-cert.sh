#!/bin/bash
# Makes the host's TLS certificate (HTTPS and DICOM TLS) unless a valid one is present: missing,
# expiring within 30 days, or no longer naming the site means a new one. RSA 3072 (the key type
# every DICOM TLS peer supports), SHA-256, serverAuth, 825 days (Apple's limit), SANs with the
# site name, the public and private DNS names and IPs. Prints "server.crt" when it made one.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"
umask 077

crt=$ORTHWEB_TLS_DIR/server.crt
key=$ORTHWEB_TLS_DIR/server.key
install -d -m 0755 "$ORTHWEB_TLS_DIR"

public_dns=$(host_fact ORTHWEB_PUBLIC_HOSTNAME public-hostname)
private_dns=$(host_fact ORTHWEB_LOCAL_HOSTNAME local-hostname)
public_ip=$(host_fact ORTHWEB_PUBLIC_IPV4 public-ipv4)
private_ip=$(host_fact ORTHWEB_LOCAL_IPV4 local-ipv4)
site=${ORTHWEB_SITE_NAME:-${public_dns:-$private_dns}}
[ -n "$site" ] || die "no site name: set site_name or give the host a DNS name"

if [ -s "$crt" ] && [ -s "$key" ] && openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null &&
  openssl x509 -in "$crt" -noout -checkhost "$site" | grep -q "does match"; then
  log "certificate for $site is valid for 30 days or more: kept"
  exit 0
fi

sans=""
for name in "$site" "$public_dns" "$private_dns"; do
  if [ -z "$name" ]; then continue; fi
  case "$sans," in *",DNS:$name,"*) ;; *) sans="$sans,DNS:$name" ;; esac
done
for ip in "$public_ip" "$private_ip"; do
  if [ -n "$ip" ]; then sans="$sans,IP:$ip"; fi
done
cn=$site
[ ${#cn} -le 64 ] || cn=${public_dns:-orthweb} # X.509 caps the CN at 64 characters

new_key=$(mktemp "$ORTHWEB_TLS_DIR/.key.XXXXXX")
new_crt=$(mktemp "$ORTHWEB_TLS_DIR/.crt.XXXXXX")
trap 'rm -f "$new_key" "$new_crt"' EXIT
self_signed "$cn" "${sans#,}" "$new_key" "$new_crt"
chmod 0400 "$new_key"
chmod 0444 "$new_crt"
mv -f "$new_key" "$key"
mv -f "$new_crt" "$crt"
log "made a certificate for $site (${sans#,})"
echo server.crt
