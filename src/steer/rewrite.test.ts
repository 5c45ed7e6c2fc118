import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpAddress } from '../packet/address.js';
import {
  buildIpPacket, fragmentIpv4, fragmentIpv6, icmpErrorFor, icmpMessage, tcpSegment, udpDatagram,
} from '../packet/build.js';
import { readU16, writeU16 } from '../packet/bytes.js';
import { findIpv6Transport, Ipv6Transport } from '../packet/ipv6.js';
import {
  ICMP_CODE_FRAG_NEEDED, ICMP_CODE_PORT_UNREACH, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
  ICMP_TIME_EXCEEDED, ICMPV6_CODE_PORT_UNREACH, ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
  ICMPV6_PACKET_TOO_BIG, ICMPV6_TIME_EXCEEDED, IPV6_EXT_DEST_OPTS, IPV6_EXT_HOP_BY_HOP, IPV6_EXT_ROUTING, PROTO_ICMP,
  PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
} from '../packet/offsets.js';
import { embedAt, Rng, sum16 } from '../packet/testing.js';
import { OffsetMap } from './fake-offset.js';
import { rewriteInbound, rewriteOutbound } from './rewrite.js';
import type { RewriteResult } from './rewrite.js';

// Host A protects its traffic to peer B (DESIGN-NOTES): both in 198.18.0.0/24, B's fake twin in
// 198.19.0.0/24; R is a router inside the peer's real prefix. The same for IPv6.
const MAP = new OffsetMap([
  { real: '198.18.0.0/24', fake: '198.19.0.0/24' },
  { real: '2001:db8:1::/48', fake: '2001:db8:f001::/48' },
]);
const A = '198.18.0.1';
const B = '198.18.0.2';
const BF = '198.19.0.2';
const R = '198.18.0.254';
const A6 = '2001:db8:1::1';
const B6 = '2001:db8:1::2';
const B6F = '2001:db8:f001::2';
const R6 = '2001:db8:1::fe';

type Dir = 'in' | 'out';
/** M maps an address that the rewrite must change; identity for "before", the map for "expected". */
type M = (addr: string) => string;
const same: M = (a) => a;
const toFake: M = (a) => MAP.mapToFake(a);
const toReal: M = (a) => MAP.unmapFromFake(a);

function rewrite(dir: Dir, pkt: Uint8Array, off: number, len: number): RewriteResult {
  return dir === 'in' ? rewriteInbound(pkt, off, len, MAP) : rewriteOutbound(pkt, off, len, MAP);
}

// ------------------------------------------------------------------ independent verification


function pseudo(p: Uint8Array, v4: boolean, proto: number, len: number): Uint8Array {
  const addrs = v4 ? p.subarray(12, 20) : p.subarray(8, 40);
  const tail = v4 ? [0, proto, len >> 8, len & 0xff] : [len >>> 24, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff, 0, 0, 0, proto];
  return Buffer.concat([addrs, Uint8Array.from(tail)]);
}

function isError(proto: number, type: number): boolean {
  return proto === PROTO_ICMP ? [3, 4, 5, 11, 12].includes(type) : proto === PROTO_ICMPV6 && type >= 1 && type <= 4;
}

/**
 * problems lists every checksum of a complete, unfragmented packet that does not verify by full
 * recomputation, recursing into the quoted packet of an ICMP error when it is quoted whole.
 */
function problems(p: Uint8Array, where = 'packet'): string[] {
  const out: string[] = [];
  const v4 = p[0] >> 4 === 4;
  let l4: number;
  let proto: number;
  if (v4) {
    const hl = (p[0] & 15) * 4;
    if (sum16(p.subarray(0, hl)) !== 0xffff) out.push(`${where}: IPv4 header checksum`);
    l4 = hl;
    proto = p[9];
  } else {
    const t = new Ipv6Transport();
    assert.equal(findIpv6Transport(p, 0, p.length, t), 'ok');
    l4 = t.offset;
    proto = t.protocol;
  }
  const seg = p.subarray(l4);
  if (proto === PROTO_TCP || proto === PROTO_UDP || (proto === PROTO_ICMPV6 && !v4)) {
    const zeroUdp = proto === PROTO_UDP && readU16(seg, 6) === 0;
    if (!zeroUdp && sum16(pseudo(p, v4, proto, seg.length), seg) !== 0xffff) out.push(`${where}: L4 ${proto} checksum`);
  } else if (proto === PROTO_ICMP && sum16(seg) !== 0xffff) {
    out.push(`${where}: ICMP checksum`);
  }
  if ((proto === PROTO_ICMP || proto === PROTO_ICMPV6) && isError(proto, seg[0])) {
    const q = seg.subarray(8);
    if (v4) {
      const qhl = (q[0] & 15) * 4;
      if (sum16(q.subarray(0, qhl)) !== 0xffff) out.push(`${where}: quoted IPv4 header checksum`);
      if (readU16(q, 2) === q.length) out.push(...problems(q, `${where} > quoted`));
    } else if (readU16(q, 4) + 40 === q.length) {
      out.push(...problems(q, `${where} > quoted`));
    }
  }
  return out;
}

