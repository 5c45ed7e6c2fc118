/**
 * test/lab/ike-support.ts: what ike.test.ts and swan.test.ts share: IKE lab configs, the
 * espgate command line (compiled or from the sources), the wait for the lead's "wired" flags,
 * ping loss counting, the per-peer `ike` part of `status --json`, and the check of a capture
 * between two endpoints (only IKE and ESP, and in which encapsulation).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabRun } from '../../lab/harness.js';
import { cliPath, labSpawn, projectRoot } from '../../lab/harness.js';
import type { GenerateOptions, IkeTuning, LabConfigSet } from '../../lab/gen-configs.js';
import { generateLabConfigs, writeLabConfigs } from '../../lab/gen-configs.js';
import type { Topology } from '../../lab/topology.js';
import type { Daemon, Frame, Json, RunResult } from './support.js';
import { TRAFFIC_JS, canon, configPathOf, describeResult, lastJsonLine, logPathOf, pollUntil, runIn, tail, track } from './support.js';


/** espgateArgv returns the espgate command: dist/src/cli/main.js, or the sources through tsx with EGL_ESPGATE=src. */
export function espgateArgv(): string[] {
  if (process.env['EGL_ESPGATE'] === 'src') return ['node', '--import', 'tsx', join(projectRoot(), 'src', 'cli', 'main.ts')];
  return ['node', cliPath()];
}

/** trafficArgv returns the traffic tool's command (test/lab/fixtures/traffic.ts): compiled, or through tsx with EGL_ESPGATE=src. */
export function trafficArgv(): string[] {
  if (process.env['EGL_ESPGATE'] === 'src') return ['node', '--import', 'tsx', join(projectRoot(), 'test', 'lab', 'fixtures', 'traffic.ts')];
  return ['node', TRAFFIC_JS];
}

/**
 * startTrafficServer starts the traffic tool's tcp-server in a host's namespace and waits
 * (bounded) until it listens; resolves with its log. rate paces its bulk replies (bytes/s; 0 =
 * as fast as TCP goes).
 */
export async function startTrafficServer(run: LabRun, host: string, port: number, rate = 0): Promise<string> {
  const log = logPathOf(run, `${host}-tcp-server-${port}`);
  const args = ['tcp-server', '--port', String(port), '--lifetime', '900', ...(rate > 0 ? ['--rate', String(rate)] : [])];
  const child = track(labSpawn(run, host, [...trafficArgv(), ...args], log));
  const ok = await pollUntil(() => child.exitCode !== null || (existsSync(log) && readFileSync(log, 'utf8').includes('"listening"')), 150, 100);
  if (!ok || child.exitCode !== null) throw new Error(`${host}: tcp-server did not start: ${tail(log)}`);
  return log;
}

/** tcpTransfer runs a bulk tcp-client (bytes each way, optional pacing in bytes/s); resolves with its result line and whether it succeeded. */
export async function tcpTransfer(run: LabRun, host: string, dst: string, port: number, bytes: number, rate: number, timeoutMs: number): Promise<{ ok: boolean; result: Json | undefined; detail: string }> {
  const args = ['tcp-client', '--host', dst, '--port', String(port), '--bytes', String(bytes), '--timeout', String(timeoutMs - 5_000)];
  if (rate > 0) args.push('--rate', String(rate));
  const r = await runIn(run, host, [...trafficArgv(), ...args], timeoutMs);
  const result = lastJsonLine(r.stdout);
  return { ok: r.status === 0 && result?.ok === true, result, detail: `${host}: tcp-client ${dst}: ${describeResult(r)}` };
}

/** startEspgate spawns `espgate up -c <config>` in a host's namespace, logging to logs/<host>.log (appended across restarts). */
export function startEspgate(run: LabRun, host: string): Daemon {
  const log = logPathOf(run, host);
  const child = track(labSpawn(run, host, [...espgateArgv(), 'up', '-c', configPathOf(run, host)], log));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode ?? child.signalCode);
    else child.once('exit', (code, signal) => resolve(code ?? signal));
  });
  return { host, child, log, exited };
}

