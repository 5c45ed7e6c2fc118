/**
 * The daemon's lifecycle over a fake System: the gate goes in before the TUN exists, stop
 * removes only what this daemon added, a failed start undoes everything, and reload keeps the
 * state of untouched peers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createServer } from 'node:net';
import { Daemon, tunMtuFor, markGateOwner, GATE_OWNER_FILE, WARMUP_DIR, type System } from '../src/daemon/daemon.js';
import { loadAddon } from '../src/io/native-addon.js';
import { NativeEspSender } from '../src/io/raw-native.js';
import type { RawAddon } from '../src/io/raw-native.js';
import { openStandInIo } from '../src/io/stand-in.js';
import { loadNativeAddon, openStandInTun } from '../src/io/tun-native.js';
import { staticSaFactory } from '../src/daemon/sa-factory.js';
import { parseConfig, type Config } from '../src/config/load.js';
import { EXAMPLE } from '../src/config/reference.js';
import { GatewayError } from '../src/errors.js';
import { FakeTun } from './support/fakes.js';

function fakeSystem(opts: { gatePresent?: boolean; failTun?: boolean } = {}) {
  const calls: string[] = [];
  let gate = opts.gatePresent ?? false;
  const tun = new FakeTun();
  const sys: System = {
    openTun: (name) => { calls.push(`openTun ${name}`); if (opts.failTun) throw new GatewayError('ERR_TUN', 'no /dev/net/tun'); return tun; },
    configureTun: (name, mtu, _prefixes, src) => { calls.push(`configureTun ${name} ${mtu} src ${src.v4 ?? '-'} ${src.v6 ?? '-'}`); return Promise.resolve(); },
    linkMtuTowards: () => Promise.resolve(1500),
    localAddresses: () => Promise.resolve(['192.0.2.9', '198.18.0.1', '2001:db8:0:1::1']),
    openSender: () => { calls.push('openSender'); return { send: () => true, close: () => { calls.push('closeSender'); } }; },
    openReceiver: () => { calls.push('openReceiver'); return { start: () => {}, close: () => { calls.push('closeReceiver'); } }; },
    gateInstalled: () => Promise.resolve(gate),
    installGate: () => { calls.push('installGate'); gate = true; return Promise.resolve(); },
    removeGate: () => { calls.push('removeGate'); gate = false; return Promise.resolve(); },
  };
  return { sys, calls, tun, gate: () => gate };
}

function withConfig(fn: (cfg: Config) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'egd-'));
  const cfg = parseConfig(EXAMPLE.replace('/var/lib/espgate', dir), 'example');
  return fn(cfg).finally(() => rmSync(dir, { recursive: true, force: true }));
}

const silent = pino({ level: 'silent' });

test('daemon: gate before TUN; stop removes what it added (numbered steps)', () => withConfig(async (cfg) => {
  const f = fakeSystem();
  const d = new Daemon(cfg, f.sys, silent, staticSaFactory(cfg.stateDir));
  await d.start();
  assert.equal(d.state, 'up');
  assert.ok(f.calls.indexOf('installGate') < f.calls.indexOf('openTun eg0'), '1: the gate is in before the TUN exists');
  assert.equal(d.tunMtu, 1440, '2: 1500 - 57 (IPv4 outer, AES-GCM-16), 4-aligned');
  assert.ok(f.calls.includes('configureTun eg0 1440 src 198.18.0.1 2001:db8:0:1::1'), '2b: fake routes get our address inside local.protect as source');
  assert.equal(d.status().peers[0]?.sas.length, 2, '3: status lists both SAs');
  await d.stop();
  assert.equal(d.state, 'closed');
  assert.equal(f.gate(), false, '4: the gate this daemon installed is removed');
  assert.ok(f.calls.includes('closeReceiver') && f.calls.includes('closeSender') && f.tun.closed, '5: I/O closed');
  await d.stop();
  assert.equal(f.calls.filter((c) => c === 'removeGate').length, 1, '6: stop is idempotent');
}));

test('daemon: a gate installed by `rules install` stays closed after stop', () => withConfig(async (cfg) => {
  const f = fakeSystem({ gatePresent: true });
  const d = new Daemon(cfg, f.sys, silent, staticSaFactory(cfg.stateDir));
  await d.start();
  await d.stop();
  assert.equal(f.gate(), true);
  assert.ok(!f.calls.includes('installGate') && !f.calls.includes('removeGate'));
}));

test('daemon: a gate left by a crashed daemon is adopted and removed on stop', () => withConfig(async (cfg) => {
  markGateOwner(cfg.stateDir, true); // what the crashed daemon left behind
  const f = fakeSystem({ gatePresent: true });
  const d = new Daemon(cfg, f.sys, silent, staticSaFactory(cfg.stateDir));
  await d.start();
  await d.stop();
  assert.equal(f.gate(), false, 'adopted gate removed');
  assert.equal(existsSync(join(cfg.stateDir, GATE_OWNER_FILE)), false, 'owner mark cleared');
}));

test('daemon: a failed start undoes everything and leaves the state closed', () => withConfig(async (cfg) => {
  const f = fakeSystem({ failTun: true });
  const d = new Daemon(cfg, f.sys, silent, staticSaFactory(cfg.stateDir));
  await assert.rejects(d.start(), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_TUN');
  assert.equal(d.state, 'closed');
  assert.equal(f.gate(), false, 'gate removed again');
}));

test('daemon: reload keeps untouched SAs (and their sequence state) and refuses structural changes', () => withConfig(async (cfg) => {
  const f = fakeSystem();
  const d = new Daemon(cfg, f.sys, silent, staticSaFactory(cfg.stateDir));
  await d.start();
  const before = d.engine?.tables.sadb.outbound('bob');
  assert.ok(before);
  await d.reload(parseConfig(EXAMPLE.replace('/var/lib/espgate', cfg.stateDir), 'again'));
  assert.equal(d.engine?.tables.sadb.outbound('bob'), before, '1: same SA object after reload');
  assert.equal(f.calls.filter((c) => c === 'installGate').length, 2, '2: reload re-applies the gate (peer and endpoint sets follow the config)');
  const rekeyed = EXAMPLE.replace('/var/lib/espgate', cfg.stateDir).replace('0x000102030405060708090a0b0c0d0e0f10111213', '0x' + '55'.repeat(20));
  await d.reload(parseConfig(rekeyed, 'rekeyed'));
  assert.notEqual(d.engine?.tables.sadb.outbound('bob'), before, '3: a changed key makes a new SA');
  const moved = EXAMPLE.replace('/var/lib/espgate', cfg.stateDir).replace('name: eg0', 'name: eg1');
  const gateCalls = f.calls.length;
  await assert.rejects(d.reload(parseConfig(moved, 'moved')), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG', '4: structural change refused');
  assert.equal(f.calls.length, gateCalls, '4b: a refused reload touches nothing');
  assert.equal(d.reloads, 2, '5: two reloads counted');
  await d.stop();
}));

test('daemon: a reload whose gate update fails keeps the old tables', () => withConfig(async (cfg) => {
  const f = fakeSystem();
  let failGate = false;
  const sys: System = { ...f.sys, installGate: (c) => (failGate ? Promise.reject(new GatewayError('ERR_RULES_APPLY', 'ipset restore failed')) : f.sys.installGate(c)) };
  const d = new Daemon(cfg, sys, silent, staticSaFactory(cfg.stateDir));
  await d.start();
  const tables = d.engine?.tables;
  failGate = true;
  const rekeyed = EXAMPLE.replace('/var/lib/espgate', cfg.stateDir).replace('0x000102030405060708090a0b0c0d0e0f10111213', '0x' + '55'.repeat(20));
  await assert.rejects(d.reload(parseConfig(rekeyed, 'rekeyed')), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_RULES_APPLY');
  assert.equal(d.engine?.tables, tables, 'tables unchanged');
  assert.equal(d.reloads, 0);
  failGate = false;
  await d.reload(parseConfig(rekeyed, 'rekeyed'));
  assert.notEqual(d.engine?.tables, tables, 'the next reload works');
  await d.stop();
}));

test('tunMtuFor: IPv4 and IPv6 outer overheads', () => {
  assert.equal(tunMtuFor(1500, new Set([4])), 1440);
  assert.equal(tunMtuFor(1500, new Set([4, 6])), 1420);
  assert.equal(tunMtuFor(9000, new Set([6])), 8920);
});

test('daemon: the metrics endpoint runs while up and is closed on stop', () => withConfig(async (cfg) => {
  const free = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const a = s.address(); s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0)); });
  });
  const f = fakeSystem();
  const d = new Daemon({ ...cfg, metrics: { listen: `127.0.0.1:${free}` } }, f.sys, silent, staticSaFactory(cfg.stateDir));
  await d.start();
  const text = await (await fetch(`http://127.0.0.1:${free}/metrics`)).text();
  assert.match(text, /^espgate_up 1$/m, '1: up');
  assert.match(text, /^espgate_packets_total\{peer="bob",direction="out"\} 0$/m, '2: per-peer counters');
  assert.ok(d.engine?.onTiming !== undefined, '3: the data path reports timings while metrics are on');
  await d.stop();
  await assert.rejects(fetch(`http://127.0.0.1:${free}/metrics`), '4: closed on stop');
}));

test('daemon: status says who installed the gate, and notices when it vanishes', () => withConfig(async (cfg) => {
  const f = fakeSystem();
  let up = true;
  const d = new Daemon(cfg, { ...f.sys, linkUp: () => up }, silent, staticSaFactory(cfg.stateDir));
  await d.start();
  try {
    const st = d.status();
    assert.deepEqual([st.gate.installed, st.gate.installedBy], [true, 'daemon'], '1: installed by this daemon');
    assert.equal(st.tun.up, true, '2: the TUN is up');
    await f.sys.removeGate(cfg); // someone flushes our rules behind our back
    up = false;
    await d.checkGate();
    assert.equal(d.status().gate.installed, false, '3: the check sees the gate gone');
    assert.equal(d.status().tun.up, false, '4: and the TUN down');
    await f.sys.installGate(cfg);
    await d.checkGate();
    assert.equal(d.status().gate.installed, true, '5: back again');
  } finally {
    await d.stop();
  }
  const g = fakeSystem({ gatePresent: true });
  const d2 = new Daemon(cfg, g.sys, silent, staticSaFactory(cfg.stateDir));
  await d2.start();
  try {
    assert.equal(d2.status().gate.installedBy, 'operator', '6: a gate found in place belongs to the operator');
    assert.equal(d2.status().tun.up, null, '7: a System that cannot tell says null');
  } finally {
    await d2.stop();
  }
}));

const rawAddon = loadAddon<RawAddon>('espgate_raw').addon;
const noAddons = rawAddon === undefined || loadNativeAddon() === undefined ? 'native addons not built (npm run build:native)' : false;

/** standIns gives a fake System stand-in I/O as the real one would (same native classes), and a closer for the edges behind it. */
function standIns(): { open: NonNullable<System['openStandIn']>; opened: () => number; close: () => void } {
  const edges: { close(): void }[] = [];
  let opened = 0;
  return {
    open: () => {
      const tun = openStandInTun('real', true, true);
      const sink = openStandInTun('real-esp', false, false);
      if (tun === undefined || sink === undefined || rawAddon === undefined) return undefined;
      edges.push(tun, sink);
      opened++;
      return openStandInIo({ tun, sender: new NativeEspSender(rawAddon, sink.fd, sink.fd) });
    },
    opened: () => opened,
    close: () => { for (const e of edges) e.close(); },
  };
}

