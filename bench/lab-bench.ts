/**
 * bench/lab-bench.ts: espgate alone in the lab, measured the way ../shared/bench/anchors.sh
 * measures its peers (bench/measure.ts has the exact commands), so the figures compare with the
 * shared side-by-side harness (`npm run bench:compare`).
 *
 *   lan topology (lab/lab.sh): alice 198.18.0.1 and bob 198.18.0.2 on one bridge, each running
 *   `espgate up` with the lab's configs. iperf3 and ping aim at bob's REAL address, so traffic
 *   goes through the NETMAP steering (198.18.0.2 -> 198.19.0.2 -> TUN) and conntrack, as in
 *   espgate's host-to-host use:
 *
 *     alice: iperf3 -c 198.18.0.2 ─▶ DNAT ─▶ eg0 ─▶ espgate (seal) ─▶ raw ESP ─┐
 *     bob:   iperf3 -s ◀─ conntrack un-NAT ◀─ eg0 ◀─ espgate (open) ◀─ NFQUEUE ◀┘
 *
 * Each repetition runs: ping (50 x 10 ms), TCP 1 stream, TCP 4 streams, UDP -b 0 -l 64, UDP
 * -b 0 -l 1372 (DUR seconds each). For each, the two daemons' CPU (utime+stime over the
 * client's wall time, 100 % = one core) and the 1-minute load average when it started. RSS of
 * both daemons is sampled every second through the whole run (peak, start, end: is it flat?);
 * VmHWM is the kernel's peak. The tables show medians over REPS.
 *
 *   npm run bench        (root; `npx tsc -p tsconfig.json` first; REPS=3 DUR=10 UDP_BIG=1372)
 *   OUT=dir              also write the JSON summary and raw iperf3 output there
 *   KINDS=tcp1,udpbig    measure only these iperf3 tests (default all four; ping always runs)
 * The daemons inherit the environment, so data-path switches (ESPGATE_SEND_BATCH=0, ...)
 * apply to both; bench/ab-bench.ts alternates such variants in one quiet window.
 *
 * Bounded: every child runs under a timeout; the lab run is torn down in `finally`, and on
 * SIGINT/SIGTERM (a second signal tears down synchronously and exits).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

import { cliPath, labConfigs, labDown, labSpawn, labUnavailable, labUp, namespaceOf, waitFor } from '../lab/harness.js';
import type { LabRun } from '../lab/harness.js';
import { addressOf } from '../lab/topology.js';
import { configPath, stateDirOf } from '../lab/gen-configs.js';
import { requestControl } from '../src/daemon/control.js';
import type { DaemonStatus } from '../src/daemon/status.js';
import type { IperfFigures, IperfKind, MachineFacts } from './measure.js';
import {
  ChildSet, RssSeries, cpuPercent, cpuTicks, fmt, iperfArgs, load1, machineFacts, median, memKb, parseIperf, pingRtt,
  renderTable, runIperfClient, sleep, startIperfServer, waitListening, waitPing,
  abortOnSignals,
} from './measure.js';

const REPS = Number(process.env['REPS'] ?? 3);
const DUR = Number(process.env['DUR'] ?? 10);
const UDP_BIG = Number(process.env['UDP_BIG'] ?? 1372);
const OUT = process.env['OUT'];
const PORT = 5201;
const HOSTS = ['alice', 'bob'] as const;
const ALL_KINDS: readonly IperfKind[] = ['tcp1', 'tcp4', 'udp64', 'udpbig'];
/** KINDS are the iperf3 tests to run: $KINDS (comma-separated) or all. */
const KINDS: readonly IperfKind[] = ((): readonly IperfKind[] => {
  const want = process.env['KINDS'];
  if (want === undefined || want === '') return ALL_KINDS;
  return ALL_KINDS.filter((k) => want.split(',').includes(k));
})();
/** RSS_SAMPLE_MS is the RSS sampling interval. */
const RSS_SAMPLE_MS = 1000;

/** Sample is one measured test of one repetition. */
interface Sample {
  readonly rep: number;
  readonly kind: IperfKind | 'ping';
  readonly load1: number;
  readonly rttAvgMs?: number;
  readonly iperf?: IperfFigures;
  /** cpuPct: alice, bob (percent of one core over the client's wall time). */
  readonly cpuPct?: readonly [number, number];
  /** rssPeakKb: the largest RSS sample of alice, bob during the test. */
  readonly rssPeakKb?: readonly [number, number];
}

