/**
 * test/lab/udp-encap.test.ts: UDP-encapsulated ESP (RFC 3948) between two namespaces, through the
 * real port-4500 sockets (src/io/udp-encap.ts) and the engine, and Wireshark's reading of it.
 *
 *   ┌ egtb<pid>a (sender) ───────────────┐          ┌ egtb<pid>b (receiver) ─────────────┐
 *   │ egtbva 198.18.10.1/24              ├──────────┤ egtbvb 198.18.10.2/24              │
 *   │        2001:db8:45::1/64           │   veth   │        2001:db8:45::2/64           │
 *   │ FakeTun ─ Engine ─ udp 4500 ───────┼─ ESP in ─┼─► udp 4500 ─ Engine ─ FakeTun      │
 *   │ (inner 198.18.0.1 → 198.19.0.2)    │   UDP    │   tcpdump -w (udp port 4500)       │
 *   └────────────────────────────────────┘          └────────────────────────────────────┘
 *
 * Per family: the sender seals N inner packets (one of 1400 bytes) with an SA whose encap is port
 * 4500, then sends one IKE message and one NAT keepalive. The receiver must put exactly the N inner
 * packets into its TUN (source mapped to the fake prefix), see the IKE message with its marker
 * stripped and count the keepalive; tshark, given only the SA (esp_sa UAT), must decode the capture
 * as UDP-encapsulated ESP on port 4500, verify every ICV and read the inner payloads back.
 * Root only (namespaces); the tshark half is skipped with a reason when tshark is missing.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fixtureCommand, hasTool, rootSkipReason } from '../io/helpers.js';

const PREFIX = `egtb${process.pid}`;
const NS_A = `${PREFIX}a`;
const NS_B = `${PREFIX}b`;
const KEY_AB = '4c80cdefbb5d10da906ac73c3613a6342e443b68';
const SPI_AB = 0xc0de4500;
const COUNT = 12;
const ADDR = { 4: { a: '198.18.10.1', b: '198.18.10.2', len: 24 }, 6: { a: '2001:db8:45::1', b: '2001:db8:45::2', len: 64 } } as const;

const skip = rootSkipReason(['ip', 'tcpdump']);
const created: string[] = [];
const started = new Set<ChildProcess>();

function sh(argv: readonly string[], timeoutMs = 10_000): string {
  const r = spawnSync(argv[0] ?? 'false', argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status ?? r.signal}: ${r.stderr}`);
  return r.stdout;
}

function cleanup(): void {
  for (const c of started) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGKILL');
  for (const n of created.splice(0)) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore', timeout: 5000 });
}

/** payloadOf mirrors the fixture's inner payload i. */
function payloadOf(i: number): Buffer {
  const size = i === 0 ? 1372 : 16 + ((i * 97) % 1200);
  const b = Buffer.alloc(size, 0x61 + (i % 26));
  b.write(`espgate-udp-encap-${i}-`, 0);
  return b;
}

/** startIn starts argv in a namespace (tracked: killed in cleanup) and collects its output. */
function startIn(ns: string, argv: readonly string[]): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  started.add(child);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<number | null>((resolve) => { child.on('exit', (code) => { started.delete(child); resolve(code); }); });
  return { child, out: () => out, err: () => err, exited };
}

async function waitUntil(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => { reject(new Error(`timed out: ${what}`)); }, ms); });
  try { return await Promise.race([p, t]); } finally { clearTimeout(timer); }
}

function lastJson(text: string, key: string): Record<string, unknown> {
  const line = text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((o) => key in o);
  if (line === undefined) throw new Error(`no ${key} line in ${text}`);
  return line[key] as Record<string, unknown>;
}

const TSHARK_FIELDS = ['frame.protocols', 'udp.srcport', 'udp.dstport', 'esp.spi', 'esp.sequence', 'esp.icv_good', 'esp.icv_bad', 'ip.src', 'ipv6.src', 'udp.payload'] as const;
type Row = Record<(typeof TSHARK_FIELDS)[number], string>;

