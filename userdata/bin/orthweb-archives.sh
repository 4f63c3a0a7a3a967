#!/bin/bash
# Mounts the archive volume (the host's second EBS volume, `archive_volume_gb`) on
# /etc/orthweb/archives, which the compose file gives Orthanc as its TemporaryDirectory: ZIP
# archives and DICOMDIR media are built there, so one larger than the volume fails with a write
# error and never fills the root volume. Formats the volume (ext4) the first time. Run by
# `orthweb-refresh --up` before the project starts; prints "archives" when it mounted the volume
# now (a container that Docker restarted at boot before that holds the bare directory and must be
# re-created). It empties what it mounts, and the mounted volume too unless called with --in-use
# (containers run): what a stopped Orthanc left there is never used again (jobs are not saved).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

# The block device mapping's name, which Amazon Linux's udev rules link to the NVMe device.
: "${ORTHWEB_ARCHIVE_DEVICE:=/dev/sdf}"
: "${ORTHWEB_ARCHIVE_WAIT:=60}"
device=$ORTHWEB_ARCHIVE_DEVICE
dir=$ORTHWEB_ETC/archives

# udev makes the link a moment after boot.
for _ in $(seq "$ORTHWEB_ARCHIVE_WAIT"); do
  [ -b "$device" ] && break
  sleep 1
done
# Never a directory of the root volume instead: no archive is built until the volume is there.
[ -b "$device" ] || die "the archive volume $device is not attached: replace the host (terraform apply) to get one"
empty() { find "$dir" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf -- {} +; }
install -d -m 0700 "$dir"
if ! mountpoint -q "$dir"; then
  empty # what an Orthanc started before the mount wrote on the root volume
  if [ -z "$(blkid -o value -s TYPE "$device" || true)" ]; then
    log "formatting the archive volume $device"
    # No blocks reserved for root: Orthanc writes as root, so a reserve would protect nothing.
    mkfs.ext4 -q -F -m 0 -L orthweb-archive "$device" >&2
  fi
  mount -o nodev,nosuid,noexec "$device" "$dir"
  chmod 0700 "$dir"
  empty
  echo archives
elif [ "${1:-}" != "--in-use" ]; then
  empty
fi
