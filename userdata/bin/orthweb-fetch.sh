#!/bin/bash
# First boot, before the bootstrap (orthweb-bootstrap.service's ExecStartPre): fetches the host's
# files, one tar archive, from the deployment's host-files bucket through the VPC's S3 gateway
# endpoint, at exactly the version this host's user data names, and unpacks it only when its
# SHA-256 is the one the user data carries. Anything else (a tampered or stale object, a cut
# download) is refused before a single file is unpacked: the unit fails, says why in its journal,
# and systemd starts it again (RestartSec), never giving up. The AWS CLI retries each call itself,
# with back-off (standard retry mode). This file and orthweb.env are the only ones the user data
# writes; everything it unpacks (docs/host.md, "Host files") is rendered from the settings.
set -euo pipefail
ORTHWEB_ENV_FILE=${ORTHWEB_ENV_FILE:-/etc/orthweb/orthweb.env}
# shellcheck source=../orthweb.env
. "$ORTHWEB_ENV_FILE"
# Where the files go (/ on the host; a directory in the tests) and where the download waits.
root=${ORTHWEB_ROOT:-/}
state=${ORTHWEB_STATE_DIR:-/var/lib/orthweb}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-$ORTHWEB_REGION}
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard} AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-8}

log() { echo "orthweb-fetch: $*" >&2; }
bundle="s3://$ORTHWEB_BUNDLE_BUCKET/$ORTHWEB_BUNDLE_KEY version $ORTHWEB_BUNDLE_VERSION"
if [ -z "$ORTHWEB_BUNDLE_VERSION" ] || [ -z "$ORTHWEB_BUNDLE_SHA256" ]; then
  log "error: $ORTHWEB_ENV_FILE names no bundle version or SHA-256; refusing to fetch an unpinned bundle"
  exit 1
fi

install -d -m 0755 "$state"
archive=$(mktemp "$state/bundle.XXXXXX")
trap 'rm -f "$archive"' EXIT
# Short timeouts: a stalled connection is retried (by the CLI, then by systemd), not waited out.
if ! aws s3api get-object --cli-connect-timeout 10 --cli-read-timeout 60 --bucket "$ORTHWEB_BUNDLE_BUCKET" \
  --key "$ORTHWEB_BUNDLE_KEY" --version-id "$ORTHWEB_BUNDLE_VERSION" "$archive" >/dev/null; then
  log "error: could not fetch $bundle; systemd tries again"
  exit 1
fi
actual=$(sha256sum "$archive" | cut -d ' ' -f 1)
if [ "$actual" != "$ORTHWEB_BUNDLE_SHA256" ]; then
  log "error: refusing $bundle: its SHA-256 is $actual, this host's user data expects $ORTHWEB_BUNDLE_SHA256; nothing was unpacked"
  exit 1
fi
# Root owns every file, with the archive's modes; the archive has no directory entries, so the
# directories already there keep theirs, and missing ones are made 0755 (the unit's UMask).
tar -x -f "$archive" -C "$root" --no-same-owner --same-permissions --touch
log "unpacked $bundle (SHA-256 $actual): $(tar -t -f "$archive" | wc -l) files"
