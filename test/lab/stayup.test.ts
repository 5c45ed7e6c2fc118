/**
 * test/lab/stayup.test.ts: espgate stays up (issue 4, "Stay up") in the `lan` lab (root only;
 * skips otherwise). Two lab runs, one after the other:
 *
 *   S  the soak (test/lab/soak.ts) for ESPGATE_SOAK_S seconds (default 60; `npm run soak` runs
 *      300): bulk TCP both ways, ESPGATE_SOAK_CONNS short TCP connections (default 10,000), UDP;
 *      zero failures, RSS growth after the warm-up within RSS_GROWTH_MAX_KB, open fds constant,
 *      conntrack INVALID unchanged, clean exits
 *
 *   alice 198.18.0.1 ══ESP══ bob 198.18.0.2     carol 198.18.0.3 (her config lists alice and bob)
 *     alice's config starts with bob only; ping -i 0.05 alice -> bob (IPv4 and IPv6) and a paced
 *     TCP transfer alice -> bob run through R2..R4; br-lan is captured from R1 to R4 (and in R4b)
 *
 *   R1 alice runs with bob only: status and the gate's sets (PEER4, ENDP4) list bob, not carol
 *   R2 carol is added to alice's config + SIGHUP: status lists carol, the sets hold her address,
 *      alice <-> carol pings (IPv4, IPv6) are answered and counted on the new SAs both sides,
 *      bob's outbound SA keeps counting (not recreated)
 *   R3 SIGHUP with a broken config (bad key), then with a change that needs a restart (tun
 *      name): each refused, logged, reload count unchanged, the running config keeps working
 *   R4 carol is removed again + SIGHUP: status and the sets drop her; through all of R2..R4 the
 *      alice -> bob pings lost nothing, the TCP transfer (spanning every SIGHUP) kept its SHA-256,
 *      and the capture shows no plaintext between alice and bob or alice and carol, and ESP on
 *      the alice <-> carol SAs
 *   R4b carol re-added + SIGHUP: alice's new outbound SA to carol (same SPI, same key) resumes
 *      above every sequence number the removed one sent (capture): no (SPI, seq) reuse
 *   R5 a second `espgate up` with alice's config while alice's daemon runs: exit 3, a message
 *      that names the running daemon, alice's rules/routes/links/sets and stateDir unchanged, the
 *      first daemon keeps answering and carrying traffic
 *   R6 a second daemon with a copy of alice's config under another stateDir (same TUN, same
 *      queue): refused with a clear message, nothing changed, the first daemon unaffected
 *   R6b the same on bob with another TUN name as well (regression: the lock was per stateDir)
 *   R7 SIGTERM: alice exits 0 and leaves rules, routes, links and sets exactly as before she
 *      started (the reloads left nothing behind)
 *
 * Every wait is bounded; every process started here is stopped by pid in after(), and the lab
 * is torn down there (the run dir is kept when a sub-test failed, or with EGL_KEEP=1).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import type { LabRun } from '../../lab/harness.js';
import { cliPath, labConfigs, labUnavailable, labUp, namespaceOf, startCapture, stopProcess } from '../../lab/harness.js';
import type { AddressFamily } from '../../lab/topology.js';
import { addressOf } from '../../lab/topology.js';
import { espFrames, parsePcap } from './fixtures/failclosed-pcap.js';
import { renderFigures, renderTable, runSoak, RSS_GROWTH_MAX_KB, DEFAULT_CONNS } from './soak.js';
import type { Daemon, DaemonStatusDoc, LabTestState, ProtectedPair } from './support.js';
import {
  envInt,
  TRAFFIC_JS, canon, configPathOf, decodeFrames, describeResult, diffLines, frameText, isLeak, jsonLines, lastJsonLine,
  pollUntil, protectOf, runIn, sleep, snapshotState, startDaemon, startServer, statusOf, tail, tearDownLab, track, waitReady,
} from './support.js';

/** SOAK_S is the soak's length in CI (ESPGATE_SOAK_S); SOAK_CONNS its short connections (ESPGATE_SOAK_CONNS). */
const SOAK_S = envInt('ESPGATE_SOAK_S', 60, 20, 3600);
const SOAK_CONNS = envInt('ESPGATE_SOAK_CONNS', DEFAULT_CONNS, 2, 100_000);

