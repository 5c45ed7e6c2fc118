/**
 * test/lab/soak.ts: espgate stays up under sustained mixed load in the `lan` lab (root only).
 * An entry point and a library: `npm run soak` runs `node dist/test/lab/soak.js --seconds 300`;
 * test/lab/stayup.test.ts calls runSoak for 60 s (ESPGATE_SOAK_S) in CI.
 *
 *   alice 198.18.0.1 ══ESP══ bob 198.18.0.2        carol 198.18.0.3 (full mesh, host mode)
 *
 *   bulk   alice -> bob (IPv4) and bob -> alice (IPv6): BULK_BYTES each way per connection,
 *          one transfer after another, SHA-256 checked both ways
 *   short  carol -> alice (IPv4) and carol -> bob (IPv6): `conns` echo connections in all
 *          (default 10,000), half each, spread evenly over the run, at most SHORT_PARALLEL in
 *          flight per client
 *   UDP    bob -> carol (IPv4) and alice -> carol (IPv6): request/response every UDP_INTERVAL_MS
 *
 * Every SAMPLE_MS it reads each daemon's VmRSS (/proc/<pid>/status) and open fds
 * (/proc/<pid>/fd, the smallest of up to FD_READS reads taken while the daemon has no child
 * process, so that a file the daemon has open for a moment, such as a sequence reservation
 * being fsync'ed, or the stdio pipes of the gate check it runs every 10 s, is not taken for a
 * leak).
 *
 * Pass/fail (the bounds, see RSS_GROWTH_MAX_KB for how it was chosen):
 *   - zero failed bulk transfers, short connections and UDP requests (UDP retransmissions are
 *     counted and printed: a datagram lost under load is not a failure, an unanswered request is)
 *   - RSS at the end of the load <= RSS after the warm-up + RSS_GROWTH_MAX_KB, per daemon
 *   - open fds at the end of the load == open fds after the warm-up, per daemon
 *   - conntrack `invalid` (conntrack -S) unchanged on alice, bob and carol
 *   - every daemon still answers `status` (state up) and exits 0 on SIGTERM
 *
 * The lab is always torn down (by pid; the run dir is kept when the soak failed or EGL_KEEP=1);
 * SIGINT or SIGTERM ends the load early and still tears down.
 */