/** mirror swaps source and destination, and those of a quoted packet: no checksum changes. */
function mirror(p: Uint8Array): Uint8Array {
  const m = Uint8Array.from(p);
  const v4 = m[0] >> 4 === 4;
  const swap = (base: number): void => {
    const [s, n] = v4 ? [base + 12, 4] : [base + 8, 16];
    for (let i = 0; i < n; i++) [m[s + i], m[s + n + i]] = [m[s + n + i], m[s + i]];
  };
  swap(0);
  const l4 = v4 ? (m[0] & 15) * 4 : 40;
  const proto = v4 ? m[9] : m[6];
  if (isError(proto, m[l4])) swap(l4 + 8);
  return m;
}

// ------------------------------------------------------------------------------ the cases

/** Case is one packet kind: make(m) builds it with m applied to the addresses the rewrite maps. */
interface Case { name: string; dir: Dir; make: (m: M) => Uint8Array }

const payload = (n: number, seed = 1): Buffer => Buffer.from(new Rng(seed).bytes(n));
const udp = (src: string, dst: string, n = 37): Buffer => buildIpPacket({ src, dst, protocol: PROTO_UDP, payload: udpDatagram(40001, 53, payload(n)) });
const tcp = (src: string, dst: string, n = 101): Buffer => buildIpPacket({ src, dst, protocol: PROTO_TCP, payload: tcpSegment({ srcPort: 40002, dstPort: 443, seq: 0x01020304, flags: 0x18, payload: payload(n, 2) }) });
const ping4 = (src: string, dst: string, type: number): Buffer => buildIpPacket({ src, dst, protocol: PROTO_ICMP, payload: icmpMessage(type, 0, 0x77770001, payload(56, 3)) });
const ping6 = (src: string, dst: string, type: number): Buffer => buildIpPacket({ src, dst, protocol: PROTO_ICMPV6, payload: icmpMessage(type, 0, 0x77770001, payload(56, 3)) });

