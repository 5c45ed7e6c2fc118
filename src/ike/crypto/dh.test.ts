import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hex, offsetView, toHex } from '../../../test/support/vectors/load.js';
import {
  DH_CURVE25519, DH_ECP256, DH_GROUPS, DH_GROUP_CURVE25519, DH_GROUP_ECP256, ECP256_KE_LEN, X25519_KE_LEN,
  dhGroupById, isOnP256,
} from './dh.js';
import type { DhGroup, DhResult } from './dh.js';

/** sharedHex unwraps a successful DhResult, failing the test with the reason otherwise. */
function sharedHex(r: DhResult, label: string): string {
  if (!r.ok) assert.fail(`${label}: refused (${r.reason})`);
  return toHex(r.shared);
}

/** reasonOf returns the refusal reason, failing the test if a secret came back. */
function reasonOf(r: DhResult, label: string): string {
  if (r.ok) assert.fail(`${label}: accepted, shared ${toHex(r.shared)}`);
  return r.reason;
}

// RFC 7748 §6.1 (Curve25519 Diffie-Hellman) and RFC 5903 §8.1 (256-bit random ECP group).
const RFC7748_ALICE_PRIV = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const RFC7748_ALICE_PUB = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
const RFC7748_BOB_PRIV = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const RFC7748_BOB_PUB = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
const RFC7748_K = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

const RFC5903_I = hex('C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433');
const RFC5903_KEI = hex(
  'DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180' + // gix
  '5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3'); // giy
const RFC5903_R = hex('C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53');
const RFC5903_KER = hex(
  'D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63' + // grx
  '56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB'); // gry
const RFC5903_GIR = 'd6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de'; // girx only

test('dh: group descriptors and registry', () => {
  assert.equal(DH_CURVE25519.id, 31);
  assert.equal(DH_GROUP_CURVE25519, 31);
  assert.equal(DH_CURVE25519.keLength, 32);
  assert.equal(DH_CURVE25519.sharedLength, 32);
  assert.equal(DH_ECP256.id, 19);
  assert.equal(DH_GROUP_ECP256, 19);
  assert.equal(DH_ECP256.keLength, 64);
  assert.equal(DH_ECP256.sharedLength, 32);
  assert.equal(dhGroupById(31), DH_CURVE25519);
  assert.equal(dhGroupById(19), DH_ECP256);
  for (const id of [0, 1, 2, 14, 20, 21, 32]) assert.equal(dhGroupById(id), undefined, `id ${id}`);
  assert.deepEqual([...DH_GROUPS.keys()], [31, 19]);
});

test('dh 31: RFC 7748 §5.2 X25519 test vectors (scalar, u-coordinate -> output)', () => {
  // Source: RFC 7748 "Elliptic Curves for Security" §5.2, the two X25519 input/output pairs.
  // The second input u-coordinate has its top bit set, which X25519 must mask (§5).
  const cases: [string, string, string][] = [
    ['a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4',
      'e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c',
      'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552'],
    ['4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d',
      'e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493',
      '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957'],
  ];
  for (const [i, [k, u, want]] of cases.entries()) {
    const label = `case ${i + 1}`;
    const own = DH_CURVE25519.fromPrivate(offsetView(hex(k)));
    assert.equal(sharedHex(DH_CURVE25519.compute(own.privateKey, offsetView(hex(u))), label), want, label);
  }
});

test('dh 31: RFC 7748 §5.2 iterated X25519, 1 and 1000 iterations', () => {
  // Source: RFC 7748 §5.2: k = u = 9 (as 32 octets), then k, u = X25519(k, u), k. Each step
  // imports k as a raw scalar (fromPrivate), so this also runs 1000 unclamped scalars.
  let k: Uint8Array = new Uint8Array(32);
  k[0] = 9;
  let u: Uint8Array = Uint8Array.from(k);
  const want = new Map([
    [1, '422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079'],
    [1000, '684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51'],
  ]);
  for (let n = 1; n <= 1000; n++) {
    const r = DH_CURVE25519.compute(DH_CURVE25519.fromPrivate(k).privateKey, u);
    if (!r.ok) assert.fail(`iteration ${n}: ${r.reason}`);
    u = k;
    k = r.shared;
    const w = want.get(n);
    if (w !== undefined) assert.equal(toHex(k), w, `after ${n} iteration(s)`);
  }
});

