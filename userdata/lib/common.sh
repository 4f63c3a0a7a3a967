# shellcheck shell=bash
# Shared by the Orthweb host scripts: paths, deployment facts, logging, retries, IMDS and file helpers.
# Every path and host lookup can be overridden from the environment, so tests run the scripts
# on any machine, against a local AWS emulator, without IMDS or systemd.

ORTHWEB_ENV_FILE=${ORTHWEB_ENV_FILE:-/etc/orthweb/orthweb.env}
# shellcheck source=../orthweb.env
[ -r "$ORTHWEB_ENV_FILE" ] && . "$ORTHWEB_ENV_FILE"
: "${ORTHWEB_ETC:=/etc/orthweb}"
: "${ORTHWEB_SECRETS_DIR:=$ORTHWEB_ETC/secrets}"
: "${ORTHWEB_TLS_DIR:=$ORTHWEB_ETC/tls}"
: "${ORTHWEB_NGINX_AUTH_DIR:=$ORTHWEB_ETC/nginx-auth}"
: "${ORTHWEB_OIDC_DIR:=$ORTHWEB_ETC/nginx-oidc}"
# login = cognito: nginx's health port on the host's loopback (nginx-cognito-probe.conf).
: "${ORTHWEB_COGNITO_PROBE_PORT:=8081}"
: "${ORTHWEB_STATE_DIR:=/var/lib/orthweb}"
# The monitoring identity: every health check's Orthanc login (the balancer's, the alarm probe's, nginx's
# Cognito health port, the Orthanc container's healthcheck), allowed GET /changes alone
# (orthanc-roles.lua). The same name as orthweb.settings.MONITOR_IDENTITY, which no web user may take.
: "${ORTHWEB_MONITOR_USER:=orthweb-monitor}"
: "${ORTHWEB_IMDS_URL:=http://169.254.169.254}"
: "${ORTHWEB_DOCKER:=docker}"
# Back-off of retry(): attempts, first delay and longest delay (seconds). A network step gives up
# after about 3 minutes; orthweb.service then starts again by itself (Restart=on-failure).
: "${ORTHWEB_RETRY_ATTEMPTS:=8}"
: "${ORTHWEB_RETRY_DELAY:=2}"
: "${ORTHWEB_RETRY_MAX_DELAY:=60}"
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-$ORTHWEB_REGION}

log() { echo "orthweb: $*" >&2; }
die() { log "error: $*"; exit 1; }

# An unhandled failure stops the script (set -e); this names the script, line and command first,
# as amazon-eks-ami's bootstrap.sh does with its ERR trap. errtrace makes it fire inside functions
# too; inside a subshell ($(...), a pipeline) it stays quiet, and the statement that used the
# subshell is named instead, once.
set -o errtrace
_orthweb_err() { [ "$BASH_SUBSHELL" -gt 0 ] || log "error: ${1##*/} line $2: '$3' exited with $4"; }
trap '_orthweb_err "$0" "$LINENO" "$BASH_COMMAND" "$?"' ERR

# retry WHAT COMMAND...: run COMMAND until it succeeds. Between attempts it waits
# ORTHWEB_RETRY_DELAY seconds, doubling each time up to ORTHWEB_RETRY_MAX_DELAY, plus up to half
# as much again at random (so hosts that failed together do not retry together). After
# ORTHWEB_RETRY_ATTEMPTS failures it says so and returns COMMAND's last exit status. COMMAND runs
# as an if condition, so a shell function given here must check its own steps (set -e is off).
retry() {
  local what=$1 attempt=1 delay=$ORTHWEB_RETRY_DELAY rc
  shift
  while true; do
    if "$@"; then
      [ "$attempt" -eq 1 ] || log "$what: succeeded at attempt $attempt"
      return 0
    else
      rc=$?
    fi
    if [ "$attempt" -ge "$ORTHWEB_RETRY_ATTEMPTS" ]; then
      log "error: $what: failed $attempt times (last exit status $rc); giving up"
      return "$rc"
    fi
    local wait=$((delay + RANDOM % (delay / 2 + 1)))
    log "$what: failed (attempt $attempt of $ORTHWEB_RETRY_ATTEMPTS, exit status $rc); retrying in ${wait}s"
    sleep "$wait"
    attempt=$((attempt + 1))
    delay=$((delay * 2 > ORTHWEB_RETRY_MAX_DELAY ? ORTHWEB_RETRY_MAX_DELAY : delay * 2))
  done
}

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

