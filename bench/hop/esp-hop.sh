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
# shellcheck source=pair.sh
. "$here/pair.sh"
hop_pair hop 99
gcc -O2 -Wall -o "$dir/esp-hop" "$here/esp-hop.c" -lnetfilter_queue

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
