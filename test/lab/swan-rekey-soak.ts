/**
 * test/lab/swan-rekey-soak.ts: repeats swan.test.ts's "rekeys under traffic" step many times in
 * one lab and says where each lost ping went (root only). An entry point, not a test file:
 *
 *   npm run build && node dist/test/lab/swan-rekey-soak.js --rounds 20 [--responder] [--unpaced]
 *
 * One lan lab: espgate on alice, charon (kernel-libipsec) on bob. By default espgate initiates
 * and rekeys every 12 s (childLifetime); with --responder charon initiates and rekeys every 9 s.
 * Each round: bob pings alice every 50 ms for 28 s while a paced TCP transfer runs bob -> alice
 * and back, as in swan.test.ts step 3 (--unpaced: the reply as fast as TCP goes, as that step
 * did before; it fills charon's socket buffer). For each round it prints one JSON line:
 *   - the icmp_seq numbers that got no answer and when each was sent, relative to espgate's
 *     rekey events of that round (installed / old SA removed), from espgate's log;
 *   - the kernel's own loss counters on both hosts over the round: UDP receive and send buffer
 *     errors and checksum errors (/proc/net/snmp), NFQUEUE drops, and the TUN devices' rx/tx
 *     drops (ip -s link), so that a socket overflow is not taken for a rekey loss;
 *   - espgate's totals and drop counters that moved (status --json) and its express thread state.
 * ESPGATE_EXPRESS_THREAD in the environment reaches the daemon, so the same command compares
 * the thread on and off. The lab is torn down at the end (the run dir is kept with EGL_KEEP=1).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { LabRun } from '../../lab/harness.js';
import { labUnavailable, labUp } from '../../lab/harness.js';
import { addressOf } from '../../lab/topology.js';
import type { Json, LabTestState } from './support.js';
import { runIn, sleep, statusOf, tearDownLab } from './support.js';
import { parseUdpSnmp, queueDrops, startEspgate, startTrafficServer, tcpTransfer, waitIkeEstablished, waitUp, writeIkeConfigs } from './ike-support.js';
import type { Swan } from './swan-support.js';
import { installedChildren, listSas, startSwan, stopSwan, swanConnFor, swanUnavailable, waitEstablished } from './swan-support.js';

const RUN_S = 28;
const ESPGATE_CHILD_LIFETIME_S = 12;
const SWAN_CHILD_REKEY_S = 9;
const TCP_PORT = 5021;
/** TCP_BYTES each way, paced at TCP_RATE bytes/s (the reply too, unless --unpaced). */
const TCP_BYTES = 7_200_000;
const TCP_RATE = 300_000;
const MAX_ROUNDS = 200;

/** Counters is one host's kernel loss counters at one moment. */
type Counters = Record<string, number>;

/** kernelCounters reads UDP buffer/checksum errors, NFQUEUE drops and per-interface drops in a host's namespace. */
async function kernelCounters(run: LabRun, host: string): Promise<Counters> {
  const out: Counters = {};
  const snmp = await runIn(run, host, ['cat', '/proc/net/snmp', '/proc/net/snmp6'], 10_000);
  const wanted = /^udp\.(InErrors|RcvbufErrors|SndbufErrors|InCsumErrors|NoPorts)$|^udp6\.Udp6(InErrors|RcvbufErrors|SndbufErrors)$/;
  for (const [k, v] of Object.entries(parseUdpSnmp(snmp.stdout))) if (wanted.test(k)) out[k] = v;
  out['nfqueue.dropped'] = await queueDrops(run, host);
  const link = await runIn(run, host, ['ip', '-s', '-j', 'link', 'show'], 10_000);
  try {
    const devs = JSON.parse(link.stdout) as { ifname: string; stats64?: { rx?: { dropped?: number }; tx?: { dropped?: number } } }[];
    for (const d of devs) {
      out[`${d.ifname}.rx_dropped`] = d.stats64?.rx?.dropped ?? 0;
      out[`${d.ifname}.tx_dropped`] = d.stats64?.tx?.dropped ?? 0;
    }
  } catch {
    out['ip-link.unreadable'] = 1;
  }
  return out;
}

/** moved returns the counters that changed between two readings, as after - before. */
function moved(before: Counters, after: Counters): Counters {
  const d: Counters = {};
  for (const [k, v] of Object.entries(after)) {
    const delta = v - (before[k] ?? 0);
    if (delta !== 0) d[k] = delta;
  }
  return d;
}

/** numericLeaves flattens the numbers of a JSON document into dotted paths. */
function numericLeaves(doc: unknown, prefix = '', out: Counters = {}): Counters {
  if (typeof doc === 'number') out[prefix] = doc;
  else if (doc !== null && typeof doc === 'object') {
    for (const [k, v] of Object.entries(doc as Record<string, unknown>)) numericLeaves(v, prefix === '' ? k : `${prefix}.${k}`, out);
  }
  return out;
}

/** dropCounters keeps espgate's status counters: totals, drops by reason (daemon and per SA) and the queue's. */
function dropCounters(doc: unknown): Counters {
  const all = numericLeaves(doc);
  const out: Counters = {};
  for (const [k, v] of Object.entries(all)) if (/^totals\.|drops\.|^queue\.(?!num)|^udpEncap\.dropped/.test(k)) out[k] = v;
  return out;
}

/** rekeyEvents returns espgate's Child SA events logged at or after t0 (ms), with their time relative to t0. */
function rekeyEvents(log: string, t0: number): string[] {
  const out: string[] = [];
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line.includes('Child SA')) continue;
    try {
      const j = JSON.parse(line) as { time?: string; msg?: string };
      const t = Date.parse(j.time ?? '');
      if (Number.isFinite(t) && t >= t0) out.push(`${((t - t0) / 1000).toFixed(3)} ${j.msg ?? ''}`);
    } catch {
      // not a JSON log line
    }
  }
  return out;
}

