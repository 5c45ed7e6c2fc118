/**
 * engine.test.ts: the engine's UDP encapsulation (RFC 3948) with in-memory twins. Outbound: an
 * SA with encap goes through the UDP sender, one without through the raw sender. Inbound: the
 * UDP entry shares everything after the outer header with the NFQUEUE entry, so the same ESP
 * gives the same bytes in the TUN and the same drop counters either way.
 *
 *   alice: FakeTun ── Engine ──┬── raw EspSender (recorded)
 *                              └── UdpEspLink ──► bob: Engine.handleUdpEsp ── FakeTun
 *   bob2 (same SAs as bob) gets the same ESP through handleEsp, behind an outer IPv4 header.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EspLink, FakeTun, UdpEspLink } from '../../test/support/fakes.js';
import { DROP_REASONS } from '../drops.js';
import type { EspReceiver, EspSender, Family } from '../io/types.js';
import type { DropReason } from '../drops.js';
import { InboundSa, OutboundSa } from '../esp/sa.js';
import type { ReplayStore, UdpEncap } from '../esp/sa.js';
import { Sadb, parseOuterAddress } from '../esp/sadb.js';
import { buildIpPacket, tcpSegment, udpDatagram } from '../packet/build.js';
import { pseudoHeaderSum } from '../packet/checksum.js';
import { GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_F_NEEDS_CSUM, VNET_HDR_LEN, newVnetHdr, readVnetHdr, writeVnetHdr } from '../io/vnet.js';
import type { VnetHdr } from '../io/vnet.js';
import { OffsetMap } from '../steer/fake-offset.js';
import { Engine, natKeepaliveTargets } from './engine.js';
import type { EngineTables, PeerRuntime } from './engine.js';
import { PrefixTable } from './prefix-table.js';
import { Tracer } from './trace.js';

const ALICE = '198.18.0.1';
const BOB = '198.18.0.2';
const KEY_AB = Uint8Array.from({ length: 20 }, (_, i) => 0x11 + i);
const KEY_BA = Uint8Array.from({ length: 20 }, (_, i) => 0x51 + i);
const SPI_AB = 0x1002;
const SPI_BA = 0x2001;

function v4(a: string): Uint8Array {
  return parseOuterAddress(a);
}

/** tables builds one side: us/peer addresses, the SA keys, and the outbound SA's encapsulation. */
function tables(me: string, peer: string, outSpi: number, outKey: Uint8Array, inSpi: number, inKey: Uint8Array, encap: UdpEncap | undefined, replayStore?: ReplayStore): EngineTables {
  const offsets = new OffsetMap([{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }]);
  const peerByDst4 = new PrefixTable<PeerRuntime>(4);
  const peerByDst6 = new PrefixTable<PeerRuntime>(6);
  const local4 = new PrefixTable<true>(4);
  const local6 = new PrefixTable<true>(6);
  local4.insert(v4(me), 32, true);
  const p: PeerRuntime = {
    name: 'peer', endpoint: peer, endpointFamily: 4,
    protect4: new PrefixTable<true>(4), protect6: new PrefixTable<true>(6),
    stats: { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, lastRxMs: 0, lastTxMs: 0 },
  };
  p.protect4.insert(v4(peer), 32, true);
  peerByDst4.insert(v4(peer), 32, p);
  const sadb = new Sadb();
  sadb.setOutbound('peer', new OutboundSa({ spi: outSpi, algorithm: 'aes128gcm16', keyMaterial: outKey }), encap);
  sadb.addInbound(new InboundSa({ spi: inSpi, algorithm: 'aes128gcm16', keyMaterial: inKey, peer: 'peer', outerSource: v4(peer), ...(replayStore === undefined ? {} : { replayStore }) }));
  return { offsets, peerByDst4, peerByDst6, local4, local6, sadb, peers: new Map([['peer', p]]) };
}

function inner(text: string): Buffer {
  // As the kernel hands it to alice's TUN after the OUTPUT NETMAP: destination is bob's fake address.
  return buildIpPacket({ src: ALICE, dst: '198.19.0.2', protocol: 17, payload: udpDatagram(40000, 53, Buffer.from(text)) });
}

function setup(encap: UdpEncap | undefined, withUdp = true) {
  const raw = new EspLink();
  const rawA = raw.endpoint(ALICE, (src, dst, esp) => buildIpPacket({ src, dst, protocol: 50, payload: esp }));
  const udp = new UdpEspLink();
  const udpA = udp.endpoint(ALICE, 4);
  const udpB = udp.endpoint(BOB, 4);
  const tunA = new FakeTun();
  const tunB = new FakeTun();
  const tunB2 = new FakeTun();
  const A = new Engine(tables(ALICE, BOB, SPI_AB, KEY_AB, SPI_BA, KEY_BA, encap), tunA, rawA.sender, rawA.receiver);
  if (withUdp) A.setUdpSender(udpA.sender);
  const noRx = new EspLink().endpoint(BOB, (_s, _d, esp) => esp);
  const B = new Engine(tables(BOB, ALICE, SPI_BA, KEY_BA, SPI_AB, KEY_AB, undefined), tunB, noRx.sender, noRx.receiver);
  const B2 = new Engine(tables(BOB, ALICE, SPI_BA, KEY_BA, SPI_AB, KEY_AB, undefined), tunB2, noRx.sender, noRx.receiver);
  udpB.bind(B.handleUdpEsp);
  A.start();
  return { raw, udp, tunA, tunB, tunB2, A, B, B2 };
}

