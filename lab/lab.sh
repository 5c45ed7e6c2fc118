#!/usr/bin/env bash
# lab.sh: the espgate network-namespace lab.
#
# Every host, router and the switch is a network namespace; nothing is created in the root
# namespace. Each segment is a bridge inside the switch namespace `egl-<run>-sw`, so a tcpdump
# on that bridge (`lab.sh capture`) sees every frame on the segment. Host interface ethN is one
# end of a veth pair whose other end, `<host>-eN`, is a port of the bridge.
#
# The topologies (addresses, peers, prefixes) are defined once, in lab/topology.ts; this script
# reads them through `node dist/lab/cli.js plan <topology>` (or lab/cli.ts through tsx when the
# build is missing or older than the sources).
#
# lan: alice, bob and carol protect their traffic to each other; dave is not a peer.
#
#   +-------------+ +-------------+ +-------------+ +-------------+
#   | alice       | | bob         | | carol       | | dave        |
#   | 198.18.0.1  | | 198.18.0.2  | | 198.18.0.3  | | 198.18.0.4  |
#   | 2001:db8:0: | | 2001:db8:0: | | 2001:db8:0: | | 2001:db8:0: |
#   |      1::1   | |      1::2   | |      1::3   | |      1::4   |
#   |  [eth0]     | |  [eth0]     | |  [eth0]     | |  [eth0]     |
#   +-----+-------+ +-----+-------+ +-----+-------+ +-----+-------+
#         |alice-e0       |bob-e0         |carol-e0       |dave-e0
#   +-----+---------------+---------------+---------------+-------+
#   | sw          br-lan  198.18.0.0/24  2001:db8:0:1::/64         |
#   +--------------------------------------------------------------+
#   fake prefixes (every peer): 198.19.0.0/24, 2001:db8:0:ff01::/64
#
# sites: two sites joined over a WAN; the gateways (espgate mode gateway) protect LAN-to-LAN
# traffic. The WAN addresses are only tunnel endpoints: gateway-to-gateway traffic is not
# protected, so there is no WAN prefix pair. Capture default: br-wan.
#
#   +------------+      +----------------+          +----------------+      +------------+
#   | a1         |      | gwa            |          | gwb            |      | b1         |
#   | .10 ::10   |      | eth1   eth0    |          | eth0   eth1    |      | .10 ::10   |
#   | [eth0]     |      | .1 ::1 .1 ::1  |          | .2 ::2 .1 ::1  |      | [eth0]     |
#   +--+---------+      +--+------+------+          +--+------+------+      +--+---------+
#      |a1-e0      gwa-e1  |      |gwa-e0        gwb-e0 |      | gwb-e1       |b1-e0
#   +--+-------------------+--+ +-+----------------------+-+ +--+-------------+----------+
#   | sw br-lana              | | sw br-wan                | | sw br-lanb                |
#   | 198.18.1.0/24           | | 198.18.0.0/24            | | 198.18.2.0/24             |
#   | 2001:db8:0:a::/64       | | 2001:db8:0:1::/64        | | 2001:db8:0:b::/64         |
#   +-------------------------+ +--------------------------+ +---------------------------+
#   a1, b1: default routes via their gateway (.1 / ::1); gateways forward (ip_forward=1).
#   gwa maps lanB 198.18.2.0/24 <-> 198.19.2.0/24, 2001:db8:0:b::/64 <-> 2001:db8:0:ff0b::/64
#   gwb maps lanA 198.18.1.0/24 <-> 198.19.1.0/24, 2001:db8:0:a::/64 <-> 2001:db8:0:ff0a::/64
#
# hub: a server and N clients (default 8, --clients N, at most 250) on one bridge; each client
# is a peer of the server only (clients do not protect traffic to each other).
#
#   +------------+ +------------+ +------------+       +--------------+
#   | server     | | c1         | | c2         |  ...  | cN           |
#   | .1  ::1    | | .2  ::2    | | .3  ::3    |       | .N+1 ::N+1   |
#   +-----+------+ +-----+------+ +-----+------+       +------+-------+
#         |server-e0     |c1-e0         |c2-e0                |cN-e0
#   +-----+--------------+--------------+---------------------+-------+
#   | sw          br-lan  198.18.0.0/24  2001:db8:0:1::/64            |
#   +-----------------------------------------------------------------+
#   (IPv6 host ids repeat the IPv4 number's digits: .12 <-> ::12.)
#
# nat: inside sits behind a home router that masquerades (IPv4 and IPv6) everything it forwards
# out of its WAN interface and forwards nothing new in from the WAN; outside is on the WAN.
# inside's endpoint for outside is 198.18.0.2; outside sees inside only as the router's .0.1,
# which is its endpoint for inside. Capture default: br-wan (only the router's address there).
#
#   +-------------+      +-------------------+      +-------------+
#   | inside      |      | router            |      | outside     |
#   | .3.10 ::10  |      | eth1       eth0   |      | .0.2 ::2    |
#   | [eth0]      |      | .3.1 ::1   .0.1 ::1|      | [eth0]      |
#   +--+----------+      +--+----------+-----+      +--+----------+
#      |inside-e0  router-e1|          |router-e0      |outside-e0
#   +--+--------------------+--+  +---+---------------+-----------+
#   | sw br-home               |  | sw br-wan                     |
#   | 198.18.3.0/24            |  | 198.18.0.0/24                 |
#   | 2001:db8:0:3::/64        |  | 2001:db8:0:1::/64             |
#   +--------------------------+  +-------------------------------+
#   inside, outside: default routes via the router (.3.1 / .0.1); router: MASQUERADE -o eth0.
#   inside maps 198.18.0.0/24 <-> 198.19.0.0/24, 2001:db8:0:1::/64 <-> 2001:db8:0:ff01::/64
#   outside maps 198.18.3.0/24 <-> 198.19.3.0/24, 2001:db8:0:3::/64 <-> 2001:db8:0:ff03::/64
#
# Usage: see `lab.sh help` or docs/lab.md.
#
# Runs: every namespace is egl-<run>-<host>. A run's state lives in $EGL_BASE/<run>/
# (default /tmp/espgate-lab/<run>/): topology, plan, owner, configs/, state/, logs/, pcap/,
# keys.uat. The owner is the process that asked for `up` (the caller of lab.sh, $PPID, or
# --owner PID); `down --all-stale` removes the namespaces and run dirs whose owner is gone.
# Without --run, the run id is $EGL_RUN or r<owner pid>, so successive calls from one shell or
# one test process find the same run.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_BASE=${EGL_BASE:-/tmp/espgate-lab}
NS_PREFIX=egl-
NETNS_DIR=/run/netns
# Bounds for every wait and capture.
CAPTURE_MAX_SECONDS=3600
KILL_WAIT_TENTHS=50       # wait up to 5 s for processes in a namespace to exit after SIGTERM
LOCK_WAIT_SECONDS=60