/** unanswered parses `ping -D -O` output: the icmp_seqs with no reply and their send time relative to t0 (s). */
function unanswered(stdout: string, count: number, t0: number): string[] {
  const answered = new Set<number>();
  const noAnswer = new Map<number, number>();
  for (const line of stdout.split('\n')) {
    const ts = /^\[(\d+\.\d+)\]/.exec(line);
    const seq = /icmp_seq=(\d+)/.exec(line);
    if (seq?.[1] === undefined) continue;
    const n = Number(seq[1]);
    if (line.includes('no answer yet')) noAnswer.set(n, ts?.[1] === undefined ? NaN : Number(ts[1]) * 1000);
    else if (line.includes('bytes from')) answered.add(n);
  }
  const out: string[] = [];
  for (let n = 1; n <= count; n++) {
    if (answered.has(n)) continue;
    const seen = noAnswer.get(n);
    // -O reports "no answer yet" when the next echo leaves, so the send time is about one interval earlier.
    out.push(seen === undefined ? `seq ${n}` : `seq ${n} sent ~${((seen - 50 - t0) / 1000).toFixed(3)} s`);
  }
  return out;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' }, responder: { type: 'boolean', default: false }, unpaced: { type: 'boolean', default: false } } });
  const rounds = Math.min(MAX_ROUNDS, Math.max(1, Number(values.rounds)));
  const espgateInitiates = !values.responder;
  const skip = labUnavailable() ?? swanUnavailable();
  if (skip !== undefined) {
    process.stderr.write(`swan-rekey-soak: ${skip}\n`);
    return 2;
  }
  const st: LabTestState & { swan?: Swan } = { daemons: new Map(), failed: false };
  const stop = (): void => {
    st.failed = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let lostRounds = 0;
  try {
    const run = labUp('lan');
    st.run = run;
    const set = writeIkeConfigs(run, {
      pairs: [['alice', 'bob']],
      ike: { dpdDelay: 5, childLifetime: espgateInitiates ? ESPGATE_CHILD_LIFETIME_S : 3600 },
      ikeFor: espgateInitiates ? {} : { alice: { bob: { initiate: false } } },
    });
    const psk = set.psks[0];
    if (psk === undefined) throw new Error('no PSK generated');
    const startCharon = async (): Promise<void> => {
      st.swan = await startSwan(run, swanConnFor(run, psk, 'bob', {
        dpdDelay: 5, dpdAction: 'restart', childRekey: espgateInitiates ? 600 : SWAN_CHILD_REKEY_S, childLife: 900,
        startAction: espgateInitiates ? 'none' : 'start', retransmitTries: 4,
      }, [4, 6]));
    };
    if (espgateInitiates) await startCharon();
    const d = startEspgate(run, 'alice');
    st.daemons.set('alice', d);
    if (!(await waitUp(run, d))) throw new Error('espgate did not come up');
    if (!espgateInitiates) await startCharon();
    await startTrafficServer(run, 'alice', TCP_PORT, values.unpaced ? 0 : TCP_RATE);
    if ((await waitIkeEstablished(run, 'alice', 'bob', 60, 500)) === undefined) throw new Error('espgate: no SA for bob');
    if (st.swan === undefined || (await waitEstablished(st.swan, 40, 500)) === undefined) throw new Error('charon: not established');
    const dst = addressOf(run.topology, 'alice', 4);
    for (let r = 1; r <= rounds && !st.failed; r++) {
      const kBefore = { alice: await kernelCounters(run, 'alice'), bob: await kernelCounters(run, 'bob') };
      const sBefore = dropCounters(await statusOf(run, 'alice'));
      const t0 = Date.now();
      const count = RUN_S * 20;
      const pinging = runIn(run, 'bob', ['ping', '-4', '-n', '-D', '-O', '-c', String(count), '-i', '0.05', '-W', '2', dst], count * 50 + 15_000);
      const transfer = tcpTransfer(run, 'bob', dst, TCP_PORT, TCP_BYTES, TCP_RATE, (RUN_S + 60) * 1000);
      const spis = new Set<string>();
      let done = false;
      void Promise.all([pinging, transfer]).then(() => {
        done = true;
      });
      for (let i = 0; i < RUN_S + 30 && !done; i++) {
        for (const c of installedChildren(await listSas(st.swan))) spis.add(c.spiIn);
        await sleep(1000);
      }
      const [p, x] = await Promise.all([pinging, transfer]);
      const status = await statusOf(run, 'alice');
      const lost = unanswered(p.stdout, count, t0);
      if (lost.length > 0) lostRounds++;
      const line: Json = {
        round: r,
        lost,
        tcpOk: x.ok,
        spis: spis.size,
        thread: status?.dataPath?.express?.thread ?? '?',
        kernel: { alice: moved(kBefore.alice, await kernelCounters(run, 'alice')), bob: moved(kBefore.bob, await kernelCounters(run, 'bob')) },
        espgate: moved(sBefore, dropCounters(status)),
        ...(lost.length > 0 ? { rekeys: rekeyEvents(d.log, t0) } : {}),
      };
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
    process.stdout.write(`${JSON.stringify({ rounds, lostRounds, thread: process.env['ESPGATE_EXPRESS_THREAD'] ?? 'default' })}\n`);
  } finally {
    if (st.swan !== undefined) await stopSwan(st.swan);
    await tearDownLab(st, 'swan-rekey-soak');
  }
  return lostRounds === 0 ? 0 : 1;
}

main().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  process.stderr.write(`swan-rekey-soak: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 2;
});
