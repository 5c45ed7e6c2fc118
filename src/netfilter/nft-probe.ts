/**
 * nft-probe.ts: what the nftables tool and the kernel offer the gate, and which backend
 * `rules.backend` (auto | iptables | nftables) then means.
 *
 * The probe asks the kernel itself, changing nothing: `nft -c -f -` (check mode: the kernel
 * validates the batch and commits nothing) of a throwaway table that uses every construct our
 * table uses (inet nat chains, `dnat ip prefix to`, interval sets, fib, the MSS clamp, meta
 * mark, notrack), then of one `queue` rule alone. Kernels built without CONFIG_NFT_QUEUE refuse the
 * second; the gate then installs its one NFQUEUE rule with iptables (xtables compat), the rest
 * with nft. parse*, chooseBackend and describeBackend are pure; probeNftables runs the tools.
 */
import { GatewayError } from '../errors.js';
import type { Runner } from './runner.js';
import type { Inbound } from './model.js';

/** ConfiguredBackend is the config's rules.backend. */
export type ConfiguredBackend = 'auto' | 'iptables' | 'nftables';
/** GateBackend is the backend that installs the gate. */
export type GateBackend = 'iptables' | 'nftables';

/** ProbeOutcome is one `nft -c` check: accepted, refused by nft or the kernel, or not decidable here (no privileges). */
export type ProbeOutcome =
  | { readonly result: 'ok' }
  | { readonly result: 'refused'; readonly error: string }
  | { readonly result: 'unknown'; readonly error: string };

/** NftProbe is what probeNftables found. */
export interface NftProbe {
  /** version is "1.0.6" style; undefined when nft is not installed. */
  readonly version: string | undefined;
  /** rest: everything our table needs but the queue statement. */
  readonly rest: ProbeOutcome;
  /** queue: nft's queue statement (CONFIG_NFT_QUEUE). */
  readonly queue: ProbeOutcome;
  /** iptables: iptables-restore is installed (the queue fallback needs it). */
  readonly iptables: boolean;
}

/** BackendChoice is the backend to use and why, in words for a log line or `espgate check`. */
export interface BackendChoice {
  readonly backend: GateBackend;
  /** nativeQueue: the nft table queues ESP itself; false: the NFQUEUE rule goes through iptables. */
  readonly nativeQueue: boolean;
  readonly reason: string;
}

/** PROBE_TABLE is the throwaway table name of the check (never committed). */
export const PROBE_TABLE = 'espgate_probe';

/** NFT_PROBE_REST uses every construct of our table except queue. */
export const NFT_PROBE_REST = `table inet ${PROBE_TABLE} {
\tset p4 { type ipv4_addr; flags interval; auto-merge; elements = { 198.18.0.0/24 } }
\tset e6 { type ipv6_addr; elements = { 2001:db8::1 } }
\tchain r { type filter hook prerouting priority raw - 1; policy accept;
\t\tmeta l4proto esp meta length 65001-65535 drop
\t\tmeta l4proto esp fib daddr type local ip6 saddr @e6 meta mark set meta mark | 0x20000000
\t}
\tchain n { type filter hook output priority raw; policy accept;
\t\tmeta l4proto esp ip6 daddr @e6 notrack
\t}
\tchain m { type filter hook postrouting priority mangle; policy accept;
\t\toifname "eg0" tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu
\t}
\tchain o { type nat hook output priority -100; policy accept;
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } return
\t\tip daddr @p4 meta l4proto != esp dnat ip prefix to 198.19.0.0/24
\t}
\tchain i { type nat hook input priority 100; policy accept;
\t\tip6 saddr 2001:db8:ff::/64 iifname "eg0" snat ip6 prefix to 2001:db8:1::/64
\t}
}
`;

/** NFT_PROBE_QUEUE is one queue rule without bypass, as our raw chain has it. */
export const NFT_PROBE_QUEUE = `table inet ${PROBE_TABLE} {
\tchain q { type filter hook prerouting priority raw; policy accept;
\t\tmeta l4proto esp queue num 0
\t}
}
`;

const PROBE_TIMEOUT_MS = 10_000;

/** parseNftVersion reads `nft --version` ("nftables v1.0.6 (Lester Gooch #5)" -> "1.0.6"). */
export function parseNftVersion(text: string): string | undefined {
  return /\bv(\d+\.\d+(?:\.\d+)*)/.exec(text)?.[1];
}

/** parseCheck turns the exit code and stderr of `nft -c -f -` into a ProbeOutcome. */
export function parseCheck(code: number | null, stderr: string): ProbeOutcome {
  if (code === 0) return { result: 'ok' };
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const error = lines.find((l) => /Error:/.test(l))?.replace(/^.*?Error:\s*/, '') ?? lines[0] ?? `exit ${String(code)}`;
  if (/Operation not permitted|Permission denied/i.test(stderr)) return { result: 'unknown', error };
  return { result: 'refused', error };
}