function checkPrerequisites(): string | undefined {
  const lab = labUnavailable();
  if (lab !== undefined) return lab;
  if (spawnSync('sh', ['-c', 'command -v iperf3'], { stdio: 'ignore', timeout: 5_000 }).status !== 0) {
    return 'iperf3 is not installed (apt-get install iperf3; lab/setup.sh should list it)';
  }
  if (!existsSync(cliPath())) return `espgate is not built (${cliPath()} missing): npx tsc -p tsconfig.json`;
  return undefined;
}

async function startDaemons(run: LabRun, children: ChildSet): Promise<number[]> {
  labConfigs(run, 4, 'static'); // the data path alone: no key exchange in the measurement
  mkdirSync(join(run.dir, 'logs'), { recursive: true });
  const pids: number[] = [];
  for (const host of HOSTS) {
    const child = labSpawn(run, host, ['env', 'ESPGATE_LOG_LEVEL=warn', 'node', cliPath(), 'up', '-c', configPath(run.dir, host)],
      join(run.dir, 'logs', `${host}.log`));
    children.track(child);
    if (child.pid === undefined) throw new Error(`could not start espgate on ${host}`);
    pids.push(child.pid);
  }
  const socks = HOSTS.map((h) => join(stateDirOf(run.dir, h), 'espgate.sock'));
  if (!(await waitFor(() => socks.every((s) => existsSync(s)), 150, 200))) throw new Error(`control sockets did not appear: ${socks.join(', ')}`);
  for (const sock of socks) {
    let state = '';
    let warmUp = 'running';
    // Up, and the JIT warm-up over (it runs in slices after 'up'; a ping during it measures the
    // warm-up, not the tunnel). Bounded: 150 x 200 ms.
    for (let i = 0; i < 150 && (state !== 'up' || warmUp === 'running') && !children.aborted; i++) {
      try {
        const st = (await requestControl(sock, { cmd: 'status' })) as DaemonStatus;
        state = st.state;
        warmUp = st.dataPath.warmUp;
      } catch {
        // still starting
      }
      if (state !== 'up' || warmUp === 'running') await sleep(200);
    }
    if (state !== 'up') throw new Error(`daemon behind ${sock} did not reach state up`);
  }
  return pids;
}

/** measureIperf runs one iperf3 test from alice to bob and samples the daemons. */
async function measureIperf(run: LabRun, children: ChildSet, pids: readonly number[], rss: RssSeries, rep: number, kind: IperfKind): Promise<Sample> {
  const a = namespaceOf(run, 'alice');
  const b = namespaceOf(run, 'bob');
  const dst = addressOf(run.topology, 'bob', 4);
  const la = load1();
  const server = startIperfServer(children, b, PORT, DUR);
  if (!(await waitListening(children, b, PORT))) throw new Error('iperf3 server did not start listening');
  const first = rss.samples.length;
  const c0 = pids.map((p) => cpuTicks([p]));
  const t0 = performance.now();
  const client = await runIperfClient(children, a, dst, PORT, DUR, iperfArgs(kind, UDP_BIG));
  const wall = performance.now() - t0;
  const cpu = pids.map((p, i) => cpuPercent(cpuTicks([p]) - (c0[i] ?? 0), wall));
  rss.sample();
  const window = rss.samples.slice(first);
  const peak = (i: number): number => Math.max(0, ...window.map((s) => s.kb[i] ?? 0));
  await server;
  const iperf = parseIperf(client.stdout, kind.startsWith('udp'));
  if (OUT !== undefined) writeFileSync(join(OUT, `espgate-${kind}-r${rep}.json`), client.stdout);
  if (iperf.error !== undefined) console.error(`  rep ${rep} ${kind}: iperf3 failed: ${iperf.error} ${client.stderr.slice(0, 200)}`);
  return { rep, kind, load1: la, iperf, cpuPct: [cpu[0] ?? NaN, cpu[1] ?? NaN], rssPeakKb: [peak(0), peak(1)] };
}

