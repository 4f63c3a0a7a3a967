#!/bin/bash
# Brings the host's secrets, certificate and CA bundle up to date and applies what changed:
# Orthanc is recreated only when its database URI, admin login or CA bundle changed, nginx only
# when the certificate did. With --up (orthweb.service at every boot) it also starts the project.
# The orthweb-refresh timer runs it without --up to follow RDS password rotation.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

sbin=${ORTHWEB_SBIN:-/usr/local/sbin}
changed=$("$sbin/orthweb-secrets")
changed+=$'\n'$("$sbin/orthweb-rds-ca")
changed+=$'\n'$("$sbin/orthweb-cert")
compose() { "$ORTHWEB_DOCKER" compose --project-name orthweb --file "$ORTHWEB_ETC/docker-compose.yml" "$@"; }

if [ "${1:-}" = "--up" ]; then
  running=$(compose ps --quiet 2>/dev/null || true)
  compose up --detach --remove-orphans
  # Containers made just now already read the new files; ones left running (a crash) did not.
  [ -n "$running" ] || exit 0
fi
if grep -qE '^(ORTHANC__|rds-ca)' <<<"$changed"; then
  log "database or admin secret changed: recreating Orthanc"
  compose up --detach --no-deps --force-recreate orthanc
fi
if grep -qx 'server.crt' <<<"$changed"; then
  log "certificate changed: recreating nginx"
  compose up --detach --no-deps --force-recreate nginx
fi
