/**
 * bench/scale.ts: how espgate's control plane and per-packet lookups grow with the number of
 * peers (SIZES, default 1, 100, 1000, 10000). Every peer has one /32 protected address, which is
 * also its endpoint (host-to-host), in 198.18.0.0/16 (mapped to 198.19.0.0/16), and its own
 * pair of SPIs and keys.
 *
 *   npm run bench:scale                         (root: all three parts)
 *   node dist/bench/scale.js --no-netns         (parts 1 and 2 only, no root needed)
 *   SIZES=1,100 IDLE_S=3 STATE_BASE=/dev/shm node dist/bench/scale.js
 *
 * Part 1, in process: the steps of `loadConfig` (YAML parse, schema, semantic validation), the
 *   rules model and its rendering, and the data path's tables (SAs in memory, and SAs with their
 *   sequence/replay state files, as the daemon makes them).
 * Part 2, lookups: ns per lookup of the outbound classify (PrefixTable inner destination → peer,
 *   then the peer's outbound SA) and of the inbound SA (Sadb.lookupInbound: SPI + outer source),
 *   with tables built from the 1-peer and the largest config; random order over all peers.
 * Part 3, in a namespace this bench creates (egtbench<pid>, with a veth link 198.18.0.1/16;
 *   deleted on exit and on SIGINT/SIGTERM): `espgate rules install -c` wall time; the iptables
 *   rules and ipset entries it installed; `espgate up` with the gate present until the log says
 *   "espgate up" and until a control-socket status says state "up"; the daemon's idle CPU and
 *   RSS for IDLE_S seconds, then IDLE_S seconds with a control-socket ping every 20 ms whose
 *   latency shows how long periodic work blocks the event loop (which also runs the data path);
 *   one status call;
 *   SIGTERM until exit; `rules remove`; then a cold `up` that installs the gate itself, and its
 *   stop. State directories go under STATE_BASE (default the OS temp dir); its file system is
 *   printed, because the daemon fdatasyncs its replay files there.
 *
 * Output: tables, then one line "JSON {...}" with every figure. Wall times include node's start
 * (about 0.1-0.3 s per CLI process on this machine) and suffer from other load: the load average
 * is recorded next to every size.
 */
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';

import { configSchema } from '../src/config/schema.js';
import { parseConfig, validateSemantics } from '../src/config/load.js';
import type { Config } from '../src/config/load.js';
import { rulesInputOf } from '../src/daemon/rules-input.js';
import { buildRulesSpec } from '../src/netfilter/model.js';
import { renderInstall } from '../src/netfilter/render.js';
import { buildTables } from '../src/daemon/tables.js';
import type { SaFactory } from '../src/daemon/tables.js';
import { staticSaFactory, algorithmOf } from '../src/daemon/sa-factory.js';
import type { EngineTables } from '../src/datapath/engine.js';
import { InboundSa, OutboundSa } from '../src/esp/sa.js';
import { requestControl } from '../src/daemon/control.js';
import type { DaemonStatus } from '../src/daemon/status.js';
import { cliPath } from '../lab/harness.js';
import { cpuPercent, cpuTicks, fmt, load1, machineFacts, median, memKb, renderTable, sleep } from './measure.js';

const SIZES = (process.env['SIZES'] ?? '1,100,1000,10000').split(',').map(Number).filter((n) => Number.isInteger(n) && n >= 1 && n <= 60_000);
const IDLE_S = Number(process.env['IDLE_S'] ?? 5);
/** MAX_RUNTIME_S bounds the whole run: a watchdog aborts and cleans up after it. */
const MAX_RUNTIME_S = Number(process.env['MAX_RUNTIME'] ?? 2400);
/** STEP_TIMEOUT_MS bounds every CLI call and every wait for the daemon. */
const STEP_TIMEOUT_MS = 600_000;
const NO_NETNS = process.argv.includes('--no-netns');
/** STATE_BASE is where the daemon's stateDir goes (sequence and replay files): its file system matters. */
const STATE_BASE = process.env['STATE_BASE'] ?? tmpdir();
/** PROBE_GAP_MS is the pause between control-socket pings while the daemon idles. */
const PROBE_GAP_MS = 20;

