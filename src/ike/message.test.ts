import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DH, ENCR, EXCHANGE, NOTIFY, PAYLOAD, PRF, PROTOCOL, TRANSFORM } from './constants.js';
import {
  IKE_HEADER_LEN, IKE_MAX_PAYLOADS, IKE_PARSE_REASONS, encodeIkeMessage, encodePayloadChain, ikeMessageLength,
  isIkeParseError, notifyForParseError, parseIkeHeader, parseIkeMessage, parsePayloadChain, serializeIkeMessage,
} from './message.js';
import type { IkeHeader, IkeMessage, IkeParseError, IkeParseReason, ParsedIkeMessage } from './message.js';
import { notify, transform } from './payloads.js';
import type { Payload } from './payloads.js';
import { hex, offsetView, toHex } from '../../test/support/vectors/load.js';

/*
 * Real captured messages: Wireshark's test capture test/captures/ikev2-decrypt-aes128ccm12.pcap
 * (frames 1-4: IKE_SA_INIT request and response, then an encrypted INFORMATIONAL exchange),
 * as transcribed byte for byte in scapy's test/contrib/ikev2.uts ("Dissect Initiator Request",
 * "Dissect Responder Response", "Dissect Encrypted Inititor Request/Responder Response"). The
 * UDP payloads below were cut from those Ethernet frames; the IPv4 header checksum and the UDP
 * checksum of all four frames verify, so the transcription is exact. The exchange negotiates
 * ENCR_AES_CCM_12/128, PRF_HMAC_SHA2_256 and group 19.
 */
const CAPTURED_SA_INIT_REQUEST =
  'ea684d21597afd36 0000000000000000 21202208 00000000 000000f8' +
  '22000028 00000024 01010003 0300000c 0100000f 800e0080 03000008 02000005 00000008 04000013' +
  '28000048 00130000 32c6dffe5c43b0d5811f7eaaa84c9f78bf99b9069c2b072e0b82f46bf6f66dd4' +
  '5f97ef89ee285fd5df527a44776b529fc9d8a909d842a6fb59b96a0953956172' +
  '29000024 b655462d6f4b66f872ccd7f0f4b4857732921339cbaa5237edba244f262b6823' +
  '2900001c 00004004 949c9db5739d75a974a49c184618369b34b7f942' +
  '2900001c 00004005 3e721b46be07d53111425d7f80d2c6e220c6072e' +
  '00000010 0000402f 0001000200030004';
const CAPTURED_SA_INIT_RESPONSE =
  'ea684d21597afd36 d9fe2ab22dac23ac 21202220 00000000 000000f0' +
  '22000028 00000024 01010003 0300000c 0100000f 800e0080 03000008 02000005 00000008 04000013' +
  '28000048 00130000 2c66beadb6ce8535d6218cb401aa5a1eb4035b97caddaf36374a979c0446b880' +
  '0506bf9d6f950952326bf3011913da93bb8e40f815376be1a06801c0a63e3b54' +
  '29000024 9e5d267379e681e7d38d81c710d383401de7e3607b926d90a9958adcb52831aa' +
  '2900001c 00004004 7a0785273d59203829a697550f31cbb94eb72b43' +
  '2900001c 00004005 c3e58a8cc9933ce0b78f2a50e8de80134e12ce31' +
  '00000008 00004014';
const CAPTURED_INFORMATIONAL_REQUEST =
  'ea684d21597afd36 d9fe2ab22dac23ac 2e202508 00000002 0000003d' +
  '2a000021 cca0b35de5abc51c 9987cbf1f5ecff210eb767cdb85179383b964d78e2';
const CAPTURED_INFORMATIONAL_RESPONSE =
  'ea684d21597afd36 d9fe2ab22dac23ac 2e202520 00000002 00000035' +
  '00000019 a80c957bac15c3f8 afdf315a81cc4b7c40e8660d44';

/** parseAt parses bytes placed at offset 5 of a larger buffer that is itself a view with a non-zero byteOffset. */
function parseAt(bytes: Uint8Array): ParsedIkeMessage | IkeParseError {
  const v = offsetView(Uint8Array.from([1, 2, 3, 4, 5, ...bytes, 6, 7]));
  assert.notEqual(v.byteOffset, 0);
  return parseIkeMessage(v, 5, bytes.length);
}