# site_name: the name the certificate is made for and clients use: the site_name setting, else the
# public DNS name, else the private one.
site_name() {
  local name=${ORTHWEB_SITE_NAME:-}
  [ -n "$name" ] || name=$(host_fact ORTHWEB_PUBLIC_HOSTNAME public-hostname)
  [ -n "$name" ] || name=$(host_fact ORTHWEB_LOCAL_HOSTNAME local-hostname)
  printf '%s\n' "$name"
}

# self_signed CN SANS KEY CRT: a self-signed TLS server certificate for CN with subjectAltName
# SANS ("DNS:a,IP:b"): RSA 3072 (every DICOM TLS peer speaks RSA), SHA-256, 825 days (Apple's
# limit for server certificates), serverAuth only; its key is written to KEY.
self_signed() {
  local cn=$1 sans=$2 key=$3 crt=$4 conf rc=0
  conf=$(mktemp)
  cat >"$conf" <<CONF
[req]
prompt = no
distinguished_name = dn
x509_extensions = ext
[dn]
CN = $cn
[ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $sans
subjectKeyIdentifier = hash
CONF
  openssl req -x509 -config "$conf" -newkey rsa:3072 -sha256 -days 825 -nodes \
    -keyout "$key" -out "$crt" 2>/dev/null || rc=$?
  rm -f "$conf"
  return "$rc"
}

# db_app_password < the master password: Orthanc's database password, derived from the RDS master
# password: base64url HMAC-SHA256 of a fixed label keyed with it (docs/host.md, "Orthanc's database role").
db_app_password() {
  python3 -c 'import base64, hashlib, hmac, sys
mac = hmac.new(sys.stdin.buffer.read(), b"orthweb: the Orthanc database login", hashlib.sha256)
print(base64.urlsafe_b64encode(mac.digest()).decode().rstrip("="))'
}

# monitor_password: the monitoring identity's password, made once (random, 48 characters) in the
# secrets directory, the tmpfs that orthweb-secrets and orthweb-oidc write to: each host makes its
# own at boot and it never leaves the host (not in the admin secret, user data or any environment).
monitor_password() {
  local file=$ORTHWEB_SECRETS_DIR/orthweb-monitor
  if [ ! -s "$file" ]; then
    log "generating the password of the monitoring identity $ORTHWEB_MONITOR_USER"
    openssl rand -base64 36 | tr '+/' '-_' | tr -d '\n' | replace_file "$file" 0400 || true
  fi
  cat "$file"
}

# monitor_first < LOGINS: Orthanc's logins (a JSON object of name to password) with the monitoring
# identity's first: a healthcheck that takes the first registered user takes it, never an admin.
monitor_first() {
  MONITOR_PASSWORD=$(monitor_password) jq -c --arg user "$ORTHWEB_MONITOR_USER" \
    '{($user): $ENV.MONITOR_PASSWORD} + del(.[$user])'
}

# monitor_login: the monitoring identity's login from Orthanc's users file, as a curl config line
# (curl -K -: the password never reaches a command line). @json quotes it as curl's config reads
# it, so a quote or a backslash stays part of the value. Fails when the file has no such login.
monitor_login() {
  jq -e -r --arg user "$ORTHWEB_MONITOR_USER" '.[$user] | strings | "user = \("\($user):\(.)" | @json)"' \
    "$ORTHWEB_SECRETS_DIR/ORTHANC__REGISTERED_USERS"
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

# verified_key FILE FINGERPRINT OUT: writes to OUT (armored) only the primary key FILE holds with
# FINGERPRINT, with its own subkeys and signatures; any other key in FILE is left out. Fails, writing
# nothing, when FILE has no such key. What rpm then imports is exactly the key that was checked.
verified_key() {
  local file=$1 fpr=$2 out=$3 home exported primaries
  home=$(mktemp -d)
  exported=$(mktemp)
  GNUPGHOME=$home gpg --batch --quiet --import "$file" 2>/dev/null || true
  GNUPGHOME=$home gpg --batch --quiet --armor --export "$fpr" >"$exported" 2>/dev/null || true
  rm -rf "$home"
  primaries=$(gpg --batch --show-keys --with-colons "$exported" 2>/dev/null |
    awk -F: '$1 == "pub" { primary = 1; next } primary && $1 == "fpr" { print $10; primary = 0 }')
  if [ "$primaries" != "$fpr" ]; then
    rm -f "$exported"
    log "no key with fingerprint $fpr (alone) in $file: found '${primaries//$'\n'/ }'"
    return 1
  fi
  install -m 0644 "$exported" "$out"
  rm -f "$exported"
}
