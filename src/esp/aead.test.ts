import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../errors.js';
import { randomBytes } from 'node:crypto';
import { AEAD_ALGORITHMS, AEAD_NAMES, createAead, defaultAeadImpl, isAeadName, parseKeyMaterialHex } from './aead.js';
import type { AeadName } from './aead.js';
import { loadGcmAddon } from './aead-native.js';

/** IMPLS: node:crypto (the reference) and the native addon; both must pass every vector. */
const IMPLS = ['node', 'native'] as const;
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

for (const impl of IMPLS) {
test(`aead ${impl}: known answers (7 kernel rfc4106 entries + 16 draft-mcgrew cases), seal and open`, () => {
  assert.equal(kats.length, 23);
  for (const [i, k] of kats.entries()) {
    const label = `case ${i + 1} (${k.name})`;
    const aead = createAead(k.alg, offsetView(k.keyMaterial), impl);
    assert.equal(aead.impl, impl, label);
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

test(`aead ${impl}: any flipped bit in ciphertext, ICV, AAD or IV fails open and leaves dst untouched`, () => {
  const k = kats[7]; // draft case 1 (ESN AAD)
  const aead = createAead(k.alg, k.keyMaterial, impl);
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
}

test('aead: the native addon is built here, and native and node agree on 600 random packets (sizes 0..2000, all key sizes, AAD 8 and 12)', () => {
  assert.ok(loadGcmAddon() !== undefined, 'npm run build builds src/io/native (espgate_gcm)');
  for (let i = 0; i < 600; i++) {
    const name = AEAD_NAMES[i % AEAD_NAMES.length];
    const km = randomBytes(AEAD_ALGORITHMS[name].keyMaterialLength);
    const ref = createAead(name, km, 'node');
    const nat = createAead(name, km, 'native');
    const len = (i * 37) % 2001;
    const pt = randomBytes(len);
    const iv = randomBytes(8);
    const aad = randomBytes(i % 2 === 0 ? 8 : 12);
    const a = Buffer.alloc(len + 16 + 3);
    const b = Buffer.alloc(len + 16 + 3);
    assert.equal(ref.seal(iv, 0, aad, pt, 0, len, a, 3), nat.seal(iv, 0, aad, pt, 0, len, b, 3), `case ${i + 1}: length`);
    assert.ok(a.equals(b), `case ${i + 1}: same ciphertext and ICV`);
    // each opens the other's output in place
    const fromRef = Buffer.from(a);
    assert.equal(nat.open(iv, 0, aad, fromRef, 3, len, fromRef, 3), true, `case ${i + 1}: native opens node's`);
    assert.ok(fromRef.subarray(3, 3 + len).equals(pt), `case ${i + 1}`);
    const fromNat = Buffer.from(b);
    assert.equal(ref.open(iv, 0, aad, fromNat, 3, len, fromNat, 3), true, `case ${i + 1}: node opens native's`);
  }
});

test('aead native: out-of-range arguments are a RangeError (caller bug), never a memory error', () => {
  const aead = createAead('aes128gcm16', new Uint8Array(20), 'native');
  const buf = new Uint8Array(64);
  const iv = new Uint8Array(8);
  const aad = new Uint8Array(8);
  const cases: [string, () => unknown][] = [
    ['seal past the end of src', () => aead.seal(iv, 0, aad, buf, 40, 30, new Uint8Array(200), 0)],
    ['seal: no room for the ICV in dst', () => aead.seal(iv, 0, aad, buf, 0, 40, buf, 10)],
    ['open: ICV past the end', () => aead.open(iv, 0, aad, buf, 0, 60, buf, 0)],
    ['negative offset', () => aead.open(iv, 0, aad, buf, -1, 8, buf, 0)],
    ['seal: partial overlap', () => aead.seal(iv, 0, aad, buf, 0, 16, buf, 4)],
  ];
  for (const [i, [what, fn]] of cases.entries()) assert.throws(fn, RangeError, `case ${i + 1}: ${what}`);
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
    assert.equal(a.impl, defaultAeadImpl(), 'the default: the native addon when built, node:crypto with ESPGATE_AEAD=node');
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
    for (const impl of IMPLS) assert.throws(() => createAead(name, new Uint8Array(len), impl), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ESP_KEY',
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
