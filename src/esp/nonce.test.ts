import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AEAD_NONCE_LEN, ESP_IV_LEN, FixedIvGenerator, SEQUENCE_IV } from './nonce.js';

test('nonce: the default IV is the 64-bit sequence number, big-endian', () => {
  const cases: [number, number, string][] = [
    [0, 1, '0000000000000001'],
    [0, 0xffffffff, '00000000ffffffff'],
    [1, 0, '0000000100000000'],
    [0x87654321, 0x00000007, '8765432100000007'],
    [0xffffffff, 0xffffffff, 'ffffffffffffffff'],
  ];
  for (const [i, [hi, lo, want]] of cases.entries()) {
    const out = new Uint8Array(12).fill(0xee);
    SEQUENCE_IV.writeIv(hi, lo, out, 3);
    assert.equal(Buffer.from(out).toString('hex'), 'eeeeee' + want + 'ee', `case ${i + 1}`);
  }
  assert.equal(ESP_IV_LEN, 8);
  assert.equal(AEAD_NONCE_LEN, 12);
});

test('nonce: FixedIvGenerator hands out its IVs in order, then throws', () => {
  const g = new FixedIvGenerator([Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]), new Uint8Array(8).fill(9)]);
  const out = new Uint8Array(8);
  g.writeIv(0, 1, out, 0);
  assert.deepEqual([...out], [1, 2, 3, 4, 5, 6, 7, 8]);
  g.writeIv(0, 2, out, 0);
  assert.deepEqual([...out], [9, 9, 9, 9, 9, 9, 9, 9]);
  assert.throws(() => g.writeIv(0, 3, out, 0), RangeError);
  assert.throws(() => new FixedIvGenerator([new Uint8Array(7)]), RangeError);
});
