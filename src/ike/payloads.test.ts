import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTH_METHOD, CFG_ATTR, CFG_TYPE, DH, ENCR, ESN, ID, NOTIFY, PAYLOAD, PRF, PROTOCOL, TRANSFORM, TS_TYPE } from './constants.js';
import {
  MAX_BODY_LEN, NONCE_MAX_LEN, NONCE_MIN_LEN, checkPayload, decodePayloadBody, encodePayloadBody, isDecodedType,
  keyLengthOf, notify, payloadBodyLength, payloadTypeOf, readSpi32, spi32, transform,
} from './payloads.js';
import type { Payload } from './payloads.js';
import { hex, offsetView, toHex } from '../../test/support/vectors/load.js';

const ascii = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'ascii'));
const seq = (n: number, start = 0): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
const EMPTY = new Uint8Array(0);

/**
 * Round-trip cases. `wire` is the body as laid out by hand from the RFC 7296 §3 diagrams (not
 * by the encoder), so each case checks the encoder's bytes and the decoder's reading of them.
 */
const ROUND_TRIPS: { n: number; name: string; p: Payload; wire: string }[] = [
  {
    n: 1, name: 'SA: one IKE proposal, AES-GCM-16/256 + PRF_HMAC_SHA2_256 + ECP-256',
    p: { kind: 'sa', proposals: [{ num: 1, protocol: PROTOCOL.IKE, spi: EMPTY, transforms: [
      transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256), transform(TRANSFORM.PRF, PRF.HMAC_SHA2_256), transform(TRANSFORM.DH, DH.ECP_256)] }] },
    wire: '00000024 01010003  0300000c 01000014 800e0100  03000008 02000005  00000008 04000013',
  },
  {
    n: 2, name: 'SA: two ESP proposals with 4-byte SPIs, ESN and Curve25519',
    p: { kind: 'sa', proposals: [
      { num: 1, protocol: PROTOCOL.ESP, spi: hex('c0de0102'), transforms: [transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 128), transform(TRANSFORM.ESN, ESN.NO_ESN)] },
      { num: 2, protocol: PROTOCOL.ESP, spi: hex('c0de0103'), transforms: [
        transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256), transform(TRANSFORM.DH, DH.CURVE25519), transform(TRANSFORM.ESN, ESN.ESN)] },
    ] },
    wire: '02000020 01030402 c0de0102 0300000c 01000014 800e0080 00000008 05000000' +
      '00000028 02030403 c0de0103 0300000c 01000014 800e0100 03000008 0400001f 00000008 05000001',
  },
  {
    n: 3, name: 'SA: a TLV attribute and an 8-byte IKE SPI (rekey)',
    p: { kind: 'sa', proposals: [{ num: 1, protocol: PROTOCOL.IKE, spi: hex('0102030405060708'), transforms: [
      { type: TRANSFORM.ENCR, id: ENCR.AES_CBC, attributes: [{ type: 17, value: hex('abcd') }] }] }] },
    wire: '0000001e 01010801 0102030405060708 0000000e 0100000c 00110002 abcd',
  },
  { n: 4, name: 'KE: ECP-256', p: { kind: 'ke', group: DH.ECP_256, data: seq(64) }, wire: '00130000' + toHex(seq(64)) },
  { n: 5, name: 'KE: Curve25519', p: { kind: 'ke', group: DH.CURVE25519, data: seq(32, 0x80) }, wire: '001f0000' + toHex(seq(32, 0x80)) },
  { n: 6, name: 'IDi: ID_IPV4_ADDR 192.0.2.1', p: { kind: 'idi', idType: ID.IPV4_ADDR, data: hex('c0000201') }, wire: '01000000 c0000201' },
  { n: 7, name: 'IDr: ID_FQDN gw.example', p: { kind: 'idr', idType: ID.FQDN, data: ascii('gw.example') }, wire: '02000000 67772e6578616d706c65' },
  {
    n: 8, name: 'IDi: ID_IPV6_ADDR 2001:db8::1', p: { kind: 'idi', idType: ID.IPV6_ADDR, data: hex('20010db8000000000000000000000001') },
    wire: '05000000 20010db8000000000000000000000001',
  },
  { n: 9, name: 'IDi: ID_RFC822_ADDR', p: { kind: 'idi', idType: ID.RFC822_ADDR, data: ascii('a@b.example') }, wire: '03000000 6140622e6578616d706c65' },
  { n: 10, name: 'IDr: ID_KEY_ID', p: { kind: 'idr', idType: ID.KEY_ID, data: hex('00ff10') }, wire: '0b000000 00ff10' },
  { n: 11, name: 'AUTH: shared key MIC', p: { kind: 'auth', method: AUTH_METHOD.SHARED_KEY_MIC, data: seq(32, 7) }, wire: '02000000' + toHex(seq(32, 7)) },
  { n: 12, name: 'Nonce: 16 bytes (minimum)', p: { kind: 'nonce', data: seq(NONCE_MIN_LEN) }, wire: toHex(seq(16)) },
  { n: 13, name: 'Nonce: 256 bytes (maximum)', p: { kind: 'nonce', data: seq(NONCE_MAX_LEN, 3) }, wire: toHex(seq(256, 3)) },
  {
    n: 14, name: 'Notify: NAT_DETECTION_SOURCE_IP', p: notify(NOTIFY.NAT_DETECTION_SOURCE_IP, seq(20, 0x40)),
    wire: '00004004' + toHex(seq(20, 0x40)),
  },
  {
    n: 15, name: 'Notify: REKEY_SA for an ESP SPI, no data',
    p: { kind: 'notify', protocol: PROTOCOL.ESP, spi: hex('c0de0102'), notifyType: NOTIFY.REKEY_SA, data: EMPTY },
    wire: '03044009 c0de0102',
  },
  { n: 16, name: 'Notify: INVALID_KE_PAYLOAD naming group 19', p: notify(NOTIFY.INVALID_KE_PAYLOAD, hex('0013')), wire: '00000011 0013' },
  { n: 17, name: 'Notify: USE_TRANSPORT_MODE, no data', p: notify(NOTIFY.USE_TRANSPORT_MODE), wire: '00004007' },
  { n: 18, name: 'Delete: the IKE SA', p: { kind: 'delete', protocol: PROTOCOL.IKE, spiSize: 0, spis: [] }, wire: '01000000' },
  {
    n: 19, name: 'Delete: two ESP SPIs', p: { kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: [hex('c0de0102'), hex('c0de0103')] },
    wire: '03040002 c0de0102 c0de0103',
  },
  { n: 20, name: 'Vendor ID', p: { kind: 'vendor', data: ascii('espgate') }, wire: '65737067617465' },
  { n: 21, name: 'Vendor ID: empty', p: { kind: 'vendor', data: EMPTY }, wire: '' },
  {
    n: 22, name: 'TSi: IPv4 everything',
    p: { kind: 'tsi', selectors: [{ kind: 'range', tsType: TS_TYPE.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535,
      startAddress: hex('00000000'), endAddress: hex('ffffffff') }] },
    wire: '01000000 07000010 0000ffff 00000000 ffffffff',
  },
  {
    n: 23, name: 'TSr: IPv4 TCP/80 range and an IPv6 range',
    p: { kind: 'tsr', selectors: [
      { kind: 'range', tsType: TS_TYPE.IPV4_ADDR_RANGE, ipProtocol: 6, startPort: 80, endPort: 80, startAddress: hex('c6130000'), endAddress: hex('c613ffff') },
      { kind: 'range', tsType: TS_TYPE.IPV6_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535,
        startAddress: hex('20010db8000000000000000000000000'), endAddress: hex('20010db800000000000000000000ffff') },
    ] },
    wire: '02000000 07060010 00500050 c6130000 c613ffff 08000028 0000ffff 20010db8000000000000000000000000 20010db800000000000000000000ffff',
  },
  {
    n: 24, name: 'TSi: an undecoded selector type kept raw',
    p: { kind: 'tsi', selectors: [{ kind: 'raw', tsType: 10, bytes: hex('0a000008 01020304') }] },
    wire: '01000000 0a000008 01020304',
  },
  {
    n: 25, name: 'CP: CFG_REQUEST for an address and DNS',
    p: { kind: 'cp', cfgType: CFG_TYPE.REQUEST, attributes: [
      { type: CFG_ATTR.INTERNAL_IP4_ADDRESS, value: EMPTY }, { type: CFG_ATTR.INTERNAL_IP4_DNS, value: EMPTY }] },
    wire: '01000000 00010000 00030000',
  },
  {
    n: 26, name: 'CP: CFG_REPLY with an address',
    p: { kind: 'cp', cfgType: CFG_TYPE.REPLY, attributes: [{ type: CFG_ATTR.INTERNAL_IP4_ADDRESS, value: hex('c6120007') }] },
    wire: '02000000 00010004 c6120007',
  },
];

