import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../errors.js';
import { AEAD_ALGORITHMS, AEAD_NAMES, createAead, isAeadName, parseKeyMaterialHex } from './aead.js';
import type { AeadName } from './aead.js';
import { hex, loadDraftVectors, loadKernelVectors, offsetView, toHex } from '../../test/support/vectors/load.js';

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

interface Kat { name: string; alg: AeadName; keyMaterial: Uint8Array; iv: Uint8Array; aad: Uint8Array; pt: Uint8Array; ct: Uint8Array }

const kats: Kat[] = [
  ...loadKernelVectors().map((v) => ({
    name: v.name, alg: v.algorithm, keyMaterial: hex(v.keyMaterial), iv: hex(v.iv), aad: hex(v.aad), pt: hex(v.plaintext), ct: hex(v.ctextTag),
  })),
  ...loadDraftVectors().map((v) => ({
    name: v.name, alg: v.algorithm, keyMaterial: concat(hex(v.key), hex(v.salt)), iv: hex(v.iv), aad: hex(v.aad),
    pt: hex(v.plaintext), ct: hex(v.ctextTag),
  })),
];

test('aead: known answers (7 kernel rfc4106 entries + 16 draft-mcgrew cases), seal and open', () => {
  assert.equal(kats.length, 23);
  for (const [i, k] of kats.entries()) {
    const label = `case ${i + 1} (${k.name})`;
    const aead = createAead(k.alg, offsetView(k.keyMaterial));
    // seal into a buffer at a non-zero offset, from inputs that are views with non-zero byteOffset
    const out = new Uint8Array(k.pt.length + 16 + 9);
    const n = aead.seal(offsetView(k.iv), 0, offsetView(k.aad), offsetView(k.pt), 0, k.pt.length, out, 5);
    assert.equal(n, k.ct.length, label);
    assert.equal(toHex(out.subarray(5, 5 + n)), toHex(k.ct), label);
    // open in place
    const buf = offsetView(k.ct);
    assert.equal(aead.open(k.iv, 0, k.aad, buf, 0, k.pt.length, buf, 0), true, label);
    assert.equal(toHex(buf.subarray(0, k.pt.length)), toHex(k.pt), label);
  }
});

test('aead: any flipped bit in ciphertext, ICV, AAD or IV fails open and leaves dst untouched', () => {
  const k = kats[7]; // draft case 1 (ESN AAD)
  const aead = createAead(k.alg, k.keyMaterial);
  const positions: [string, number][] = [];
  for (let i = 0; i < k.ct.length; i += 5) positions.push(['ct', i]);
  positions.push(['ct', k.ct.length - 1], ['aad', 0], ['aad', k.aad.length - 1], ['iv', 0], ['iv', 7]);
  for (const [i, [what, pos]] of positions.entries()) {
    const ct = Uint8Array.from(k.ct);
    const aad = Uint8Array.from(k.aad);
    const iv = Uint8Array.from(k.iv);
    ({ ct, aad, iv })[what as 'ct' | 'aad' | 'iv'][pos] ^= 1 << (i % 8);
    const dst = new Uint8Array(k.pt.length).fill(0x5c);
    assert.equal(aead.open(iv, 0, aad, ct, 0, k.pt.length, dst, 0), false, `case ${i + 1}: ${what}[${pos}]`);
    assert.ok(dst.every((b) => b === 0x5c), `case ${i + 1}: dst untouched`);
  }
});

test('aead: registry parameters', () => {
  const cases: [AeadName, number, number][] = [
    ['aes128gcm16', 16, 20],
    ['aes192gcm16', 24, 28],
    ['aes256gcm16', 32, 36],
  ];
  assert.deepEqual(AEAD_NAMES, cases.map((c) => c[0]));
  for (const [i, [name, keyLen, kmLen]] of cases.entries()) {
    const alg = AEAD_ALGORITHMS[name];
    assert.equal(alg.keyLength, keyLen, `case ${i + 1}`);
    assert.equal(alg.keyMaterialLength, kmLen, `case ${i + 1}`);
    assert.equal(alg.ivLength, 8, `case ${i + 1}`);
    assert.equal(alg.icvLength, 16, `case ${i + 1}`);
    assert.equal(alg.linuxName, 'rfc4106(gcm(aes))', `case ${i + 1}`);
    const a = createAead(name, new Uint8Array(kmLen));
    assert.equal(a.name, name);
    assert.equal(a.keyMaterialLength, kmLen);
    assert.ok(isAeadName(name));
  }
  assert.equal(isAeadName('aes128gcm8'), false);
  assert.equal(isAeadName('toString'), false);
});

test('aead: bad key material is GatewayError ERR_ESP_KEY', () => {
  const cases: [AeadName, number][] = [
    ['aes128gcm16', 16], ['aes128gcm16', 19], ['aes128gcm16', 21], ['aes128gcm16', 36], ['aes128gcm16', 0],
    ['aes192gcm16', 20], ['aes192gcm16', 24], ['aes256gcm16', 32], ['aes256gcm16', 20], ['aes256gcm16', 37],
  ];
  for (const [i, [name, len]] of cases.entries()) {
    assert.throws(() => createAead(name, new Uint8Array(len)), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ESP_KEY',
      `case ${i + 1}: ${name} with ${len} bytes`);
  }
});

test('aead: parseKeyMaterialHex', () => {
  const ok: [string, string][] = [
    ['0x4c80cdefbb5d10da906ac73c3613a6342e443b68', '4c80cdefbb5d10da906ac73c3613a6342e443b68'],
    ['4C80CDEF', '4c80cdef'],
    ['0X00ff', '00ff'],
  ];
  for (const [i, [text, want]] of ok.entries()) assert.equal(toHex(parseKeyMaterialHex(text)), want, `ok case ${i + 1}`);
  const bad = ['', '0x', '0x123', 'zz', '0x12 34', '12-34', '0xg0'];
  for (const [i, text] of bad.entries()) {
    assert.throws(() => parseKeyMaterialHex(text), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ESP_KEY', `bad case ${i + 1}`);
  }
});
