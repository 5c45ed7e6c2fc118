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
import type { DropReason } from '../drops.js';
import { InboundSa, OutboundSa } from '../esp/sa.js';
import type { UdpEncap } from '../esp/sa.js';
import { Sadb, parseOuterAddress } from '../esp/sadb.js';
import { buildIpPacket, udpDatagram } from '../packet/build.js';
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
function tables(me: string, peer: string, outSpi: number, outKey: Uint8Array, inSpi: number, inKey: Uint8Array, encap: UdpEncap | undefined): EngineTables {
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
  sadb.addInbound(new InboundSa({ spi: inSpi, algorithm: 'aes128gcm16', keyMaterial: inKey, peer: 'peer', outerSource: v4(peer) }));
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
