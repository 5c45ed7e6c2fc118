/**
 * vnet.test.ts: the virtio_net_hdr codec, checksum completion and the TSO split, against
 * packets built independently by packet/build.ts (every checksum computed from scratch): each
 * segment gsoSplit makes must equal, byte for byte, the packet built directly with that
 * segment's sequence number, flags, IPv4 id and payload. No root, no TUN.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { buildIpPacket, tcpSegment, udpDatagram } from '../packet/build.js';
import { pseudoHeaderSum } from '../packet/checksum.js';
import {
  GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_F_NEEDS_CSUM, VNET_HDR_LEN,
  GroBatch, completeChecksum, gsoSegments, gsoSplit, newVnetHdr, readVnetHdr, writeVnetHdr,
} from './vnet.js';
import type { VnetHdr } from './vnet.js';

const A4 = '198.18.0.1';
const B4 = '198.19.0.2';
const A6 = '2001:db8::1';
const B6 = '2001:db8:1::2';
const FIN = 0x01;
const PSH = 0x08;
const ACK = 0x10;
const CWR = 0x80;

/** tcp builds a TCP header (+ `options`, a multiple of 4 bytes) and payload, checksum zero. */
function tcp(seq: number, flags: number, payload: Uint8Array, options: Uint8Array = new Uint8Array(0)): Buffer {
  const b = tcpSegment({ srcPort: 40000, dstPort: 5201, seq, ack: 0x01020304, flags, window: 502, payload: Buffer.concat([options, payload]) });
  b[12] = ((20 + options.length) / 4) << 4;
  return b;
}

function packet(v: 4 | 6, id: number, seg: Uint8Array): Buffer {
  return buildIpPacket({ src: v === 4 ? A4 : A6, dst: v === 4 ? B4 : B6, protocol: 6, payload: seg, identification: id, dontFragment: true });
}

/** pattern is `n` bytes that differ from segment to segment (a misplaced cut shows). */
function pattern(n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
}

/** superPacket is what the kernel hands a TSO TUN: one header, all the data, a partial TCP checksum. */
function superPacket(v: 4 | 6, id: number, seq: number, flags: number, data: Buffer, options?: Uint8Array): Buffer {
  const p = packet(v, id, tcp(seq, flags, data, options));
  const l4 = v === 4 ? 20 : 40;
  // The field holds the pseudo-header sum only (VNET_F_NEEDS_CSUM); split must not trust it.
  const ph = pseudoHeaderSum(p, v === 4 ? 12 : 8, v === 4 ? 16 : 24, v === 4 ? 4 : 16, 6, p.length - l4);
  p.writeUInt16BE(ph, l4 + 16);
  return p;
}

function hdr(v: 4 | 6, mss: number, type = v === 4 ? GSO_TCPV4 : GSO_TCPV6): VnetHdr {
  return { flags: VNET_F_NEEDS_CSUM, gsoType: type, hdrLen: 0, gsoSize: mss, csumStart: v === 4 ? 20 : 40, csumOffset: 16 };
}

function slots(n: number, size = 2048): Buffer[] {
  return Array.from({ length: n }, () => Buffer.alloc(size, 0xcc));
}

describe('vnet: virtio_net_hdr', () => {
  test('read and write are little-endian and inverse', () => {
    const h: VnetHdr = { flags: 1, gsoType: GSO_TCPV6 | GSO_ECN, hdrLen: 0x0142, gsoSize: 1388, csumStart: 40, csumOffset: 16 };
    const b = Buffer.alloc(VNET_HDR_LEN + 2);
    writeVnetHdr(h, b, 2);
    assert.equal(b.subarray(2).toString('hex'), '01844201' + '6c05' + '2800' + '1000');
    assert.deepEqual(readVnetHdr(b, 2, newVnetHdr()), h);
  });
});

