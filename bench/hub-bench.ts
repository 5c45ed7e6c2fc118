/**
 * bench/hub-bench.ts: aggregate TCP throughput through one espgate daemon that serves many
 * peers at once, with 1 active client and with every client active.
 *
 *   hub topology (lab/lab.sh, CLIENTS clients, default 64): server 198.18.0.1 and clients c1..cN
 *   (198.18.0.2 ..) on one bridge; every host runs `espgate up`; each client is a peer of the
 *   server only, so the server's daemon holds N peers and 2N SAs and carries all the traffic.
 *
 *      c1 ─┐                                 server: N one-shot iperf3 servers, ports 5201..
 *      c2 ─┼── ESP ──▶ bridge ──▶ server daemon (N peers) ──▶ iperf3 -s
 *      cN ─┘
 *
 * Phases, per load mode and direction (up = clients send to the server, the hub decrypts;
 * down = iperf3 -R, the hub encrypts), DUR seconds each, with ACTIVE clients sending at once
 * (default 1, 8 and all N; c1..cK, one TCP stream each):
 *   paced   the same aggregate offered rate every time, PACED_MBPS (default 32) Mbit/s split
 *           evenly (iperf3 -b, --pacing-timer 20 ms): does the hub carry 64 peers' shares as
 *           cheaply as one peer's? (The client side is 2 processes per client on the same 2
 *           cores: above ~0.5 Mbit/s per client x 64 the generators saturate the machine.)
 *   greedy  iperf3's default unlimited TCP: on the lab's 2 shared cores every greedy sender and
 *           every client daemon competes with the hub daemon for CPU, so with N clients the
 *           hub gets ~1/(2N) of the CPU; this shows the lab's limit more than espgate's.
 * Figures: the sum of the clients' received Gbit/s (iperf3 end.sum_received, as anchors.sh),
 * the same from the hub daemon's own per-peer inner byte counters (both directions) over the
 * wall time, the spread between clients (min, max, Jain's fairness index), failed clients, the
 * hub daemon's CPU % and CPU µs per inner packet it handled, the sum of the client daemons'
 * CPU %, and the 1-minute load average at the start of each phase.
 *
 *   node dist/bench/hub-bench.js        (root; CLIENTS=64 ACTIVE=1,8,64 DUR=10 REPS=1 PACED_MBPS=32 MODES=paced,greedy)
 *
 * Bounded: every child under a timeout; the lab run is torn down in `finally` and on
 * SIGINT/SIGTERM (a second signal tears down synchronously and exits).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

import { cliPath, labConfigs, labDown, labSpawn, labUnavailable, labUp, namespaceOf } from '../lab/harness.js';
import type { LabRun } from '../lab/harness.js';
import { MAX_HUB_CLIENTS, addressOf } from '../lab/topology.js';
import { configPath, stateDirOf } from '../lab/gen-configs.js';
import { requestControl } from '../src/daemon/control.js';
import type { DaemonStatus } from '../src/daemon/status.js';
import {
  CLK_TCK, ChildSet, cpuPercent, cpuTicks, fmt, load1, machineFacts, median, memKb, nsArgv, parseIperf, renderTable, runIperfClient,
  sleep, startIperfServer, waitPing,
  abortOnSignals,
} from './measure.js';
import type { RunResult } from './measure.js';

const CLIENTS = Number(process.env['CLIENTS'] ?? 64);
const DUR = Number(process.env['DUR'] ?? 10);
const REPS = Number(process.env['REPS'] ?? 1);
const PACED_MBPS = Number(process.env['PACED_MBPS'] ?? 32);
/** PACING_TIMER_US: iperf3's rate check interval in paced mode (its default, 1000 µs, makes 64 paced senders alone saturate 2 cores). */
const PACING_TIMER_US = 20_000;
/** ACTIVE lists the numbers of clients that send at once, phase by phase. */
const ACTIVE = [...new Set((process.env['ACTIVE'] ?? `1,8,${CLIENTS}`).split(',').map(Number))].filter((n) => Number.isInteger(n) && n >= 1 && n <= CLIENTS);
const MODES = (process.env['MODES'] ?? 'paced,greedy').split(',').filter((m): m is Mode => m === 'paced' || m === 'greedy');
const BASE_PORT = 5201;
/** START_WAIT_MS bounds the wait for all daemons to reach state up (N node processes start on few cores). */
const START_WAIT_MS = 600_000;
/** MAX_RUNTIME_S bounds the whole run. */
const MAX_RUNTIME_S = Number(process.env['MAX_RUNTIME'] ?? 1800);