function parsed(bytes: Uint8Array): ParsedIkeMessage {
  const r = parseAt(bytes);
  if (isIkeParseError(r)) assert.fail(`expected a message, got ${r.reason}: ${r.detail}`);
  return r;
}

function refused(bytes: Uint8Array): IkeParseError {
  const r = parseAt(bytes);
  if (!isIkeParseError(r)) assert.fail(`expected a refusal, got ${r.payloads.length} payloads`);
  return r;
}

test('message: captured IKE_SA_INIT request parses field by field and re-serializes to the same bytes', () => {
  const wire = hex(CAPTURED_SA_INIT_REQUEST);
  assert.equal(wire.length, 248);
  const m = parsed(wire);
  assert.deepEqual(m.header, {
    spiI: 0xea684d21597afd36n, spiR: 0n, exchangeType: EXCHANGE.IKE_SA_INIT,
    initiator: true, response: false, higherVersion: false, messageId: 0,
  });
  assert.deepEqual(m.payloads.map((p) => p.kind), ['sa', 'ke', 'nonce', 'notify', 'notify', 'notify']);
  const [sa, ke, nonce, natS, natD, hashes] = m.payloads;
  assert.deepEqual(sa, { kind: 'sa', proposals: [{ num: 1, protocol: PROTOCOL.IKE, spi: new Uint8Array(0), transforms: [
    transform(TRANSFORM.ENCR, ENCR.AES_CCM_12, 128), transform(TRANSFORM.PRF, PRF.HMAC_SHA2_256), transform(TRANSFORM.DH, DH.ECP_256)] }] });
  assert.ok(ke.kind === 'ke' && nonce.kind === 'nonce' && natS.kind === 'notify' && natD.kind === 'notify' && hashes.kind === 'notify');
  assert.equal(ke.group, DH.ECP_256);
  assert.equal(ke.data.length, 64);
  assert.equal(toHex(ke.data.subarray(0, 4)), '32c6dffe');
  assert.equal(nonce.data.length, 32);
  assert.equal(toHex(nonce.data.subarray(0, 4)), 'b655462d');
  assert.deepEqual([natS.notifyType, natS.protocol, natS.spi.length, natS.data.length], [NOTIFY.NAT_DETECTION_SOURCE_IP, 0, 0, 20]);
  assert.deepEqual([natD.notifyType, natD.data.length], [NOTIFY.NAT_DETECTION_DESTINATION_IP, 20]);
  assert.equal(hashes.notifyType, NOTIFY.SIGNATURE_HASH_ALGORITHMS);
  assert.equal(toHex(hashes.data), '0001000200030004');
  assert.equal(m.skOffset, -1);
  assert.equal(toHex(m.bytes), toHex(wire));
  assert.equal(toHex(m.bodies[2]), toHex(nonce.data));
  assert.equal(m.bodies.length, m.payloads.length);
  // The exact bytes back.
  assert.equal(ikeMessageLength(m), 248);
  assert.equal(toHex(serializeIkeMessage(m)), toHex(wire));
});

test('message: captured IKE_SA_INIT response parses and re-serializes to the same bytes', () => {
  const wire = hex(CAPTURED_SA_INIT_RESPONSE);
  const m = parsed(wire);
  assert.deepEqual(m.header, {
    spiI: 0xea684d21597afd36n, spiR: 0xd9fe2ab22dac23acn, exchangeType: EXCHANGE.IKE_SA_INIT,
    initiator: false, response: true, higherVersion: false, messageId: 0,
  });
  assert.deepEqual(m.payloads.map((p) => p.kind === 'notify' ? p.notifyType : p.kind),
    ['sa', 'ke', 'nonce', NOTIFY.NAT_DETECTION_SOURCE_IP, NOTIFY.NAT_DETECTION_DESTINATION_IP, NOTIFY.MULTIPLE_AUTH_SUPPORTED]);
  const last = m.payloads[5];
  assert.ok(last.kind === 'notify' && last.data.length === 0);
  const out = Buffer.alloc(wire.length + 20);
  assert.equal(encodeIkeMessage(m, out, 7), wire.length);
  assert.equal(toHex(out.subarray(7, 7 + wire.length)), toHex(wire));
});

