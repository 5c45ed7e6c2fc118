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
    ['1 CREATE_CHILD_SA with N(REKEY_SA) but no SA or nonce: INVALID_SYNTAX', 36, 2, 41, h('0000000c 03044009' + spiHex(ci.inbound.spi)), ['41:00000007']],
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

/** Hand is one established pair with its IKE SA keys recomputed by hand (§2.14). */
interface Hand {
  link: ReturnType<typeof pair>;
  spiI: Buffer; spiR: Buffer; skD: Buffer; skEi: Buffer; skEr: Buffer;
}

/** handshake establishes a pair with RFC 7748's key pairs (group 31 only) and recomputes SK_d, SK_ei, SK_er by hand. */
function handshake(seed: string, o: { i?: object; r?: object } = {}): Hand {
  const fixed = (priv: Buffer) => (g: DhGroup): DhKeyPair => {
    assert.equal(g.id, 31);
    return DH_CURVE25519.fromPrivate(priv);
  };
  const link = pair({ seed, i: { generateDh: fixed(ALICE_PRIV), ...o.i }, r: { generateDh: fixed(BOB_PRIV), ...o.r } });
  link.start();
  link.run();
  assert.equal(link.responder.state, 'established');
  const [I1] = link.sent.initiator.map((b) => Buffer.from(b));
  const [R1] = link.sent.responder.map((b) => Buffer.from(b));
  const spiI = I1.subarray(0, 8);
  const spiR = R1.subarray(8, 16);
  const ni = bodyOf(walk(I1, 28, I1.length, 33), 40);
  const nr = bodyOf(walk(R1, 28, R1.length, 33), 40);
  const km = prfPlus(hmac(Buffer.concat([ni, nr]), RFC7748_SHARED), Buffer.concat([ni, nr, spiI, spiR]), 32 + 36 + 36);
  return { link, spiI, spiR, skD: km.subarray(0, 32), skEi: km.subarray(32, 68), skEr: km.subarray(68, 104) };
}

const payloadTypes = (ps: RawPayload[]): number[] => ps.map((p) => p.type);
const hexOf = (n: number, bytes: number): string => n.toString(16).padStart(2 * bytes, '0');