type Direction = 'up' | 'down';
type Mode = 'paced' | 'greedy';

/** Phase is one measured phase. */
interface Phase {
  readonly rep: number;
  readonly mode: Mode;
  readonly direction: Direction;
  readonly active: number;
  readonly load1: number;
  readonly wallMs: number;
  /** sumGbps: sum of the clients' iperf3 received rates. */
  readonly sumGbps: number;
  /** hubGbps: bytes the hub daemon counted for the active peers (rx + tx) over the wall time. */
  readonly hubGbps: number;
  readonly minGbps: number;
  readonly maxGbps: number;
  readonly jain: number;
  readonly failed: number;
  readonly hubCpuPct: number;
  /** hubCpuUsPerPkt: the hub daemon's CPU time per inner packet it counted (rx + tx). */
  readonly hubCpuUsPerPkt: number;
  readonly clientsCpuPct: number;
  readonly hubRssKb: number;
  /** retrans: the senders' TCP retransmits summed over the clients (iperf3 end.sum_sent). */
  readonly retrans: number;
  /** hubDrops, clientDrops: drop counters that grew during the phase (hub; summed over all clients). */
  readonly hubDrops: Readonly<Record<string, number>>;
  readonly clientDrops: Readonly<Record<string, number>>;
  /** hubQueueDropped: growth of the kernel's NFQUEUE drops (queue full + socket full) on the hub. */
  readonly hubQueueDropped: number;
}

/** dropsOf flattens a status document's drop counters and NFQUEUE drops into one record. */
function dropsOf(st: DaemonStatus | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (st === undefined) return out;
  for (const [k, v] of Object.entries(st.drops)) if (v > 0) out[k] = v;
  if (st.queue !== null) out['nfqueue'] = st.queue.queueDropped + st.queue.userDropped;
  return out;
}

/** addDrops adds b into a. */
function addDrops(a: Record<string, number>, b: Readonly<Record<string, number>>): Record<string, number> {
  for (const [k, v] of Object.entries(b)) a[k] = (a[k] ?? 0) + v;
  return a;
}

/** growth returns the counters of b that exceed a's. */
function growth(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) if (v - (a[k] ?? 0) > 0) out[k] = v - (a[k] ?? 0);
  return out;
}

/** clientDropTotals sums the drop counters of every client daemon (unreachable ones are skipped). */
async function clientDropTotals(run: LabRun): Promise<Record<string, number>> {
  const total: Record<string, number> = {};
  for (let i = 1; i <= CLIENTS; i++) {
    try {
      const st = (await requestControl(join(stateDirOf(run.dir, clientName(i)), 'espgate.sock'), { cmd: 'status' }, 10_000)) as DaemonStatus;
      addDrops(total, dropsOf(st));
    } catch {
      // a client that does not answer is counted by the ping check and by iperf3
    }
  }
  return total;
}

function clientName(i: number): string {
  return `c${i}`;
}

async function hubStatus(run: LabRun): Promise<DaemonStatus> {
  return (await requestControl(join(stateDirOf(run.dir, 'server'), 'espgate.sock'), { cmd: 'status' }, 30_000)) as DaemonStatus;
}

/** peerTraffic sums rx+tx bytes and packets of the named peers in a status document. */
function peerTraffic(st: DaemonStatus, names: ReadonlySet<string>): { bytes: number; packets: number } {
  let bytes = 0;
  let packets = 0;
  for (const p of st.peers) {
    if (!names.has(p.name)) continue;
    bytes += p.rxBytes + p.txBytes;
    packets += p.rxPackets + p.txPackets;
  }
  return { bytes, packets };
}

