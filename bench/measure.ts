/**
 * bench/measure.ts: what the namespace benchmarks (lab-bench.ts, hub-bench.ts, scale.ts) share:
 * process CPU and memory from /proc, the machine's facts and load, bounded child processes, and
 * iperf3/ping runs measured exactly as ../shared/bench/anchors.sh measures them, so that the
 * figures compare with the shared side-by-side harness:
 *
 *   ping     ping -q -c 50 -i 0.01 -w 15, the avg of "rtt min/avg/max/mdev"
 *   iperf3   server `iperf3 -s -1 -p P -J` in the receiver's namespace (waited for with ss),
 *            client `iperf3 -c DST -p P -t DUR -J ...` in the sender's;
 *            tcp: end.sum_received.bits_per_second, end.sum_sent.retransmits
 *            udp: rx kpps = (sum_received.packets - lost_packets) / seconds, rx Mbit/s, lost_percent
 *   cpu %    utime+stime of the tunnel daemons over the client's wall time (200 % = 2 cores)
 *
 * Every child runs under a timeout and is remembered in a ChildSet, so a cleanup path can end
 * exactly the processes this benchmark started, by pid.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import type { LabRun } from '../lab/harness.js';
import { labDown } from '../lab/harness.js';

/** CLK_TCK is the kernel's clock tick rate, the unit of utime/stime in /proc/<pid>/stat. */
export const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** STAT_UTIME_INDEX is utime's index among the fields after "pid (comm) " in /proc/<pid>/stat (field 14 in proc(5)). */
const STAT_UTIME_INDEX = 11;
/** STAT_STIME_INDEX is stime's index there (field 15). */
const STAT_STIME_INDEX = 12;

/** sleep resolves after ms. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** cpuTicks returns utime+stime of the given pids, in clock ticks (a gone pid counts 0). */
export function cpuTicks(pids: readonly number[]): number {
  let t = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      t += Number(f[STAT_UTIME_INDEX] ?? 0) + Number(f[STAT_STIME_INDEX] ?? 0);
    } catch {
      // the process is gone
    }
  }
  return t;
}

/** cpuPercent converts a tick difference over a wall time to percent of one core. */
export function cpuPercent(ticks: number, wallMs: number): number {
  return wallMs <= 0 ? 0 : (100 * ticks) / CLK_TCK / (wallMs / 1000);
}

/** MemKb is a process's resident set now and its peak (VmRSS, VmHWM), in kB. */
export interface MemKb {
  readonly rss: number;
  readonly hwm: number;
}