/** SPI_ALICE_TO_CAROL is alice's outbound SPI for carol (lab rule: sender index << 12 | receiver index). */
const SPI_ALICE_TO_CAROL = 0x1003;

/** TCP_PORT is bob's traffic server. */
const TCP_PORT = 5001;
/** PING_INTERVAL_S is the continuous pings' interval; PING_DEADLINE_S their hard end. */
const PING_INTERVAL_S = '0.05';
const PING_DEADLINE_S = 300;
/**
 * TRANSFER_BYTES at TRANSFER_RATE bytes/s makes the alice -> bob transfer last ~30 s, longer
 * than R2..R4 take (about 15 s), so that one TCP connection spans every SIGHUP.
 */
const TRANSFER_BYTES = 9_000_000;
const TRANSFER_RATE = 300_000;
const TRANSFER_TIMEOUT_MS = 120_000;
/** RELOAD_WAIT_MS bounds the wait for a reload to show in `status`. */
const RELOAD_WAIT_MS = 15_000;
/** SECOND_TIMEOUT_MS bounds a second `espgate up`: it must give up by itself well within this. */
const SECOND_TIMEOUT_MS = 30_000;

const SUBTEST_TIMEOUT_MS = 150_000;
const HOOK_TIMEOUT_MS = 120_000;


const skip = labUnavailable() ?? (spawnSync('sh', ['-c', 'command -v tshark && command -v ipset'], { stdio: 'ignore', timeout: 5_000 }).status !== 0
  ? 'missing tool tshark or ipset (run lab/setup.sh)' : undefined);

test(`S. soak ${SOAK_S} s: bulk TCP both ways, ${SOAK_CONNS} short TCP connections, UDP; no failure, RSS within +${RSS_GROWTH_MAX_KB / 1024} MB after warm-up, fds constant, conntrack INVALID unchanged`,
  { skip: skip ?? false, timeout: SOAK_S * 1000 + 300_000 }, async (t) => {
    const summary = await runSoak({ seconds: SOAK_S, conns: SOAK_CONNS, log: (l) => t.diagnostic(l) });
    for (const l of renderTable(summary).split('\n')) t.diagnostic(l);
    for (const l of renderFigures(summary)) t.diagnostic(l);
    t.diagnostic(JSON.stringify({ ...summary, samples: summary.samples.length }));
    assert.deepEqual(summary.problems, [], 'the soak keeps every bound');
    assert.equal(summary.short.succeeded, SOAK_CONNS, 'every short connection echoed its bytes');
    assert.ok(summary.bulk.transfers > 0 && summary.bulk.failed === 0, 'bulk transfers ran, none failed');
    assert.ok(summary.udp.requests > 0 && summary.udp.failed === 0, 'UDP requests ran, none failed');
    assert.ok(summary.ok);
  });

/** ReloadStatus is the status document with the reload counter (src/daemon/status.ts). */
type ReloadStatus = DaemonStatusDoc & { readonly reloads: number; readonly pid: number };

/** Pinger is a continuous `ping`; replies maps icmp_seq to the reply's time (ms since the epoch). */
interface Pinger {
  readonly name: string;
  readonly child: ChildProcess;
  readonly replies: Map<number, number>;
  readonly lines: string[];
}

const PING_REPLY = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/;

