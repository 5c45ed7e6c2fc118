import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createAead } from '../esp/aead.js';
import type { AeadName } from '../esp/aead.js';
import { AUTH_METHOD, ENCR, EXCHANGE, ID, NOTIFY, PAYLOAD, PRF, PROTOCOL, TRANSFORM, TS_TYPE } from './constants.js';
import { IKE_HEADER_LEN, encodePayloadChain, isIkeParseError, parseIkeMessage, payloadChainLength, serializeIkeMessage } from './message.js';
import type { IkeHeader, IkeParseError, IkeParseReason, ParsedIkeMessage } from './message.js';
import { notify, spi32, transform } from './payloads.js';
import type { Payload } from './payloads.js';
import {
  SK_CIPHERS, SK_ICV_LEN, SK_IV_LEN, SK_OVERHEAD, SkKey, openIkeMessage, sealIkeMessage, skCipherFor, skKeyMaterialLength,
} from './sk.js';
import type { SkCipherName, SkOpened } from './sk.js';
import { hex, offsetView, toHex } from '../../test/support/vectors/load.js';

const seq = (n: number, start = 0): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start * 7 + i * 13 + 5) & 0xff);

function parsedAt(bytes: Uint8Array): ParsedIkeMessage {
  const v = offsetView(Uint8Array.from([9, 9, 9, ...bytes]));
  const m = parseIkeMessage(v, 3, bytes.length);
  if (isIkeParseError(m)) assert.fail(`parse: ${m.reason}: ${m.detail}`);
  return m;
}

function opened(r: SkOpened | IkeParseError): SkOpened {
  if (isIkeParseError(r)) assert.fail(`open: ${r.reason}: ${r.detail}`);
  return r;
}

function refusedOpen(r: SkOpened | IkeParseError): IkeParseError {
  if (!isIkeParseError(r)) assert.fail(`opened ${r.payloads.length} payloads, expected a refusal`);
  return r;
}

/*
 * RFC 7634 Appendix B ("IKEv2 Example"): an INFORMATIONAL request carrying one Notify
 * (SET_WINDOW_SIZE = 10) in an Encrypted payload under ENCR_CHACHA20_POLY1305; key 80..9f,
 * salt a0 a1 a2 a3, IV 10..17. The expected message is as strongSwan's unit test reproduces it
 * (src/libcharon/tests/suites/test_message_chapoly.c, "Appendix B
 * draft-ietf-ipsecme-chacha20-poly1305-06"). The Encrypted payload is built the same way for
 * every AEAD (RFC 5282 §5.1 AAD, salt || IV nonce, Pad Length), so this pins sk.ts's layout
 * byte for byte; only the cipher differs from AES-GCM.
 */
const RFC7634_KEY = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3');
const RFC7634_IV = hex('1011121314151617');
const RFC7634_HEADER: IkeHeader = {
  spiI: 0xc0c1c2c3c4c5c6c7n, spiR: 0xd0d1d2d3d4d5d6d7n, exchangeType: EXCHANGE.INFORMATIONAL,
  initiator: false, response: false, higherVersion: false, messageId: 9,
};
const RFC7634_MESSAGE =
  'c0c1c2c3c4c5c6c7 d0d1d2d3d4d5d6d7 2e202500 00000009 00000045' +
  '29000029 1011121314151617 610394701f8d017f7c12924889 6b71bfe25236efd7cdc67066906315b2';

test('sk: RFC 7634 Appendix B message, sealed byte for byte and opened', () => {
  const key = new SkKey('chacha20poly1305', offsetView(RFC7634_KEY));
  const wire = sealIkeMessage(RFC7634_HEADER, [notify(NOTIFY.SET_WINDOW_SIZE, hex('0000000a'))], key, offsetView(RFC7634_IV));
  assert.equal(toHex(wire), toHex(hex(RFC7634_MESSAGE)));
  const m = parsedAt(hex(RFC7634_MESSAGE));
  assert.deepEqual(m.header, RFC7634_HEADER);
  const o = opened(openIkeMessage(m, key));
  assert.equal(o.innerType, PAYLOAD.NOTIFY);
  assert.deepEqual(o.payloads, [notify(NOTIFY.SET_WINDOW_SIZE, hex('0000000a'))]);
  assert.equal(toHex(o.plaintext), '0000000c 00004001 0000000a 00'.replace(/ /g, ''));
});

const GCM: { name: SkCipherName; esp: AeadName }[] = [
  { name: 'aes128gcm16', esp: 'aes128gcm16' },
  { name: 'aes192gcm16', esp: 'aes192gcm16' },
  { name: 'aes256gcm16', esp: 'aes256gcm16' },
];

