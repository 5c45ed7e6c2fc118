/**
 * test/lab/service.test.ts: espgate runs the way docs/systemd.md's unit runs it (root only;
 * skips otherwise), in the `lan` lab with alice and bob:
 *
 *   - alice's daemon has only CAP_NET_ADMIN and CAP_NET_RAW (setpriv --bounding-set, as the
 *     unit's CapabilityBoundingSet; no-new-privs), and a notification socket (NOTIFY_SOCKET) and
 *     watchdog (WATCHDOG_USEC) like systemd's, served by test/support/notify-listener.py;
 *   - bob's daemon runs as usual.
 *
 *   1  READY=1 arrives, and when it does `status` already says 'up'; alice's effective
 *      capabilities are exactly net_admin + net_raw
 *   2  traffic crosses as ESP (ping, counted on both daemons)
 *   3  WATCHDOG=1 arrives at half the watchdog interval, repeatedly
 *   4  SIGHUP: RELOADING=1 then READY=1
 *   5  SIGTERM: STOPPING=1, exit 0, and rules/routes/links/sets exactly as before
 *   6  with CAP_NET_RAW only, `espgate up` refuses with a message naming CAP_NET_ADMIN, exit 1,
 *      and nothing on the host changed
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { LabRun } from '../../lab/harness.js';
import { cliPath, labConfigs, labSpawn, labUnavailable, labUp, projectRoot, stopProcess } from '../../lab/harness.js';
import type { Daemon, LabTestState } from './support.js';
import {
  configPathOf, diffLines, logPathOf, pollUntil, runIn, sleep, snapshotState, startDaemon, statusOf, tail, tearDownLab, track, waitReady,
} from './support.js';

/** CAP_NET_ADMIN (12) and CAP_NET_RAW (13) as a CapEff mask. */
const CAPS_ADMIN_RAW = (1n << 12n) | (1n << 13n);
/** WATCHDOG_USEC is the watchdog interval we pretend the unit set (the daemon pings at half). */
const WATCHDOG_USEC = 1_000_000;
const LISTENER = join(projectRoot(), 'test', 'support', 'notify-listener.py');

interface Note {
  readonly t: number;
  readonly msg: string;
}