/** killHard sends SIGKILL to a daemon (kill -9) and waits for it to exit (bounded, 5 s). */
export async function killHard(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill('SIGKILL');
  await Promise.race([d.exited, new Promise((r) => setTimeout(r, 5_000))]);
}

/** IkeStatusDoc mirrors the per-peer `ike` part of `status --json` (src/daemon/status.ts PeerIkeStatus). */
export interface IkeStatusDoc {
  readonly state: string;
  readonly lastHeardMs: number;
  readonly natT?: boolean;
  readonly children?: readonly { readonly inSpi: string; readonly outSpi: string; readonly algorithm: string; readonly encapPort: number | null }[];
}

/** IkePeerStatusDoc is one peer of `status --json` with its `ike` part. */
export interface IkePeerStatusDoc {
  readonly name: string;
  readonly endpoint: string;
  readonly ike?: IkeStatusDoc;
  readonly sas: readonly { readonly direction: 'in' | 'out'; readonly spi: string; readonly packets: number }[];
}

/** outSpiOf returns the peer's current outbound SPI in status (undefined when it has none). */
export function outSpiOf(p: IkePeerStatusDoc | undefined): string | undefined {
  return p?.sas.find((s) => s.direction === 'out')?.spi;
}

/** ikeStatusOf asks a host's daemon for `status --json` and returns one peer's entry (undefined when it does not answer). */
export async function ikeStatusOf(run: LabRun, host: string, peer: string): Promise<IkePeerStatusDoc | undefined> {
  const r = await runIn(run, host, [...espgateArgv(), 'status', '-c', configPathOf(run, host), '--json'], 20_000);
  if (r.status !== 0) return undefined;
  try {
    const doc = JSON.parse(r.stdout) as { peers?: IkePeerStatusDoc[] };
    return doc.peers?.find((p) => p.name === peer);
  } catch {
    return undefined;
  }
}

/** waitUp polls `status --json` until the daemon reports state 'up' (true), or it exits, or ~30 s pass (false). */
export async function waitUp(run: LabRun, d: Daemon): Promise<boolean> {
  const ok = await pollUntil(async () => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) return true;
    const r = await runIn(run, d.host, [...espgateArgv(), 'status', '-c', configPathOf(run, d.host), '--json'], 20_000);
    if (r.status !== 0) return false;
    try {
      return (JSON.parse(r.stdout) as { state?: string }).state === 'up';
    } catch {
      return false;
    }
  }, 60, 500);
  return ok && d.child.exitCode === null && d.child.signalCode === null;
}

/** IKE_ESTABLISHED is the IKE state name of an established IKE SA (src/ike/sa/types.ts IkeState). */
export const IKE_ESTABLISHED = 'established';

/** waitIkeEstablished polls `status --json` until the peer's IKE state is established and it has an outbound SA (bounded). */
export async function waitIkeEstablished(run: LabRun, host: string, peer: string, tries = 60, intervalMs = 500): Promise<IkePeerStatusDoc | undefined> {
  let last: IkePeerStatusDoc | undefined;
  const ok = await pollUntil(async () => {
    last = await ikeStatusOf(run, host, peer);
    // Until status carries `ike` (src/daemon/status.ts), an outbound SA is the sign; the tests
    // assert the `ike` state on their own.
    const state = last?.ike?.state;
    return (state === IKE_ESTABLISHED || state === undefined) && (last?.sas ?? []).some((s) => s.direction === 'out');
  }, tries, intervalMs);
  return ok ? last : undefined;
}

/**
 * writeIkeConfigs writes IKE-keyed configs for a topology restricted to the given peerings
 * (pairs of host names; all when omitted) and returns the set (its `psks` give strongSwan the
 * same keys).
 */
