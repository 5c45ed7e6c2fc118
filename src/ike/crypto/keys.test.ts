import { test } from 'node:test';
import assert from 'node:assert/strict';
import { offsetView, toHex } from '../../../test/support/vectors/load.js';
import { AEAD_ALGORITHMS, AEAD_NAMES, createAead } from '../../esp/aead.js';
import { DH_CURVE25519, DH_ECP256 } from './dh.js';
import type { DhGroup } from './dh.js';
import {
  IKE_SPI_LEN, computeRekeySkeyseed, computeSkeyseed, deriveChildSaKeys, deriveIkeSaKeys, ikeSaKeymatLength,
} from './keys.js';
import type { IkeSaKeyInput, IkeSaKeys } from './keys.js';
import { PRF_HMAC_SHA2_256, concatBytes, prfPlus } from './prf.js';
import type { Prf } from './prf.js';
import { ACVP_SHA256, CAVS_SAMPLE_SHA256 } from './vectors.js';

const PRF = PRF_HMAC_SHA2_256;
/** keymatLen is one direction's key material (key + salt) of an ESP AEAD, from the ESP registry. */
const keymatLen = (aead: keyof typeof AEAD_ALGORITHMS): number => AEAD_ALGORITHMS[aead].keyMaterialLength;

/** joinKeys lays the seven keys out again in §2.14 order. */
function joinKeys(k: IkeSaKeys): Uint8Array {
  return concatBytes(k.skD, k.skAi, k.skAr, k.skEi, k.skEr, k.skPi, k.skPr);
}

test('keys: NIST ACVP IKEv2 SHA2-256 case: SKEYSEED, DKM, DKM(Child SA), DKM(Child SA D-H), SKEYSEED(Rekey)', () => {
  // Source: usnistgov/ACVP-Server IKEv2Tests.cs "IKEv2 SHA2-256" (vectors.ts). The DKMs are
  // 384 octets; the key schedule takes a prefix of each, so each layout is checked against it.
  const v = ACVP_SHA256;
  const nonces = { ni: offsetView(v.ni), nr: offsetView(v.nr) };
  const skeyseed = computeSkeyseed(PRF, nonces, offsetView(v.gir));
  assert.equal(toHex(skeyseed), toHex(v.skeyseed), 'SKEYSEED');

  for (const [i, aead] of AEAD_NAMES.entries()) {
    const label = `case ${i + 1} (${aead})`;
    const keys = deriveIkeSaKeys(PRF, skeyseed, { ...nonces, spiI: offsetView(v.spiI), spiR: offsetView(v.spiR) }, keymatLen(aead));
    const laid = joinKeys(keys);
    assert.equal(laid.length, ikeSaKeymatLength(PRF, keymatLen(aead)), label);
    assert.equal(toHex(laid), toHex(v.dkm.subarray(0, laid.length)), `${label}: IKE SA keys = DKM prefix`);
    assert.equal(toHex(keys.skD), toHex(v.dkm.subarray(0, 32)), `${label}: SK_d`);

    const child = deriveChildSaKeys(PRF, keys.skD, nonces, keymatLen(aead));
    const childLaid = concatBytes(child.initiatorToResponder, child.responderToInitiator);
    assert.equal(childLaid.length, 2 * keymatLen(aead), label);
    assert.equal(toHex(childLaid), toHex(v.dkmChild.subarray(0, childLaid.length)), `${label}: KEYMAT = DKM(Child SA) prefix`);

    const pfs = deriveChildSaKeys(PRF, keys.skD, nonces, keymatLen(aead), offsetView(v.girNew));
    const pfsLaid = concatBytes(pfs.initiatorToResponder, pfs.responderToInitiator);
    assert.equal(toHex(pfsLaid), toHex(v.dkmChildDh.subarray(0, pfsLaid.length)), `${label}: KEYMAT = DKM(Child SA D-H) prefix`);

    assert.equal(toHex(computeRekeySkeyseed(PRF, keys.skD, v.girNew, nonces)), toHex(v.skeyseedRekey), `${label}: SKEYSEED(Rekey)`);
  }
});