import { readFileSync, readdirSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { LabRun } from '../../lab/harness.js';
import { labConfigs, labUnavailable, labUp, stopProcess } from '../../lab/harness.js';
import type { AddressFamily } from '../../lab/topology.js';
import { addressOf } from '../../lab/topology.js';
import type { Daemon, DaemonStatusDoc, LabTestState, TrafficOutcome } from './support.js';
import {
  conntrackInvalid, sleep, startDaemon, startServer, statusOf, stopAll, tail, tearDownLab, traffic, waitReady,
} from './support.js';

/** SOAK_HOSTS run espgate; every pair of them is a peering in `lan`. */
export const SOAK_HOSTS = ['alice', 'bob', 'carol'] as const;

/** TCP_PORT and UDP_PORT are the traffic servers' ports on every soak host. */
const TCP_PORT = 5001;
const UDP_PORT = 5002;

/** DEFAULT_CONNS is the number of short TCP connections per run. */
export const DEFAULT_CONNS = 10_000;
/** SHORT_PARALLEL caps the short connections in flight per client process. */
const SHORT_PARALLEL = 64;
/** SHORT_CONN_TIMEOUT_MS fails one short connection (and so the soak) that takes longer. */
const SHORT_CONN_TIMEOUT_MS = 30_000;
/** SHORT_SPREAD is the part of the run over which the short connections are started. */
const SHORT_SPREAD = 0.9;
/** SHORT_BYTES is what each short connection echoes. */
const SHORT_BYTES = 512;

/** BULK_BYTES is sent each way by one bulk transfer; BULK_TIMEOUT_MS bounds one transfer. */
const BULK_BYTES = 16_000_000;
const BULK_TIMEOUT_MS = 120_000;

/** UDP_INTERVAL_MS paces each UDP flow; UDP_BATCH requests make one udp-client run. */
const UDP_INTERVAL_MS = 20;
const UDP_BATCH = 250;

/**
 * SAMPLE_MS is the sampling period; one fd sample is the smallest of FD_WANTED reads taken while
 * the daemon has no child (at most FD_READS reads, FD_READ_GAP_MS apart: 1 s).
 */
const SAMPLE_MS = 5_000;
const FD_WANTED = 3;
const FD_READS = 20;
const FD_READ_GAP_MS = 50;

/**
 * RSS_GROWTH_MAX_KB bounds a daemon's RSS growth from the end of the warm-up to the end of the
 * load. How it was chosen: on the 2-core lab machine (shared with other lab runs) the daemons
 * start at ~76 MB, peak at 77-82 MB in the first seconds of load, drop by 10-15 MB at the
 * first major GC and then stay within about 1 MB: growth warm -> end was +0.0, +0.3 and
 * -12.8 MB in a 60 s soak (0.87 M packets through alice), -1.4, -2.2 and -1.0 MB in a 300 s one
 * (2.9 M packets). The largest swing between two samples was 15 MB (a GC between them), so
 * 32 MB is about twice the GC noise, while a leak of 12 bytes per packet would already pass it
 * in the 300 s soak. fds need no slack: 26 in every sample of every daemon.
 */
export const RSS_GROWTH_MAX_KB = 32 * 1024;

/** warmupMs is when the reference sample is taken: 20 % into the load, at least 10 s, at most half. */
export function warmupMs(seconds: number): number {
  return Math.min(Math.max(10_000, seconds * 200), seconds * 500);
}

/** SoakOptions configure one soak run. */
export interface SoakOptions {
  readonly seconds: number;
  /** conns is the number of short TCP connections over the whole run (default DEFAULT_CONNS). */
  readonly conns?: number;
  /** log receives progress lines. */
  readonly log?: (line: string) => void;
  /** signal ends the load early (the lab is torn down all the same). */
  readonly signal?: AbortSignal;
}

/** Sample is one reading of one daemon. */
export interface Sample {
  readonly tMs: number;
  readonly host: string;
  readonly rssKb: number;
  readonly fds: number;
}

/** DaemonFigures summarizes one daemon over the run. */
export interface DaemonFigures {
  readonly pid: number;
  readonly rssStartKb: number;
  readonly rssWarmKb: number;
  readonly rssPeakKb: number;
  readonly rssEndKb: number;
  readonly fdsStart: number;
  readonly fdsWarm: number;
  readonly fdsMin: number;
  readonly fdsMax: number;
  readonly fdsEnd: number;
  /** packets is tx + rx packets over all peers during the load (status counters). */
  readonly packets: number;
  /** drops: drop counters that moved during the load, by reason. */
  readonly drops: Readonly<Record<string, number>>;
  /** queueDropped: packets the kernel dropped at the NFQUEUE during the load. */
  readonly queueDropped: number;
  readonly invalidBefore: number;
  readonly invalidAfter: number;
  readonly exit: string;
}

/** SoakSummary is the soak's result (printed as JSON by the command). */
export interface SoakSummary {
  ok: boolean;
  problems: string[];
  seconds: number;
  loadMs: number;
  warmupMs: number;
  rssGrowthMaxKb: number;
  short: { planned: number; succeeded: number; failed: number; p99ConnMs: number; maxConnMs: number };
  bulk: { transfers: number; failed: number; bytesEachWay: number; mbPerS: number };
  udp: { requests: number; sends: number; failed: number };
  daemons: Record<string, DaemonFigures>;
  samples: Sample[];
  runDir: string;
}

/** daemonPid finds the node process of a daemon: the spawned pid (ip netns exec execs), else its node child. */
export function daemonPid(pid: number): number {
  const comm = (p: number): string => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  if (comm(pid) === 'node') return pid;
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number);
  } catch {
    // no such process
  }
  const node = children.find((c) => comm(c) === 'node');
  if (node === undefined) throw new Error(`no node process at pid ${pid} (comm "${comm(pid)}") or among its children ${children.join(',')}`);
  return node;
}

