#!/usr/bin/env bash
# shellcheck disable=SC2015  # `test && ok/pass ... || bad/fail ...`: ok/pass never fail
# demo.sh: espgate in five minutes. Needs root; touches only network namespaces it creates.
#
#   1. installs what is missing and builds (lab/setup.sh)
#   2. brings up the `lan` lab: alice, bob, carol (espgate peers) and dave (not a peer) on one
#      switch, all in network namespaces
#   3. starts an espgate daemon on alice, bob and carol, waits until they answer `status` and
#      until IKEv2 has set up the Child SAs between every pair
#   4. pings alice <-> bob (IPv4 and IPv6), copies a file over TCP, pings dave -> alice,
#      while the switch is captured
#   5. shows what the switch saw: the first alice <-> bob packets as tcpdump prints them, then
#      counts per flow: only ESP between the peers, plaintext between dave and alice; and then
#      the same ESP decrypted by tshark with the keys the daemons negotiated (`espgate keys`)
#   6. prints `espgate status` on alice, stops the daemons, deletes the namespaces and checks
#      that none is left (also on Ctrl-C or error)
#
# Environment: DEMO_SKIP_SETUP=1 skips step 1 (packages, npm ci, build); DEMO_KEEP=1 keeps the
# run dir (configs, logs, capture) after the namespaces are gone (it is always kept when the demo
# fails); ESPGATE_MAIN runs another build of the CLI instead of dist/src/cli/main.js;
# DEMO_KEYING=static keys the peers with static SAs instead of IKEv2 (the default: a pre-shared
# key per pair, what `espgate init` writes by default). With IKE the demo also waits for the
# Child SAs, lets IKE (UDP 500) between the peers through the leak check, and hands tshark the
# negotiated keys that `espgate keys` prints on each host.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=$ROOT/lab/lab.sh
MAIN=${ESPGATE_MAIN:-$ROOT/dist/src/cli/main.js}   # ESPGATE_MAIN: another build of the CLI
RUN=demo$$
RUN=${RUN:0:12}
export EGL_OWNER_PID=$$
PEERS=(alice bob carol)
KEYING=${DEMO_KEYING:-ike}      # ike | static
READY_TRIES=100          # x 0.2 s: wait up to 20 s for each daemon
STOP_WAIT_TENTHS=50      # wait up to 5 s for a daemon to exit after SIGTERM
CAPTURE_SECONDS=120      # the capture stops by itself after this, at the latest

declare -A DAEMON_PID=()
CAP_PID=
RUN_DIR=
PASS=0 FAIL=0

if [ -t 1 ]; then B=$'\033[1m' G=$'\033[32m' R=$'\033[31m' D=$'\033[2m' N=$'\033[0m'; else B='' G='' R='' D='' N=''; fi
section() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
pass() { PASS=$((PASS + 1)); printf '  %sok%s    %s\n' "$G" "$N" "$*"; }
fail() { FAIL=$((FAIL + 1)); printf '  %sFAIL%s  %s\n' "$R" "$N" "$*"; }
info() { printf '  %s%s%s\n' "$D" "$*" "$N"; }
indent() { sed 's/^/        /'; }

stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_WAIT_TENTHS; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? h st
  # Finish the cleanup even when stdout is gone (a closed pipe) or a command in it fails.
  set +e
  trap '' PIPE
  trap - EXIT INT TERM HUP
  section "Cleanup"
  if [ -n "$CAP_PID" ]; then stop_pid "$CAP_PID"; fi
  # SIGTERM to every daemon at once, one bounded wait, then SIGKILL to any left.
  for h in "${!DAEMON_PID[@]}"; do kill -TERM "${DAEMON_PID[$h]}" 2>/dev/null; done
  for h in "${!DAEMON_PID[@]}"; do stop_pid "${DAEMON_PID[$h]}"; done
  for h in "${!DAEMON_PID[@]}"; do
    wait "${DAEMON_PID[$h]}" 2>/dev/null
    st=$?
    case $st in
      0) info "$h: espgate stopped (exit 0)" ;;
      137) info "$h: espgate did not exit within $((STOP_WAIT_TENTHS / 10)) s of SIGTERM; killed" ;;
      *) info "$h: espgate exited with status $st" ;;
    esac
  done
  if [ "${DEMO_KEEP:-0}" = 1 ] || { [ "$rc" != 0 ] && [ -n "$RUN_DIR" ]; }; then
    "$LAB" down --run "$RUN" >/dev/null 2>&1 || true
    info "namespaces deleted; run dir kept for a look: $RUN_DIR (lab/lab.sh down --run $RUN --purge removes it)"
  else
    "$LAB" down --run "$RUN" --purge >/dev/null 2>&1 || true
    info "namespaces and run dir deleted (DEMO_KEEP=1 keeps the run dir)"
  fi
  left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -c "^egl-$RUN-")
  if [ "$left" = 0 ]; then info "nothing of the demo is left: no egl-$RUN-* namespaces"
  else printf '  %sWARNING%s %s namespaces egl-%s-* are left: lab/lab.sh down --run %s\n' "$R" "$N" "$left" "$RUN" "$RUN"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