test('session (RFC 7296 by hand): CREATE_CHILD_SA rekey of the Child SA, with PFS and without: payloads, KEYMAT, the Delete', () => {
  const cases: [string, boolean][] = [['1 with PFS (KE in group 31)', true], ['2 without PFS', false]];
  for (const [name, pfs] of cases) {
    const { link, skD, skEi, skEr } = handshake(`rekey-${String(pfs)}`, { i: { pfs } });
    const ci = link.eventsOf('initiator', 'child-sa')[0].child;
    const cr = link.eventsOf('responder', 'child-sa')[0].child;
    link.take('initiator', link.initiator.rekeyChildSa(link.now));
    const I3 = Buffer.from(link.sent.initiator[link.sent.initiator.length - 1]);
    assert.equal(I3.subarray(16, 24).toString('hex'), '2e2024' + '08' + '00000002', `${name}: SK, CREATE_CHILD_SA, I, ID 2`);
    const i3 = openSk(I3, skEi);
    // §1.3.3 (strongSwan's order): N(REKEY_SA), SA, Ni, [KEi], TSi, TSr.
    assert.deepEqual(payloadTypes(i3), pfs ? [41, 33, 40, 34, 44, 45] : [41, 33, 40, 44, 45], name);
    assert.equal(bodyOf(i3, 41).toString('hex'), '0304' + '4009' + hexOf(ci.inbound.spi, 4), `${name}: N(REKEY_SA): ESP, SPI size 4, our inbound SPI`);
    const sa = bodyOf(i3, 33);
    const newSpiI = sa.readUInt32BE(8);
    const dh = pfs ? '03000008 0400001f' : '';
    assert.equal(sa.toString('hex'), h(`000000${pfs ? '3c' : '2c'} 0103040${pfs ? 5 : 3}`).toString('hex') + hexOf(newSpiI, 4) +
      h(`0300000c 01000014 800e0100 0300000c 01000014 800e0080 ${pfs ? `${dh} 03000008 04000013` : ''} 00000008 05000000`).toString('hex'),
      `${name}: SA: ESP, new SPI, [DH 31 (the KE's), DH 19], No ESN`);
    if (pfs) assert.equal(bodyOf(i3, 34).toString('hex'), '001f0000' + ALICE_PUB, `${name}: KEi`);
    assert.equal(bodyOf(i3, 44).toString('hex'), h('01000000 07000010 0000ffff c6120100 c61201ff').toString('hex'), `${name}: TSi`);
    const ni = bodyOf(i3, 40);
    assert.equal(ni.length, 32);

    link.run(); // the request, its response, the Delete of the old SA and its response
    const R3 = Buffer.from(link.sent.responder[2]);
    const r3 = openSk(R3, skEr);
    assert.deepEqual(payloadTypes(r3), pfs ? [33, 40, 34, 44, 45] : [33, 40, 44, 45], `${name}: SA, Nr, [KEr], TSi, TSr`);
    const newSpiR = bodyOf(r3, 33).readUInt32BE(8);
    assert.equal(bodyOf(r3, 33).toString('hex'), h(`000000${pfs ? '28' : '20'} 0103040${pfs ? 3 : 2}`).toString('hex') + hexOf(newSpiR, 4) +
      h(`0300000c 01000014 800e0100 ${dh} 00000008 05000000`).toString('hex'), `${name}: SAr: one ENCR, [DH 31], No ESN`);
    if (pfs) assert.equal(bodyOf(r3, 34).toString('hex'), '001f0000' + BOB_PUB, `${name}: KEr`);
    const nr = bodyOf(r3, 40);
    // §2.17: KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), initiator-to-responder first.
    const keymat = prfPlus(skD, Buffer.concat([...(pfs ? [RFC7748_SHARED] : []), ni, nr]), 72);
    const ni2 = link.eventsOf('initiator', 'child-sa')[1];
    const nr2 = link.eventsOf('responder', 'child-sa')[1];
    assert.deepEqual([ni2.child.inbound.spi, ni2.child.outbound.spi, nr2.child.inbound.spi, nr2.child.outbound.spi], [newSpiI, newSpiR, newSpiR, newSpiI], name);
    assert.equal(Buffer.from(ni2.child.outbound.keyMaterial).toString('hex'), keymat.subarray(0, 36).toString('hex'), `${name}: initiator outbound = i->r`);
    assert.equal(Buffer.from(ni2.child.inbound.keyMaterial).toString('hex'), keymat.subarray(36, 72).toString('hex'), `${name}: initiator inbound = r->i`);
    assert.equal(Buffer.from(nr2.child.inbound.keyMaterial).toString('hex'), keymat.subarray(0, 36).toString('hex'), `${name}: responder inbound`);
    assert.equal(Buffer.from(nr2.child.outbound.keyMaterial).toString('hex'), keymat.subarray(36, 72).toString('hex'), `${name}: responder outbound`);
    assert.deepEqual([ni2.rekeyOf, ni2.deferOutbound, nr2.rekeyOf, nr2.deferOutbound], [ci.inbound.spi, undefined, cr.inbound.spi, true], `${name}: who sends on it when`);
    // Then the initiator deletes the old SA (§2.8): INFORMATIONAL, D(ESP, old inbound SPI).
    const I4 = Buffer.from(link.sent.initiator[3]);
    assert.equal(I4[18], 37, `${name}: INFORMATIONAL`);
    assert.equal(bodyOf(openSk(I4, skEi), 42).toString('hex'), '03040001' + hexOf(ci.inbound.spi, 4), `${name}: Delete of the old SA`);
    assert.deepEqual(link.events.responder.slice(-2), [
      { type: 'child-sa-outbound', inboundSpi: newSpiR },
      { type: 'child-sa-deleted', inboundSpi: cr.inbound.spi, outboundSpi: cr.outbound.spi, reason: 'rekeyed' },
    ], `${name}: the responder switches to the new SA when the old one is deleted`);
    assert.deepEqual(link.events.initiator.slice(-1), [{ type: 'child-sa-deleted', inboundSpi: ci.inbound.spi, outboundSpi: ci.outbound.spi, reason: 'rekeyed' }], name);
    assert.deepEqual([link.initiator.children, link.responder.children], [[{ inbound: newSpiI, outbound: newSpiR }], [{ inbound: newSpiR, outbound: newSpiI }]], name);
    assert.equal(link.initiator.drops.total() + link.responder.drops.total(), 0, name);
  }
});

