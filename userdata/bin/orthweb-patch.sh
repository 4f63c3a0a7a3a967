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

# With several hosts (behind the load balancer, in an Auto Scaling group that replaces a host whose
# health checks fail), nothing is restarted under the project and no host reboots in place: the
# hosts patch in the same window, and a Docker restart or a reboot fails the health checks, so the
# group would replace hosts together. Such updates wait for a rolling instance refresh, one host at
# a time, from the newest AMI (docs/operations.md, Patching; docs/scaling.md).
several_hosts=${ORTHWEB_MULTI_HOST:-false}
roll_group="roll the group to take it (an instance refresh replaces one host at a time from the newest AMI: docs/operations.md, Patching)"
# What waits for a reboot or a replacement, written to $ORTHWEB_STATE_DIR/reboot-required at the
# end (one reason a line); each run rewrites it, so it disappears once nothing waits any more.
pending=""
reboot_required() { pending+="$1"$'\n'; }

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
docker_failed=""
if [ -n "$docker_too" ] && [ "$several_hosts" = true ]; then
  log "Docker was updated: not restarted in place with several hosts (the load balancer would count the host down and the group replace it); $roll_group"
  reboot_required "Docker was updated"
elif [ -n "$docker_too" ]; then
  log "Docker was updated: restarting it with the project stopped"
  systemctl stop orthweb.service
  # A clean stop is no failure, so systemd would never start the project again by itself: it is
  # started whatever the restart did, and the patch step fails afterwards so the unit shows it.
  if ! systemctl restart containerd.service docker.service; then
    docker_failed=yes
    log "error: restarting Docker failed; starting the project again anyway"
  fi
  systemctl start orthweb.service
fi

if dnf needs-restarting --reboothint >/dev/null 2>&1; then
  log "security updates applied; no reboot needed"
elif [ "$several_hosts" = true ]; then
  log "the kernel or core libraries were updated: not rebooting in place with several hosts (patch_reboot concerns a single host); $roll_group"
  reboot_required "the kernel or core libraries were updated"
elif [ "${ORTHWEB_PATCH_REBOOT:-true}" = true ]; then
  log "the kernel or core libraries were updated: rebooting now (patch_reboot is true)"
  systemctl reboot
else
  log "the kernel or core libraries were updated: reboot needed (patch_reboot is false, so it is left to you)"
  reboot_required "the kernel or core libraries were updated"
fi
if [ -n "$pending" ]; then
  install -d -m 0755 "$ORTHWEB_STATE_DIR"
  printf '%s' "$pending" >"$ORTHWEB_STATE_DIR/reboot-required"
else
  rm -f "$ORTHWEB_STATE_DIR/reboot-required"
fi
[ -z "$docker_failed" ] || die "Docker did not restart after its update (the project was started again): see journalctl -u docker"