async function startDaemons(run: LabRun, children: ChildSet, hosts: readonly string[]): Promise<Map<string, number>> {
  const pids = new Map<string, number>();
  const procs = new Map<string, ChildProcess>();
  const logOf = (host: string): string => join(run.dir, 'logs', `${host}.log`);
  for (const host of hosts) {
    const child = labSpawn(run, host, ['env', 'ESPGATE_LOG_LEVEL=warn', 'node', cliPath(), 'up', '-c', configPath(run.dir, host)], logOf(host));
    children.track(child);
    if (child.pid === undefined) throw new Error(`could not start espgate on ${host}`);
    pids.set(host, child.pid);
    procs.set(host, child);
  }
  const t0 = performance.now();
  const pending = new Set(hosts);
  const exited: string[] = [];
  while (pending.size > 0 && performance.now() - t0 < START_WAIT_MS && !children.aborted) {
    for (const host of [...pending]) {
      const child = procs.get(host);
      if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
        pending.delete(host);
        exited.push(`${host} (exit ${String(child.exitCode ?? child.signalCode)}): ${tail(logOf(host))}`);
        continue;
      }
      const sock = join(stateDirOf(run.dir, host), 'espgate.sock');
      if (!existsSync(sock)) continue;
      try {
        const st = (await requestControl(sock, { cmd: 'status' }, 10_000)) as DaemonStatus;
        if (st.state === 'up') pending.delete(host);
      } catch {
        // still starting
      }
    }
    if (pending.size > 0) await sleep(500);
  }
  if (exited.length > 0) throw new Error(`${exited.length} daemon(s) exited during start:\n  ${exited.slice(0, 4).join('\n  ')}`);
  if (pending.size > 0) {
    const stuck = [...pending].slice(0, 3).map((h) => `${h}: ${tail(logOf(h))}`);
    throw new Error(`${pending.size} daemon(s) did not reach state up within ${START_WAIT_MS / 1000} s:\n  ${stuck.join('\n  ')}`);
  }
  console.error(`  ${hosts.length} daemons up in ${fmt((performance.now() - t0) / 1000, 1)} s`);
  return pids;
}

/**
 * waitWarm waits (bounded by START_WAIT_MS) until no daemon's JIT warm-up is still running: N
 * daemons warming up at once on two cores keep the load far above 10 for a minute or more after
 * they are up, and a ping through two of them can take longer than ping's 1 s wait. Returns
 * how many were still warming up at the deadline.
 */
async function waitWarm(run: LabRun, children: ChildSet, hosts: readonly string[]): Promise<number> {
  const t0 = performance.now();
  const pending = new Set(hosts);
  while (pending.size > 0 && performance.now() - t0 < START_WAIT_MS && !children.aborted) {
    for (const host of [...pending]) {
      try {
        const st = (await requestControl(join(stateDirOf(run.dir, host), 'espgate.sock'), { cmd: 'status' }, 10_000)) as DaemonStatus;
        if (st.dataPath.warmUp !== 'running') pending.delete(host);
      } catch {
        // busy: asked again next round
      }
    }
    if (pending.size > 0) await sleep(1000);
  }
  console.error(`  warm-up done in ${fmt((performance.now() - t0) / 1000, 1)} s (load1 ${fmt(load1(), 1)})`);
  return pending.size;
}

/** tail returns the last bytes of a log file (for error messages). */
function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-600).trim() || '(empty log)';
  } catch {
    return '(no log)';
  }
}

/** waitListeners polls ss in the server namespace until `ports` TCP listeners on our ports exist. */
async function waitListeners(children: ChildSet, ns: string, ports: number): Promise<boolean> {
  for (let i = 0; i < 100 && !children.aborted; i++) {
    const r = await children.run(nsArgv(ns, ['ss', '-Hltn']), 5_000);
    const n = r.stdout.split('\n').filter((l) => {
      const m = /:(\d+)\s/.exec(l);
      const port = m === null ? 0 : Number(m[1]);
      return port >= BASE_PORT && port < BASE_PORT + ports;
    }).length;
    if (n >= ports) return true;
    await sleep(100);
  }
  return false;
}

