/**
 * cli/doctor.ts: the system checks `espgate check` runs after the config checks: the common
 * operator mistakes, each with what to do about it. Read-only: nothing here changes the host.
 *
 *   fail  `espgate up` cannot work: missing /dev/net/tun, a missing tool, a tunnel MTU below
 *         what IP needs, a fake prefix that is already routed to a real network, a configured
 *         rules backend (nftables) that nft or the kernel cannot provide
 *   warn  it may not work, or works differently than expected: no route to a peer's endpoint
 *         yet, nfnetlink_queue not loaded yet, not enough privileges for this process, a
 *         net.core.rmem_max below the NAT-T socket's buffer (IKE peers)
 *   ok    checked and fine; the rules backend line says which backend installs the gate and why
 *
 * The probes sit behind an interface so that the checks are tested without root (doctor.test.ts).
 */
import type { Config } from '../config/load.js';
import { tunMtuFor } from '../daemon/daemon.js';
import { GatewayError } from '../errors.js';
import { buildRulesSpec } from '../netfilter/model.js';
import type { BackendChoice, NftProbe } from '../netfilter/nft-probe.js';
import { chooseBackend, describeBackend } from '../netfilter/nft-probe.js';
import { nftTableName } from '../netfilter/nft-render.js';
import { rulesInputOf } from '../daemon/rules-input.js';
import { UDP_ENCAP_RCVBUF } from '../io/udp-encap.js';

/** CheckLevel orders the outcomes. */
export type CheckLevel = 'ok' | 'warn' | 'fail';

/** CheckResult is one line of the report. */
export interface CheckResult {
  readonly level: CheckLevel;
  readonly what: string;
  /** fix says what to do (warn and fail). */
  readonly fix?: string;
}

/** RouteInfo is what `ip route get` says about an address (undefined: no route). */
export interface RouteInfo {
  readonly type: string;
  readonly dev?: string;
  readonly mtu: number;
}

/** CoveringRoute is one route that matches an address (`ip route show match`). */
export interface CoveringRoute {
  /** dst is the route's prefix, or "default". */
  readonly dst: string;
  readonly dev?: string;
  /** type is "unicast" unless the route says otherwise (blackhole, unreachable, ...). */
  readonly type: string;
}

/** DoctorProbes are the read-only questions the checks ask the host. */
export interface DoctorProbes {
  exists(path: string): boolean;
  hasTool(name: string): boolean;
  /** route is the route `ip route get` picks for an address, with its device's MTU. */
  route(address: string): Promise<RouteInfo | undefined>;
  /** covering lists every route that matches an address. */
  covering(address: string): Promise<CoveringRoute[]>;
  missingCapabilities(): string[];
  /** nftables probes nft and the kernel (nft-probe.ts); asked only when rules.backend is not iptables. */
  nftables(): Promise<NftProbe>;
  /** rmemMax is net.core.rmem_max (bytes), undefined when unreadable; asked only with IKE peers. */
  rmemMax?(): number | undefined;
}

/** backendCheck chooses the rules backend and reports it as one line; choice is undefined when none can work. */
export async function backendCheck(cfg: Config, p: DoctorProbes): Promise<{ result: CheckResult; choice: BackendChoice | undefined }> {
  const table = nftTableName(buildRulesSpec(rulesInputOf(cfg)).tag);
  const probe: NftProbe = cfg.rules.backend === 'iptables'
    ? { version: undefined, rest: { result: 'ok' }, queue: { result: 'ok' }, iptables: true }
    : await p.nftables();
  try {
    const choice = chooseBackend(cfg.rules.backend, probe, cfg.inbound);
    const undecided = cfg.rules.backend === 'auto' && probe.version !== undefined && probe.rest.result === 'unknown';
    return {
      choice,
      result: undecided
        ? { level: 'warn', what: describeBackend(choice, table), fix: 'run espgate check as root to see the backend espgate up will use' }
        : { level: 'ok', what: describeBackend(choice, table) },
    };
  } catch (e) {
    if (!GatewayError.isGatewayError(e)) throw e;
    return { choice: undefined, result: { level: 'fail', what: e.message, fix: 'install nftables (and iptables for the queue fallback), or set rules.backend: iptables (or auto)' } };
  }
}

