#!/bin/sh
# mmdebstrap customize hook of the Orthanc stand-in; $1 is the image's root filesystem, which
# already holds rootfs/ (entrypoint, configurator, probe).
set -eu
root=$1
# The orthancteam image ships no configuration of its own in /etc/orthanc: the deployment's files
# are mounted there. Debian's defaults (a demo login among them) must not be merged.
rm -f "$root"/etc/orthanc/*.json
# Debian links every plugin into /usr/share/orthanc/plugins, which the default Plugins list names:
# only the ones the entrypoint copies into /run/orthanc/plugins may load.
rm -f "$root"/usr/share/orthanc/plugins/*
# Where the image keeps its index and storage (a volume), Orthanc's temporary files, and the
# plugins the entrypoint copies in (a tmpfs on the host).
mkdir -p "$root/var/lib/orthanc/db" "$root/var/lib/orthanc/tmp" "$root/run/orthanc/plugins"
# Root's, as in the orthancteam image (Debian gives them to its orthanc user): Orthanc runs as root
# without DAC_OVERRIDE, so it may only use what root owns.
chown -R 0:0 "$root/var/lib/orthanc"
chmod 0755 "$root/var/lib/orthanc" "$root/var/lib/orthanc/db" "$root/var/lib/orthanc/tmp"
chmod 0755 "$root/docker-entrypoint.sh" "$root/usr/local/bin/orthanc-configure" "$root/probes/test-aliveness.py"
# sync-in copies rootfs/ and the OHIF build with the checkout's owners and modes, its top directory
# onto / and its directories onto /usr, /usr/share...: root's, and written by root alone, whoever
# and whatever umask checked the project out.
chown 0:0 "$root" "$root/usr" "$root/usr/local" "$root/usr/local/bin" "$root/usr/share" "$root/usr/share/orthanc"
chmod 0755 "$root" "$root/usr" "$root/usr/local" "$root/usr/local/bin" "$root/usr/share" "$root/usr/share/orthanc"
chown -R 0:0 "$root/docker-entrypoint.sh" "$root/probes" "$root/usr/local/bin/orthanc-configure" \
  "$root/usr/share/orthanc/ohif-standin.py" "$root/usr/share/orthanc/ohif"
chmod -R go-w "$root/docker-entrypoint.sh" "$root/probes" "$root/usr/local/bin/orthanc-configure" \
  "$root/usr/share/orthanc/ohif-standin.py" "$root/usr/share/orthanc/ohif"
# Nothing the image does not need at run time.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/cache/apt/* \
  "$root"/var/lib/apt/lists/*