/** outer wraps ESP in an outer IPv4 header from `src` to bob, as NFQUEUE would deliver it. */
function outer(src: string, esp: Buffer): Buffer {
  return buildIpPacket({ src, dst: BOB, protocol: 50, payload: esp });
}

function countsOf(e: Engine): Partial<Record<DropReason, number>> {
  const out: Partial<Record<DropReason, number>> = {};
  for (const r of DROP_REASONS) if (e.drops.counts[r] !== 0) out[r] = e.drops.counts[r];
  return out;
}

describe('engine: UDP encapsulation', () => {
  test('outbound: an SA with encap goes through the UDP sender (to its remote port), one without through the raw socket', () => {
    // [case, encap, UDP datagrams, raw packets, port]
    const cases: [UdpEncap | undefined, number, number, number | undefined][] = [
      /* 1 */ [{ remotePort: 4500 }, 1, 0, 4500],
      /* 2 */ [{ remotePort: 31000 }, 1, 0, 31000], // a NAT in front of the peer mapped its 4500
      /* 3 */ [undefined, 0, 1, undefined],
    ];
    for (const [i, [encap, nUdp, nRaw, port]] of cases.entries()) {
      const g = setup(encap);
      g.tunA.inject(inner(`hello ${i}`));
      assert.equal(g.udp.wire.length, nUdp, `case ${i + 1}: UDP`);
      assert.equal(g.raw.wire.length, nRaw, `case ${i + 1}: raw`);
      assert.equal(g.A.totals.espSent, 1, `case ${i + 1}: sent`);
      assert.equal(g.A.totals.espUdpSent, nUdp, `case ${i + 1}: sent in UDP`);
      assert.equal(g.A.drops.total(), 0, `case ${i + 1}: no drop`);
      if (port !== undefined) {
        const d = g.udp.wire[0];
        assert.deepEqual([d.dst, d.port], [BOB, port], `case ${i + 1}: destination`);
        assert.equal(d.esp.readUInt32BE(0), SPI_AB, `case ${i + 1}: the datagram starts with the SPI (no marker)`);
        assert.equal(g.tunB.fromDaemon.length, 1, `case ${i + 1}: bob decrypted it`);
        assert.ok(g.tunB.fromDaemon[0].includes(`hello ${i}`));
      }
    }
  });

  test('outbound: an encapsulated SA without a UDP sender is a send-error drop', () => {
    const g = setup({ remotePort: 4500 }, false);
    g.tunA.inject(inner('nowhere'));
    assert.equal(g.raw.wire.length, 0, 'never falls back to plain ESP');
    assert.equal(g.A.drops.counts['send-error'], 1);
  });

  test('inbound: the UDP entry puts the same bytes in the TUN as the NFQUEUE entry', () => {
    const g = setup({ remotePort: 4500 });
    g.udp.deliver = false;
    for (const t of ['one', 'two', 'a longer third payload to cross a padding boundary']) g.tunA.inject(inner(t));
    assert.equal(g.udp.wire.length, 3);
    for (const [i, d] of g.udp.wire.entries()) {
      // A non-zero byteOffset for the UDP entry: the ESP sits inside a bigger datagram buffer.
      const dgram = Buffer.alloc(d.esp.length + 13, 0xee);
      d.esp.copy(dgram, 5);
      assert.equal(g.B.handleInboundUdp(dgram, 5, d.esp.length, v4(ALICE)), 'ok', `case ${i + 1}: UDP entry`);
      assert.equal(g.B2.handleInbound(outer(ALICE, Buffer.from(d.esp))), 'ok', `case ${i + 1}: NFQUEUE entry`);
      assert.deepEqual(g.tunB.fromDaemon[i], g.tunB2.fromDaemon[i], `case ${i + 1}: byte for byte`);
    }
    assert.equal(g.tunB.fromDaemon.length, 3);
    assert.equal(g.tunB.fromDaemon[0].readUInt32BE(12), 0xc6130001, 'the inner source is mapped to the fake prefix (198.19.0.1)');
    const pB = g.B.tables.peers.get('peer');
    assert.equal(pB?.stats.rxPackets, 3);
  });

  test('inbound: hostile UDP ESP is dropped and counted exactly as on the NFQUEUE path', () => {
    const g = setup({ remotePort: 4500 });
    g.udp.deliver = false;
    g.tunA.inject(inner('good'));
    g.tunA.inject(inner('second'));
    const [good, second] = g.udp.wire.map((d) => d.esp);
    const badIcv = Buffer.from(second);
    badIcv[badIcv.length - 1] ^= 1;
    const unknown = Buffer.from(second);
    unknown.writeUInt32BE(0x9999, 0);
    // [case, ESP, outer source, expected outcome]
    const cases: [Buffer, string, DropReason | 'ok'][] = [
      /* 1 */ [good, '198.18.0.9', 'wrong-source'],
      /* 2 */ [unknown, ALICE, 'unknown-spi'],
      /* 3 */ [good.subarray(0, 5), ALICE, 'truncated'],
      /* 4 */ [good.subarray(0, 20), ALICE, 'truncated'],
      /* 5 */ [badIcv, ALICE, 'auth'],
      /* 6 */ [good, ALICE, 'ok'],
      /* 7 */ [good, ALICE, 'replay'],
    ];
    for (const [i, [esp, src, want]] of cases.entries()) {
      g.B.handleUdpEsp(Buffer.from(esp), 0, esp.length, 4, v4(src), 4500);
      g.B2.handleEsp(outer(src, Buffer.from(esp)));
      const r = g.B.drops.counts;
      if (want !== 'ok') assert.equal(r[want], cases.slice(0, i + 1).filter((c) => c[2] === want).length, `case ${i + 1}: ${want} counted`);
    }
    assert.deepEqual(countsOf(g.B), countsOf(g.B2), 'same counters on both entries');
    assert.deepEqual(countsOf(g.B), { 'wrong-source': 1, 'unknown-spi': 1, truncated: 2, auth: 1, replay: 1 });
    assert.equal(g.tunB.fromDaemon.length, 1, 'only the good packet reached the TUN');
    assert.deepEqual(g.tunB.fromDaemon, g.tunB2.fromDaemon);
    assert.equal(g.B.totals.espUdpReceived, 7);
    assert.equal(g.B.totals.espReceived, 7);
    assert.equal(g.B2.totals.espUdpReceived, 0);
    // The SA's own counters saw the same too.
    const sa1 = g.B.tables.sadb.inbound(SPI_AB);
    const sa2 = g.B2.tables.sadb.inbound(SPI_AB);
    assert.deepEqual({ ...sa1?.drops.counts }, { ...sa2?.drops.counts });
  });

  test('natKeepaliveTargets lists the peers whose outbound SA is encapsulated', () => {
    const enc = tables(ALICE, BOB, SPI_AB, KEY_AB, SPI_BA, KEY_BA, { remotePort: 31000 });
    const plain = tables(ALICE, BOB, SPI_AB, KEY_AB, SPI_BA, KEY_BA, undefined);
    assert.deepEqual(natKeepaliveTargets(enc), [{ family: 4, address: BOB, port: 31000 }]);
    assert.deepEqual(natKeepaliveTargets(plain), []);
  });

  test('trace: a UDP packet is traced like an NFQUEUE one, with its source port', () => {
    const g = setup({ remotePort: 4500 });
    g.udp.deliver = false;
    g.tunA.inject(inner('traced'));
    const esp = g.udp.wire[0].esp;
    g.B.trace = new Tracer({}, 10, 60);
    g.B2.trace = new Tracer({}, 10, 60);
    const tB = g.B.trace;
    const tB2 = g.B2.trace;
    g.B.handleUdpEsp(Buffer.from(esp), 0, esp.length, 4, v4(ALICE), 31000);
    g.B2.handleEsp(outer(ALICE, Buffer.from(esp)));
    const [u] = tB.read(0).events;
    const [r] = tB2.read(0).events;
    assert.ok(u !== undefined && r !== undefined);
    assert.equal(u.stages[0], `ESP from ${ALICE} port 31000 (UDP) spi 0x00001002 seq 1 ${esp.length} bytes`, 'case 1: UDP entry');
    assert.equal(r.stages[0], `ESP from ${ALICE} spi 0x00001002 seq 1 ${esp.length + 20} bytes`, 'case 2: NFQUEUE entry (outer header counted)');
    assert.deepEqual(u.stages.slice(1), r.stages.slice(1), 'case 3: the same stages after the outer header');
    assert.deepEqual([u.outcome, u.peer], ['ok', 'peer']);
  });
});