test('payloads: round trip of every payload type against hand-laid bytes (subarray inputs)', () => {
  const kinds = new Set<string>();
  for (const c of ROUND_TRIPS) {
    const label = `case ${c.n} (${c.name})`;
    const wire = hex(c.wire);
    assert.equal(payloadBodyLength(c.p), wire.length, label);
    const out = new Uint8Array(wire.length + 9).fill(0xee);
    assert.equal(encodePayloadBody(c.p, out, 5), wire.length, label);
    assert.equal(toHex(out.subarray(5, 5 + wire.length)), toHex(wire), label);
    assert.equal(out[4], 0xee, `${label}: wrote before its offset`);
    assert.equal(out[5 + wire.length], 0xee, `${label}: wrote past its length`);
    // Decode from a view with a non-zero byteOffset, at a non-zero offset inside it.
    const view = offsetView(Uint8Array.from([0x11, 0x22, 0x33, ...wire, 0x44]));
    assert.notEqual(view.byteOffset, 0);
    const type = payloadTypeOf(c.p);
    const d = decodePayloadBody(type, view, 3, wire.length);
    assert.notEqual(typeof d, 'string', `${label}: ${typeof d === 'string' ? d : ''}`);
    assert.deepEqual(d, c.p, label);
    kinds.add(c.p.kind);
  }
  assert.deepEqual([...kinds].sort(), ['auth', 'cp', 'delete', 'idi', 'idr', 'ke', 'nonce', 'notify', 'sa', 'tsi', 'tsr', 'vendor']);
});