const cases: Case[] = [
  // Inbound: from the peer; source real -> fake, quoted destination real -> fake.
  { name: 'v4 TCP from the peer', dir: 'in', make: (m) => tcp(m(B), A) },
  { name: 'v4 TCP, odd payload length', dir: 'in', make: (m) => tcp(m(B), A, 7) },
  { name: 'v4 UDP from the peer', dir: 'in', make: (m) => udp(m(B), A) },
  { name: 'v4 UDP without checksum (0 stays 0)', dir: 'in', make: (m) => buildIpPacket({ src: m(B), dst: A, protocol: PROTO_UDP, payload: udpDatagram(1, 2, payload(9)), udpZeroChecksum: true }) },
  { name: 'v4 ICMP echo reply (no pseudo-header)', dir: 'in', make: (m) => ping4(m(B), A, ICMP_ECHO_REPLY) },
  { name: 'v4 ICMP echo request from the peer', dir: 'in', make: (m) => ping4(m(B), A, ICMP_ECHO_REQUEST) },
  { name: 'v4 ICMP port unreachable quoting our UDP (whole)', dir: 'in', make: (m) => icmpErrorFor(udp(A, m(B)), { from: m(B), type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH }) },
  { name: 'v4 ICMP port unreachable quoting UDP without checksum', dir: 'in', make: (m) => icmpErrorFor(buildIpPacket({ src: A, dst: m(B), protocol: PROTO_UDP, payload: udpDatagram(1, 2, payload(5)), udpZeroChecksum: true }), { from: m(B), type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH }) },
  { name: 'v4 ICMP frag-needed from a router quoting our TCP (48 bytes: TCP checksum quoted)', dir: 'in', make: (m) => icmpErrorFor(tcp(A, m(B), 1400), { from: m(R), type: ICMP_DEST_UNREACH, code: ICMP_CODE_FRAG_NEEDED, rest: 1400, quoteLen: 48 }) },
  { name: 'v4 ICMP frag-needed quoting our TCP (28 bytes: checksum not quoted)', dir: 'in', make: (m) => icmpErrorFor(tcp(A, m(B), 1400), { from: m(R), type: ICMP_DEST_UNREACH, code: ICMP_CODE_FRAG_NEEDED, rest: 1400, quoteLen: 28 }) },
  { name: 'v4 ICMP frag-needed quoting our UDP (28 bytes: UDP checksum quoted)', dir: 'in', make: (m) => icmpErrorFor(udp(A, m(B), 1400), { from: m(R), type: ICMP_DEST_UNREACH, code: ICMP_CODE_FRAG_NEEDED, rest: 1400, quoteLen: 28 }) },
  { name: 'v4 ICMP frag-needed quoting 35 bytes (odd quote)', dir: 'in', make: (m) => icmpErrorFor(tcp(A, m(B), 1400), { from: m(R), type: ICMP_DEST_UNREACH, code: ICMP_CODE_FRAG_NEEDED, rest: 1400, quoteLen: 35 }) },
  { name: 'v4 ICMP time exceeded quoting our echo request', dir: 'in', make: (m) => icmpErrorFor(ping4(A, m(B), ICMP_ECHO_REQUEST), { from: m(R), type: ICMP_TIME_EXCEEDED, code: 0, quoteLen: 28 }) },
  { name: 'v6 TCP from the peer', dir: 'in', make: (m) => tcp(m(B6), A6) },
  { name: 'v6 UDP from the peer', dir: 'in', make: (m) => udp(m(B6), A6, 3) },
  { name: 'v6 ICMPv6 echo request (pseudo-header)', dir: 'in', make: (m) => ping6(m(B6), A6, ICMPV6_ECHO_REQUEST) },
  { name: 'v6 ICMPv6 echo reply', dir: 'in', make: (m) => ping6(m(B6), A6, ICMPV6_ECHO_REPLY) },
  { name: 'v6 dest unreachable (port) quoting our UDP', dir: 'in', make: (m) => icmpErrorFor(udp(A6, m(B6)), { from: m(B6), type: ICMPV6_DEST_UNREACH, code: ICMPV6_CODE_PORT_UNREACH }) },
  { name: 'v6 packet too big from a router quoting our TCP (1232 bytes)', dir: 'in', make: (m) => icmpErrorFor(tcp(A6, m(B6), 1400), { from: m(R6), type: ICMPV6_PACKET_TOO_BIG, code: 0, rest: 1280, quoteLen: 1232 }) },
  { name: 'v6 packet too big quoting 48 bytes (TCP checksum not quoted)', dir: 'in', make: (m) => icmpErrorFor(tcp(A6, m(B6), 1400), { from: m(R6), type: ICMPV6_PACKET_TOO_BIG, code: 0, rest: 1280, quoteLen: 48 }) },
  { name: 'v6 time exceeded quoting our echo request', dir: 'in', make: (m) => icmpErrorFor(ping6(A6, m(B6), ICMPV6_ECHO_REQUEST), { from: m(R6), type: ICMPV6_TIME_EXCEEDED, code: 0 }) },
  // Outbound: from our TUN; destination fake -> real, quoted source fake -> real.
  { name: 'v4 TCP to the peer', dir: 'out', make: (m) => tcp(A, m(BF)) },
  { name: 'v4 UDP to the peer', dir: 'out', make: (m) => udp(A, m(BF), 0) },
  { name: 'v4 ICMP echo request to the peer', dir: 'out', make: (m) => ping4(A, m(BF), ICMP_ECHO_REQUEST) },
  { name: 'v4 our port unreachable about the peer\'s UDP', dir: 'out', make: (m) => icmpErrorFor(udp(m(BF), A), { from: A, type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH }) },
  { name: 'v4 our frag-needed about the peer\'s TCP (576-byte error)', dir: 'out', make: (m) => icmpErrorFor(tcp(m(BF), A, 1400), { from: A, type: ICMP_DEST_UNREACH, code: ICMP_CODE_FRAG_NEEDED, rest: 1400, quoteLen: 548 }) },
  { name: 'v6 TCP to the peer', dir: 'out', make: (m) => tcp(A6, m(B6F)) },
  { name: 'v6 ICMPv6 echo request to the peer', dir: 'out', make: (m) => ping6(A6, m(B6F), ICMPV6_ECHO_REQUEST) },
  { name: 'v6 our port unreachable about the peer\'s UDP', dir: 'out', make: (m) => icmpErrorFor(udp(m(B6F), A6), { from: A6, type: ICMPV6_DEST_UNREACH, code: ICMPV6_CODE_PORT_UNREACH }) },
  { name: 'v6 our packet too big about the peer\'s TCP', dir: 'out', make: (m) => icmpErrorFor(tcp(m(B6F), A6, 1400), { from: A6, type: ICMPV6_PACKET_TOO_BIG, code: 0, rest: 1280, quoteLen: 1232 }) },
];

