import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeU16 } from './bytes.js';
import {
  checkIpv6, encodeIpv6Header, findIpv6Transport, Ipv6Transport, ipv6HeaderEncodingLength, ipv6NextHeader,
  ipv6PacketLength, ipv6PayloadLength, parseIpv6,
} from './ipv6.js';
import type { Ipv6Fragment, Ipv6HeaderFields, Ipv6TransportResult } from './ipv6.js';
import {
  IPV6_EXT_DEST_OPTS, IPV6_EXT_FRAGMENT, IPV6_EXT_HOP_BY_HOP, IPV6_EXT_ROUTING, IPV6_NO_NEXT_HEADER,
  IPV6_OFFSET_PAYLOAD_LEN, PROTO_AH, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
} from './offsets.js';
import { embedAt } from './testing.js';

const A = Uint8Array.from(Buffer.from('20010db8000000000000000000000001', 'hex'));
const B = Uint8Array.from(Buffer.from('20010db8000100000000000000000002', 'hex'));

function fields(over: Partial<Ipv6HeaderFields> = {}): Ipv6HeaderFields {
  return { trafficClass: 0, flowLabel: 0, payloadLength: 8, nextHeader: PROTO_UDP, hopLimit: 64, src: A, dst: B, ...over };
}

const roundTrips: [string, Partial<Ipv6HeaderFields>][] = [
  ['plain UDP', {}],
  ['traffic class and flow label', { trafficClass: 0xb8, flowLabel: 0xabcde }],
  ['max flow label, hop limit 255', { flowLabel: 0xfffff, hopLimit: 255, trafficClass: 0xff }],
  ['no payload, no next header', { payloadLength: 0, nextHeader: IPV6_NO_NEXT_HEADER }],
  ['TCP 1400 bytes', { payloadLength: 1400, nextHeader: PROTO_TCP }],
];
for (const [i, [name, over]] of roundTrips.entries()) {
  test(`ipv6 round trip ${i + 1}. ${name}`, () => {
    const h = fields(over);
    const b = embedAt(new Uint8Array(40 + h.payloadLength + 2), 13);
    assert.equal(encodeIpv6Header(h, b, 2), ipv6HeaderEncodingLength());
    const p = parseIpv6(b, 2, b.length - 2);
    assert.deepEqual(p, { ...h, src: Uint8Array.from(h.src), dst: Uint8Array.from(h.dst) });
    assert.equal(ipv6PayloadLength(b, 2), h.payloadLength);
    assert.equal(ipv6PacketLength(b, 2), 40 + h.payloadLength);
    assert.equal(ipv6NextHeader(b, 2), h.nextHeader);
  });
}

const bad: [string, number, (b: Buffer) => void, string][] = [
  ['39 bytes', 39, () => undefined, 'truncated'],
  ['zero bytes', 0, () => undefined, 'truncated'],
  ['version 4', 48, (b) => { b[0] = 0x45; }, 'bad-version'],
  ['version 7', 48, (b) => { b[0] = 0x70; }, 'bad-version'],
  ['payload length beyond the bytes available', 48, (b) => { writeU16(b, IPV6_OFFSET_PAYLOAD_LEN, 9); }, 'truncated'],
  ['length past the end of the buffer', 49, () => undefined, 'truncated'],
];
for (const [i, [name, len, mangle, want]] of bad.entries()) {
  test(`ipv6 bad ${i + 1}. ${name} -> ${want}`, () => {
    const b = embedAt(new Uint8Array(48), 3);
    encodeIpv6Header(fields(), b, 0);
    mangle(b);
    assert.equal(checkIpv6(b, 0, len), want);
    assert.equal(parseIpv6(b, 0, len), want);
  });
}

test('ipv6 bad 7. trailing bytes after the payload length are allowed', () => {
  const b = embedAt(new Uint8Array(60), 3);
  encodeIpv6Header(fields(), b, 0);
  assert.equal(checkIpv6(b, 0, 60), 'ok');
});

const encodeErrors: [string, Partial<Ipv6HeaderFields>, RegExp][] = [
  ['flow label over 20 bits', { flowLabel: 0x100000 }, /flow label/],
  ['payload length over 65535', { payloadLength: 65536 }, /payload length/],
  ['4-byte address', { dst: new Uint8Array(4) }, /16 bytes/],
];
for (const [i, [name, over, message]] of encodeErrors.entries()) {
  test(`ipv6 encode error ${i + 1}. ${name}`, () => {
    assert.throws(() => encodeIpv6Header(fields(over), new Uint8Array(40), 0), { name: 'RangeError', message });
  });
}

/** Ext is one extension header for the chain builder: its type and total length in bytes. */
interface Ext { type: number; len: number; segmentsLeft?: number; fragOffset?: number; more?: boolean }

/** chain builds an IPv6 packet with the given extension headers, then `l4Len` bytes of `last`. */
function chain(exts: Ext[], last: number, l4Len: number): Buffer {
  const extBytes = exts.reduce((n, e) => n + e.len, 0);
  const b = embedAt(new Uint8Array(40 + extBytes + l4Len), 6);
  encodeIpv6Header(fields({ payloadLength: extBytes + l4Len, nextHeader: exts[0]?.type ?? last }), b, 0);
  let p = 40;
  exts.forEach((e, i) => {
    b[p] = exts[i + 1]?.type ?? last;
    if (e.type === IPV6_EXT_FRAGMENT) {
      writeU16(b, p + 2, (e.fragOffset ?? 0) | (e.more === true ? 1 : 0));
    } else if (e.type === PROTO_AH) {
      b[p + 1] = e.len / 4 - 2;
    } else {
      b[p + 1] = e.len / 8 - 1;
      if (e.type === IPV6_EXT_ROUTING) b[p + 3] = e.segmentsLeft ?? 0;
    }
    p += e.len;
  });
  return b;
}