die() { echo "lab.sh: $*" >&2; exit 1; }
note() { echo "lab.sh: $*" >&2; }

usage() {
  cat <<'EOF'
usage: lab/lab.sh <command> [options]

  up <lan|sites|hub|nat> [--run ID] [--clients N] [--owner PID]
                               create the topology (idempotent); prints the run id
  down [--run ID] [--purge]    stop processes in the run's namespaces and delete them
                               (--purge also removes the run dir)
  down --all-stale             delete every egl-* namespace and run dir whose owner is gone
  exec [--run ID] <host> -- <cmd...>
                               run a command inside a host's namespace (host "sw" = switch)
  list                         list runs and lab namespaces
  capture [--run ID] [--segment S] <file> [seconds]
                               tcpdump on a segment's bridge in the switch (default: the
                               topology's capture segment; 10 s by default, at most 3600)
                               a file name without '/' goes to <rundir>/pcap/
  configs [--run ID] [--outer 4|6] [--ike|--static] [--inbound socket|queue]
                               write espgate configs for every protected host and keys.uat
                               (IKEv2 peers with a PSK per peering by default, or --ike;
                               --static: static SAs, whose keys go into keys.uat)
  decode [--run ID] <pcap> [-- <tshark args...>]
                               tshark the capture, decrypting ESP with the run's keys.uat
  inject [--run ID] <host> <peer> [-- <esp-probe options>]
                               send ESP sealed by lab/esp-probe.ts (not by espgate) from <host>
                               to <peer> with <host>'s out SA: inner ICMP echo request(s);
                               options: --family 4|6 --count N --seq S --src A --dst A
  ns [--run ID] <host>         print a host's namespace name
  dir [--run ID]               print the run dir
  plan <lan|sites|hub|nat> [--clients N]
                               print the topology plan (from lab/topology.ts)

Without --run the run id is $EGL_RUN, else r<caller pid>.
EOF
}