stop_here() {
  fail "$*"
  printf '\n%sThe demo stops here.%s\n' "$R" "$N"
  exit 1
}

show_log() {
  local f=$RUN_DIR/logs/$1.log
  [ -s "$f" ] || { info "($1: log is empty)"; return 0; }
  info "last lines of $f:"
  tail -n 15 "$f" | indent
}

px() { local h=$1; shift; "$LAB" exec --run "$RUN" "$h" -- "$@"; }

[ "$(id -u)" = 0 ] || { echo "demo.sh needs root (network namespaces, iptables in them)" >&2; exit 1; }
case $KEYING in static | ike) ;; *) echo "demo.sh: DEMO_KEYING must be static or ike, not '$KEYING'" >&2; exit 2 ;; esac

# ------------------------------------------------------------------------------------------
section "1. Setup"
if [ "${DEMO_SKIP_SETUP:-0}" = 1 ]; then
  info "skipped (DEMO_SKIP_SETUP=1)"
else
  SETUP_LOG=$(mktemp /tmp/espgate-demo-setup.XXXXXX)
  if "$ROOT/lab/setup.sh" >"$SETUP_LOG" 2>&1; then
    grep '^setup.sh:' "$SETUP_LOG" | indent
    rm -f "$SETUP_LOG"
  else
    grep '^setup.sh:' "$SETUP_LOG" | indent
    info "last lines of $SETUP_LOG:"
    grep -vE '^(gyp info|npm warn)' "$SETUP_LOG" | tail -n 12 | indent
    stop_here "setup failed (lab/setup.sh; full log $SETUP_LOG)"
  fi
fi
[ -f "$MAIN" ] || stop_here "no $MAIN: the build did not produce the espgate CLI"
pass "espgate built: $MAIN"

# ------------------------------------------------------------------------------------------
section "2. The lab: four hosts on one switch"
cat <<'EOF' | indent
 alice 198.18.0.1    bob 198.18.0.2    carol 198.18.0.3    dave 198.18.0.4
 2001:db8:0:1::1     ...::2            ...::3              ...::4
       |                  |                  |                   |
 ======+==================+==== switch (capture here) ===========+======
 alice, bob and carol protect their traffic to each other; dave is not a peer.
EOF
"$LAB" up lan --run "$RUN" >/dev/null 2>&1 || stop_here "lab up failed (try: lab/lab.sh up lan --run $RUN)"
RUN_DIR=$("$LAB" dir --run "$RUN")
pass "namespaces up: $(ip netns list | awk '{print $1}' | grep "^egl-$RUN-" | sort | tr '\n' ' ')"
"$LAB" configs --run "$RUN" --"$KEYING" >/dev/null || stop_here "config generation failed"
if [ "$KEYING" = ike ]; then pass "configs with a fresh IKEv2 pre-shared key per pair: $RUN_DIR/configs/{alice,bob,carol}.yaml"
else pass "configs with fresh static keys: $RUN_DIR/configs/{alice,bob,carol}.yaml"; fi
px alice ping -n -q -c 1 -W 2 198.18.0.2 >/dev/null && pass "before espgate: alice reaches bob in the clear" \
  || fail "before espgate: alice cannot reach bob"

# ------------------------------------------------------------------------------------------
section "3. Start espgate on alice, bob and carol"
for h in "${PEERS[@]}"; do
  "$LAB" exec --run "$RUN" "$h" -- node "$MAIN" up -c "$RUN_DIR/configs/$h.yaml" >"$RUN_DIR/logs/$h.log" 2>&1 &
  DAEMON_PID[$h]=$!
  info "$h: node ${MAIN#"$ROOT"/} up -c configs/$h.yaml  (pid ${DAEMON_PID[$h]}, log logs/$h.log)"
done
for h in "${PEERS[@]}"; do
  ready=0
  for ((i = 0; i < READY_TRIES; i++)); do
    if ! kill -0 "${DAEMON_PID[$h]}" 2>/dev/null; then break; fi
    # the control socket answers during start-up too: ready means state "up"
    if px "$h" node "$MAIN" status --json -c "$RUN_DIR/configs/$h.yaml" 2>/dev/null | grep -q '"state": "up"'; then ready=1; break; fi
    sleep 0.2
  done
  if [ "$ready" = 1 ]; then
    pass "$h: espgate is up (status --json)"
  else
    if kill -0 "${DAEMON_PID[$h]}" 2>/dev/null; then fail "$h: no status answer within $((READY_TRIES / 5)) s"
    else wait "${DAEMON_PID[$h]}" 2>/dev/null && st=0 || st=$?; fail "$h: espgate exited (status $st) before it was ready"; fi
    show_log "$h"
    stop_here "espgate did not start on $h"
  fi
