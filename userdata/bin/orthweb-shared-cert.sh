#!/bin/bash
# One TLS certificate for every host behind the load balancer (hosts >= 2), so DICOM peers and
# browsers pin one certificate, whichever host answers. It lives with its key in a Secrets Manager
# secret (JSON {certificate, key}), encrypted with the deployment key, readable only by the host
# role. A host installs it into /etc/orthweb/tls (where orthweb-cert then finds it valid and keeps
# it). When the secret is empty, or its certificate expires within 45 days (orthweb-cert's own
# 30 leave room), every host that notices makes a candidate and offers it with a client request
# token derived from the certificate it replaces. Secrets Manager keeps the first value offered
# under a token and refuses any other value under the same token, so one candidate wins however
# many hosts renew at once; each host then reads the secret back and installs the winner.
# Same profile as orthweb-cert: RSA 3072, SHA-256, serverAuth, 825 days; named for the site (the
# domain name, site name or the load balancer's DNS name) and the load balancer.
# Prints "server.crt" when it installed a different certificate.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"
umask 077

RENEW_DAYS=45
site=${ORTHWEB_SITE_NAME:-$ORTHWEB_BALANCER_DNS}
[ -n "$site" ] || die "no site name: the load balancer's DNS name is missing from orthweb.env"
install -d -m 0755 "$ORTHWEB_TLS_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shared: the secret's JSON, or nothing when it has no value yet (other failures are retried).
read_shared() {
  if aws secretsmanager get-secret-value --secret-id "$ORTHWEB_TLS_SECRET_ARN" \
    --query SecretString --output text 2>"$work/err"; then
    return 0
  fi
  grep -q "ResourceNotFoundException" "$work/err" && grep -q "AWSCURRENT" "$work/err" && return 0
  cat "$work/err" >&2
  return 1
}
shared() {
  retry "read the shared certificate secret" read_shared ||
    die "cannot read the shared certificate secret $ORTHWEB_TLS_SECRET_ARN"
}

# usable JSON: the certificate in JSON names the site and is valid for RENEW_DAYS more.
usable() {
  local crt
  crt=$(printf '%s' "$1" | jq -r '.certificate // empty' 2>/dev/null) || return 1
  [ -n "$crt" ] || return 1
  printf '%s\n' "$crt" | openssl x509 -noout -checkend $((RENEW_DAYS * 86400)) >/dev/null 2>&1 &&
    printf '%s\n' "$crt" | openssl x509 -noout -checkhost "$site" 2>/dev/null | grep -q "does match"
}

current=$(shared)
if ! usable "$current"; then
  # The race's name: the first certificate, or the one being replaced (its serial).
  generation=first
  if [ -n "$current" ]; then
    generation=$(printf '%s' "$current" | jq -r '.certificate // empty' |
      openssl x509 -noout -serial 2>/dev/null || echo unreadable)
  fi
  token=$(printf '%s|%s' "$ORTHWEB_TLS_SECRET_ARN" "$generation" | sha256sum | cut -c1-32)

  sans="DNS:$site"
  for name in ${ORTHWEB_BALANCER_DNS:-}; do
    [ "$name" = "$site" ] || sans="$sans,DNS:$name"
  done
  cn=$site
  [ ${#cn} -le 64 ] || cn=orthweb # X.509 caps the CN at 64 characters
  self_signed "$cn" "$sans" "$work/key.pem" "$work/crt.pem"
  jq -n --rawfile certificate "$work/crt.pem" --rawfile key "$work/key.pem" \
    '{certificate: $certificate, key: $key}' >"$work/candidate.json"
  # The same token with the same value succeeds again, so a retry after a lost answer is safe.
  offer() {
    if aws secretsmanager put-secret-value --secret-id "$ORTHWEB_TLS_SECRET_ARN" \
      --client-request-token "$token" --secret-string "file://$work/candidate.json" >/dev/null 2>"$work/err"; then
      log "offered a new shared certificate for $site ($generation)"
    elif grep -q "ResourceExistsException" "$work/err"; then
      log "another host renewed the shared certificate first ($generation): adopting it"
    else
      cat "$work/err" >&2
      return 1
    fi
  }
  retry "store the shared certificate" offer || die "cannot store the shared certificate in $ORTHWEB_TLS_SECRET_ARN"
  current=$(shared)
  usable "$current" || die "the shared certificate secret holds no usable certificate for $site"
fi

printf '%s' "$current" | jq -j '.certificate' >"$work/server.crt"
printf '%s' "$current" | jq -j '.key' >"$work/server.key"
[ "$(openssl x509 -in "$work/server.crt" -noout -pubkey | sha256sum)" = \
  "$(openssl pkey -in "$work/server.key" -pubout | sha256sum)" ] ||
  die "the shared certificate and key in $ORTHWEB_TLS_SECRET_ARN do not match"
if cmp -s "$work/server.crt" "$ORTHWEB_TLS_DIR/server.crt" && cmp -s "$work/server.key" "$ORTHWEB_TLS_DIR/server.key"; then
  exit 0
fi
# Key first, then certificate, each an atomic rename: nginx never reads a certificate whose key
# is not in place yet (orthweb-refresh reloads it only after both are in place).
replace_file "$ORTHWEB_TLS_DIR/server.key" 0400 <"$work/server.key" || true
replace_file "$ORTHWEB_TLS_DIR/server.crt" 0444 <"$work/server.crt" || true
log "installed the shared certificate for $site"
echo server.crt