function tshark(pcap: string, family: 4 | 6): Row[] {
  const a = ADDR[family];
  const uat = [family === 4 ? 'IPv4' : 'IPv6', a.a, a.b, `0x${SPI_AB.toString(16)}`, 'AES-GCM with 16 octet ICV [RFC4106]', `0x${KEY_AB}`, 'NULL', '']
    .map((f) => `"${f}"`).join(',');
  const args = ['-n', '-r', pcap, '-o', 'esp.enable_encryption_decode:TRUE', '-o', 'esp.enable_authentication_check:TRUE', '-o', `uat:esp_sa:${uat}`,
    '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of TSHARK_FIELDS) args.push('-e', f);
  const r = spawnSync('tshark', args, { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `tshark: ${r.stderr}`);
  return r.stdout.trimEnd().split('\n').map((l) => {
    const cols = l.split('\t');
    return Object.fromEntries(TSHARK_FIELDS.map((f, i) => [f, cols[i] ?? ''])) as Row;
  });
}

describe('UDP-encapsulated ESP between two namespaces', { skip: skip ?? false }, () => {
  let dir = '';
  before(() => {
    process.on('exit', cleanup);
    dir = mkdtempSync(join(tmpdir(), 'egtb-udp-encap-'));
    for (const n of [NS_A, NS_B]) {
      sh(['ip', 'netns', 'add', n]);
      created.push(n);
      sh(['ip', 'netns', 'exec', n, 'ip', 'link', 'set', 'lo', 'up']);
      sh(['ip', 'netns', 'exec', n, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    }
    sh(['ip', 'link', 'add', 'egtbva', 'netns', NS_A, 'type', 'veth', 'peer', 'name', 'egtbvb', 'netns', NS_B]);
    for (const [ns, ifc, side] of [[NS_A, 'egtbva', 'a'], [NS_B, 'egtbvb', 'b']] as const) {
      sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', ifc, 'up']);
      for (const fam of [4, 6] as const) sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${ADDR[fam][side]}/${ADDR[fam].len}`, 'dev', ifc, 'nodad']);
    }
  });
  after(() => {
    cleanup();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family} outer: ${COUNT} packets sealed into UDP 4500, received, opened, byte for byte; tshark agrees`, { timeout: 120_000 }, async (t) => {
      const a = ADDR[family];
      const pcap = join(dir, `udp-encap-${family}.pcap`);
      sh(['ip', 'netns', 'exec', NS_A, 'ping', `-${family}`, '-c', '1', '-W', '2', a.b], 10_000); // neighbour resolved before the burst
      const dump = startIn(NS_B, ['tcpdump', '-Z', 'root', '-i', 'egtbvb', '-c', String(COUNT + 2), '-U', '-n', '-w', pcap, 'udp', 'port', '4500']);
      await waitUntil(() => dump.err().includes('listening on'), 'tcpdump');
      const recv = startIn(NS_B, [...fixtureCommand(import.meta.url, 'udp-encap-node'), 'recv', String(family), a.b, a.a, String(COUNT)]);
      await waitUntil(() => recv.out().includes('"ready"'), `receiver ready (${recv.err()})`);
      const send = startIn(NS_A, [...fixtureCommand(import.meta.url, 'udp-encap-node'), 'send', String(family), a.a, a.b, String(COUNT)]);
      assert.equal(await within(send.exited, 30_000, 'sender'), 0, `sender: ${send.err()}`);
      const sent = lastJson(send.out(), 'sent');
      assert.deepEqual((sent.totals as Record<string, number>).espUdpSent, COUNT, 'the sender sealed every packet into UDP');
      assert.equal(sent.drops, 0);
      // The sender has exited after its datagrams left; the receiver reports what it got, then exits.
      recv.child.stdin?.write('report\n');
      await waitUntil(() => recv.out().includes('"result"'), 'receiver report');
      const result = lastJson(recv.out(), 'result');
      await within(recv.exited, 10_000, 'receiver exit');
      // tcpdump leaves by itself after COUNT + 2 datagrams (-c): a signal would lose what it has not read yet.
      await within(dump.exited, 10_000, `tcpdump exit after ${COUNT + 2} packets: ${dump.err()}`);

      const tun = (result.tun as string[]).map((h) => Buffer.from(h, 'hex'));
      assert.equal(tun.length, COUNT, `every inner packet reached the TUN (drops ${JSON.stringify(result.drops)})`);
      assert.deepEqual(result.drops, {}, 'no drop');
      for (const [i, p] of tun.entries()) {
        assert.equal(p.subarray(12, 16).join('.'), '198.19.0.1', `packet ${i + 1}: inner source mapped to the fake prefix`);
        assert.equal(p.subarray(16, 20).join('.'), '198.18.0.2', `packet ${i + 1}: inner destination`);
        assert.deepEqual(p.subarray(28), payloadOf(i), `packet ${i + 1}: payload intact`);
      }
      assert.equal(tun[0].length, 1400, 'the first inner packet is 1400 bytes');
      const stats = result.stats as Record<string, number>;
      assert.equal(stats.espIn, COUNT);
      assert.equal(stats.keepalivesIn, 1, 'the NAT keepalive was recognised and dropped');
      assert.deepEqual(result.ike, [`1122334455667788000000000000000000202308000000010000001c from ${a.a}:4500`], 'the IKE message arrived without its marker, from port 4500');

      if (!hasTool('tshark')) {
        t.diagnostic('tshark not installed: the independent decode was skipped');
        return;
      }
      assert.match(dump.err(), new RegExp(`${COUNT + 2} packets captured`), `tcpdump: ${dump.err()}`);
      const rows = tshark(pcap, family);
      assert.equal(rows.length, COUNT + 2, `one frame per datagram: ${rows.map((r) => r['frame.protocols']).join(' | ')}`);
      const esp = rows.filter((r) => r['esp.spi'] !== '');
      assert.equal(esp.length, COUNT, 'Wireshark reads ESP in every data datagram');
      for (const [i, r] of esp.entries()) {
        const label = `frame ${i + 1}`;
        assert.match(r['frame.protocols'], /:udp:udpencap:esp:ip:udp/, `${label}: UDP-encapsulated ESP carrying IPv4/UDP (${r['frame.protocols']})`);
        assert.equal(r['udp.srcport'].split(',')[0], '4500', `${label}: from port 4500`);
        assert.equal(r['udp.dstport'].split(',')[0], '4500', `${label}: to port 4500`);
        assert.equal(r['esp.spi'], `0x${SPI_AB.toString(16)}`, label);
        assert.equal(r['esp.sequence'], String(i + 1), `${label}: sequence`);
        assert.equal(r['esp.icv_good'], '1', `${label}: Wireshark verified the ICV`);
        assert.equal(r['udp.payload'].split(',').pop(), payloadOf(i).toString('hex'), `${label}: inner payload decrypted by Wireshark`);
        const srcs = r['ip.src'].split(',');
        assert.equal(srcs[srcs.length - 1], '198.18.0.1', `${label}: inner source (real, as sealed)`);
      }
      const others = rows.filter((r) => r['esp.spi'] === '').map((r) => r['frame.protocols']);
      assert.ok(others.some((p) => p.endsWith(':udp:udpencap')), `a keepalive frame (udpencap only): ${others.join(' | ')}`);
      assert.ok(others.some((p) => /:udpencap:isakmp/.test(p)), `an IKE frame behind the non-ESP marker: ${others.join(' | ')}`);
    });
  }
});
