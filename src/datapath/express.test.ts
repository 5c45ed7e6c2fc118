/**
 * express.test.ts: the TUN addon's express path (src/io/native/express.h) against the engine's
 * own path, over the stand-in TUN and sender (socketpairs: no root, nothing on a network).
 *
 * For every packet, a reference SA with the same key and sequence numbers seals what the engine's
 * TypeScript path would send (completeChecksum, rewriteOutbound, sealEsp), and the bytes the
 * sender actually sent must be the same, whichever path sent them. onTiming counts the engine's
 * own TUN batches, so each case also checks which path took the packet.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { OutboundSa } from '../esp/sa.js';
import type { SeqReserver } from '../esp/sa.js';
import { sealEsp } from '../esp/codec.js';
import { Sadb, parseOuterAddress } from '../esp/sadb.js';
import { loadAddon } from '../io/native-addon.js';
import { NativeEspSender } from '../io/raw-native.js';
import type { RawAddon } from '../io/raw-native.js';
import { openStandInIo } from '../io/stand-in.js';
import type { StandInIo } from '../io/stand-in.js';
import { loadNativeAddon, openStandInTun } from '../io/tun-native.js';
import type { EspReceiver } from '../io/types.js';
import { completeChecksum, VNET_HDR_LEN } from '../io/vnet.js';
import { buildIpPacket, icmpErrorFor, icmpMessage, tcpSegment, udpDatagram } from '../packet/build.js';
import { OffsetMap } from '../steer/fake-offset.js';
import { rewriteOutbound } from '../steer/rewrite.js';
import { Engine, HEADROOM, newPeerRuntime } from './engine.js';
import type { EngineTables } from './engine.js';
import { PrefixTable } from './prefix-table.js';
import { Tracer } from './trace.js';

const raw = loadAddon<RawAddon>('espgate_raw').addon;
const skip = raw === undefined || loadNativeAddon() === undefined ? 'native addons not built (npm run build:native)' : false;

const KEY = Uint8Array.from({ length: 20 }, (_, i) => 0x31 + i);
const SPI = 0x1002;
const A4 = '198.18.0.1';
const B4 = '198.18.0.2';
const B4_FAKE = '198.19.0.2';
const A6 = '2001:db8:0:1::1';
const B6 = '2001:db8:0:1::2';
const B6_FAKE = '2001:db8:0:ff01::2';

const idleReceiver: EspReceiver = { start: () => {}, close: () => {} };

function tablesWith(sa: OutboundSa): EngineTables {
  const offsets = new OffsetMap([{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }, { real: '2001:db8:0:1::/64', fake: '2001:db8:0:ff01::/64' }]);
  const peer = newPeerRuntime('bob', B4, 4);
  peer.protect4.insert(parseOuterAddress(B4), 32, true);
  peer.protect6.insert(parseOuterAddress(B6), 128, true);
  const peerByDst4 = new PrefixTable<typeof peer>(4);
  const peerByDst6 = new PrefixTable<typeof peer>(6);
  peerByDst4.insert(parseOuterAddress(B4), 32, peer);
  peerByDst6.insert(parseOuterAddress(B6), 128, peer);
  const local4 = new PrefixTable<true>(4);
  const local6 = new PrefixTable<true>(6);
  local4.insert(parseOuterAddress(A4), 32, true);
  local6.insert(parseOuterAddress(A6), 128, true);
  const sadb = new Sadb();
  sadb.setOutbound('bob', sa, undefined);
  return { offsets, peerByDst4, peerByDst6, local4, local6, sadb, peers: new Map([['bob', peer]]) };
}

/** withIcmpChecksum fills an ICMP (v4) checksum buildIpPacket left to us. */
function icmpEcho(src: string, dst: string, type: number, seq: number): Buffer {
  return buildIpPacket({ src, dst, protocol: src.includes(':') ? 58 : 1, payload: icmpMessage(type, 0, 0x4242_0000 + seq, Buffer.from(`ping ${seq}`)) });
}

/** Rig is one engine over stand-ins, with a reference SA sealing what the engine's path would send. */
interface Rig {
  readonly io: StandInIo;
  readonly engine: Engine;
  readonly sa: OutboundSa;
  readonly ref: OutboundSa;
  readonly tables: EngineTables;
  jsBatches: number;
  close(): void;
}

function rig(vnet: boolean, sa: OutboundSa, ref: OutboundSa): Rig {
  const tun = openStandInTun('xp', vnet, vnet);
  const sink = openStandInTun('xp-esp', false, false);
  assert.ok(tun !== undefined && sink !== undefined && raw !== undefined);
  const io = openStandInIo({ tun, sender: new NativeEspSender(raw, sink.fd, sink.fd) });
  assert.ok(io !== undefined);
  const tables = tablesWith(sa);
  const engine = new Engine(tables, io.tun, io.sender, idleReceiver, { express: true });
  const r: Rig = {
    io, engine, sa, ref, tables, jsBatches: 0,
    close() {
      engine.stop();
      io.close();
      tun.close();
      sink.close();
    },
  };
  engine.onTiming = (dir) => { if (dir === 'out') r.jsBatches++; };
  engine.start();
  return r;
}

