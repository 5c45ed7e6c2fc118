#!/usr/bin/env bash
# shellcheck disable=SC2015  # `test && ok/pass ... || bad/fail ...`: ok/pass never fail
# selftest.sh: checks lab.sh itself (needs root, does not need espgate): topologies come up and
# are idempotent, hosts ping each other in the clear over IPv4 and IPv6 with rp_filter=1, the
# switch capture sees the traffic, configs and keys.uat are written, two runs coexist, `down`
# leaves no namespace, and `down --all-stale` removes only runs whose owner is gone. Nothing is
# changed in the root namespace (checked).
#
# Usage: lab/selftest.sh        (prints "N passed, M failed"; exit 1 when something failed)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=$ROOT/lab/lab.sh
ID=$$
RUNS=("st${ID}a" "st${ID}b" "st${ID}c" "st${ID}d" "st${ID}e")
PASS=0 FAIL=0
export EGL_OWNER_PID=$$

cleanup() {
  local r
  for r in "${RUNS[@]}"; do "$LAB" down --run "$r" --purge >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }

root_snapshot() {
  { ip -br link; ip -br addr; ip route; ip -6 route; sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.rp_filter; } 2>/dev/null \
    | sed -E 's/ +/ /g'
}

count_ns() { ip netns list | awk '{print $1}' | grep -c "^egl-$1-" || true; }

px() { local run=$1 host=$2; shift 2; "$LAB" exec --run "$run" "$host" -- "$@"; }

ping4() { px "$1" "$2" ping -n -c 1 -W 2 "$3"; }
ping6() { px "$1" "$2" ping -6 -n -c 1 -W 2 "$3"; }

echo "== selftest of lab/lab.sh (runs ${RUNS[*]})"
BEFORE=$(root_snapshot)
A=${RUNS[0]} B=${RUNS[1]} C=${RUNS[2]} D=${RUNS[3]} E=${RUNS[4]}

# --- lan ---------------------------------------------------------------------------------
check "up lan" "$LAB" up lan --run "$A"
check "up lan again (idempotent)" "$LAB" up lan --run "$A"
[ "$(count_ns "$A")" = 5 ] && ok "lan has 5 namespaces" || bad "lan has $(count_ns "$A") namespaces, want 5"
check "up with another topology on the same run is refused" bash -c "! '$LAB' up sites --run '$A'"

for h in alice bob carol dave; do
  vals=$(px "$A" "$h" sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter net.ipv4.conf.eth0.rp_filter net.ipv4.ip_forward net.ipv6.conf.eth0.accept_dad | tr '\n' ' ')
  [ "$vals" = "1 1 1 0 0 " ] && ok "$h: rp_filter 1/1/1, no forwarding, no DAD" || bad "$h: sysctls $vals"
done
vals=$(px "$A" sw sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter | tr '\n' ' ')
[ "$vals" = "1 1 " ] && ok "sw: rp_filter 1" || bad "sw: rp_filter $vals"
if px "$A" alice ip -6 addr show tentative | grep -q inet6; then bad "alice has tentative IPv6 addresses"; else ok "no tentative IPv6 address"; fi

declare -A V4=([alice]=198.18.0.1 [bob]=198.18.0.2 [carol]=198.18.0.3 [dave]=198.18.0.4)
declare -A V6=([alice]=2001:db8:0:1::1 [bob]=2001:db8:0:1::2 [carol]=2001:db8:0:1::3 [dave]=2001:db8:0:1::4)
for s in alice bob carol dave; do
  for d in alice bob carol dave; do
    [ "$s" = "$d" ] && continue
    check "lan $s -> $d IPv4" ping4 "$A" "$s" "${V4[$d]}"
    check "lan $s -> $d IPv6" ping6 "$A" "$s" "${V6[$d]}"
  done
done