test('keys: NIST CAVS IKEv2 KDF sample (SHA-256): SKEYSEED, DKM, SKEYSEED(Rekey)', () => {
  // Source: NSS ike-sha256-vectors.h cases 6, 7, 8 (vectors.ts): the NIST CAVS sample.
  const v = CAVS_SAMPLE_SHA256;
  const nonces = { ni: v.ni, nr: v.nr };
  const skeyseed = computeSkeyseed(PRF, nonces, v.gir);
  assert.equal(toHex(skeyseed), toHex(v.skeyseed), 'case 1: SKEYSEED (NSS case 6)');
  // The sample's DKM is 132 octets; the seven keys with a 20-octet SK_e (AES-GCM-128) take 136, so compare 132.
  const keys = deriveIkeSaKeys(PRF, skeyseed, { ...nonces, spiI: v.spiI, spiR: v.spiR }, 20);
  assert.equal(toHex(joinKeys(keys).subarray(0, 132)), toHex(v.dkm), 'case 2: DKM (NSS case 8)');
  assert.equal(toHex(computeRekeySkeyseed(PRF, keys.skD, v.girNew, nonces)), toHex(v.skeyseedRekey), 'case 3: SKEYSEED(Rekey) (NSS case 7)');
});

test('keys: the seven IKE SA keys have §2.14 lengths for each AEAD (no integrity keys)', () => {
  // SK_e / ESP key material = key + 4-octet salt: RFC 5282 §7.1, RFC 4106 §8.1, RFC 7634 §2.
  const cases: [string, number][] = [['aes128gcm16', 20], ['aes192gcm16', 28], ['aes256gcm16', 36], ['chacha20poly1305', 36]];
  const input = { ni: new Uint8Array(32).fill(1), nr: new Uint8Array(32).fill(2), spiI: new Uint8Array(8).fill(3), spiR: new Uint8Array(8).fill(4) };
  for (const [i, [name, encr]] of cases.entries()) {
    const label = `case ${i + 1} (${name})`;
    const k = deriveIkeSaKeys(PRF, new Uint8Array(32).fill(9), input, encr);
    assert.deepEqual(
      [k.skD.length, k.skAi.length, k.skAr.length, k.skEi.length, k.skEr.length, k.skPi.length, k.skPr.length],
      [32, 0, 0, encr, encr, 32, 32], label);
    assert.equal(ikeSaKeymatLength(PRF, encr), 96 + 2 * encr, label);
    const c = deriveChildSaKeys(PRF, k.skD, input, encr);
    assert.deepEqual([c.initiatorToResponder.length, c.responderToInitiator.length], [encr, encr], label);
  }
  // the ESP registry the Child SA keys are handed to agrees
  assert.deepEqual(AEAD_NAMES.map(keymatLen), [20, 28, 36]);
  for (const [i, bad] of [0, -20, 20.5, Number.NaN].entries()) {
    assert.throws(() => deriveIkeSaKeys(PRF, new Uint8Array(32), input, bad), RangeError, `bad SK_e length case ${i + 1}`);
    assert.throws(() => deriveChildSaKeys(PRF, new Uint8Array(32), input, bad), RangeError, `bad ESP length case ${i + 1}`);
  }
});

test('keys: every key is its own copy, and the inputs are left as they were', () => {
  const input = { ni: offsetView(new Uint8Array(16).fill(0x11)), nr: offsetView(new Uint8Array(16).fill(0x22)), spiI: offsetView(new Uint8Array(8).fill(0x33)), spiR: offsetView(new Uint8Array(8).fill(0x44)) };
  const before = [input.ni, input.nr, input.spiI, input.spiR].map(toHex);
  const skeyseed = computeSkeyseed(PRF, input, offsetView(new Uint8Array(32).fill(0x55)));
  const k = deriveIkeSaKeys(PRF, skeyseed, input, 36);
  const laid = toHex(joinKeys(k));
  for (const key of [k.skD, k.skEi, k.skEr, k.skPi, k.skPr]) {
    assert.equal(key.byteOffset, 0);
    assert.equal(key.buffer.byteLength, key.length);
  }
  k.skD.fill(0);
  k.skEi.fill(0);
  const again = deriveIkeSaKeys(PRF, skeyseed, input, 36);
  assert.equal(toHex(joinKeys(again)), laid, 'wiping one result does not touch another derivation');
  assert.notEqual(toHex(again.skEr), toHex(new Uint8Array(36)), 'SK_er survives wiping SK_ei');
  assert.deepEqual([input.ni, input.nr, input.spiI, input.spiR].map(toHex), before);
});

