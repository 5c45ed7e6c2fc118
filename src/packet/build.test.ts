import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpAddress } from './address.js';
import {
  buildIpPacket, fragmentIpv4, fragmentIpv6, icmpErrorFor, icmpMessage, tcpSegment, transportChecksum, udpDatagram,
} from './build.js';
import { readU16 } from './bytes.js';
import { checkIpv4, parseIpv4 } from './ipv4.js';
import { checkIpv6, parseIpv6 } from './ipv6.js';
import {
  ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REQUEST, ICMPV6_PACKET_TOO_BIG, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
  PROTO_UDP,
} from './offsets.js';
import { embedAt, sum16 } from './testing.js';


function pseudo(src: string, dst: string, proto: number, len: number): Uint8Array {
  const s = parseIpAddress(src);
  const d = parseIpAddress(dst);
  assert.ok(s !== undefined && d !== undefined);
  const tail = s.family === 4 ? Uint8Array.from([0, proto, len >> 8, len & 0xff]) : Uint8Array.from([len >>> 24, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff, 0, 0, 0, proto]);
  return Buffer.concat([s.bytes, d.bytes, tail]);
}

const kinds: [string, string, string, number, Uint8Array][] = [
  ['v4 TCP, odd payload', '198.18.0.1', '198.18.0.2', PROTO_TCP, tcpSegment({ srcPort: 40000, dstPort: 80, payload: Buffer.from('hello') })],
  ['v4 UDP', '198.18.0.1', '198.18.0.2', PROTO_UDP, udpDatagram(5353, 53, Buffer.from('query!'))],
  ['v6 TCP', '2001:db8:1::1', '2001:db8:1::2', PROTO_TCP, tcpSegment({ srcPort: 1, dstPort: 2, payload: Buffer.alloc(101, 7) })],
  ['v6 UDP', '2001:db8:1::1', '2001:db8:1::2', PROTO_UDP, udpDatagram(1, 2, Buffer.alloc(3, 9))],
  ['v6 ICMPv6 echo', '2001:db8:1::1', '2001:db8:1::2', PROTO_ICMPV6, icmpMessage(ICMPV6_ECHO_REQUEST, 0, 0x00010002, Buffer.from('ping'))],
];
for (const [i, [name, src, dst, proto, l4]] of kinds.entries()) {
  test(`build ${i + 1}. ${name}: the transport checksum verifies over an independently built pseudo-header`, () => {
    const p = buildIpPacket({ src, dst, protocol: proto, payload: l4 });
    const hl = p[0] >> 4 === 4 ? 20 : 40;
    assert.equal(p[0] >> 4 === 4 ? checkIpv4(p, 0, p.length, true) : checkIpv6(p, 0, p.length), 'ok');
    assert.equal(sum16(pseudo(src, dst, proto, p.length - hl), p.subarray(hl)), 0xffff);
    assert.deepEqual(p.subarray(hl, hl + 2), l4.subarray(0, 2), 'payload copied');
    assert.equal(transportChecksum(embedAt(p, 3), 0, p.length), readU16(p, hl + (proto === PROTO_TCP ? 16 : proto === PROTO_UDP ? 6 : 2)));
  });
}

test('build 6. ICMPv4 echo: checksum over the message only', () => {
  const p = buildIpPacket({ src: '198.18.0.1', dst: '198.18.0.2', protocol: PROTO_ICMP, payload: icmpMessage(ICMP_ECHO_REQUEST, 0, 0x12340001, Buffer.from('abc')) });
  assert.equal(sum16(p.subarray(20)), 0xffff);
});

test('build 7. UDP with udpZeroChecksum keeps 0; IPv4 header fields as asked', () => {
  const p = buildIpPacket({ src: '198.18.0.1', dst: '198.18.0.2', protocol: PROTO_UDP, payload: udpDatagram(1, 2), udpZeroChecksum: true, ttl: 3, identification: 77, dontFragment: false });
  assert.equal(readU16(p, 26), 0);
  const h = parseIpv4(p, 0, p.length, { verifyChecksum: true });
  assert.ok(typeof h !== 'string');
  assert.equal(h.ttl, 3);
  assert.equal(h.identification, 77);
  assert.equal(h.dontFragment, false);
});

test('build 8. icmpErrorFor quotes the packet and goes back to its source', () => {
  const orig = buildIpPacket({ src: '198.18.0.1', dst: '198.18.0.2', protocol: PROTO_UDP, payload: udpDatagram(1000, 2000, Buffer.alloc(100)) });
  const e = icmpErrorFor(orig, { from: '198.18.0.2', type: ICMP_DEST_UNREACH, code: 3, quoteLen: 28 });
  const h = parseIpv4(e, 0, e.length, { verifyChecksum: true });
  assert.ok(typeof h !== 'string');
  assert.deepEqual([...h.src], [198, 18, 0, 2]);
  assert.deepEqual([...h.dst], [198, 18, 0, 1]);
  assert.equal(h.protocol, PROTO_ICMP);
  assert.deepEqual(e.subarray(28), orig.subarray(0, 28));
  assert.equal(sum16(e.subarray(20)), 0xffff);

  const o6 = buildIpPacket({ src: '2001:db8:1::1', dst: '2001:db8:1::2', protocol: PROTO_TCP, payload: tcpSegment({ srcPort: 1, dstPort: 2 }) });
  const e6 = icmpErrorFor(o6, { from: '2001:db8:1::fe', type: ICMPV6_PACKET_TOO_BIG, code: 0, rest: 1280 });
  const h6 = parseIpv6(e6, 0, e6.length);
  assert.ok(typeof h6 !== 'string');
  assert.deepEqual(h6.dst, parseIpAddress('2001:db8:1::1')?.bytes);
  assert.equal(sum16(pseudo('2001:db8:1::fe', '2001:db8:1::1', PROTO_ICMPV6, e6.length - 40), e6.subarray(40)), 0xffff);
});

test('build 9. fragmentIpv4: fragments reassemble to the datagram, headers verify', () => {
  const orig = buildIpPacket({ src: '198.18.0.1', dst: '198.18.0.2', protocol: PROTO_UDP, payload: udpDatagram(1, 2, Buffer.alloc(50, 5)), dontFragment: false });
  const frags = fragmentIpv4(orig, 24);
  assert.equal(frags.length, 3);
  const data = Buffer.concat(frags.map((f) => f.subarray(20)));
  assert.deepEqual(data, orig.subarray(20));
  for (const [k, f] of frags.entries()) {
    const h = parseIpv4(f, 0, f.length, { verifyChecksum: true });
    assert.ok(typeof h !== 'string');
    assert.equal(h.fragmentOffset, 24 * k);
    assert.equal(h.moreFragments, k < 2);
  }
  assert.throws(() => fragmentIpv4(orig, 20), RangeError);
});

test('build 10. fragmentIpv6: fragment headers and reassembly', () => {
  const orig = buildIpPacket({ src: '2001:db8:1::1', dst: '2001:db8:1::2', protocol: PROTO_UDP, payload: udpDatagram(1, 2, Buffer.alloc(30, 5)) });
  const frags = fragmentIpv6(orig, 16, 0xabcdef01);
  assert.equal(frags.length, 3);
  assert.deepEqual(Buffer.concat(frags.map((f) => f.subarray(48))), orig.subarray(40));
  for (const [k, f] of frags.entries()) {
    assert.equal(checkIpv6(f, 0, f.length), 'ok');
    assert.equal(f[6], 44);
    assert.equal(f[40], PROTO_UDP);
    assert.equal(readU16(f, 42), (16 * k) | (k < 2 ? 1 : 0));
  }
});