export function writeIkeConfigs(run: LabRun, options: { pairs?: readonly (readonly [string, string])[]; ike?: IkeTuning; ikeFor?: GenerateOptions['ikeFor'] } = {}): LabConfigSet {
  const pairs = options.pairs;
  const topo: Topology = pairs === undefined
    ? run.topology
    : { ...run.topology, peerings: run.topology.peerings.filter((p) => pairs.some(([x, y]) => (p.a === x && p.b === y) || (p.a === y && p.b === x))) };
  const set = generateLabConfigs(topo, run.dir, {
    keying: 'ike',
    ...(options.ike === undefined ? {} : { ike: options.ike }),
    ...(options.ikeFor === undefined ? {} : { ikeFor: options.ikeFor }),
    randomBytes: (n) => randomBytes(n),
  });
  writeLabConfigs(set, run.dir);
  return set;
}

/**
 * queueDrops reads the kernel's NFQUEUE drop counters in a host's namespace
 * (/proc/net/netfilter/nfnetlink_queue: queue_dropped, the queue was full, plus user_dropped, the
 * netlink socket buffer was full), summed over the host's queues: packets that never reached the
 * daemon because it was starved of CPU. -1 when the file cannot be read.
 */
export async function queueDrops(run: LabRun, host: string): Promise<number> {
  const r = await runIn(run, host, ['cat', '/proc/net/netfilter/nfnetlink_queue'], 10_000);
  if (r.status !== 0) return -1;
  let sum = 0;
  for (const line of r.stdout.split('\n')) {
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length >= 7) sum += (f[5] ?? 0) + (f[6] ?? 0);
  }
  return sum;
}

/**
 * parseUdpSnmp reads the UDP counters of /proc/net/snmp (the `Udp:` header and value lines, as
 * `udp.<Name>`) and /proc/net/snmp6 (`Udp6<Name> value` lines, as `udp6.Udp6<Name>`).
 */
export function parseUdpSnmp(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  const lines = text.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    const h = lines[i]?.trim().split(/\s+/) ?? [];
    const v = lines[i + 1]?.trim().split(/\s+/) ?? [];
    if (h[0] !== 'Udp:' || v[0] !== 'Udp:') continue;
    h.forEach((name, j) => {
      if (j > 0) out[`udp.${name}`] = Number(v[j] ?? 0);
    });
  }
  for (const line of lines) {
    const m = /^(Udp6\w+)\s+(\d+)/.exec(line);
    if (m?.[1] !== undefined) out[`udp6.${m[1]}`] = Number(m[2]);
  }
  return out;
}

/**
 * udpRcvbufErrors reads the UDP receive-buffer drops of a host's namespace (/proc/net/snmp
 * Udp RcvbufErrors plus Udp6RcvbufErrors): datagrams the kernel dropped because a socket's
 * buffer was full (for charon, its port 4500 socket: ESP in UDP it never saw). -1 when unreadable.
 */
export async function udpRcvbufErrors(run: LabRun, host: string): Promise<number> {
  const r = await runIn(run, host, ['cat', '/proc/net/snmp', '/proc/net/snmp6'], 10_000);
  if (r.status !== 0) return -1;
  const c = parseUdpSnmp(r.stdout);
  return (c['udp.RcvbufErrors'] ?? 0) + (c['udp6.Udp6RcvbufErrors'] ?? 0);
}

/**
 * queueOverflowExplains tells why pings lost across rekeys are not a rekey loss: the kernel
 * dropped at least as many packets at a full NFQUEUE in the meantime (`queueDropped`, the growth
 * of queueDrops on the espgate host), so the daemon was starved of CPU on the shared 2-core lab
 * machine. Undefined when nothing was lost or the drops do not cover the loss.
 */
export function queueOverflowExplains(p: PingOutcome, queueDropped: number): string | undefined {
  const lost = p.sent - p.received;
  if (lost <= 0 || queueDropped < lost) return undefined;
  return `${lost} ping(s) lost while the kernel dropped ${queueDropped} packet(s) at a full NFQUEUE (CPU starvation, not the rekey)`;
}

