#!/bin/bash
# Entrypoint of the Orthanc stand-in (for orthancteam/orthanc): as the real image's, it makes
# /etc/hostid if missing (unless GENERATE_HOST_ID_IF_MISSING=false), writes the configuration
# (/tmp/orthanc.json) and copies the enabled plugins (orthanc-configure), then becomes Orthanc.
# VERBOSE_ENABLED=true and TRACE_ENABLED=true add --verbose and --trace, as in the real image.
set -euo pipefail

say() { printf 'docker-entrypoint: %s\n' "$*"; }

# glibc's gethostid() reads /etc/hostid as 4 raw bytes (host order, little-endian here), so that
# `hostid` prints the first 8 hex digits of a fresh UUID. Once written, it never changes.
write_hostid() {
  local uuid
  uuid=$(</proc/sys/kernel/random/uuid) && [[ $uuid =~ ^[0-9a-f]{8} ]] || return 1
  printf '%b' "\\x${uuid:6:2}\\x${uuid:4:2}\\x${uuid:2:2}\\x${uuid:0:2}" >/etc/hostid
}

generate=${GENERATE_HOST_ID_IF_MISSING:-true}
if [[ ${generate,,} != false && ! -e /etc/hostid ]]; then
  if write_hostid 2>/dev/null; then
    say "wrote /etc/hostid"
  else
    say "could not write /etc/hostid (ignored)"
  fi
fi

/usr/local/bin/orthanc-configure

options=()
[[ ${VERBOSE_ENABLED:-false} == true ]] && options+=(--verbose)
[[ ${TRACE_ENABLED:-false} == true ]] && options+=(--trace)
say "starting Orthanc${options[*]:+ ${options[*]}}"
exec /usr/sbin/Orthanc "${options[@]}" /tmp/orthanc.json "$@"