test('session (RFC 7296 by hand): CREATE_CHILD_SA rekey of the IKE SA: SPIs, SKEYSEED from SK_d, the new SA answers under its keys', () => {
  const { link, spiI, spiR, skD, skEi, skEr } = handshake('rekey-ike');
  link.take('initiator', link.initiator.rekeyIkeSa(link.now));
  const I3 = Buffer.from(link.sent.initiator[link.sent.initiator.length - 1]);
  const i3 = openSk(I3, skEi);
  assert.deepEqual(payloadTypes(i3), [33, 40, 34], 'SA, Ni, KEi (§1.3.2)');
  const sa = bodyOf(i3, 33);
  assert.equal(sa.subarray(0, 8).toString('hex'), '0000003401010804', 'proposal 1, IKE, SPI size 8, 4 transforms');
  const newSpiI = sa.subarray(8, 16);
  assert.equal(sa.subarray(16).toString('hex'), h('0300000c 01000014 800e0100 03000008 02000005 03000008 0400001f 00000008 04000013').toString('hex'),
    'the KE group (31) first');
  assert.equal(bodyOf(i3, 34).toString('hex'), '001f0000' + ALICE_PUB);
  link.run();
  const R3 = Buffer.from(link.sent.responder[2]);
  const r3 = openSk(R3, skEr);
  assert.deepEqual(payloadTypes(r3), [33, 40, 34], 'SA, Nr, KEr');
  const sar = bodyOf(r3, 33);
  assert.equal(sar.subarray(0, 8).toString('hex'), '0000002c01010803', 'one of each, SPI size 8');
  const newSpiR = sar.subarray(8, 16);
  const ni = bodyOf(i3, 40);
  const nr = bodyOf(r3, 40);
  // §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr); keys with the new SPIs.
  const skeyseed = hmac(skD, RFC7748_SHARED, ni, nr);
  const km = prfPlus(skeyseed, Buffer.concat([ni, nr, newSpiI, newSpiR]), 32 + 36 + 36);
  const skEi2 = km.subarray(32, 68);
  const skEr2 = km.subarray(68, 104);
  const [ri] = link.eventsOf('initiator', 'ike-rekeyed');
  const [rr] = link.eventsOf('responder', 'ike-rekeyed');
  assert.ok(ri !== undefined && rr !== undefined, 'both sides made the new IKE SA');
  assert.deepEqual([ri.next.spiI, ri.next.spiR, rr.next.spiI, rr.next.spiR].map((x) => hexOf(Number(x >> 32n), 4) + hexOf(Number(x & 0xffffffffn), 4)),
    [newSpiI, newSpiR, newSpiI, newSpiR].map((b) => b.toString('hex')));
  assert.deepEqual([ri.next.role, rr.next.role, ri.next.state, rr.next.state], ['initiator', 'responder', 'established', 'established']);
  // The old IKE SA is deleted by the rekey's initiator, both close as 'rekeyed', the Child SA lives on in the new one.
  assert.deepEqual([link.initiator.state, link.responder.state], ['closed', 'closed']);
  assert.deepEqual(link.eventsOf('initiator', 'closed').map((e) => e.reason), ['rekeyed']);
  assert.deepEqual(link.eventsOf('responder', 'closed').map((e) => e.reason), ['rekeyed']);
  assert.equal(link.eventsOf('responder', 'child-sa-deleted').length, 0, 'no Child SA went');
  assert.deepEqual(rr.next.children, link.eventsOf('responder', 'child-sa').map((e) => ({ inbound: e.child.inbound.spi, outbound: e.child.outbound.spi })));
  // A DPD sealed by hand under the new SK_ei, message ID 0, to the new responder SA: answered under SK_er'.
  const req = sealSk(newSpiI, newSpiR, 37, 0x08, 0, 0, Buffer.alloc(0), skEi2, h('a0a1a2a3a4a5a6a7'));
  const out = rr.next.handle(req, link.now);
  assert.equal(out.messages.length, 1, 'the new SA answers');
  const resp = Buffer.from(out.messages[0]);
  assert.equal(resp.subarray(0, 16).toString('hex'), Buffer.concat([newSpiI, newSpiR]).toString('hex'));
  assert.deepEqual(openSk(resp, skEr2), [], 'an empty INFORMATIONAL response, opened with the new SK_er');
  // The old keys do not open anything on the new SA.
  assert.equal(rr.next.handle(sealSk(newSpiI, newSpiR, 37, 0x08, 1, 0, Buffer.alloc(0), skEi, h('a0a1a2a3a4a5a6a8')), link.now).dropped, 'sk-auth');
  assert.notEqual(spiI.toString('hex'), newSpiI.toString('hex'));
  assert.notEqual(spiR.toString('hex'), newSpiR.toString('hex'));
});