/** BatchCall is one sendBatch call as BatchSender saw it: the family and a copy of each packet. */
interface BatchCall {
  readonly family: Family;
  readonly packets: { readonly dst: string; readonly esp: Buffer }[];
}

/**
 * BatchSender is an EspSender with sendBatch that records every call. `fail` holds indexes
 * (counted over all packets ever offered to sendBatch) the "kernel" refuses, as sendmmsg's
 * partial return leaves them; `throwOnce` makes the next sendBatch throw.
 */
class BatchSender implements EspSender {
  readonly calls: BatchCall[] = [];
  readonly single: { family: Family; dst: string; esp: Buffer }[] = [];
  readonly fail = new Set<number>();
  throwOnce = false;
  #seen = 0;

  send(family: Family, dst: string, buf: Buffer, offset: number, length: number): boolean {
    this.single.push({ family, dst, esp: Buffer.from(buf.subarray(offset, offset + length)) });
    return true;
  }

  sendBatch(family: Family, dsts: readonly string[], bufs: readonly Buffer[], offsets: Uint32Array, lengths: Uint32Array, count: number, failed: Uint8Array): number {
    if (this.throwOnce) {
      this.throwOnce = false;
      throw new RangeError('sendBatch: count exceeds an array');
    }
    const call: BatchCall = { family, packets: [] };
    let sent = 0;
    for (let i = 0; i < count; i++) {
      const off = offsets[i] ?? 0;
      call.packets.push({ dst: dsts[i] ?? '', esp: Buffer.from((bufs[i] ?? Buffer.alloc(0)).subarray(off, off + (lengths[i] ?? 0))) });
      const refused = this.fail.has(this.#seen++);
      failed[i] = refused ? 1 : 0;
      if (!refused) sent++;
    }
    this.calls.push(call);
    return sent;
  }

  close(): void {}
}

const CAROL = '198.18.0.3';
const CAROL_ENDPOINT = '2001:db8::3';
const DAVE = '198.18.0.4';
const SPI_AC = 0x1003;
const SPI_AD = 0x1004;

function runtime(name: string, endpoint: string, family: Family, inner4: string): PeerRuntime {
  const p: PeerRuntime = {
    name, endpoint, endpointFamily: family,
    protect4: new PrefixTable<true>(4), protect6: new PrefixTable<true>(6),
    stats: { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, lastRxMs: 0, lastTxMs: 0 },
  };
  p.protect4.insert(v4(inner4), 32, true);
  return p;
}

/** aliceTables: alice with bob (IPv4 endpoint), carol (IPv6 endpoint) and dave (UDP-encapsulated SA). */
function aliceTables(): EngineTables {
  const offsets = new OffsetMap([{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }]);
  const peerByDst4 = new PrefixTable<PeerRuntime>(4);
  const local4 = new PrefixTable<true>(4);
  local4.insert(v4(ALICE), 32, true);
  const sadb = new Sadb();
  const peers = new Map<string, PeerRuntime>();
  const defs: [string, string, Family, string, number, UdpEncap | undefined][] = [
    ['bob', BOB, 4, BOB, SPI_AB, undefined],
    ['carol', CAROL_ENDPOINT, 6, CAROL, SPI_AC, undefined],
    ['dave', DAVE, 4, DAVE, SPI_AD, { remotePort: 4500 }],
  ];
  for (const [name, endpoint, family, innerAddr, spi, encap] of defs) {
    const p = runtime(name, endpoint, family, innerAddr);
    peers.set(name, p);
    peerByDst4.insert(v4(innerAddr), 32, p);
    sadb.setOutbound(name, new OutboundSa({ spi, algorithm: 'aes128gcm16', keyMaterial: KEY_AB }), encap);
  }
  return { offsets, peerByDst4, peerByDst6: new PrefixTable<PeerRuntime>(6), local4, local6: new PrefixTable<true>(6), sadb, peers };
}

/** toFake builds an inner packet from alice to `real`'s fake address, as the TUN delivers it. */
function toFake(real: string, text: string): Buffer {
  const fake = real.replace(/^198\.18\./, '198.19.');
  return buildIpPacket({ src: ALICE, dst: fake, protocol: 17, payload: udpDatagram(40000, 53, Buffer.from(text)) });
}

/** batchSetup: alice's engine over a BatchSender, with a recording UDP sender for dave. */
function batchSetup() {
  const tun = new FakeTun();
  const sender = new BatchSender();
  const udp = new UdpEspLink();
  udp.deliver = false;
  const rx = new EspLink().endpoint(ALICE, (_s, _d, esp) => esp);
  const e = new Engine(aliceTables(), tun, sender, rx.receiver);
  e.setUdpSender(udp.endpoint(ALICE, 4).sender);
  e.start();
  return { tun, sender, udp, e };
}

/** queueAll puts packets in the TUN without signalling, then signals once: one readiness event. */
function queueAll(tun: FakeTun, pkts: readonly Buffer[]): void {
  for (const p of pkts) tun.toDaemon.push(p);
}

describe('engine: batched ESP send (sendBatch)', () => {
  test('one TUN batch is one sendBatch per outer family, in order, byte for byte what per-packet sends give', () => {
    const pkts = [toFake(BOB, 'b1'), toFake(CAROL, 'c1'), toFake(BOB, 'b2'), toFake(DAVE, 'd1'), toFake(BOB, 'b3'), toFake(CAROL, 'c2')];
    const g = batchSetup();
    queueAll(g.tun, pkts);
    g.e.drainTun();
    assert.equal(g.e.batchedSend, true);
    assert.deepEqual(g.sender.calls.map((c) => [c.family, c.packets.map((p) => p.dst)]), [
      [4, [BOB, BOB, BOB]],
      [6, [CAROL_ENDPOINT, CAROL_ENDPOINT]],
    ], 'case 1: one call per family, packets in TUN order');
    assert.equal(g.sender.single.length, 0, 'case 2: no per-packet send for plain ESP');
    assert.equal(g.udp.wire.length, 1, 'case 3: the UDP-encapsulated SA still goes through port 4500, per packet');
    assert.deepEqual([g.e.totals.tunRead, g.e.totals.espSent, g.e.totals.espUdpSent, g.e.drops.total()], [6, 6, 1, 0], 'case 4: totals');

    // The same packets through per-packet sends (a sender without sendBatch) give the same ESP.
    const ref = new EspLink();
    const refEnd = ref.endpoint(ALICE, (_s, _d, esp) => esp);
    ref.deliver = false;
    const tun2 = new FakeTun();
    const e2 = new Engine(aliceTables(), tun2, refEnd.sender, refEnd.receiver);
    e2.setUdpSender(new UdpEspLink().endpoint(ALICE, 4).sender);
    e2.start();
    assert.equal(e2.batchedSend, false);
    queueAll(tun2, pkts.map((p) => Buffer.from(p)));
    e2.drainTun();
    const batched = g.sender.calls.flatMap((c) => c.packets.map((p) => p.esp.toString('hex')));
    const perPacket = ref.wire.map((p) => p.toString('hex'));
    assert.deepEqual([...batched].sort(), [...perPacket].sort(), 'case 5: same bytes');
    for (const p of g.sender.calls.flatMap((c) => c.packets)) {
      assert.ok([SPI_AB, SPI_AC].includes(p.esp.readUInt32BE(0)), 'case 6: every batched packet is ESP (starts with an SPI), never the plaintext');
      assert.ok(!p.esp.includes(Buffer.from('b1')) || p.esp.length < 4, 'case 7: the payload is not in clear');
    }
    const bob = g.e.tables.peers.get('bob');
    const carol = g.e.tables.peers.get('carol');
    assert.deepEqual([bob?.stats.txPackets, carol?.stats.txPackets], [3, 2], 'case 8: per-peer counters');
    assert.equal(bob?.stats.txBytes, pkts[0].length + pkts[2].length + pkts[4].length);
  });

  test('packets the kernel refused (partial sendmmsg) are counted one by one as send-error; the rest count as sent', () => {
    const g = batchSetup();
    const drops: string[] = [];
    g.e.onDrop = (r, dir) => drops.push(`${dir}:${r}`);
    g.sender.fail.add(1);
    g.sender.fail.add(2);
    queueAll(g.tun, [toFake(BOB, 'x0'), toFake(BOB, 'x1'), toFake(BOB, 'x2'), toFake(BOB, 'x3')]);
    g.e.drainTun();
    assert.equal(g.sender.calls.length, 1);
    assert.deepEqual([g.e.totals.espSent, g.e.drops.counts['send-error']], [2, 2]);
    assert.deepEqual(drops, ['out:send-error', 'out:send-error']);
    assert.equal(g.e.tables.peers.get('bob')?.stats.txPackets, 2, 'refused packets are not in the peer counters');
  });

  test('a sendBatch that throws costs its batch (send-error each), not the daemon; the next batch goes out', () => {
    const g = batchSetup();
    g.sender.throwOnce = true;
    queueAll(g.tun, [toFake(BOB, 'y0'), toFake(CAROL, 'y1'), toFake(BOB, 'y2')]);
    assert.doesNotThrow(() => g.e.drainTun());
    // The IPv4 call threw (2 packets lost); the IPv6 one (alone: one send) went out.
    assert.deepEqual([g.e.totals.espSent, g.e.drops.counts['send-error']], [1, 2]);
    assert.equal(g.sender.single.length, 1, 'a lone packet goes out with send()');
    queueAll(g.tun, [toFake(BOB, 'y3'), toFake(BOB, 'y4')]);
    g.e.drainTun();
    assert.equal(g.e.totals.espSent, 3, 'the next batch is sent');
    assert.equal(g.sender.calls.at(-1)?.packets.length, 2);
  });

  test('more than one TUN batch pending: one sendBatch per read batch, every packet sealed once, sequence in order', () => {
    const g = batchSetup();
    const n = 64 * 2 + 5;
    queueAll(g.tun, Array.from({ length: n }, (_, i) => toFake(BOB, `p${i}`)));
    g.e.drainTun();
    assert.deepEqual(g.sender.calls.map((c) => c.packets.length), [64, 64, 5]);
    const seqs = g.sender.calls.flatMap((c) => c.packets.map((p) => p.esp.readUInt32BE(4)));
    assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1));
    assert.equal(g.e.totals.espSent, n);
  });