/** waitFor polls cond every 20 ms for at most ms milliseconds. */
async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  for (let t = 0; t < ms && !cond(); t += 20) await new Promise((r) => setTimeout(r, 20));
  return cond();
}

test('daemon: the data-path warm-up runs both ways after up, on SA files of its own that it removes', { skip: noAddons }, () => withConfig(async (cfg) => {
  const f = fakeSystem();
  const s = standIns();
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => { lines.push(l); } });
  const d = new Daemon(cfg, { ...f.sys, openStandIn: s.open }, log, staticSaFactory(cfg.stateDir));
  try {
    await d.start();
    assert.equal(s.opened(), 1, '1: stand-ins opened once');
    assert.equal(existsSync(join(cfg.stateDir, WARMUP_DIR)), true, '2: the warm-up has its own state dir while it runs');
    assert.equal(d.status().dataPath.warmUp, 'running', '2b: status says so');
    assert.ok(await waitFor(() => lines.some((l) => l.includes('data path warmed up (codec optimised)')), 20_000), '3: the warm-up finished');
    const done = lines.find((l) => l.includes('warmed up (both directions)'));
    assert.ok(done !== undefined, '4: the path part ran');
    const r = (JSON.parse(done) as { report: { drops: number; espSent: number; expectedSent: number; tunWritten: number; expectedWritten: number } }).report;
    assert.equal(r.drops, 0, '5: no drop on the throwaway path');
    assert.ok(r.espSent > 0 && r.espSent === r.expectedSent && r.tunWritten === r.expectedWritten, '6: every packet went through');
    assert.equal(existsSync(join(cfg.stateDir, WARMUP_DIR)), false, '7: its state dir is gone');
    assert.equal(d.engine?.totals.espSent, 0, '8: the real engine sent nothing');
    // The fake system's TUN and sender have no offloads and no batching: status reports that.
    assert.deepEqual(d.status().dataPath, { tunOffload: false, tcpCoalescing: false, udpCoalescing: 'off', sendBatch: false, warmUp: 'done', batchedReads: false, express: { on: false, flows: 0, thread: 'off' } }, '9: status.dataPath');
  } finally {
    await d.stop();
    s.close();
  }
}));

test('daemon: a stop during the warm-up ends it and removes its files', { skip: noAddons }, () => withConfig(async (cfg) => {
  const f = fakeSystem();
  const s = standIns();
  const d = new Daemon(cfg, { ...f.sys, openStandIn: s.open }, silent, staticSaFactory(cfg.stateDir));
  try {
    await d.start();
    assert.equal(existsSync(join(cfg.stateDir, WARMUP_DIR)), true, '1: running');
    await d.stop();
    assert.ok(await waitFor(() => !existsSync(join(cfg.stateDir, WARMUP_DIR)), 2_000), '2: removed after the stop');
    assert.equal(d.warmUp, 'off', '3: cut short');
  } finally {
    await d.stop();
    s.close();
  }
}));
