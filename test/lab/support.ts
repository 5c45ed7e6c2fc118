/**
 * test/lab/support.ts: plumbing for the namespace end-to-end tests (lan, sites, hub): commands
 * run in a host's namespace without blocking the event loop, the traffic tool, daemon start and
 * readiness, state snapshots, conntrack parsing and the analysis of the switch capture.
 *
 * Every command has a time limit and every process started here is remembered, so `stopAll`
 * (called from after()) can stop by pid whatever is still running.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Capture, LabRun } from '../../lab/harness.js';
import { cliPath, labDown, labScript, labSpawn, namespaceOf, projectRoot, stopProcess } from '../../lab/harness.js';
import type { AddressFamily, PrefixPair } from '../../lab/topology.js';
import { addressInPrefix, findHost, parseAddress, parsePrefix } from '../../lab/topology.js';
import type { Inbound } from '../../src/netfilter/model.js';

/** TRAFFIC_JS is the compiled traffic tool (test/lab/fixtures/traffic.ts). */
export const TRAFFIC_JS = join(projectRoot(), 'dist', 'test', 'lab', 'fixtures', 'traffic.js');

/** DEFAULT_CMD_TIMEOUT_MS bounds a command run with runIn when no limit is given. */
export const DEFAULT_CMD_TIMEOUT_MS = 30_000;

/** FAKE_RANGES holds every address espgate's lab configs use as fake (never on an interface). */
export const FAKE_RANGES: readonly string[] = ['198.19.0.0/16', '2001:db8:0:ff00::/56'];

/** RunResult is the outcome of one bounded command. */
export interface RunResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

const live = new Set<ChildProcess>();

/** track remembers a long-running process so stopAll can stop it; it is forgotten when it exits. */
export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** stopAll stops every tracked process that still runs (SIGTERM, bounded wait, SIGKILL), by pid. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => stopProcess(c)));
}

/** runCmd runs a command without a shell; SIGKILL after timeoutMs. Never rejects. */
export function runCmd(cmd: string, args: readonly string[], timeoutMs = DEFAULT_CMD_TIMEOUT_MS, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env === undefined ? {} : { env }) }));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      resolve({ status: null, signal: null, stdout, stderr: stderr + e.message, timedOut });
    });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}

/** runIn runs argv in a host's namespace (see runCmd). */
export function runIn(run: LabRun, host: string, argv: readonly string[], timeoutMs = DEFAULT_CMD_TIMEOUT_MS): Promise<RunResult> {
  return runCmd('ip', ['netns', 'exec', namespaceOf(run, host), ...argv], timeoutMs);
}

/** describeResult renders a command outcome for an assertion message. */
export function describeResult(r: RunResult): string {
  const how = r.timedOut ? 'timed out' : `status ${r.status ?? r.signal ?? '?'}`;
  return `${how}; stdout: ${r.stdout.trim().slice(-1500)}; stderr: ${r.stderr.trim().slice(-1500)}`;
}

/** Json is one line of the traffic tool's output. */
export type Json = Record<string, unknown>;

/** lastJsonLine parses the last JSON object line of a command's stdout (undefined when there is none). */
export function lastJsonLine(stdout: string): Json | undefined {
  const lines = stdout.trim().split('\n').reverse();
  for (const l of lines) {
    if (!l.startsWith('{')) continue;
    try {
      return JSON.parse(l) as Json;
    } catch {
      continue;
    }
  }
  return undefined;
}

/** TrafficOutcome is one run of the traffic tool: its result line (when it printed one) and how it ended. */
export interface TrafficOutcome {
  readonly result: Json | undefined;
  readonly ok: boolean;
  readonly detail: string;
}

/** traffic runs `node traffic.js <args>` in a host's namespace with the tool's own --timeout below ours. */
export async function traffic(run: LabRun, host: string, args: readonly string[], timeoutMs = 60_000): Promise<TrafficOutcome> {
  const r = await runIn(run, host, ['node', TRAFFIC_JS, ...args, '--timeout', String(timeoutMs - 5_000)], timeoutMs);
  const result = lastJsonLine(r.stdout);
  const ok = r.status === 0 && result?.ok === true;
  return { result, ok, detail: `${host}: traffic ${args.join(' ')}: ${describeResult(r)}` };
}