test('keys: Ni, Nr, SPIi, SPIr, g^ir and SK_d each change the keys; Ni and Nr are not interchangeable', () => {
  const base: IkeSaKeyInput = { ni: new Uint8Array(32).fill(1), nr: new Uint8Array(32).fill(2), spiI: new Uint8Array(8).fill(3), spiR: new Uint8Array(8).fill(4) };
  const gir: Uint8Array = new Uint8Array(32).fill(5);
  const ref = toHex(joinKeys(deriveIkeSaKeys(PRF, computeSkeyseed(PRF, base, gir), base, 20)));
  const bump = (b: Uint8Array): Uint8Array => { const c = Uint8Array.from(b); c[c.length - 1] = (c[c.length - 1] ?? 0) ^ 0x80; return c; };
  const variants: [string, typeof base, Uint8Array][] = [
    ['Ni', { ...base, ni: bump(base.ni) }, gir],
    ['Nr', { ...base, nr: bump(base.nr) }, gir],
    ['SPIi', { ...base, spiI: bump(base.spiI) }, gir],
    ['SPIr', { ...base, spiR: bump(base.spiR) }, gir],
    ['g^ir', base, bump(gir)],
    ['Ni <-> Nr', { ...base, ni: base.nr, nr: base.ni }, gir],
    ['SPIi <-> SPIr', { ...base, spiI: base.spiR, spiR: base.spiI }, gir],
  ];
  for (const [i, [name, input, g]] of variants.entries()) {
    const out = toHex(joinKeys(deriveIkeSaKeys(PRF, computeSkeyseed(PRF, input, g), input, 20)));
    assert.notEqual(out, ref, `case ${i + 1} (${name})`);
  }
  const skD = new Uint8Array(32).fill(7);
  const child = (d: Uint8Array, n: typeof base, g?: Uint8Array): string => {
    const c = deriveChildSaKeys(PRF, d, n, 20, g);
    return toHex(c.initiatorToResponder) + toHex(c.responderToInitiator);
  };
  const childRef = child(skD, base);
  assert.notEqual(child(bump(skD), base), childRef, 'SK_d');
  assert.notEqual(child(skD, { ...base, ni: base.nr, nr: base.ni }), childRef, 'child Ni <-> Nr');
  assert.notEqual(child(skD, base, gir), childRef, 'PFS g^ir');
  assert.notEqual(child(skD, base, bump(gir)), child(skD, base, gir), 'PFS g^ir value');
});

test('keys: IKE SPIs must be 8 octets', () => {
  const ok = new Uint8Array(IKE_SPI_LEN);
  const nonces = { ni: new Uint8Array(16), nr: new Uint8Array(16) };
  const cases: [Uint8Array, Uint8Array][] = [
    [new Uint8Array(4), ok], [ok, new Uint8Array(4)], [new Uint8Array(0), ok], [ok, new Uint8Array(9)],
  ];
  for (const [i, [spiI, spiR]] of cases.entries()) {
    assert.throws(() => deriveIkeSaKeys(PRF, new Uint8Array(32), { ...nonces, spiI, spiR }, 20), RangeError, `case ${i + 1}`);
  }
});

