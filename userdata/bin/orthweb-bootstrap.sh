#!/bin/bash
# First boot (cloud-init runcmd): installs Docker from Amazon Linux's repositories and the compose
# plugin pinned to one version from Docker's signed repository, then hands over to systemd:
# orthweb.service starts the project at every boot, orthweb-refresh.timer follows rotation.
# Running it again changes nothing that works.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

# Docker's RPM signing key, as published in Docker's installation guide.
DOCKER_KEY_FPR=060A61C51B558A7F742B77AAC52FEB6B621E9F35
DOCKER_KEY=/etc/pki/rpm-gpg/docker-ce.gpg

# Amazon Linux 2023 pins its repositories to the AMI's release, so these versions are fixed too.
dnf install -y docker jq

if [ "$(docker compose version --short 2>/dev/null || true)" != "$ORTHWEB_COMPOSE_VERSION" ]; then
  tmp=$(mktemp)
  curl -fsSL --proto '=https' --retry 5 -o "$tmp" https://download.docker.com/linux/centos/gpg
  fpr=$(gpg --show-keys --with-colons "$tmp" | awk -F: '$1 == "fpr" { print $10; exit }')
  [ "$fpr" = "$DOCKER_KEY_FPR" ] || die "Docker's signing key has fingerprint '$fpr', expected $DOCKER_KEY_FPR"
  install -m 0644 "$tmp" "$DOCKER_KEY"
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
  dnf install -y --enablerepo=orthweb-docker-compose "docker-compose-plugin-$ORTHWEB_COMPOSE_VERSION"
fi

systemctl daemon-reload
systemctl enable --now docker.service
# {{ include refresh/enable-health.sh if multi_host }}
systemctl enable --now orthweb.service orthweb-refresh.timer
log "bootstrap finished"