test('dh 31: RFC 7748 §6.1 Curve25519 Diffie-Hellman: KE data and shared secret K', () => {
  // Source: RFC 7748 §6.1. The KE payload data of group 31 is the public u-coordinate itself
  // (RFC 8031 §2).
  const alice = DH_CURVE25519.fromPrivate(RFC7748_ALICE_PRIV);
  const bob = DH_CURVE25519.fromPrivate(offsetView(RFC7748_BOB_PRIV));
  assert.equal(toHex(alice.public), toHex(RFC7748_ALICE_PUB));
  assert.equal(toHex(bob.public), toHex(RFC7748_BOB_PUB));
  assert.equal(sharedHex(DH_CURVE25519.compute(alice.privateKey, offsetView(bob.public)), 'alice'), RFC7748_K);
  assert.equal(sharedHex(DH_CURVE25519.compute(bob.privateKey, alice.public), 'bob'), RFC7748_K);
});

test('dh 19: RFC 5903 §8.1 256-bit random ECP group: KEi/KEr payload data and g^ir', () => {
  // Source: RFC 5903 §8.1. KE data is gx | gy with no 0x04 prefix (§7); the shared secret is
  // girx, the x coordinate alone (§7, §9).
  const init = DH_ECP256.fromPrivate(offsetView(RFC5903_I));
  const resp = DH_ECP256.fromPrivate(RFC5903_R);
  assert.equal(toHex(init.public), toHex(RFC5903_KEI), 'KEi payload data');
  assert.equal(toHex(resp.public), toHex(RFC5903_KER), 'KEr payload data');
  assert.equal(sharedHex(DH_ECP256.compute(init.privateKey, offsetView(RFC5903_KER)), 'initiator'), RFC5903_GIR);
  assert.equal(sharedHex(DH_ECP256.compute(resp.privateKey, RFC5903_KEI), 'responder'), RFC5903_GIR);
});

test('dh 31: refuses KE data of the wrong length and low-order points (all-zero g^ir, RFC 8031 §2)', () => {
  const own = DH_CURVE25519.fromPrivate(RFC7748_ALICE_PRIV).privateKey;
  const p = (hexLE: string): Uint8Array => hex(hexLE);
  // Low-order u-coordinates, little-endian: 0, 1, the two points of order 8, and p-1, p, p+1
  // (p = 2^255 - 19), which reduce to low-order points.
  const cases: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'bad-length'],
    ['31 octets', RFC7748_BOB_PUB.subarray(1), 'bad-length'],
    ['33 octets', Uint8Array.from([...RFC7748_BOB_PUB, 0]), 'bad-length'],
    ['65 octets (a P-256 SEC1 point)', new Uint8Array(65).fill(4), 'bad-length'],
    ['u = 0', new Uint8Array(32), 'zero-shared'],
    ['u = 1', p('0100000000000000000000000000000000000000000000000000000000000000'), 'zero-shared'],
    ['order 8 (a)', p('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'), 'zero-shared'],
    ['order 8 (b)', p('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157'), 'zero-shared'],
    ['u = p - 1', p('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'), 'zero-shared'],
    ['u = p', p('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'), 'zero-shared'],
    ['u = p + 1', p('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'), 'zero-shared'],
  ];
  for (const [i, [name, peer, want]] of cases.entries()) {
    const label = `case ${i + 1} (${name})`;
    assert.equal(reasonOf(DH_CURVE25519.compute(own, offsetView(peer)), label), want, label);
  }
});

test('dh 19: refuses KE data of the wrong length, off-curve points and out-of-range coordinates', () => {
  const own = DH_ECP256.fromPrivate(RFC5903_I).privateKey;
  const flip = (b: Uint8Array, at: number): Uint8Array => { const c = Uint8Array.from(b); c[at] = (c[at] ?? 0) ^ 1; return c; };
  const pHex = 'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff';
  const cases: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'bad-length'],
    ['x only (32 octets)', RFC5903_KER.subarray(0, 32), 'bad-length'],
    ['63 octets', RFC5903_KER.subarray(1), 'bad-length'],
    ['with the SEC1 0x04 prefix (65 octets)', Uint8Array.from([4, ...RFC5903_KER]), 'bad-length'],
    ['last bit of y flipped', flip(RFC5903_KER, 63), 'invalid-point'],
    ['first bit of x flipped', flip(RFC5903_KER, 0), 'invalid-point'],
    ['(0, 0)', new Uint8Array(64), 'invalid-point'],
    ['x = p', hex(pHex + toHex(RFC5903_KER.subarray(32))), 'invalid-point'],
    ['y = p', hex(toHex(RFC5903_KER.subarray(0, 32)) + pHex), 'invalid-point'],
    ['all ones', new Uint8Array(64).fill(0xff), 'invalid-point'],
    ['first bit of y flipped', flip(RFC5903_KER, 32), 'invalid-point'],
  ];
  for (const [i, [name, peer, want]] of cases.entries()) {
    const label = `case ${i + 1} (${name})`;
    assert.equal(reasonOf(DH_ECP256.compute(own, offsetView(peer)), label), want, label);
  }
});