/** HOSTS_PER_OCTET keeps peer addresses at .2 .. .251 of each /24 (never .0, .1 or .255). */
const HOSTS_PER_OCTET = 250;
const LOCAL_ADDR = '198.18.0.1';
const REAL_PREFIX = '198.18.0.0/16';
const FAKE_PREFIX = '198.19.0.0/16';
const SPI_OUT_BASE = 0x0100_0000;
const SPI_IN_BASE = 0x0200_0000;

// ---------------------------------------------------------------------------------------------
// Configs.

/** peerAddress returns the k-th peer's address (k from 0): 198.18.<k/250>.<2 + k%250>. */
function peerAddress(k: number): string {
  return `198.18.${Math.floor(k / HOSTS_PER_OCTET)}.${2 + (k % HOSTS_PER_OCTET)}`;
}

const hexKey = (): string => `0x${randomBytes(20).toString('hex')}`;

/** configText renders an N-peer config (YAML) with fresh random keys. */
function configText(n: number, stateDir: string): string {
  const lines = [
    `# espgate scale benchmark: ${n} peer(s), written by bench/scale.ts`,
    `name: scale-${n}`,
    `stateDir: ${stateDir}`,
    'tun: { name: egs0 }',
    `local: { protect: [${LOCAL_ADDR}/32] }`,
    `prefixes: [ { real: ${REAL_PREFIX}, fake: ${FAKE_PREFIX} } ]`,
    'peers:',
  ];
  for (let k = 0; k < n; k++) {
    const a = peerAddress(k);
    lines.push(
      `  - name: p${k}`,
      `    endpoint: ${a}`,
      `    protect: [${a}/32]`,
      '    sa:',
      `      out: { spi: "0x${(SPI_OUT_BASE + k).toString(16)}", key: "${hexKey()}" }`,
      `      in: { spi: "0x${(SPI_IN_BASE + k).toString(16)}", key: "${hexKey()}" }`,
    );
  }
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Part 1: in-process control-plane steps.

/** memorySaFactory makes SAs without persistence (the data path's cost only). */
const memorySaFactory: SaFactory = {
  outbound: (_peer, sa) => new OutboundSa({ spi: sa.spi, algorithm: algorithmOf(sa), keyMaterial: sa.key, esn: sa.esn }),
  inbound: (peer, endpoint, sa, replayWindow) => {
    const bytes = Uint8Array.from(endpoint.split('.').map(Number));
    return new InboundSa({ spi: sa.spi, algorithm: algorithmOf(sa), keyMaterial: sa.key, esn: sa.esn, replayWindow, peer, outerSource: bytes });
  },
  sameKey: () => false,
};

/** timeMs runs fn reps times and returns the median wall time in ms and the last result. */
function timeMs<T>(reps: number, fn: () => T): { ms: number; value: T } {
  const times: number[] = [];
  let value: T | undefined;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    value = fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[times.length >> 1] ?? NaN, value: value as T };
}

interface StageTimes {
  readonly n: number;
  readonly load1: number;
  readonly yamlMs: number;
  readonly schemaMs: number;
  readonly semanticsMs: number;
  readonly loadConfigMs: number;
  readonly rulesSpecMs: number;
  readonly renderMs: number;
  readonly ipsetTextKb: number;
  readonly tablesMemMs: number;
  readonly tablesFilesMs: number;
}

