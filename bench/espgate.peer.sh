# bench/espgate.peer.sh: espgate as a peer of the shared harness (../shared/bench/anchors.sh).
#   bash ../shared/bench/anchors.sh --peer-file bench/espgate.peer.sh wg ovpn swan-h2h espgate
# Host-to-host on the harness's shared /24 (espgate's real use case): iperf3 and ping aim at
# the peer's REAL address, so traffic goes through the NETMAP steering and conntrack path.
# Static AES-128-GCM SAs with fresh random keys; needs `npm run build` first.
PEER_NAME=espgate
ESPGATE_ROOT=${ESPGATE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

espgate_cfg() {  # me peer i outspi outkey inspi inkey statedir
  cat <<EOF_CFG
name: bench-$1
stateDir: $8
local: { protect: [198.18.$3.$1/32] }
prefixes: [ { real: 198.18.$3.0/24, fake: 198.19.$3.0/24 } ]
peers:
  - name: p$2
    endpoint: 198.18.$3.$2
    protect: [198.18.$3.$2/32]
    sa:
      out: { spi: "$4", key: "$5" }
      in: { spi: "$6", key: "$7" }
EOF_CFG
}

setup_espgate() {
  [ -f "$ESPGATE_ROOT/dist/src/cli/main.js" ] || die "espgate not built (cd $ESPGATE_ROOT && npm run build)"
  mkpair espgate
  local i=${IDX[espgate]} d=$WORK/espgate a b k1 k2 pa pb
  a=$(nsa espgate); b=$(nsb espgate)
  k1=0x$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n'); k2=0x$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
  espgate_cfg 1 2 "$i" 0x1002 "$k1" 0x2001 "$k2" "$d/a" > "$d/a.yaml"
  espgate_cfg 2 1 "$i" 0x2001 "$k2" 0x1002 "$k1" "$d/b" > "$d/b.yaml"
  bg ip netns exec "$a" env ESPGATE_LOG_LEVEL=warn node "$ESPGATE_ROOT/dist/src/cli/main.js" up -c "$d/a.yaml" >"$d/espgate-a.log" 2>&1; pa=$(lastpid)
  bg ip netns exec "$b" env ESPGATE_LOG_LEVEL=warn node "$ESPGATE_ROOT/dist/src/cli/main.js" up -c "$d/b.yaml" >"$d/espgate-b.log" 2>&1; pb=$(lastpid)
  local n; for n in $(seq 1 100); do [ -S "$d/a/espgate.sock" ] && [ -S "$d/b/espgate.sock" ] && break; sleep 0.1; done
  # The control socket answers during start-up, before the gate is in: wait for state "up" on
  # both sides, or the harness's first ping could cross in cleartext (bounded: 100 x 0.2 s).
  local s; for s in a b; do
    for n in $(seq 1 100); do
      ip netns exec "$([ $s = a ] && echo "$a" || echo "$b")" node "$ESPGATE_ROOT/dist/src/cli/main.js" status --json -c "$d/$s.yaml" 2>/dev/null \
        | grep -q '"state": "up"' && break
      sleep 0.2
    done
  done
  DPIDS[espgate]="$pa $pb"; DST[espgate]=198.18.$i.2
  wait_ping "$a" "198.18.$i.2" || die "espgate ping (logs: $d/espgate-*.log)"
}