/** rssKbOf reads VmRSS of a process, in kB. */
export function rssKbOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** hasChildren tells whether a process has a child (any thread's /proc/<pid>/task/<tid>/children). */
function hasChildren(pid: number): boolean {
  return readdirSync(`/proc/${pid}/task`).some((tid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim() !== '';
    } catch {
      return false; // the thread is gone
    }
  });
}

/**
 * fdCountOf counts a process's open fds: the smallest of FD_WANTED reads taken while it has no
 * child process (a child's stdio pipes are open only while it runs); when it had a child at every
 * one of FD_READS reads, the smallest of all of them (see the file comment).
 */
export async function fdCountOf(pid: number): Promise<number> {
  let quiet = Infinity, any = Infinity, taken = 0;
  for (let i = 0; i < FD_READS && taken < FD_WANTED; i++) {
    if (i > 0) await sleep(FD_READ_GAP_MS);
    const busy = hasChildren(pid);
    const n = readdirSync(`/proc/${pid}/fd`).length;
    any = Math.min(any, n);
    if (!busy && !hasChildren(pid)) {
      quiet = Math.min(quiet, n);
      taken++;
    }
  }
  return taken > 0 ? quiet : any;
}

/** Totals accumulates the outcome of one kind of load. */
interface Totals {
  runs: number;
  failedRuns: number;
  failures: string[];
}

const newTotals = (): Totals => ({ runs: 0, failedRuns: 0, failures: [] });

function note(t: Totals, o: TrafficOutcome): void {
  t.runs++;
  if (!o.ok) {
    t.failedRuns++;
    if (t.failures.length < 5) t.failures.push(o.detail.slice(0, 600));
  }
}

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

function packetsOf(s: DaemonStatusDoc | undefined): number {
  return (s?.peers ?? []).reduce((n, p) => n + p.txPackets + p.rxPackets, 0);
}

interface QueueDoc {
  readonly queue?: { readonly queueDropped: number; readonly userDropped: number } | null;
}

function queueDroppedOf(s: DaemonStatusDoc | undefined): number {
  const q = (s as (DaemonStatusDoc & QueueDoc) | undefined)?.queue;
  return q === undefined || q === null ? 0 : q.queueDropped + q.userDropped;
}