test('message: captured encrypted INFORMATIONAL messages carry SK as an opaque last payload', () => {
  const cases: { n: number; wire: string; innerType: number; bodyLen: number; initiator: boolean; response: boolean }[] = [
    { n: 1, wire: CAPTURED_INFORMATIONAL_REQUEST, innerType: PAYLOAD.DELETE, bodyLen: 29, initiator: true, response: false },
    { n: 2, wire: CAPTURED_INFORMATIONAL_RESPONSE, innerType: PAYLOAD.NONE, bodyLen: 21, initiator: false, response: true },
  ];
  for (const c of cases) {
    const wire = hex(c.wire);
    const m = parsed(wire);
    assert.equal(m.header.exchangeType, EXCHANGE.INFORMATIONAL, `case ${c.n}`);
    assert.equal(m.header.messageId, 2, `case ${c.n}`);
    assert.deepEqual([m.header.initiator, m.header.response], [c.initiator, c.response], `case ${c.n}`);
    assert.equal(m.payloads.length, 1, `case ${c.n}`);
    const sk = m.payloads[0];
    assert.ok(sk.kind === 'sk', `case ${c.n}`);
    assert.equal(sk.innerType, c.innerType, `case ${c.n}`);
    assert.equal(sk.body.length, c.bodyLen, `case ${c.n}`);
    assert.equal(toHex(sk.body), toHex(wire.subarray(IKE_HEADER_LEN + 4)), `case ${c.n}`);
    assert.equal(m.skOffset, IKE_HEADER_LEN, `case ${c.n}`);
    assert.equal(toHex(serializeIkeMessage(m)), toHex(wire), `case ${c.n}`);
  }
});

test('message: the parse result never aliases the caller\'s buffer', () => {
  const wire = hex(CAPTURED_SA_INIT_REQUEST);
  const m = parseIkeMessage(wire, 0, wire.length);
  assert.ok(!isIkeParseError(m));
  const before = toHex(serializeIkeMessage(m));
  wire.fill(0);
  assert.equal(toHex(serializeIkeMessage(m)), before);
  assert.equal(toHex(m.bytes), before);
});

// ---------------------------------------------------------------------------------------------
// Crafted messages

const SPI_I = '0102030405060708';
const SPI_R = '1112131415161718';

/** gp lays out one payload by hand: generic header (next, flags, length) + body. */
function gp(next: number, body: string, flags = 0, lengthOverride?: number): string {
  const b = hex(body);
  const len = lengthOverride ?? 4 + b.length;
  return toHex(Uint8Array.of(next, flags, len >> 8, len & 0xff)) + toHex(b);
}

/** raw lays out a whole message by hand around a chain (hex) whose first payload is `first`. */
function raw(first: number, chain: string, o: { version?: number; flags?: number; length?: number; trailing?: number } = {}): Uint8Array {
  const body = hex(chain);
  const len = o.length ?? IKE_HEADER_LEN + body.length;
  const h = hex(SPI_I + SPI_R);
  const out = new Uint8Array(IKE_HEADER_LEN + body.length + (o.trailing ?? 0));
  out.set(h, 0);
  out.set([first, o.version ?? 0x20, EXCHANGE.IKE_SA_INIT, o.flags ?? 0x08, 0, 0, 0, 0, len >>> 24, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff], 16);
  out.set(body, IKE_HEADER_LEN);
  return out;
}

const NONCE16 = '000102030405060708090a0b0c0d0e0f';
const VENDOR = (next: number): string => gp(next, '');

