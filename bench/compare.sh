#!/usr/bin/env bash
# bench/compare.sh: espgate side by side with wireguard-go, OpenVPN and strongSwan kernel-libipsec
# (host-to-host) in the shared harness, ../shared/bench/anchors.sh, with the peer file
# bench/espgate.peer.sh. Same machine, same run, same method (see ../shared/bench/BASELINE.md).
#
#   npm run bench:compare                    (root; about 10 min with REPS=3)
#   REPS=1 bash bench/compare.sh             (quicker)
#   bash bench/compare.sh --check            (set up, ping, tear down)
#   bash bench/compare.sh wg espgate         (other peer lists: arguments replace the default set)
#
# Settings go to anchors.sh unchanged: REPS=3 DUR=10 UDP_BIG=1372 OUT=<dir> MAX_RUNTIME=3600.
# espgate runs from dist/: compile first (npx tsc -p tsconfig.json, or npm run build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/anchors.sh}

if [ ! -f "$ANCHORS" ]; then
  cat >&2 <<MSG
bench/compare.sh: the shared harness is not at $ANCHORS.
It lives in the shared workspace next to this repository (../shared/bench/: anchors.sh,
summarize.py, BASELINE.md). Put a copy there, or point ANCHORS=/path/to/anchors.sh at it.
It needs root, iperf3, jq, bc, python3, and for the other peers:
  apt-get install -y iperf3 wireguard-go wireguard-tools openvpn strongswan-charon \\
    strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
MSG
  exit 2
fi
if [ ! -f "$ROOT/dist/src/cli/main.js" ]; then
  echo "bench/compare.sh: espgate is not built ($ROOT/dist/src/cli/main.js missing): npx tsc -p tsconfig.json" >&2
  exit 2
fi

check=()
if [ "${1:-}" = --check ]; then check=(--check); shift; fi
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(wg ovpn swan-h2h espgate)

cd "$ROOT"
exec bash "$ANCHORS" "${check[@]}" --peer-file "$ROOT/bench/espgate.peer.sh" "${peers[@]}"