for (const [i, c] of cases.entries()) {
  test(`rewrite ${i + 1}. ${c.dir === 'in' ? 'inbound' : 'outbound'}: ${c.name}`, () => {
    const before = c.make(same);
    const expected = c.make(c.dir === 'in' ? toFake : toReal);
    assert.deepEqual(problems(before), [], 'the input is valid');
    // The packet sits 5 bytes into a view that itself has a non-zero byteOffset, with junk after.
    const buf = embedAt(Buffer.concat([Buffer.alloc(5, 0xcc), before, Buffer.alloc(3, 0xdd)]), 9);
    assert.equal(rewrite(c.dir, buf, 5, before.length + 3), 'ok');
    const after = buf.subarray(5, 5 + before.length);
    assert.deepEqual(Buffer.from(after), Buffer.from(expected), 'bytes equal the packet built from scratch with the mapped addresses');
    assert.deepEqual(problems(after), [], 'every checksum verifies by full recomputation');
    assert.deepEqual([...buf.subarray(0, 5), ...buf.subarray(5 + before.length)], [0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xdd, 0xdd, 0xdd], 'nothing outside the packet written');
    // Symmetry: the other side's opposite rewrite of the mirrored packet restores the original.
    const back = mirror(after);
    assert.equal(rewrite(c.dir === 'in' ? 'out' : 'in', back, 0, back.length), 'ok');
    assert.deepEqual(Buffer.from(mirror(back)), Buffer.from(before), 'mirror(opposite(mirror(rewrite(p)))) == p');
  });
}

// ------------------------------------------------------------------ checksum edge values

/** withChecksumTarget builds make() with a payload word chosen so the mapped packet's L4 checksum is 0 (UDP: 0xFFFF). */
function zeroTarget(proto: number, v6: boolean): { before: Buffer; expected: Buffer } {
  const [src, dst] = v6 ? [B6, A6] : [B, A];
  const build = (s: string, w: number): Buffer => {
    const data = Buffer.alloc(10, 0x5a);
    writeU16(data, 8, w);
    const l4 = proto === PROTO_UDP ? udpDatagram(7, 9, data) : tcpSegment({ srcPort: 7, dstPort: 9, payload: data });
    return buildIpPacket({ src: s, dst, protocol: proto, payload: l4 });
  };
  // With the payload word 0 the checksum is ~S; adding S's complement as the word makes the
  // total sum 0xFFFF, so the checksum becomes 0 (sent as 0xFFFF for UDP).
  const csumAt = (v6 ? 40 : 20) + (proto === PROTO_UDP ? 6 : 16);
  const w = readU16(build(MAP.mapToFake(src), 0), csumAt);
  return { before: build(src, w), expected: build(MAP.mapToFake(src), w) };
}

test('rewrite checksum 1. TCP whose new checksum is 0x0000: eqn. 3 gives 0x0000, not 0xFFFF (v4 and v6)', () => {
  for (const v6 of [false, true]) {
    const { before, expected } = zeroTarget(PROTO_TCP, v6);
    const at = (v6 ? 40 : 20) + 16;
    assert.equal(readU16(expected, at), 0x0000);
    assert.notEqual(readU16(before, at), 0x0000);
    const b = embedAt(before, 3);
    assert.equal(rewriteInbound(b, 0, b.length, MAP), 'ok');
    assert.deepEqual(Buffer.from(b), expected);
  }
});

test('rewrite checksum 2. UDP whose new checksum computes to 0 is sent as 0xFFFF (RFC 768), v4 and v6', () => {
  for (const v6 of [false, true]) {
    const { before, expected } = zeroTarget(PROTO_UDP, v6);
    const at = (v6 ? 40 : 20) + 6;
    assert.equal(readU16(expected, at), 0xffff);
    const b = embedAt(before, 3);
    assert.equal(rewriteInbound(b, 0, b.length, MAP), 'ok');
    assert.deepEqual(Buffer.from(b), expected);
    assert.deepEqual(problems(b), []);
    // And back: the symmetric rewrite of a 0xFFFF checksum lands on the original.
    const m = mirror(b);
    assert.equal(rewriteOutbound(m, 0, m.length, MAP), 'ok');
    assert.deepEqual(Buffer.from(mirror(m)), before);
  }
});

// ----------------------------------------------------------------------------- fragments

test('rewrite fragments 1. v4 UDP in 3 fragments: each rewritten alone equals the fragmented expected datagram', () => {
  for (const dir of ['in', 'out'] as const) {
    const make = (m: M): Buffer => (dir === 'in'
      ? buildIpPacket({ src: m(B), dst: A, protocol: PROTO_UDP, payload: udpDatagram(1, 2, payload(100)), dontFragment: false })
      : buildIpPacket({ src: A, dst: m(BF), protocol: PROTO_UDP, payload: udpDatagram(1, 2, payload(100)), dontFragment: false }));
    const before = fragmentIpv4(make(same), 48);
    const expected = fragmentIpv4(make(dir === 'in' ? toFake : toReal), 48);
    assert.equal(before.length, 3);
    for (const [k, f] of before.entries()) {
      const b = embedAt(f, 2);
      assert.equal(rewrite(dir, b, 0, b.length), 'ok', `fragment ${k}`);
      assert.deepEqual(Buffer.from(b), expected[k], `fragment ${k} (${k === 0 ? 'UDP checksum fixed' : 'IP header only'})`);
    }
  }
});