test('message: unknown payloads: skipped and kept raw unless critical (RFC 7296 §2.5)', () => {
  // 1. Unknown type 99, not critical, between a Nonce and a Notify: kept raw, the chain goes on.
  const w1 = raw(PAYLOAD.NONCE, gp(99, NONCE16) + gp(PAYLOAD.NOTIFY, 'deadbeef') + gp(0, '00004007'));
  const m1 = parsed(w1);
  assert.deepEqual(m1.payloads.map((p) => p.kind), ['nonce', 'raw', 'notify']);
  assert.deepEqual(m1.payloads[1], { kind: 'raw', type: 99, critical: false, body: hex('deadbeef') });
  assert.equal(toHex(serializeIkeMessage(m1)), toHex(w1), 'case 1: byte-exact round trip');
  // 2. The same payload critical: the whole message is refused, naming type 99.
  const e2 = refused(raw(PAYLOAD.NONCE, gp(99, NONCE16) + gp(PAYLOAD.NOTIFY, 'deadbeef', 0x80) + gp(0, '00004007')));
  assert.equal(e2.reason, 'unsupported-critical');
  assert.equal(e2.payloadType, 99);
  assert.deepEqual(notifyForParseError(e2), { notifyType: NOTIFY.UNSUPPORTED_CRITICAL_PAYLOAD, data: Uint8Array.of(99) });
  assert.equal(e2.header?.spiI, 0x0102030405060708n, 'case 2: the header comes with the error');
  // 3. A payload this codec decodes, critical bit set: the bit is ignored (and written back as 0).
  const w3 = raw(PAYLOAD.NONCE, gp(0, NONCE16, 0x80));
  const m3 = parsed(w3);
  assert.deepEqual(m3.payloads.map((p) => p.kind), ['nonce']);
  const back = serializeIkeMessage(m3);
  assert.equal(back[IKE_HEADER_LEN + 1], 0);
  back[IKE_HEADER_LEN + 1] = 0x80;
  assert.equal(toHex(back), toHex(w3));
  // 4. CERTREQ (defined in RFC 7296 but not decoded here), not critical: raw.
  const m4 = parsed(raw(PAYLOAD.CERTREQ, gp(0, '04' + '00'.repeat(20))));
  assert.deepEqual(m4.payloads.map((p) => p.kind === 'raw' ? p.type : p.kind), [PAYLOAD.CERTREQ]);
  // 5. CERT critical: not understood, so refused.
  const e5 = refused(raw(PAYLOAD.CERT, gp(0, '04aa', 0x80)));
  assert.deepEqual([e5.reason, e5.payloadType], ['unsupported-critical', PAYLOAD.CERT]);
  // 6. A raw critical payload round-trips its bit when it is built by the caller.
  const w6 = serializeIkeMessage({ header: header(), payloads: [{ kind: 'raw', type: 200, critical: true, body: hex('01') }] });
  assert.equal(w6[IKE_HEADER_LEN + 1], 0x80);
  assert.equal(refused(w6).payloadType, 200);
});

function header(o: Partial<IkeHeader> = {}): IkeHeader {
  return { spiI: 0x0102030405060708n, spiR: 0n, exchangeType: EXCHANGE.IKE_SA_INIT, initiator: true, response: false, higherVersion: false, messageId: 0, ...o };
}