function header(o: Partial<IkeHeader> = {}): IkeHeader {
  return { spiI: 0x1122334455667788n, spiR: 0x99aabbccddeeff00n, exchangeType: EXCHANGE.IKE_AUTH, initiator: true, response: false, higherVersion: false, messageId: 1, ...o };
}

/** IKE_AUTH_INNER is what an initiator's IKE_AUTH request carries for an ESP tunnel. */
const IKE_AUTH_INNER: Payload[] = [
  { kind: 'idi', idType: ID.FQDN, data: Uint8Array.from(Buffer.from('gw-a.example')) },
  notify(NOTIFY.INITIAL_CONTACT),
  { kind: 'idr', idType: ID.IPV4_ADDR, data: hex('c6336402') },
  { kind: 'auth', method: AUTH_METHOD.SHARED_KEY_MIC, data: seq(32, 1) },
  notify(NOTIFY.ESP_TFC_PADDING_NOT_SUPPORTED),
  { kind: 'sa', proposals: [{ num: 1, protocol: PROTOCOL.ESP, spi: spi32(0xc0de0102), transforms: [
    transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256), transform(TRANSFORM.ESN, 0)] }] },
  { kind: 'tsi', selectors: [{ kind: 'range', tsType: TS_TYPE.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: hex('c6120000'), endAddress: hex('c612ffff') }] },
  { kind: 'tsr', selectors: [{ kind: 'range', tsType: TS_TYPE.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: hex('c6130000'), endAddress: hex('c613ffff') }] },
];
const INNERS: { n: number; name: string; inner: Payload[]; first: number }[] = [
  { n: 1, name: 'IKE_AUTH request', inner: IKE_AUTH_INNER, first: PAYLOAD.IDI },
  { n: 2, name: 'empty (liveness check)', inner: [], first: PAYLOAD.NONE },
  { n: 3, name: 'Delete of two ESP SAs', inner: [{ kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: [spi32(1), spi32(2)] }], first: PAYLOAD.DELETE },
];

test('sk: seal/open round trips for every cipher, padding and inner chain', () => {
  let n = 0;
  for (const name of Object.keys(SK_CIPHERS) as SkCipherName[]) {
    const km = seq(skKeyMaterialLength(name), name.length);
    const key = new SkKey(name, km);
    for (const pad of [0, 1, 3, 255]) {
      for (const c of INNERS) {
        n++;
        const label = `${name} pad ${pad} case ${c.n} (${c.name})`;
        const iv = seq(SK_IV_LEN, n);
        const outer: Payload[] = c.n === 3 ? [{ kind: 'vendor', data: hex('abcd') }] : [];
        const wire = sealIkeMessage(header({ messageId: n }), c.inner, key, iv, { padLength: pad, outer });
        const innerLen = payloadChainLength(c.inner);
        const outerLen = payloadChainLength(outer);
        assert.equal(wire.length, IKE_HEADER_LEN + outerLen + SK_OVERHEAD + innerLen + pad, label);
        assert.equal(wire.readUInt32BE(24), wire.length, `${label}: Length field`);
        const m = parsedAt(wire);
        assert.equal(m.skOffset, IKE_HEADER_LEN + outerLen, label);
        assert.deepEqual(m.payloads.slice(0, -1), outer, label);
        assert.equal(toHex(m.bytes.subarray(m.skOffset + 4, m.skOffset + 12)), toHex(iv), `${label}: IV in clear after the SK header`);
        const o = opened(openIkeMessage(m, key));
        assert.deepEqual(o.payloads, c.inner, label);
        assert.equal(o.plaintext.length, innerLen + pad + 1, label);
        assert.equal(o.plaintext[o.plaintext.length - 1], pad, `${label}: Pad Length`);
        assert.equal(o.innerType, c.first, `${label}: SK Next Payload`);
        assert.equal(wire[m.skOffset], c.first, `${label}: SK Next Payload on the wire`);
      }
    }
  }
  assert.equal(n, 4 * 4 * 3);
});

/**
 * handPlaintext lays out an SK plaintext by hand: the inner chain, `padding` bytes of any
 * value, Pad Length.
 */
function handPlaintext(inner: Payload[], padding: Uint8Array): Uint8Array {
  const len = payloadChainLength(inner);
  const pt = new Uint8Array(len + padding.length + 1);
  encodePayloadChain(inner, pt, 0, false);
  pt.set(padding, len);
  pt[pt.length - 1] = padding.length;
  return pt;
}