/** startListener runs the notify-listener in the root namespace (a file socket: no network). */
function startListener(path: string): { child: ChildProcess; notes: Note[]; ready: Promise<void> } {
  const child = track(spawn('python3', [LISTENER, path, '400', '240'], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const notes: Note[] = [];
  let ok!: () => void;
  const ready = new Promise<void>((r) => { ok = r; });
  createInterface({ input: child.stdout ?? process.stdin }).on('line', (l) => {
    if (l === 'ready') ok();
    else notes.push(JSON.parse(l) as Note);
  });
  return { child, notes, ready };
}

/** spawnRestricted starts `espgate up` in host's namespace with only `caps`, plus extra env. */
function spawnRestricted(run: LabRun, host: string, caps: string, env: readonly string[], log: string): Daemon {
  const argv = ['env', ...env, 'setpriv', `--bounding-set=-all,${caps}`, '--inh-caps=-all', '--no-new-privs',
    'node', cliPath(), 'up', '-c', configPathOf(run, host)];
  const child = track(labSpawn(run, host, argv, log));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  return { host, child, log, exited };
}

const skip = labUnavailable();

describe('espgate as a service: capabilities, readiness, watchdog', { skip: skip ?? false, timeout: 240_000 }, () => {
  const st: LabTestState = { daemons: new Map(), failed: false };
  let run: LabRun;
  let before0: Map<string, string>;
  let sock: ReturnType<typeof startListener>;
  const seen = (msg: string, from = 0): number => sock.notes.findIndex((n, i) => i >= from && n.msg.split('\n').includes(msg));

  before(async () => {
    run = labUp('lan');
    st.run = run;
    labConfigs(run, 4, 'static'); // static SAs: alice runs with CAP_NET_ADMIN + CAP_NET_RAW only, no CAP_NET_BIND_SERVICE for IKE's port 500
    before0 = await snapshotState(run, 'alice');
    sock = startListener(join(run.dir, 'notify.sock'));
    await sock.ready;
  });

  after(async () => {
    await tearDownLab(st, 'service.test');
  });

  test('1: READY=1 only once up; effective capabilities are net_admin + net_raw only', async () => {
    const bob = startDaemon(run, 'bob');
    st.daemons.set('bob', bob);
    const alice = spawnRestricted(run, 'alice', '+net_admin,+net_raw',
      [`NOTIFY_SOCKET=${join(run.dir, 'notify.sock')}`, `WATCHDOG_USEC=${WATCHDOG_USEC}`], logPathOf(run, 'alice'));
    st.daemons.set('alice', alice);
    let stateAtReady = '';
    const gotReady = await pollUntil(async () => {
      if (seen('READY=1') < 0) return alice.child.exitCode !== null;
      stateAtReady = (await statusOf(run, 'alice'))?.state ?? 'no answer';
      return true;
    }, 150, 200);
    assert.ok(gotReady && seen('READY=1') >= 0, `READY=1 within 30 s: ${tail(alice.log)}`);
    assert.equal(stateAtReady, 'up', 'status was up when READY=1 arrived');
    assert.ok(await waitReady(run, bob), `bob up: ${tail(bob.log)}`);
    const pid = alice.child.pid ?? 0;
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
    assert.equal(BigInt(`0x${capEff}`), CAPS_ADMIN_RAW, `CapEff of pid ${pid} is ${capEff}`);
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /cli\/main\.js\0up/, 'that pid is the daemon itself');
  });

  test('2: traffic crosses as ESP with the reduced capabilities', async () => {
    const r = await runIn(run, 'alice', ['ping', '-c', '5', '-i', '0.2', '-W', '2', '198.18.0.2']);
    assert.equal(r.status, 0, `ping: ${r.stdout}${r.stderr}`);
    const a = await statusOf(run, 'alice');
    const b = await statusOf(run, 'bob');
    assert.ok((a?.totals.espSent ?? 0) >= 5 && (a?.totals.tunWritten ?? 0) >= 5, `alice totals ${JSON.stringify(a?.totals)}`);
    assert.ok((b?.totals.espReceived ?? 0) >= 5, `bob totals ${JSON.stringify(b?.totals)}`);
  });

  test('2b: espgate trace follows a ping through every stage, both ways', async () => {
    // The ping outlasts the trace: the trace CLI takes a second or more to start on a busy machine
    // (two namespace test files run at once), and it stops by itself after 4 packets.
    const ping = runIn(run, 'alice', ['ping', '-c', '24', '-i', '0.3', '-W', '2', '198.18.0.2']);
    const tr = await runIn(run, 'alice', ['node', cliPath(), 'trace', '-c', configPathOf(run, 'alice'), '--host', '198.18.0.2', '--count', '4', '--seconds', '8'], 20_000);
    await ping;
    assert.equal(tr.status, 0, `trace: ${tr.stdout}${tr.stderr}`);
    const lines = tr.stdout.split('\n').filter((l) => l.startsWith('#'));
    assert.equal(lines.length, 4, `4 events:\n${tr.stdout}`);
    assert.ok(lines.some((l) => / out bob: TUN 198\.18\.0\.1 > 198\.19\.0\.2 proto 1 .* -> unmapped to 198\.18\.0\.2 -> peer bob -> sealed spi 0x[0-9a-f]{8} seq \d+ -> sent to 198\.18\.0\.2 -> ok$/.test(l)), `an outbound echo request:\n${tr.stdout}`);
    assert.ok(lines.some((l) => / in {2}bob: ESP from 198\.18\.0\.2 spi 0x[0-9a-f]{8} seq \d+ .* -> opened: inner \(source now fake\) 198\.19\.0\.2 > 198\.18\.0\.1 -> policy ok -> reinjected into the TUN -> ok$/.test(l)), `an inbound echo reply:\n${tr.stdout}`);
  });

  test('3: the watchdog pings at half its interval', async () => {
    const from = sock.notes.length;
    await sleep(1600);
    const pings = sock.notes.slice(from).filter((n) => n.msg === 'WATCHDOG=1');
    assert.ok(pings.length >= 2, `WATCHDOG=1 x${pings.length} in 1.6 s (interval ${WATCHDOG_USEC / 2000} ms)`);
  });

  test('4: SIGHUP: RELOADING=1 then READY=1', async () => {
    const alice = st.daemons.get('alice');
    assert.ok(alice);
    const from = sock.notes.length;
    alice.child.kill('SIGHUP');
    assert.ok(await pollUntil(() => seen('RELOADING=1', from) >= 0 && seen('READY=1', seen('RELOADING=1', from)) >= 0, 50, 100),
      `notes after SIGHUP: ${JSON.stringify(sock.notes.slice(from).map((n) => n.msg))}`);
  });

  test('5: SIGTERM: STOPPING=1, exit 0, nothing left behind', async () => {
    const alice = st.daemons.get('alice');
    assert.ok(alice);
    const from = sock.notes.length;
    const code = await stopProcess(alice.child);
    st.daemons.delete('alice');
    assert.equal(code, 0, tail(alice.log));
    assert.ok(seen('STOPPING=1', from) >= 0, 'STOPPING=1 sent');
    const after0 = await snapshotState(run, 'alice');
    for (const [k, v] of before0) assert.equal(after0.get(k), v, `${k} changed:\n${diffLines(v, after0.get(k) ?? '')}`);
  });

  test('6: without CAP_NET_ADMIN it refuses, names the capability, and changes nothing', async () => {
    const log = logPathOf(run, 'alice-nocap');
    const d = spawnRestricted(run, 'alice', '+net_raw', [], log);
    const code = await Promise.race([d.exited, sleep(30_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') await stopProcess(d.child);
    assert.equal(code, 1, `exit code: ${tail(log)}`);
    assert.match(readFileSync(log, 'utf8'), /CAP_NET_ADMIN/, 'the message names the missing capability');
    const after0 = await snapshotState(run, 'alice');
    for (const [k, v] of before0) assert.equal(after0.get(k), v, `${k} changed:\n${diffLines(v, after0.get(k) ?? '')}`);
  });
});