test('keys: SKEYSEED with a fixed-key-length PRF keys it with the first half of each nonce (§2.14)', () => {
  // No such PRF is offered; this pins the §2.14 rule ("only the first 64 bits of Ni and the
  // first 64 bits of Nr") with an HMAC that records the key it is given.
  const seen: string[] = [];
  const fixed: Prf = {
    ...PRF,
    fixedKeyLength: 16,
    compute(key: Uint8Array, ...data: readonly Uint8Array[]): Uint8Array {
      seen.push(toHex(key));
      return PRF.compute(key, ...data);
    },
  };
  const ni = Uint8Array.from({ length: 32 }, (_, i) => i);
  const nr = Uint8Array.from({ length: 20 }, (_, i) => 0x80 + i);
  const out = computeSkeyseed(fixed, { ni: offsetView(ni), nr }, new Uint8Array(32).fill(0xee));
  assert.deepEqual(seen, ['0001020304050607' + '8081828384858687']);
  assert.equal(toHex(out), toHex(PRF.compute(concatBytes(ni.subarray(0, 8), nr.subarray(0, 8)), new Uint8Array(32).fill(0xee))));
  // HMAC keys with all of Ni | Nr
  const hmacSeen: string[] = [];
  const recording: Prf = { ...PRF, compute(key, ...data) { hmacSeen.push(toHex(key)); return PRF.compute(key, ...data); } };
  computeSkeyseed(recording, { ni, nr }, new Uint8Array(1));
  assert.deepEqual(hmacSeen, [toHex(ni) + toHex(nr)]);
  assert.throws(() => computeSkeyseed(fixed, { ni: new Uint8Array(7), nr }, new Uint8Array(1)), RangeError);
});

test('keys: two peers that run a DH group agree on every key (initiator and responder views)', () => {
  const groups: DhGroup[] = [DH_CURVE25519, DH_ECP256];
  for (const [i, g] of groups.entries()) {
    const label = `case ${i + 1} (${g.name})`;
    const init = g.generate();
    const resp = g.generate();
    const girI = g.compute(init.privateKey, resp.public);
    const girR = g.compute(resp.privateKey, init.public);
    if (!girI.ok || !girR.ok) assert.fail(`${label}: DH refused`);
    const input = { ni: new Uint8Array(32).fill(0x61), nr: new Uint8Array(32).fill(0x72), spiI: new Uint8Array(8).fill(0x0a), spiR: new Uint8Array(8).fill(0x0b) };
    const kI = deriveIkeSaKeys(PRF, computeSkeyseed(PRF, input, girI.shared), input, 36);
    const kR = deriveIkeSaKeys(PRF, computeSkeyseed(PRF, input, girR.shared), input, 36);
    assert.equal(toHex(joinKeys(kI)), toHex(joinKeys(kR)), label);
    assert.notEqual(toHex(kI.skEi), toHex(kI.skEr), `${label}: directions differ`);
    assert.notEqual(toHex(kI.skPi), toHex(kI.skPr), `${label}: SK_pi != SK_pr`);
  }
});

test('keys: Child SA key material plugs into the ESP AEAD, one key per direction', () => {
  const skD = prfPlus(PRF, new Uint8Array(32).fill(1), new Uint8Array(1), 32);
  const nonces = { ni: new Uint8Array(32).fill(0x11), nr: new Uint8Array(32).fill(0x22) };
  for (const [i, aead] of AEAD_NAMES.entries()) {
    const label = `case ${i + 1} (${aead})`;
    const initiator = deriveChildSaKeys(PRF, skD, nonces, keymatLen(aead));
    const responder = deriveChildSaKeys(PRF, skD, nonces, keymatLen(aead));
    const iv = new Uint8Array(8).fill(7);
    const aad = new Uint8Array(8).fill(9);
    const pt = Uint8Array.from(Buffer.from('espgate child sa key material', 'ascii'));
    // the initiator seals with initiator->responder; the responder opens with the same
    const sealer = createAead(aead, initiator.initiatorToResponder, 'node');
    const buf = new Uint8Array(pt.length + 16);
    const n = sealer.seal(iv, 0, aad, pt, 0, pt.length, buf, 0);
    assert.equal(n, pt.length + 16, label);
    const opener = createAead(aead, responder.initiatorToResponder, 'node');
    const out = new Uint8Array(pt.length);
    assert.equal(opener.open(iv, 0, aad, buf, 0, pt.length, out, 0), true, label);
    assert.equal(toHex(out), toHex(pt), label);
    // the other direction's key does not open it
    const wrong = createAead(aead, responder.responderToInitiator, 'node');
    assert.equal(wrong.open(iv, 0, aad, buf, 0, pt.length, new Uint8Array(pt.length), 0), false, label);
  }
});