/**
 * espSealed builds an SK-protected IKE_AUTH message around plaintext `pt` with the ESP data
 * path's own AES-GCM (src/esp/aead.ts, proven by the RFC 4106 / draft-mcgrew vectors in
 * aead.test.ts), not with sk.ts: header and SK header by hand, AAD = bytes 0..32, nonce =
 * salt || IV inside aead.ts.
 */
function espSealed(esp: AeadName, keyMaterial: Uint8Array, innerType: number, pt: Uint8Array, iv: Uint8Array, messageId = 1): Uint8Array {
  const skLen = 4 + SK_IV_LEN + pt.length + SK_ICV_LEN;
  const total = IKE_HEADER_LEN + skLen;
  const buf = new Uint8Array(total);
  buf.set(hex('1122334455667788 99aabbccddeeff00'), 0);
  buf.set([PAYLOAD.SK, 0x20, EXCHANGE.IKE_AUTH, 0x08], 16);
  new DataView(buf.buffer).setUint32(20, messageId);
  new DataView(buf.buffer).setUint32(24, total);
  buf.set([innerType, 0, skLen >> 8, skLen & 0xff], 28);
  buf.set(iv, 32);
  const aead = createAead(esp, keyMaterial, 'node');
  assert.equal(aead.seal(iv, 0, buf.subarray(0, 32), pt, 0, pt.length, buf, 40), pt.length + SK_ICV_LEN);
  return buf;
}

test('sk: AES-GCM output equals the ESP data path\'s AES-GCM on the same key, nonce and AAD', () => {
  for (const [i, g] of GCM.entries()) {
    const km = seq(skKeyMaterialLength(g.name), 40 + i);
    const key = new SkKey(g.name, km);
    const iv = seq(SK_IV_LEN, 90 + i);
    for (const pad of [0, 5]) {
      const label = `${g.name} pad ${pad}`;
      const wire = sealIkeMessage(header(), IKE_AUTH_INNER, key, iv, { padLength: pad });
      const pt = handPlaintext(IKE_AUTH_INNER, new Uint8Array(pad));
      const expected = espSealed(g.esp, km, PAYLOAD.IDI, pt, iv);
      assert.equal(toHex(wire), toHex(expected), label);
      // ... and the ESP AES-GCM opens what sk.ts sealed.
      const out = new Uint8Array(pt.length);
      assert.equal(createAead(g.esp, km, 'node').open(iv, 0, wire.subarray(0, 32), wire, 40, pt.length, out, 0), true, label);
      assert.equal(toHex(out), toHex(pt), label);
    }
  }
});

test('sk: the opener ignores padding contents and accepts any Pad Length that fits', () => {
  const g = GCM[2];
  const km = seq(36, 3);
  const key = new SkKey(g.name, km);
  const cases: { n: number; padding: string }[] = [
    { n: 1, padding: '' }, { n: 2, padding: 'ff' }, { n: 3, padding: 'ffeedd' }, { n: 4, padding: '00'.repeat(255) },
  ];
  for (const c of cases) {
    const pt = handPlaintext([notify(NOTIFY.INITIAL_CONTACT)], hex(c.padding));
    const o = opened(openIkeMessage(parsedAt(espSealed(g.esp, km, PAYLOAD.NOTIFY, pt, seq(8, c.n))), key));
    assert.deepEqual(o.payloads, [notify(NOTIFY.INITIAL_CONTACT)], `case ${c.n}`);
  }
});