function startPinger(run: LabRun, from: string, to: string, fam: AddressFamily): Pinger {
  const child = track(spawn('ip', ['netns', 'exec', namespaceOf(run, from), 'ping', `-${fam}`, '-n', '-D', '-i', PING_INTERVAL_S, '-w', String(PING_DEADLINE_S),
    addressOf(run.topology, to, fam)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const replies = new Map<number, number>();
  const lines: string[] = [];
  if (child.stdout !== null) {
    createInterface({ input: child.stdout }).on('line', (l) => {
      lines.push(l);
      const m = PING_REPLY.exec(l);
      if (m !== null) replies.set(Number(m[2]), Number(m[1]) * 1000);
    });
  }
  child.stderr?.resume();
  return { name: `${from} -> ${to} IPv${fam}`, child, replies, lines };
}

/** stopPinger ends a pinger with SIGINT and waits (bounded) until its output is read. */
async function stopPinger(p: Pinger): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const closed = new Promise<void>((resolve) => p.child.once('close', () => resolve()));
  p.child.kill('SIGINT');
  const done = await Promise.race([closed.then(() => true), sleep(3_000).then(() => false)]);
  if (!done) await stopProcess(p.child);
}

/** lostSeqs lists the sequence numbers between the first and the last reply that got no reply. */
function lostSeqs(p: Pinger): number[] {
  const seqs = [...p.replies.keys()];
  if (seqs.length === 0) return [];
  const lo = Math.min(...seqs);
  const hi = Math.max(...seqs);
  const lost: number[] = [];
  for (let s = lo; s <= hi; s++) if (!p.replies.has(s)) lost.push(s);
  return lost;
}

/** ipsetMembers lists the members of our set `<tag>-<kind>` in a host's namespace ("/32" dropped). */
async function ipsetMembers(run: LabRun, host: string, kind: 'PEER4' | 'ENDP4'): Promise<string[]> {
  const r = await runIn(run, host, ['ipset', 'save'], 10_000);
  assert.equal(r.status, 0, `${host}: ipset save: ${describeResult(r)}`);
  const out: string[] = [];
  for (const l of r.stdout.split('\n')) {
    const m = /^add (\S+) (\S+)/.exec(l);
    if (m !== null && (m[1] ?? '').endsWith(`-${kind}`)) out.push((m[2] ?? '').replace(/\/32$/, ''));
  }
  return out.sort();
}

/** pingCount pings `count` times and returns the number of replies. */
async function pingCount(run: LabRun, from: string, to: string, fam: AddressFamily, count = 3): Promise<number> {
  const r = await runIn(run, from, ['ping', `-${fam}`, '-n', '-c', String(count), '-i', '0.2', '-W', '2', addressOf(run.topology, to, fam)], 20_000);
  return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? -1);
}

describe('reload and single instance: SIGHUP adds and removes a peer under traffic, refuses bad configs; a second daemon refuses (lan: alice, bob, carol)', { skip: skip ?? false }, () => {
  const st: LabTestState & {
    fullAlice?: Record<string, unknown>;
    stateBefore?: Map<string, string>;
    pingers: Pinger[];
    transfer?: Promise<{ ok: boolean; result: Record<string, unknown> | undefined; detail: string; startedMs: number; endedMs: number }>;
    tcpLog?: string;
    firstPcap?: string;
    hups: number[];
  } = { daemons: new Map(), failed: false, pingers: [], hups: [] };

  const runOf = (): LabRun => {
    if (st.run === undefined) throw new Error('the lab is not up (see the before hook)');
    return st.run;
  };
  const addr = (h: string, fam: AddressFamily): string => addressOf(runOf().topology, h, fam);
  const daemon = (h: string): Daemon => {
    const d = st.daemons.get(h);
    if (d === undefined) throw new Error(`no daemon on ${h}`);
    return d;
  };
  /**
   * statusNow asks a host's daemon for `status --json`. `espgate status` reads the config for the
   * socket's path, and alice's config file is broken on purpose in R3, so alice is asked through
   * a valid copy (the socket is in the same stateDir).
   */
  const statusNow = async (h: string): Promise<ReloadStatus | undefined> => {
    if (h !== 'alice') return (await statusOf(runOf(), h)) as ReloadStatus | undefined;
    const r = await runIn(runOf(), h, ['node', cliPath(), 'status', '-c', aliceStatusConfig(), '--json'], 20_000);
    if (r.status !== 0) return undefined;
    try {
      return JSON.parse(r.stdout) as ReloadStatus;
    } catch {
      return undefined;
    }
  };
  const status = async (h: string): Promise<ReloadStatus> => {
    const s = await statusNow(h);
    assert.ok(s !== undefined, `${h}: status --json answers:\n${tail(daemon(h).log)}`);
    return s;
  };
  const aliceStatusConfig = (): string => join(runOf().dir, 'alice-status.yaml');
  const peerNames = (s: DaemonStatusDoc): string[] => s.peers.map((p) => p.name).sort();

  /** writeAlice writes alice's config: the full generated one with its peers filtered, and an optional edit. */
  const writeAlice = (peers: readonly string[], edit?: (doc: Record<string, unknown>) => void): void => {
    const doc = structuredClone(st.fullAlice) as Record<string, unknown>;
    doc['peers'] = (doc['peers'] as { name: string }[]).filter((p) => peers.includes(p.name));
    edit?.(doc);
    writeFileSync(configPathOf(runOf(), 'alice'), stringify(doc, { lineWidth: 0 }), { mode: 0o600 });
  };

  /** hup sends SIGHUP to alice's daemon (the pid is node's own: `ip netns exec` execs). */
  const hup = (): void => {
    st.hups.push(Date.now());
    assert.ok(daemon('alice').child.kill('SIGHUP'), 'SIGHUP delivered to alice\'s daemon');
  };

  const refusedCount = (): number => (readFileSync(daemon('alice').log, 'utf8').match(/reload refused/g) ?? []).length;

  /** step defines a sub-test and remembers a failure (the run dir is then kept). */
  const step = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    test(name, { timeout: SUBTEST_TIMEOUT_MS }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        st.failed = true;
        throw e;
      }
    });
  };

  before(async () => {
    try {
      const run = labUp('lan');
      st.run = run;
      labConfigs(run, 4, 'static'); // static SAs: this run is about the data path staying up; IKE has ike.test.ts
      st.fullAlice = parse(readFileSync(configPathOf(run, 'alice'), 'utf8')) as Record<string, unknown>;
      writeFileSync(aliceStatusConfig(), readFileSync(configPathOf(run, 'alice')), { mode: 0o600 });
      writeAlice(['bob']);
      st.stateBefore = await snapshotState(run, 'alice');
      for (const h of ['alice', 'bob', 'carol']) st.daemons.set(h, startDaemon(run, h));
      for (const d of st.daemons.values()) {
        if (!(await waitReady(run, d))) throw new Error(`${d.host}: espgate did not come up (log ${d.log}):\n${tail(d.log)}`);
      }
      st.tcpLog = await startServer(run, 'bob', 'tcp-server', TCP_PORT);
      st.capture = await startCapture(run, 'reload.pcap', { maxSeconds: 600 });
    } catch (e) {
      st.failed = true;
      throw e;
    }
  }, { timeout: HOOK_TIMEOUT_MS });

  after(async () => {
    await Promise.all(st.pingers.map((p) => stopPinger(p)));
    await tearDownLab(st, 'stayup reload');
  }, { timeout: HOOK_TIMEOUT_MS });

  step('R1. alice runs with bob only: status and the gate\'s PEER4/ENDP4 sets list bob, not carol', async () => {
    const run = runOf();
    const s = await status('alice');
    assert.deepEqual(peerNames(s), ['bob']);
    assert.deepEqual(await ipsetMembers(run, 'alice', 'PEER4'), [addr('bob', 4)], 'PEER4 holds bob\'s protected address only');
    assert.deepEqual(await ipsetMembers(run, 'alice', 'ENDP4'), [addr('bob', 4)], 'ENDP4 holds bob\'s endpoint only');
    for (const fam of [4, 6] as const) assert.equal(await pingCount(run, 'alice', 'bob', fam), 3, `alice -> bob IPv${fam} through the tunnel`);
  });

  step('R2. carol added to alice\'s config + SIGHUP under alice -> bob traffic: status and sets gain carol; alice <-> carol crosses as ESP, counted both sides', async (t) => {
    const run = runOf();
    st.pingers = [startPinger(run, 'alice', 'bob', 4), startPinger(run, 'alice', 'bob', 6)];
    const startedMs = Date.now();
    st.transfer = runIn(run, 'alice', ['node', TRAFFIC_JS, 'tcp-client', '--host', addr('bob', 4), '--port', String(TCP_PORT), '--bytes', String(TRANSFER_BYTES),
      '--rate', String(TRANSFER_RATE), '--timeout', String(TRANSFER_TIMEOUT_MS - 5_000)], TRANSFER_TIMEOUT_MS)
      .then((r) => {
        const result = lastJsonLine(r.stdout);
        return { ok: r.status === 0 && result?.ok === true, result, detail: describeResult(r), startedMs, endedMs: Date.now() };
      });
    const flowing = await pollUntil(() => st.pingers.every((p) => p.replies.size >= 10), 100, 50);
    assert.ok(flowing, `the pingers get replies before the reload: ${st.pingers.map((p) => `${p.name} ${p.replies.size}`).join(', ')}`);
    await sleep(1_000);
    const before = await status('alice');
    const carolBefore = await status('carol');
    const bobOutBefore = before.peers.find((p) => p.name === 'bob')?.sas.find((x) => x.direction === 'out')?.packets ?? -1;

    writeAlice(['bob', 'carol']);
    hup();
    const reloaded = await pollUntil(async () => (await statusNow('alice'))?.reloads === before.reloads + 1, RELOAD_WAIT_MS / 250, 250);
    assert.ok(reloaded, `alice reloads within ${RELOAD_WAIT_MS} ms:\n${tail(daemon('alice').log)}`);
    const s = await status('alice');
    assert.deepEqual(peerNames(s), ['bob', 'carol'], 'status lists bob and carol');
    assert.deepEqual(await ipsetMembers(run, 'alice', 'PEER4'), [addr('bob', 4), addr('carol', 4)].sort(), 'PEER4 gained carol');
    assert.deepEqual(await ipsetMembers(run, 'alice', 'ENDP4'), [addr('bob', 4), addr('carol', 4)].sort(), 'ENDP4 gained carol');

    for (const [from, to] of [['alice', 'carol'], ['carol', 'alice']] as const) {
      for (const fam of [4, 6] as const) assert.equal(await pingCount(run, from, to, fam), 3, `${from} -> ${to} IPv${fam} after the reload`);
    }
    const a = await status('alice');
    const c = await status('carol');
    const aCarol = a.peers.find((p) => p.name === 'carol');
    const cAlice = c.peers.find((p) => p.name === 'alice');
    const cAliceBefore = carolBefore.peers.find((p) => p.name === 'alice');
    assert.ok(aCarol !== undefined && cAlice !== undefined && cAliceBefore !== undefined);
    // 12 echo requests and 12 replies crossed between them (2 directions x 2 families x 3).
    assert.ok(aCarol.txPackets >= 12 && aCarol.rxPackets >= 12, `alice's SAs with carol carried the pings: tx ${aCarol.txPackets}, rx ${aCarol.rxPackets}`);
    assert.ok(cAlice.rxPackets - cAliceBefore.rxPackets >= 12, `carol decrypted alice's ESP: rx +${cAlice.rxPackets - cAliceBefore.rxPackets}`);
    const outSpis = aCarol.sas.map((x) => `${x.direction} ${x.spi}`).sort();
    assert.deepEqual(outSpis, ['in 0x00003001', 'out 0x00001003'], 'alice uses the lab SAs with carol (SPI sender<<12|receiver)');
    const bobOut = a.peers.find((p) => p.name === 'bob')?.sas.find((x) => x.direction === 'out')?.packets ?? -1;
    assert.ok(bobOut > bobOutBefore && bobOutBefore > 0, `bob's outbound SA kept counting across the reload (${bobOutBefore} -> ${bobOut}): not recreated`);
    t.diagnostic(`alice <-> carol after the reload: alice tx ${aCarol.txPackets} rx ${aCarol.rxPackets}; bob out SA ${bobOutBefore} -> ${bobOut} packets`);
  });

  step('R3. SIGHUP with a broken config, then with a restart-only change: each refused and logged; the running config keeps working', async (t) => {
    const run = runOf();
    const cases: [string, (d: Record<string, unknown>) => void, RegExp][] = [
      ['a key that is not hex', (d) => {
        const bob = (d['peers'] as { sa: { in: Record<string, unknown> } }[])[0];
        if (bob !== undefined) bob.sa.in['key'] = '0xnothex';
      }, /peers\[0\]\.sa\.in\.key/],
      ['another TUN name (needs a restart)', (d) => { d['tun'] = { name: 'eg9' }; }, /need a restart/],
    ];
    for (const [what, edit, logged] of cases) {
      const before = await status('alice');
      const refusedBefore = refusedCount();
      writeAlice(['bob', 'carol'], edit);
      try {
        hup();
        const seen = await pollUntil(() => refusedCount() > refusedBefore, RELOAD_WAIT_MS / 100, 100);
        assert.ok(seen, `${what}: alice logs "reload refused":\n${tail(daemon('alice').log)}`);
        const line = readFileSync(daemon('alice').log, 'utf8').split('\n').filter((l) => l.includes('reload refused')).at(-1) ?? '';
        assert.match(line, logged, `${what}: the log line says why`);
        t.diagnostic(`${what}: refused: ${line.slice(0, 300)}`);
      } finally {
        writeAlice(['bob', 'carol']);
      }
      const s = await status('alice');
      assert.equal(s.state, 'up');
      assert.equal(s.reloads, before.reloads, `${what}: no reload counted`);
      assert.deepEqual(peerNames(s), ['bob', 'carol'], `${what}: the peers stay`);
      assert.equal(await pingCount(run, 'alice', 'carol', 4), 3, `${what}: alice -> carol still works on the old config`);
    }
  });

  step('R4. carol removed + SIGHUP: status and sets drop her; alice -> bob lost no ping and the TCP transfer across every SIGHUP kept its SHA-256; no plaintext on the wire', async (t) => {
    const run = runOf();
    const before = await status('alice');
    writeAlice(['bob']);
    hup();
    const reloaded = await pollUntil(async () => (await statusNow('alice'))?.reloads === before.reloads + 1, RELOAD_WAIT_MS / 250, 250);
    assert.ok(reloaded, `alice reloads within ${RELOAD_WAIT_MS} ms:\n${tail(daemon('alice').log)}`);
    const s = await status('alice');
    assert.deepEqual(peerNames(s), ['bob'], 'status shows carol gone');
    assert.deepEqual(await ipsetMembers(run, 'alice', 'PEER4'), [addr('bob', 4)], 'PEER4 no longer holds carol');
    assert.deepEqual(await ipsetMembers(run, 'alice', 'ENDP4'), [addr('bob', 4)], 'ENDP4 no longer holds carol');
    const lastHup = Date.now();
    await sleep(1_000);

    assert.ok(st.transfer !== undefined);
    const tr = await st.transfer;
    assert.ok(tr.ok, `the alice -> bob transfer completed with matching digests: ${tr.detail}`);
    const srv = jsonLines(st.tcpLog ?? '').find((e) => e.event === 'bulk' && e.port === tr.result?.localPort);
    assert.equal(srv?.sha256, tr.result?.sha256, 'bob\'s server hashed the same bytes');
    const firstHup = st.hups[0] ?? Infinity;
    assert.ok(tr.startedMs < firstHup && tr.endedMs > lastHup, `the transfer spans every SIGHUP (${tr.startedMs} < ${firstHup}, ${tr.endedMs} > ${lastHup})`);

    await Promise.all(st.pingers.map((p) => stopPinger(p)));
    const losses = st.pingers.map((p) => ({ p, lost: lostSeqs(p) }));
    for (const { p, lost } of losses) {
      const stats = p.lines.find((l) => / packets transmitted, /.test(l)) ?? '(no statistics line)';
      t.diagnostic(`${p.name}: ${p.replies.size} replies, lost ${lost.length} between the first and the last reply ${lost.length === 0 ? '' : `(seq ${lost.slice(0, 20).join(',')})`}; ${stats.trim()}`);
    }
    t.diagnostic(`TCP alice -> bob: ${TRANSFER_BYTES} bytes each way in ${String(tr.result?.ms)} ms across ${st.hups.length} SIGHUPs`);
    for (const { p, lost } of losses) {
      assert.ok(p.replies.size > 100, `${p.name}: got replies (${p.replies.size})`);
      assert.deepEqual(lost, [], `${p.name}: no echo lost while alice reloaded ${st.hups.length} times`);
    }

    assert.ok(st.capture !== undefined);
    st.firstPcap = await st.capture.stop();
    delete st.capture;
    const frames = await decodeFrames(run, st.firstPcap);
    const pairs: ProtectedPair[] = [[protectOf(run, 'alice'), protectOf(run, 'bob')], [protectOf(run, 'alice'), protectOf(run, 'carol')]];
    const leaks = frames.filter((f) => isLeak(f, pairs));
    const a4 = canon(addr('alice', 4));
    const c4 = canon(addr('carol', 4));
    const espAC = frames.filter((f) => f.proto === 50 && f.src === a4 && f.dst === c4).length;
    const espCA = frames.filter((f) => f.proto === 50 && f.src === c4 && f.dst === a4).length;
    t.diagnostic(`${frames.length} frames captured, ${frames.filter((f) => f.proto === 50).length} ESP; alice -> carol ESP ${espAC}, carol -> alice ESP ${espCA}; plaintext between peers ${leaks.length}`);
    assert.deepEqual(leaks.slice(0, 10).map(frameText), [], 'no plaintext between alice and bob or alice and carol');
    assert.ok(espAC >= 6 && espCA >= 6, 'alice <-> carol crossed as ESP');
  });

  step('R4b. carol re-added + SIGHUP: alice\'s new outbound SA to carol resumes above every sequence number the removed one used (no (SPI, seq) reuse)', async (t) => {
    const run = runOf();
    const capture = await startCapture(run, 'readd.pcap', { maxSeconds: 120 });
    st.capture = capture;
    const before = await status('alice');
    writeAlice(['bob', 'carol']);
    hup();
    const reloaded = await pollUntil(async () => (await statusNow('alice'))?.reloads === before.reloads + 1, RELOAD_WAIT_MS / 250, 250);
    assert.ok(reloaded, `alice reloads within ${RELOAD_WAIT_MS} ms:\n${tail(daemon('alice').log)}`);
    assert.deepEqual(peerNames(await status('alice')), ['bob', 'carol'], 'status lists carol again');
    for (const [from, to] of [['alice', 'carol'], ['carol', 'alice']] as const) assert.equal(await pingCount(run, from, to, 4), 3, `${from} -> ${to} after the re-add`);
    const second = await capture.stop();
    delete st.capture;
    const a4 = addr('alice', 4);
    const c4 = addr('carol', 4);
    const seqsIn = (file: string): number[] => espFrames(parsePcap(readFileSync(file)).records)
      .filter((f) => f.src === a4 && f.dst === c4 && f.spi === SPI_ALICE_TO_CAROL).map((f) => f.seq);
    const firstLife = seqsIn(st.firstPcap ?? '');
    const secondLife = seqsIn(second);
    t.diagnostic(`alice -> carol SPI 0x${SPI_ALICE_TO_CAROL.toString(16)}: first life ${firstLife.length} frames, seq ${Math.min(...firstLife)}..${Math.max(...firstLife)}; after the re-add ${secondLife.length} frames, seq ${Math.min(...secondLife)}..${Math.max(...secondLife)}`);
    assert.ok(firstLife.length >= 12 && secondLife.length >= 6, 'ESP from alice to carol in both lives of the SA');
    assert.ok(Math.min(...secondLife) > Math.max(...firstLife), 'the re-added SA starts above the removed one\'s numbers');
  });

  /** stateDirListing lists alice's stateDir (names only; contents change as the daemon persists). */
  const stateDirListing = (dir: string): string[] => {
    const out: string[] = [];
    const walk = (d: string, prefix: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        out.push(prefix + e.name);
        if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      }
    };
    walk(dir, '');
    return out.sort();
  };

  /**
   * secondDaemon runs a second `espgate up -c <config>` in a host's namespace while the host's
   * daemon runs, and checks that it gave up by itself with the expected exit status and message,
   * and changed nothing: the namespace's rules, routes, links and sets, the first daemon's
   * stateDir (file names: contents change as the daemon persists), its control socket, its traffic.
   */
  const secondDaemon = async (t: TestContext, host: string, peer: string, config: string, expect: { code?: number; message: RegExp }): Promise<void> => {
    const run = runOf();
    const stateDir = String((parse(readFileSync(configPathOf(run, host), 'utf8')) as Record<string, unknown>)['stateDir']);
    const first = await status(host);
    const snap = await snapshotState(run, host);
    const files = stateDirListing(stateDir);
    const t0 = Date.now();
    const r = await runIn(run, host, ['node', cliPath(), 'up', '-c', config], SECOND_TIMEOUT_MS);
    t.diagnostic(`second daemon on ${host}: ${describeResult(r).slice(0, 1500)} after ${Date.now() - t0} ms`);
    assert.ok(!r.timedOut, 'the second daemon gives up by itself');
    if (expect.code !== undefined) assert.equal(r.status, expect.code, `exit status ${expect.code}: ${describeResult(r)}`);
    else assert.ok(r.status !== null && r.status !== 0, `a non-zero exit status: ${describeResult(r)}`);
    assert.match(r.stderr, expect.message, 'a clear message on stderr');
    const now = await snapshotState(run, host);
    const changed = [...snap].filter(([cmd, text]) => now.get(cmd) !== text).map(([cmd, text]) => `\`${cmd}\` changed:\n${diffLines(text, now.get(cmd) ?? '')}`);
    assert.deepEqual(changed, [], `${host}: rules, routes, links and sets as before the second daemon`);
    assert.deepEqual(stateDirListing(stateDir), files, 'the first daemon\'s stateDir holds the same files (its control socket included)');
    const again = await status(host);
    assert.equal(again.pid, first.pid, 'the first daemon still answers on its control socket');
    assert.equal(again.state, 'up');
    assert.deepEqual(peerNames(again), peerNames(first));
    for (const fam of [4, 6] as const) assert.equal(await pingCount(run, host, peer, fam), 3, `${host} -> ${peer} IPv${fam} still through the first daemon`);
    assert.equal(daemon(host).child.exitCode, null, 'the first daemon runs');
  };

  /** copyConfig writes a copy of a host's config with another stateDir (and the given edit); returns its path. */
  const copyConfig = (host: string, name: string, edit: (doc: Record<string, unknown>) => void = () => {}): string => {
    const run = runOf();
    const dir = join(run.dir, name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const doc = parse(readFileSync(configPathOf(run, host), 'utf8')) as Record<string, unknown>;
    doc['stateDir'] = join(dir, 'state');
    edit(doc);
    const file = join(dir, `${host}.yaml`);
    writeFileSync(file, stringify(doc, { lineWidth: 0 }), { mode: 0o600 });
    return file;
  };

  step('R5. a second `espgate up` with alice\'s own config: exit 3 (already running), nothing changed, the first daemon unaffected', async (t) => {
    await secondDaemon(t, 'alice', 'bob', configPathOf(runOf(), 'alice'), { code: 3, message: /another espgate daemon is running/ });
  });

  step('R6. a second daemon with a copy of alice\'s config under another stateDir (same TUN, same queue): refused with a clear message, nothing changed, the first daemon unaffected', async (t) => {
    await secondDaemon(t, 'alice', 'bob', copyConfig('alice', 'second-same-tun'), { code: 3, message: /another espgate daemon is running in this network namespace/ });
  });

  /**
   * R6b runs on bob (alice must stay intact for R7). Regression for a bug this test found (fixed
   * by a per-network-namespace lock, an abstract socket, taken before anything else): the
   * single-instance lock was the control socket in stateDir, so a second daemon with its own
   * stateDir and TUN name passes it; its gate spec differs (TUN name), so it installs the gate
   * over the running daemon's (same tag: ESPGATE-*), replaces the fake-prefix routes with its
   * TUN's, fails only at the NFQUEUE bind (queue taken), and its teardown then removes the whole
   * gate (chains, sets, blackholes): the first daemon keeps running with no gate and no routes,
   * its peer's traffic then leaves in the clear.
   */
  test('R6b. a second daemon with another stateDir and another TUN name (same queue, on bob): refused with a clear message, nothing changed, the first daemon unaffected', {
    timeout: SUBTEST_TIMEOUT_MS,
      }, async (t) => {
    await secondDaemon(t, 'bob', 'alice', copyConfig('bob', 'second-other-tun', (d) => { d['tun'] = { name: 'eg1' }; }), { code: 3, message: /another espgate daemon is running in this network namespace/ });
  });

  step('R7. SIGTERM: alice exits 0 and leaves rules, routes, links and sets exactly as before she started', async () => {
    const run = runOf();
    const d = daemon('alice');
    const code = await stopProcess(d.child, 10_000);
    assert.equal(code, 0, `alice's exit status after SIGTERM:\n${tail(d.log)}`);
    const now = await snapshotState(run, 'alice');
    for (const [cmd, text] of st.stateBefore ?? new Map<string, string>()) {
      assert.equal(now.get(cmd), text, `alice: \`${cmd}\` differs from before the daemon started:\n${diffLines(text, now.get(cmd) ?? '')}`);
    }
  });
});