test('payloads: every decoded type maps to its wire number and back', () => {
  const table: [Payload['kind'], number][] = [
    ['sa', 33], ['ke', 34], ['idi', 35], ['idr', 36], ['auth', 39], ['nonce', 40], ['notify', 41], ['delete', 42],
    ['vendor', 43], ['tsi', 44], ['tsr', 45], ['cp', 47],
  ];
  for (const [kind, t] of table) {
    const c = ROUND_TRIPS.find((r) => r.p.kind === kind);
    assert.ok(c !== undefined, kind);
    assert.equal(payloadTypeOf(c.p), t, kind);
    assert.equal(isDecodedType(t), true, kind);
  }
  assert.equal(payloadTypeOf({ kind: 'sk', innerType: 35, body: EMPTY }), PAYLOAD.SK);
  assert.equal(payloadTypeOf({ kind: 'raw', type: 37, critical: false, body: EMPTY }), 37);
  for (const t of [0, 1, 32, PAYLOAD.CERT, PAYLOAD.CERTREQ, PAYLOAD.SK, PAYLOAD.EAP, PAYLOAD.SKF, 99, 255]) {
    assert.equal(isDecodedType(t), false, `type ${t}`);
  }
});

/** Malformed bodies: every check in decodePayloadBody, with a word of the message it must give. */
const MALFORMED: { n: number; type: number; body: string; says: string }[] = [
  { n: 1, type: PAYLOAD.SA, body: '', says: 'no proposals' },
  { n: 2, type: PAYLOAD.SA, body: '00000008 010100', says: 'shorter than a proposal header' },
  { n: 3, type: PAYLOAD.SA, body: '00000007 01010000', says: 'length 7 does not fit' },
  { n: 4, type: PAYLOAD.SA, body: '0000000b 01010400 c0de01', says: 'length 11 does not fit (SPI size 4' },
  { n: 5, type: PAYLOAD.SA, body: '00000010 01010000', says: 'length 16 does not fit' },
  { n: 6, type: PAYLOAD.SA, body: '02000008 01010000', says: 'Last Substruc 2 but it is the last' },
  { n: 7, type: PAYLOAD.SA, body: '00000008 01010000 00000008 02010000', says: 'Last Substruc 0 but more follow' },
  { n: 8, type: PAYLOAD.SA, body: '0000000c 01010001 00000008', says: 'shorter than a transform header' },
  { n: 9, type: PAYLOAD.SA, body: '00000010 01010001 00000007 01000014', says: 'length 7 does not fit' },
  { n: 10, type: PAYLOAD.SA, body: '00000010 01010001 0000000c 01000014', says: 'length 12 does not fit' },
  { n: 11, type: PAYLOAD.SA, body: '00000010 01010001 03000008 01000014', says: 'Last Substruc 3 but it is the last' },
  { n: 12, type: PAYLOAD.SA, body: '00000018 01010001 00000008 01000014 00000008 02000005', says: 'Last Substruc 0 but more follow' },
  { n: 13, type: PAYLOAD.SA, body: '00000018 01010001 03000008 01000014 00000008 02000005', says: 'more transforms than Num Transforms 1' },
  { n: 14, type: PAYLOAD.SA, body: '00000010 010100ff 00000008 01000014', says: '1 transforms but Num Transforms 255' },
  { n: 15, type: PAYLOAD.SA, body: '00000008 010100ff', says: '0 transforms but Num Transforms 255' },
  { n: 16, type: PAYLOAD.SA, body: '00000012 01010001 0000000a 01000014 800e', says: 'shorter than an attribute header' },
  { n: 17, type: PAYLOAD.SA, body: '00000014 01010001 0000000c 01000014 0011ffff', says: 'length 65535 runs past the transform' },
  { n: 18, type: PAYLOAD.KE, body: '001300', says: 'KE: 3 bytes' },
  { n: 19, type: PAYLOAD.IDI, body: '010000', says: 'IDi: 3 bytes' },
  { n: 20, type: PAYLOAD.IDR, body: '01000000 c00002', says: 'ID_IPV4_ADDR with 3 bytes' },
  { n: 21, type: PAYLOAD.IDI, body: '05000000 c0000201', says: 'ID_IPV6_ADDR with 4 bytes' },
  { n: 22, type: PAYLOAD.IDI, body: '02000000', says: 'ID type 2 with no data' },
  { n: 23, type: PAYLOAD.AUTH, body: '020000', says: 'AUTH: 3 bytes' },
  { n: 24, type: PAYLOAD.NONCE, body: toHex(seq(15)), says: 'Nonce: 15 bytes' },
  { n: 25, type: PAYLOAD.NONCE, body: toHex(seq(257)), says: 'Nonce: 257 bytes' },
  { n: 26, type: PAYLOAD.NONCE, body: '', says: 'Nonce: 0 bytes' },
  { n: 27, type: PAYLOAD.NOTIFY, body: '000040', says: 'Notify: 3 bytes' },
  { n: 28, type: PAYLOAD.NOTIFY, body: '03054009 c0de0102', says: 'SPI size 5 runs past' },
  { n: 29, type: PAYLOAD.DELETE, body: '0304', says: 'Delete: 2 bytes' },
  { n: 30, type: PAYLOAD.DELETE, body: '0304ffff c0de0102', says: '65535 SPIs of 4 bytes do not fill 4 bytes' },
  { n: 31, type: PAYLOAD.DELETE, body: '0100ffff', says: '65535 SPIs of size 0' },
  { n: 32, type: PAYLOAD.TSI, body: '010000', says: 'TSi: 3 bytes' },
  { n: 33, type: PAYLOAD.TSR, body: '00000000', says: 'TSr: Number of TSs is 0' },
  { n: 34, type: PAYLOAD.TSI, body: '01000000 07000010 0000ffff 00000000 ffffffff 07000010 0000ffff 00000000 ffffffff', says: 'more selectors than Number of TSs 1' },
  { n: 35, type: PAYLOAD.TSI, body: 'ff000000 07000010 0000ffff 00000000 ffffffff', says: '1 selectors but Number of TSs 255' },
  { n: 36, type: PAYLOAD.TSI, body: '01000000 070000', says: 'shorter than a selector header' },
  { n: 37, type: PAYLOAD.TSI, body: '01000000 0a000003 01', says: 'length 3 does not fit' },
  { n: 38, type: PAYLOAD.TSI, body: '01000000 07000011 0000ffff 00000000 ffffffff', says: 'length 17 does not fit' },
  { n: 39, type: PAYLOAD.TSI, body: '01000000 07000014 0000ffff 00000000 ffffffff 00000000', says: 'type 7 with length 20, not 16' },
  { n: 40, type: PAYLOAD.TSR, body: '01000000 08000010 0000ffff 00000000 ffffffff', says: 'type 8 with length 16, not 40' },
  { n: 41, type: PAYLOAD.CP, body: '0100', says: 'CP: 2 bytes' },
  { n: 42, type: PAYLOAD.CP, body: '01000000 0001', says: 'shorter than its header' },
  { n: 43, type: PAYLOAD.CP, body: '01000000 00010004 c612', says: 'length 4 runs past the payload' },
  { n: 44, type: PAYLOAD.CERT, body: '04', says: 'not decoded here' },
  { n: 45, type: PAYLOAD.SK, body: '00', says: 'not decoded here' },
];