function figureRows(samples: readonly Sample[]): string[][] {
  const of = (kind: Sample['kind']): Sample[] => samples.filter((s) => s.kind === kind);
  const med = (xs: Sample[], f: (s: Sample) => number): number => median(xs.map(f));
  const loads = (xs: Sample[]): string => xs.map((s) => fmt(s.load1, 2)).join(' ');
  const cpu = (xs: Sample[]): string => {
    const a = med(xs, (s) => s.cpuPct?.[0] ?? NaN);
    const b = med(xs, (s) => s.cpuPct?.[1] ?? NaN);
    return `${fmt(a + b, 0)} (${fmt(a, 0)} + ${fmt(b, 0)})`;
  };
  const rssPeak = (xs: Sample[]): string => `${fmt(Math.max(...xs.map((s) => s.rssPeakKb?.[0] ?? 0)) / 1024, 0)} / ${fmt(Math.max(...xs.map((s) => s.rssPeakKb?.[1] ?? 0)) / 1024, 0)}`;
  const rows: string[][] = [['figure', 'espgate (median)', 'each rep', 'daemon CPU %, A+B (A + B)', 'RSS peak MiB, A / B', 'load1 at start of each rep']];
  const ping = of('ping');
  rows.push(['ping RTT avg, ms', fmt(med(ping, (s) => s.rttAvgMs ?? NaN), 3), ping.map((s) => fmt(s.rttAvgMs ?? NaN, 3)).join(' '), '-', '-', loads(ping)]);
  const t1 = of('tcp1');
  rows.push(['TCP 1 stream, Gbit/s', fmt(med(t1, (s) => s.iperf?.gbps ?? NaN), 3), t1.map((s) => fmt(s.iperf?.gbps ?? NaN, 3)).join(' '), cpu(t1), rssPeak(t1), loads(t1)]);
  rows.push(['‑ retransmits', fmt(med(t1, (s) => s.iperf?.retrans ?? NaN), 0), t1.map((s) => fmt(s.iperf?.retrans ?? NaN, 0)).join(' '), '', '', '']);
  const t4 = of('tcp4');
  rows.push(['TCP 4 streams, Gbit/s', fmt(med(t4, (s) => s.iperf?.gbps ?? NaN), 3), t4.map((s) => fmt(s.iperf?.gbps ?? NaN, 3)).join(' '), cpu(t4), rssPeak(t4), loads(t4)]);
  const u64 = of('udp64');
  rows.push(['UDP -l 64, rx kpps', fmt(med(u64, (s) => s.iperf?.rxKpps ?? NaN), 1), u64.map((s) => fmt(s.iperf?.rxKpps ?? NaN, 1)).join(' '), cpu(u64), rssPeak(u64), loads(u64)]);
  rows.push(['‑ loss %', fmt(med(u64, (s) => s.iperf?.lossPct ?? NaN), 1), u64.map((s) => fmt(s.iperf?.lossPct ?? NaN, 1)).join(' '), '', '', '']);
  const ub = of('udpbig');
  rows.push([`UDP -l ${UDP_BIG}, rx Mbit/s`, fmt(med(ub, (s) => s.iperf?.rxMbps ?? NaN), 0), ub.map((s) => fmt(s.iperf?.rxMbps ?? NaN, 0)).join(' '), cpu(ub), rssPeak(ub), loads(ub)]);
  rows.push(['‑ rx kpps', fmt(med(ub, (s) => s.iperf?.rxKpps ?? NaN), 1), ub.map((s) => fmt(s.iperf?.rxKpps ?? NaN, 1)).join(' '), '', '', '']);
  rows.push(['‑ loss %', fmt(med(ub, (s) => s.iperf?.lossPct ?? NaN), 1), ub.map((s) => fmt(s.iperf?.lossPct ?? NaN, 1)).join(' '), '', '', '']);
  return rows;
}

interface MemoryReport {
  readonly startKb: readonly number[];
  readonly endKb: readonly number[];
  readonly peakKb: readonly number[];
  readonly hwmKb: readonly number[];
  /** afterRepKb[rep][host]: RSS at the end of each repetition. */
  readonly afterRepKb: readonly (readonly number[])[];
}

