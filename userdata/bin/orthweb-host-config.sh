#!/bin/bash
# Writes the Orthanc settings that belong to this host or arrive with the deployment, into
# /etc/orthweb/orthanc-host.json, which Orthanc reads as /etc/orthanc/host.json beside orthweb.json
# (the orthancteam image merges every /etc/orthanc/*.json, section by section):
# - DatabaseServerIdentifier: this instance's id. Hosts that share the PostgreSQL index each need
#   their own (Orthanc keeps per-server properties under it); user data is the same on every host
#   of a group, so it is read here, at boot, from the instance metadata.
# - AwsS3Storage.BucketName and Region (storage = "s3"): the bucket is named by AWS at apply time.
# Runs before Orthanc starts; its content cannot change on a running host. Prints
# "orthanc-host.json" when it wrote the file.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

instance_id=$(host_fact ORTHWEB_INSTANCE_ID instance-id)
[ -n "$instance_id" ] || die "cannot read this instance's id from the instance metadata"
install -d -m 0755 "$ORTHWEB_ETC"
if jq -n --arg id "$instance_id" --arg bucket "${ORTHWEB_IMAGES_BUCKET:-}" --arg region "$ORTHWEB_REGION" \
  '{DatabaseServerIdentifier: $id}
   + if $bucket == "" then {} else {AwsS3Storage: {BucketName: $bucket, Region: $region}} end' |
  replace_file "$ORTHWEB_ETC/orthanc-host.json" 0444; then
  echo orthanc-host.json
fi