test('rewrite fragments 2. v4 non-first fragment whose data looks like a TCP header is not touched beyond the IP header', () => {
  const d = buildIpPacket({ src: B, dst: A, protocol: PROTO_TCP, payload: tcpSegment({ srcPort: 1, dstPort: 2, payload: payload(200) }), dontFragment: false });
  const [, second] = fragmentIpv4(d, 64);
  assert.ok(second !== undefined);
  const b = embedAt(second, 4);
  assert.equal(rewriteInbound(b, 0, b.length, MAP), 'ok');
  assert.deepEqual(Buffer.from(b.subarray(20)), second.subarray(20), 'fragment data unchanged');
  assert.deepEqual(problems(b.subarray(0, 20)).filter((s) => s.includes('IPv4 header')), []);
});

test('rewrite fragments 3. v6 TCP in fragments, inbound and outbound', () => {
  for (const dir of ['in', 'out'] as const) {
    const make = (m: M): Buffer => (dir === 'in' ? tcp(m(B6), A6, 300) : tcp(A6, m(B6F), 300));
    const before = fragmentIpv6(make(same), 128, 0x1234);
    const expected = fragmentIpv6(make(dir === 'in' ? toFake : toReal), 128, 0x1234);
    assert.equal(before.length, 3);
    for (const [k, f] of before.entries()) {
      const b = embedAt(f, 2);
      assert.equal(rewrite(dir, b, 0, b.length), 'ok', `fragment ${k}`);
      assert.deepEqual(Buffer.from(b), expected[k], `fragment ${k}`);
    }
  }
});

test('rewrite fragments 4. v4 ICMP error arriving as a first fragment: ICMP checksum still right after reassembly', () => {
  const make = (m: M): Buffer => {
    const e = icmpErrorFor(udp(A, m(B), 1000), { from: m(B), type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH });
    writeU16(e, 6, 0); // allow fragmentation; refresh the header checksum
    writeU16(e, 10, 0);
    writeU16(e, 10, (~sum16(e.subarray(0, 20))) & 0xffff);
    return e;
  };
  const before = fragmentIpv4(make(same), 512);
  const expected = fragmentIpv4(make(toFake), 512);
  for (const [k, f] of before.entries()) {
    const b = embedAt(f, 1);
    assert.equal(rewriteInbound(b, 0, b.length, MAP), 'ok');
    assert.deepEqual(Buffer.from(b), expected[k], `fragment ${k}`);
  }
});

// ----------------------------------------------------------------- IPv6 extension headers

/** withExt inserts extension headers (type, total length, segments left for routing) after the fixed header. */
function withExt(p: Buffer, exts: [number, number, number?][]): Buffer {
  const extLen = exts.reduce((n, [, l]) => n + l, 0);
  const out = Buffer.alloc(p.length + extLen);
  p.copy(out, 0, 0, 40);
  p.copy(out, 40 + extLen, 40);
  writeU16(out, 4, p.length - 40 + extLen);
  out[6] = exts[0]?.[0] ?? p[6];
  let at = 40;
  exts.forEach(([type, len, left], i) => {
    out[at] = exts[i + 1]?.[0] ?? p[6];
    out[at + 1] = len / 8 - 1;
    if (type === IPV6_EXT_ROUTING) out[at + 3] = left ?? 0;
    at += len;
  });
  return out;
}

test('rewrite ext 1. v6 TCP behind hop-by-hop and destination options, both directions', () => {
  const exts: [number, number][] = [[IPV6_EXT_HOP_BY_HOP, 8], [IPV6_EXT_DEST_OPTS, 16]];
  for (const dir of ['in', 'out'] as const) {
    const make = (m: M): Buffer => withExt(dir === 'in' ? tcp(m(B6), A6) : tcp(A6, m(B6F)), exts);
    const b = embedAt(make(same), 3);
    assert.equal(rewrite(dir, b, 0, b.length), 'ok');
    assert.deepEqual(Buffer.from(b), make(dir === 'in' ? toFake : toReal));
    assert.deepEqual(problems(b), []);
  }
});

test('rewrite ext 2. v6 outbound with a routing header, segments left 1: the pseudo-header uses the final destination, so the TCP checksum stays', () => {
  const p = withExt(tcp(A6, B6F), [[IPV6_EXT_ROUTING, 24, 1]]);
  const b = embedAt(p, 3);
  assert.equal(rewriteOutbound(b, 0, b.length, MAP), 'ok');
  assert.deepEqual(Buffer.from(b.subarray(24, 40)), Buffer.from(parseIpAddress(B6)?.bytes ?? []), 'destination mapped');
  assert.deepEqual(Buffer.from(b.subarray(40)), p.subarray(40), 'routing header and TCP (checksum included) unchanged');
});

