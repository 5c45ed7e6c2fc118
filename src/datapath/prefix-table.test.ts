import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PrefixTable } from './prefix-table.js';

const v4 = (s: string): Uint8Array => Uint8Array.from(s.split('.').map(Number));
/** at puts the address at a non-zero byteOffset inside a larger buffer, as in a packet. */
const at = (a: Uint8Array): [Uint8Array, number] => {
  const big = new Uint8Array(64);
  big.set(a, 17);
  return [big.subarray(3), 14];
};

test('PrefixTable: longest prefix wins, misses are undefined (numbered cases)', () => {
  const t = new PrefixTable<string>(4);
  t.insert(v4('198.18.0.0'), 24, 'lan');
  t.insert(v4('198.18.0.2'), 32, 'bob');
  t.insert(v4('198.18.0.128'), 25, 'upper');
  t.insert(v4('198.18.0.129'), 24, 'lan-again'); // host bits are masked: replaces 'lan'
  const cases: [number, string, string | undefined][] = [
    [1, '198.18.0.2', 'bob'],
    [2, '198.18.0.3', 'lan-again'],
    [3, '198.18.0.200', 'upper'],
    [4, '198.18.1.2', undefined],
    [5, '0.0.0.0', undefined],
  ];
  for (const [n, addr, want] of cases) {
    const [buf, off] = at(v4(addr));
    assert.equal(t.lookup(buf, off), want, `case ${n}: ${addr}`);
  }
  assert.equal(t.size, 3);
  assert.equal(t.remove(v4('198.18.0.2'), 32), true);
  assert.equal(t.remove(v4('198.18.0.2'), 32), false);
  const [buf, off] = at(v4('198.18.0.2'));
  assert.equal(t.lookup(buf, off), 'lan-again');
});

test('PrefixTable: IPv6 and 10,000 /128 entries all found', () => {
  const t = new PrefixTable<number>(6);
  const a = new Uint8Array(16);
  a[0] = 0x20; a[1] = 0x01; a[2] = 0x0d; a[3] = 0xb8;
  for (let i = 0; i < 10_000; i++) { a[14] = i >> 8; a[15] = i & 0xff; t.insert(a, 128, i); }
  for (let i = 0; i < 10_000; i += 97) { a[14] = i >> 8; a[15] = i & 0xff; assert.equal(t.lookup(a, 0), i); }
  a[13] = 1;
  assert.equal(t.lookup(a, 0), undefined);
  t.insert(new Uint8Array(16), 0, -1);
  assert.equal(t.lookup(a, 0), -1, 'default route /0 catches the rest');
});