# ------------------------------------------------------------------------------------------
# Helpers.

valid_run_id() { [[ $1 =~ ^[a-z0-9]{1,12}$ ]]; }
valid_host() { [[ $1 =~ ^[a-z][a-z0-9]{0,9}$ ]]; }

# pid_starttime PID: the process start time (clock ticks since boot), empty if no such process.
pid_starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # Field 22; the comm field (2) may contain spaces, so cut after the last ')'.
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

# owner_alive RUNDIR: whether the run's recorded owner process still exists (same start time).
owner_alive() {
  local f=$1/owner pid start now
  [ -f "$f" ] || return 1
  read -r pid start <"$f" || return 1
  [ -n "${pid:-}" ] || return 1
  now=$(pid_starttime "$pid")
  [ -n "$now" ] && [ "$now" = "${start:-}" ]
}

ns_exists() { [ -e "$NETNS_DIR/$1" ]; }

# run_namespaces RUN: the lab namespaces of a run, one per line.
run_namespaces() {
  local f
  for f in "$NETNS_DIR/$NS_PREFIX$1"-*; do
    [ -e "$f" ] || continue
    basename "$f"
  done
}

# all_lab_namespaces: every namespace with the lab prefix, one per line.
all_lab_namespaces() {
  local f
  for f in "$NETNS_DIR/$NS_PREFIX"*; do
    [ -e "$f" ] || continue
    basename "$f"
  done
}