function stages(n: number, text: string, scratch: string): { t: StageTimes; cfg: Config; tables: EngineTables } {
  const reps = n <= 1000 ? 5 : 1;
  const la = load1();
  const yaml = timeMs(reps, () => parseDocument(text, { prettyErrors: false, uniqueKeys: true }).toJS() as unknown);
  const schema = timeMs(reps, () => configSchema.safeParse(yaml.value));
  if (!schema.value.success) throw new Error(`generated config does not pass the schema: ${schema.value.error.message}`);
  const data = schema.value.data;
  const sem = timeMs(reps, () => validateSemantics(data));
  if (sem.value.length > 0) throw new Error(`generated config fails validation: ${sem.value[0]?.message ?? ''}`);
  const whole = timeMs(reps, () => parseConfig(text, `scale-${n}.yaml`));
  const cfg = whole.value;
  const spec = timeMs(reps, () => buildRulesSpec(rulesInputOf(cfg)));
  const render = timeMs(reps, () => renderInstall(spec.value));
  const tablesMem = timeMs(reps, () => buildTables(cfg, memorySaFactory));
  // The daemon's factory creates one replay-state file per inbound SA (kept open) and reads the
  // sequence reservation of each outbound SA: a fresh state directory each time.
  const tablesFiles = timeMs(1, () => {
    const dir = join(scratch, `tables-${n}`);
    rmSync(dir, { recursive: true, force: true });
    const f = staticSaFactory(dir);
    try {
      return buildTables(cfg, f);
    } finally {
      f.close?.();
    }
  });
  return {
    t: {
      n,
      load1: la,
      yamlMs: yaml.ms,
      schemaMs: schema.ms,
      semanticsMs: sem.ms,
      loadConfigMs: whole.ms,
      rulesSpecMs: spec.ms,
      renderMs: render.ms,
      ipsetTextKb: render.value.ipset.length / 1024,
      tablesMemMs: tablesMem.ms,
      tablesFilesMs: tablesFiles.ms,
    },
    cfg,
    tables: tablesMem.value,
  };
}

// ---------------------------------------------------------------------------------------------
// Part 2: lookup micro-benchmark.

const SLICE_MS = 50;
const SLICES = 8;
const INNER = 64;

/** bestNs runs body in INNER-sized batches for SLICES slices of SLICE_MS; returns the best ns per call. */
function bestNs(body: (i: number) => number): { ns: number; sink: number } {
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += body(i);
  let best = Infinity;
  let next = 0;
  for (let s = 0; s < SLICES; s++) {
    const t0 = process.hrtime.bigint();
    const deadline = t0 + BigInt(SLICE_MS) * 1_000_000n;
    let calls = 0;
    let now = t0;
    while (now < deadline) {
      for (let k = 0; k < INNER; k++) sink += body(next++);
      calls += INNER;
      now = process.hrtime.bigint();
    }
    best = Math.min(best, Number(now - t0) / calls);
  }
  return { ns: best, sink };
}

function shuffled(n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const t = a[i] ?? 0;
    a[i] = a[j] ?? 0;
    a[j] = t;
  }
  return a;
}

interface LookupTimes {
  readonly peers: number;
  readonly load1: number;
  readonly classifyNs: number;
  readonly classifyHotNs: number;
  readonly classifyMissNs: number;
  readonly inboundNs: number;
  readonly inboundHotNs: number;
  readonly inboundMissNs: number;
}

/** HOT_PEERS is the working set of the "hot" variant: few enough peers to stay in the CPU caches. */
const HOT_PEERS = 64;

