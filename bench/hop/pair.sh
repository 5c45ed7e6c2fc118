# bench/hop/pair.sh: sourced by esp-hop.sh and esp-gso.sh. Two namespaces of the caller's own
# joined by a veth pair, a build directory, and their removal on exit.
#
#   hop_pair NAME OCTET   creates egl-<NAME><pid>-a and -b (in $A and $B), the veth pair
#                         eg<NAME>-a / eg<NAME>-b with 198.18.<OCTET>.1/24 in A and .2/24 in B,
#                         and $dir (mktemp); on EXIT, INT or TERM it ends the receiver whose pid
#                         is in $rpid (a process the caller started), deletes both namespaces
#                         and $dir. Pings once to check the pair.
hop_pair() {
  local name=$1 octet=$2
  A="egl-$name$$-a"
  B="egl-$name$$-b"
  dir=$(mktemp -d "/tmp/esp-$name.XXXXXX")
  rpid=""
  trap hop_cleanup EXIT
  trap 'exit 130' INT TERM
  ip netns add "$A"
  ip netns add "$B"
  ip link add "eg$name-a" netns "$A" type veth peer name "eg$name-b" netns "$B"
  ip -n "$A" addr add "198.18.$octet.1/24" dev "eg$name-a"
  ip -n "$B" addr add "198.18.$octet.2/24" dev "eg$name-b"
  for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
  ip -n "$A" link set "eg$name-a" up
  ip -n "$B" link set "eg$name-b" up
  ip netns exec "$A" ping -c 1 -W 2 -q "198.18.$octet.2" > /dev/null
}

hop_cleanup() {
  if [ -n "${rpid:-}" ]; then kill "$rpid" 2>/dev/null || true; fi
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$dir"
}