done
if [ "$KEYING" = ike ]; then
  # Each host has two peers: ready when every host has an outbound SA for both (IKE_AUTH done).
  for h in "${PEERS[@]}"; do
    outs=0
    for ((i = 0; i < READY_TRIES; i++)); do
      outs=$(px "$h" node "$MAIN" status --json -c "$RUN_DIR/configs/$h.yaml" 2>/dev/null | grep -c '"direction": "out"' || true)
      [ "${outs:-0}" -ge 2 ] && break
      sleep 0.2
    done
    if [ "${outs:-0}" -ge 2 ]; then pass "$h: IKE SAs and Child SAs with both peers"
    else show_log "$h"; stop_here "$h: Child SAs with $outs of 2 peers after $((READY_TRIES / 5)) s"; fi
  done
fi
info "alice's TUN:"
px alice ip -br link show eg0 2>/dev/null | indent || true

# ------------------------------------------------------------------------------------------
section "4. Traffic (the switch is being captured)"
CAPERR=$RUN_DIR/logs/capture.log
"$LAB" capture --run "$RUN" demo.pcap "$CAPTURE_SECONDS" 2>"$CAPERR" &
CAP_PID=$!
for ((i = 0; i < 50; i++)); do grep -q 'listening on' "$CAPERR" 2>/dev/null && break; sleep 0.1; done
grep -q 'listening on' "$CAPERR" || stop_here "tcpdump did not start ($CAPERR)"

try_ping() {  # try_ping <from> <to-address> <label> [ping options]
  local from=$1 to=$2 label=$3 out; shift 3
  if out=$(px "$from" ping -n -c 3 -i 0.2 -W 2 "$@" "$to" 2>&1); then
    pass "$label  ($(grep -o '[0-9]* received' <<<"$out"), rtt $(grep -o 'rtt.*' <<<"$out" | cut -d/ -f5) ms avg)"
  else
    fail "$label"
    tail -n 2 <<<"$out" | indent
  fi
}
try_ping alice 198.18.0.2 "ping alice -> bob     (IPv4, protected)"
try_ping bob 198.18.0.1 "ping bob -> alice     (IPv4, protected)"
try_ping alice 2001:db8:0:1::2 "ping alice -> bob     (IPv6, protected)" -6
try_ping carol 198.18.0.1 "ping carol -> alice   (IPv4, protected)"
try_ping dave 198.18.0.1 "ping dave -> alice    (IPv4, NOT protected: dave is no peer)"

# TCP: bob listens, alice sends 256 KiB; both ends are bounded by timeouts.
head -c 262144 /dev/urandom >"$RUN_DIR/send.bin"
rm -f "$RUN_DIR/recv.bin"
px bob timeout 20 socat -u TCP4-LISTEN:5001,reuseaddr "CREATE:$RUN_DIR/recv.bin" >"$RUN_DIR/logs/socat-bob.log" 2>&1 &
SRV=$!
for ((i = 0; i < 50; i++)); do px bob ss -Hltn 'sport = :5001' 2>/dev/null | grep -q 5001 && break; sleep 0.1; done
if px alice timeout 15 socat -u "OPEN:$RUN_DIR/send.bin" TCP4:198.18.0.2:5001 2>"$RUN_DIR/logs/socat-alice.log"; then
  wait "$SRV" 2>/dev/null || true
  if cmp -s "$RUN_DIR/send.bin" "$RUN_DIR/recv.bin"; then
    pass "TCP alice -> bob: 256 KiB arrived intact (sha256 $(sha256sum "$RUN_DIR/recv.bin" | cut -c1-16)...)"
  else
    fail "TCP alice -> bob: received $(stat -c %s "$RUN_DIR/recv.bin" 2>/dev/null || echo 0) of 262144 bytes, or different bytes"
  fi
else
  stop_pid "$SRV"; wait "$SRV" 2>/dev/null || true
  fail "TCP alice -> bob: the sender failed"
  indent <"$RUN_DIR/logs/socat-alice.log"
fi
sleep 0.3
stop_pid "$CAP_PID"; wait "$CAP_PID" 2>/dev/null || true; CAP_PID=
PCAP=$RUN_DIR/pcap/demo.pcap