/** probeNftables runs `nft --version` and the two checks through runner (in its namespace). Changes nothing. */
export async function probeNftables(runner: Runner, hasIptablesRestore: boolean): Promise<NftProbe> {
  const v = await runner.run('nft', ['--version'], undefined, PROBE_TIMEOUT_MS);
  if (v.missing || v.code !== 0) {
    const none: ProbeOutcome = { result: 'refused', error: 'nft is not installed' };
    return { version: undefined, rest: none, queue: none, iptables: hasIptablesRestore };
  }
  const check = async (text: string): Promise<ProbeOutcome> => {
    const r = await runner.run('nft', ['-c', '-f', '-'], text, PROBE_TIMEOUT_MS);
    if (r.timedOut) return { result: 'unknown', error: `nft -c did not answer within ${PROBE_TIMEOUT_MS} ms` };
    return parseCheck(r.code, r.stderr);
  };
  const rest = await check(NFT_PROBE_REST);
  const queue = await check(NFT_PROBE_QUEUE);
  return { version: parseNftVersion(v.stdout + v.stderr) ?? '?', rest, queue, iptables: hasIptablesRestore };
}

const QUEUE_FALLBACK = 'the kernel has no nft queue (CONFIG_NFT_QUEUE): the one NFQUEUE rule (raw PREROUTING, inbound ESP from peer endpoints) goes through iptables, everything else is in nft';

/**
 * chooseBackend decides which backend installs the gate. auto: nftables when nft is installed
 * and the kernel takes our table, nft queue included; else iptables (without nft queue the
 * NFQUEUE rule needs iptables anyway). Explicit nftables without nft queue: the NFQUEUE rule
 * goes through iptables (iptables-restore must exist), everything else into our nft table. An explicit nftables that cannot work throws ERR_MISSING_TOOL
 * or ERR_RULES_APPLY. With inbound 'socket' there is no NFQUEUE rule, so nft queue (and
 * iptables) do not matter: auto takes nftables whenever the kernel takes our table. Pure.
 */
export function chooseBackend(configured: ConfiguredBackend, p: NftProbe, inbound: Inbound = 'queue'): BackendChoice {
  if (configured === 'iptables') return { backend: 'iptables', nativeQueue: false, reason: 'rules.backend: iptables' };
  const explicit = configured === 'nftables';
  const how = explicit ? 'rules.backend: nftables' : 'auto';
  if (p.version === undefined) {
    if (explicit) throw new GatewayError('ERR_MISSING_TOOL', 'rules.backend is nftables but nft is not installed: install the Debian package "nftables" (apt-get install nftables), or set rules.backend: iptables');
    return { backend: 'iptables', nativeQueue: false, reason: 'auto: nft is not installed' };
  }
  if (p.rest.result === 'refused') {
    if (explicit) throw new GatewayError('ERR_RULES_APPLY', `rules.backend is nftables but nft ${p.version} or the kernel refuses what the gate needs: ${p.rest.error}; set rules.backend: iptables`);
    return { backend: 'iptables', nativeQueue: false, reason: `auto: nft ${p.version} or the kernel refuses what the gate needs (${p.rest.error})` };
  }
  if (p.rest.result === 'unknown') {
    if (explicit) return { backend: 'nftables', nativeQueue: p.queue.result === 'ok', reason: `${how}; could not probe the kernel here (${p.rest.error}: needs CAP_NET_ADMIN)` };
    return { backend: 'iptables', nativeQueue: false, reason: `auto: could not probe the kernel here (${p.rest.error}: needs CAP_NET_ADMIN); espgate up probes again as root` };
  }
  const nativeQueue = p.queue.result === 'ok';
  if (inbound === 'socket') {
    // No NFQUEUE rule in this mode (raw ESP sockets): the queue probe's answer is not asked.
    return { backend: 'nftables', nativeQueue, reason: `${how}: nft ${p.version} and the kernel offer what the gate needs (inbound: socket, no queue rule)` };
  }
  if (!nativeQueue && !explicit) {
    // Without nft queue the NFQUEUE rule needs iptables anyway: auto keeps the whole gate in the
    // one tool (the backend with the longer test history) rather than splitting it in two.
    return { backend: 'iptables', nativeQueue: false, reason: `auto: the kernel has no nft queue (CONFIG_NFT_QUEUE), and the NFQUEUE rule needs iptables: the whole gate stays in iptables (rules.backend: nftables puts everything else in nft)` };
  }
  if (!nativeQueue && !p.iptables) {
    if (explicit) throw new GatewayError('ERR_MISSING_TOOL', `rules.backend is nftables and ${QUEUE_FALLBACK.replace(' goes through', ' must go through')}, but iptables-restore is not installed: install the Debian package "iptables"`);
    return { backend: 'iptables', nativeQueue: false, reason: 'auto: the kernel has no nft queue and iptables-restore is missing' };
  }
  return {
    backend: 'nftables',
    nativeQueue,
    reason: `${how}: nft ${p.version} and the kernel offer what the gate needs${nativeQueue ? ', nft queue included' : `; ${QUEUE_FALLBACK}`}`,
  };
}

/** describeBackend is the one line the daemon logs and `espgate check` prints. */
export function describeBackend(c: BackendChoice, table: string): string {
  return c.backend === 'nftables'
    ? `rules backend: nftables, table inet ${table} (${c.reason})`
    : `rules backend: iptables (${c.reason})`;
}