# capture: start, wait for "listening", ping, stop by SIGTERM, read back.
CAPERR=$(mktemp)
"$LAB" capture --run "$A" selftest.pcap 30 2>"$CAPERR" &
CAP=$!
for _ in $(seq 1 50); do grep -q 'listening on' "$CAPERR" && break; sleep 0.1; done
ping4 "$A" dave 198.18.0.1 >/dev/null || true
ping6 "$A" dave 2001:db8:0:1::1 >/dev/null || true
kill -TERM "$CAP" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$CAP" 2>/dev/null || break; sleep 0.1; done
wait "$CAP" 2>/dev/null || true
PCAP=$("$LAB" dir --run "$A")/pcap/selftest.pcap
DUMP=$(tcpdump -n -r "$PCAP" 2>/dev/null || true)
grep -q '198.18.0.4 > 198.18.0.1: ICMP echo request' <<<"$DUMP" && ok "capture saw dave -> alice IPv4" || bad "capture missed dave -> alice IPv4"
grep -q '2001:db8:0:1::4 > 2001:db8:0:1::1: ICMP6, echo request' <<<"$DUMP" && ok "capture saw dave -> alice IPv6" || bad "capture missed dave -> alice IPv6"
rm -f "$CAPERR"

# configs and keys.uat
check "configs" "$LAB" configs --run "$A" --static   # static SAs: esp-probe seals with their keys
DIR=$("$LAB" dir --run "$A")
for h in alice bob carol; do check "config for $h" test -s "$DIR/configs/$h.yaml"; done
check "no config for dave" test ! -e "$DIR/configs/dave.yaml"
[ "$(grep -c '^"IPv4"' "$DIR/keys.uat")" = 6 ] && ok "keys.uat has 6 SAs" || bad "keys.uat SAs: $(grep -c '^"IPv4"' "$DIR/keys.uat")"
check "tshark reads the capture with keys.uat" "$LAB" decode --run "$A" selftest.pcap

# keys.uat against real frames: ESP sealed by lab/esp-probe.ts with the configs' SAs, sent
# over the switch, captured, and decrypted by tshark.
capture_start() {
  CAPERR=$(mktemp)
  "$LAB" capture --run "$A" "$1" 30 2>"$CAPERR" &
  CAP=$!
  for _ in $(seq 1 50); do grep -q 'listening on' "$CAPERR" && break; sleep 0.1; done
}
capture_stop() {
  sleep 0.2
  kill -TERM "$CAP" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$CAP" 2>/dev/null || break; sleep 0.1; done
  wait "$CAP" 2>/dev/null || true
  rm -f "$CAPERR"
}
inner_echoes() {  # inner_echoes <pcap>: "spi outer-src inner-src inner-dst" per decrypted echo request
  "$LAB" decode --run "$A" "$1" -- -Y 'esp && (icmp.type == 8 || icmpv6.type == 128)' -T fields -E separator=' ' \
    -e esp.spi -e ip.src -e ipv6.src 2>/dev/null
}
capture_start probe4.pcap
check "inject alice -> bob (2 probes, IPv4 inner)" "$LAB" inject --run "$A" alice bob -- --count 2
check "inject bob -> alice (IPv6 inner)" "$LAB" inject --run "$A" bob alice -- --family 6 --seq 9
capture_stop
ECHOES=$(inner_echoes probe4.pcap)
[ "$(grep -c '^0x00001002 198.18.0.1,198.18.0.1 ' <<<"$ECHOES")" = 2 ] && ok "tshark decrypted both alice -> bob probes (SPI 0x1002)" \
  || bad "alice -> bob probes not decrypted: $ECHOES"
grep -q '^0x00002001 198.18.0.2 2001:db8:0:1::2$' <<<"$ECHOES" && ok "tshark decrypted bob -> alice probe (IPv6 inner)" \
  || bad "bob -> alice probe not decrypted: $ECHOES"

check "configs --outer 6" "$LAB" configs --run "$A" --outer 6 --static
check "IPv6 endpoints in keys.uat" grep -q '^"IPv6","2001:db8:0:1::1","2001:db8:0:1::2"' "$DIR/keys.uat"
capture_start probe6.pcap
check "inject carol -> alice over IPv6" "$LAB" inject --run "$A" carol alice
capture_stop
ECHOES=$(inner_echoes probe6.pcap)
grep -q '^0x00003001 198.18.0.3 2001:db8:0:1::3$' <<<"$ECHOES" && ok "tshark decrypted carol -> alice over an IPv6 outer header" \
  || bad "carol -> alice IPv6-outer probe not decrypted: $ECHOES"

