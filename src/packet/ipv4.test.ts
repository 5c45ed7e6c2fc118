import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readU16, writeU16 } from './bytes.js';
import { onesSum } from './checksum.js';
import {
  checkIpv4, encodeIpv4Header, ipv4FragmentOffset, ipv4HeaderChecksum, ipv4HeaderEncodingLength, ipv4HeaderLength,
  ipv4IsFragment, ipv4MoreFragments, ipv4Protocol, ipv4TotalLength, parseIpv4,
} from './ipv4.js';
import type { Ipv4Check, Ipv4HeaderFields } from './ipv4.js';
import { IPV4_OFFSET_CSUM, IPV4_OFFSET_FRAG, IPV4_OFFSET_TOTAL_LEN, PROTO_TCP, PROTO_UDP } from './offsets.js';
import { embedAt } from './testing.js';

const A = Uint8Array.from([198, 18, 0, 1]);
const B = Uint8Array.from([198, 18, 0, 2]);

function fields(over: Partial<Ipv4HeaderFields> = {}): Ipv4HeaderFields {
  return {
    tos: 0, totalLength: 40, identification: 0xbeef, dontFragment: true, moreFragments: false, fragmentOffset: 0,
    ttl: 64, protocol: PROTO_TCP, src: A, dst: B, options: new Uint8Array(0), ...over,
  };
}

/** packet returns a valid packet of h.totalLength bytes (header + zero payload) embedded at a non-zero byteOffset. */
function packet(h: Ipv4HeaderFields, extra = 0): Buffer {
  const b = embedAt(new Uint8Array(h.totalLength + extra), 11);
  assert.equal(encodeIpv4Header(h, b, 0), ipv4HeaderEncodingLength(h));
  return b;
}

const roundTrips: [string, Partial<Ipv4HeaderFields>][] = [
  ['plain TCP', {}],
  ['UDP, tos, no DF', { protocol: PROTO_UDP, tos: 0xb8, dontFragment: false, totalLength: 1400 }],
  ['first fragment (MF)', { dontFragment: false, moreFragments: true, totalLength: 1500 }],
  ['last fragment at 1480', { dontFragment: false, fragmentOffset: 1480, totalLength: 48 }],
  ['options: 4 bytes (router alert)', { options: Uint8Array.from([0x94, 0x04, 0, 0]), totalLength: 44 }],
  ['options: 40 bytes (IHL 15)', { options: new Uint8Array(40).fill(1), totalLength: 60 }],
  ['largest fragment offset that fits', { dontFragment: false, fragmentOffset: 65528 - 8, totalLength: 28 }],
];
for (const [i, [name, over]] of roundTrips.entries()) {
  test(`ipv4 round trip ${i + 1}. ${name}`, () => {
    const h = fields(over);
    const b = packet(h, 3);
    const p = parseIpv4(b, 0, b.length, { verifyChecksum: true });
    assert.ok(typeof p !== 'string', `parse failed: ${typeof p === 'string' ? p : ''}`);
    const { headerLength, checksum, ...rest } = p;
    assert.deepEqual(rest, { ...h, src: Uint8Array.from(h.src), dst: Uint8Array.from(h.dst), options: Uint8Array.from(h.options) });
    assert.equal(headerLength, 20 + h.options.length);
    assert.equal(checksum, readU16(b, IPV4_OFFSET_CSUM));
    assert.equal(onesSum(b, 0, headerLength), 0xffff, 'header checksum verifies');
    assert.equal(ipv4HeaderChecksum(b, 0), checksum);
    // Copies, not views: changing the packet does not change the parsed addresses.
    b[12] ^= 0xff;
    assert.deepEqual(p.src, Uint8Array.from(h.src));
  });
}

test('ipv4 accessors read in place at an offset', () => {
  const h = fields({ dontFragment: false, moreFragments: true, fragmentOffset: 1480, totalLength: 100, protocol: PROTO_UDP });
  const b = embedAt(new Uint8Array(110), 3);
  encodeIpv4Header(h, b, 5);
  assert.equal(checkIpv4(b, 5, 105), 'ok');
  assert.equal(ipv4HeaderLength(b, 5), 20);
  assert.equal(ipv4TotalLength(b, 5), 100);
  assert.equal(ipv4Protocol(b, 5), PROTO_UDP);
  assert.equal(ipv4FragmentOffset(b, 5), 1480);
  assert.equal(ipv4MoreFragments(b, 5), true);
  assert.equal(ipv4IsFragment(b, 5), true);
  writeU16(b, 5 + IPV4_OFFSET_FRAG, 0x4000);
  assert.equal(ipv4IsFragment(b, 5), false, 'DF alone is not a fragment');
});