async function phase(run: LabRun, children: ChildSet, pids: Map<string, number>, rep: number, mode: Mode, direction: Direction, active: number): Promise<Phase> {
  const server = namespaceOf(run, 'server');
  const dst = addressOf(run.topology, 'server', 4);
  const clients = Array.from({ length: active }, (_, i) => clientName(i + 1));
  const la = load1();
  const servers: Promise<RunResult>[] = clients.map((_c, i) => startIperfServer(children, server, BASE_PORT + i, DUR));
  if (!(await waitListeners(children, server, active))) throw new Error(`${active} iperf3 servers did not all start listening`);
  const hubPid = pids.get('server') ?? 0;
  const clientPids = [...pids.entries()].filter(([h]) => h !== 'server').map(([, p]) => p);
  const names = new Set(clients);
  const st0 = await hubStatus(run);
  const cd0 = await clientDropTotals(run);
  const h0 = cpuTicks([hubPid]);
  const k0 = cpuTicks(clientPids);
  const t0 = performance.now();
  const paced = ['-b', fmt((PACED_MBPS * 1e6) / active, 0), '--pacing-timer', String(PACING_TIMER_US)];
  const args = [...(direction === 'down' ? ['-R'] : []), ...(mode === 'paced' ? paced : [])];
  const results = await Promise.all(clients.map((c, i) => runIperfClient(children, namespaceOf(run, c), dst, BASE_PORT + i, DUR, args)));
  const wallMs = performance.now() - t0;
  const hubTicks = cpuTicks([hubPid]) - h0;
  const hubCpuPct = cpuPercent(hubTicks, wallMs);
  const clientsCpuPct = cpuPercent(cpuTicks(clientPids) - k0, wallMs);
  const st1 = await hubStatus(run);
  const cd1 = await clientDropTotals(run);
  await Promise.all(servers);
  const rates = results.map((r) => parseIperf(r.stdout, false).gbps);
  const ok = rates.filter((x) => Number.isFinite(x));
  const sum = ok.reduce((a, b) => a + b, 0);
  const sumSq = ok.reduce((a, b) => a + b * b, 0);
  const tr0 = peerTraffic(st0, names);
  const tr1 = peerTraffic(st1, names);
  const packets = tr1.packets - tr0.packets;
  return {
    rep, mode, direction, active, load1: la, wallMs,
    sumGbps: sum,
    hubGbps: ((tr1.bytes - tr0.bytes) * 8) / (wallMs / 1000) / 1e9,
    minGbps: ok.length === 0 ? NaN : Math.min(...ok),
    maxGbps: ok.length === 0 ? NaN : Math.max(...ok),
    jain: sumSq === 0 ? NaN : (sum * sum) / (ok.length * sumSq),
    failed: rates.length - ok.length,
    hubCpuPct,
    hubCpuUsPerPkt: packets > 0 ? (hubTicks / CLK_TCK) * 1e6 / packets : NaN,
    clientsCpuPct,
    hubRssKb: memKb(hubPid).rss,
    retrans: results.map((r) => parseIperf(r.stdout, false).retrans).filter((x) => Number.isFinite(x)).reduce((a, b) => a + b, 0),
    hubDrops: growth(dropsOf(st0), dropsOf(st1)),
    clientDrops: growth(cd0, cd1),
    hubQueueDropped: (dropsOf(st1)['nfqueue'] ?? 0) - (dropsOf(st0)['nfqueue'] ?? 0),
  };
}

