#!/bin/bash
# First boot (orthweb-bootstrap.service, started by cloud-init): installs Docker from Amazon Linux's
# repositories and the compose plugin pinned to one version from Docker's signed repository, then
# hands over to systemd: orthweb.service starts the project at every boot, orthweb-refresh.timer
# follows rotation. Every download is retried with back-off; if one still fails, the unit starts
# this script again (Restart=on-failure) until it has run to the end once. Running it again
# changes nothing that works.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

# Docker's RPM signing key, as published in Docker's installation guide.
DOCKER_KEY_FPR=060A61C51B558A7F742B77AAC52FEB6B621E9F35
DOCKER_KEY=/etc/pki/rpm-gpg/docker-ce.gpg
DOCKER_KEY_URL=https://download.docker.com/linux/centos/gpg

# Amazon Linux 2023 pins its repositories to the AMI's release, so these versions are fixed too
# (orthweb-patch moves them on). dnf-plugins-core has `dnf needs-restarting`, for orthweb-patch;
# psql (postgresql15) and python3 are for orthweb-db-role, which sets up Orthanc's database role;
# e2fsprogs (mkfs.ext4) for orthweb-archives, which formats the archive volume.
retry "dnf install docker" dnf install -y docker jq dnf-plugins-core postgresql15 python3 e2fsprogs

if [ "$(docker compose version --short 2>/dev/null || true)" != "$ORTHWEB_COMPOSE_VERSION" ]; then
  tmp=$(mktemp)
  retry "download Docker's signing key" curl -fsSL --proto '=https' --max-time 60 -o "$tmp" "$DOCKER_KEY_URL"
  # Only the key with the published fingerprint is kept: another key in the file is never imported.
  verified_key "$tmp" "$DOCKER_KEY_FPR" "$DOCKER_KEY" || die "Docker's signing key: none with fingerprint $DOCKER_KEY_FPR"
  rm -f "$tmp"
  rpm --import "$DOCKER_KEY"
  cat >/etc/yum.repos.d/orthweb-docker-compose.repo <<REPO
[orthweb-docker-compose]
name=Docker compose plugin (signed, version pinned by Orthweb)
baseurl=https://download.docker.com/linux/centos/9/\$basearch/stable
enabled=0
gpgcheck=1
gpgkey=file://$DOCKER_KEY
includepkgs=docker-compose-plugin
REPO
  retry "dnf install docker-compose-plugin" \
    dnf install -y --enablerepo=orthweb-docker-compose "docker-compose-plugin-$ORTHWEB_COMPOSE_VERSION"
fi

systemctl daemon-reload
systemctl enable --now docker.service
# {{ include refresh/enable-health.sh if multi_host }}
# --no-block: orthweb.service retries its own start (secrets, images) and must not hold this one.
systemctl enable --now --no-block orthweb.service orthweb-refresh.timer
# The patch timer exists unless patch_schedule is off; the health probe only with alarms.
for timer in orthweb-patch.timer orthweb-probe.timer; do
  if [ -e "/etc/systemd/system/$timer" ]; then
    systemctl enable --now --no-block "$timer"
  fi
done
install -d -m 0755 "$ORTHWEB_STATE_DIR"
touch "$ORTHWEB_STATE_DIR/bootstrapped"
log "bootstrap finished"