  test('drops before the send (no peer, policy) never reach sendBatch; a trace switches to per-packet sends', () => {
    const g = batchSetup();
    const stranger = buildIpPacket({ src: '198.18.0.77', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2, Buffer.from('z')) });
    queueAll(g.tun, [toFake('198.18.0.99', 'nobody'), stranger, toFake(BOB, 'ok'), toFake(BOB, 'ok 2')]);
    g.e.drainTun();
    assert.deepEqual(g.sender.calls.map((c) => c.packets.length), [2]);
    assert.deepEqual([g.e.drops.counts['no-peer'], g.e.drops.counts.policy], [1, 1]);
    g.e.trace = new Tracer({}, 10, 60);
    const tr = g.e.trace;
    g.tun.inject(toFake(BOB, 'traced'));
    g.tun.inject(toFake(BOB, 'traced 2'));
    assert.equal(g.sender.calls.length, 1, 'no new batch call while tracing');
    assert.equal(g.sender.single.length, 2);
    assert.equal(tr.read(0).events.at(-1)?.outcome, 'ok');
  });
});

/** VnetFakeTun is a FakeTun opened "with IFF_VNET_HDR": each queued packet carries its virtio_net_hdr. */
class VnetFakeTun extends FakeTun {
  readonly vnetHdr = true;
  readonly queued: { hdr: VnetHdr; pkt: Buffer }[] = [];

