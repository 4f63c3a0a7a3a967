#!/bin/sh
# mmdebstrap customize hook of the nginx stand-in; $1 is the image's root filesystem. It lays
# Debian's nginx out as the official nginx image is: user and group nginx (101), logs to the
# container's stdout and stderr, /var/cache/nginx, modules in /etc/nginx/modules.
set -eu
root=$1
if grep -q '^[^:]*:[^:]*:101:' "$root/etc/passwd" || grep -q '^[^:]*:[^:]*:101:' "$root/etc/group"; then
  echo "customize.sh: uid or gid 101 is taken in the stand-in; the official image's nginx user needs it" >&2
  exit 1
fi
echo 'nginx:x:101:101:nginx user:/nonexistent:/usr/sbin/nologin' >>"$root/etc/passwd"
echo 'nginx:x:101:' >>"$root/etc/group"
echo 'nginx:!:::' >>"$root/etc/gshadow"
echo 'nginx:!:19000::::::' >>"$root/etc/shadow"
# The official image's directory of temporary paths (nginx.conf names them; tmpfs on the host).
mkdir -p "$root/var/cache/nginx"
mkdir -p "$root/var/log/nginx"
ln -sf /dev/stdout "$root/var/log/nginx/access.log"
ln -sf /dev/stderr "$root/var/log/nginx/error.log"
ln -sfn /usr/lib/nginx/modules "$root/etc/nginx/modules"
# Debian's site configuration is not the official image's; the deployment mounts its own nginx.conf.
rm -rf "$root/etc/nginx/sites-enabled" "$root/etc/nginx/sites-available" "$root/etc/nginx/modules-enabled"
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/cache/apt/* \
  "$root"/var/lib/apt/lists/*