test('session (RFC 7296 by hand): CREATE_CHILD_SA requests the responder refuses', () => {
  const { link, spiI, spiR, skEi, skEr } = handshake('rekey-refusals');
  const ci = link.eventsOf('initiator', 'child-sa')[0].child;
  const spiHex = (n: number): string => hexOf(n, 4);
  // Hand-laid requests: N(REKEY_SA) then SA, Ni, [KE], TSi, TSr, each built from its parts.
  const chain = (parts: [number, string][]): { first: number; bytes: Buffer } => {
    const bodies = parts.map(([t, b]) => [t, h(b)] as const);
    const out: Buffer[] = [];
    bodies.forEach(([, body], i) => {
      const next = bodies[i + 1]?.[0] ?? 0;
      const hdr = Buffer.alloc(4);
      hdr[0] = next;
      hdr.writeUInt16BE(body.length + 4, 2);
      out.push(hdr, body);
    });
    return { first: bodies[0]?.[0] ?? 0, bytes: Buffer.concat(out) };
  };
  const rekeyN = (spi: number): [number, string] => [41, `0304 4009 ${spiHex(spi)}`];
  // A proposal body: its transforms with Last Substruc set right.
  const proposal = (spi: string, ts_: string[]): [number, string] => {
    const tx = ts_.map((t, i) => { const b = h(t); b[0] = i === ts_.length - 1 ? 0 : 3; return b; });
    const len = 8 + 4 + tx.reduce((a, b) => a + b.length, 0);
    return [33, `0000${hexOf(len, 2)} 0103040${tx.length} ${spi} ${Buffer.concat(tx).toString('hex')}`];
  };
  const GCM = '0300000c 01000014 800e0100';
  const CBC = '0300000c 0100000c 800e0100';
  const DH31 = '03000008 0400001f';
  const NOESN = '03000008 05000000';
  const NI: [number, string] = [40, '22'.repeat(32)];
  const KE19: [number, string] = [34, '00130000' + 'ab'.repeat(64)];
  const TSI: [number, string] = [44, '01000000 07000010 0000ffff c6120100 c61201ff'];
  const TSR: [number, string] = [45, '01000000 07000010 0000ffff c6120200 c61202ff'];
  const TSR_OTHER: [number, string] = [45, '01000000 07000010 0000ffff c6120900 c61209ff'];
  const table: [string, [number, string][], string[]][] = [
    ['1 REKEY_SA for an SPI we do not know: CHILD_SA_NOT_FOUND naming it',
      [rekeyN(0x01020304), proposal('0a0b0c0d', [GCM, NOESN]), NI, TSI, TSR], ['41:0304002c01020304']],
    ['2 DH 31 offered, KE in group 19: INVALID_KE_PAYLOAD naming 31',
      [rekeyN(ci.inbound.spi), proposal('0a0b0c0d', [GCM, DH31, NOESN]), NI, KE19, TSI, TSR], ['41:00000011001f']],
    ['3 only AES-CBC offered: NO_PROPOSAL_CHOSEN',
      [rekeyN(ci.inbound.spi), proposal('0a0b0c0d', [CBC, NOESN]), NI, TSI, TSR], ['41:0000000e']],
    ['4 selectors outside our policy: TS_UNACCEPTABLE',
      [rekeyN(ci.inbound.spi), proposal('0a0b0c0d', [GCM, NOESN]), NI, TSI, TSR_OTHER], ['41:00000026']],
    ['5 no REKEY_SA: an additional Child SA: NO_ADDITIONAL_SAS',
      [proposal('0a0b0c0d', [GCM, NOESN]), NI, TSI, TSR], ['41:00000023']],
    ['6 no nonce: INVALID_SYNTAX',
      [rekeyN(ci.inbound.spi), proposal('0a0b0c0d', [GCM, NOESN]), TSI, TSR], ['41:00000007']],
  ];
  let id = 2;
  for (const [name, parts, want] of table) {
    const c = chain(parts);
    const req = sealSk(spiI, spiR, 36, 0x08, id, c.first, c.bytes, skEi, h(`e0e1e2e3e4e5e6${hexOf(id, 1)}`));
    const out = link.take('responder', link.responder.handle(req, link.now));
    assert.equal(out.messages.length, 1, `${name}: answered`);
    const got = openSk(Buffer.from(out.messages[0]), skEr).map((p) => `${p.type}:${p.body.toString('hex')}`);
    assert.deepEqual(got, want, name);
    assert.equal(out.events.length, 0, `${name}: no state change`);
    id++;
  }
  assert.deepEqual(link.responder.children, [{ inbound: link.eventsOf('responder', 'child-sa')[0].child.inbound.spi, outbound: ci.inbound.spi }], 'the Child SA is untouched');
  assert.equal(link.responder.drops.total(), 0);
});