/** lookups times the data path's per-packet lookups over tables built for cfg. */
function lookups(cfg: Config, tables: EngineTables): LookupTimes {
  const n = cfg.peers.length;
  const order = shuffled(n);
  // One 20-byte IPv4 header per peer, inner destination at 16, in random peer order.
  const pkts = new Uint8Array(n * 20);
  const srcs = new Uint8Array(n * 4);
  const spis = new Uint32Array(n);
  order.forEach((k, i) => {
    const p = cfg.peers[k];
    if (p === undefined) return;
    const a = p.endpoint.split('.').map(Number);
    pkts.set(a, i * 20 + 16);
    srcs.set(a, i * 4);
    spis[i] = p.sa?.in.spi ?? 0;
  });
  const miss = Uint8Array.from([20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 203, 0, 113, 9]);
  const la = load1();
  const classifyOver = (m: number) => bestNs((i) => {
    const peer = tables.peerByDst4.lookup(pkts, (i % m) * 20 + 16);
    return peer === undefined ? 0 : (tables.sadb.outbound(peer.name)?.spi ?? 0) & 1;
  });
  const inboundOver = (m: number) => bestNs((i) => {
    const k = i % m;
    const r = tables.sadb.lookupInbound(spis[k] ?? 0, srcs, k * 4, 4);
    return typeof r === 'string' ? 0 : 1;
  });
  const classify = classifyOver(n);
  const classifyHot = classifyOver(Math.min(n, HOT_PEERS));
  const classifyMiss = bestNs(() => (tables.peerByDst4.lookup(miss, 16) === undefined ? 1 : 0));
  const inbound = inboundOver(n);
  const inboundHot = inboundOver(Math.min(n, HOT_PEERS));
  const inboundMiss = bestNs(() => (typeof tables.sadb.lookupInbound(0x7fff_ffff, srcs, 0, 4) === 'string' ? 1 : 0));
  const sinks = [classify, classifyHot, classifyMiss, inbound, inboundHot, inboundMiss].reduce((a, r) => a + r.sink, 0);
  if (sinks < 0) console.log('unreachable');
  return {
    peers: n, load1: la, classifyNs: classify.ns, classifyHotNs: classifyHot.ns, classifyMissNs: classifyMiss.ns,
    inboundNs: inbound.ns, inboundHotNs: inboundHot.ns, inboundMissNs: inboundMiss.ns,
  };
}

// ---------------------------------------------------------------------------------------------
// Part 3: in a namespace.

interface NetnsTimes {
  readonly n: number;
  readonly load1: number;
  readonly installMs: number;
  readonly iptRules: number;
  readonly iptOurRules: number;
  readonly ip6tRules: number;
  readonly ipsetEntries: number;
  readonly blackholes: number;
  readonly upLogMs: number;
  readonly upStatusMs: number;
  readonly idleCpuPct: number;
  /** probeP50Ms, probeMaxMs: latency of control-socket pings while idle (event-loop stalls). */
  readonly probeP50Ms: number;
  readonly probeMaxMs: number;
  readonly rssKb: number;
  readonly hwmKb: number;
  readonly statusMs: number;
  readonly statusKb: number;
  readonly stopMs: number;
  readonly removeMs: number;
  readonly coldUpLogMs: number;
  readonly coldStopMs: number;
  readonly error?: string;
}

class Netns {
  readonly ns = `egtbench${process.pid}`;
  daemon: ChildProcess | undefined;
  created = false;

