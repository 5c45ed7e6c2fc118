/*
 * The bytes of a whole exchange against RFC 7296, recomputed by hand with node:crypto only
 * (createHmac, createHash, createCipheriv): no espgate crypto and no espgate codec is used to
 * compute an expected value. The DH keys are RFC 7748 §6.1's Alice (initiator) and Bob
 * (responder), so g^ir is that RFC's shared secret.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, createHmac } from 'node:crypto';
import { DH_CURVE25519 } from '../crypto/dh.js';
import type { DhGroup, DhKeyPair } from '../crypto/dh.js';
import { PSK, pair } from './ike-fixtures.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ALICE_PRIV = h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const ALICE_PUB = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const BOB_PRIV = h('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const BOB_PUB = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const RFC7748_SHARED = h('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');

const hmac = (key: Uint8Array, ...data: Uint8Array[]): Buffer => {
  const m = createHmac('sha256', key);
  for (const d of data) m.update(d);
  return m.digest();
};

/** prfPlus is RFC 7296 §2.13 written out: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n). */
function prfPlus(key: Uint8Array, seed: Uint8Array, n: number): Buffer {
  const blocks: Buffer[] = [];
  let t: Buffer = Buffer.alloc(0);
  for (let i = 1; blocks.length * 32 < n; i++) {
    t = hmac(key, t, seed, Buffer.of(i));
    blocks.push(t);
  }
  return Buffer.concat(blocks).subarray(0, n);
}

/** RawPayload is a payload found by walking a chain by hand: its type and body. */
interface RawPayload { type: number; critical: boolean; body: Buffer }

/** walk follows Next Payload / Payload Length through buf[off, end) starting with type first. */
function walk(buf: Buffer, off: number, end: number, first: number): RawPayload[] {
  const out: RawPayload[] = [];
  let type = first;
  while (type !== 0) {
    const len = buf.readUInt16BE(off + 2);
    out.push({ type, critical: (buf[off + 1] & 0x80) !== 0, body: buf.subarray(off + 4, off + len) });
    type = buf[off];
    off += len;
    if (type === 46) break; // SK ends the chain; its Next Payload names the inner first payload
  }
  assert.ok(off <= end);
  return out;
}

/** openSk decrypts the SK payload that is the first payload of msg (RFC 5282 §5.1) and walks its inner chain. */
function openSk(msg: Buffer, skE: Buffer): RawPayload[] {
  assert.equal(msg[16], 46, 'the first payload is SK');
  const sk = 28;
  const aad = msg.subarray(0, sk + 4);
  const iv = msg.subarray(sk + 4, sk + 12);
  const d = createDecipheriv('aes-256-gcm', skE.subarray(0, 32), Buffer.concat([skE.subarray(32, 36), iv]), { authTagLength: 16 });
  d.setAAD(aad);
  d.setAuthTag(msg.subarray(msg.length - 16));
  const pt = Buffer.concat([d.update(msg.subarray(sk + 12, msg.length - 16)), d.final()]);
  const padLen = pt[pt.length - 1];
  return walk(pt, 0, pt.length - 1 - padLen, msg[sk]);
}

/** sealSk builds HDR, SK{inner} by hand: zero padding, Pad Length 0, AAD = header + SK header. */
function sealSk(spiI: Buffer, spiR: Buffer, exchange: number, flags: number, messageId: number, firstInner: number, inner: Buffer, skE: Buffer, iv: Buffer): Buffer {
  const pt = Buffer.concat([inner, Buffer.of(0)]);
  const total = 28 + 4 + 8 + pt.length + 16;
  const hdr = Buffer.alloc(32);
  spiI.copy(hdr, 0);
  spiR.copy(hdr, 8);
  hdr[16] = 46; hdr[17] = 0x20; hdr[18] = exchange; hdr[19] = flags;
  hdr.writeUInt32BE(messageId, 20);
  hdr.writeUInt32BE(total, 24);
  hdr[28] = firstInner; hdr[29] = 0; hdr.writeUInt16BE(4 + 8 + pt.length + 16, 30);
  const c = createCipheriv('aes-256-gcm', skE.subarray(0, 32), Buffer.concat([skE.subarray(32, 36), iv]), { authTagLength: 16 });
  c.setAAD(hdr);
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return Buffer.concat([hdr, iv, ct, c.getAuthTag()]);
}