  override readBatch(bufs: Buffer[], sizes: Int32Array, offset: number, hdrs?: Uint8Array): number {
    assert.ok(hdrs !== undefined, 'a vnet TUN is read with hdrs');
    let n = 0;
    while (n < bufs.length && n * VNET_HDR_LEN < hdrs.length && this.queued.length > 0) {
      const q = this.queued.shift();
      if (q === undefined) break;
      writeVnetHdr(q.hdr, hdrs, n * VNET_HDR_LEN);
      const len = Math.min(q.pkt.length, bufs[n].length - offset);
      q.pkt.copy(bufs[n], offset, 0, len);
      sizes[n] = len;
      n++;
    }
    return n;
  }
}

const TCP_ACK = 0x10;
const TCP_PSH = 0x08;

/** tcpPacket builds alice → `dst` TCP (DF set, every checksum from scratch). */
function tcpPacket(src: string, dst: string, id: number, seq: number, flags: number, data: Uint8Array): Buffer {
  return buildIpPacket({ src, dst, protocol: 6, identification: id, dontFragment: true, payload: tcpSegment({ srcPort: 40000, dstPort: 5201, seq, flags, payload: data }) });
}

function bytes(n: number, salt: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + salt) & 0xff));
}

/** vnetSetup: alice with a vnet TUN and a BatchSender; bob opens what alice sends. */
function vnetSetup() {
  const tun = new VnetFakeTun();
  const sender = new BatchSender();
  const rx = new EspLink().endpoint(ALICE, (_s, _d, esp) => esp);
  const e = new Engine(aliceTables(), tun, sender, rx.receiver);
  e.start();
  const tunB = new FakeTun();
  const none = new EspLink().endpoint(BOB, (_s, _d, esp) => esp);
  const B = new Engine(tables(BOB, ALICE, SPI_BA, KEY_BA, SPI_AB, KEY_AB, undefined), tunB, none.sender, none.receiver);
  /** deliver opens every batched packet at bob; returns what bob wrote to its TUN. */
  const deliver = (): Buffer[] => {
    for (const c of sender.calls) for (const p of c.packets) assert.equal(B.handleInbound(outer(ALICE, p.esp)), 'ok');
    for (const p of sender.single) assert.equal(B.handleInbound(outer(ALICE, p.esp)), 'ok');
    sender.calls.length = 0;
    sender.single.length = 0;
    return tunB.fromDaemon.splice(0);
  };
  return { tun, sender, e, B, deliver };
}