test('dh 19: isOnP256 accepts the RFC 5903 points and their negations, nothing else nearby', () => {
  const pMinus = (y: Uint8Array): Uint8Array => {
    const p = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
    const v = p - BigInt('0x' + toHex(y));
    return hex(v.toString(16).padStart(64, '0'));
  };
  const neg = (ke: Uint8Array): Uint8Array => Uint8Array.from([...ke.subarray(0, 32), ...pMinus(ke.subarray(32))]);
  const cases: [string, Uint8Array, boolean][] = [
    ['g^i', RFC5903_KEI, true],
    ['g^r', RFC5903_KER, true],
    ['-g^i', neg(RFC5903_KEI), true],
    ['-g^r', neg(RFC5903_KER), true],
    ['g^i with g^r y', Uint8Array.from([...RFC5903_KEI.subarray(0, 32), ...RFC5903_KER.subarray(32)]), false],
    ['65 octets', Uint8Array.from([4, ...RFC5903_KEI]), false],
  ];
  for (const [i, [name, ke, want]] of cases.entries()) {
    assert.equal(isOnP256(offsetView(ke)), want, `case ${i + 1} (${name})`);
  }
  // the negated point is a real public key: the initiator agrees on g^ir's x with -g^r too
  const own = DH_ECP256.fromPrivate(RFC5903_I).privateKey;
  assert.equal(sharedHex(DH_ECP256.compute(own, neg(RFC5903_KER)), '-g^r'), RFC5903_GIR);
});

test('dh: bad own private keys throw RangeError; keys of another group are refused', () => {
  const n = hex('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551'); // P-256 order
  const cases: [string, () => unknown][] = [
    ['x25519 31-octet scalar', () => DH_CURVE25519.fromPrivate(new Uint8Array(31))],
    ['x25519 33-octet scalar', () => DH_CURVE25519.fromPrivate(new Uint8Array(33))],
    ['p256 zero scalar', () => DH_ECP256.fromPrivate(new Uint8Array(32))],
    ['p256 scalar = n', () => DH_ECP256.fromPrivate(n)],
    ['p256 31-octet scalar', () => DH_ECP256.fromPrivate(new Uint8Array(31).fill(1))],
    ['x25519 key given to group 19', () => DH_ECP256.compute(DH_CURVE25519.generate().privateKey, RFC5903_KER)],
    ['p256 key given to group 31', () => DH_CURVE25519.compute(DH_ECP256.generate().privateKey, RFC7748_BOB_PUB)],
  ];
  for (const [i, [name, f]] of cases.entries()) assert.throws(f, RangeError, `case ${i + 1} (${name})`);
});

test('dh 19: a scalar with a leading zero octet works both ways (the 31-octet getPrivateKey case)', () => {
  const scalar = hex('00' + 'a1'.repeat(31));
  const a = DH_ECP256.fromPrivate(scalar);
  const b = DH_ECP256.fromPrivate(RFC5903_R);
  assert.equal(a.public.length, ECP256_KE_LEN);
  assert.equal(
    sharedHex(DH_ECP256.compute(a.privateKey, b.public), 'a'),
    sharedHex(DH_ECP256.compute(b.privateKey, a.public), 'b'));
});

test('dh: generate() gives fresh key pairs whose two sides agree', () => {
  const groups: DhGroup[] = [DH_CURVE25519, DH_ECP256];
  for (const g of groups) {
    const seen = new Set<string>();
    for (let i = 0; i < 32; i++) {
      const a = g.generate();
      const b = g.generate();
      const label = `${g.name} round ${i + 1}`;
      assert.equal(a.public.length, g.keLength, label);
      assert.equal(a.privateKey.groupId, g.id, label);
      if (g === DH_ECP256) assert.equal(isOnP256(a.public), true, label);
      const ab = sharedHex(g.compute(a.privateKey, b.public), label);
      const ba = sharedHex(g.compute(b.privateKey, a.public), label);
      assert.equal(ab, ba, label);
      assert.equal(ab.length, 2 * g.sharedLength, label);
      assert.equal(seen.has(toHex(a.public)), false, `${label}: repeated public value`);
      seen.add(toHex(a.public));
    }
  }
  assert.equal(X25519_KE_LEN, 32);
});

test('dh: compute() leaves the peer KE data untouched', () => {
  const peer = offsetView(RFC5903_KER);
  const before = toHex(peer);
  DH_ECP256.compute(DH_ECP256.generate().privateKey, peer);
  assert.equal(toHex(peer), before);
  const u = offsetView(RFC7748_BOB_PUB);
  DH_CURVE25519.compute(DH_CURVE25519.generate().privateKey, u);
  assert.equal(toHex(u), toHex(RFC7748_BOB_PUB));
});