async function main(): Promise<void> {
  const why = labUnavailable() ??
    (spawnSync('sh', ['-c', 'command -v iperf3'], { stdio: 'ignore', timeout: 5_000 }).status !== 0 ? 'iperf3 is not installed' : undefined) ??
    (existsSync(cliPath()) ? undefined : `espgate is not built (${cliPath()} missing)`) ??
    (Number.isInteger(CLIENTS) && CLIENTS >= 1 && CLIENTS <= MAX_HUB_CLIENTS ? undefined : `CLIENTS must be 1..${MAX_HUB_CLIENTS} (lab/topology.ts MAX_HUB_CLIENTS)`);
  if (why !== undefined) {
    console.error(`hub-bench: cannot run: ${why}`);
    process.exitCode = 2;
    return;
  }
  const facts = machineFacts();
  console.log(`hub-bench: ${CLIENTS} clients (active ${ACTIVE.join(',')}), TCP 1 stream per client, modes ${MODES.join(',')} (paced: ${PACED_MBPS} Mbit/s in total), dur=${DUR}s reps=${REPS}`);
  console.log(`machine: ${facts.nproc} cpus (${facts.cpu}), kernel ${facts.kernel}, node ${facts.node}, ${facts.iperf3}; ${facts.date}; loadavg ${facts.loadavg}`);
  const children = new ChildSet();
  let run: LabRun | undefined;
  const onSignal = abortOnSignals(children, () => run);
  const watchdog = setTimeout(() => {
    console.error(`hub-bench: MAX_RUNTIME ${MAX_RUNTIME_S}s reached, aborting`);
    onSignal();
  }, MAX_RUNTIME_S * 1000);
  watchdog.unref();

  const phases: Phase[] = [];
  let startS = NaN;
  let idle: { hubRssKb: number; clientRssKb: number } | undefined;
  try {
    const t0 = performance.now();
    run = labUp('hub', { clients: CLIENTS });
    console.error(`  lab up (${CLIENTS + 2} namespaces) in ${fmt((performance.now() - t0) / 1000, 1)} s`);
    labConfigs(run, 4, 'static'); // the data path alone: no key exchange in the measurement
    const hosts = ['server', ...Array.from({ length: CLIENTS }, (_, i) => clientName(i + 1))];
    const t1 = performance.now();
    const pids = await startDaemons(run, children, hosts);
    startS = (performance.now() - t1) / 1000;
    const cold = await waitWarm(run, children, hosts);
    if (cold > 0) console.error(`  ${cold} daemon(s) still warming up after ${START_WAIT_MS / 1000} s: checking reachability anyway`);
    const dst = addressOf(run.topology, 'server', 4);
    // Two passes: a client that fails 5 pings is asked again after the others (the load falls
    // as the start settles); one that fails both is a failure, named.
    let unreachable: string[] = [];
    for (let pass = 1; pass <= 2 && !children.aborted; pass++) {
      const ask = pass === 1 ? Array.from({ length: CLIENTS }, (_, i) => clientName(i + 1)) : unreachable;
      unreachable = [];
      for (const c of ask) {
        if (children.aborted) break;
        if (!(await waitPing(children, namespaceOf(run, c), dst, 5))) unreachable.push(c);
      }
      if (pass === 1 && unreachable.length > 0) console.error(`  ${unreachable.length} client(s) did not answer yet (${unreachable.slice(0, 8).join(', ')}): asking again`);
    }
    if (unreachable.length > 0) throw new Error(`${unreachable.length} client(s) cannot ping the server through espgate: ${unreachable.slice(0, 8).join(', ')}`);
    idle = { hubRssKb: memKb(pids.get('server') ?? 0).rss, clientRssKb: memKb(pids.get('c1') ?? 0).rss };
    for (let rep = 1; rep <= REPS && !children.aborted; rep++) {
      for (const mode of MODES) {
        for (const direction of ['up', 'down'] as const) {
          for (const active of ACTIVE) {
            if (children.aborted) break;
            console.error(`  rep ${rep} ${mode} ${direction} ${active} client(s) (load1 ${fmt(load1(), 2)})`);
            phases.push(await phase(run, children, pids, rep, mode, direction, active));
          }
        }
      }
    }
  } catch (e) {
    console.error(`hub-bench: ${(e as Error).message}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    await children.stopAll(10_000);
    if (run !== undefined) labDown(run);
  }
  if (children.aborted) process.exitCode = 130;
  if (phases.length === 0) return;

  console.log(`\nhub: ${CLIENTS} clients, daemons started in ${fmt(startS, 1)} s; idle RSS: hub ${fmt((idle?.hubRssKb ?? 0) / 1024, 0)} MiB, one client ${fmt((idle?.clientRssKb ?? 0) / 1024, 0)} MiB`);
  const rows: string[][] = [['load', 'direction', 'active clients', 'aggregate Gbit/s (iperf3)', 'aggregate Gbit/s (hub counters)', 'per client min / max', 'Jain fairness', 'failed', 'hub daemon CPU %', 'hub CPU µs per packet', 'client daemons CPU % (sum)', 'hub RSS MiB', 'load1']];
  for (const mode of MODES) {
    for (const direction of ['up', 'down'] as const) {
      for (const active of ACTIVE) {
        const ps = phases.filter((p) => p.mode === mode && p.direction === direction && p.active === active);
        if (ps.length === 0) continue;
        const m = (f: (p: Phase) => number): number => median(ps.map(f));
        rows.push([
          mode === 'paced' ? `paced ${PACED_MBPS} Mbit/s` : 'greedy',
          direction === 'up' ? 'clients → hub' : 'hub → clients',
          String(active),
          fmt(m((p) => p.sumGbps), 3),
          fmt(m((p) => p.hubGbps), 3),
          `${fmt(m((p) => p.minGbps), 4)} / ${fmt(m((p) => p.maxGbps), 4)}`,
          fmt(m((p) => p.jain), 2),
          String(Math.max(...ps.map((p) => p.failed))),
          fmt(m((p) => p.hubCpuPct), 0),
          fmt(m((p) => p.hubCpuUsPerPkt), 1),
          fmt(m((p) => p.clientsCpuPct), 0),
          fmt(m((p) => p.hubRssKb) / 1024, 0),
          ps.map((p) => fmt(p.load1, 2)).join(' '),
        ]);
      }
    }
  }
  console.log(renderTable(rows));
  console.log('\nper phase: TCP retransmits (sum over clients) and drop counters that grew (hub; all clients summed; nfqueue = kernel queue drops):');
  for (const p of phases) {
    console.log(`  rep ${p.rep} ${p.mode} ${p.direction} ${p.active}: retrans ${p.retrans}, hub ${JSON.stringify(p.hubDrops)}, clients ${JSON.stringify(p.clientDrops)}`);
  }
  console.log(`\nJSON ${JSON.stringify({ bench: 'hub-bench', facts, clients: CLIENTS, durS: DUR, reps: REPS, startS, idle, phases })}`);
}

await main();
