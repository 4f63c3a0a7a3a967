#!/bin/bash
# login = "cognito": turns the deployment's facts (orthweb.env) into what nginx's verifier reads
# and the role identities nginx logs in to Orthanc with (docs/host.md, "Cognito login: what nginx
# verifies"). Writes, each only when its content changes, and prints the name of each one changed:
#   nginx-oidc/oidc.json    (0644) the ALB's ARN, the pool's issuer and client, the key endpoints
#                           and the sign-out URLs; orthweb-oidc.js reads it as /etc/nginx/oidc/oidc.json
#   secrets/orthweb-roles.json, ORTHANC__REGISTERED_USERS  (0400) the three role identities'
#                           passwords, made here once, and Orthanc's logins made of them and of
#                           the monitoring identity's (common.sh), first
#   secrets/nginx/roles.map (0400) role -> the Basic header of its identity, for nginx's map (a
#                           login, so on the secrets' tmpfs like the others); "monitor" -> the
#                           monitoring identity's, for nginx's health port alone (the verifier
#                           never gives a person that role)
# Does nothing unless ORTHWEB_LOGIN is cognito.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"
umask 077

[ "${ORTHWEB_LOGIN:-basic}" = cognito ] || exit 0

USERS=ORTHANC__REGISTERED_USERS
ROLES_FILE=orthweb-roles.json
ROLES=(admin uploader viewer)

# need VAR PATTERN WHAT: $VAR, which must match the extended regular expression PATTERN.
need() {
  local value=${!1:-}
  [ -n "$value" ] || die "$1 is not set in $ORTHWEB_ENV_FILE ($3)"
  [[ $value =~ $2 ]] || die "$1 is not $3: '$value'"
}
need ORTHWEB_REGION '^[a-z]{2}(-[a-z]+)+-[0-9]+$' "an AWS region"
region=$ORTHWEB_REGION
need ORTHWEB_ALB_ARN "^arn:aws[a-z-]*:elasticloadbalancing:$region:[0-9]{12}:loadbalancer/app/[A-Za-z0-9-]+/[0-9a-f]+\$" \
  "the load balancer's ARN in $region"
need ORTHWEB_USER_POOL_ID "^${region}_[0-9A-Za-z]+\$" "a user pool id in $region"
need ORTHWEB_USER_POOL_CLIENT_ID '^[0-9a-z]{1,128}$' "a user pool app client id"
need ORTHWEB_COGNITO_DOMAIN '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$' "the user pool's domain name"
# Where Cognito sends the browser after signing out: the site (the app client lists it).
: "${ORTHWEB_LOGOUT_URI:=${ORTHWEB_SITE_URL:-}/}"
need ORTHWEB_LOGOUT_URI '^https://[A-Za-z0-9.-]+(:[0-9]+)?/[^[:space:]"]*$' "an https sign-out URL (ORTHWEB_SITE_URL is the site)"
# The key endpoints AWS documents (docs/host.md); tests point them at loopback.
issuer="https://cognito-idp.$region.amazonaws.com/$ORTHWEB_USER_POOL_ID"
: "${ORTHWEB_ALB_KEYS_URL:=https://public-keys.auth.elb.$region.amazonaws.com}"
: "${ORTHWEB_JWKS_URL:=$issuer/.well-known/jwks.json}"
key_url='^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$'
need ORTHWEB_ALB_KEYS_URL "$key_url" "a key endpoint URL"
need ORTHWEB_JWKS_URL "$key_url" "a key endpoint URL"

install -d -m 0755 "$ORTHWEB_OIDC_DIR"
if jq -n --arg alb_arn "$ORTHWEB_ALB_ARN" --arg issuer "$issuer" --arg client_id "$ORTHWEB_USER_POOL_CLIENT_ID" \
  --arg alb_keys_url "$ORTHWEB_ALB_KEYS_URL" --arg jwks_url "$ORTHWEB_JWKS_URL" \
  --arg logout_url "https://$ORTHWEB_COGNITO_DOMAIN/logout" --arg logout_uri "$ORTHWEB_LOGOUT_URI" \
  --arg session_cookie "${ORTHWEB_SESSION_COOKIE:-AWSELBAuthSessionCookie}" \
  '$ARGS.named' | replace_file "$ORTHWEB_OIDC_DIR/oidc.json" 0644; then
  echo oidc.json
fi

# The role identities: made once (kept while the file is), so a refresh changes nothing. No
# password goes into a command line (/proc/PID/cmdline): jq reads them from the environment.
install -d -m 0700 "$ORTHWEB_SECRETS_DIR" "$ORTHWEB_NGINX_AUTH_DIR"
passwords=$(cat "$ORTHWEB_SECRETS_DIR/$ROLES_FILE" 2>/dev/null || echo '{}')
jq -e 'type == "object"' >/dev/null <<<"$passwords" || die "$ORTHWEB_SECRETS_DIR/$ROLES_FILE is not a JSON object"
for role in "${ROLES[@]}"; do
  if ! jq -e --arg role "$role" '.[$role] | type == "string" and length >= 32' >/dev/null <<<"$passwords"; then
    log "generating the password of role identity orthweb-role-$role"
    new_password=$(openssl rand -base64 36 | tr '+/' '-_' | tr -d '\n')
    passwords=$(NEW_PASSWORD=$new_password jq -c --arg role "$role" '. + {($role): $ENV.NEW_PASSWORD}' <<<"$passwords")
  fi
done
if replace_file "$ORTHWEB_SECRETS_DIR/$ROLES_FILE" 0400 <<<"$passwords"; then
  echo "$ROLES_FILE"
fi
if jq -c '{"orthweb-role-admin": .admin, "orthweb-role-uploader": .uploader, "orthweb-role-viewer": .viewer}' \
  <<<"$passwords" | monitor_first | replace_file "$ORTHWEB_SECRETS_DIR/$USERS" 0400; then
  echo "$USERS"
fi

map=""
for role in "${ROLES[@]}"; do
  password=$(jq -r --arg role "$role" '.[$role]' <<<"$passwords")
  map+="$role \"Basic $(printf 'orthweb-role-%s:%s' "$role" "$password" | base64 -w0)\";"$'\n'
done
map+="monitor \"Basic $(printf '%s:%s' "$ORTHWEB_MONITOR_USER" "$(monitor_password)" | base64 -w0)\";"$'\n'
install -d -m 0700 "$ORTHWEB_SECRETS_DIR/nginx"
if printf '%s' "$map" | replace_file "$ORTHWEB_SECRETS_DIR/nginx/roles.map" 0400; then
  echo roles.map
fi