  sh(argv: readonly string[], timeoutMs = 30_000, input?: string): { code: number | null; out: string; err: string; ms: number } {
    const t0 = performance.now();
    const r = spawnSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024, ...(input === undefined ? {} : { input }) });
    return { code: r.status, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error === undefined ? '' : String(r.error)), ms: performance.now() - t0 };
  }

  exec(argv: readonly string[], timeoutMs = 30_000): { code: number | null; out: string; err: string; ms: number } {
    return this.sh(['ip', 'netns', 'exec', this.ns, ...argv], timeoutMs);
  }

  create(): void {
    const steps: string[][] = [
      ['ip', 'netns', 'add', this.ns],
      ['ip', '-n', this.ns, 'link', 'set', 'lo', 'up'],
      // A veth pair with both ends inside (this kernel has no dummy links).
      ['ip', '-n', this.ns, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1'],
      ['ip', '-n', this.ns, 'addr', 'add', `${LOCAL_ADDR}/16`, 'dev', 'd0'],
      ['ip', '-n', this.ns, 'link', 'set', 'd1', 'up'],
      ['ip', '-n', this.ns, 'link', 'set', 'd0', 'up'],
    ];
    for (const s of steps) {
      const r = this.sh(s);
      if (s[2] === 'add' && s[1] === 'netns' && r.code === 0) this.created = true;
      if (r.code !== 0) throw new Error(`${s.join(' ')}: ${r.err.trim()}`);
    }
  }

  /** startDaemon spawns `espgate up` in the namespace with its log in logFile. */
  startDaemon(cfgFile: string, logFile: string): ChildProcess {
    writeFileSync(logFile, '');
    const child = spawn('sh', ['-c', 'exec ip netns exec "$0" node "$1" up -c "$2" >>"$3" 2>&1', this.ns, cliPath(), cfgFile, logFile], { stdio: 'ignore' });
    this.daemon = child;
    return child;
  }

  /** stopDaemon sends SIGTERM and waits (bounded) for the exit; returns the ms it took. */
  async stopDaemon(waitMs = STEP_TIMEOUT_MS): Promise<number> {
    const d = this.daemon;
    if (d === undefined || d.exitCode !== null || d.signalCode !== null) return 0;
    const t0 = performance.now();
    const exited = new Promise<void>((r) => d.once('exit', () => r()));
    d.kill('SIGTERM');
    const timer = setTimeout(() => d.kill('SIGKILL'), waitMs);
    await exited;
    clearTimeout(timer);
    this.daemon = undefined;
    return performance.now() - t0;
  }

  destroy(): void {
    if (this.daemon !== undefined && this.daemon.exitCode === null && this.daemon.signalCode === null) this.daemon.kill('SIGKILL');
    if (this.created) {
      this.sh(['ip', 'netns', 'del', this.ns]);
      this.created = false;
    }
  }
}

/** countRules counts `-A` lines of iptables-save (all, and those naming our chains or sets). */
function countRules(ns: Netns, tool: string): { all: number; ours: number } {
  const r = ns.exec([tool]);
  const lines = r.out.split('\n').filter((l) => l.startsWith('-A '));
  return { all: lines.length, ours: lines.filter((l) => l.includes('ESPGATE')).length };
}

function countIpset(ns: Netns): number {
  const r = ns.exec(['ipset', 'save'], 60_000);
  return r.out.split('\n').filter((l) => l.startsWith('add ')).length;
}

/** waitLog polls the log file until it contains needle or the daemon exits; returns ms since t0 or NaN. */
async function waitLog(ns: Netns, logFile: string, needle: string, t0: number): Promise<number> {
  while (performance.now() - t0 < STEP_TIMEOUT_MS) {
    if (readFileSync(logFile, 'utf8').includes(needle)) return performance.now() - t0;
    const d = ns.daemon;
    if (d === undefined || d.exitCode !== null || d.signalCode !== null) return NaN;
    await sleep(20);
  }
  return NaN;
}

/** waitStatusUp asks the control socket for status until state is 'up'; returns ms since t0 or NaN. */
async function waitStatusUp(sock: string, t0: number): Promise<number> {
  while (performance.now() - t0 < STEP_TIMEOUT_MS) {
    if (existsSync(sock)) {
      try {
        const st = (await requestControl(sock, { cmd: 'status' }, 120_000)) as DaemonStatus;
        if (st.state === 'up') return performance.now() - t0;
      } catch {
        // not listening yet, or busy starting
      }
    }
    await sleep(20);
  }
  return NaN;
}

