#!/bin/bash
# bench/hop/esp-gso.sh: the kernel's per-packet cost of small ESP packets, sent and received
# four ways (root only; needs gcc and iproute2). Two namespaces of its own (egl-gso<pid>-a/-b,
# 198.18.98.0/24 on a veth pair); a blasts SIZE-byte datagrams at b for DUR seconds:
#   raw -> raw  protocol-50 raw sockets both ends, sendmmsg/recvmmsg of 64 (espgate's sender;
#               its receiver is NFQUEUE by default, docs/io.md compares that with raw sockets)
#   udp -> udp  ESP in UDP 4500 (RFC 3948), one datagram per packet, sendmmsg/recvmmsg of 64
#   gso -> udp  the sender hands 64 datagrams per sendmsg to UDP_SEGMENT; the receiver reads
#               them one by one (the kernel splits the train at the UDP socket)
#   gso -> gro  the same trains, read with UDP_GRO: one recvmsg per train
# and prints, per pair and repetition, packets/s received and each side's CPU per packet. The
# pairs alternate within each repetition, so a noisy minute hits all four. No crypto: this is
# the kernel's share only (docs/performance.md, ninth session, has the numbers).
#
#   DUR=5 SIZE=128 REPS=3 bash bench/hop/esp-gso.sh
#
# Bounded: every sender stops after DUR s and every receiver after DUR + 3 s; the namespaces
# and the build directory are removed on exit (trap); only processes it started are ended, by pid.
set -euo pipefail
DUR=${DUR:-5}
SIZE=${SIZE:-128}
REPS=${REPS:-3}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pair.sh
. "$here/pair.sh"
hop_pair gso 98
gcc -O2 -Wall -o "$dir/esp-gso" "$here/esp-gso.c"
# Protocol 50 with no IPsec state: the receiver's kernel would answer every raw ESP packet with
# ICMP protocol-unreachable; that answer is not part of what is measured.
ip netns exec "$B" iptables -A OUTPUT -p icmp --icmp-type destination-unreachable -j DROP
echo "size $SIZE bytes, $DUR s per run, kernel $(uname -r), $(nproc) CPUs"
for rep in $(seq 1 "$REPS"); do
  for pair in raw:raw udp:udp gso:udp gso:gro; do
    s=${pair%%:*} r=${pair##*:}
    ip netns exec "$B" timeout $((DUR + 5)) "$dir/esp-gso" recv "$r" $((DUR + 3)) > "$dir/recv.out" &
    rpid=$!
    for _ in $(seq 1 50); do grep -q ready "$dir/recv.out" 2>/dev/null && break; sleep 0.1; done
    sl=$(ip netns exec "$A" timeout $((DUR + 5)) "$dir/esp-gso" send "$s" 198.18.98.2 "$DUR" "$SIZE")
    wait "$rpid" || true
    rpid=""
    rl=$(grep -v ready "$dir/recv.out")
    printf 'rep %s  %-10s sent: %s | received: %s\n' "$rep" "$s->$r" "${sl#* }" "${rl#* }"
  done
done
