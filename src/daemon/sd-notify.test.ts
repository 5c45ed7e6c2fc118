import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { findProjectRoot } from '../io/tun-common.js';
import { createNotifier } from './sd-notify.js';

const LISTENER = join(findProjectRoot(), 'test', 'support', 'notify-listener.py');
const noPython = spawnSync('python3', ['--version']).status !== 0;

test('sd-notify: without NOTIFY_SOCKET it is a no-op', () => {
  const n = createNotifier({});
  assert.equal(n.enabled, false);
  assert.equal(n.send('READY=1'), 0);
  assert.equal(n.startWatchdog(), 0);
});

test('sd-notify: datagrams reach the socket, the watchdog pings at half its interval', { skip: noPython ? 'python3 not installed' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'egsd-'));
  const path = join(dir, 'notify');
  const py = spawn('python3', [LISTENER, path, '20', '2'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const lines = createInterface({ input: py.stdout });
    const got: string[] = [];
    let ready!: () => void;
    const isReady = new Promise<void>((r) => { ready = r; });
    lines.on('line', (l) => { if (l === 'ready') ready(); else got.push((JSON.parse(l) as { msg: string }).msg); });
    const closed = new Promise<void>((r) => py.once('close', () => r()));
    await isReady;
    const n = createNotifier({ NOTIFY_SOCKET: path, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) });
    assert.equal(n.enabled, true, '1: enabled with NOTIFY_SOCKET and the addon built');
    assert.equal(n.send('READY=1\nSTATUS=up'), 0, '2: sent');
    assert.equal(n.startWatchdog(), 100, '3: every WATCHDOG_USEC/2');
    await new Promise((r) => setTimeout(r, 450));
    n.stop();
    assert.equal(n.send('STOPPING=1'), 0);
    await closed;
    assert.equal(got[0], 'READY=1\nSTATUS=up', '4: first message');
    assert.ok(got.filter((m) => m === 'WATCHDOG=1').length >= 3, `5: watchdog pings: ${JSON.stringify(got)}`);
    assert.equal(got.at(-1), 'STOPPING=1', '6: last message');
    assert.equal(createNotifier({ NOTIFY_SOCKET: path, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' }).startWatchdog(), 0, '7: a watchdog meant for another pid is not ours');
    assert.ok(createNotifier({ NOTIFY_SOCKET: join(dir, 'gone') }).send('READY=1') < 0, '8: a missing socket is an error value, not a throw');
  } finally {
    py.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