# --- a second lan run coexists ---------------------------------------------------------------
check "up a second lan run" "$LAB" up lan --run "$B"
check "run 2: alice -> bob" ping4 "$B" alice 198.18.0.2
check "run 1 still: alice -> bob" ping4 "$A" alice 198.18.0.2
check "down run 2" "$LAB" down --run "$B" --purge
[ "$(count_ns "$B")" = 0 ] && ok "run 2 left no namespace" || bad "run 2 left namespaces"
check "run 1 untouched by down of run 2" ping4 "$A" bob 198.18.0.3

# --- sites -----------------------------------------------------------------------------------
check "up sites" "$LAB" up sites --run "$C"
check "up sites again (idempotent)" "$LAB" up sites --run "$C"
check "sites a1 -> b1 IPv4" ping4 "$C" a1 198.18.2.10
check "sites a1 -> b1 IPv6" ping6 "$C" a1 2001:db8:0:b::10
check "sites b1 -> a1 IPv4" ping4 "$C" b1 198.18.1.10
check "sites b1 -> a1 IPv6" ping6 "$C" b1 2001:db8:0:a::10
check "sites a1 -> gwb WAN" ping4 "$C" a1 198.18.0.2
vals=$(px "$C" gwa sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.eth0.rp_filter net.ipv4.conf.eth1.rp_filter | tr '\n' ' ')
[ "$vals" = "1 1 1 1 " ] && ok "gwa forwards with rp_filter 1" || bad "gwa sysctls $vals"
vals=$(px "$C" a1 sysctl -n net.ipv4.ip_forward | tr '\n' ' ')
[ "$vals" = "0 " ] && ok "a1 does not forward" || bad "a1 forwarding $vals"
check "sites configs" "$LAB" configs --run "$C"
check "gateway mode in gwa.yaml" grep -q '^mode: gateway' "$("$LAB" dir --run "$C")/configs/gwa.yaml"

# --- hub -------------------------------------------------------------------------------------
check "up hub --clients 3" "$LAB" up hub --run "$D" --clients 3
[ "$(count_ns "$D")" = 5 ] && ok "hub with 3 clients has 5 namespaces" || bad "hub has $(count_ns "$D") namespaces"
check "hub c3 -> server IPv4" ping4 "$D" c3 198.18.0.1
check "hub server -> c3 IPv6" ping6 "$D" server 2001:db8:0:1::4
check "hub configs" "$LAB" configs --run "$D"
check "hub: up with another client count is refused" bash -c "! '$LAB' up hub --run '$D' --clients 4"

# --- down, stale cleanup ---------------------------------------------------------------------
# A run whose owner is gone: a finished child process.
sleep 0 & DEAD=$!
wait "$DEAD"
check "up a run owned by a finished process" "$LAB" up lan --run "$E" --owner "$$"
EDIR=$("$LAB" dir --run "$E")
echo "$DEAD 1" >"$EDIR/owner"
check "down --all-stale" "$LAB" down --all-stale
[ "$(count_ns "$E")" = 0 ] && ok "stale run removed" || bad "stale run still has namespaces"
check "stale run dir removed" test ! -d "$EDIR"
[ "$(count_ns "$A")" = 5 ] && ok "live run kept by --all-stale" || bad "live run lost namespaces"

for r in "$A" "$C" "$D"; do
  check "down $r" "$LAB" down --run "$r" --purge
  check "down $r again (idempotent)" "$LAB" down --run "$r"
  [ "$(count_ns "$r")" = 0 ] && ok "$r left no namespace" || bad "$r left namespaces"
done

AFTER=$(root_snapshot)
[ "$BEFORE" = "$AFTER" ] && ok "root namespace unchanged (links, addresses, routes, sysctls)" || { bad "root namespace changed"; diff <(echo "$BEFORE") <(echo "$AFTER") || true; }

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
