#!/bin/bash
# bench/hop/esp-hop.sh: one receiving hop, three ways (root only; needs gcc, iptables and
# libnetfilter-queue-dev). Two namespaces of its own (egl-hop<pid>-a/-b, 198.18.99.0/24 on a
# veth pair); the sender in a sends ESP (protocol 50) or UDP 4500 packets at a ping's pace, and
# the receiver in b takes them through
#   nfq  an NFQUEUE rule (raw PREROUTING) and a reader that gives each packet a verdict (espgate)
#   raw  a raw IPPROTO_ESP socket, no rule (the candidate: docs/performance.md)
#   udp  a UDP socket on port 4500 (what OpenVPN and wireguard-go read)
# and prints, per mode and repetition, the one-way latency (sender's clock reading -> packet in
# the receiver's hands, median / p90 / p99) and the receiver's CPU per packet. The modes
# alternate within each repetition, so a noisy minute hits all three.
#
#   N=500 INTERVAL_US=10000 REPS=3 bash bench/hop/esp-hop.sh
#
# Bounded: every receiver stops after N packets or N * interval + 10 s; the namespaces and the
# build directory are removed on exit (trap), and only processes it started are ended, by pid.
set -euo pipefail
N=${N:-500}
INTERVAL_US=${INTERVAL_US:-10000}
REPS=${REPS:-3}
here=$(cd "$(dirname "$0")" && pwd)
A="egl-hop$$-a"
B="egl-hop$$-b"
dir=$(mktemp -d /tmp/esp-hop.XXXXXX)
rpid=""
cleanup() {
  if [ -n "$rpid" ]; then kill "$rpid" 2>/dev/null || true; fi
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

gcc -O2 -Wall -o "$dir/esp-hop" "$here/esp-hop.c" -lnetfilter_queue
ip netns add "$A"
ip netns add "$B"
ip link add eghop-a netns "$A" type veth peer name eghop-b netns "$B"
ip -n "$A" addr add 198.18.99.1/24 dev eghop-a
ip -n "$B" addr add 198.18.99.2/24 dev eghop-b
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set eghop-a up
ip -n "$B" link set eghop-b up
ip netns exec "$A" ping -c 1 -W 2 -q 198.18.99.2 > /dev/null

limit=$(( N * INTERVAL_US / 1000000 + 10 ))
echo "one receiving hop: $N packets of 64 bytes every $INTERVAL_US us, $REPS repetitions ($(date -u +%FT%TZ))"
for rep in $(seq 1 "$REPS"); do
  for mode in nfq raw udp; do
    proto=esp
    [ "$mode" = udp ] && proto=udp
    [ "$mode" = nfq ] && ip netns exec "$B" iptables -t raw -A PREROUTING -p esp -j NFQUEUE --queue-num 7
    ip netns exec "$B" "$dir/esp-hop" recv "$mode" "$N" "$limit" > "$dir/out" 2>&1 &
    rpid=$!
    for _ in $(seq 1 50); do grep -q ready "$dir/out" && break; sleep 0.1; done
    ip netns exec "$A" "$dir/esp-hop" send 198.18.99.2 $(( N + 20 )) "$INTERVAL_US" "$proto"
    wait "$rpid" || true
    rpid=""
    echo "rep $rep $(grep -v ready "$dir/out")"
    [ "$mode" = nfq ] && ip netns exec "$B" iptables -t raw -D PREROUTING -p esp -j NFQUEUE --queue-num 7
  done
done