test('session (RFC 7296 by hand): the rekey initiator acts on INVALID_KE_PAYLOAD (once, a group it takes) and on other errors', () => {
  const gen = (g: DhGroup): DhKeyPair => (g.id === 31 ? DH_CURVE25519.fromPrivate(ALICE_PRIV) : g.generate());
  const cases: [string, string[], number[], string[]][] = [
    // [name, the answers sealed by hand in turn (notify type:data), the KE groups of the requests seen, the events]
    ['1 INVALID_KE_PAYLOAD(19): a new request (next message ID) with KE 19, then TEMPORARY_FAILURE',
      ['0011:0013', '002b:'], [31, 19], ['rekey-failed:refused:43']],
    ['2 INVALID_KE_PAYLOAD(14), a group we do not offer: not followed', ['0011:000e'], [31], ['rekey-failed:refused:17']],
    ['3 INVALID_KE_PAYLOAD twice: the second is not followed', ['0011:0013', '0011:001f'], [31, 19], ['rekey-failed:refused:17']],
    ['4 NO_PROPOSAL_CHOSEN', ['000e:'], [31], ['rekey-failed:refused:14']],
    ['5 CHILD_SA_NOT_FOUND', ['002c:'], [31], ['rekey-failed:refused:44']],
  ];
  for (const [name, answers, groups, events] of cases) {
    const { link, spiI, spiR, skEi, skEr } = handshake(`ike-invalid-ke-${name}`, { i: { generateDh: gen } });
    const before = link.events.initiator.length;
    const seen: number[] = [];
    let out = link.initiator.rekeyChildSa(link.now);
    for (const [k, a] of answers.entries()) {
      assert.equal(out.messages.length, 1, `${name}: a request (${k})`);
      const req = Buffer.from(out.messages[0]);
      const id = req.readUInt32BE(20);
      assert.equal(id, 2 + k, `${name}: message ID`);
      const ke = openSk(req, skEi).find((p) => p.type === 34);
      if (ke !== undefined) seen.push(ke.body.readUInt16BE(0));
      const [type, data] = a.split(':');
      const resp = sealSk(spiI, spiR, 36, 0x20, id, 41, h(`0000${hexOf(8 + (data ?? '').length / 2, 2)} 0000${type ?? ''} ${data ?? ''}`), skEr, h(`d0d1d2d3d4d5d6${hexOf(id, 1)}`));
      out = link.take('initiator', link.initiator.handle(resp, link.now));
    }
    assert.equal(out.messages.length, 0, `${name}: nothing more sent`);
    assert.deepEqual(seen, groups, `${name}: KE groups`);
    const evs = link.events.initiator.slice(before).map((e) => (e.type === 'rekey-failed' ? `${e.type}:${e.reason}:${String(e.notifyType)}` : e.type));
    assert.deepEqual(evs, events, name);
    assert.equal(link.initiator.children.length, 1, `${name}: the Child SA is kept`);
    assert.equal(link.initiator.rekeyChildSa(link.now).refused, undefined, `${name}: and may be rekeyed again`);
  }
});