# lab_cli ARGS...: run lab/cli (compiled if the build is current, else through tsx;
# EGL_LAB_CLI=src forces the sources).
lab_cli() {
  local js=$ROOT/dist/lab/cli.js stale=0 src
  if [ "${EGL_LAB_CLI:-}" = src ]; then
    stale=1
  elif [ -f "$js" ]; then
    for src in "$ROOT"/lab/*.ts; do
      case $src in *.test.ts) continue ;; esac
      if [ "$src" -nt "$js" ]; then stale=1; break; fi
    done
  else
    stale=1
  fi
  if [ "$stale" = 0 ]; then
    node "$js" "$@"
  else
    (cd "$ROOT" && node --import tsx "$ROOT/lab/cli.ts" "$@")
  fi
}

# ns_sysctl NS KEY=VALUE...: set sysctls inside a namespace.
ns_sysctl() {
  local ns=$1; shift
  ip netns exec "$ns" sysctl -q -w "$@" >/dev/null
}

# kill_ns_processes NS: SIGTERM every process in the namespace, wait (bounded), then SIGKILL.
# These are processes the lab's users started inside the lab's own namespaces.
kill_ns_processes() {
  local ns=$1 pids i
  pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ') || true
  [ -n "${pids// /}" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < KILL_WAIT_TENTHS; i++)); do
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ') || true
    [ -n "${pids// /}" ] || return 0
    sleep 0.1
  done
  note "$ns: processes still running after SIGTERM, sending SIGKILL: $pids"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

delete_namespace() {
  local ns=$1
  kill_ns_processes "$ns"
  ip netns del "$ns" 2>/dev/null || true
  if ns_exists "$ns"; then note "could not delete namespace $ns"; return 1; fi
}

# ------------------------------------------------------------------------------------------
# Option parsing shared by the commands.

# default_owner: the caller's pid; through sudo, the pid of sudo's caller (sudo exits at once).
default_owner() {
  local pid=$PPID comm parent
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  if [ "$comm" = sudo ]; then
    # /proc/PID/stat after the comm field reads "state ppid ...".
    parent=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $2}') || true
    if [[ ${parent:-} =~ ^[0-9]+$ ]] && [ "$parent" -gt 1 ]; then pid=$parent; fi
  fi
  echo "$pid"
}

OPT_RUN=${EGL_RUN:-}
OPT_OWNER=${EGL_OWNER_PID:-$(default_owner)}
OPT_CLIENTS=
OPT_PURGE=0
OPT_ALL_STALE=0
OPT_OUTER=4
OPT_KEYING=
OPT_INBOUND=
OPT_SEGMENT=
ARGS=()
REST=()

parse_opts() {
  while [ $# -gt 0 ]; do
    case $1 in
      --run) [ $# -ge 2 ] || die "--run needs a value"; OPT_RUN=$2; shift 2 ;;
      --run=*) OPT_RUN=${1#--run=}; shift ;;
      --owner) [ $# -ge 2 ] || die "--owner needs a value"; OPT_OWNER=$2; shift 2 ;;
      --clients) [ $# -ge 2 ] || die "--clients needs a value"; OPT_CLIENTS=$2; shift 2 ;;
      --clients=*) OPT_CLIENTS=${1#--clients=}; shift ;;
      --outer) [ $# -ge 2 ] || die "--outer needs a value"; OPT_OUTER=$2; shift 2 ;;
      --segment) [ $# -ge 2 ] || die "--segment needs a value"; OPT_SEGMENT=$2; shift 2 ;;
      --inbound) [ $# -ge 2 ] || die "--inbound needs a value"; OPT_INBOUND=$2; shift 2 ;;
      --ike) OPT_KEYING=ike; shift ;;
      --static) OPT_KEYING=static; shift ;;
      --purge) OPT_PURGE=1; shift ;;
      --all-stale) OPT_ALL_STALE=1; shift ;;
      --) shift; REST=("$@"); return 0 ;;
      -h|--help) usage; exit 0 ;;
      -*) die "unknown option $1" ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
}

# resolve_run [create]: sets RUN and RUN_DIR. Without "create", the run dir must exist.
resolve_run() {
  RUN=$OPT_RUN
  [[ $OPT_OWNER =~ ^[0-9]+$ ]] || die "bad owner pid $OPT_OWNER"
  if [ -z "$RUN" ]; then RUN=r$OPT_OWNER; fi
  valid_run_id "$RUN" || die "bad run id '$RUN' (1-12 of [a-z0-9])"
  RUN_DIR=$LAB_BASE/$RUN
  if [ "${1:-}" != create ] && [ ! -d "$RUN_DIR" ]; then
    local known
    known=$(find "$LAB_BASE" -mindepth 1 -maxdepth 1 -type d -printf '%f ' 2>/dev/null) || true
    die "no run '$RUN' (run dir $RUN_DIR missing); give --run ID or set EGL_RUN. Known runs: ${known:-none}"
  fi
}

ns_of() { echo "$NS_PREFIX$RUN-$1"; }

# lock_run: serialize commands that change a run (held until the script exits).
lock_run() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock -w "$LOCK_WAIT_SECONDS" 9 || die "run $RUN is locked by another lab.sh"
}

# ------------------------------------------------------------------------------------------
# up

# prepare_namespace NS FORWARDING(0|1) IS_SWITCH(0|1): create (if absent) and set sysctls.
prepare_namespace() {
  local ns=$1 fwd=$2 is_sw=$3
  if ! ns_exists "$ns"; then ip netns add "$ns"; fi
  # Defaults first so that interfaces created later inherit them.
  ns_sysctl "$ns" \
    net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1 \
    net.ipv4.ip_forward="$fwd"
  if [ "$is_sw" = 1 ]; then
    # The switch has no addresses: no IPv6 on its ports (no RS/MLD noise in captures).
    ns_sysctl "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    # If br_netfilter is loaded, keep bridged frames away from the switch's (empty) iptables.
    local k
    for k in bridge-nf-call-iptables bridge-nf-call-ip6tables bridge-nf-call-arptables; do
      if ip netns exec "$ns" test -e "/proc/sys/net/bridge/$k"; then ns_sysctl "$ns" "net.bridge.$k=0"; fi
    done
  else
    ns_sysctl "$ns" \
      net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
      net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
      net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0 \
      net.ipv6.conf.all.forwarding="$fwd"
    if [ "$fwd" = 1 ]; then
      ns_sysctl "$ns" net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0
    fi
  fi
  ip -n "$ns" link set lo up
}

# ensure_rule NS CMD TABLE RULE...: append an iptables/ip6tables rule in a namespace unless it is there.
ensure_rule() {
  local ns=$1 cmd=$2 table=$3; shift 3
  ip netns exec "$ns" "$cmd" -w 10 -t "$table" -C "$@" 2>/dev/null ||
    ip netns exec "$ns" "$cmd" -w 10 -t "$table" -A "$@"
}

# masquerade NS IFACE: a home router on IFACE (both families): forwarded packets leaving by it
# get the interface's address; of those coming in by it, only replies (ESTABLISHED, RELATED) are
# forwarded. The router's own INPUT is left open (it is a lab router, not a firewall test).
masquerade() {
  local ns=$1 ifc=$2 cmd
  for cmd in iptables ip6tables; do
    ensure_rule "$ns" "$cmd" nat POSTROUTING -o "$ifc" -j MASQUERADE
    ensure_rule "$ns" "$cmd" filter FORWARD -i "$ifc" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    ensure_rule "$ns" "$cmd" filter FORWARD -i "$ifc" -j DROP
  done
}

cmd_up() {
  [ ${#ARGS[@]} -eq 1 ] || die "usage: up <lan|sites|hub|nat> [--run ID] [--clients N]"
  local topo=${ARGS[0]}
  case $topo in lan|sites|hub|nat) ;; *) die "unknown topology $topo" ;; esac
  if [ -n "$OPT_CLIENTS" ] && [ "$topo" != hub ]; then die "--clients is for the hub topology"; fi
  resolve_run create
  lock_run
  local clients_arg=()
  if [ -n "$OPT_CLIENTS" ]; then clients_arg=(--clients "$OPT_CLIENTS"); fi

  if [ -f "$RUN_DIR/topology" ]; then
    local had had_clients
    had=$(cat "$RUN_DIR/topology")
    had_clients=$(cat "$RUN_DIR/clients" 2>/dev/null || true)
    [ "$had" = "$topo" ] || die "run $RUN already holds topology $had (down it first or use another --run)"
    if [ -z "$OPT_CLIENTS" ]; then
      if [ -n "$had_clients" ]; then clients_arg=(--clients "$had_clients"); fi
    elif [ "$had_clients" != "$OPT_CLIENTS" ]; then
      die "run $RUN was created with --clients ${had_clients:-default}"
    fi
  fi

  local plan
  plan=$(lab_cli plan "$topo" "${clients_arg[@]}") || die "cannot read the topology plan"
  mkdir -p "$RUN_DIR"/{configs,state,logs,pcap}
  echo "$topo" >"$RUN_DIR/topology"
  if [ ${#clients_arg[@]} -gt 0 ]; then echo "${clients_arg[1]}" >"$RUN_DIR/clients"; fi
  printf '%s\n' "$plan" >"$RUN_DIR/plan"
  if ! owner_alive "$RUN_DIR"; then
    local start
    start=$(pid_starttime "$OPT_OWNER")
    [ -n "$start" ] || die "owner pid $OPT_OWNER does not exist"
    echo "$OPT_OWNER $start" >"$RUN_DIR/owner"
  fi

  local sw
  sw=$(ns_of sw)
  prepare_namespace "$sw" 0 1

  local kind a b c d e f g
  # Pass 1: segments (bridges) and host namespaces.
  while read -r kind a b c d e f g; do
    case $kind in
      segment)
        if ! ip -n "$sw" link show "$b" >/dev/null 2>&1; then
          ip -n "$sw" link add "$b" type bridge stp_state 0 mcast_snooping 0
        fi
        ip -n "$sw" link set "$b" up
        ;;
      host)
        prepare_namespace "$(ns_of "$a")" "$c" 0
        ;;
    esac
  done <<<"$plan"

  # Pass 2: links, then routes.
  local hns
  while read -r kind a b c d e f g; do
    case $kind in
      link)
        # link <host> <ifname> <segment> <bridge> <switch-port> <v4/len> <v6/len>
        hns=$(ns_of "$a")
        if ! ip -n "$hns" link show "$b" >/dev/null 2>&1; then
          # A half-made pair (port without its host end) is removed first.
          ip -n "$sw" link del "$e" >/dev/null 2>&1 || true
          # Created inside the switch, the peer end born inside the host: nothing in the root ns.
          ip -n "$sw" link add "$e" type veth peer name "$b" netns "$hns"
        fi
        ip -n "$sw" link set "$e" master "$d"
        ip -n "$sw" link set "$e" up
        ns_sysctl "$hns" "net.ipv4.conf.$b.rp_filter=1" "net.ipv6.conf.$b.accept_dad=0"
        ip -n "$hns" addr replace "$f" dev "$b"
        ip -n "$hns" -6 addr replace "$g" dev "$b" nodad
        ip -n "$hns" link set "$b" up
        ;;
      route)
        # route <host> <4|6> <dst|default> <via>
        ip -n "$(ns_of "$a")" -"$b" route replace "$c" via "$d"
        ;;
      masquerade)
        # masquerade <host> <ifname>
        masquerade "$(ns_of "$a")" "$b"
        ;;
    esac
  done <<<"$plan"

  echo "$RUN"
  note "run $RUN: topology $topo up; run dir $RUN_DIR"
}

# ------------------------------------------------------------------------------------------
# down

cmd_down() {
  if [ "$OPT_ALL_STALE" = 1 ]; then
    [ -z "$OPT_RUN" ] || die "--all-stale and --run do not go together"
    down_all_stale
    return 0
  fi
  [ ${#ARGS[@]} -eq 0 ] || die "usage: down [--run ID] [--purge]"
  RUN=${OPT_RUN:-r$OPT_OWNER}
  valid_run_id "$RUN" || die "bad run id '$RUN'"
  RUN_DIR=$LAB_BASE/$RUN
  local ns failed=0 sw
  if [ -d "$RUN_DIR" ]; then lock_run; fi
  sw=$(ns_of sw)
  # Hosts first (their daemons get SIGTERM and clean up), the switch last.
  for ns in $(run_namespaces "$RUN"); do
    [ "$ns" = "$sw" ] && continue
    delete_namespace "$ns" || failed=1
  done
  if ns_exists "$sw"; then delete_namespace "$sw" || failed=1; fi
  if [ "$OPT_PURGE" = 1 ] && [ -d "$RUN_DIR" ]; then rm -rf -- "$RUN_DIR"; fi
  [ "$failed" = 0 ] || die "run $RUN: some namespaces could not be deleted"
  note "run $RUN: down"
}

down_all_stale() {
  local ns rest run dir removed=0
  for ns in $(all_lab_namespaces); do
    rest=${ns#"$NS_PREFIX"}
    run=${rest%%-*}
    dir=$LAB_BASE/$run
    if valid_run_id "$run" && [ -d "$dir" ] && owner_alive "$dir"; then continue; fi
    note "deleting stale namespace $ns"
    delete_namespace "$ns" || true
    removed=$((removed + 1))
  done
  if [ -d "$LAB_BASE" ]; then
    for dir in "$LAB_BASE"/*/; do
      [ -d "$dir" ] || continue
      dir=${dir%/}
      run=$(basename "$dir")
      valid_run_id "$run" || continue
      owner_alive "$dir" && continue
      if [ -n "$(run_namespaces "$run")" ]; then continue; fi
      note "removing stale run dir $dir"
      rm -rf -- "$dir"
    done
  fi
  note "stale namespaces deleted: $removed"
}