# ------------------------------------------------------------------------------------------
section "5. What the switch saw"
info "the first packets between alice and bob, as tcpdump prints them (ping and TCP went by: only ESP shows):"
tcpdump -n -t -r "$PCAP" -c 6 'host 198.18.0.1 and host 198.18.0.2' 2>/dev/null | cut -c1-110 | indent || true
info "packets per (source, destination, protocol), ARP and IPv6 neighbour/MLD chatter left out:"
SUMMARY=$(tshark -n -r "$PCAP" -Y '(ip || ipv6) && !(icmpv6.type >= 130 && icmpv6.type <= 143)' \
  -T fields -E separator=' ' -e _ws.col.Source -e _ws.col.Destination -e _ws.col.Protocol 2>/dev/null \
  | sort | uniq -c | sort -rn)
printf '%s\n' "$SUMMARY" | awk '{printf "%6d  %-18s -> %-18s %s\n", $1, $2, $3, $4}' | indent
declare -A PROTECTED=([198.18.0.1]=1 [198.18.0.2]=1 [198.18.0.3]=1 [2001:db8:0:1::1]=1 [2001:db8:0:1::2]=1 [2001:db8:0:1::3]=1)
leaks=0 esp=0 ike=0 clear_dave=0
while read -r count src dst proto; do
  [ -n "${count:-}" ] || continue
  if [ -n "${PROTECTED[$src]:-}" ] && [ -n "${PROTECTED[$dst]:-}" ]; then
    if [ "$proto" = ESP ]; then esp=$((esp + count))
    elif [ "$KEYING" = ike ] && [ "$proto" = ISAKMP ]; then ike=$((ike + count))
    else leaks=$((leaks + count)); info "LEAK: $count $proto packets $src -> $dst in the clear"; fi
  fi
  if { [ "$src" = 198.18.0.4 ] || [ "$dst" = 198.18.0.4 ]; } && [ "$proto" = ICMP ]; then clear_dave=$((clear_dave + count)); fi
done <<<"$SUMMARY"
[ "$esp" -gt 0 ] && pass "$esp ESP packets between the peers" || fail "no ESP between the peers"
[ "$leaks" = 0 ] && pass "nothing between alice, bob and carol went in the clear" || fail "$leaks cleartext packets between peers"
if [ "$KEYING" = ike ] && [ "$ike" -gt 0 ]; then info "$ike IKE (UDP 500) packets between the peers: key exchange and liveness checks, not traffic"; fi
[ "$clear_dave" -gt 0 ] && pass "dave <-> alice in the clear ($clear_dave ICMP packets), as expected" || fail "dave <-> alice not seen"
frag=$(tshark -n -r "$PCAP" -Y 'esp && (ip.flags.mf == 1 || ip.frag_offset > 0)' 2>/dev/null | wc -l)
[ "$frag" = 0 ] && pass "no fragmented ESP" || fail "$frag fragmented ESP packets"

section "6. The same ESP, decrypted by tshark with $RUN_DIR/keys.uat"
if [ "$KEYING" = ike ]; then
  # IKE negotiated the keys inside the daemons: each one prints its Child SAs' keys as
  # Wireshark esp_sa lines (root-only control socket), which go into keys.uat.
  nkeys=0
  for h in "${PEERS[@]}"; do
    if lines=$(px "$h" node "$MAIN" keys -c "$RUN_DIR/configs/$h.yaml" 2>/dev/null); then
      grep '^"' <<<"$lines" >>"$RUN_DIR/keys.uat" || true
      nkeys=$((nkeys + $(grep -c '^"' <<<"$lines" || true)))
    else
      fail "$h: espgate keys"
    fi
  done
  info "espgate keys on each host: $nkeys SAs (IKE-negotiated) appended to keys.uat"
fi
info "lab/lab.sh decode --run $RUN demo.pcap -- -Y 'esp && (icmp || icmpv6)'"
"$LAB" decode --run "$RUN" demo.pcap -- -Y 'esp && (icmp || icmpv6)' 2>/dev/null | head -n 8 | cut -c1-110 | indent
total=$("$LAB" decode --run "$RUN" demo.pcap -- -Y esp 2>/dev/null | wc -l)
inner=$("$LAB" decode --run "$RUN" demo.pcap -- -Y 'esp && (icmp || icmpv6 || tcp)' 2>/dev/null | wc -l)
[ "$total" -gt 0 ] && [ "$inner" = "$total" ] && pass "tshark decrypted all $total ESP packets (inner ICMP/TCP visible)" \
  || fail "tshark decrypted $inner of $total ESP packets"

# ------------------------------------------------------------------------------------------
section "Result"
info "espgate status on alice:"
px alice node "$MAIN" status -c "$RUN_DIR/configs/alice.yaml" 2>&1 | head -n 20 | indent || true
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
