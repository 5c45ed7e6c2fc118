import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareU64, u64FromBigInt, u64FromNumber, u64ToBigInt, u64ToNumberCeil } from './u64.js';

test('u64: compare and bigint round trips', () => {
  const cases: [number, number, number, number, number][] = [
    [0, 0, 0, 0, 0], [0, 1, 0, 2, -1], [1, 0, 0, 0xffffffff, 1], [0xffffffff, 0xffffffff, 0xffffffff, 0xfffffffe, 1],
  ];
  for (const [i, [ah, al, bh, bl, want]] of cases.entries()) assert.equal(compareU64(ah, al, bh, bl), want, `case ${i + 1}`);
  for (const [i, v] of [0n, 1n, 0xffffffffn, 1n << 32n, (1n << 64n) - 1n, 0x8765432100000007n].entries()) {
    const [hi, lo] = u64FromBigInt(v);
    assert.equal(u64ToBigInt(hi, lo), v, `case ${i + 1}`);
  }
  assert.throws(() => u64FromBigInt(1n << 64n), RangeError);
  assert.throws(() => u64FromBigInt(-1n), RangeError);
});

test('u64: u64ToNumberCeil is exact to 2^53 and never rounds down above', () => {
  const cases: bigint[] = [0n, 1n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 60n) + 3n, (1n << 64n) - 1n, 0xfedcba9876543211n];
  for (const [i, v] of cases.entries()) {
    const [hi, lo] = u64FromBigInt(v);
    const n = u64ToNumberCeil(hi, lo);
    assert.ok(BigInt(n) >= v, `case ${i + 1}: ${n} >= ${v}`);
    if (v <= 1n << 53n) assert.equal(BigInt(n), v, `case ${i + 1}: exact`);
    else assert.ok(BigInt(n) - v < (v >> 52n) + 1n, `case ${i + 1}: within one ulp`);
    const [h2, l2] = u64FromNumber(n);
    assert.equal(u64ToBigInt(h2, l2), BigInt(n), `case ${i + 1}: split back`);
  }
  assert.throws(() => u64FromNumber(1.5), RangeError);
  assert.throws(() => u64FromNumber(2 ** 65), RangeError);
});