# ------------------------------------------------------------------------------------------
# exec, list, capture, configs, decode

cmd_exec() {
  if [ ${#ARGS[@]} -ne 1 ] || [ ${#REST[@]} -lt 1 ]; then die "usage: exec [--run ID] <host> -- <cmd...>"; fi
  resolve_run
  valid_host "${ARGS[0]}" || die "bad host name ${ARGS[0]}"
  local ns
  ns=$(ns_of "${ARGS[0]}")
  ns_exists "$ns" || die "no namespace $ns (is run $RUN up? hosts: $(awk '$1=="host"{printf "%s ",$2}' "$RUN_DIR/plan" 2>/dev/null)sw)"
  export EGL_RUN=$RUN EGL_RUN_DIR=$RUN_DIR EGL_HOST=${ARGS[0]}
  # `ip netns exec` execs the command: the caller's $! is the command's pid.
  exec ip netns exec "$ns" "${REST[@]}"
}

cmd_list() {
  local dir run topo owner state count
  printf '%-14s %-8s %-18s %-5s %s\n' RUN TOPOLOGY OWNER NS DIR
  if [ -d "$LAB_BASE" ]; then
    for dir in "$LAB_BASE"/*/; do
      [ -d "$dir" ] || continue
      dir=${dir%/}
      run=$(basename "$dir")
      valid_run_id "$run" || continue
      topo=$(cat "$dir/topology" 2>/dev/null || echo '?')
      owner=$(awk '{print $1}' "$dir/owner" 2>/dev/null || echo '?')
      if owner_alive "$dir"; then state=alive; else state=gone; fi
      count=$(run_namespaces "$run" | wc -l)
      printf '%-14s %-8s %-18s %-5s %s\n' "$run" "$topo" "$owner ($state)" "$count" "$dir"
    done
  fi
  local ns orphans=()
  for ns in $(all_lab_namespaces); do
    run=${ns#"$NS_PREFIX"}
    run=${run%%-*}
    [ -d "$LAB_BASE/$run" ] || orphans+=("$ns")
  done
  if [ ${#orphans[@]} -gt 0 ]; then
    echo "namespaces without a run dir (down --all-stale removes them): ${orphans[*]}"
  fi
}

# segment_bridge SEGMENT: the bridge of a segment in the run's plan.
segment_bridge() {
  awk -v s="$1" '$1=="segment" && $2==s {print $3}' "$RUN_DIR/plan"
}

cmd_capture() {
  if [ ${#ARGS[@]} -lt 1 ] || [ ${#ARGS[@]} -gt 2 ]; then die "usage: capture [--run ID] [--segment S] <file> [seconds]"; fi
  resolve_run
  local file=${ARGS[0]} secs=${ARGS[1]:-10} seg br sw
  if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || [ "$secs" -gt "$CAPTURE_MAX_SECONDS" ]; then
    die "seconds must be 1..$CAPTURE_MAX_SECONDS"
  fi
  if [ -n "$OPT_SEGMENT" ]; then seg=$OPT_SEGMENT; else seg=$(awk '$1=="capture"{print $2}' "$RUN_DIR/plan"); fi
  br=$(segment_bridge "$seg")
  [ -n "$br" ] || die "no segment $seg in run $RUN"
  case $file in */*) ;; *) file=$RUN_DIR/pcap/$file ;; esac
  mkdir -p "$(dirname "$file")"
  sw=$(ns_of sw)
  ns_exists "$sw" || die "run $RUN is not up"
  note "capturing on $br (segment $seg) for at most $secs s into $file"
  # timeout forwards SIGTERM/SIGINT to tcpdump, which then flushes and exits; -U writes each
  # packet as it arrives and --immediate-mode hands it over at once (no buffering block to lose
  # on SIGTERM), so a reader sees it at once; -Z root keeps write access to the run dir.
  exec timeout "$secs" ip netns exec "$sw" tcpdump -n -i "$br" --immediate-mode -U -Z root -w "$file"
}