/** Every parse reason message.ts can give, from crafted bytes (the SK reasons are in sk.test.ts). */
const REFUSALS: { n: number; name: string; bytes: () => Uint8Array; reason: IkeParseReason; payloadType?: number; says: string }[] = [
  { n: 1, name: '27 bytes', bytes: () => hex(CAPTURED_SA_INIT_REQUEST).subarray(0, 27), reason: 'truncated', says: 'shorter than the 28-byte header' },
  { n: 2, name: 'Length says more than the datagram', bytes: () => hex(CAPTURED_SA_INIT_REQUEST).subarray(0, 200), reason: 'truncated', says: 'Length field 248, only 200 bytes' },
  { n: 3, name: 'major version 3', bytes: () => raw(0, '', { version: 0x30 }), reason: 'bad-version', says: 'major version 3' },
  { n: 4, name: 'IKEv1 (major version 1)', bytes: () => raw(0, '', { version: 0x10 }), reason: 'bad-version', says: 'major version 1' },
  { n: 5, name: 'Length below the header size', bytes: () => raw(0, '', { length: 20 }), reason: 'bad-length', says: 'Length field 20 in a 28-byte datagram' },
  { n: 6, name: 'bytes after the message in the datagram', bytes: () => raw(0, '', { trailing: 4 }), reason: 'bad-length', says: 'Length field 28 in a 32-byte datagram' },
  {
    n: 7, name: `${IKE_MAX_PAYLOADS + 1} empty Vendor IDs`,
    bytes: () => raw(PAYLOAD.VENDOR_ID, VENDOR(PAYLOAD.VENDOR_ID).repeat(IKE_MAX_PAYLOADS) + VENDOR(0)),
    reason: 'too-many-payloads', payloadType: PAYLOAD.VENDOR_ID, says: `more than ${IKE_MAX_PAYLOADS} payloads`,
  },
  { n: 8, name: 'header announces an SA, nothing follows', bytes: () => raw(PAYLOAD.SA, ''), reason: 'truncated-chain', payloadType: PAYLOAD.SA, says: 'payload 1 (type 33) announced, 0 bytes left' },
  { n: 9, name: 'last payload announces a Nonce', bytes: () => raw(PAYLOAD.VENDOR_ID, VENDOR(PAYLOAD.NONCE)), reason: 'truncated-chain', payloadType: PAYLOAD.NONCE, says: 'payload 2 (type 40) announced' },
  { n: 10, name: 'three bytes where a payload header should be', bytes: () => raw(PAYLOAD.VENDOR_ID, VENDOR(PAYLOAD.NONCE) + '000000'), reason: 'truncated-chain', says: '3 bytes left' },
  { n: 11, name: 'Payload Length 3', bytes: () => raw(PAYLOAD.VENDOR_ID, gp(0, '00', 0, 3)), reason: 'bad-payload-length', payloadType: PAYLOAD.VENDOR_ID, says: 'length 3' },
  { n: 12, name: 'Payload Length 0 (would loop forever)', bytes: () => raw(PAYLOAD.VENDOR_ID, gp(PAYLOAD.VENDOR_ID, '', 0, 0)), reason: 'bad-payload-length', says: 'length 0' },
  { n: 13, name: 'Payload Length past the end', bytes: () => raw(PAYLOAD.NONCE, gp(0, NONCE16, 0, 21)), reason: 'bad-payload-length', payloadType: PAYLOAD.NONCE, says: 'length 21, 20 bytes left' },
  { n: 14, name: 'bytes after the last payload', bytes: () => raw(PAYLOAD.VENDOR_ID, VENDOR(0) + '00000004'), reason: 'trailing-bytes', says: '4 bytes after the last payload' },
  { n: 15, name: 'a payload after the Encrypted payload', bytes: () => raw(PAYLOAD.SK, gp(PAYLOAD.NOTIFY, '00'.repeat(25)) + gp(0, '00004007')), reason: 'sk-not-last', payloadType: PAYLOAD.SK, says: '8 bytes after the Encrypted payload' },
  { n: 16, name: 'an 8-byte Nonce', bytes: () => raw(PAYLOAD.NONCE, gp(0, '0001020304050607')), reason: 'malformed', payloadType: PAYLOAD.NONCE, says: 'Nonce: 8 bytes' },
  { n: 17, name: 'SA claiming 255 transforms', bytes: () => raw(PAYLOAD.SA, gp(0, '00000008 010100ff')), reason: 'malformed', payloadType: PAYLOAD.SA, says: 'Num Transforms 255' },
  { n: 18, name: 'Delete claiming 65535 SPIs', bytes: () => raw(PAYLOAD.DELETE, gp(0, '0304ffff')), reason: 'malformed', payloadType: PAYLOAD.DELETE, says: '65535 SPIs' },
  { n: 19, name: 'unknown critical payload', bytes: () => raw(250, gp(0, '', 0x80)), reason: 'unsupported-critical', payloadType: 250, says: 'payload type 250 is critical' },
];

test('message: every refusal reason from crafted bytes, as a value with the payload type', () => {
  const seen = new Set<IkeParseReason>();
  for (const c of REFUSALS) {
    const label = `case ${c.n} (${c.name})`;
    const e = refused(c.bytes());
    assert.equal(e.reason, c.reason, `${label}: ${e.detail}`);
    if (c.payloadType !== undefined) assert.equal(e.payloadType, c.payloadType, label);
    assert.ok(e.detail.includes(c.says), `${label}: "${e.detail}" lacks "${c.says}"`);
    if (c.reason !== 'truncated') assert.equal(e.header?.spiI, c.n <= 2 ? 0xea684d21597afd36n : 0x0102030405060708n, `${label}: header`);
    seen.add(c.reason);
  }
  // nested-sk comes from the chain inside an SK, which sk.ts parses with allowSk false.
  const inner = hex(gp(0, '00'.repeat(8)));
  const e = parsePayloadChain(offsetView(inner), 0, inner.length, PAYLOAD.SK, false);
  assert.ok(isIkeParseError(e));
  assert.equal(e.reason, 'nested-sk');
  seen.add(e.reason);
  const skReasons: IkeParseReason[] = ['no-sk', 'sk-truncated', 'sk-auth', 'sk-bad-padding'];
  assert.deepEqual(IKE_PARSE_REASONS.filter((r) => !seen.has(r)), skReasons, 'every non-SK reason is covered here');
});

