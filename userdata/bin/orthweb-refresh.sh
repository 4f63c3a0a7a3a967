#!/bin/bash
# Brings the host's secrets, certificate and CA bundle up to date and applies what changed:
# Orthanc is recreated when its database URI, logins, CA bundle or host settings differ from
# what it was started with; nginx reloads (SIGHUP, no interruption) when the certificate or the
# login map differ from what it last loaded. With --up (orthweb.service at every boot) it also starts the project. The
# orthweb-refresh timer runs it without --up to follow RDS password rotation, and to rejoin Orthanc
# to nginx's network namespace if nginx was restarted under it. What each container runs on is
# recorded (a fingerprint of its files) only after the start, re-create or reload succeeded, so
# one that failed is tried again at the next run.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

sbin=${ORTHWEB_SBIN:-/usr/local/sbin}
changed=""
failed=()
absent=()
# step NAME FILE...: run the step NAME; what it prints (the files it changed) joins $changed. A step
# that fails stops nothing else: each keeps something different up to date (the database login, the
# image store's session, the certificate), so a Secrets Manager hiccup must not leave the image
# store's session to expire. The failed steps are named at the end and the run fails, so the unit
# and the timer show it. FILE... are what the step keeps up to date: with --up, the project starts
# from them as the last run left them when refreshing them failed (they are all there).
step() {
  local name=$1 out rc=0 file
  shift
  out=$("$sbin/$name") || rc=$?
  changed+=$'\n'$out
  if [ "$rc" -ne 0 ]; then
    failed+=("$name")
    log "error: $name failed (exit status $rc); going on with the other steps"
    for file in "$@"; do [ -e "$file" ] || absent+=("$file"); done
  fi
}
# finish: exit, failing when a step failed (what the other steps did is applied).
finish() {
  [ "${#failed[@]}" -eq 0 ] || die "failed: ${failed[*]} (the other steps were applied; the next run tries again)"
  exit 0
}
step orthweb-secrets "$ORTHWEB_SECRETS_DIR/ORTHANC__POSTGRESQL__CONNECTION_URI" \
  "$ORTHWEB_SECRETS_DIR/ORTHANC__REGISTERED_USERS" "$ORTHWEB_NGINX_AUTH_DIR/logins.map"
# login = cognito: Orthanc's logins are the role identities nginx logs in as (orthweb-oidc).
# {{ include refresh/oidc.sh if login_cognito }}
step orthweb-rds-ca "$ORTHWEB_TLS_DIR/rds-ca.pem"
# After both: it logs in with the URI the first wrote, verifying the database against the second's CA.
step orthweb-db-role "$ORTHWEB_STATE_DIR/db-role"
# {{ include refresh/host-config.sh if host_config }}
# {{ include refresh/images.sh if images_in_bucket }}
# {{ include refresh/shared-cert.sh if multi_host }}
step orthweb-cert "$ORTHWEB_TLS_DIR/server.crt" "$ORTHWEB_TLS_DIR/server.key"
changed=$(grep -v '^$' <<<"$changed" || true)
[ -z "$changed" ] || log "updated: $(tr '\n' ' ' <<<"$changed")"
compose() { "$ORTHWEB_DOCKER" compose --project-name orthweb --file "$ORTHWEB_ETC/docker-compose.yml" "$@"; }

# The files each container reads; a change means Orthanc must be re-created, nginx reloaded.
declare -A inputs=(
  [orthanc]="$ORTHWEB_SECRETS_DIR/ORTHANC__POSTGRESQL__CONNECTION_URI $ORTHWEB_SECRETS_DIR/ORTHANC__REGISTERED_USERS $ORTHWEB_TLS_DIR/rds-ca.pem $ORTHWEB_ETC/orthanc-host.json"
  [nginx]="$ORTHWEB_TLS_DIR/server.crt $ORTHWEB_TLS_DIR/server.key $ORTHWEB_NGINX_AUTH_DIR/logins.map $ORTHWEB_SECRETS_DIR/nginx/roles.map"
)
install -d -m 0700 "$ORTHWEB_STATE_DIR"
fingerprint() {
  local file
  # shellcheck disable=SC2086 # the list is space-separated paths without spaces
  for file in ${inputs[$1]}; do
    if [ -e "$file" ]; then
      printf '%s %s\n' "$file" "$(sha256sum <"$file" | cut -d' ' -f1)"
    else
      printf '%s missing\n' "$file"
    fi
  done | sha256sum | cut -d' ' -f1
}
record() { fingerprint "$1" >"$ORTHWEB_STATE_DIR/$1.started-with"; }
current() { [ "$(fingerprint "$1")" = "$(cat "$ORTHWEB_STATE_DIR/$1.started-with" 2>/dev/null)" ]; }

# netns SERVICE: the network namespace of the service's running container, or nothing.
netns() {
  local id pid
  id=$(compose ps --quiet "$1" 2>/dev/null) || return 0
  [ -n "$id" ] || return 0
  pid=$("$ORTHWEB_DOCKER" inspect --format '{{.State.Pid}}' "$id" 2>/dev/null) || return 0
  [ -n "$pid" ] && [ "$pid" != 0 ] || return 0
  readlink "/proc/$pid/ns/net" 2>/dev/null || true
}

if [ "${1:-}" = "--up" ]; then
  if [ "${#absent[@]}" -gt 0 ]; then
    # A first boot: nothing to start from. orthweb.service tries again (Restart=on-failure).
    die "not starting: ${failed[*]} failed and ${absent[*]} are not there yet"
  fi
  [ "${#failed[@]}" -eq 0 ] || log "starting from the files of the last run: ${failed[*]} could not bring them up to date"
  running=$(compose ps --quiet 2>/dev/null || true)
  # The archive volume where Orthanc builds archives, mounted before Orthanc may use it.
  mounted=$("$sbin/orthweb-archives" ${running:+--in-use}) || die "not starting: the archive volume is not mounted"
  # Pulls the pinned images if they are missing, then starts what is not running.
  retry "docker compose up" compose up --detach --pull missing --remove-orphans
  if [ -n "$running" ] && [ -n "$mounted" ]; then
    # Docker restarted Orthanc at boot (an unclean shutdown) on the bare directory under the mount.
    log "Orthanc started before the archive volume was mounted: recreating it on the volume"
    retry "recreate Orthanc" compose up --detach --no-deps --force-recreate orthanc
    record orthanc
  fi
  if [ -z "$running" ]; then
    # Containers made just now read the files as they are; ones left running (a crash) did not.
    record orthanc
    record nginx
    finish
  fi
fi
# Orthanc lives in nginx's network namespace. If Docker restarted nginx (a crash), nginx has a
# new namespace and Orthanc is left in the old one, unreachable: recreate it to join the new one.
orthanc_ns=$(netns orthanc)
nginx_ns=$(netns nginx)
stale=""
if [ -n "$orthanc_ns" ] && [ -n "$nginx_ns" ] && [ "$orthanc_ns" != "$nginx_ns" ]; then
  stale=yes
fi
if [ -n "$stale" ] || ! current orthanc; then
  log "Orthanc's database URI, logins, CA bundle or host settings differ from what it started with, or nginx's namespace changed: recreating Orthanc"
  retry "recreate Orthanc" compose up --detach --no-deps --force-recreate orthanc
  record orthanc
fi
if ! current nginx; then
  log "the certificate or a login map differ from what nginx loaded: reloading nginx"
  retry "reload nginx" compose kill --signal HUP nginx
  record nginx
fi
finish