/** turn lets the event loop poll the stand-in TUN (the express path runs on its readable event). */
async function turn(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 5));
}

/**
 * sendOne feeds pkt (behind hdr with vnet) and returns [bytes sent, bytes the reference seals,
 * whether the engine's own path ran].
 */
async function sendOne(r: Rig, vnet: boolean, pkt: Buffer, hdr?: Uint8Array): Promise<[Buffer, Buffer, boolean]> {
  const before = r.jsBatches;
  const h = hdr ?? new Uint8Array(VNET_HDR_LEN);
  assert.equal(r.io.feedTun(vnet ? h : undefined, pkt, 0, pkt.length), true);
  const got = Buffer.alloc(2048);
  let n = -1;
  // Bounded: the loop polls the TUN within a few ms; a loaded machine gets up to 2 s.
  for (let i = 0; i < 400 && n < 0; i++) {
    await turn();
    n = r.io.takeSent(got);
  }
  assert.ok(n > 0, 'something was sent');
  const want = Buffer.alloc(2048);
  pkt.copy(want, HEADROOM);
  if (vnet && (h[0] & 1) !== 0) {
    const start = h[6] | (h[7] << 8);
    const off = h[8] | (h[9] << 8);
    assert.ok(completeChecksum(want, HEADROOM, pkt.length, start, off));
  }
  assert.equal(rewriteOutbound(want, HEADROOM, pkt.length, r.tables.offsets), 'ok');
  const m = sealEsp(r.ref, want, HEADROOM, pkt.length, want, 0);
  assert.equal(typeof m, 'number');
  return [got.subarray(0, n), want.subarray(0, m as number), r.jsBatches !== before];
}

test('express path: the same ESP bytes as the engine, for every packet kind it takes and those it leaves', { skip }, async () => {
  for (const vnet of [true, false]) {
    const sa = new OutboundSa({ spi: SPI, algorithm: 'aes128gcm16', keyMaterial: KEY });
    const ref = new OutboundSa({ spi: SPI, algorithm: 'aes128gcm16', keyMaterial: KEY });
    const r = rig(vnet, sa, ref);
    try {
      const tcp = buildIpPacket({ src: A4, dst: B4_FAKE, protocol: 6, payload: tcpSegment({ srcPort: 40000, dstPort: 5201, seq: 7, flags: 0x10, payload: Buffer.from('ack') }) });
      // A partial checksum as a TSO-capable stack hands it over (field: anything; completed first).
      const partial = Buffer.from(tcp);
      partial.writeUInt16BE(0x1234, 20 + 16);
      const needsCsum = Uint8Array.from([1, 0, 0, 0, 0, 0, 20, 0, 16, 0]);
      const udpZero = buildIpPacket({ src: A4, dst: B4_FAKE, protocol: 17, udpZeroChecksum: true, payload: udpDatagram(40000, 53, Buffer.from('zero')) });
      const cases: [string, Buffer, Uint8Array | undefined, boolean][] = [
        // [name, packet, vnet header, expected to go through the engine's own path]
        ['first echo of the flow: the engine learns it', icmpEcho(A4, B4_FAKE, 8, 1), undefined, true],
        ['echo', icmpEcho(A4, B4_FAKE, 8, 2), undefined, false],
        ['UDP', buildIpPacket({ src: A4, dst: B4_FAKE, protocol: 17, payload: udpDatagram(40000, 53, Buffer.from('query')) }), undefined, false],
        ['UDP without checksum', udpZero, undefined, false],
        ['TCP', tcp, undefined, false],
        ...(vnet ? [['TCP with a partial checksum', partial, needsCsum, false] as [string, Buffer, Uint8Array, boolean]] : []),
        ['an ICMP error (quotes addresses): the engine', icmpErrorFor(buildIpPacket({ src: B4_FAKE, dst: A4, protocol: 17, payload: udpDatagram(53, 40000, Buffer.from('x')) }), { from: A4, type: 3, code: 3 }), undefined, true],
        ['odd length echo', icmpEcho(A4, B4_FAKE, 8, 333), undefined, false],
        ['first IPv6 echo: learned', icmpEcho(A6, B6_FAKE, 128, 1), undefined, true],
        ['IPv6 echo', icmpEcho(A6, B6_FAKE, 128, 2), undefined, false],
        ['IPv6 UDP', buildIpPacket({ src: A6, dst: B6_FAKE, protocol: 17, payload: udpDatagram(40000, 53, Buffer.from('v6 query')) }), undefined, false],
      ];
      for (const [name, pkt, hdr, viaEngine] of cases) {
        if (hdr !== undefined && !vnet) continue;
        const [got, want, ranEngine] = await sendOne(r, vnet, pkt, hdr);
        assert.deepEqual(got, want, `vnet ${vnet}, ${name}: bytes`);
        assert.equal(ranEngine, viaEngine, `vnet ${vnet}, ${name}: ${viaEngine ? "the engine's path" : 'the express path'}`);
      }
      assert.equal(r.io.takeSent(Buffer.alloc(64)), -1, `vnet ${vnet}: one ESP packet per packet`);
      const sent = cases.filter((c) => c[2] === undefined || vnet).length;
      r.engine.syncExpress();
      assert.equal(r.engine.totals.tunRead, sent, `vnet ${vnet}: tunRead`);
      assert.equal(r.engine.totals.espSent, sent, `vnet ${vnet}: espSent`);
      const peer = r.tables.peers.get('bob');
      assert.equal(peer?.stats.txPackets, sent, `vnet ${vnet}: peer tx`);
      assert.equal(sa.stats.packets, sent, `vnet ${vnet}: SA packets`);
      assert.equal(sa.stats.bytes, ref.stats.bytes, `vnet ${vnet}: SA bytes`);
      assert.equal(sa.seqLo, sent, `vnet ${vnet}: the SA's sequence number`);
      assert.ok(peer !== undefined && peer.stats.lastTxMs > 0 && sa.stats.lastUsedMs > 0, `vnet ${vnet}: last use stamped`);
      assert.deepEqual(r.engine.express, { on: true, flows: 2 }, `vnet ${vnet}: two flows (IPv4, IPv6)`);
      // New tables, or a trace: every flow forgotten, the next packet goes through the engine.
      r.engine.setTables(r.tables);
      assert.equal(r.engine.express.flows, 0, `vnet ${vnet}: setTables forgets flows`);
      const [g1, w1, e1] = await sendOne(r, vnet, icmpEcho(A4, B4_FAKE, 8, 900));
      assert.deepEqual(g1, w1);
      assert.equal(e1, true, `vnet ${vnet}: relearned by the engine`);
      r.engine.trace = new Tracer({}, 1, 60);
      assert.equal(r.engine.express.flows, 0, `vnet ${vnet}: a trace forgets flows`);
    } finally {
      r.close();
    }
  }
});