test('rewrite ext 3. v6 outbound with a routing header, segments left 0: the destination is final, the TCP checksum is fixed', () => {
  const make = (m: M): Buffer => withExt(tcp(A6, m(B6F)), [[IPV6_EXT_ROUTING, 24, 0]]);
  const b = embedAt(make(same), 3);
  assert.equal(rewriteOutbound(b, 0, b.length, MAP), 'ok');
  assert.deepEqual(Buffer.from(b), make(toReal));
});

test('rewrite ext 4. v6 inbound with a routing header left 1: the source is in the pseudo-header regardless', () => {
  const make = (m: M): Buffer => withExt(tcp(m(B6), A6), [[IPV6_EXT_ROUTING, 24, 1]]);
  const b = embedAt(make(same), 3);
  assert.equal(rewriteInbound(b, 0, b.length, MAP), 'ok');
  assert.deepEqual(Buffer.from(b), make(toFake));
});

test('rewrite ext 5. v6 ICMPv6 error quoting our packet with a routing header left 1: the quoted TCP checksum stays', () => {
  // The quoted TCP checksum covers the routing header's final destination, not the quoted
  // destination field that the rewrite maps (RFC 8200 §8.1).
  const quotedBefore = withExt(tcp(A6, B6), [[IPV6_EXT_ROUTING, 24, 1]]);
  const quotedAfter = Buffer.from(quotedBefore);
  quotedAfter.set(parseIpAddress(B6F)?.bytes ?? [], 24);
  const before = icmpErrorFor(quotedBefore, { from: B6, type: ICMPV6_DEST_UNREACH, code: ICMPV6_CODE_PORT_UNREACH });
  const expected = icmpErrorFor(quotedAfter, { from: B6F, type: ICMPV6_DEST_UNREACH, code: ICMPV6_CODE_PORT_UNREACH });
  const b = embedAt(before, 3);
  assert.equal(rewriteInbound(b, 0, b.length, MAP), 'ok');
  assert.deepEqual(Buffer.from(b), expected);
});

/** withOptions4 inserts IPv4 options after the fixed header (IHL grows) and refreshes the header checksum. */
function withOptions4(p: Buffer, options: number[]): Buffer {
  const out = Buffer.concat([p.subarray(0, 20), Uint8Array.from(options), p.subarray(20)]);
  out[0] = 0x40 | ((20 + options.length) / 4);
  writeU16(out, 2, out.length);
  writeU16(out, 10, 0);
  writeU16(out, 10, ~sum16(out.subarray(0, 20 + options.length)) & 0xffff);
  return out;
}

test('rewrite options 1. v4 with 8 bytes of options (IHL 7): header checksum over the options, TCP/UDP found after them', () => {
  const opts = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]; // router alert, NOP, NOP, NOP, EOL
  const kinds: [Dir, (m: M) => Buffer][] = [
    ['in', (m) => withOptions4(tcp(m(B), A), opts)],
    ['in', (m) => withOptions4(udp(m(B), A), opts)],
    ['out', (m) => withOptions4(tcp(A, m(BF)), opts)],
    ['in', (m) => withOptions4(icmpErrorFor(withOptions4(udp(A, m(B)), opts), { from: m(B), type: ICMP_DEST_UNREACH, code: ICMP_CODE_PORT_UNREACH }), opts)],
  ];
  for (const [k, [dir, make]] of kinds.entries()) {
    const b = embedAt(make(same), 5);
    assert.deepEqual(problems(b), [], `kind ${k} input`);
    assert.equal(rewrite(dir, b, 0, b.length), 'ok');
    assert.deepEqual(Buffer.from(b), make(dir === 'in' ? toFake : toReal), `kind ${k}`);
  }
});

// ------------------------------------------------------------------------------ drops