function movedDrops(a: DaemonStatusDoc | undefined, b: DaemonStatusDoc | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(b?.drops ?? {})) {
    const d = n - (a?.drops[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/**
 * runSoak brings up its own `lan` run, starts espgate on alice, bob and carol, runs the load for
 * `seconds`, samples the daemons, checks the bounds and tears everything down. It resolves with
 * the summary (ok false and the problems when a bound was broken) and rejects only when the lab
 * could not be brought up.
 */
export async function runSoak(opts: SoakOptions): Promise<SoakSummary> {
  const log = opts.log ?? ((): void => {});
  const seconds = opts.seconds;
  const conns = opts.conns ?? DEFAULT_CONNS;
  const st: LabTestState = { daemons: new Map<string, Daemon>(), failed: false };
  const summary: SoakSummary = {
    ok: false, problems: [], seconds, loadMs: 0, warmupMs: warmupMs(seconds), rssGrowthMaxKb: RSS_GROWTH_MAX_KB,
    short: { planned: conns, succeeded: 0, failed: 0, p99ConnMs: 0, maxConnMs: 0 },
    bulk: { transfers: 0, failed: 0, bytesEachWay: 0, mbPerS: 0 },
    udp: { requests: 0, sends: 0, failed: 0 },
    daemons: {}, samples: [], runDir: '',
  };
  const problems = summary.problems;
  const onAbort = (): void => {
    void stopAll();
  };
  opts.signal?.addEventListener('abort', onAbort);
  try {
    const run = labUp('lan');
    st.run = run;
    summary.runDir = run.dir;
    labConfigs(run, 4, 'static'); // static SAs: the soak measures the data path; IKE rekeys have ike.test.ts
    log(`lab run ${run.run} up (${run.dir}); starting espgate on ${SOAK_HOSTS.join(', ')}`);
    for (const h of SOAK_HOSTS) st.daemons.set(h, startDaemon(run, h));
    for (const d of st.daemons.values()) {
      if (!(await waitReady(run, d))) throw new Error(`${d.host}: espgate did not come up (log ${d.log}):\n${tail(d.log)}`);
    }
    const pids = new Map<string, number>();
    for (const d of st.daemons.values()) {
      if (d.child.pid === undefined) throw new Error(`${d.host}: no pid`);
      const pid = daemonPid(d.child.pid);
      // The process sampled is the daemon that answers: status reports its own pid.
      const reported = ((await statusOf(run, d.host)) as (DaemonStatusDoc & { readonly pid?: number }) | undefined)?.pid;
      if (reported !== pid) throw new Error(`${d.host}: the daemon reports pid ${String(reported)}, sampling pid ${pid}`);
      pids.set(d.host, pid);
    }
    for (const h of SOAK_HOSTS) {
      await startServer(run, h, 'tcp-server', TCP_PORT);
      await startServer(run, h, 'udp-echo-server', UDP_PORT);
    }
    const invalidBefore = new Map<string, number>();
    const statusBefore = new Map<string, DaemonStatusDoc | undefined>();
    for (const h of SOAK_HOSTS) {
      invalidBefore.set(h, await conntrackInvalid(run, h));
      statusBefore.set(h, await statusOf(run, h));
    }
    await runLoad(run, seconds, conns, pids, summary, log, opts.signal);
    for (const h of SOAK_HOSTS) {
      const pid = pids.get(h) ?? 0;
      const mine = summary.samples.filter((s) => s.host === h);
      const during = mine.filter((s) => s.tMs <= summary.loadMs);
      const warm = during.find((s) => s.tMs >= summary.warmupMs) ?? during.at(-1);
      const end = during.at(-1);
      const first = mine[0];
      const after = await statusOf(run, h);
      const invalidAfter = await conntrackInvalid(run, h);
      const d = st.daemons.get(h);
      if (after?.state !== 'up') problems.push(`${h}: status after the load: ${after === undefined ? 'no answer' : after.state}`);
      if (d !== undefined && (d.child.exitCode !== null || d.child.signalCode !== null)) problems.push(`${h}: the daemon exited during the soak:\n${tail(d.log)}`);
      const fig: DaemonFigures = {
        pid,
        rssStartKb: first?.rssKb ?? 0, rssWarmKb: warm?.rssKb ?? 0, rssPeakKb: Math.max(0, ...mine.map((s) => s.rssKb)), rssEndKb: end?.rssKb ?? 0,
        fdsStart: first?.fds ?? 0, fdsWarm: warm?.fds ?? 0, fdsMin: Math.min(...mine.map((s) => s.fds)), fdsMax: Math.max(...mine.map((s) => s.fds)), fdsEnd: end?.fds ?? 0,
        packets: packetsOf(after) - packetsOf(statusBefore.get(h)),
        drops: movedDrops(statusBefore.get(h), after),
        queueDropped: queueDroppedOf(after) - queueDroppedOf(statusBefore.get(h)),
        invalidBefore: invalidBefore.get(h) ?? 0, invalidAfter,
        exit: 'running',
      };
      summary.daemons[h] = fig;
      if (warm === undefined || end === undefined || end === warm) problems.push(`${h}: too few samples under load to compare (${during.length})`);
      else {
        if (fig.rssEndKb - fig.rssWarmKb > RSS_GROWTH_MAX_KB) problems.push(`${h}: RSS grew by ${fig.rssEndKb - fig.rssWarmKb} kB after the warm-up (bound ${RSS_GROWTH_MAX_KB} kB)`);
        if (fig.fdsEnd !== fig.fdsWarm) problems.push(`${h}: open fds ${fig.fdsWarm} after the warm-up, ${fig.fdsEnd} at the end`);
      }
      if (invalidAfter !== fig.invalidBefore) problems.push(`${h}: conntrack invalid ${fig.invalidBefore} before the load, ${invalidAfter} after`);
    }
    // SIGTERM: each daemon removes what it added and exits 0.
    for (const h of SOAK_HOSTS) {
      const d = st.daemons.get(h);
      if (d === undefined) continue;
      const code = await stopProcess(d.child, 10_000);
      const fig = summary.daemons[h];
      if (fig !== undefined) summary.daemons[h] = { ...fig, exit: String(code) };
      if (code !== 0) problems.push(`${h}: exit ${String(code)} after SIGTERM:\n${tail(d.log)}`);
    }
    if (opts.signal?.aborted === true) problems.push('interrupted');
  } catch (e) {
    problems.push(`soak aborted: ${(e as Error).message}`);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    summary.ok = problems.length === 0;
    st.failed = !summary.ok;
    await tearDownLab(st, 'soak');
  }
  return summary;
}

/** runLoad runs the three loads and the sampler until the load is over; fills summary. */
async function runLoad(
  run: LabRun, seconds: number, conns: number, pids: ReadonlyMap<string, number>, summary: SoakSummary,
  log: (line: string) => void, signal: AbortSignal | undefined,
): Promise<void> {
  const addr = (h: string, fam: AddressFamily): string => addressOf(run.topology, h, fam);
  const t0 = Date.now();
  const deadline = t0 + seconds * 1000;
  const stopping = (): boolean => signal?.aborted === true;
  const problems = summary.problems;

  // bulk: one transfer after another, until the deadline
  const bulk = newTotals();
  let bulkBytes = 0;
  const bulkLoop = async (from: string, to: string, fam: AddressFamily): Promise<void> => {
    while (Date.now() < deadline && !stopping()) {
      const o = await traffic(run, from, ['tcp-client', '--host', addr(to, fam), '--port', String(TCP_PORT), '--bytes', String(BULK_BYTES)], BULK_TIMEOUT_MS);
      if (stopping()) return;
      note(bulk, o);
      if (o.ok) bulkBytes += BULK_BYTES;
    }
  };

  // short connections: one paced tcp-many per flow for the whole run
  const half = [Math.ceil(conns / 2), Math.floor(conns / 2)] as const;
  const spreadS = seconds * SHORT_SPREAD;
  const shortRun = (to: string, fam: AddressFamily, n: number): Promise<TrafficOutcome> => {
    const rate = Math.max(1, Math.ceil(n / spreadS));
    return traffic(run, 'carol', ['tcp-many', '--host', addr(to, fam), '--port', String(TCP_PORT), '--conns', String(n), '--bytes', String(SHORT_BYTES),
      '--rate', String(rate), '--parallel', String(SHORT_PARALLEL), '--conn-timeout', String(SHORT_CONN_TIMEOUT_MS)], seconds * 1000 + 90_000);
  };

  // UDP: batches of paced request/response until the deadline
  const udp = newTotals();
  const udpLoop = async (from: string, to: string, fam: AddressFamily): Promise<void> => {
    while (Date.now() < deadline && !stopping()) {
      const left = Math.floor((deadline - Date.now()) / UDP_INTERVAL_MS);
      const count = Math.max(1, Math.min(UDP_BATCH, left));
      const o = await traffic(run, from, ['udp-client', '--host', addr(to, fam), '--port', String(UDP_PORT), '--count', String(count), '--interval-ms', String(UDP_INTERVAL_MS)], 60_000);
      if (stopping()) return;
      note(udp, o);
      summary.udp.requests += o.ok ? num(o.result?.requests) : num(o.result?.answered);
      summary.udp.sends += num(o.result?.sends);
    }
  };

  // sampler
  let loadDone = false;
  const sampleAll = async (): Promise<void> => {
    const tMs = Date.now() - t0;
    for (const [host, pid] of pids) {
      try {
        summary.samples.push({ tMs, host, rssKb: rssKbOf(pid), fds: await fdCountOf(pid) });
      } catch (e) {
        problems.push(`${host}: cannot sample pid ${pid}: ${(e as Error).message}`);
        return;
      }
    }
    const row = [...pids.keys()].map((h) => {
      const s = summary.samples.filter((x) => x.host === h).at(-1);
      return `${h} ${((s?.rssKb ?? 0) / 1024).toFixed(1)} MB ${s?.fds ?? '-'} fds`;
    });
    log(`t=${(tMs / 1000).toFixed(0)}s  ${row.join('  ')}`);
  };
  const sampler = (async (): Promise<void> => {
    await sampleAll();
    while (!loadDone) {
      const next = t0 + Math.ceil((Date.now() - t0 + 1) / SAMPLE_MS) * SAMPLE_MS;
      while (!loadDone && Date.now() < next) await sleep(Math.min(250, next - Date.now()));
      if (!loadDone) await sampleAll();
    }
  })();

  log(`load: ${seconds} s; bulk ${BULK_BYTES / 1e6} MB each way per transfer (alice<->bob), ${conns} short connections (carol -> alice, carol -> bob), UDP every ${UDP_INTERVAL_MS} ms (bob, alice -> carol)`);
  const [shortA, shortB] = await Promise.all([
    shortRun('alice', 4, half[0]),
    shortRun('bob', 6, half[1]),
    bulkLoop('alice', 'bob', 4),
    bulkLoop('bob', 'alice', 6),
    udpLoop('bob', 'carol', 4),
    udpLoop('alice', 'carol', 6),
  ]);
  summary.loadMs = Date.now() - t0;
  loadDone = true;
  await sampler;
  // one more sample with the load over (printed; the bounds use the samples taken under load)
  await sampleAll();

  for (const [o, n] of [[shortA, half[0]], [shortB, half[1]]] as const) {
    const ok = num(o.result?.succeeded);
    summary.short.succeeded += ok;
    summary.short.failed += n - ok;
    summary.short.p99ConnMs = Math.max(summary.short.p99ConnMs, num(o.result?.p99ConnMs));
    summary.short.maxConnMs = Math.max(summary.short.maxConnMs, num(o.result?.maxConnMs));
    if (!o.ok && !stopping()) problems.push(`short connections: ${o.detail.slice(0, 800)}`);
  }
  // Throughput: every byte the bulk transfers moved (both flows, both directions) over the load's duration.
  summary.bulk = { transfers: bulk.runs, failed: bulk.failedRuns, bytesEachWay: bulkBytes, mbPerS: Number(((2 * bulkBytes) / 1e6 / (summary.loadMs / 1000)).toFixed(1)) };
  summary.udp.failed = udp.failedRuns;
  if (bulk.runs === 0) problems.push('no bulk transfer ran');
  for (const f of bulk.failures) problems.push(`bulk transfer failed: ${f}`);
  for (const f of udp.failures) problems.push(`UDP flow failed: ${f}`);
  if (summary.short.succeeded !== conns && !stopping()) problems.push(`short connections: ${summary.short.succeeded} of ${conns} succeeded`);
}

/** renderTable prints the samples as one row per sample time, one column pair per daemon. */
export function renderTable(summary: SoakSummary): string {
  const hosts = Object.keys(summary.daemons);
  const times = [...new Set(summary.samples.map((s) => s.tMs))].sort((a, b) => a - b);
  const head = ['t (s)', ...hosts.flatMap((h) => [`${h} RSS MB`, `${h} fds`])];
  const rows = times.map((t) => {
    const cells = [`${(t / 1000).toFixed(0)}${t > summary.loadMs ? ' (idle)' : t >= summary.warmupMs && times.find((x) => x >= summary.warmupMs) === t ? ' (warm)' : ''}`];
    for (const h of hosts) {
      const s = summary.samples.find((x) => x.host === h && x.tMs === t);
      cells.push(s === undefined ? '-' : (s.rssKb / 1024).toFixed(1), s === undefined ? '-' : String(s.fds));
    }
    return cells;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** renderFigures prints the per-daemon figures, one line each. */
export function renderFigures(summary: SoakSummary): string[] {
  return Object.entries(summary.daemons).map(([h, f]) =>
    `${h} (pid ${f.pid}): RSS start ${(f.rssStartKb / 1024).toFixed(1)} MB, warm ${(f.rssWarmKb / 1024).toFixed(1)}, peak ${(f.rssPeakKb / 1024).toFixed(1)}, ` +
    `end ${(f.rssEndKb / 1024).toFixed(1)} (growth ${((f.rssEndKb - f.rssWarmKb) / 1024).toFixed(1)} MB, bound ${(RSS_GROWTH_MAX_KB / 1024).toFixed(0)}); ` +
    `fds start ${f.fdsStart}, warm ${f.fdsWarm}, end ${f.fdsEnd} (min ${f.fdsMin}, max ${f.fdsMax}); packets ${f.packets}; ` +
    `drops ${JSON.stringify(f.drops)}, queue drops ${f.queueDropped}; conntrack invalid ${f.invalidBefore} -> ${f.invalidAfter}; exit ${f.exit}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '300' }, conns: { type: 'string' } }, strict: true });
  const seconds = Number(values.seconds);
  const conns = values.conns === undefined ? DEFAULT_CONNS : Number(values.conns);
  if (!Number.isInteger(seconds) || seconds < 20 || seconds > 3600 || !Number.isInteger(conns) || conns < 2 || conns > 100_000) {
    process.stderr.write('usage: node dist/test/lab/soak.js [--seconds 20..3600] [--conns 2..100000]\n');
    process.exitCode = 2;
    return;
  }
  const why = labUnavailable();
  if (why !== undefined) {
    process.stderr.write(`soak: cannot run: ${why}\n`);
    process.exitCode = 2;
    return;
  }
  const ac = new AbortController();
  const interrupt = (sig: string): void => {
    process.stderr.write(`soak: ${sig}: ending the load and tearing down\n`);
    ac.abort();
  };
  process.on('SIGINT', () => interrupt('SIGINT'));
  process.on('SIGTERM', () => interrupt('SIGTERM'));
  const summary = await runSoak({ seconds, conns, signal: ac.signal, log: (l) => process.stdout.write(`soak: ${l}\n`) });
  process.stdout.write(`\n${renderTable(summary)}\n\n`);
  for (const l of renderFigures(summary)) process.stdout.write(`${l}\n`);
  process.stdout.write(`short connections: ${summary.short.succeeded}/${summary.short.planned} ok, ${summary.short.failed} failed (p99 ${summary.short.p99ConnMs} ms, max ${summary.short.maxConnMs} ms); ` +
    `bulk: ${summary.bulk.transfers} transfers, ${summary.bulk.failed} failed, ${(summary.bulk.bytesEachWay / 1e6).toFixed(0)} MB each way, ${summary.bulk.mbPerS} MB/s over both flows and directions; ` +
    `UDP: ${summary.udp.requests} requests, ${summary.udp.sends - summary.udp.requests} retransmitted, ${summary.udp.failed} failed runs\n`);
  process.stdout.write(`${JSON.stringify({ ...summary, samples: summary.samples.length })}\n`);
  process.stdout.write(summary.ok ? 'soak: PASS\n' : `soak: FAIL\n  ${summary.problems.join('\n  ')}\n`);
  process.exitCode = summary.ok ? 0 : 1;
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