test('sk: every refusal of openIkeMessage, as a value', () => {
  const g = GCM[0];
  const km = seq(20, 7);
  const key = new SkKey(g.name, km);
  const iv = seq(8, 1);
  const good = sealIkeMessage(header(), IKE_AUTH_INNER, key, iv);
  const flip = (at: number): Uint8Array => { const b = Uint8Array.from(good); b[at] ^= 0x01; return b; };
  const sealedWith = (innerType: number, ptHex: string): Uint8Array => espSealed(g.esp, km, innerType, hex(ptHex), iv);
  const cases: { n: number; name: string; m: () => ParsedIkeMessage; key?: SkKey; reason: IkeParseReason; payloadType?: number; says: string }[] = [
    { n: 1, name: 'no SK payload', m: () => parsedAt(serializeIkeMessage({ header: header(), payloads: [notify(NOTIFY.INITIAL_CONTACT)] })), reason: 'no-sk', says: 'no Encrypted payload' },
    {
      n: 2, name: 'SK body of IV + ICV only',
      m: () => parsedAt(serializeIkeMessage({ header: header(), payloads: [{ kind: 'sk', innerType: 0, body: new Uint8Array(24) }] })),
      reason: 'sk-truncated', says: 'SK body of 24 bytes, shorter than 25',
    },
    { n: 3, name: 'wrong key', m: () => parsedAt(good), key: new SkKey(g.name, seq(20, 8)), reason: 'sk-auth', says: 'ICV did not verify' },
    { n: 4, name: 'same key, other cipher size', m: () => parsedAt(good), key: new SkKey('aes256gcm16', Uint8Array.from([...km, ...seq(16)])), reason: 'sk-auth', says: 'ICV' },
    { n: 5, name: 'message ID changed (AAD: IKE header)', m: () => parsedAt(flip(23)), reason: 'sk-auth', says: 'ICV' },
    { n: 6, name: 'SK Next Payload changed (AAD: SK header)', m: () => parsedAt(flip(28)), reason: 'sk-auth', says: 'ICV' },
    { n: 7, name: 'IV changed (nonce)', m: () => parsedAt(flip(32)), reason: 'sk-auth', says: 'ICV' },
    { n: 8, name: 'ciphertext changed', m: () => parsedAt(flip(50)), reason: 'sk-auth', says: 'ICV' },
    { n: 9, name: 'ICV changed', m: () => parsedAt(flip(good.length - 1)), reason: 'sk-auth', says: 'ICV' },
    { n: 10, name: 'Pad Length larger than the plaintext', m: () => parsedAt(sealedWith(0, '01')), reason: 'sk-bad-padding', says: 'Pad Length 1 in a 1-byte plaintext' },
    { n: 11, name: 'an SK inside the SK', m: () => parsedAt(sealedWith(PAYLOAD.SK, '0000000c 0001020304050607 00')), reason: 'nested-sk', says: 'inside SK' },
    { n: 12, name: 'critical unknown payload inside', m: () => parsedAt(sealedWith(99, '00800005 ab 00')), reason: 'unsupported-critical', payloadType: 99, says: 'payload type 99' },
    { n: 13, name: 'malformed Nonce inside', m: () => parsedAt(sealedWith(PAYLOAD.NONCE, '0000000c 0001020304050607 00')), reason: 'malformed', payloadType: PAYLOAD.NONCE, says: 'Nonce: 8 bytes' },
    { n: 14, name: 'announced payload missing inside', m: () => parsedAt(sealedWith(PAYLOAD.NOTIFY, '00')), reason: 'truncated-chain', payloadType: PAYLOAD.NOTIFY, says: '0 bytes left' },
    { n: 15, name: 'bytes after the inner chain', m: () => parsedAt(sealedWith(PAYLOAD.NOTIFY, '00000008 00004000 aabb 00')), reason: 'trailing-bytes', says: '2 bytes after' },
  ];
  const seen = new Set<IkeParseReason>();
  for (const c of cases) {
    const label = `case ${c.n} (${c.name})`;
    const m = c.m();
    const e = refusedOpen(openIkeMessage(m, c.key ?? key));
    assert.equal(e.reason, c.reason, `${label}: ${e.detail}`);
    if (c.payloadType !== undefined) assert.equal(e.payloadType, c.payloadType, label);
    assert.ok(e.detail.includes(c.says), `${label}: "${e.detail}" lacks "${c.says}"`);
    assert.deepEqual(e.header, m.header, `${label}: header`);
    seen.add(e.reason);
  }
  for (const r of ['no-sk', 'sk-truncated', 'sk-auth', 'sk-bad-padding'] as const) assert.ok(seen.has(r), r);
  // The unmodified message opens with the right key (the cases above fail for their reason only).
  assert.deepEqual(opened(openIkeMessage(parsedAt(good), key)).payloads, IKE_AUTH_INNER);
});