describe('vnet: completeChecksum', () => {
  // [case, family, protocol, transport]
  const cases: [4 | 6, number, Buffer][] = [
    /* 1 */ [4, 6, tcp(1000, ACK | PSH, pattern(1001))],
    /* 2 */ [6, 6, tcp(1000, ACK, pattern(64))],
    /* 3 */ [4, 17, udpDatagram(5000, 53, pattern(77))],
    /* 4 */ [6, 17, udpDatagram(5000, 53, pattern(1300))],
  ];
  for (const [i, [v, proto, l4]] of cases.entries()) {
    test(`case ${i + 1}: IPv${v} ${proto === 6 ? 'TCP' : 'UDP'} with only the pseudo-header sum gets its full checksum`, () => {
      const good = buildIpPacket({ src: v === 4 ? A4 : A6, dst: v === 4 ? B4 : B6, protocol: proto, payload: l4 });
      const start = v === 4 ? 20 : 40;
      const csumOff = proto === 6 ? 16 : 6;
      const partial = Buffer.from(good);
      partial.writeUInt16BE(pseudoHeaderSum(good, v === 4 ? 12 : 8, v === 4 ? 16 : 24, v === 4 ? 4 : 16, proto, good.length - start), start + csumOff);
      const inBuf = Buffer.concat([Buffer.alloc(3, 0xee), partial]);
      assert.equal(completeChecksum(inBuf, 3, partial.length, start, csumOff), true);
      assert.deepEqual(inBuf.subarray(3), good);
    });
  }
  test('case 5: offsets outside the packet are refused, nothing written', () => {
    const p = buildIpPacket({ src: A4, dst: B4, protocol: 17, payload: udpDatagram(1, 2, pattern(4)) });
    const copy = Buffer.from(p);
    assert.equal(completeChecksum(p, 0, p.length, p.length - 1, 6), false);
    assert.equal(completeChecksum(p, 0, p.length, 20, 7), false);
    assert.deepEqual(p, copy);
  });
});

describe('vnet: gsoSplit', () => {
  test('IPv4: segments equal directly built packets (seq, id, lengths, flags, checksums)', () => {
    const mss = 1000;
    const data = pattern(3 * mss + 123);
    const sp = superPacket(4, 0x4242, 7000, ACK | PSH | FIN | CWR, data);
    const outs = slots(8);
    const sizes = new Int32Array(8);
    const n = gsoSplit(hdr(4, mss), Buffer.concat([Buffer.alloc(5), sp]), 5, sp.length, outs, 16, sizes, 2);
    assert.equal(n, 4);
    assert.equal(gsoSegments(sp.length, 40, mss), 4);
    const flags = [ACK | CWR, ACK, ACK, ACK | PSH | FIN];
    for (let k = 0; k < 4; k++) {
      const want = packet(4, 0x4242 + k, tcp(7000 + k * mss, flags[k], data.subarray(k * mss, Math.min(data.length, (k + 1) * mss))));
      assert.equal(sizes[2 + k], want.length, `segment ${k}: length`);
      assert.deepEqual(outs[2 + k].subarray(16, 16 + want.length), want, `segment ${k}: bytes`);
      assert.equal(outs[2 + k][15], 0xcc, `segment ${k}: nothing written before outOff`);
    }
    assert.equal(outs[0][16], 0xcc, 'slots before `first` untouched');
  });

  test('IPv6 with TCP options (timestamps), an exact multiple of the MSS, ECN bit in gso_type', () => {
    const mss = 1208;
    const options = Buffer.from('0101080a0000abcd00001234', 'hex');
    const data = pattern(5 * mss);
    const sp = superPacket(6, 0, 0x10, ACK | PSH, data, options);
    const outs = slots(5);
    const sizes = new Int32Array(5);
    const n = gsoSplit(hdr(6, mss, GSO_TCPV6 | GSO_ECN), sp, 0, sp.length, outs, 0, sizes, 0);
    assert.equal(n, 5);
    for (let k = 0; k < 5; k++) {
      const want = packet(6, 0, tcp(0x10 + k * mss, k === 4 ? ACK | PSH : ACK, data.subarray(k * mss, (k + 1) * mss), options));
      assert.deepEqual(outs[k].subarray(0, sizes[k]), want, `segment ${k}`);
    }
  });

  test('from/max make a range of the segments, the same bytes as a whole split; 0 once past the end', () => {
    const mss = 300;
    const sp = superPacket(4, 10, 1, ACK | PSH | CWR, pattern(7 * mss + 5));
    const whole = slots(8);
    const wholeSizes = new Int32Array(8);
    assert.equal(gsoSplit(hdr(4, mss), sp, 0, sp.length, whole, 0, wholeSizes, 0), 8);
    const part = slots(3);
    const sizes = new Int32Array(3);
    const got: Buffer[] = [];
    for (let from = 0, round = 0; round < 10; round++) {
      const k = gsoSplit(hdr(4, mss), sp, 0, sp.length, part, 0, sizes, 0, from, 3);
      assert.equal(typeof k, 'number');
      if (k === 0) break;
      for (let j = 0; j < (k as number); j++) got.push(Buffer.from(part[j].subarray(0, sizes[j])));
      from += k as number;
    }
    assert.deepEqual(got, whole.map((o, k) => Buffer.from(o.subarray(0, wholeSizes[k]))));
  });

  test('sequence numbers and IPv4 ids wrap', () => {
    const mss = 100;
    const data = pattern(250);
    const sp = superPacket(4, 0xffff, 0xffffff9c, ACK, data);
    const outs = slots(3);
    const sizes = new Int32Array(3);
    assert.equal(gsoSplit(hdr(4, mss), sp, 0, sp.length, outs, 0, sizes, 0), 3);
    assert.deepEqual([0, 1, 2].map((k) => outs[k].readUInt32BE(24)), [0xffffff9c, 0, 100]);
    assert.deepEqual([0, 1, 2].map((k) => outs[k].readUInt16BE(4)), [0xffff, 0, 1]);
    for (let k = 0; k < 3; k++) {
      const want = packet(4, (0xffff + k) & 0xffff, tcp((0xffffff9c + k * mss) >>> 0, ACK, data.subarray(k * mss, Math.min(250, (k + 1) * mss))));
      assert.deepEqual(outs[k].subarray(0, sizes[k]), want, `segment ${k}`);
    }
  });

  test('refusals: wrong type, family, headers, lengths, room', () => {
    const sp4 = superPacket(4, 1, 1, ACK, pattern(3000));
    const sp6 = superPacket(6, 1, 1, ACK, pattern(3000));
    const outs = slots(4);
    const sizes = new Int32Array(4);
    const badLen = Buffer.from(sp4);
    badLen.writeUInt16BE(sp4.length - 1, 2);
    const badOff = Buffer.from(sp4);
    badOff[32] = 0x40; // TCP data offset 4 words: below the minimum
    // [case, header, packet, expected]
    const cases: [VnetHdr, Buffer, string | number][] = [
      /* 1 */ [hdr(4, 1000, GSO_UDP_L4), sp4, 'gso-type'],
      /* 2 */ [hdr(4, 1000, GSO_NONE), sp4, 'gso-type'],
      /* 3 */ [hdr(4, 1000, GSO_TCPV6), sp4, 'gso-headers'],
      /* 4 */ [{ ...hdr(4, 1000), csumStart: 24 }, sp4, 'gso-headers'],
      /* 5 */ [hdr(4, 1000), badLen, 'gso-length'],
      /* 6 */ [hdr(4, 1000), badOff, 'gso-headers'],
      /* 7 */ [hdr(4, 0), sp4, 'gso-length'],
      /* 8 */ [hdr(4, 500), sp4, 'gso-room'], // 6 segments, 4 slots
      /* 9 */ [hdr(6, 1000), sp6.subarray(0, 1000), 'gso-length'], // a read cut short
      /* 10 */ [hdr(4, 1000), sp4, 3],
    ];
    for (const [i, [h, p, want]] of cases.entries()) {
      assert.equal(gsoSplit(h, p, 0, p.length, outs, 0, sizes, 0), want, `case ${i + 1}`);
    }
    assert.equal(gsoSplit(hdr(4, 1000), sp4, 0, sp4.length, slots(4, 500), 0, sizes, 0), 'gso-room', 'case 11: slots too small');
  });
});

