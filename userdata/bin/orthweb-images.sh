#!/bin/bash
# Gives Orthanc, and only Orthanc, short-lived credentials for the image bucket (storage = "s3").
# The host assumes the image-store role, which may only read, write and delete objects in that
# bucket through the VPC's S3 endpoint, and writes the session into a root-only credentials file
# (dir 0700, file 0400) that compose mounts read-only into the Orthanc container alone; the S3
# plugin's AWS SDK finds it through AWS_SHARED_CREDENTIALS_FILE and re-reads it every 5 minutes.
# No container ever reaches the instance role. Sessions last an hour; the file is renewed when
# less than 40 minutes remain, so the timer (every 10 minutes) renews it well before it expires,
# even if one or two of its runs fail. Prints "aws-credentials" when it wrote a new session.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"
umask 077

SESSION_SECONDS=3600
RENEW_BELOW_SECONDS=${ORTHWEB_IMAGES_RENEW_BELOW:-2400}
dir=$ORTHWEB_ETC/aws
creds=$dir/credentials
expires=$dir/expiration
install -d -m 0700 "$dir"

if [ -s "$creds" ] && [ -s "$expires" ]; then
  left=$(($(date -d "$(cat "$expires")" +%s) - $(date +%s)))
  if [ "$left" -ge "$RENEW_BELOW_SECONDS" ]; then
    exit 0
  fi
fi

instance_id=$(host_fact ORTHWEB_INSTANCE_ID instance-id)
session=$(mktemp "$dir/.session.XXXXXX")
new=$(mktemp "$dir/.credentials.XXXXXX")
trap 'rm -f "$session" "$new"' EXIT
assume() {
  aws sts assume-role --role-arn "$ORTHWEB_IMAGES_ROLE_ARN" --role-session-name "orthanc-${instance_id:-host}" \
    --duration-seconds "$SESSION_SECONDS" --output json >"$session"
}
retry "assume the image-store role" assume || die "cannot assume the image-store role $ORTHWEB_IMAGES_ROLE_ARN"
jq -r '.Credentials | "[default]",
  "aws_access_key_id = \(.AccessKeyId)",
  "aws_secret_access_key = \(.SecretAccessKey)",
  "aws_session_token = \(.SessionToken)"' "$session" >"$new"
chmod 0400 "$new"
mv -f "$new" "$creds"
jq -r .Credentials.Expiration "$session" | replace_file "$expires" 0400 || true
log "image-store session renewed until $(cat "$expires")"
echo aws-credentials