/** IPV6_MIN_MTU: RFC 8200 §5; IPV4_MIN_MTU: RFC 791's 576 datagram every host must accept. */
const IPV6_MIN_MTU = 1280;
const IPV4_MIN_MTU = 576;

/** firstAddressOf returns the network address of a CIDR plus one ("198.19.0.0/24" -> "198.19.0.1"). */
export function firstAddressOf(cidr: string): string {
  const base = cidr.split('/')[0] ?? '';
  if (base.includes(':')) return base.endsWith('::') ? `${base}1` : base;
  const parts = base.split('.').map(Number);
  parts[3] = (parts[3] ?? 0) + 1;
  return parts.join('.');
}

/** runDoctor runs every check for cfg and returns the report, in a fixed order. */
export async function runDoctor(cfg: Config, p: DoctorProbes): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const v6 = cfg.prefixes.some((x) => x.real.includes(':')) || cfg.peers.some((x) => x.endpoint.includes(':'));
  const v4 = cfg.prefixes.some((x) => !x.real.includes(':')) || cfg.peers.some((x) => !x.endpoint.includes(':'));

  out.push(p.exists('/dev/net/tun')
    ? { level: 'ok', what: '/dev/net/tun present' }
    : { level: 'fail', what: '/dev/net/tun is missing: no TUN support', fix: "modprobe tun (CONFIG_TUN); in a container, pass the device in (--device /dev/net/tun)" });

  if (cfg.inbound === 'queue') {
    out.push(p.exists('/proc/net/netfilter/nfnetlink_queue')
      ? { level: 'ok', what: 'NFQUEUE (nfnetlink_queue) loaded' }
      : { level: 'warn', what: 'nfnetlink_queue is not loaded yet', fix: 'the kernel loads it when espgate binds its queue; if that fails: modprobe nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE)' });
  } else {
    out.push({ level: 'ok', what: 'inbound ESP: raw ESP sockets (inbound: socket): no NFQUEUE needed' });
  }

  const backend = await backendCheck(cfg, p);
  out.push(backend.result);
  const nft = backend.choice?.backend === 'nftables';
  // With nft, iptables is needed only for the queue fallback (inbound: queue, no nft queue).
  const viaIptables = !nft || (cfg.inbound === 'queue' && backend.choice?.nativeQueue === false);
  const tools = [
    'ip', ...(nft ? ['nft'] : ['ipset']),
    ...(viaIptables && v4 ? (nft ? ['iptables-restore', 'iptables-save'] : ['iptables', 'iptables-restore', 'iptables-save']) : []),
    ...(viaIptables && v6 ? (nft ? ['ip6tables-restore', 'ip6tables-save'] : ['ip6tables', 'ip6tables-restore', 'ip6tables-save']) : []),
  ];
  const missing = tools.filter((t) => !p.hasTool(t));
  out.push(missing.length === 0
    ? { level: 'ok', what: `tools present: ${tools.join(' ')}` }
    : { level: 'fail', what: `missing tools: ${missing.join(' ')}`, fix: nft ? 'apt install iproute2 nftables iptables (Debian/Ubuntu); dnf install iproute nftables iptables-nft (Fedora/RHEL)' : 'apt install iproute2 iptables ipset (Debian/Ubuntu); dnf install iproute iptables-nft ipset (Fedora/RHEL)' });

  out.push(p.hasTool('conntrack')
    ? { level: 'ok', what: 'conntrack(8) present: the install moves flows that began before the gate into the tunnel' }
    : { level: 'warn', what: 'conntrack(8) is not installed: a flow to a peer that began before the gate stays blocked until its conntrack entry expires', fix: 'apt install conntrack (Debian/Ubuntu); dnf install conntrack-tools (Fedora/RHEL)' });

  // IKE peers mean a NAT-T socket (UDP 4500), whose receive buffer the kernel caps at rmem_max.
  const rmem = cfg.peers.some((x) => x.ike !== undefined) ? p.rmemMax?.() : undefined;
  if (rmem !== undefined) {
    out.push(rmem >= UDP_ENCAP_RCVBUF
      ? { level: 'ok', what: `net.core.rmem_max ${rmem}: the NAT-T socket (UDP 4500) gets its ${UDP_ENCAP_RCVBUF / 1048576} MiB receive buffer` }
      : {
        level: 'warn',
        what: `net.core.rmem_max is ${rmem}: the NAT-T socket (UDP 4500) gets ${rmem} bytes of receive buffer instead of ${UDP_ENCAP_RCVBUF}, and a burst of ESP in UDP may be dropped before espgate reads it (status: udpEncap.dropped)`,
        fix: `sysctl -w net.core.rmem_max=${UDP_ENCAP_RCVBUF} (and a line in /etc/sysctl.d/ to keep it), then restart espgate`,
      });
  }

  const caps = p.missingCapabilities();
  out.push(caps.length === 0
    ? { level: 'ok', what: 'this process has CAP_NET_ADMIN and CAP_NET_RAW' }
    : { level: 'warn', what: `this process lacks ${caps.join(' and ')} (fine for check; espgate up needs them)`, fix: 'run espgate up as root, or under the systemd unit (docs/systemd.md)' });

  for (const pair of cfg.prefixes) {
    const probe = firstAddressOf(pair.fake);
    // Routes espgate itself installs (into its TUN, or the fail-closed blackhole) and the
    // default route are expected; anything else means a real network uses the fake prefix.
    const foreign = (await p.covering(probe)).filter((r) => r.dst !== 'default' && r.dev !== cfg.tun.name && r.type !== 'blackhole');
    if (foreign.length === 0) out.push({ level: 'ok', what: `fake prefix ${pair.fake} is not used by any network here` });
    else out.push({ level: 'fail', what: `fake prefix ${pair.fake} is already routed: ${foreign.map((r) => `${r.dst}${r.dev === undefined ? '' : ` dev ${r.dev}`}`).join(', ')}`, fix: 'pick a fake prefix no network of yours uses (it must only ever be routed into the TUN)' });
  }

  for (const peer of cfg.peers) {
    const r = await p.route(peer.endpoint);
    if (r === undefined || r.type === 'blackhole' || r.type === 'unreachable' || r.type === 'prohibit') {
      out.push({ level: 'warn', what: `peer ${peer.name}: no route to its endpoint ${peer.endpoint}`, fix: 'check addresses and routes (ip route get ' + peer.endpoint + '); ESP to it would fail as send-error' });
      continue;
    }
    const fam = new Set<4 | 6>([peer.endpoint.includes(':') ? 6 : 4]);
    const inner = cfg.tun.mtu ?? tunMtuFor(r.mtu, fam);
    const innerV6 = peer.protect.some((c) => c.includes(':'));
    const floor = innerV6 ? IPV6_MIN_MTU : IPV4_MIN_MTU;
    if (inner < floor) {
      out.push({ level: 'fail', what: `peer ${peer.name}: tunnel MTU ${inner} (link ${r.mtu} via ${r.dev ?? '?'}) is below the ${floor} bytes ${innerV6 ? 'IPv6' : 'IPv4'} needs`, fix: 'raise the link MTU towards the peer, or carry IPv6 inside only where the path allows 1280 + 57 bytes' });
    } else {
      out.push({ level: 'ok', what: `peer ${peer.name}: endpoint ${peer.endpoint} reachable via ${r.dev ?? r.type}, tunnel MTU ${inner}` });
    }
  }
  return out;
}

/** formatDoctor renders the report; the summary line says whether `up` can work. */
export function formatDoctor(results: readonly CheckResult[]): string {
  const mark: Record<CheckLevel, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  const lines = results.map((r) => `  ${mark[r.level]} ${r.what}${r.fix === undefined ? '' : `\n       fix: ${r.fix}`}`);
  const fails = results.filter((r) => r.level === 'fail').length;
  const warns = results.filter((r) => r.level === 'warn').length;
  lines.push(fails > 0 ? `system: ${fails} problem(s) to fix before espgate up` : `system: ready${warns > 0 ? ` (${warns} warning(s))` : ''}`);
  return lines.join('\n');
}