describe('engine: TUN offloads (virtio_net_hdr, TSO super-packets)', () => {
  const mss = 1000;

  test('a TCP super-packet leaves as one sealed ESP packet per segment; bob gets exactly the segments the kernel would have made', () => {
    const g = vnetSetup();
    const data = bytes(3 * mss + 10, 1);
    const sp = tcpPacket(ALICE, '198.19.0.2', 0x0100, 5000, TCP_ACK | TCP_PSH, data);
    g.tun.queued.push({ hdr: { flags: VNET_F_NEEDS_CSUM, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 }, pkt: sp });
    g.e.drainTun();
    assert.deepEqual(g.sender.calls.map((c) => c.packets.length), [4], 'case 1: four segments, one sendBatch');
    assert.deepEqual([g.e.totals.tunRead, g.e.totals.espSent, g.e.drops.total()], [1, 4, 0]);
    const got = g.deliver();
    assert.equal(got.length, 4);
    for (let k = 0; k < 4; k++) {
      const want = tcpPacket('198.19.0.1', BOB, 0x0100 + k, 5000 + k * mss, k === 3 ? TCP_ACK | TCP_PSH : TCP_ACK, data.subarray(k * mss, Math.min(data.length, (k + 1) * mss)));
      assert.deepEqual(got[k], want, `case 2.${k}: segment ${k} byte for byte (addresses mapped, checksums right)`);
    }
  });

  test('a packet with a partial checksum (VNET_F_NEEDS_CSUM, no GSO) is completed before sealing', () => {
    const g = vnetSetup();
    const good = buildIpPacket({ src: ALICE, dst: '198.19.0.2', protocol: 17, payload: udpDatagram(40000, 53, Buffer.from('partial')) });
    const partial = Buffer.from(good);
    // What the kernel leaves in the UDP checksum field is the pseudo-header sum only.
    const ph = pseudoHeaderSum(good, 12, 16, 4, 17, good.length - 20);
    partial.writeUInt16BE(ph, 26);
    g.tun.queued.push({ hdr: { flags: VNET_F_NEEDS_CSUM, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 6 }, pkt: partial });
    g.e.drainTun();
    const got = g.deliver();
    const want = buildIpPacket({ src: '198.19.0.1', dst: BOB, protocol: 17, payload: udpDatagram(40000, 53, Buffer.from('partial')) });
    assert.deepEqual(got, [want]);
  });

  test('a malformed super-packet or bad checksum offsets are one bad-inner drop each, nothing sent', () => {
    const g = vnetSetup();
    const sp = tcpPacket(ALICE, '198.19.0.2', 1, 1, TCP_ACK, bytes(2500, 2));
    const udp = buildIpPacket({ src: ALICE, dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2, Buffer.from('u')) });
    g.tun.queued.push(
      { hdr: { flags: 1, gsoType: GSO_TCPV6, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 }, pkt: sp }, // family mismatch
      { hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: 0, csumStart: 20, csumOffset: 16 }, pkt: sp }, // no MSS
      { hdr: { flags: 1, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 600 }, pkt: udp }, // outside
    );
    g.e.drainTun();
    assert.equal(g.e.drops.counts['bad-inner'], 3);
    assert.equal(g.sender.calls.length, 0);
  });

  test('more segments than the pool holds: queues flush early, every segment sent once and in sequence order', () => {
    const g = vnetSetup();
    const supers = 10;
    const per = 40; // 400 segments > the 256-slot pool
    for (let s = 0; s < supers; s++) {
      const sp = tcpPacket(ALICE, '198.19.0.2', s, 1 + s * per * 500, TCP_ACK, bytes(per * 500, s));
      g.tun.queued.push({ hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: 500, csumStart: 20, csumOffset: 16 }, pkt: sp });
    }
    g.e.drainTun();
    assert.ok(g.sender.calls.length >= 2, `flushed early (${g.sender.calls.length} calls)`);
    assert.ok(g.sender.calls.every((c) => c.packets.length <= 256));
    const esps = g.sender.calls.flatMap((c) => c.packets.map((p) => p.esp.readUInt32BE(4)));
    assert.deepEqual(esps, Array.from({ length: supers * per }, (_, i) => i + 1), 'ESP sequence numbers in order');
    const got = g.deliver();
    assert.equal(got.length, supers * per);
    const seqs = got.map((p) => p.readUInt32BE(24));
    assert.deepEqual(seqs, Array.from({ length: supers * per }, (_, i) => 1 + i * 500), 'TCP sequence numbers in order, none lost or doubled');
  });

  test('one super-packet with more segments than the pool (a tiny MSS) is split in rounds, nothing dropped', () => {
    const g = vnetSetup();
    const small = 100;
    const n = 600;
    g.tun.queued.push({ hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: small, csumStart: 20, csumOffset: 16 }, pkt: tcpPacket(ALICE, '198.19.0.2', 1, 77, TCP_ACK, bytes(n * small, 9)) });
    g.e.drainTun();
    assert.deepEqual([g.e.totals.espSent, g.e.drops.total()], [n, 0]);
    const got = g.deliver();
    assert.deepEqual(got.map((p) => p.readUInt32BE(24)), Array.from({ length: n }, (_, i) => 77 + i * small));
  });
});