test('payloads: every malformed body is a value naming the problem, never a throw', () => {
  for (const c of MALFORMED) {
    const body = hex(c.body);
    const view = offsetView(Uint8Array.from([0x5a, ...body, 0x5a]));
    const d = decodePayloadBody(c.type, view, 1, body.length);
    if (typeof d !== 'string') assert.fail(`case ${c.n}: decoded a ${d.kind} payload`);
    assert.ok(d.includes(c.says), `case ${c.n}: "${d}" lacks "${c.says}"`);
  }
});

test('payloads: a span outside the buffer is refused', () => {
  const b = new Uint8Array(8);
  for (const [n, off, len] of [[1, -1, 4], [2, 0, 9], [3, 5, 4], [4, 0.5, 4], [5, 0, -1]] as const) {
    assert.equal(decodePayloadBody(PAYLOAD.VENDOR_ID, b, off, len), 'body outside the buffer', `case ${n}`);
  }
});

test('payloads: decoded fields are views of the input (parseIkeMessage copies first)', () => {
  const body = hex('00004004' + toHex(seq(20)));
  const d = decodePayloadBody(PAYLOAD.NOTIFY, body, 0, body.length);
  assert.ok(typeof d !== 'string' && d.kind === 'notify');
  body[4] = 0x99;
  assert.equal(d.data[0], 0x99);
});