cmd_configs() {
  [ ${#ARGS[@]} -eq 0 ] || die "usage: configs [--run ID] [--outer 4|6] [--ike|--static] [--inbound socket|queue]"
  resolve_run
  lock_run
  local topo clients_arg=() keying_arg=() inbound_arg=()
  topo=$(cat "$RUN_DIR/topology")
  if [ -f "$RUN_DIR/clients" ]; then clients_arg=(--clients "$(cat "$RUN_DIR/clients")"); fi
  if [ -n "$OPT_KEYING" ]; then keying_arg=(--keying "$OPT_KEYING"); fi
  if [ -n "$OPT_INBOUND" ]; then inbound_arg=(--inbound "$OPT_INBOUND"); fi
  lab_cli configs "$topo" "$RUN_DIR" "${clients_arg[@]}" --outer "$OPT_OUTER" "${keying_arg[@]}" "${inbound_arg[@]}"
}

# uat_opts FILE: prints tshark -o arguments, NUL-separated, for every record in a keys.uat.
uat_opts() {
  local line
  printf '%s\0' -o esp.enable_encryption_decode:TRUE
  while IFS= read -r line; do
    case $line in '#'*|'') continue ;; esac
    printf '%s\0' -o "uat:esp_sa:$line"
  done <"$1"
}

cmd_decode() {
  [ ${#ARGS[@]} -eq 1 ] || die "usage: decode [--run ID] <pcap> [-- <tshark args...>]"
  resolve_run
  local file=${ARGS[0]} opts=()
  case $file in */*) ;; *) file=$RUN_DIR/pcap/$file ;; esac
  [ -f "$file" ] || die "no capture $file"
  [ -f "$RUN_DIR/keys.uat" ] || die "no $RUN_DIR/keys.uat (run: lab.sh configs)"
  mapfile -d '' opts < <(uat_opts "$RUN_DIR/keys.uat")
  exec tshark -n -r "$file" "${opts[@]}" "${REST[@]}"
}

# Sends "<endpoint> <hex>" lines from stdin as raw IPPROTO_ESP (50) datagrams.
ESP_SEND_PY='
import socket, sys
n = 0
for line in sys.stdin:
    ep, payload = line.split()
    fam = socket.AF_INET6 if ":" in ep else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_RAW, 50)
    s.sendto(bytes.fromhex(payload), (ep, 0))
    s.close()
    n += 1
print("sent %d ESP packet(s)" % n, file=sys.stderr)
'

cmd_inject() {
  [ ${#ARGS[@]} -eq 2 ] || die "usage: inject [--run ID] <host> <peer> [-- <esp-probe options>]"
  resolve_run
  local host=${ARGS[0]} peer=${ARGS[1]} cfg probes
  valid_host "$host" || die "bad host name $host"
  cfg=$RUN_DIR/configs/$host.yaml
  [ -f "$cfg" ] || die "no config $cfg (run: lab.sh configs)"
  ns_exists "$(ns_of "$host")" || die "run $RUN is not up"
  probes=$(lab_cli esp-probe "$cfg" "$peer" "${REST[@]}") || die "esp-probe failed"
  ip netns exec "$(ns_of "$host")" python3 -c "$ESP_SEND_PY" <<<"$probes"
}

# ------------------------------------------------------------------------------------------

main() {
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local cmd=$1; shift
  case $cmd in
    help|-h|--help) usage; return 0 ;;
    list|plan) ;;
    *) [ "$(id -u)" = 0 ] || die "$cmd needs root (network namespaces)" ;;
  esac
  parse_opts "$@"
  case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    exec) cmd_exec ;;
    list) cmd_list ;;
    capture) cmd_capture ;;
    configs) cmd_configs ;;
    decode) cmd_decode ;;
    inject) cmd_inject ;;
    ns) [ ${#ARGS[@]} -eq 1 ] || die "usage: ns [--run ID] <host>"; resolve_run; ns_of "${ARGS[0]}" ;;
    dir) resolve_run; echo "$RUN_DIR" ;;
    plan)
      [ ${#ARGS[@]} -eq 1 ] || die "usage: plan <topology> [--clients N]"
      if [ -n "$OPT_CLIENTS" ]; then lab_cli plan "${ARGS[0]}" --clients "$OPT_CLIENTS"; else lab_cli plan "${ARGS[0]}"; fi
      ;;
    *) usage >&2; die "unknown command $cmd" ;;
  esac
}

main "$@"