/** GroFakeTun is a vnet FakeTun that coalesces on write: writeVnet records the header and the packet. */
class GroFakeTun extends FakeTun {
  readonly vnetHdr = true;
  readonly vnetWrites: { hdr: VnetHdr; pkt: Buffer }[] = [];
  /** order records every write: 'w' plain, 'v' with a header. */
  readonly order: string[] = [];
  failVnet = false;
  readonly writeVnet = (hdr: Uint8Array, buf: Buffer, offset: number, length: number): boolean => {
    if (this.failVnet) return false;
    this.order.push('v');
    this.vnetWrites.push({ hdr: readVnetHdr(hdr, 0, newVnetHdr()), pkt: Buffer.from(buf.subarray(offset, offset + length)) });
    return true;
  };

  override write(buf: Buffer, offset: number, length: number): boolean {
    this.order.push('w');
    return super.write(buf, offset, length);
  }
}

/** BatchedReceiver delivers packets in batches, like the NFQUEUE addon. */
class BatchedReceiver implements EspReceiver {
  readonly batched = true;
  #onPacket: ((pkt: Buffer) => void) | undefined;
  #onBatchEnd: (() => void) | undefined;
  start(onPacket: (pkt: Buffer) => void, onBatchEnd?: () => void): void {
    this.#onPacket = onPacket;
    this.#onBatchEnd = onBatchEnd;
  }
  deliver(pkts: readonly Buffer[]): void {
    for (const p of pkts) this.#onPacket?.(p);
    this.#onBatchEnd?.();
  }
  close(): void {}
}