const walks: {
  name: string; exts: Ext[]; last: number; l4Len: number; cut?: number;
  want: Ipv6TransportResult; protocol?: number; offset?: number; fragment?: Ipv6Fragment; routingPending?: boolean;
}[] = [
  { name: 'no extension headers', exts: [], last: PROTO_TCP, l4Len: 20, want: 'ok', protocol: PROTO_TCP, offset: 40, fragment: 'none' },
  { name: 'hop-by-hop 8', exts: [{ type: IPV6_EXT_HOP_BY_HOP, len: 8 }], last: PROTO_UDP, l4Len: 8, want: 'ok', protocol: PROTO_UDP, offset: 48 },
  {
    name: 'hop-by-hop, dest opts 16, routing (0 left), dest opts',
    exts: [{ type: IPV6_EXT_HOP_BY_HOP, len: 8 }, { type: IPV6_EXT_DEST_OPTS, len: 16 }, { type: IPV6_EXT_ROUTING, len: 24 }, { type: IPV6_EXT_DEST_OPTS, len: 8 }],
    last: PROTO_ICMPV6, l4Len: 8, want: 'ok', protocol: PROTO_ICMPV6, offset: 96, routingPending: false,
  },
  { name: 'routing with segments left', exts: [{ type: IPV6_EXT_ROUTING, len: 24, segmentsLeft: 1 }], last: PROTO_TCP, l4Len: 20, want: 'ok', protocol: PROTO_TCP, offset: 64, routingPending: true },
  { name: 'first fragment', exts: [{ type: IPV6_EXT_FRAGMENT, len: 8, more: true }], last: PROTO_UDP, l4Len: 8, want: 'ok', protocol: PROTO_UDP, offset: 48, fragment: 'first' },
  { name: 'atomic fragment (offset 0, no M)', exts: [{ type: IPV6_EXT_FRAGMENT, len: 8 }], last: PROTO_TCP, l4Len: 20, want: 'ok', fragment: 'first', offset: 48 },
  { name: 'non-first fragment stops the walk', exts: [{ type: IPV6_EXT_FRAGMENT, len: 8, fragOffset: 1232 }], last: PROTO_TCP, l4Len: 16, want: 'ok', protocol: PROTO_TCP, offset: 48, fragment: 'non-first' },
  { name: 'AH (length in 4-byte units)', exts: [{ type: PROTO_AH, len: 24 }], last: PROTO_TCP, l4Len: 20, want: 'ok', protocol: PROTO_TCP, offset: 64 },
  { name: 'no next header', exts: [{ type: IPV6_EXT_DEST_OPTS, len: 8 }], last: IPV6_NO_NEXT_HEADER, l4Len: 0, want: 'ok', protocol: IPV6_NO_NEXT_HEADER, offset: 48 },
  { name: 'chain cut inside an extension header', exts: [{ type: IPV6_EXT_DEST_OPTS, len: 16 }], last: PROTO_TCP, l4Len: 20, cut: 40 + 12, want: 'truncated' },
  { name: 'chain cut before an extension header', exts: [{ type: IPV6_EXT_HOP_BY_HOP, len: 8 }], last: PROTO_TCP, l4Len: 20, cut: 44, want: 'truncated' },
  { name: 'fragment header cut', exts: [{ type: IPV6_EXT_FRAGMENT, len: 8 }], last: PROTO_TCP, l4Len: 20, cut: 46, want: 'truncated' },
  { name: 'nine extension headers', exts: Array.from({ length: 9 }, () => ({ type: IPV6_EXT_DEST_OPTS, len: 8 })), last: PROTO_TCP, l4Len: 20, want: 'bad-extension' },
  { name: 'eight extension headers are fine', exts: Array.from({ length: 8 }, () => ({ type: IPV6_EXT_DEST_OPTS, len: 8 })), last: PROTO_TCP, l4Len: 20, want: 'ok', offset: 104 },
];
for (const [i, w] of walks.entries()) {
  test(`ipv6 transport ${i + 1}. ${w.name}`, () => {
    const b = chain(w.exts, w.last, w.l4Len);
    const out = new Ipv6Transport();
    out.routingPending = true; // stale values from a previous packet must be reset
    out.fragment = 'non-first';
    const res = findIpv6Transport(b, 0, w.cut ?? b.length, out);
    assert.equal(res, w.want);
    if (w.protocol !== undefined) assert.equal(out.protocol, w.protocol);
    if (w.offset !== undefined) assert.equal(out.offset, w.offset);
    if (res === 'ok') assert.equal(out.fragment, w.fragment ?? 'none');
    if (res === 'ok') assert.equal(out.routingPending, w.routingPending ?? false);
  });
}

test('ipv6 transport 15. offsets are absolute within the view', () => {
  const inner = chain([{ type: IPV6_EXT_HOP_BY_HOP, len: 8 }], PROTO_UDP, 8);
  const b = embedAt(new Uint8Array(inner.length + 10), 5);
  b.set(inner, 10);
  const out = new Ipv6Transport();
  assert.equal(findIpv6Transport(b, 10, b.length, out), 'ok');
  assert.equal(out.offset, 10 + 48);
});