interface Drop { name: string; dir: Dir; pkt: () => Uint8Array; len?: (p: Uint8Array) => number; off?: number; want: RewriteResult }
const drops: Drop[] = [
  { name: 'empty', dir: 'in', pkt: () => new Uint8Array(4), len: () => 0, want: 'truncated' },
  { name: 'length beyond the buffer', dir: 'in', pkt: () => tcp(B, A), len: (p) => p.length + 1, want: 'truncated' },
  { name: 'offset beyond the buffer', dir: 'in', pkt: () => tcp(B, A), off: 100000, want: 'truncated' },
  { name: 'version 5', dir: 'in', pkt: () => { const p = tcp(B, A); p[0] = 0x55; return p; }, want: 'bad-inner' },
  { name: 'version 0', dir: 'out', pkt: () => new Uint8Array(40), want: 'bad-inner' },
  { name: 'v4 shorter than 20 bytes', dir: 'in', pkt: () => tcp(B, A).subarray(0, 19), want: 'truncated' },
  { name: 'v4 IHL 4', dir: 'in', pkt: () => { const p = tcp(B, A); p[0] = 0x44; return p; }, want: 'bad-inner' },
  { name: 'v4 total length beyond the bytes', dir: 'in', pkt: () => tcp(B, A).subarray(0, 100), want: 'truncated' },
  { name: 'v4 total length below the header', dir: 'in', pkt: () => { const p = tcp(B, A); writeU16(p, 2, 12); return p; }, want: 'bad-inner' },
  { name: 'v4 TCP header cut before its checksum', dir: 'in', pkt: () => { const p = tcp(B, A).subarray(0, 37); writeU16(p, 2, 37); return p; }, want: 'truncated' },
  { name: 'v4 UDP header cut before its checksum', dir: 'in', pkt: () => { const p = udp(B, A).subarray(0, 27); writeU16(p, 2, 27); return p; }, want: 'truncated' },
  { name: 'v4 ICMP shorter than 8 bytes', dir: 'in', pkt: () => { const p = ping4(B, A, 0).subarray(0, 24); writeU16(p, 2, 24); return p; }, want: 'truncated' },
  { name: 'v4 source not in a real prefix', dir: 'in', pkt: () => tcp('192.0.2.1', A), want: 'unmapped' },
  { name: 'v4 source already fake', dir: 'in', pkt: () => tcp(BF, A), want: 'unmapped' },
  { name: 'v4 destination real, not fake', dir: 'out', pkt: () => tcp(A, B), want: 'unmapped' },
  { name: 'v4 ICMP error quoting 19 bytes', dir: 'in', pkt: () => icmpErrorFor(udp(A, B), { from: B, type: 3, code: 3, quoteLen: 19 }), want: 'bad-inner' },
  { name: 'v4 ICMP error quoting a version-6 header', dir: 'in', pkt: () => { const e = icmpErrorFor(udp(A, B), { from: B, type: 3, code: 3 }); e[28] = 0x65; return e; }, want: 'bad-inner' },
  { name: 'v4 ICMP error quoting IHL 4', dir: 'in', pkt: () => { const e = icmpErrorFor(udp(A, B), { from: B, type: 3, code: 3 }); e[28] = 0x44; return e; }, want: 'bad-inner' },
  { name: 'v4 ICMP error quoting IHL 15 with 28 bytes', dir: 'in', pkt: () => { const e = icmpErrorFor(udp(A, B), { from: B, type: 3, code: 3, quoteLen: 28 }); e[28] = 0x4f; return e; }, want: 'bad-inner' },
  { name: 'v4 ICMP error whose quoted destination is unmapped', dir: 'in', pkt: () => icmpErrorFor(udp(A, '192.0.2.9'), { from: B, type: 3, code: 3 }), want: 'unmapped' },
  { name: 'v4 our ICMP error whose quoted source is not fake', dir: 'out', pkt: () => icmpErrorFor(udp(B, A), { from: A, type: 3, code: 3 }), want: 'unmapped' },
  { name: 'v6 shorter than 40 bytes', dir: 'in', pkt: () => tcp(B6, A6).subarray(0, 39), want: 'truncated' },
  { name: 'v6 payload length beyond the bytes', dir: 'in', pkt: () => tcp(B6, A6).subarray(0, 70), want: 'truncated' },
  { name: 'v6 extension chain cut', dir: 'in', pkt: () => { const p = withExt(tcp(B6, A6), [[IPV6_EXT_DEST_OPTS, 16]]).subarray(0, 50); writeU16(p, 4, 10); return p; }, want: 'truncated' },
  { name: 'v6 nine extension headers', dir: 'in', pkt: () => withExt(tcp(B6, A6), Array.from({ length: 9 }, (): [number, number] => [IPV6_EXT_DEST_OPTS, 8])), want: 'bad-inner' },
  { name: 'v6 TCP cut before its checksum', dir: 'in', pkt: () => { const p = tcp(B6, A6).subarray(0, 57); writeU16(p, 4, 17); return p; }, want: 'truncated' },
  { name: 'v6 ICMPv6 shorter than 8 bytes', dir: 'in', pkt: () => { const p = ping6(B6, A6, 128).subarray(0, 46); writeU16(p, 4, 6); return p; }, want: 'truncated' },
  { name: 'v6 source not in a real prefix', dir: 'in', pkt: () => tcp('2001:db8:2::1', A6), want: 'unmapped' },
  { name: 'v6 destination real, not fake', dir: 'out', pkt: () => tcp(A6, B6), want: 'unmapped' },
  { name: 'v6 ICMPv6 error quoting 39 bytes', dir: 'in', pkt: () => icmpErrorFor(udp(A6, B6), { from: B6, type: 1, code: 4, quoteLen: 39 }), want: 'bad-inner' },
  { name: 'v6 ICMPv6 error quoting an IPv4 packet', dir: 'in', pkt: () => { const e = icmpErrorFor(udp(A6, B6), { from: B6, type: 1, code: 4 }); e[48] = 0x45; return e; }, want: 'bad-inner' },
  { name: 'v6 ICMPv6 error whose quoted destination is unmapped', dir: 'in', pkt: () => icmpErrorFor(udp(A6, '2001:db8:9::9'), { from: B6, type: 1, code: 4 }), want: 'unmapped' },
];
for (const [i, d] of drops.entries()) {
  test(`rewrite drop ${i + 1}. ${d.dir === 'in' ? 'inbound' : 'outbound'}: ${d.name} -> ${d.want}`, () => {
    const p = embedAt(d.pkt(), 6);
    const copy = Buffer.from(p);
    assert.equal(rewrite(d.dir, p, d.off ?? 0, d.len?.(p) ?? p.length), d.want);
    assert.deepEqual(Buffer.from(p), copy, 'a dropped packet is left untouched');
  });
}