/** memKb reads VmRSS and VmHWM from /proc/<pid>/status; zeros when the process is gone. */
export function memKb(pid: number): MemKb {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
    return { rss: field('VmRSS'), hwm: field('VmHWM') };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/** load1 returns the 1-minute load average, two decimals. */
export function load1(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}

/** MachineFacts are printed next to every result table. */
export interface MachineFacts {
  readonly date: string;
  readonly nproc: number;
  readonly cpu: string;
  readonly kernel: string;
  readonly node: string;
  readonly iperf3: string;
  readonly loadavg: string;
}

/** machineFacts collects the date, CPUs, kernel, node and iperf3 versions and /proc/loadavg. */
export function machineFacts(): MachineFacts {
  const sh = (argv: string[]): string => spawnSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8', timeout: 5_000 }).stdout?.split('\n')[0]?.trim() ?? '';
  let la: string;
  try {
    la = readFileSync('/proc/loadavg', 'utf8').trim();
  } catch {
    la = loadavg().join(' ');
  }
  return {
    date: new Date().toISOString(),
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? '?',
    kernel: sh(['uname', '-r']),
    node: process.version,
    iperf3: sh(['iperf3', '--version']),
    loadavg: la,
  };
}

/** median of the finite numbers in xs; NaN when there are none. */
export function median(xs: readonly number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? (v[m] ?? NaN) : ((v[m - 1] ?? 0) + (v[m] ?? 0)) / 2;
}

/** fmt renders a number with d decimals, '-' for NaN. */
export function fmt(x: number, d: number): string {
  return Number.isFinite(x) ? x.toFixed(d) : '-';
}

/** renderTable renders rows as a Markdown table (first row = header). */
export function renderTable(rows: readonly (readonly string[])[]): string {
  const [head, ...body] = rows;
  if (head === undefined) return '';
  const line = (r: readonly string[]): string => `| ${r.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...body.map(line)].join('\n');
}

/** RunResult is a finished child: exit code (null on a signal), output, wall time. */
export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/**
 * ChildSet remembers the children a benchmark started so that cleanup ends exactly those, by
 * pid. `aborted` is set by abort() (a signal): loops check it and stop.
 */
export class ChildSet {
  readonly #live = new Set<ChildProcess>();
  aborted = false;

  /** track remembers a child until it exits. */
  track(child: ChildProcess): ChildProcess {
    this.#live.add(child);
    child.once('exit', () => this.#live.delete(child));
    return child;
  }

  /** run starts argv, waits for it (killed with SIGKILL after timeoutMs) and returns its output. */
  run(argv: readonly string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<RunResult> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      const child = this.track(spawn(argv[0] ?? '', argv.slice(1), {
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        ...(env === undefined ? {} : { env }),
      }));
      let stdout = '';
      let stderr = '';
      child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      child.once('error', (e) => { stderr += String(e); });
      child.once('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - t0 }));
    });
  }

  /** stopAll sends SIGTERM to every live child, waits up to waitMs, then SIGKILLs the rest. */
  async stopAll(waitMs = 3_000): Promise<void> {
    for (const c of this.#live) c.kill('SIGTERM');
    for (let i = 0; i < waitMs / 50 && this.#live.size > 0; i++) await sleep(50);
    for (const c of this.#live) c.kill('SIGKILL');
  }

  /** killAllSync SIGKILLs every live child (for the last-resort exit path). */
  killAllSync(): void {
    for (const c of this.#live) c.kill('SIGKILL');
  }

  /** abort marks the set aborted and ends every child, so that awaited runs return at once. */
  abort(): void {
    this.aborted = true;
    for (const c of this.#live) c.kill('SIGKILL');
  }
}

/** nsArgv prefixes argv with `ip netns exec <ns>`. */
export function nsArgv(ns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

/** PingResult: the average RTT in ms (NaN when ping failed) and the raw output. */
export interface PingResult {
  readonly rttAvgMs: number;
  readonly raw: string;
}

/** pingRtt runs anchors.sh's ping (50 echoes 10 ms apart) from ns to dst. */
export async function pingRtt(children: ChildSet, ns: string, dst: string): Promise<PingResult> {
  const r = await children.run(nsArgv(ns, ['ping', '-q', '-c', '50', '-i', '0.01', '-w', '15', dst]), 20_000);
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  return { rttAvgMs: m === null ? NaN : Number(m[1]), raw: r.stdout + r.stderr };
}

/** waitPing pings once a second-ish until dst answers, at most `tries` times. */
export async function waitPing(children: ChildSet, ns: string, dst: string, tries = 20): Promise<boolean> {
  for (let i = 0; i < tries && !children.aborted; i++) {
    const r = await children.run(nsArgv(ns, ['ping', '-c1', '-W1', '-q', dst]), 5_000);
    if (r.code === 0) return true;
    await sleep(500);
  }
  return false;
}

/** IperfKind names the anchors.sh tests. */
export type IperfKind = 'tcp1' | 'tcp4' | 'udp64' | 'udpbig';

/** iperfArgs returns the client arguments of a test (udpBig = the large UDP payload, 1372). */
export function iperfArgs(kind: IperfKind, udpBig: number): string[] {
  switch (kind) {
    case 'tcp1': return [];
    case 'tcp4': return ['-P', '4'];
    case 'udp64': return ['-u', '-b', '0', '-l', '64'];
    case 'udpbig': return ['-u', '-b', '0', '-l', String(udpBig)];
  }
}

/** IperfFigures are the anchors.sh figures of one client run (NaN when absent). */
export interface IperfFigures {
  readonly gbps: number;
  readonly retrans: number;
  readonly rxKpps: number;
  readonly rxMbps: number;
  readonly lossPct: number;
  readonly error?: string;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number; packets?: number; lost_packets?: number; seconds?: number; lost_percent?: number };
    sum_sent?: { retransmits?: number };
    sum?: { bits_per_second?: number; packets?: number; lost_packets?: number; seconds?: number; lost_percent?: number };
  };
}

/** parseIperf extracts the figures the way anchors.sh's jq expressions do. */
export function parseIperf(json: string, udp: boolean): IperfFigures {
  let j: IperfJson;
  try {
    j = JSON.parse(json) as IperfJson;
  } catch {
    return { gbps: NaN, retrans: NaN, rxKpps: NaN, rxMbps: NaN, lossPct: NaN, error: 'no JSON from iperf3' };
  }
  const r = j.end?.sum_received;
  if (r === undefined) return { gbps: NaN, retrans: NaN, rxKpps: NaN, rxMbps: NaN, lossPct: NaN, error: j.error ?? 'no end.sum_received' };
  const bps = r.bits_per_second ?? NaN;
  if (!udp) return { gbps: bps / 1e9, retrans: j.end?.sum_sent?.retransmits ?? 0, rxKpps: NaN, rxMbps: bps / 1e6, lossPct: NaN };
  const kpps = ((r.packets ?? NaN) - (r.lost_packets ?? NaN)) / (r.seconds ?? NaN) / 1000;
  return { gbps: bps / 1e9, retrans: NaN, rxKpps: kpps, rxMbps: bps / 1e6, lossPct: r.lost_percent ?? NaN };
}

/** waitListening polls `ss` in ns until a TCP listener on port exists (50 x 100 ms at most). */
export async function waitListening(children: ChildSet, ns: string, port: number): Promise<boolean> {
  for (let i = 0; i < 50 && !children.aborted; i++) {
    const r = await children.run(nsArgv(ns, ['ss', '-Hltn', `sport = :${port}`]), 5_000);
    if (r.stdout.trim() !== '') return true;
    await sleep(100);
  }
  return false;
}

/** startIperfServer starts a one-shot iperf3 server in ns; the promise resolves with its JSON output when it ends. */
export function startIperfServer(children: ChildSet, ns: string, port: number, durS: number): Promise<RunResult> {
  return children.run(nsArgv(ns, ['iperf3', '-s', '-1', '-p', String(port), '-J']), (durS + 40) * 1000);
}

/** runIperfClient runs one bounded iperf3 client from ns to dst:port. */
export function runIperfClient(children: ChildSet, ns: string, dst: string, port: number, durS: number, args: readonly string[]): Promise<RunResult> {
  return children.run(nsArgv(ns, ['iperf3', '-c', dst, '-p', String(port), '-t', String(durS), '-J', ...args]), (durS + 30) * 1000);
}

/** RssSeries samples VmRSS of some pids every intervalMs until stop(); samples are [ms since start, kB per pid]. */
export class RssSeries {
  readonly samples: { t: number; kb: number[] }[] = [];
  readonly #pids: readonly number[];
  readonly #t0 = performance.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(pids: readonly number[], intervalMs: number) {
    this.#pids = pids;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** sample takes one sample now. */
  sample(): void {
    this.samples.push({ t: Math.round(performance.now() - this.#t0), kb: this.#pids.map((p) => memKb(p).rss) });
  }

  /** stop ends sampling (after one last sample). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.sample();
  }

  /** max returns the largest sample of pid index i. */
  max(i: number): number {
    return Math.max(0, ...this.samples.map((s) => s.kb[i] ?? 0));
  }
}

/**
 * abortOnSignals wires SIGINT/SIGTERM for a lab benchmark: the first signal aborts every child
 * (the bench's finally then tears the lab down); a second one tears the lab down at once and exits
 * 130. `lab` returns the run to tear down (undefined before the lab is up). Returns the handler,
 * for a watchdog that should act like a first signal.
 */
export function abortOnSignals(children: ChildSet, lab: () => LabRun | undefined): () => void {
  let signals = 0;
  const onSignal = (): void => {
    children.abort();
    if (++signals > 1) {
      const run = lab();
      if (run !== undefined) labDown(run);
      // eslint-disable-next-line no-restricted-syntax -- second signal: tear down synchronously and leave
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return onSignal;
}
