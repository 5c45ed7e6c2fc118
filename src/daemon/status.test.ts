/**
 * The status document against its reference page: a daemon running on fakes (one packet each
 * way through its engine) produces a document whose every field is listed in docs/status.md, and
 * every field listed there is in the document, so the page cannot drift from the code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Daemon, type System } from './daemon.js';
import { staticSaFactory } from './sa-factory.js';
import { statusOf, type ChildSaStatus, type DaemonStatus, type PeerIkeStatus } from './status.js';
import { parseConfig, type Config } from '../config/load.js';
import { EXAMPLE } from '../config/reference.js';
import { DROP_REASONS } from '../drops.js';
import { buildIpPacket, udpDatagram } from '../packet/build.js';
import { FakeTun } from '../../test/support/fakes.js';

/** projectRoot walks up from this file (src/ or dist/src/) to the directory holding package.json. */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('package.json not found above the test file');
}

/** tableRows returns the first backticked cell of each table row in the section under `heading`. */
function tableRows(md: string, heading: string): { key: string; line: string }[] {
  const lines = md.split('\n');
  const start = lines.indexOf(heading);
  assert.ok(start >= 0, `docs/status.md has a "${heading}" section`);
  const rows: { key: string; line: string }[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('#')) break;
    const m = /^\| `([^`]+)` \|/.exec(line);
    if (m?.[1] !== undefined) rows.push({ key: m[1], line });
  }
  return rows;
}

/** MAPS are objects keyed by drop reason: their keys are data, not fields. */
const MAPS = new Set(['drops', 'peers[].sas[].drops']);

/** fieldPaths lists every field of a JSON value: `a.b`, `a[]` for a list, `a[].c` for its elements' fields. */
function fieldPaths(v: unknown, prefix: string, out: Set<string>): Set<string> {
  if (v === null || typeof v !== 'object') return out;
  for (const [k, child] of Object.entries(v)) {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    if (Array.isArray(child)) {
      out.add(`${p}[]`);
      for (const el of child) fieldPaths(el, `${p}[]`, out);
    } else {
      out.add(p);
      if (!MAPS.has(p)) fieldPaths(child, p, out);
    }
  }
  return out;
}

function fakeSystem(tun: FakeTun): System {
  return {
    openTun: () => tun,
    configureTun: () => Promise.resolve(),
    linkMtuTowards: () => Promise.resolve(1500),
    localAddresses: () => Promise.resolve(['198.18.0.1', '2001:db8:0:1::1']),
    openSender: () => ({ send: () => true, close: () => {} }),
    openReceiver: () => ({ start: () => {}, close: () => {} }),
    gateInstalled: () => Promise.resolve(true),
    installGate: () => Promise.resolve(),
    removeGate: () => Promise.resolve(),
    queueStats: () => ({ waiting: 1, queueDropped: 2, userDropped: 3 }),
  };
}

/** withDaemon runs fn against a started daemon on fakes (the reference config: alice with one peer, bob). */
async function withDaemon(fn: (d: Daemon, tun: FakeTun, cfg: Config) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'egs-status-'));
  const cfg = parseConfig(EXAMPLE.replace('/var/lib/espgate', dir), 'example');
  const tun = new FakeTun();
  const d = new Daemon(cfg, fakeSystem(tun), pino({ level: 'silent' }), staticSaFactory(cfg.stateDir));
  try {
    await d.start();
    await fn(d, tun, cfg);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** IKE_SAMPLE has every IKE field (Required: adding one to the type without adding it here does not compile). */
const CHILD_SAMPLE: Required<ChildSaStatus> = {
  inSpi: '0xc0000001', outSpi: '0xd0000001', algorithm: 'aes256gcm16', encapPort: 4500, establishedMs: 1, rekeyAtMs: 2,
};
const IKE_SAMPLE: Required<PeerIkeStatus> = {
  state: 'established', lastHeardMs: 1, spiI: '0123456789abcdef', spiR: 'fedcba9876543210', establishedMs: 4, natT: true, ikeRekeyAtMs: 2, lastDpdMs: 3, children: [CHILD_SAMPLE],
};

/** UDP_ENCAP_SAMPLE stands for the NAT-T socket of a daemon with IKE peers (the fake daemon has none: null). */
const UDP_ENCAP_SAMPLE: NonNullable<DaemonStatus['udpEncap']> = { port: 4500, rcvbufBytes: 8_388_608, dropped: 0 };

test('status: per-SA createdMs, ageMs and lastPacketMs follow the SA and the clock (numbered steps)', () => withDaemon((d, tun) => {
  const first = d.status();
  const out0 = first.peers[0]?.sas.find((s) => s.direction === 'out');
  assert.ok(out0, '1: the outbound SA is listed');
  assert.equal(out0.lastPacketMs, 0, '2: no packet yet: lastPacketMs 0 (never)');
  assert.ok(out0.createdMs > 0 && out0.createdMs <= Date.now(), '3: createdMs is a clock reading');
  const later = statusOf(d, () => out0.createdMs + 5_000);
  const out1 = later.peers[0]?.sas.find((s) => s.direction === 'out');
  assert.equal(out1?.ageMs, 5_000, '4: ageMs = the document clock - createdMs');
  assert.equal(later.uptimeMs, out0.createdMs + 5_000 - d.startedMs, '5: uptimeMs uses the same clock');
  tun.inject(buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(40000, 53, Buffer.from('hello bob')) }));
  const after = d.status();
  const out2 = after.peers[0]?.sas.find((s) => s.direction === 'out');
  assert.equal(out2?.packets, 1, '6: the packet went out on that SA');
  assert.ok((out2?.lastPacketMs ?? 0) >= out0.createdMs, '7: lastPacketMs is set by the packet');
  assert.equal(out2?.createdMs, out0.createdMs, '8: createdMs does not move with traffic');
  assert.equal(after.totals.tunRead, 1, '9: totals count it');
  assert.deepEqual(after.queue, { num: 0, waiting: 1, queueDropped: 2, userDropped: 3 }, '10: the queue counters come from the System');
  assert.equal(after.peers[0]?.ike, undefined, '11: a static-SA peer has no ike field');
}));

test('status: every field of the document is in docs/status.md and every field there is in the document', () => withDaemon((d, tun) => {
  tun.inject(buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2, Buffer.from('x')) }));
  const st: DaemonStatus = d.status();
  const p0 = st.peers[0];
  assert.ok(p0 !== undefined && p0.sas.length >= 2, 'the fake daemon has a peer with both SAs');
  // What the CLI prints (JSON drops undefined fields), plus a peer with every IKE field the way
  // the IKE driver will fill it, so that the '(IKE peers only)' rows are checked too, and the
  // NAT-T socket an IKE daemon has.
  assert.equal(st.udpEncap, null, 'no IKE peers: no NAT-T socket');
  const json: unknown = JSON.parse(JSON.stringify({ ...st, udpEncap: UDP_ENCAP_SAMPLE, peers: [...st.peers, { ...p0, ike: IKE_SAMPLE }] }));
  const inDoc = fieldPaths(json, '', new Set());

  const md = readFileSync(join(projectRoot(), 'docs', 'status.md'), 'utf8');
  const rows = tableRows(md, '## Fields');
  const listed = new Set(rows.map((r) => r.key));
  assert.equal(listed.size, rows.length, 'no field is listed twice');
  assert.deepEqual([...inDoc].filter((f) => !listed.has(f)), [], 'fields in the document but not in docs/status.md');
  assert.deepEqual([...listed].filter((f) => !inDoc.has(f)), [], 'fields in docs/status.md but not in the document');
  for (const r of rows) {
    assert.equal(r.key.startsWith('peers[].ike'), r.line.includes('(IKE peers only)'), `"${r.key}": marked (IKE peers only) exactly when it is an IKE field`);
  }
  for (const f of listed) assert.ok(/\|.*\|.*\|.*\|/.test(rows.find((r) => r.key === f)?.line ?? ''), `"${f}" has type, unit and meaning cells`);
}));

test('status: drops lists every reason, and docs/status.md documents every reason', () => withDaemon((d) => {
  const st = d.status();
  assert.deepEqual(Object.keys(st.drops), [...DROP_REASONS], 'every reason, in DROP_REASONS order, 0 included');
  const md = readFileSync(join(projectRoot(), 'docs', 'status.md'), 'utf8');
  const reasons = tableRows(md, '### Drop reasons').map((r) => r.key);
  assert.deepEqual(reasons, [...DROP_REASONS], 'the drop reason table lists DROP_REASONS in order');
}));

test('status: a daemon that has not started yet gives the whole document with zero counters', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egs-status-'));
  try {
    const cfg = parseConfig(EXAMPLE.replace('/var/lib/espgate', dir), 'example');
    const d = new Daemon(cfg, fakeSystem(new FakeTun()), pino({ level: 'silent' }), staticSaFactory(cfg.stateDir));
    const st = statusOf(d, () => d.startedMs + 250);
    assert.equal(st.state, 'down', '1: state down');
    assert.equal(st.uptimeMs, 250, '2: uptime from the injected clock');
    assert.deepEqual(st.peers, [], '3: no engine, no peers yet');
    assert.deepEqual(st.totals, { tunRead: 0, espSent: 0, espReceived: 0, tunWritten: 0, espUdpSent: 0, espUdpReceived: 0 }, '4: every total present, 0');
    assert.ok(Object.values(st.drops).every((n) => n === 0) && Object.keys(st.drops).length === DROP_REASONS.length, '5: every drop reason present, 0');
    assert.equal(st.name, 'alice', '6: the config name');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