/** envInt reads an integer setting from the environment (default when unset), refusing values outside min..max. */
export function envInt(name: string, dflt: number, min: number, max: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${v}`);
  return n;
}

/** sleep resolves after ms. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** pollUntil calls probe every intervalMs until it returns true or `tries` run out. */
export async function pollUntil(probe: () => Promise<boolean> | boolean, tries: number, intervalMs: number): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await probe()) return true;
    await sleep(intervalMs);
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Daemons and servers

/** configPathOf returns a host's espgate config in the run. */
export function configPathOf(run: LabRun, host: string): string {
  return join(run.dir, 'configs', `${host}.yaml`);
}

/** logPathOf returns the log file of a process name in the run. */
export function logPathOf(run: LabRun, name: string): string {
  return join(run.dir, 'logs', `${name}.log`);
}

/** Daemon is one running `espgate up`. */
export interface Daemon {
  readonly host: string;
  readonly child: ChildProcess;
  readonly log: string;
  /** exited resolves with the exit code (or signal) once the process has ended. */
  readonly exited: Promise<number | NodeJS.Signals | null>;
}

/** startDaemon spawns `espgate up -c <config>` in a host's namespace, logging to logs/<host>.log. */
export function startDaemon(run: LabRun, host: string): Daemon {
  const log = logPathOf(run, host);
  const child = track(labSpawn(run, host, ['node', cliPath(), 'up', '-c', configPathOf(run, host)], log));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode ?? child.signalCode);
    else child.once('exit', (code, signal) => resolve(code ?? signal));
  });
  return { host, child, log, exited };
}

/** tail returns the last lines of a file (or a note that it does not exist). */
export function tail(file: string, lines = 15): string {
  if (!existsSync(file)) return `(no ${file})`;
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/** statusOf asks a host's daemon for `status --json`; undefined when it does not answer. */
export async function statusOf(run: LabRun, host: string): Promise<DaemonStatusDoc | undefined> {
  const r = await runIn(run, host, ['node', cliPath(), 'status', '-c', configPathOf(run, host), '--json'], 20_000);
  if (r.status !== 0) return undefined;
  try {
    return JSON.parse(r.stdout) as DaemonStatusDoc;
  } catch {
    return undefined;
  }
}

/** waitReady polls `status` until the daemon answers (true), exits, or ~30 s pass (false). */
export async function waitReady(run: LabRun, d: Daemon): Promise<boolean> {
  return pollUntil(async () => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) return true;
    // The control socket answers from the start of start-up; ready means state 'up' (gate,
    // TUN, sockets and NFQUEUE all in place).
    return (await statusOf(run, d.host))?.state === 'up';
  }, 60, 250).then((ok) => ok && d.child.exitCode === null && d.child.signalCode === null);
}

/** SaStatusDoc, PeerStatusDoc and DaemonStatusDoc mirror the `status --json` document (src/daemon/status.ts). */
export interface SaStatusDoc {
  readonly direction: 'in' | 'out';
  readonly spi: string;
  readonly packets: number;
  readonly bytes: number;
  readonly drops: Readonly<Record<string, number>>;
}
export interface PeerStatusDoc {
  readonly name: string;
  readonly endpoint: string;
  readonly sas: readonly SaStatusDoc[];
  readonly txPackets: number;
  readonly rxPackets: number;
  readonly txBytes: number;
  readonly rxBytes: number;
}
export interface DaemonStatusDoc {
  readonly state: string;
  readonly pid: number;
  readonly tun: { readonly name: string; readonly mtu: number };
  readonly totals: Readonly<Record<string, number>>;
  readonly drops: Readonly<Record<string, number>>;
  readonly peers: readonly PeerStatusDoc[];
  readonly dataPath?: { readonly tunOffload: boolean; readonly tcpCoalescing: boolean; readonly udpCoalescing: string; readonly sendBatch: boolean; readonly warmUp: string; readonly batchedReads?: boolean; readonly express?: { readonly on: boolean; readonly flows: number; readonly thread?: string } };
  readonly queue?: { readonly num: number; readonly waiting: number; readonly queueDropped: number; readonly userDropped: number } | null;
  readonly inbound?: { readonly mode: Inbound; readonly socketDrops: number | null };
  readonly udpEncap?: { readonly port: number; readonly rcvbufBytes: number; readonly dropped: number | null } | null;
  readonly gate?: { readonly installed: boolean | null; readonly installedBy: string | null; readonly checkedMs: number };
}

/** startServer spawns a traffic-tool server in a host's namespace, logging to logs/<name>.log, and waits until it listens. */
export async function startServer(run: LabRun, host: string, command: 'tcp-server' | 'udp-echo-server', port: number): Promise<string> {
  const log = logPathOf(run, `${host}-${command}`);
  const child = track(labSpawn(run, host, ['node', TRAFFIC_JS, command, '--port', String(port), '--lifetime', '900'], log));
  const ok = await pollUntil(() => child.exitCode !== null || (existsSync(log) && readFileSync(log, 'utf8').includes('"listening"')), 100, 100);
  if (!ok || child.exitCode !== null) throw new Error(`${host}: ${command} did not start: ${tail(log)}`);
  return log;
}

/** jsonLines reads a log of JSON lines (lines that are not JSON are skipped). */
export function jsonLines(file: string): Json[] {
  if (!existsSync(file)) return [];
  const out: Json[] = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Json);
    } catch {
      // a partial last line
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// State snapshots (rules, routes, links)

/** STATE_COMMANDS are compared before the daemon starts and after it stops. */
export const STATE_COMMANDS: readonly (readonly string[])[] = [
  ['iptables-save'],
  ['ip6tables-save'],
  ['ip', 'route'],
  ['ip', '-6', 'route'],
  ['ip', 'link'],
  ['ipset', 'list', '-n'],
];

/** normalizeState drops comment lines and zeroes packet/byte counters ("[12:345]"). */
export function normalizeState(text: string): string {
  return text
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]').trimEnd())
    .filter((l) => l !== '')
    .join('\n');
}

/** snapshotState runs STATE_COMMANDS in a host's namespace and returns normalized text per command. */
export async function snapshotState(run: LabRun, host: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const argv of STATE_COMMANDS) {
    const r = await runIn(run, host, argv, 15_000);
    out.set(argv.join(' '), r.status === 0 ? normalizeState(r.stdout) : `(failed: ${describeResult(r)})`);
  }
  return out;
}

/** diffLines lists lines only in `before` (-) and only in `after` (+). */
export function diffLines(before: string, after: string): string {
  const a = before.split('\n');
  const b = after.split('\n');
  const onlyA = a.filter((l) => !b.includes(l)).map((l) => `- ${l}`);
  const onlyB = b.filter((l) => !a.includes(l)).map((l) => `+ ${l}`);
  return [...onlyA, ...onlyB].join('\n');
}

// ---------------------------------------------------------------------------------------------
// conntrack

/** ConntrackTuple is one direction of a conntrack entry. */
export interface ConntrackTuple {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
}

/** ConntrackEntry is one `conntrack -L` line. */
export interface ConntrackEntry {
  readonly line: string;
  readonly orig: ConntrackTuple;
  readonly reply: ConntrackTuple;
  readonly assured: boolean;
}

/** parseConntrackLine reads the original and reply tuples of one `conntrack -L` line. */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const pairs = [...line.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1] ?? '', m[2] ?? ''] as const);
  const get = (key: string, nth: number): string | undefined => pairs.filter(([k]) => k === key)[nth]?.[1];
  const tuple = (nth: number): ConntrackTuple | undefined => {
    const src = get('src', nth);
    const dst = get('dst', nth);
    const sport = get('sport', nth);
    const dport = get('dport', nth);
    if (src === undefined || dst === undefined || sport === undefined || dport === undefined) return undefined;
    return { src, dst, sport: Number(sport), dport: Number(dport) };
  };
  const orig = tuple(0);
  const reply = tuple(1);
  if (orig === undefined || reply === undefined) return undefined;
  return { line, orig, reply, assured: line.includes('[ASSURED]') };
}

/** conntrackInvalid sums the `invalid=` counters of `conntrack -S` over all CPUs. */
export async function conntrackInvalid(run: LabRun, host: string): Promise<number> {
  const r = await runIn(run, host, ['conntrack', '-S'], 10_000);
  if (r.status !== 0) throw new Error(`${host}: conntrack -S: ${describeResult(r)}`);
  let sum = 0;
  for (const m of r.stdout.matchAll(/\binvalid=(\d+)/g)) sum += Number(m[1]);
  return sum;
}

/**
 * espConntrackEntries lists a host's conntrack entries for protocol 50 (ESP) of one family: none
 * on a daemon host, whose own ESP skips conntrack (rules.espNotrack) and whose inbound ESP is
 * queued before it. Throws when conntrack(8) fails.
 */
export async function espConntrackEntries(run: LabRun, host: string, family: 'ipv4' | 'ipv6'): Promise<string[]> {
  const r = await runIn(run, host, ['conntrack', '-L', '-f', family, '-p', '50'], 15_000);
  if (r.status !== 0) throw new Error(`${host}: conntrack -L -f ${family} -p 50: ${describeResult(r)}`);
  return r.stdout.split('\n').filter((l) => l.trim() !== '');
}

/** sameAddress compares two addresses by value (any spelling of IPv6). */
export function sameAddress(a: string, b: string): boolean {
  try {
    const x = parseAddress(a);
    const y = parseAddress(b);
    return x.family === y.family && x.value === y.value;
  } catch {
    return false;
  }
}

/** toFake maps a real address through a host's prefix pairs (undefined when no pair covers it). */
export function toFake(address: string, prefixes: readonly PrefixPair[]): string | undefined {
  for (const p of prefixes) {
    if (!addressInPrefix(address, p.real)) continue;
    const real = parsePrefix(p.real);
    const fake = parsePrefix(p.fake);
    const v = fake.base + (parseAddress(address).value - real.base);
    return formatAddress(v, real.family);
  }
  return undefined;
}

/** formatAddress prints an address value (IPv6 fully expanded; compare with sameAddress). */
export function formatAddress(v: bigint, family: AddressFamily): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(':');
}

const canonCache = new Map<string, string>();

/** canon returns one spelling per address (IPv6 fully expanded), so frames compare by string; memoized. */
export function canon(address: string): string {
  if (address === '') return '';
  let c = canonCache.get(address);
  if (c === undefined) {
    try {
      const p = parseAddress(address);
      c = formatAddress(p.value, p.family);
    } catch {
      c = address;
    }
    canonCache.set(address, c);
  }
  return c;
}

const fakeCache = new Map<string, boolean>();

/** isFake tells whether an address lies in the fake ranges (memoized). */
export function isFake(address: string): boolean {
  let r = fakeCache.get(address);
  if (r === undefined) {
    r = inAny(address, FAKE_RANGES);
    fakeCache.set(address, r);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Capture analysis

/** TSHARK_FIELDS are the fields read from every captured frame (all occurrences, comma separated). */
export const TSHARK_FIELDS = [
  'frame.number', 'eth.type',
  'ip.src', 'ip.dst', 'ip.proto', 'ip.flags.mf', 'ip.frag_offset',
  'ipv6.src', 'ipv6.dst', 'ipv6.nxt',
  'esp.spi', 'esp.protocol',
  'icmp.type', 'icmp.code', 'icmpv6.type', 'icmpv6.code',
  'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport',
] as const;

/** Frame is one captured frame: its outer IP header and, for decrypted ESP, the inner packet. Addresses are canon()ical. */
export interface Frame {
  readonly n: number;
  /** outer is 4 or 6 for IP frames, 0 for anything else (ARP). */
  readonly outer: 0 | AddressFamily;
  readonly src: string;
  readonly dst: string;
  /** proto is the outer protocol / next header (50 = ESP). */
  readonly proto: number;
  readonly fragment: boolean;
  readonly spi: string;
  /** inner is the decrypted inner packet's family (0: not ESP or not decrypted). */
  readonly inner: 0 | AddressFamily;
  readonly innerSrc: string;
  readonly innerDst: string;
  readonly innerProto: number;
  readonly icmpType: number;
  readonly icmpCode: number;
  readonly icmp6Type: number;
  readonly icmp6Code: number;
  readonly tcpSrc: number;
  readonly tcpDst: number;
  readonly udpSrc: number;
  readonly udpDst: number;
}

/** ND_MLD_TYPES are ICMPv6 neighbour discovery and MLD types (not leaks: link chatter). */
export const ND_MLD_TYPES: ReadonlySet<number> = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);

function num(s: string | undefined): number {
  if (s === undefined || s === '') return -1;
  return s.startsWith('0x') ? parseInt(s, 16) : Number(s);
}

/** parseFrameLine reads one tab-separated line of TSHARK_FIELDS. */
export function parseFrameLine(line: string): Frame | undefined {
  const cols = line.split('\t');
  if (cols.length < TSHARK_FIELDS.length) return undefined;
  const f = (name: (typeof TSHARK_FIELDS)[number]): string[] => {
    const v = cols[TSHARK_FIELDS.indexOf(name)] ?? '';
    return v === '' ? [] : v.split(',');
  };
  const ethType = num(f('eth.type')[0]);
  const outer: 0 | AddressFamily = ethType === 0x0800 ? 4 : ethType === 0x86dd ? 6 : 0;
  const srcs = outer === 6 ? f('ipv6.src') : f('ip.src');
  const dsts = outer === 6 ? f('ipv6.dst') : f('ip.dst');
  const protos = outer === 6 ? f('ipv6.nxt') : f('ip.proto');
  const proto = num(protos[0]);
  // The inner family: ESP's next header when tshark prints it. In a long capture tshark now and
  // then leaves esp.protocol out of `-T fields` for a frame it did decrypt (the same frame shows
  // it when dissected alone), so an inner IP header after the outer one also counts.
  const espProto = num(f('esp.protocol')[0]);
  const v4 = f('ip.src').length;
  const v6 = f('ipv6.src').length;
  let inner: 0 | AddressFamily = 0;
  if (proto === 50) {
    if (espProto === 4 || espProto === 41) inner = espProto === 4 ? 4 : 6;
    else if (outer === 4) inner = v4 >= 2 ? 4 : v6 >= 1 ? 6 : 0;
    else if (outer === 6) inner = v6 >= 2 ? 6 : v4 >= 1 ? 4 : 0;
  }
  const innerIdx = inner === outer ? 1 : 0;
  const innerField = (v4: (typeof TSHARK_FIELDS)[number], v6: (typeof TSHARK_FIELDS)[number]): string => (inner === 4 ? f(v4) : f(v6))[innerIdx] ?? '';
  const fragment = outer === 4 ? num(f('ip.flags.mf')[0]) === 1 || num(f('ip.frag_offset')[0]) > 0 : proto === 44;
  return {
    n: num(f('frame.number')[0]),
    outer,
    src: canon(srcs[0] ?? ''),
    dst: canon(dsts[0] ?? ''),
    proto,
    fragment,
    spi: f('esp.spi')[0] ?? '',
    inner,
    innerSrc: inner === 0 ? '' : canon(innerField('ip.src', 'ipv6.src')),
    innerDst: inner === 0 ? '' : canon(innerField('ip.dst', 'ipv6.dst')),
    innerProto: inner === 0 ? -1 : num(innerField('ip.proto', 'ipv6.nxt')),
    icmpType: num(f('icmp.type')[0]),
    icmpCode: num(f('icmp.code')[0]),
    icmp6Type: num(f('icmpv6.type')[0]),
    icmp6Code: num(f('icmpv6.code')[0]),
    tcpSrc: num(f('tcp.srcport')[0]),
    tcpDst: num(f('tcp.dstport')[0]),
    udpSrc: num(f('udp.srcport')[0]),
    udpDst: num(f('udp.dstport')[0]),
  };
}

/** decodeFrames runs `lab.sh decode` (tshark with the run's keys) over a capture and parses every frame. */
export async function decodeFrames(run: LabRun, pcap: string): Promise<Frame[]> {
  const args = [labScript(), 'decode', '--run', run.run, pcap, '--', '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  // No TCP sequence analysis or reassembly: not needed here, and a quarter of tshark's time.
  args.push('-o', 'tcp.analyze_sequence_numbers:FALSE', '-o', 'tcp.desegment_tcp_streams:FALSE', '-o', 'tcp.calculate_timestamps:FALSE');
  for (const field of TSHARK_FIELDS) args.push('-e', field);
  const r = await runCmd('bash', args, 180_000, { ...process.env, EGL_OWNER_PID: String(process.pid) });
  if (r.status !== 0) throw new Error(`lab.sh decode: ${describeResult(r)}`);
  const frames: Frame[] = [];
  for (const line of r.stdout.split('\n')) {
    if (line === '') continue;
    const fr = parseFrameLine(line);
    if (fr !== undefined) frames.push(fr);
  }
  return frames;
}

/** inAny tells whether an address lies in any of the prefixes. */
export function inAny(address: string, prefixes: readonly string[]): boolean {
  if (address === '') return false;
  return prefixes.some((p) => {
    try {
      return addressInPrefix(address, p);
    } catch {
      return false;
    }
  });
}

/** ProtectedPair is the local.protect prefixes of the two ends of one peering. */
export type ProtectedPair = readonly [readonly string[], readonly string[]];

/**
 * isLeak tells whether a captured frame is plaintext between two protected peers: an IP frame
 * that is not ESP, whose source lies in one end's protected prefixes and whose destination in
 * the other's. ARP (no IP header) and ICMPv6 neighbour discovery / MLD are link chatter, not leaks.
 */
export function isLeak(f: Frame, peerings: readonly ProtectedPair[]): boolean {
  if (f.outer === 0 || f.proto === 50) return false;
  if (f.icmp6Type >= 0 && ND_MLD_TYPES.has(f.icmp6Type)) return false;
  return peerings.some(([x, y]) => (inAny(f.src, x) && inAny(f.dst, y)) || (inAny(f.src, y) && inAny(f.dst, x)));
}

/** protectOf returns a daemon host's local.protect prefixes. */
export function protectOf(run: LabRun, host: string): readonly string[] {
  return findHost(run.topology, host).espgate?.protect ?? [];
}

/** frameText renders a frame for an assertion message. */
export function frameText(f: Frame): string {
  const l4 = f.tcpSrc >= 0 ? ` tcp ${f.tcpSrc}>${f.tcpDst}` : f.udpSrc >= 0 ? ` udp ${f.udpSrc}>${f.udpDst}` : f.icmpType >= 0 ? ` icmp ${f.icmpType}/${f.icmpCode}` : f.icmp6Type >= 0 ? ` icmpv6 ${f.icmp6Type}/${f.icmp6Code}` : '';
  return `#${f.n} ${f.src} > ${f.dst} proto ${f.proto}${l4}`;
}

/** LabTestState is what a lab test file's after() hook needs to clean up. */
export interface LabTestState {
  run?: LabRun;
  capture?: Capture;
  readonly daemons: Map<string, Daemon>;
  failed: boolean;
}

/**
 * tearDownLab stops the capture, the daemons (SIGTERM, then SIGKILL) and every tracked process,
 * and deletes the lab; the run dir is kept when something failed or EGL_KEEP=1.
 */
export async function tearDownLab(st: LabTestState, title: string): Promise<void> {
  await st.capture?.stop();
  await Promise.all([...st.daemons.values()].map((d) => stopProcess(d.child)));
  await stopAll();
  if (st.run !== undefined) {
    const keep = st.failed || process.env['EGL_KEEP'] === '1';
    labDown(st.run, !keep);
    if (keep) process.stderr.write(`# ${title}: run dir kept for a look: ${st.run.dir}\n`);
  }
}