test('express path: budgets leave reservations and lifetime limits to the SA', { skip }, async () => {
  const marks: number[] = [];
  const reserver: SeqReserver = { reserve: (_spi, upTo) => { marks.push(upTo); }, load: () => 0 };
  const sa = new OutboundSa({ spi: SPI, algorithm: 'aes128gcm16', keyMaterial: KEY, reserver, reserveBlock: 3, lifetime: { softPackets: 7, hardPackets: 11 } });
  const ref = new OutboundSa({ spi: SPI, algorithm: 'aes128gcm16', keyMaterial: KEY });
  const r = rig(true, sa, ref);
  try {
    const paths: boolean[] = [];
    for (let i = 1; i <= 12; i++) {
      const before = r.io.takeSent(Buffer.alloc(8));
      assert.equal(before, -1);
      if (i <= 10) {
        const [got, want, ranEngine] = await sendOne(r, true, icmpEcho(A4, B4_FAKE, 8, i));
        assert.deepEqual(got, want, `packet ${i}: bytes`);
        paths.push(ranEngine);
      } else {
        // Packet 11 reaches the hard limit (sealed by the engine), 12 is refused: nothing sent.
        const pkt = icmpEcho(A4, B4_FAKE, 8, i);
        assert.equal(r.io.feedTun(new Uint8Array(VNET_HDR_LEN), pkt, 0, pkt.length), true);
        await turn();
        const n = r.io.takeSent(Buffer.alloc(2048));
        assert.equal(n > 0, i === 11, `packet ${i}: ${i === 11 ? 'sent' : 'refused'}`);
      }
      r.engine.syncExpress();
      assert.equal(sa.softExpired, i >= 7, `packet ${i}: soft limit flag`);
      assert.equal(sa.hardExpired, i >= 11, `packet ${i}: hard limit flag`);
    }
    // Reservations in blocks of 3 (each before the first number above the mark), all by the
    // engine; the express path took only packets inside a reserved block and short of the limits.
    assert.deepEqual(marks, [3, 6, 9, 12]);
    assert.deepEqual(paths, [true, false, false, true, false, false, true, false, false, true],
      'engine at 1 (learn), 4 and 10 (reserve), 7 (soft limit and reserve)');
    assert.equal((r.engine.drops.counts as Record<string, number>)['no-sa'], 1, 'packet 12: no-sa');
  } finally {
    r.close();
  }
});