test('rewrite drop 33. regression: an ICMP error with an unmapped quote must not have its outer source rewritten first', () => {
  // The outer source (B) maps, the quoted destination does not: checking the quote only after
  // rewriting the outer header would leave a half-rewritten packet behind.
  const e = embedAt(icmpErrorFor(tcp(A, '203.0.113.5'), { from: B, type: ICMP_DEST_UNREACH, code: ICMP_CODE_FRAG_NEEDED, quoteLen: 48 }), 2);
  const copy = Buffer.from(e);
  assert.equal(rewriteInbound(e, 0, e.length, MAP), 'unmapped');
  assert.deepEqual(Buffer.from(e), copy);
});

// ------------------------------------------------------------------- randomised agreement

test('rewrite random 1. random kinds, sizes and host bytes: rewrite == build with mapped addresses, and symmetric', () => {
  const rng = new Rng(4303);
  const host4 = (prefix: string): string => `${prefix}.${1 + rng.int(254)}`;
  const host6 = (prefix: string): string => `${prefix}:${rng.int(0x10000).toString(16)}:${rng.int(0x10000).toString(16)}`;
  for (let n = 0; n < 400; n++) {
    const v6 = rng.int(2) === 1;
    const dir: Dir = rng.int(2) === 1 ? 'in' : 'out';
    const us = v6 ? host6('2001:db8:1::aa') : host4('198.18.0');
    // the peer address as it appears before the rewrite: real inbound, fake outbound
    const peer = v6 ? host6(dir === 'in' ? '2001:db8:1::bb' : '2001:db8:f001::bb') : host4(dir === 'in' ? '198.18.0' : '198.19.0');
    const size = rng.int(600);
    const kind = rng.int(4);
    const srcPort = rng.int(65536);
    const make = (m: M): Buffer => {
      if (kind === 3) {
        // An ICMP error about a UDP packet that went the other way, quoting a random amount of it.
        const orig = dir === 'in' ? udp(us, m(peer), size) : udp(m(peer), us, size);
        return icmpErrorFor(orig, { from: dir === 'in' ? m(peer) : us, type: v6 ? 1 : 3, code: v6 ? 4 : 3, quoteLen: (v6 ? 48 : 28) + (size % 520) });
      }
      const [proto, body] = kind === 0 ? [PROTO_TCP, tcpSegment({ srcPort, dstPort: 22, payload: payload(size, n) })]
        : kind === 1 ? [PROTO_UDP, udpDatagram(srcPort, 5001, payload(size, n))]
          : [v6 ? PROTO_ICMPV6 : PROTO_ICMP, icmpMessage(v6 ? 128 : 8, 0, n, payload(size, n))];
      return buildIpPacket(dir === 'in' ? { src: m(peer), dst: us, protocol: proto, payload: body } : { src: us, dst: m(peer), protocol: proto, payload: body });
    };
    const before = make(same);
    const expected = make(dir === 'in' ? toFake : toReal);
    const b = embedAt(before, 1 + rng.int(8));
    assert.equal(rewrite(dir, b, 0, b.length), 'ok', `case ${n}`);
    assert.deepEqual(Buffer.from(b), expected, `case ${n}: v${v6 ? 6 : 4} ${dir} kind ${kind} size ${size}`);
    const m = mirror(b);
    assert.equal(rewrite(dir === 'in' ? 'out' : 'in', m, 0, m.length), 'ok');
    assert.deepEqual(Buffer.from(mirror(m)), before, `case ${n}: symmetric`);
  }
});
