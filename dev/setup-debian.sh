#!/bin/bash
# Installs the Debian packages in requirements/debian.txt that are missing: with apt-get as root,
# or through sudo without a password prompt. Where neither works it says, in one line, what to
# install, and exits 0: the test tiers that need them are then reported as not run (in CI, where
# CI=true, that is an error instead). Package installs start no services (tests start their own).
set -euo pipefail
list=${1:-requirements/debian.txt}
mapfile -t wanted < <(grep -vE '^\s*(#|$)' "$list" | awk '{print $1}')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "orthweb: Debian packages missing and neither root nor passwordless sudo: ${missing[*]}." \
    "Install them (sudo apt-get install ${missing[*]}); until then the tiers that need them are reported as not run." >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "orthweb: not a Debian system (no apt-get); the tiers that need ${missing[*]} are reported as not run." >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
echo "==> Installing Debian packages: ${missing[*]}"
policy=/usr/sbin/policy-rc.d
"${as_root[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
trap '"${as_root[@]}" rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