describe('engine: coalescing on TUN write (GRO)', () => {
  const mss = 1000;

  /** groSetup: alice (vnet TSO) seals; bob holds a receive batch and coalesces it. */
  function groSetup(replayStore?: ReplayStore) {
    const a = vnetSetup();
    const tunB = new GroFakeTun();
    const rx = new BatchedReceiver();
    const none = new EspLink().endpoint(BOB, (_s, _d, esp) => esp);
    const B = new Engine(tables(BOB, ALICE, SPI_BA, KEY_BA, SPI_AB, KEY_AB, undefined, replayStore), tunB, none.sender, rx);
    B.start();
    /** sealed returns alice's ESP so far, as NFQUEUE would deliver it to bob. */
    const sealed = (): Buffer[] => {
      const out = [...a.sender.calls.flatMap((c) => c.packets.map((p) => outer(ALICE, p.esp))), ...a.sender.single.map((p) => outer(ALICE, p.esp))];
      a.sender.calls.length = 0;
      a.sender.single.length = 0;
      return out;
    };
    return { a, B, tunB, rx, sealed };
  }

  test('the segments of one receive batch are written as the super-packet the sender read, behind a GSO header', () => {
    const g = groSetup();
    const data = bytes(3 * mss + 10, 3);
    g.a.tun.queued.push({ hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 }, pkt: tcpPacket(ALICE, '198.19.0.2', 0x0200, 9000, TCP_ACK | TCP_PSH, data) });
    g.a.e.drainTun();
    const esp = g.sealed();
    assert.equal(esp.length, 4);
    g.rx.deliver(esp);
    assert.equal(g.tunB.vnetWrites.length, 1, 'one write');
    assert.equal(g.tunB.fromDaemon.length, 0);
    const want = tcpPacket('198.19.0.1', BOB, 0x0200, 9000, TCP_ACK | TCP_PSH, data);
    want.writeUInt16BE(pseudoHeaderSum(want, 12, 16, 4, 6, want.length - 20), 36); // partial checksum, as NEEDS_CSUM wants
    assert.deepEqual(g.tunB.vnetWrites[0].pkt, want, 'byte for byte (addresses mapped)');
    assert.deepEqual(g.tunB.vnetWrites[0].hdr, { flags: VNET_F_NEEDS_CSUM, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 });
    const peer = g.B.tables.peers.get('peer');
    assert.deepEqual([g.B.totals.tunWritten, peer?.stats.rxPackets, g.B.drops.total()], [4, 4, 0]);
  });

  test('the replay top is persisted once per receive batch, before the batch is written; per packet without batching', () => {
    let order: string[] = [];
    const saved: bigint[] = [];
    const store: ReplayStore = {
      load: () => 0n,
      save: (_spi, hi, lo) => {
        order.push('s');
        saved.push((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
      },
    };
    const g = groSetup(store);
    order = g.tunB.order;
    const data = bytes(3 * mss + 10, 5);
    g.a.tun.queued.push({ hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 }, pkt: tcpPacket(ALICE, '198.19.0.2', 0x0300, 1, TCP_ACK, data) });
    g.a.e.drainTun();
    g.rx.deliver(g.sealed());
    assert.deepEqual(order, ['s', 'v'], 'one save for the four segments, before the one write');
    assert.deepEqual(saved, [4n], 'the top after the batch: sequence number 4');
    // Without a batched receiver the engine persists each packet before writing it.
    const tunC = new GroFakeTun();
    const single = new EspLink().endpoint(BOB, (_s, _d, esp) => esp);
    const seq: string[] = tunC.order;
    const perPacket: ReplayStore = { load: () => 0n, save: () => { seq.push('s'); } };
    const C = new Engine(tables(BOB, ALICE, SPI_BA, KEY_BA, SPI_AB, KEY_AB, undefined, perPacket), tunC, single.sender, new BatchedReceiver());
    g.a.tun.queued.push({ hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 }, pkt: tcpPacket(ALICE, '198.19.0.2', 0x0300, 1 + 3 * mss + 10, TCP_ACK, bytes(2 * mss, 6)) });
    g.a.e.drainTun();
    for (const p of g.sealed()) C.handleEsp(p);
    assert.deepEqual(seq, ['s', 'w', 's', 'w'], 'save, write, save, write');
  });

  test('other packets in the batch are written alone, in order; a refused super-packet is a tun-write drop per segment', () => {
    const g = groSetup();
    const data = bytes(2 * mss, 4);
    g.a.tun.queued.push(
      { hdr: { flags: 0, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }, pkt: buildIpPacket({ src: ALICE, dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2, Buffer.from('before')) }) },
      { hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 }, pkt: tcpPacket(ALICE, '198.19.0.2', 7, 1, TCP_ACK, data) },
    );
    g.a.e.drainTun();
    g.rx.deliver(g.sealed());
    assert.deepEqual(g.tunB.order, ['w', 'v'], 'the UDP packet first, then the super-packet');
    assert.ok(g.tunB.fromDaemon[0].includes(Buffer.from('before')));
    g.tunB.failVnet = true;
    g.a.tun.queued.push({ hdr: { flags: 1, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: mss, csumStart: 20, csumOffset: 16 }, pkt: tcpPacket(ALICE, '198.19.0.2', 9, 1 + 2 * mss, TCP_ACK, data) });
    g.a.e.drainTun();
    g.rx.deliver(g.sealed());
    const peer = g.B.tables.peers.get('peer');
    assert.deepEqual([g.B.drops.counts['tun-write'], g.B.totals.tunWritten, peer?.stats.rxPackets], [2, 3, 3], 'two segments lost, counted; rx counters exclude them');
  });

  test('the UDP datagrams of a receive batch go as one GSO_UDP_L4 write; if the kernel refuses it, one write each and no more coalescing', () => {
    const g = groSetup();
    const none = { flags: 0, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
    const send = (n: number, salt: number): void => {
      for (let i = 0; i < n; i++) g.a.tun.queued.push({ hdr: none, pkt: buildIpPacket({ src: ALICE, dst: '198.19.0.2', protocol: 17, identification: salt + i, payload: udpDatagram(40000, 5201, bytes(64, salt + i)) }) });
      g.a.e.drainTun();
      g.rx.deliver(g.sealed());
    };
    assert.equal(g.B.fastPaths.udpCoalescing, 'on', 'case 0: on at start');
    send(4, 1);
    assert.deepEqual(g.tunB.order, ['v'], 'case 1: one write for four datagrams');
    assert.deepEqual(g.tunB.vnetWrites[0].hdr, { flags: VNET_F_NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: 28, gsoSize: 64, csumStart: 20, csumOffset: 6 }, 'case 1: GSO_UDP_L4 header');
    assert.equal(g.tunB.vnetWrites[0].pkt.length, 28 + 4 * 64, 'case 1: all four payloads');
    g.tunB.failVnet = true;
    send(3, 10);
    assert.deepEqual(g.tunB.order, ['v', 'w', 'w', 'w'], 'case 2: refused: the three datagrams written one by one');
    assert.equal(g.B.udpGroRefused, true, 'case 2: noted');
    assert.deepEqual(g.B.fastPaths, { tunOffload: true, tcpCoalescing: true, udpCoalescing: 'refused', sendBatch: false, batchedReads: false }, 'case 2: and reported');
    g.tunB.failVnet = false;
    send(2, 20);
    assert.deepEqual(g.tunB.order, ['v', 'w', 'w', 'w', 'w', 'w'], 'case 3: no UDP coalescing any more');
    const peer = g.B.tables.peers.get('peer');
    assert.deepEqual([g.B.drops.total(), g.B.totals.tunWritten, peer?.stats.rxPackets], [0, 9, 9], 'nothing lost');
    assert.ok(g.tunB.fromDaemon[0].includes(bytes(64, 10)), 'the datagrams themselves');
  });
});