const sha1 = (...parts: Buffer[]): string => createHash('sha1').update(Buffer.concat(parts)).digest('hex');
const bodyOf = (ps: RawPayload[], type: number, nth = 0): Buffer => {
  const p = ps.filter((x) => x.type === type)[nth];
  assert.ok(p !== undefined, `payload ${type} present`);
  return p.body;
};
const notifyData = (ps: RawPayload[], type: number): Buffer => {
  const n = ps.find((x) => x.type === 41 && x.body.readUInt16BE(2) === type);
  assert.ok(n !== undefined, `notify ${type} present`);
  return n.body.subarray(4 + n.body[1]);
};

test('session (RFC 7296 by hand): headers, SA layouts, NAT-D, SKEYSEED, SK_*, AUTH both ways, KEYMAT, SK framing', () => {
  const fixed = (priv: Buffer) => (g: DhGroup): DhKeyPair => {
    assert.equal(g.id, 31);
    return DH_CURVE25519.fromPrivate(priv);
  };
  const link = pair({ seed: 'rfc', i: { generateDh: fixed(ALICE_PRIV) }, r: { generateDh: fixed(BOB_PRIV) } });
  link.start();
  link.run();
  assert.equal(link.responder.state, 'established');
  const [I1, I2] = link.sent.initiator.map((b) => Buffer.from(b));
  const [R1, R2] = link.sent.responder.map((b) => Buffer.from(b));

  // 1. Headers (§3.1): SPIs, Next Payload, version 2.0, exchange, flags, message ID, length.
  const spiI = I1.subarray(0, 8);
  const spiR = R1.subarray(8, 16);
  const hdr = (m: Buffer): string => m.subarray(8, 28).toString('hex');
  assert.equal(hdr(I1), '0000000000000000' + '21' + '20' + '22' + '08' + '00000000' + I1.length.toString(16).padStart(8, '0'), 'I1: SPIr 0, SA first, IKE_SA_INIT, I');
  assert.equal(hdr(R1), spiR.toString('hex') + '21' + '20' + '22' + '20' + '00000000' + R1.length.toString(16).padStart(8, '0'), 'R1: R');
  assert.equal(hdr(I2), spiR.toString('hex') + '2e' + '20' + '23' + '08' + '00000001' + I2.length.toString(16).padStart(8, '0'), 'I2: SK first, IKE_AUTH, I, ID 1');
  assert.equal(hdr(R2), spiR.toString('hex') + '2e' + '20' + '23' + '20' + '00000001' + R2.length.toString(16).padStart(8, '0'), 'R2: R, ID 1');
  assert.ok(R1.subarray(0, 8).equals(spiI) && I2.subarray(0, 8).equals(spiI) && R2.subarray(0, 8).equals(spiI), 'one SPIi');

  // 2. IKE_SA_INIT payloads in order (§1.2): SA, KE, Nonce, N(NAT_D_SRC), N(NAT_D_DST).
  const i1 = walk(I1, 28, I1.length, 33);
  const r1 = walk(R1, 28, R1.length, 33);
  assert.deepEqual(i1.map((p) => p.type), [33, 34, 40, 41, 41]);
  assert.deepEqual(r1.map((p) => p.type), [33, 34, 40, 41, 41]);
  assert.equal(bodyOf(i1, 33).toString('hex'), h('0000002c 01010004 0300000c 01000014 800e0100 03000008 02000005 03000008 0400001f 00000008 04000013').toString('hex'), 'SAi1');
  assert.equal(bodyOf(r1, 33).toString('hex'), h('00000024 01010003 0300000c 01000014 800e0100 03000008 02000005 00000008 0400001f').toString('hex'), 'SAr1: one of each');
  assert.equal(bodyOf(i1, 34).toString('hex'), '001f0000' + ALICE_PUB, 'KEi: group 31, RESERVED, u-coordinate');
  assert.equal(bodyOf(r1, 34).toString('hex'), '001f0000' + BOB_PUB, 'KEr');
  const ni = bodyOf(i1, 40);
  const nr = bodyOf(r1, 40);
  assert.deepEqual([ni.length, nr.length], [32, 32], 'nonces');
  // NAT-D (§2.23): SHA-1(SPIi | SPIr | IP | port); SPIr is zero in the request.
  const zero = Buffer.alloc(8);
  const a = h('c0000201 01f4');
  const b = h('c0000202 01f4');
  assert.equal(notifyData(i1, 16388).toString('hex'), sha1(spiI, zero, a), 'I1 NAT_DETECTION_SOURCE_IP = A');
  assert.equal(notifyData(i1, 16389).toString('hex'), sha1(spiI, zero, b), 'I1 NAT_DETECTION_DESTINATION_IP = B');
  assert.equal(notifyData(r1, 16388).toString('hex'), sha1(spiI, spiR, b), 'R1 NAT_DETECTION_SOURCE_IP = B');
  assert.equal(notifyData(r1, 16389).toString('hex'), sha1(spiI, spiR, a), 'R1 NAT_DETECTION_DESTINATION_IP = A');

  // 3. Keys (§2.14): SKEYSEED = prf(Ni | Nr, g^ir); prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
  const skeyseed = hmac(Buffer.concat([ni, nr]), RFC7748_SHARED);
  const km = prfPlus(skeyseed, Buffer.concat([ni, nr, spiI, spiR]), 32 + 36 + 36 + 32 + 32);
  const skD = km.subarray(0, 32);
  const skEi = km.subarray(32, 68);
  const skEr = km.subarray(68, 104);
  const skPi = km.subarray(104, 136);
  const skPr = km.subarray(136, 168);

  // 4. IKE_AUTH request (§1.2, §2.15): IDi, N(INITIAL_CONTACT), AUTH, SAi2, TSi, TSr.
  const i2 = openSk(I2, skEi);
  assert.deepEqual(i2.map((p) => p.type), [35, 41, 39, 33, 44, 45]);
  const idi = bodyOf(i2, 35);
  assert.equal(idi.toString('hex'), '02000000' + Buffer.from('a.example').toString('hex'), 'IDi: ID_FQDN, RESERVED, name');
  assert.equal(bodyOf(i2, 41).toString('hex'), '00004000', 'N(INITIAL_CONTACT): no SPI, no data');
  const keyPad = hmac(PSK, Buffer.from('Key Pad for IKEv2', 'ascii'));
  const authI = hmac(keyPad, I1, nr, hmac(skPi, idi));
  assert.equal(bodyOf(i2, 39).toString('hex'), '02000000' + authI.toString('hex'), 'AUTH = prf(prf(PSK, pad), RealMessage1 | Nr | prf(SK_pi, IDi))');
  const sai2 = bodyOf(i2, 33);
  const ci = link.eventsOf('initiator', 'child-sa')[0].child;
  const cr = link.eventsOf('responder', 'child-sa')[0].child;
  assert.equal(sai2.toString('hex'), h('0000002c 01030403').toString('hex') + ci.inbound.spi.toString(16).padStart(8, '0') +
    h('0300000c 01000014 800e0100 0300000c 01000014 800e0080 00000008 05000000').toString('hex'), 'SAi2: ESP, SPI = our inbound SPI');
  assert.equal(bodyOf(i2, 44).toString('hex'), h('01000000 07000010 0000ffff c6120100 c61201ff').toString('hex'), 'TSi: 198.18.1.0-255, any');
  assert.equal(bodyOf(i2, 45).toString('hex'), h('01000000 07000010 0000ffff c6120200 c61202ff').toString('hex'), 'TSr: 198.18.2.0-255, any');

  // 5. IKE_AUTH response: IDr, AUTH, SAr2, TSi, TSr; AUTH over RealMessage2 | Ni | prf(SK_pr, IDr).
  const r2 = openSk(R2, skEr);
  assert.deepEqual(r2.map((p) => p.type), [36, 39, 33, 44, 45]);
  const idr = bodyOf(r2, 36);
  assert.equal(idr.toString('hex'), '02000000' + Buffer.from('b.example').toString('hex'));
  assert.equal(bodyOf(r2, 39).toString('hex'), '02000000' + hmac(keyPad, R1, ni, hmac(skPr, idr)).toString('hex'), 'responder AUTH');
  assert.equal(bodyOf(r2, 33).toString('hex'), h('00000020 01030402').toString('hex') + cr.inbound.spi.toString(16).padStart(8, '0') +
    h('0300000c 01000014 800e0100 00000008 05000000').toString('hex'), 'SAr2: one ENCR, No ESN, SPI = responder inbound');

  // 6. Child SA keys (§2.17): KEYMAT = prf+(SK_d, Ni | Nr) = i->r (key | salt) | r->i (key | salt).
  const keymat = prfPlus(skD, Buffer.concat([ni, nr]), 72);
  assert.equal(Buffer.from(ci.outbound.keyMaterial).toString('hex'), keymat.subarray(0, 36).toString('hex'), 'initiator outbound = i->r');
  assert.equal(Buffer.from(ci.inbound.keyMaterial).toString('hex'), keymat.subarray(36, 72).toString('hex'), 'initiator inbound = r->i');
  assert.equal(Buffer.from(cr.inbound.keyMaterial).toString('hex'), keymat.subarray(0, 36).toString('hex'), 'responder inbound = i->r');
  assert.equal(Buffer.from(cr.outbound.keyMaterial).toString('hex'), keymat.subarray(36, 72).toString('hex'), 'responder outbound = r->i');

  // 7. Requests sealed by hand reach the responder's INFORMATIONAL / CREATE_CHILD_SA handling,
  // and its answers open by hand (their IVs must differ from those used before under SK_er).
  const ivs = new Set<string>([R2.subarray(32, 40).toString('hex')]);
  const ask = (exchange: number, id: number, first: number, inner: Buffer): RawPayload[] => {
    const req = sealSk(spiI, spiR, exchange, 0x08, id, first, inner, skEi, h(`f0f1f2f3f4f5f6${id.toString(16).padStart(2, '0')}`));
    const out = link.take('responder', link.responder.handle(req, link.now));
    assert.equal(out.messages.length, 1, `request ${id} answered`);
    const resp = Buffer.from(out.messages[0]);
    assert.equal(hdr(resp).slice(16), '2e20' + exchange.toString(16) + '20' + id.toString(16).padStart(8, '0') + resp.length.toString(16).padStart(8, '0'), `response ${id} header`);
    const iv = resp.subarray(32, 40).toString('hex');
    assert.ok(!ivs.has(iv), `response ${id}: a fresh IV`);
    ivs.add(iv);
    return openSk(resp, skEr);
  };
  const spiHex = (n: number): string => n.toString(16).padStart(8, '0');
  const cases: [string, number, number, number, Buffer, string[]][] = [
    // [name, exchange, message ID, first inner type, inner chain, expected answer payloads (type:body hex)]
    ['1 CREATE_CHILD_SA (rekey not implemented): NO_ADDITIONAL_SAS', 36, 2, 41, h('0000000c 03044009' + spiHex(ci.inbound.spi)), ['41:00000023']],
    ['2 a critical unknown payload: UNSUPPORTED_CRITICAL_PAYLOAD with its type', 37, 3, 200, h('00800008 01020304'), ['41:00000001c8']],
    ['3 Delete of an unknown ESP SPI: empty answer', 37, 4, 42, h('0000000c 03040001 01020304'), []],
    ['4 an unknown error notify in a request is ignored (§3.10.1)', 37, 5, 41, h('00000008 00003039'), []],
    ['5 Delete of the Child SA: answered with the paired SPI (§1.4.1)', 37, 6, 42, h('0000000c 03040001' + spiHex(ci.inbound.spi)), [`42:03040001${spiHex(cr.inbound.spi)}`]],
    ['6 empty (DPD)', 37, 7, 0, Buffer.alloc(0), []],
    ['7 Delete of the IKE SA: empty answer', 37, 8, 42, h('00000008 01000000'), []],
  ];
  for (const [name, exchange, id, first, inner, want] of cases) {
    assert.deepEqual(ask(exchange, id, first, inner).map((p) => `${p.type}:${p.body.toString('hex')}`), want, name);
  }
  assert.deepEqual(link.events.responder.slice(-2), [
    { type: 'child-sa-deleted', inboundSpi: cr.inbound.spi, outboundSpi: cr.outbound.spi, reason: 'peer' },
    { type: 'closed', reason: 'deleted-by-peer' },
  ], 'case 5 deleted the Child SA, case 7 the IKE SA');
  assert.equal(link.responder.drops.total(), 0);
});
