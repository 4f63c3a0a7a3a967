#!/bin/bash
# Brings the host's secrets, certificate and CA bundle up to date and applies what changed:
# Orthanc is recreated only when its database URI, logins or CA bundle changed; nginx reloads
# (SIGHUP, no interruption) when the certificate or the login map did. With --up
# (orthweb.service at every boot) it also starts the project. The orthweb-refresh timer runs it
# without --up to follow RDS password rotation, and to rejoin Orthanc to nginx's network
# namespace if nginx was restarted under it.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

sbin=${ORTHWEB_SBIN:-/usr/local/sbin}
changed=$("$sbin/orthweb-secrets")
changed+=$'\n'$("$sbin/orthweb-rds-ca")
# {{ include refresh/host-config.sh if host_config }}
# {{ include refresh/images.sh if images_in_bucket }}
# {{ include refresh/shared-cert.sh if multi_host }}
changed+=$'\n'$("$sbin/orthweb-cert")
compose() { "$ORTHWEB_DOCKER" compose --project-name orthweb --file "$ORTHWEB_ETC/docker-compose.yml" "$@"; }

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
  running=$(compose ps --quiet 2>/dev/null || true)
  compose up --detach --remove-orphans
  # Containers made just now already read the new files; ones left running (a crash) did not.
  [ -n "$running" ] || exit 0
fi
# Orthanc lives in nginx's network namespace. If Docker restarted nginx (a crash), nginx has a
# new namespace and Orthanc is left in the old one, unreachable: recreate it to join the new one.
orthanc_ns=$(netns orthanc)
nginx_ns=$(netns nginx)
stale=""
if [ -n "$orthanc_ns" ] && [ -n "$nginx_ns" ] && [ "$orthanc_ns" != "$nginx_ns" ]; then
  stale=yes
fi
if [ -n "$stale" ] || grep -qE '^(ORTHANC__|rds-ca)' <<<"$changed"; then
  log "database secret, logins, CA bundle or nginx's namespace changed: recreating Orthanc"
  compose up --detach --no-deps --force-recreate orthanc
fi
if grep -qxE 'server.crt|logins.map' <<<"$changed"; then
  log "certificate or login map changed: reloading nginx"
  compose kill --signal HUP nginx
fi
