#!/bin/bash
# Reads Orthanc's secrets from Secrets Manager into root-only files (dir 0700, files 0400) that
# compose hands to the Orthanc container as /run/secrets/<name>; never into any environment.
# It generates each web user's password once and keeps it in the admin secret, and writes nginx's
# login map (hashes only). Prints the name of each file whose content changed, one a line.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"
umask 077

DB_URI=ORTHANC__POSTGRESQL__CONNECTION_URI
USERS=ORTHANC__REGISTERED_USERS
# Path of the RDS CA bundle inside the Orthanc container (see docker-compose.yml).
RDS_CA=/etc/orthweb/rds-ca.pem

# No password ever goes into a command line: every user of the host can read those
# (/proc/PID/cmdline). jq and the AWS CLI read them from stdin, from a 0600 file in this 0700
# directory, or from the environment (which only root reads); printf is a shell builtin.
install -d -m 0700 "$ORTHWEB_SECRETS_DIR"
err=$(mktemp "$ORTHWEB_SECRETS_DIR/.err.XXXXXX")
new=""
# The temporary files go on every exit, an error included (one holds every web user's password).
trap 'rm -f "$err" ${new:+"$new"}' EXIT

# secret_value ARN: the current SecretString, or nothing when the secret has no value yet.
# Retried with back-off: at boot, Secrets Manager or its endpoint may not answer yet.
secret_value() { retry "read secret $1" _secret_value "$1"; }
_secret_value() {
  local value
  if value=$(aws secretsmanager get-secret-value --secret-id "$1" --query SecretString --output text 2>"$err"); then
    printf '%s\n' "$value"
    return 0
  fi
  if grep -q "ResourceNotFoundException" "$err" && grep -q "AWSCURRENT" "$err"; then return 0; fi
  cat "$err" >&2
  return 1
}

# Database: Orthanc logs in as its own role (ORTHWEB_DB_ROLE, which orthweb-db-role keeps owning the
# Orthanc database and nothing more), never as the RDS master user. Its password is derived from the
# RDS-managed master password (HMAC-SHA256, base64url): every host derives the same one without
# storing it anywhere, it follows the master password's rotation, and it does not reveal the master
# password. The URI verifies the database's certificate (verify-full).
[ -n "${ORTHWEB_DB_ROLE:-}" ] || die "ORTHWEB_DB_ROLE is not set in $ORTHWEB_ENV_FILE"
db_json=$(secret_value "$ORTHWEB_DB_SECRET_ARN")
[ -n "$db_json" ] || die "the database secret has no value"
printf '%s' "$db_json" | jq -e '(.username|type)=="string" and (.password|type)=="string"' >/dev/null ||
  die "the database secret is not JSON with username and password"
app_password=$(jq -j .password <<<"$db_json" | db_app_password)
if APP_PASSWORD=$app_password jq -nj --arg user "$ORTHWEB_DB_ROLE" --arg host "$ORTHWEB_DB_ADDRESS" \
  --arg port "$ORTHWEB_DB_PORT" --arg db "$ORTHWEB_DB_NAME" --arg ca "$RDS_CA" \
  '"postgresql://\($user|@uri):\($ENV.APP_PASSWORD|@uri)@\($host):\($port)/\($db|@uri)?sslmode=verify-full&sslrootcert=\($ca)"' |
  replace_file "$ORTHWEB_SECRETS_DIR/$DB_URI" 0400; then
  echo "$DB_URI"
fi

# login = cognito: the people sign in at Cognito, and Orthanc's logins are the role identities
# nginx logs in as (orthweb-oidc writes them); no web user gets a password here.
[ "${ORTHWEB_LOGIN:-basic}" != cognito ] || exit 0

# Web users: each configured user (ORTHWEB_WEB_USERS, from the web_users setting) gets a password
# generated here, so none ever passes through Terraform. The admin secret keeps them all as
# {"users": {"NAME": "PASSWORD"}}; only missing ones are generated, so adding a user and running
# orthweb-refresh leaves the others' passwords alone, and a replacement host reads them back.
# After writing, read again: if two hosts raced, both use the value that won.
read -r -a web_users <<<"${ORTHWEB_WEB_USERS:-admin}"
names=$(printf '%s\n' "${web_users[@]}" | jq -R . | jq -sc .)
stored=$(secret_value "$ORTHWEB_ADMIN_SECRET_ARN")
# The shape before named users (one username and its password) becomes one user.
users=$(printf '%s' "${stored:-"{}"}" | jq -ce '
  if (.users | type) == "object" then .users
  elif (.username | type) == "string" and (.password | type) == "string" then {(.username): .password}
  else {} end') || die "the admin secret is not JSON"
missing=$(jq -r --argjson names "$names" '. as $users | $names[] | select($users[.] == null)' <<<"$users")
if [ -n "$missing" ] || ! printf '%s' "$stored" | jq -e '(.users | type) == "object"' >/dev/null 2>&1; then
  for name in $missing; do
    log "generating the password of web user $name"
    new_password=$(openssl rand -base64 36 | tr '+/' '-_' | tr -d '\n')
    users=$(NEW_PASSWORD=$new_password jq -c --arg name "$name" '. + {($name): $ENV.NEW_PASSWORD}' <<<"$users")
  done
  new=$(mktemp "$ORTHWEB_SECRETS_DIR/.users.XXXXXX")
  jq -c '{users: .}' <<<"$users" >"$new"
  # --secret-string file://PATH: the CLI reads the value from the file, never from its arguments.
  retry "store the web users' passwords in $ORTHWEB_ADMIN_SECRET_ARN" aws secretsmanager put-secret-value \
    --secret-id "$ORTHWEB_ADMIN_SECRET_ARN" --secret-string "file://$new" --output text --query VersionId >/dev/null
  rm -f "$new"
  new=""
  users=$(secret_value "$ORTHWEB_ADMIN_SECRET_ARN" | jq -ce '.users | objects') ||
    die "the admin secret does not hold the users just written"
fi

# Orthanc's logins: the monitoring identity first (the health checks' login, made on this host and
# never stored in the secret: common.sh), then the configured users only (a user removed from
# web_users keeps its password in the secret, in case it comes back, but can no longer log in).
configured=$(jq -c --argjson names "$names" '. as $all | reduce $names[] as $n ({}; . + {($n): $all[$n]})' <<<"$users" |
  monitor_first)
if replace_file "$ORTHWEB_SECRETS_DIR/$USERS" 0400 <<<"$configured"; then
  echo "$USERS"
fi

# nginx's login map: for each login (the monitoring identity's too, so the health checks are never
# counted as guesses) the base64url MD5 of the exact header a browser sends,
# "Basic base64(NAME:PASSWORD)". nginx's secure_link compares it with the request's header, so
# requests with the right login are never throttled (nginx.conf). nginx never holds a password.
install -d -m 0700 "$ORTHWEB_NGINX_AUTH_DIR"
map=""
while IFS=$'\t' read -r name password; do
  header="Basic $(printf '%s:%s' "$name" "$password" | base64 -w0)"
  md5=$(printf '%s' "$header" | openssl md5 -binary | base64 | tr '+/' '-_' | tr -d '=')
  map+="\"$name\" \"$md5\";"$'\n'
done < <(jq -r 'to_entries[] | [.key, .value] | @tsv' <<<"$configured")
if printf "%s" "$map" | replace_file "$ORTHWEB_NGINX_AUTH_DIR/logins.map" 0400; then
  echo logins.map
fi
