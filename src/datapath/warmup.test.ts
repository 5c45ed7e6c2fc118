import { test } from 'node:test';
import assert from 'node:assert/strict';
import { warmUpCodec } from './warmup.js';

test('warmUpCodec: every throwaway packet round-trips, per algorithm (duplicates count once)', () => {
  const cases: [string, Parameters<typeof warmUpCodec>[0], number, number][] = [
    ['one algorithm', ['aes128gcm16'], 50, 100],
    ['two, one repeated', ['aes128gcm16', 'aes256gcm16', 'aes128gcm16'], 50, 200],
    ['none', [], 50, 0],
  ];
  for (const [i, [what, algs, rounds, want]] of cases.entries()) {
    assert.equal(warmUpCodec(algs, rounds), want, `case ${i + 1}: ${what}`);
  }
});