describe('vnet: GroBatch (coalescing on TUN write)', () => {
  /** segmentsOf splits a super-packet as the sender's TUN read did (gsoSplit is tested above). */
  function segmentsOf(v: 4 | 6, sp: Buffer, mss: number): Buffer[] {
    const outs = slots(80, 1600);
    const sizes = new Int32Array(80);
    const n = gsoSplit(hdr(v, mss), sp, 0, sp.length, outs, 0, sizes, 0);
    assert.equal(typeof n, 'number');
    return outs.slice(0, n as number).map((o, k) => Buffer.from(o.subarray(0, sizes[k])));
  }

  for (const v of [4, 6] as const) {
    test(`IPv${v}: the segments of a super-packet coalesce back into it (headers, partial checksum, virtio_net_hdr)`, () => {
      const mss = 1200;
      const sp = superPacket(v, 0x77, 123456, ACK | PSH, pattern(7 * mss + 99), Buffer.from('0101080a0000abcd00001234', 'hex'));
      const segs = segmentsOf(v, sp, mss);
      assert.equal(segs.length, 8);
      const g = new GroBatch(64);
      for (const s of segs) assert.equal(g.add(s, 0, s.length), true);
      assert.deepEqual([g.packets, g.items, g.itemCount(0)], [8, 1, 8]);
      const out = Buffer.alloc(70_000);
      const h = newVnetHdr();
      const n = g.build(0, out, 3, h);
      assert.equal(n, sp.length);
      assert.equal(g.itemBytes(0), sp.length);
      assert.deepEqual(out.subarray(3, 3 + n), sp, 'the super-packet, byte for byte');
      assert.deepEqual(h, { flags: VNET_F_NEEDS_CSUM, gsoType: v === 4 ? GSO_TCPV4 : GSO_TCPV6, hdrLen: (v === 4 ? 20 : 40) + 32, gsoSize: mss, csumStart: v === 4 ? 20 : 40, csumOffset: 16 });
    });
  }

  test('what must not coalesce stays apart, and order within a flow never changes', () => {
    const mss = 500;
    const a = segmentsOf(4, superPacket(4, 1, 1000, ACK, pattern(3 * mss)), mss); // flow A: 3 segments
    const b = segmentsOf(4, superPacket(4, 9, 9000, ACK, pattern(2 * mss)), mss).map((s) => {
      s.writeUInt16BE(40001, 20); // flow B: another source port (checksums do not matter here)
      return s;
    });
    const udp = buildIpPacket({ src: A4, dst: B4, protocol: 17, payload: udpDatagram(1, 2, pattern(10)) });
    const pureAck = packet(4, 5, tcp(2500, ACK, new Uint8Array(0)));
    const gap = segmentsOf(4, superPacket(4, 20, 1000 + 3 * mss + 1, ACK, pattern(mss)), mss)[0]; // one byte missing before it
    const otherAck = Buffer.from(segmentsOf(4, superPacket(4, 30, 1000 + 4 * mss + 1, ACK, pattern(mss)), mss)[0]);
    otherAck.writeUInt32BE(0x01020305, 28); // another ack number
    const fin = segmentsOf(4, superPacket(4, 40, 1000 + 5 * mss + 1, ACK | FIN, pattern(mss)), mss)[0];
    // [packet, the item it must end in]
    const seq: [Buffer, number][] = [
      [a[0], 0], [b[0], 1], [a[1], 0], [udp, 2], [b[1], 1], [a[2], 0], [pureAck, 3], [gap, 4], [otherAck, 5], [fin, 6],
    ];
    const g = new GroBatch(64);
    for (const [p] of seq) g.add(p, 0, p.length);
    assert.equal(g.items, 7);
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((k) => g.itemCount(k)), [3, 2, 1, 1, 1, 1, 1]);
    for (const [i, [p, item]] of seq.entries()) {
      if (g.itemCount(item) === 1) assert.equal(g.packetBuf(g.itemPacket(item)), p, `packet ${i}: alone in item ${item}`);
    }
    assert.equal(g.build(2, Buffer.alloc(100), 0, newVnetHdr()), -1, 'a single packet is not built');
  });

  test('PSH and a short segment end an item; the 64 KiB limit starts a new one; full batches refuse', () => {
    const mss = 1000;
    const withPsh = segmentsOf(4, superPacket(4, 1, 1, ACK | PSH, pattern(2 * mss)), mss); // [ACK, ACK|PSH]
    const after = segmentsOf(4, superPacket(4, 3, 1 + 2 * mss, ACK, pattern(mss + 10)), mss); // [ACK 1000, ACK 10]
    const more = segmentsOf(4, superPacket(4, 5, 1 + 3 * mss + 10, ACK, pattern(mss)), mss);
    const g = new GroBatch(8);
    for (const p of [...withPsh, ...after, ...more]) g.add(p, 0, p.length);
    assert.deepEqual([g.items, g.itemCount(0), g.itemCount(1), g.itemCount(2)], [3, 2, 2, 1]);
    const big = [...segmentsOf(4, superPacket(4, 1, 1, ACK, pattern(60 * 1000)), 1000), ...segmentsOf(4, superPacket(4, 61, 60_001, ACK, pattern(10 * 1000)), 1000)];
    const g2 = new GroBatch(80);
    for (const p of big) g2.add(p, 0, p.length);
    assert.deepEqual([g2.items, g2.itemCount(0), g2.itemBytes(0)], [2, 65, 40 + 65 * 1000], 'the first item stops below 64 KiB');
    g.reset();
    for (let i = 0; i < 8; i++) assert.equal(g.add(more[0], 0, more[0].length), true);
    assert.equal(g.full, true);
    assert.equal(g.add(more[0], 0, more[0].length), false);
  });
});

