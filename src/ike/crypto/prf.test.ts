import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { hex, offsetView, toHex } from '../../../test/support/vectors/load.js';
import { ACVP_SHA256, CAVS_SAMPLE_SHA256 } from './vectors.js';
import {
  PRF_HMAC_SHA2_256, PRF_HMAC_SHA2_256_ID, PRF_PLUS_MAX_BLOCKS, concatBytes, prfById, prfPlus, prfPlusMaxLength,
} from './prf.js';

const ascii = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'ascii'));

test('prf: PRF_HMAC_SHA2_256 answers the RFC 4231 §4.2-4.8 HMAC-SHA-256 test cases 1-7', () => {
  // Source: RFC 4231 "Identifiers and Test Vectors for HMAC-SHA-224, HMAC-SHA-256,
  // HMAC-SHA-384, and HMAC-SHA-512", §4.2-§4.8, the HMAC-SHA-256 lines. Case 5 is truncated
  // to 128 bits by the RFC.
  const cases: [string, Uint8Array, Uint8Array, string][] = [
    ['4.2 case 1', new Uint8Array(20).fill(0x0b), ascii('Hi There'),
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
    ['4.3 case 2', ascii('Jefe'), ascii('what do ya want for nothing?'),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
    ['4.4 case 3', new Uint8Array(20).fill(0xaa), new Uint8Array(50).fill(0xdd),
      '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
    ['4.5 case 4', hex('0102030405060708090a0b0c0d0e0f10111213141516171819'), new Uint8Array(50).fill(0xcd),
      '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b'],
    ['4.6 case 5 (truncated to 128 bits)', new Uint8Array(20).fill(0x0c), ascii('Test With Truncation'),
      'a3b6167473100ee06e0c796c2955552b'],
    ['4.7 case 6', new Uint8Array(131).fill(0xaa), ascii('Test Using Larger Than Block-Size Key - Hash Key First'),
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'],
    ['4.8 case 7', new Uint8Array(131).fill(0xaa),
      ascii('This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.'),
      '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2'],
  ];
  for (const [i, [name, key, data, want]] of cases.entries()) {
    const label = `case ${i + 1} (RFC 4231 §${name})`;
    const out = PRF_HMAC_SHA2_256.compute(offsetView(key), offsetView(data));
    assert.equal(out.length, 32, label);
    assert.equal(toHex(out).slice(0, want.length), want, label);
    // the same data given in three parts, one of them empty
    const cut = Math.floor(data.length / 3);
    const parts = PRF_HMAC_SHA2_256.compute(key, data.subarray(0, cut), new Uint8Array(0), offsetView(data.subarray(cut)));
    assert.equal(toHex(parts), toHex(out), `${label}: multi-part`);
    // the result is a plain Uint8Array of its own (not a pooled Buffer view)
    assert.equal(Object.getPrototypeOf(out), Uint8Array.prototype, label);
    assert.equal(out.byteOffset, 0, label);
    assert.equal(out.buffer.byteLength, 32, label);
  }
});

test('prf: PRF_HMAC_SHA2_256 descriptor and registry', () => {
  assert.equal(PRF_HMAC_SHA2_256.id, 5);
  assert.equal(PRF_HMAC_SHA2_256_ID, 5);
  assert.equal(PRF_HMAC_SHA2_256.outputLength, 32);
  assert.equal(PRF_HMAC_SHA2_256.keyLength, 32);
  assert.equal(PRF_HMAC_SHA2_256.fixedKeyLength, undefined);
  assert.equal(prfById(5), PRF_HMAC_SHA2_256);
  for (const id of [0, 1, 2, 4, 6, 7, 8]) assert.equal(prfById(id), undefined, `id ${id}`);
  assert.equal(PRF_PLUS_MAX_BLOCKS, 255);
  assert.equal(prfPlusMaxLength(PRF_HMAC_SHA2_256), 8160);
});

test('prf+: NIST CAVS IKEv2 KDF sample (SHA-256), DKM = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)', () => {
  // Source: NSS gtests/common/testvectors/ike-sha256-vectors.h, kIkeSha256ProofVectors cases
  // 8, 9 and 10 ("these vectors are from this NIST samples": the NIST CAVS IKEv2 KDF sample of
  // the SP 800-135 component tests); vectors.ts has the provenance. One DKM cut three ways.
  const v = CAVS_SAMPLE_SHA256;
  const seed = concatBytes(v.ni, v.nr, v.spiI, v.spiR);
  const dkm = toHex(v.dkm);
  const cases: [number, string, number][] = [
    [8, dkm, 132],
    [9, '0b137d669b0947d7d026d593f0305ad401ff0c471357d695778a9c7f4b4869ec', 32],
    [10, '0b137d669b0947d7d026d593f0305a', 15],
  ];
  for (const [i, [nssCase, want, length]] of cases.entries()) {
    const out = prfPlus(PRF_HMAC_SHA2_256, offsetView(v.skeyseed), offsetView(seed), length);
    assert.equal(toHex(out), want, `case ${i + 1} (NSS case ${nssCase}, ${length} octets)`);
  }
});

test('prf+: NIST ACVP IKEv2 SHA2-256 case, 3072-bit DKM and DKM(Child SA) = prf+(SK_d, Ni | Nr)', () => {
  // Source: usnistgov/ACVP-Server crypto/test/NIST.CVP.Crypto.IKEv2.Tests/IKEv2Tests.cs, test
  // "IKEv2 SHA2-256" (vectors.ts has the commit; keys.test.ts runs the rest of the case).
  // 384 octets is 12 blocks, the last one whole.
  const v = ACVP_SHA256;
  const dkm = prfPlus(PRF_HMAC_SHA2_256, v.skeyseed, concatBytes(v.ni, v.nr, v.spiI, v.spiR), 384);
  assert.equal(toHex(dkm), toHex(v.dkm));
  const child = prfPlus(PRF_HMAC_SHA2_256, dkm.subarray(0, 32), concatBytes(v.ni, v.nr), 384);
  assert.equal(toHex(child), toHex(v.dkmChild));
});

test('prf+: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), through the 255th block', () => {
  const key = hex('000102030405060708090a0b0c0d0e0f');
  const seed = ascii('espgate prf+ structure');
  const all = prfPlus(PRF_HMAC_SHA2_256, key, seed, 8160);
  let prev = new Uint8Array(0);
  for (let n = 1; n <= 255; n++) {
    const t = createHmac('sha256', key).update(prev).update(seed).update(Uint8Array.of(n)).digest();
    assert.equal(toHex(all.subarray((n - 1) * 32, n * 32)), t.toString('hex'), `block ${n}`);
    prev = Uint8Array.from(t);
  }
  // every shorter output is a prefix of the longer one
  const lengths = [0, 1, 31, 32, 33, 64, 100, 8159];
  for (const [i, n] of lengths.entries()) {
    assert.equal(toHex(prfPlus(PRF_HMAC_SHA2_256, key, seed, n)), toHex(all.subarray(0, n)), `case ${i + 1}: ${n} octets`);
  }
});

test('prf+: refuses more than 255 blocks and lengths that are not octet counts', () => {
  const key = new Uint8Array(32);
  const bad = [8161, 255 * 32 + 32, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY];
  for (const [i, n] of bad.entries()) {
    assert.throws(() => prfPlus(PRF_HMAC_SHA2_256, key, key, n), RangeError, `case ${i + 1}: ${n}`);
  }
  assert.equal(prfPlus(PRF_HMAC_SHA2_256, key, key, 0).length, 0);
  assert.equal(prfPlus(PRF_HMAC_SHA2_256, key, key, 8160).length, 8160);
});

test('prf+: does not modify its inputs and returns fresh arrays', () => {
  const key = offsetView(hex('aabbccdd'));
  const seed = offsetView(hex('00112233445566778899'));
  const keyBefore = toHex(key);
  const seedBefore = toHex(seed);
  const a = prfPlus(PRF_HMAC_SHA2_256, key, seed, 40);
  const b = prfPlus(PRF_HMAC_SHA2_256, key, seed, 40);
  a.fill(0);
  assert.notEqual(toHex(b), toHex(a));
  assert.equal(toHex(key), keyBefore);
  assert.equal(toHex(seed), seedBefore);
  assert.equal(toHex(concatBytes(hex('01'), new Uint8Array(0), offsetView(hex('0203')))), '010203');
});