type Mangle = (b: Buffer) => void;
const bad: [string, number, Mangle, Ipv4Check, boolean?][] = [
  // name, len delta (added to the packet length handed to checkIpv4), mangle, expected, verify checksum
  ['shorter than 20 bytes', -(40 - 19), () => undefined, 'truncated'],
  ['zero bytes', -40, () => undefined, 'truncated'],
  ['version 6', 0, (b) => { b[0] = 0x65; }, 'bad-version'],
  ['version 0', 0, (b) => { b[0] = 0x05; }, 'bad-version'],
  ['IHL 4', 0, (b) => { b[0] = 0x44; }, 'bad-header-length'],
  ['IHL 0', 0, (b) => { b[0] = 0x40; }, 'bad-header-length'],
  ['IHL 15 but 40 bytes', -10, (b) => { b[0] = 0x4f; }, 'truncated'],
  ['total length below header length', 0, (b) => { writeU16(b, IPV4_OFFSET_TOTAL_LEN, 19); }, 'bad-total-length'],
  ['total length beyond the bytes available', 0, (b) => { writeU16(b, IPV4_OFFSET_TOTAL_LEN, 41); }, 'truncated'],
  ['fragment ends beyond 65535 (ping of death)', 0, (b) => { writeU16(b, IPV4_OFFSET_FRAG, 0x1fff); }, 'bad-fragment'],
  ['header checksum off by one', 0, (b) => { b[IPV4_OFFSET_CSUM + 1] ^= 1; }, 'bad-checksum', true],
  ['a changed address breaks the checksum', 0, (b) => { b[15] ^= 0x80; }, 'bad-checksum', true],
];
for (const [i, [name, lenDelta, mangle, want, verify]] of bad.entries()) {
  test(`ipv4 bad ${i + 1}. ${name} -> ${want}`, () => {
    const b = packet(fields());
    mangle(b);
    assert.equal(checkIpv4(b, 0, 40 + lenDelta, verify ?? false), want);
    assert.equal(parseIpv4(b, 0, 40 + lenDelta, { verifyChecksum: verify ?? false }), want);
    if (verify === true) assert.equal(checkIpv4(b, 0, 40), 'ok', 'without verification it passes');
  });
}

test('ipv4 bad 13. a length reaching past the buffer is truncated, not a throw', () => {
  const b = packet(fields());
  assert.equal(checkIpv4(b, 0, 41), 'truncated');
  assert.equal(checkIpv4(b, 30, 20), 'truncated');
  assert.equal(checkIpv4(b, -1, 20), 'truncated');
});

test('ipv4 bad 14. trailing bytes after the total length are allowed', () => {
  const b = packet(fields(), 9);
  assert.equal(checkIpv4(b, 0, 49, true), 'ok');
});

const encodeErrors: [string, Partial<Ipv4HeaderFields>, RegExp][] = [
  ['options not a multiple of 4', { options: new Uint8Array(3), totalLength: 40 }, /multiple of 4/],
  ['options longer than 40', { options: new Uint8Array(44), totalLength: 100 }, /at most 40/],
  ['fragment offset not a multiple of 8', { fragmentOffset: 12 }, /fragment offset 12/],
  ['total length below header', { totalLength: 10 }, /total length 10/],
  ['3-byte address', { src: new Uint8Array(3) }, /4 bytes/],
];
for (const [i, [name, over, message]] of encodeErrors.entries()) {
  test(`ipv4 encode error ${i + 1}. ${name}`, () => {
    assert.throws(() => encodeIpv4Header(fields(over), new Uint8Array(120), 0), { name: 'RangeError', message });
  });
}

test('ipv4 encode error 6. no room in the buffer', () => {
  assert.throws(() => encodeIpv4Header(fields(), new Uint8Array(25), 10), RangeError);
});