async function main(): Promise<void> {
  const why = checkPrerequisites();
  if (why !== undefined) {
    console.error(`lab-bench: cannot run: ${why}`);
    process.exitCode = 2;
    return;
  }
  if (OUT !== undefined) mkdirSync(OUT, { recursive: true });
  const facts: MachineFacts = machineFacts();
  console.log(`lab-bench: espgate alice -> bob (lan, host-to-host, real address), reps=${REPS} dur=${DUR}s udp_big=${UDP_BIG}`);
  console.log(`machine: ${facts.nproc} cpus (${facts.cpu}), kernel ${facts.kernel}, node ${facts.node}, ${facts.iperf3}; ${facts.date}; loadavg ${facts.loadavg}`);

  const children = new ChildSet();
  let run: LabRun | undefined;
  abortOnSignals(children, () => run);

  const samples: Sample[] = [];
  let memory: MemoryReport | undefined;
  let drops: Record<string, unknown> = {};
  try {
    run = labUp('lan');
    const pids = await startDaemons(run, children);
    const a = namespaceOf(run, 'alice');
    const dst = addressOf(run.topology, 'bob', 4);
    if (!(await waitPing(children, a, dst))) throw new Error(`alice cannot ping ${dst} through espgate`);
    await sleep(1000);
    const startKb = pids.map((p) => memKb(p).rss);
    const rss = new RssSeries(pids, RSS_SAMPLE_MS);
    const afterRepKb: number[][] = [];
    for (let rep = 1; rep <= REPS && !children.aborted; rep++) {
      console.error(`  rep ${rep}/${REPS} (load1 ${fmt(load1(), 2)})`);
      const la = load1();
      const p = await pingRtt(children, a, dst);
      samples.push({ rep, kind: 'ping', load1: la, rttAvgMs: p.rttAvgMs });
      for (const kind of KINDS) {
        if (children.aborted) break;
        samples.push(await measureIperf(run, children, pids, rss, rep, kind));
      }
      afterRepKb.push(pids.map((pid) => memKb(pid).rss));
    }
    await sleep(2000);
    rss.stop();
    memory = {
      startKb,
      endKb: pids.map((p) => memKb(p).rss),
      peakKb: pids.map((_p, i) => rss.max(i)),
      hwmKb: pids.map((p) => memKb(p).hwm),
      afterRepKb,
    };
    for (const host of HOSTS) {
      try {
        const st = (await requestControl(join(stateDirOf(run.dir, host), 'espgate.sock'), { cmd: 'status' })) as DaemonStatus;
        drops[host] = { drops: Object.fromEntries(Object.entries(st.drops).filter(([, n]) => n > 0)), queue: st.queue, totals: st.totals };
      } catch (e) {
        drops[host] = { error: (e as Error).message };
      }
    }
    if (OUT !== undefined) writeFileSync(join(OUT, 'rss-series.json'), JSON.stringify(rss.samples));
  } catch (e) {
    console.error(`lab-bench: ${(e as Error).message}`);
    process.exitCode = 1;
  } finally {
    await children.stopAll();
    if (run !== undefined) labDown(run);
  }
  if (children.aborted) {
    drops = {};
    process.exitCode = 130;
  }
  if (samples.length === 0) return;

  console.log(`\nespgate alone (lan: alice -> bob real address), median of ${REPS} rep(s); ${facts.nproc} cpus shared by iperf3 client, server, both daemons and other load`);
  console.log(renderTable(figureRows(samples)));
  if (memory !== undefined) {
    const mib = (kb: number): string => fmt(kb / 1024, 1);
    console.log('\ndaemon memory, MiB (alice / bob): RSS after start, after each rep, at the end; peak of 1 s samples; VmHWM');
    console.log(renderTable([
      ['after start', ...memory.afterRepKb.map((_r, i) => `after rep ${i + 1}`), 'end (2 s idle)', 'peak sample', 'VmHWM', 'end - after rep 1'],
      [
        `${mib(memory.startKb[0] ?? 0)} / ${mib(memory.startKb[1] ?? 0)}`,
        ...memory.afterRepKb.map((r) => `${mib(r[0] ?? 0)} / ${mib(r[1] ?? 0)}`),
        `${mib(memory.endKb[0] ?? 0)} / ${mib(memory.endKb[1] ?? 0)}`,
        `${mib(memory.peakKb[0] ?? 0)} / ${mib(memory.peakKb[1] ?? 0)}`,
        `${mib(memory.hwmKb[0] ?? 0)} / ${mib(memory.hwmKb[1] ?? 0)}`,
        `${mib((memory.endKb[0] ?? 0) - (memory.afterRepKb[0]?.[0] ?? 0))} / ${mib((memory.endKb[1] ?? 0) - (memory.afterRepKb[0]?.[1] ?? 0))}`,
      ],
    ]));
  }
  console.log(`\ndaemon drop counters and NFQUEUE stats at the end: ${JSON.stringify(drops)}`);
  const summary = { bench: 'lab-bench', facts, reps: REPS, durS: DUR, udpBig: UDP_BIG, samples, memory, drops };
  if (OUT !== undefined) writeFileSync(join(OUT, 'lab-bench.json'), `${JSON.stringify(summary, null, 2)}\n`);
  console.log(`\nJSON ${JSON.stringify(summary)}`);
}

await main();