async function netnsRun(ns: Netns, n: number, dir: string, aborted: () => boolean): Promise<NetnsTimes> {
  const stateDir = join(dir, 'state');
  const cfgFile = join(dir, 'espgate.yaml');
  const logFile = join(dir, 'daemon.log');
  const sock = join(stateDir, 'espgate.sock');
  mkdirSync(dir, { recursive: true });
  writeFileSync(cfgFile, configText(n, stateDir), { mode: 0o600 });
  const la = load1();
  const cli = (args: string[]): ReturnType<Netns['exec']> => ns.exec(['node', cliPath(), ...args, '-c', cfgFile], STEP_TIMEOUT_MS);
  const fail = (what: string, r: { code: number | null; err: string }): Error => new Error(`${what} (n=${n}) exit ${String(r.code)}: ${r.err.trim().slice(0, 400)}`);

  const inst = cli(['rules', 'install']);
  if (inst.code !== 0) throw fail('rules install', inst);
  const ipt = countRules(ns, 'iptables-save');
  const ip6t = countRules(ns, 'ip6tables-save');
  const ipsetEntries = countIpset(ns);
  const blackholes = ns.exec(['ip', 'route', 'show', 'type', 'blackhole']).out.split('\n').filter((l) => l.trim() !== '').length;

  // Start with the gate present (the operator ran `rules install`).
  let t0 = performance.now();
  const d = ns.startDaemon(cfgFile, logFile);
  const upLogMs = await waitLog(ns, logFile, '"msg":"espgate up"', t0);
  const upStatusMs = await waitStatusUp(sock, t0);
  if (!Number.isFinite(upLogMs) || !Number.isFinite(upStatusMs) || aborted()) {
    await ns.stopDaemon(5_000);
    throw new Error(`daemon did not come up (n=${n}): ${readFileSync(logFile, 'utf8').slice(-600)}`);
  }
  const pid = d.pid ?? 0;
  const c0 = cpuTicks([pid]);
  let i0 = performance.now();
  await sleep(IDLE_S * 1000);
  const idleCpuPct = cpuPercent(cpuTicks([pid]) - c0, performance.now() - i0);
  // Then probed: a control-socket ping every PROBE_GAP_MS; its latency shows how long the
  // daemon's event loop (which also runs the data path) is blocked by periodic work.
  const probes: number[] = [];
  i0 = performance.now();
  while (performance.now() - i0 < IDLE_S * 1000 && !aborted()) {
    const p0 = performance.now();
    try {
      await requestControl(sock, { cmd: 'ping' }, 10_000);
      probes.push(performance.now() - p0);
    } catch {
      probes.push(10_000);
    }
    await sleep(PROBE_GAP_MS);
  }
  const mem = memKb(pid);
  const s0 = performance.now();
  const st = await requestControl(sock, { cmd: 'status' }, 120_000);
  const statusMs = performance.now() - s0;
  const statusKb = JSON.stringify(st).length / 1024;
  const stopMs = await ns.stopDaemon();

  const rem = cli(['rules', 'remove']);
  if (rem.code !== 0) throw fail('rules remove', rem);

  // Cold start: the daemon installs the gate itself (and removes it on stop).
  t0 = performance.now();
  ns.startDaemon(cfgFile, logFile);
  const coldUpLogMs = await waitLog(ns, logFile, '"msg":"espgate up"', t0);
  const coldStopMs = await ns.stopDaemon();
  const leftover = countRules(ns, 'iptables-save').ours + countIpset(ns);
  return {
    n, load1: la, installMs: inst.ms, iptRules: ipt.all, iptOurRules: ipt.ours, ip6tRules: ip6t.all, ipsetEntries, blackholes,
    upLogMs, upStatusMs, idleCpuPct, probeP50Ms: median(probes), probeMaxMs: Math.max(...probes), rssKb: mem.rss, hwmKb: mem.hwm, statusMs, statusKb, stopMs, removeMs: rem.ms,
    coldUpLogMs, coldStopMs,
    ...(leftover === 0 ? {} : { error: `${leftover} rules/set entries left after the cold daemon stopped` }),
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const facts = machineFacts();
  console.log(`scale: sizes ${SIZES.join(', ')}; ${facts.nproc} cpus (${facts.cpu}), kernel ${facts.kernel}, node ${facts.node}; ${facts.date}; loadavg ${facts.loadavg}`);
  const scratch = mkdtempSync(join(STATE_BASE, 'espgate-scale-'));
  const stateFs = spawnSync('stat', ['-f', '-c', '%T', scratch], { encoding: 'utf8', timeout: 5_000 }).stdout.trim();
  console.log(`state directories under ${scratch} (file system ${stateFs}; STATE_BASE to move them)`);
  const ns = new Netns();
  let aborted = false;
  let signals = 0;
  const onSignal = (): void => {
    aborted = true;
    if (++signals > 1) {
      ns.destroy();
      rmSync(scratch, { recursive: true, force: true });
      // eslint-disable-next-line no-restricted-syntax -- second signal: clean up synchronously and leave
      process.exit(130);
    }
    void ns.stopDaemon(3_000);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const watchdog = setTimeout(() => {
    console.error(`scale: MAX_RUNTIME ${MAX_RUNTIME_S}s reached, aborting`);
    onSignal();
  }, MAX_RUNTIME_S * 1000);
  watchdog.unref();

  const stageRows: StageTimes[] = [];
  const lookupRows: LookupTimes[] = [];
  const nsRows: NetnsTimes[] = [];
  try {
    // Parts 1 and 2.
    const built = new Map<number, { cfg: Config; tables: EngineTables }>();
    // Warm-up: one pass over a 100-peer config so that the first timed size does not pay for JIT compilation.
    stages(100, configText(100, join(scratch, 'unused-state')), scratch);
    for (const n of SIZES) {
      if (aborted) break;
      const text = configText(n, join(scratch, 'unused-state'));
      const r = stages(n, text, scratch);
      stageRows.push(r.t);
      if (n === Math.min(...SIZES) || n === Math.max(...SIZES)) built.set(n, { cfg: r.cfg, tables: r.tables });
      console.error(`  part 1 n=${n}: loadConfig ${fmt(r.t.loadConfigMs, 1)} ms (semantics ${fmt(r.t.semanticsMs, 1)} ms)`);
    }
    for (const [, b] of [...built].sort((a, b) => a[0] - b[0])) {
      if (aborted) break;
      lookupRows.push(lookups(b.cfg, b.tables));
    }
    printStages(stageRows);
    printLookups(lookupRows);

    // Part 3.
    if (NO_NETNS) {
      console.log('\n(namespace part skipped: --no-netns)');
    } else if (process.getuid?.() !== 0) {
      console.log('\n(namespace part skipped: needs root)');
    } else {
      ns.create();
      for (const n of SIZES) {
        if (aborted) break;
        try {
          const row = await netnsRun(ns, n, join(scratch, `ns-${n}`), () => aborted);
          nsRows.push(row);
          console.error(`  part 3 n=${n}: install ${fmt(row.installMs, 0)} ms, up ${fmt(row.upStatusMs, 0)} ms, cold up ${fmt(row.coldUpLogMs, 0)} ms`);
        } catch (e) {
          console.error(`  part 3 n=${n}: ${(e as Error).message}`);
          await ns.stopDaemon(5_000);
          ns.exec(['node', cliPath(), 'rules', 'remove', '-c', join(scratch, `ns-${n}`, 'espgate.yaml')], 120_000);
        }
      }
      printNetns(nsRows);
    }
  } finally {
    clearTimeout(watchdog);
    await ns.stopDaemon(5_000);
    ns.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(`\nJSON ${JSON.stringify({ bench: 'scale', facts, stateFs, stages: stageRows, lookups: lookupRows, netns: nsRows })}`);
  if (aborted) process.exitCode = 130;
}

function printStages(rows: readonly StageTimes[]): void {
  console.log('\nPart 1: control-plane steps in process (median of 5 runs for n <= 1000, else 1; ms)');
  console.log(renderTable([
    ['peers', 'load1', 'YAML parse', 'schema (zod)', 'semantic checks', 'loadConfig total', 'rules model', 'render', 'ipset text KiB', 'tables (SAs in memory)', 'tables (+ state files)'],
    ...rows.map((r) => [String(r.n), fmt(r.load1, 2), fmt(r.yamlMs, 1), fmt(r.schemaMs, 1), fmt(r.semanticsMs, 1), fmt(r.loadConfigMs, 1), fmt(r.rulesSpecMs, 1), fmt(r.renderMs, 1), fmt(r.ipsetTextKb, 0), fmt(r.tablesMemMs, 1), fmt(r.tablesFilesMs, 1)]),
  ]));
  // Growth per step between consecutive sizes: ~10x time for 10x peers is linear, ~100x quadratic.
  const growth: string[][] = [];
  for (let i = 1; i < rows.length; i++) {
    const a = rows[i - 1];
    const b = rows[i];
    if (a === undefined || b === undefined) continue;
    const g = (x: number, y: number): string => (x > 0.05 ? `${fmt(y / x, 1)}x` : '-');
    growth.push([`${a.n} → ${b.n}`, g(a.yamlMs, b.yamlMs), g(a.schemaMs, b.schemaMs), g(a.semanticsMs, b.semanticsMs), g(a.rulesSpecMs, b.rulesSpecMs), g(a.tablesMemMs, b.tablesMemMs)]);
  }
  if (growth.length > 0) {
    console.log('\ngrowth of each step between sizes (linear = the ratio of the sizes):');
    console.log(renderTable([['sizes', 'YAML', 'schema', 'semantic checks', 'rules model', 'tables'], ...growth]));
  }
}

function printLookups(rows: readonly LookupTimes[]): void {
  console.log('\nPart 2: per-packet lookups, ns per lookup (best of 8 x 50 ms slices; random order over all peers)');
  console.log(renderTable([
    ['peers', 'load1', 'outbound classify (dst → peer → SA), all peers', `same, ${HOT_PEERS} hot peers`, 'classify miss', 'inbound SA (SPI + source), all peers', `same, ${HOT_PEERS} hot peers`, 'inbound miss'],
    ...rows.map((r) => [String(r.peers), fmt(r.load1, 2), fmt(r.classifyNs, 1), fmt(r.classifyHotNs, 1), fmt(r.classifyMissNs, 1), fmt(r.inboundNs, 1), fmt(r.inboundHotNs, 1), fmt(r.inboundMissNs, 1)]),
  ]));
}

function printNetns(rows: readonly NetnsTimes[]): void {
  console.log('\nPart 3: in a namespace (wall ms, including node start-up of each CLI process)');
  console.log(renderTable([
    ['peers', 'load1', 'rules install', 'iptables rules (ours)', 'ip6tables rules', 'ipset entries', 'blackhole routes', 'up → log "espgate up"', 'up → status "up"', 'idle CPU %', 'idle ping p50 / max ms', 'RSS MiB (peak)', 'status call ms (KiB)', 'stop', 'rules remove', 'cold up (installs gate)', 'cold stop'],
    ...rows.map((r) => [String(r.n), fmt(r.load1, 2), fmt(r.installMs, 0), `${r.iptRules} (${r.iptOurRules})`, String(r.ip6tRules), String(r.ipsetEntries), String(r.blackholes),
      fmt(r.upLogMs, 0), fmt(r.upStatusMs, 0), fmt(r.idleCpuPct, 1), `${fmt(r.probeP50Ms, 1)} / ${fmt(r.probeMaxMs, 0)}`, `${fmt(r.rssKb / 1024, 0)} (${fmt(r.hwmKb / 1024, 0)})`, `${fmt(r.statusMs, 0)} (${fmt(r.statusKb, 0)})`,
      fmt(r.stopMs, 0), fmt(r.removeMs, 0), fmt(r.coldUpLogMs, 0), fmt(r.coldStopMs, 0)]),
  ]));
  const counts = new Set(rows.map((r) => `${r.iptRules}/${r.ip6tRules}`));
  if (rows.length > 1) console.log(`iptables rule count the same for every size: ${counts.size === 1 ? 'yes' : `NO (${[...counts].join(', ')})`}`);
  for (const r of rows) if (r.error !== undefined) console.log(`n=${r.n}: ${r.error}`);
}

await main();