/** Payloads the encoder must refuse (RangeError), so nothing unsendable is ever truncated onto the wire. */
const UNENCODABLE: { n: number; p: Payload; says: RegExp }[] = [
  { n: 1, p: { kind: 'nonce', data: seq(15) }, says: /Nonce: 15 bytes/ },
  { n: 2, p: { kind: 'nonce', data: seq(257) }, says: /Nonce: 257 bytes/ },
  { n: 3, p: { kind: 'idi', idType: ID.IPV4_ADDR, data: hex('c00002') }, says: /ID_IPV4_ADDR with 3 bytes/ },
  { n: 4, p: { kind: 'idr', idType: ID.FQDN, data: EMPTY }, says: /no data/ },
  { n: 5, p: { kind: 'sa', proposals: [] }, says: /no proposals/ },
  { n: 6, p: { kind: 'sa', proposals: [{ num: 256, protocol: 1, spi: EMPTY, transforms: [] }] }, says: /proposal num 256/ },
  { n: 7, p: { kind: 'sa', proposals: [{ num: 1, protocol: 1, spi: EMPTY, transforms: [{ type: 1, id: 70000, attributes: [] }] }] }, says: /transform id 70000/ },
  { n: 8, p: { kind: 'sa', proposals: [{ num: 1, protocol: 1, spi: EMPTY, transforms: [{ type: 1, id: 20, attributes: [{ type: 40000, value: 1 }] }] }] }, says: /attribute type 40000/ },
  { n: 9, p: { kind: 'sa', proposals: [{ num: 1, protocol: 1, spi: EMPTY, transforms: [{ type: 1, id: 20, attributes: [{ type: 14, value: 65536 }] }] }] }, says: /TV attribute value 65536/ },
  { n: 10, p: { kind: 'sa', proposals: [{ num: 1, protocol: 1, spi: seq(256), transforms: [] }] }, says: /SPI size 256/ },
  { n: 11, p: { kind: 'ke', group: 65536, data: EMPTY }, says: /KE: group 65536/ },
  { n: 12, p: { kind: 'notify', protocol: 256, spi: EMPTY, notifyType: 1, data: EMPTY }, says: /protocol 256/ },
  { n: 13, p: { kind: 'notify', protocol: 0, spi: EMPTY, notifyType: 65536, data: EMPTY }, says: /Notify: type 65536/ },
  { n: 14, p: { kind: 'delete', protocol: 3, spiSize: 4, spis: [hex('c0de01')] }, says: /3-byte SPI with SPI size 4/ },
  { n: 15, p: { kind: 'tsi', selectors: [] }, says: /no selectors/ },
  { n: 16, p: { kind: 'tsi', selectors: [{ kind: 'range', tsType: 7, ipProtocol: 0, startPort: 0, endPort: 65536, startAddress: seq(4), endAddress: seq(4) }] }, says: /end port 65536/ },
  { n: 17, p: { kind: 'tsr', selectors: [{ kind: 'range', tsType: 8, ipProtocol: 0, startPort: 0, endPort: 1, startAddress: seq(4), endAddress: seq(4) }] }, says: /16-byte addresses/ },
  { n: 18, p: { kind: 'tsi', selectors: [{ kind: 'raw', tsType: 10, bytes: hex('0a000009 01020304') }] }, says: /not a whole selector/ },
  { n: 19, p: { kind: 'tsi', selectors: [{ kind: 'raw', tsType: 7, bytes: hex('07000004') }] }, says: /not a whole selector/ },
  { n: 20, p: { kind: 'cp', cfgType: 1, attributes: [{ type: 0x8001, value: EMPTY }] }, says: /attribute type 32769/ },
  { n: 21, p: { kind: 'vendor', data: new Uint8Array(MAX_BODY_LEN + 1) }, says: /exceeds 65531/ },
  { n: 22, p: { kind: 'raw', type: PAYLOAD.NONCE, critical: false, body: seq(16) }, says: /raw payload of decoded type 40/ },
  { n: 23, p: { kind: 'raw', type: PAYLOAD.SK, critical: false, body: EMPTY }, says: /raw payload of decoded type 46/ },
  { n: 24, p: { kind: 'raw', type: 300, critical: false, body: EMPTY }, says: /payload type 300/ },
  { n: 25, p: { kind: 'sk', innerType: -1, body: EMPTY }, says: /SK: inner type -1/ },
  { n: 26, p: { kind: 'delete', protocol: 1, spiSize: 0, spis: [EMPTY] }, says: /1 SPIs of size 0/ },
];