test('sk: every single-bit flip of a sealed message is refused (parse or ICV)', () => {
  const cases: { n: number; name: SkCipherName; inner: Payload[]; outer: Payload[] }[] = [
    { n: 1, name: 'chacha20poly1305', inner: [notify(NOTIFY.SET_WINDOW_SIZE, hex('0000000a'))], outer: [] },
    { n: 2, name: 'aes128gcm16', inner: [{ kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: [spi32(7)] }], outer: [{ kind: 'vendor', data: hex('0102') }] },
    { n: 3, name: 'aes256gcm16', inner: [], outer: [] },
  ];
  for (const c of cases) {
    const key = new SkKey(c.name, seq(skKeyMaterialLength(c.name), c.n));
    const good = sealIkeMessage(header(), c.inner, key, seq(8, c.n), { outer: c.outer });
    let reached = 0;
    for (let bit = 0; bit < good.length * 8; bit++) {
      const b = Uint8Array.from(good);
      b[bit >> 3] ^= 1 << (bit & 7);
      const m = parseIkeMessage(b, 0, b.length);
      if (isIkeParseError(m)) continue;
      reached++;
      const r = openIkeMessage(m, key);
      assert.ok(isIkeParseError(r) && (r.reason === 'sk-auth' || r.reason === 'no-sk' || r.reason === 'sk-truncated'),
        `case ${c.n} bit ${bit}: ${isIkeParseError(r) ? r.reason : 'AUTHENTICATED'}`);
    }
    // Most flips (all of IV, ciphertext, ICV, most header bits) reach the ICV check.
    assert.ok(reached > good.length * 4, `case ${c.n}: only ${reached} of ${good.length * 8} flips parsed`);
  }
});

test('sk: cipher selection and key material lengths', () => {
  const table: { n: number; t: Parameters<typeof skCipherFor>[0]; want: SkCipherName | undefined }[] = [
    { n: 1, t: transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 128), want: 'aes128gcm16' },
    { n: 2, t: transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 192), want: 'aes192gcm16' },
    { n: 3, t: transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256), want: 'aes256gcm16' },
    { n: 4, t: transform(TRANSFORM.ENCR, ENCR.CHACHA20_POLY1305), want: 'chacha20poly1305' },
    { n: 5, t: transform(TRANSFORM.ENCR, ENCR.AES_GCM_16), want: undefined },
    { n: 6, t: transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 512), want: undefined },
    { n: 7, t: transform(TRANSFORM.ENCR, ENCR.AES_GCM_8, 256), want: undefined },
    { n: 8, t: transform(TRANSFORM.ENCR, ENCR.AES_CBC, 256), want: undefined },
    { n: 9, t: transform(TRANSFORM.PRF, ENCR.AES_GCM_16, 256), want: undefined },
    { n: 10, t: transform(TRANSFORM.ENCR, ENCR.CHACHA20_POLY1305, 256), want: undefined },
  ];
  for (const c of table) assert.equal(skCipherFor(c.t), c.want, `case ${c.n}`);
  assert.deepEqual((Object.keys(SK_CIPHERS) as SkCipherName[]).map(skKeyMaterialLength), [20, 28, 36, 36]);
  assert.equal(PRF.HMAC_SHA2_256, 5);
  assert.throws(() => new SkKey('aes128gcm16', new Uint8Array(16)), /must be 20 bytes/);
  assert.throws(() => new SkKey('aes256gcm16', new Uint8Array(37)), /must be 36 bytes/);
  assert.throws(() => new SkKey('des' as SkCipherName, new Uint8Array(20)), /unknown SK cipher/);
});

test('sk: sealIkeMessage refuses bad IVs, padding and placement', () => {
  const key = new SkKey('aes128gcm16', seq(20));
  const cases: { n: number; run: () => unknown; says: RegExp }[] = [
    { n: 1, run: () => sealIkeMessage(header(), [], key, new Uint8Array(7)), says: /IV must be 8 bytes/ },
    { n: 2, run: () => sealIkeMessage(header(), [], key, new Uint8Array(12)), says: /IV must be 8 bytes/ },
    { n: 3, run: () => sealIkeMessage(header(), [], key, new Uint8Array(8), { padLength: 256 }), says: /pad length 256/ },
    { n: 4, run: () => sealIkeMessage(header(), [], key, new Uint8Array(8), { padLength: -1 }), says: /pad length -1/ },
    { n: 5, run: () => sealIkeMessage(header(), [], key, new Uint8Array(8), { outer: [{ kind: 'sk', innerType: 0, body: new Uint8Array(25) }] }), says: /must be last/ },
    { n: 6, run: () => sealIkeMessage(header(), [{ kind: 'sk', innerType: 0, body: new Uint8Array(25) }], key, new Uint8Array(8)), says: /inside an Encrypted payload/ },
    { n: 7, run: () => sealIkeMessage(header(), [{ kind: 'vendor', data: new Uint8Array(65520) }], key, new Uint8Array(8)), says: /exceeds 65535/ },
    { n: 8, run: () => sealIkeMessage(header({ messageId: -1 }), [], key, new Uint8Array(8)), says: /message ID/ },
  ];
  for (const c of cases) assert.throws(c.run, (e: unknown) => e instanceof RangeError && c.says.test(e.message), `case ${c.n}`);
});
