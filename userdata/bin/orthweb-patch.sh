#!/bin/bash
# In the patch window (orthweb-patch.timer, setting patch_schedule): applies Amazon Linux's
# security updates in place, then restarts only what needs it. AL2023 locks its repositories to
# the release the AMI came with, so a plain `dnf upgrade` finds nothing; --releasever reads the
# repositories of the release patch_release names (latest, or one the operator has tested, as AWS
# advises), and --security keeps to the security advisories there (Amazon Linux 2023 User Guide,
# "Deterministic upgrades through versioned repositories").
# The container images do not change here: they are pinned by the settings.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

# `orthweb-patch RELEASE` patches to another release once (to try one on a staging host).
release=${1:-${ORTHWEB_PATCH_RELEASE:-latest}}
[[ $release =~ ^(latest|2023\.[0-9]+\.[0-9]{8})$ ]] ||
  die "not an Amazon Linux 2023 release: $release (use latest or a release such as 2023.9.20251117)"

# Informational: a newer release exists (this lists it); the upgrade below takes the security fixes of $release.
dnf check-release-update 2>&1 | sed 's/^/orthweb: /' >&2 || true
retry "dnf upgrade --security --releasever=$release" dnf upgrade -y --security --releasever="$release"

# Services running code that was just replaced (dnf needs-restarting, from dnf-plugins-core).
# systemd, D-Bus and login sessions are not restarted in place: when they changed, needs-restarting
# asks for a reboot (below). Docker is restarted with the project down, then the project comes up.
docker_too=""
for unit in $(dnf needs-restarting --services 2>/dev/null || true); do
  case "$unit" in
  systemd-*.service | dbus*.service | user@*.service | getty@*.service | serial-getty@*.service) ;;
  docker.service | containerd.service) docker_too=yes ;;
  orthweb*.service) ;;
  *)
    log "restarting $unit (its files were updated)"
    systemctl try-restart "$unit"
    ;;
  esac
done
if [ -n "$docker_too" ]; then
  log "Docker was updated: restarting it with the project stopped"
  systemctl stop orthweb.service
  systemctl restart containerd.service docker.service
  systemctl start orthweb.service
fi

if dnf needs-restarting --reboothint >/dev/null 2>&1; then
  log "security updates applied; no reboot needed"
elif [ "${ORTHWEB_PATCH_REBOOT:-true}" = true ]; then
  log "the kernel or core libraries were updated: rebooting now (patch_reboot is true)"
  systemctl reboot
else
  log "the kernel or core libraries were updated: reboot needed (patch_reboot is false, so it is left to you)"
  install -d -m 0755 "$ORTHWEB_STATE_DIR"
  touch "$ORTHWEB_STATE_DIR/reboot-required"
fi