/** PingOutcome is what `ping` printed in its summary. */
export interface PingOutcome {
  readonly sent: number;
  readonly received: number;
  readonly text: string;
}

/** pingCounts reads "N packets transmitted, M received" (-1 when absent). */
export function pingCounts(r: RunResult): PingOutcome {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  return { sent: Number(m?.[1] ?? -1), received: Number(m?.[2] ?? -1), text: `${r.stdout.trim().split('\n').slice(-2).join(' / ')} ${r.stderr.trim()}` };
}

/** ping runs `ping -c count -i interval` from a host (bounded by count * interval + 15 s). */
export async function ping(run: LabRun, host: string, dst: string, count: number, intervalS = 0.2): Promise<PingOutcome> {
  const fam = dst.includes(':') ? '-6' : '-4';
  const r = await runIn(run, host, ['ping', fam, '-n', '-c', String(count), '-i', String(intervalS), '-W', '2', dst], Math.ceil(count * intervalS * 1000) + 15_000);
  return pingCounts(r);
}

/** pingUntilAnswered pings once per second until one is answered or `tries` run out; resolves with the seconds waited or -1. */
export async function pingUntilAnswered(run: LabRun, host: string, dst: string, tries: number): Promise<number> {
  const t0 = Date.now();
  const ok = await pollUntil(async () => (await ping(run, host, dst, 1)).received === 1, tries, 1000);
  return ok ? Math.round((Date.now() - t0) / 100) / 10 : -1;
}

/** WireSummary sorts the frames between two outer endpoints by what they are. */
export interface WireSummary {
  /** ike500 / ike4500: IKE on UDP 500 and on UDP 4500 (non-ESP marker). */
  readonly ike500: number;
  readonly ike4500: number;
  /** espUdp: ESP in UDP 4500 (RFC 3948); espRaw: ESP as IP protocol 50. */
  readonly espUdp: number;
  readonly espRaw: number;
  /**
   * icmpErrors: ICMP destination unreachable about IKE or ESP-in-UDP (a daemon or charon not
   * listening yet, or dead): error reports about the tunnel's own packets, not traffic.
   */
  readonly icmpErrors: number;
  /** other: every other IP frame between the two endpoints (none is allowed). */
  readonly other: readonly Frame[];
}

/** ND_MLD are the ICMPv6 types of neighbour discovery and MLD (link chatter, not traffic). */
const ND_MLD: ReadonlySet<number> = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);

/**
 * summarizeWire classifies the frames exchanged between the outer addresses x and y (either
 * direction). UDP from or to port 500 or 4500 is IKE or ESP-in-UDP (tshark's esp.spi tells
 * which); protocol 50 is raw ESP; ICMP unreachable quoting such UDP is an icmpError; anything
 * else between them lands in `other`.
 */
export function summarizeWire(frames: readonly Frame[], x: string, y: string): WireSummary {
  const a = canon(x);
  const b = canon(y);
  let ike500 = 0, ike4500 = 0, espUdp = 0, espRaw = 0, icmpErrors = 0;
  const other: Frame[] = [];
  for (const f of frames) {
    if (f.outer === 0) continue;
    if (!((f.src === a && f.dst === b) || (f.src === b && f.dst === a))) continue;
    if (f.icmp6Type >= 0 && ND_MLD.has(f.icmp6Type)) continue;
    // A NAT may move the natted end's source port (MASQUERADE picks another one when the
    // router's own port 500/4500 is already in a conntrack tuple), so one end's port decides.
    const port = (p: number): boolean => f.udpSrc === p || f.udpDst === p;
    const natt = port(500) || port(4500);
    if (f.proto === 1 && f.icmpType === 3 && natt) icmpErrors++;
    else if (f.proto === 50) espRaw++;
    else if (f.proto === 17 && natt && f.spi !== '') espUdp++;
    else if (f.proto === 17 && port(500)) ike500++;
    else if (f.proto === 17 && port(4500)) ike4500++;
    else other.push(f);
  }
  return { ike500, ike4500, espUdp, espRaw, icmpErrors, other };
}
