/**
 * up.test.ts: the SIGHUP action of `espgate up` (hupHandler) with a fake daemon: a SIGHUP during
 * start-up waits for start() and is then applied, bracketed by RELOADING=1 / READY=1; a refused
 * reload is logged and still answers READY=1; nothing happens once a stop began or when start-up
 * failed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config } from '../config/load.js';
import { parseConfig } from '../config/load.js';
import { EXAMPLE } from '../config/reference.js';
import { GatewayError } from '../errors.js';
import { createLogger, type LogDestination } from '../log.js';
import { hupHandler } from './up.js';

const CFG = parseConfig(EXAMPLE, 'example.yaml');

interface Rig {
  readonly notes: string[];
  readonly logs: () => string[];
  readonly reloaded: Config[];
  readonly loads: () => number;
  readonly start: { resolve: () => void; reject: (e: Error) => void };
  state: string;
  stopping: boolean;
  failReload: boolean;
  readonly hup: () => Promise<void>;
}

function rig(): Rig {
  const chunks: string[] = [];
  const dest: LogDestination = { isTTY: false, write: (s: string) => { chunks.push(s); } };
  const log = createLogger('t', { level: 'info', destination: dest });
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const starting = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  starting.catch(() => {}); // the rig's own handle: a rejection is the test's point, not an error
  let loads = 0;
  const r: Rig = {
    notes: [],
    logs: () => chunks.join('').split('\n').filter((l) => l !== ''),
    reloaded: [],
    loads: () => loads,
    start: { resolve, reject },
    state: 'down',
    stopping: false,
    failReload: false,
    hup: () => Promise.resolve(),
  };
  const daemon = {
    reload: (next: Config): Promise<void> => {
      if (r.failReload) return Promise.reject(new GatewayError('ERR_CONFIG', 'reload can change peers and SAs only'));
      r.reloaded.push(next);
      return Promise.resolve();
    },
    get config(): Config { return CFG; },
    get reloads(): number { return r.reloaded.length; },
    get state(): string { return r.state; },
  };
  const hup = hupHandler({
    file: '/etc/espgate/x.yaml', log, daemon,
    notify: (m) => { r.notes.push(m.split('\n')[0] ?? ''); return 0; },
    load: () => { loads++; return CFG; },
    starting: () => starting,
    stopping: () => r.stopping,
  });
  return Object.assign(r, { hup });
}

test('hupHandler: a SIGHUP during start-up waits for start(), then reloads (RELOADING=1, READY=1)', async () => {
  const r = rig();
  const done = r.hup();
  await new Promise((res) => setImmediate(res));
  assert.equal(r.loads(), 0, 'the file is not read while starting');
  assert.deepEqual(r.notes, [], 'nothing told to systemd while starting');
  assert.match(r.logs().join('\n'), /SIGHUP during start-up: the config is reloaded once the daemon is up/);
  r.state = 'up';
  r.start.resolve();
  await done;
  assert.equal(r.loads(), 1);
  assert.equal(r.reloaded.length, 1);
  assert.deepEqual(r.notes, ['RELOADING=1', 'READY=1']);
});

test('hupHandler: when up, reloads at once; a refused reload is logged and still answers READY=1', async () => {
  const r = rig();
  r.state = 'up';
  r.start.resolve();
  await r.hup();
  assert.equal(r.reloaded.length, 1);
  assert.match(r.logs().join('\n'), /SIGHUP: reloading the config/);
  r.failReload = true;
  await r.hup();
  assert.equal(r.reloaded.length, 1);
  assert.deepEqual(r.notes, ['RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1']);
  assert.match(r.logs().join('\n'), /reload refused; still running on the previous config/);
});

test('hupHandler: nothing once a stop began (before or during start-up), nor when start-up failed', async () => {
  const a = rig();
  a.stopping = true;
  await a.hup();
  const b = rig();
  const pending = b.hup();
  b.stopping = true; // SIGTERM while the SIGHUP waited for start-up
  b.start.resolve();
  await pending;
  const c = rig();
  const failed = c.hup();
  c.start.reject(new Error('start-up failed'));
  await failed;
  for (const r of [a, b, c]) {
    assert.equal(r.loads(), 0);
    assert.equal(r.reloaded.length, 0);
    assert.deepEqual(r.notes, []);
  }
});
