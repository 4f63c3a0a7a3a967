# shellcheck shell=bash
# Shared by the Orthweb host scripts: paths, deployment facts, logging, IMDS and file helpers.
# Every path and host lookup can be overridden from the environment, so tests run the scripts
# on any machine, against a local AWS emulator, without IMDS or systemd.

ORTHWEB_ENV_FILE=${ORTHWEB_ENV_FILE:-/etc/orthweb/orthweb.env}
# shellcheck source=../orthweb.env
[ -r "$ORTHWEB_ENV_FILE" ] && . "$ORTHWEB_ENV_FILE"
: "${ORTHWEB_ETC:=/etc/orthweb}"
: "${ORTHWEB_SECRETS_DIR:=$ORTHWEB_ETC/secrets}"
: "${ORTHWEB_TLS_DIR:=$ORTHWEB_ETC/tls}"
: "${ORTHWEB_NGINX_AUTH_DIR:=$ORTHWEB_ETC/nginx-auth}"
: "${ORTHWEB_IMDS_URL:=http://169.254.169.254}"
: "${ORTHWEB_DOCKER:=docker}"
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-$ORTHWEB_REGION}

log() { echo "orthweb: $*" >&2; }
die() { log "error: $*"; exit 1; }

# imds PATH: an instance metadata value through IMDSv2, or nothing if the instance has none.
_imds_token=""
imds() {
  if [ -z "$_imds_token" ]; then
    _imds_token=$(curl -fsS --max-time 5 --retry 3 -X PUT \
      -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$ORTHWEB_IMDS_URL/latest/api/token")
  fi
  curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $_imds_token" \
    "$ORTHWEB_IMDS_URL/latest/meta-data/$1" || true
}

# host_fact VAR PATH: $VAR when set (tests), else the instance metadata at PATH.
host_fact() {
  if [ -n "${!1:-}" ]; then printf '%s\n' "${!1}"; else imds "$2"; fi
}

# replace_file DEST MODE < content: atomic replace; returns 1 (and leaves DEST alone) when unchanged.
replace_file() {
  local dest=$1 mode=$2 tmp
  tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
    return 1
  fi
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dest"
}
