#!/bin/bash
# Reads Orthanc's secrets from Secrets Manager into root-only files (dir 0700, files 0400) that
# compose hands to the Orthanc container as /run/secrets/<name>; never into any environment.
# On first use it generates the admin password and stores it in the (empty) admin secret.
# Prints the name of each secret file whose content changed, one a line.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"
umask 077

DB_URI=ORTHANC__POSTGRESQL__CONNECTION_URI
USERS=ORTHANC__REGISTERED_USERS
# Path of the RDS CA bundle inside the Orthanc container (see docker-compose.yml).
RDS_CA=/etc/orthweb/rds-ca.pem

install -d -m 0700 "$ORTHWEB_SECRETS_DIR"
err=$(mktemp "$ORTHWEB_SECRETS_DIR/.err.XXXXXX")
trap 'rm -f "$err"' EXIT

# secret_value ARN: the current SecretString, or nothing when the secret has no value yet.
secret_value() {
  if aws secretsmanager get-secret-value --secret-id "$1" --query SecretString --output text 2>"$err"; then
    return 0
  fi
  grep -q "ResourceNotFoundException" "$err" && grep -q "AWSCURRENT" "$err" && return 0
  cat "$err" >&2
  die "cannot read secret $1"
}

# Database: the RDS-managed master login becomes a verify-full connection URI.
db_json=$(secret_value "$ORTHWEB_DB_SECRET_ARN")
[ -n "$db_json" ] || die "the database secret has no value"
printf '%s' "$db_json" | jq -e '(.username|type)=="string" and (.password|type)=="string"' >/dev/null ||
  die "the database secret is not JSON with username and password"
if printf '%s' "$db_json" | jq -j --arg host "$ORTHWEB_DB_ADDRESS" --arg port "$ORTHWEB_DB_PORT" \
  --arg db "$ORTHWEB_DB_NAME" --arg ca "$RDS_CA" \
  '"postgresql://\(.username|@uri):\(.password|@uri)@\($host):\($port)/\($db|@uri)?sslmode=verify-full&sslrootcert=\($ca)"' |
  replace_file "$ORTHWEB_SECRETS_DIR/$DB_URI" 0400; then
  echo "$DB_URI"
fi

# Admin login: generated here once, so it never passes through Terraform, and read back by any
# replacement host. After writing, read again: if two hosts raced, both use the value that won.
admin_json=$(secret_value "$ORTHWEB_ADMIN_SECRET_ARN")
if [ -z "$admin_json" ]; then
  log "admin secret is empty: generating the Orthanc admin password"
  new=$(mktemp "$ORTHWEB_SECRETS_DIR/.admin.XXXXXX")
  openssl rand -base64 36 | tr '+/' '-_' | tr -d '\n' |
    jq -R '{username: "admin", password: .}' >"$new"
  aws secretsmanager put-secret-value --secret-id "$ORTHWEB_ADMIN_SECRET_ARN" \
    --secret-string "file://$new" >/dev/null
  rm -f "$new"
  admin_json=$(secret_value "$ORTHWEB_ADMIN_SECRET_ARN")
fi
if printf '%s' "$admin_json" | jq -ce '{(.username): .password}' | replace_file "$ORTHWEB_SECRETS_DIR/$USERS" 0400; then
  echo "$USERS"
fi