test('message: version details, the V flag and reserved bits', () => {
  // 1. INVALID_MAJOR_VERSION only for a higher major version; IKEv1 is just dropped.
  const e3 = refused(raw(0, '', { version: 0x30 }));
  assert.equal(e3.majorVersion, 3);
  assert.deepEqual(notifyForParseError(e3), { notifyType: NOTIFY.INVALID_MAJOR_VERSION, data: new Uint8Array(0) });
  assert.equal(notifyForParseError(refused(raw(0, '', { version: 0x10 }))), undefined);
  // 2. Minor version is ignored and written back as 0; all flags read; unknown flag bits dropped.
  const m = parsed(raw(0, '', { version: 0x2f, flags: 0xff }));
  assert.deepEqual([m.header.initiator, m.header.response, m.header.higherVersion], [true, true, true]);
  const back = serializeIkeMessage(m);
  assert.equal(back[17], 0x20);
  assert.equal(back[19], 0x38);
  // 3. A message with no payloads at all.
  const empty = raw(0, '', { flags: 0x20 });
  const me = parsed(empty);
  assert.deepEqual(me.payloads, []);
  assert.equal(toHex(serializeIkeMessage(me)), toHex(empty));
});

test('message: parseIkeHeader reads the header alone', () => {
  const w = parseIkeHeader(offsetView(hex(CAPTURED_SA_INIT_RESPONSE)), 0, 240);
  assert.ok(!isIkeParseError(w));
  assert.deepEqual([w.nextPayload, w.majorVersion, w.minorVersion, w.length], [PAYLOAD.SA, 2, 0, 240]);
  assert.equal(w.header.spiR, 0xd9fe2ab22dac23acn);
  const spans: [number, number, number][] = [[1, 0, 27], [2, -1, 28], [3, 0, 300], [4, 1.5, 28]];
  for (const [n, off, len] of spans) {
    const r = parseIkeHeader(hex(CAPTURED_SA_INIT_RESPONSE), off, len);
    assert.ok(isIkeParseError(r) && r.reason === 'truncated', `case ${n}`);
    const r2 = parseIkeMessage(hex(CAPTURED_SA_INIT_RESPONSE), off, len);
    assert.ok(isIkeParseError(r2) && r2.reason === 'truncated', `case ${n}`);
  }
});

test('message: build an espgate IKE_SA_INIT and read it back', () => {
  const payloads: Payload[] = [
    { kind: 'sa', proposals: [{ num: 1, protocol: PROTOCOL.IKE, spi: new Uint8Array(0), transforms: [
      transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256), transform(TRANSFORM.PRF, PRF.HMAC_SHA2_256), transform(TRANSFORM.DH, DH.CURVE25519)] }] },
    { kind: 'ke', group: DH.CURVE25519, data: new Uint8Array(32).fill(9) },
    { kind: 'nonce', data: new Uint8Array(32).fill(7) },
    notify(NOTIFY.NAT_DETECTION_SOURCE_IP, new Uint8Array(20).fill(1)),
    notify(NOTIFY.NAT_DETECTION_DESTINATION_IP, new Uint8Array(20).fill(2)),
    { kind: 'vendor', data: hex('6573706761746500') },
  ];
  const msg: IkeMessage = { header: header({ spiI: 0xfedcba9876543210n, messageId: 0 }), payloads };
  const wire = serializeIkeMessage(msg);
  // Header laid out by hand: SPIs, next SA (0x21), 2.0, IKE_SA_INIT (0x22), I flag, ID 0, length.
  assert.equal(toHex(wire.subarray(0, 28)), `fedcba9876543210 0000000000000000 21202208 00000000 ${wire.length.toString(16).padStart(8, '0')}`.replace(/ /g, ''));
  const m = parsed(wire);
  assert.deepEqual(m.header, msg.header);
  assert.deepEqual(m.payloads, payloads);
  // Next Payload chain by hand: SA -> KE -> Ni -> N -> N -> V -> none.
  const nexts: number[] = [];
  for (let p = IKE_HEADER_LEN; p < wire.length; p += wire.readUInt16BE(p + 2)) nexts.push(wire[p]);
  assert.deepEqual(nexts, [PAYLOAD.KE, PAYLOAD.NONCE, PAYLOAD.NOTIFY, PAYLOAD.NOTIFY, PAYLOAD.VENDOR_ID, PAYLOAD.NONE]);
});