test('payloads: values that do not fit the wire throw RangeError on encode', () => {
  for (const c of UNENCODABLE) {
    assert.throws(() => checkPayload(c.p), (e: unknown) => e instanceof RangeError && c.says.test(e.message), `case ${c.n}`);
    assert.throws(() => encodePayloadBody(c.p, new Uint8Array(70000), 0), RangeError, `case ${c.n}`);
  }
  // A body exactly MAX_BODY_LEN long is fine; a buffer without room is not.
  assert.equal(payloadBodyLength({ kind: 'vendor', data: new Uint8Array(MAX_BODY_LEN) }), MAX_BODY_LEN);
  assert.throws(() => encodePayloadBody({ kind: 'vendor', data: seq(8) }, new Uint8Array(10), 3), /no room/);
});

test('payloads: helpers', () => {
  const t = transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256);
  assert.equal(keyLengthOf(t), 256);
  assert.equal(keyLengthOf(transform(TRANSFORM.PRF, PRF.HMAC_SHA2_256)), undefined);
  assert.equal(keyLengthOf({ type: 1, id: 20, attributes: [{ type: 14, value: hex('0100') }] }), undefined, 'TLV key length is not a key length');
  assert.deepEqual(notify(NOTIFY.INITIAL_CONTACT), { kind: 'notify', protocol: 0, spi: EMPTY, notifyType: 16384, data: EMPTY });
  assert.equal(toHex(spi32(0xc0de0102)), 'c0de0102');
  assert.equal(readSpi32(hex('c0de0102')), 0xc0de0102);
  assert.equal(readSpi32(offsetView(hex('ffffffff'))), 0xffffffff);
  assert.equal(readSpi32(hex('0102')), undefined);
  assert.throws(() => spi32(2 ** 32), RangeError);
});
