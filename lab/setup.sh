#!/usr/bin/env bash
# setup.sh: installs what the espgate lab and demo need, then builds the project.
#
#   1. Debian packages, only the missing ones (apt-get update runs once, and only when something
#      is missing): the tools the lab and the daemon call, the headers and compiler of the
#      native addon, and ping.
#   2. `npm ci` when node_modules is missing or older than package-lock.json.
#   3. `npm run build` (native addon + tsc to dist/).
#
# Options: --no-apt, --no-npm, --no-build skip a step. Needs root for step 1 (when something is
# missing). Non-interactive throughout.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DO_APT=1 DO_NPM=1 DO_BUILD=1
for arg in "$@"; do
  case $arg in
    --no-apt) DO_APT=0 ;;
    --no-npm) DO_NPM=0 ;;
    --no-build) DO_BUILD=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# Packages the lab, the demo and the daemon use. netcat: either ncat or netcat-openbsd will do.
# make/g++ build the native addon (node-gyp); iputils-ping gives ping in the namespaces.
# strongSwan (charon with kernel-libipsec, swanctl) is the interop peer of test/lab/swan.test.ts.
PACKAGES=(iptables iproute2 conntrack tcpdump tshark libnetfilter-queue-dev ipset nftables iperf3 socat python3
          iputils-ping make g++
          strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if [ "$DO_APT" = 1 ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  if ! installed ncat && ! installed netcat-openbsd; then missing+=(netcat-openbsd); fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || { echo "setup.sh: need root to install packages" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer no without a prompt.
    echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections 2>/dev/null || true
    apt-get update -q
    # No service may start in the root namespace during the install (strongSwan's packages would
    # start charon there): policy-rc.d says "not now" to invoke-rc.d, removed again by the trap.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
      trap 'rm -f "$policy"' EXIT
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "setup.sh: system packages present"
  fi
fi

cd "$ROOT"
if [ "$DO_NPM" = 1 ]; then
  if [ ! -d node_modules ] || [ ! -e node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup.sh: npm ci"
    npm ci --no-audit --no-fund
  else
    echo "setup.sh: node_modules up to date"
  fi
fi

if [ "$DO_BUILD" = 1 ]; then
  echo "setup.sh: npm run build"
  npm run build
fi