test('message: encoding refuses what cannot go on the wire', () => {
  const sk: Payload = { kind: 'sk', innerType: 0, body: new Uint8Array(25) };
  const cases: { n: number; m: IkeMessage; says: RegExp }[] = [
    { n: 1, m: { header: header({ spiI: -1n }), payloads: [] }, says: /spiI -1/ },
    { n: 2, m: { header: header({ spiR: 1n << 64n }), payloads: [] }, says: /spiR 18446744073709551616/ },
    { n: 3, m: { header: header({ messageId: 2 ** 32 }), payloads: [] }, says: /message ID/ },
    { n: 4, m: { header: header({ exchangeType: 256 }), payloads: [] }, says: /exchange type 256/ },
    { n: 5, m: { header: header(), payloads: [sk, notify(NOTIFY.INITIAL_CONTACT)] }, says: /Encrypted payload must be last/ },
    { n: 6, m: { header: header(), payloads: Array.from({ length: IKE_MAX_PAYLOADS + 1 }, (): Payload => ({ kind: 'vendor', data: new Uint8Array(0) })) }, says: /more than 128/ },
    { n: 7, m: { header: header(), payloads: [{ kind: 'nonce', data: new Uint8Array(8) }] }, says: /Nonce: 8 bytes/ },
  ];
  for (const c of cases) {
    assert.throws(() => serializeIkeMessage(c.m), (e: unknown) => e instanceof RangeError && c.says.test(e.message), `case ${c.n}`);
  }
  assert.throws(() => encodeIkeMessage({ header: header(), payloads: [] }, new Uint8Array(27), 0), /no room/);
  assert.throws(() => encodePayloadChain([sk], new Uint8Array(100), 0, false), /inside an Encrypted payload/);
  // An SK payload last is fine.
  const w = serializeIkeMessage({ header: header(), payloads: [notify(NOTIFY.INITIAL_CONTACT), sk] });
  assert.equal(parsed(w).skOffset, IKE_HEADER_LEN + 8);
});

test('message: notifyForParseError covers every reason', () => {
  const expect: Record<IkeParseReason, number | undefined> = {
    'truncated': undefined,
    'bad-version': NOTIFY.INVALID_MAJOR_VERSION,
    'bad-length': NOTIFY.INVALID_SYNTAX,
    'too-many-payloads': NOTIFY.INVALID_SYNTAX,
    'truncated-chain': NOTIFY.INVALID_SYNTAX,
    'bad-payload-length': NOTIFY.INVALID_SYNTAX,
    'trailing-bytes': NOTIFY.INVALID_SYNTAX,
    'sk-not-last': NOTIFY.INVALID_SYNTAX,
    'nested-sk': NOTIFY.INVALID_SYNTAX,
    'malformed': NOTIFY.INVALID_SYNTAX,
    'unsupported-critical': NOTIFY.UNSUPPORTED_CRITICAL_PAYLOAD,
    'no-sk': undefined,
    'sk-truncated': undefined,
    'sk-auth': undefined,
    'sk-bad-padding': NOTIFY.INVALID_SYNTAX,
  };
  for (const r of IKE_PARSE_REASONS) {
    const e: IkeParseError = { reason: r, payloadType: 41, detail: '', majorVersion: 3 };
    assert.equal(notifyForParseError(e)?.notifyType, expect[r], r);
  }
});