describe('vnet: GroBatch UDP (GSO_UDP_L4 on TUN write)', () => {
  /** datagram builds one UDP datagram from scratch (every checksum computed by packet/build.ts). */
  function datagram(v: 4 | 6, id: number, payload: Uint8Array, srcPort = 40000, ttl = 64): Buffer {
    return buildIpPacket({ src: v === 4 ? A4 : A6, dst: v === 4 ? B4 : B6, protocol: 17, payload: udpDatagram(srcPort, 5201, payload), identification: id, dontFragment: true, ttl });
  }

  /**
   * kernelSplit does what the receiving kernel does with the super-packet (__udp_gso_segment),
   * independently of GroBatch: cut the payload every gsoSize bytes and build each datagram
   * from the super-packet's addresses, ports and TTL, IPv4 ids counting up from its id.
   */
  function kernelSplit(v: 4 | 6, sp: Buffer, h: VnetHdr): Buffer[] {
    const l4 = v === 4 ? 20 : 40;
    const id = v === 4 ? sp.readUInt16BE(4) : 0;
    const payload = sp.subarray(h.hdrLen);
    const out: Buffer[] = [];
    for (let at = 0, i = 0; at < payload.length; at += h.gsoSize, i++) {
      out.push(datagram(v, (id + i) & 0xffff, payload.subarray(at, Math.min(payload.length, at + h.gsoSize)), sp.readUInt16BE(l4), v === 4 ? sp[8] : sp[7]));
    }
    return out;
  }

  for (const v of [4, 6] as const) {
    test(`IPv${v}: a run of datagrams becomes one GSO_UDP_L4 super-packet that splits back into them`, () => {
      const l4 = v === 4 ? 20 : 40;
      const sizes = [64, 64, 64, 64, 30]; // the last shorter one ends the item
      const dgrams = sizes.map((n, i) => datagram(v, 0x100 + i, pattern(n + i).subarray(i)));
      const g = new GroBatch(64);
      for (const d of dgrams) assert.equal(g.add(d, 0, d.length), true);
      assert.deepEqual([g.packets, g.items, g.itemCount(0), g.itemUdp(0)], [5, 1, 5, true]);
      const out = Buffer.alloc(4096);
      const h = newVnetHdr();
      const n = g.build(0, out, 5, h);
      const total = l4 + 8 + 4 * 64 + 30;
      assert.equal(n, total);
      assert.equal(g.itemBytes(0), total);
      const sp = Buffer.from(out.subarray(5, 5 + n));
      assert.deepEqual(h, { flags: VNET_F_NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: l4 + 8, gsoSize: 64, csumStart: l4, csumOffset: 6 });
      assert.equal(sp.readUInt16BE(l4 + 4), total - l4, 'UDP length: the whole run');
      const ph = pseudoHeaderSum(sp, v === 4 ? 12 : 8, v === 4 ? 16 : 24, v === 4 ? 4 : 16, 17, total - l4);
      assert.equal(sp.readUInt16BE(l4 + 6), ph, 'checksum field: the pseudo-header sum (NEEDS_CSUM)');
      assert.deepEqual(kernelSplit(v, sp, h), dgrams, 'split as the kernel does: the same datagrams, byte for byte');
    });
  }

  test('flows, sizes, fields and limits: what must not coalesce stays apart, order within a flow kept', () => {
    const p = pattern(100);
    const a = [0, 1, 2].map((i) => datagram(4, i, p));
    const b = [0, 1].map((i) => datagram(4, 10 + i, p, 40001)); // another source port
    const bigger = datagram(4, 3, pattern(101)); // longer than the run's segment size: a new item
    const ttl = datagram(4, 4, p, 40000, 9);
    const frag = datagram(4, 5, p);
    frag.writeUInt16BE(0x2000, 6); // MF set (checksums do not matter here)
    const empty = datagram(4, 6, new Uint8Array(0));
    const seq: Buffer[] = [a[0], b[0], a[1], b[1], a[2], bigger, ttl, frag, empty];
    const g = new GroBatch(64);
    for (const d of seq) g.add(d, 0, d.length);
    assert.deepEqual([g.items, ...Array.from({ length: g.items }, (_, k) => g.itemCount(k))], [6, 3, 2, 1, 1, 1, 1]);
    assert.equal(g.packetBuf(g.nextPacket(g.itemPacket(0))), a[1], 'flow A in order');
    const g2 = new GroBatch(80);
    const many = Array.from({ length: 70 }, (_, i) => datagram(6, 0, pattern(20 + (i & 1)).subarray(i & 1)));
    for (const d of many) g2.add(d, 0, d.length);
    assert.deepEqual([g2.items, g2.itemCount(0), g2.itemCount(1)], [2, 64, 6], 'at most 64 datagrams per super-packet');
    const off = new GroBatch(64, false);
    for (const d of a) off.add(d, 0, d.length);
    assert.deepEqual([off.items, off.itemUdp(0)], [3, false], 'udp off: every datagram alone');
  });
});
