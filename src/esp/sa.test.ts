import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../errors.js';
import { InboundSa, OutboundSa, SEQ_RESERVE_BLOCK_DEFAULT } from './sa.js';
import type { OutboundSaOptions, SeqReserver } from './sa.js';
import { u64ToBigInt } from './u64.js';

const KEY = new Uint8Array(20).fill(7);
const base = { spi: 0x1000, algorithm: 'aes128gcm16', keyMaterial: KEY } as const;

function seqOf(sa: OutboundSa): bigint {
  return u64ToBigInt(sa.seqHi, sa.seqLo);
}

/** MemReserver records reserve() calls; it can be told to fail. */
class MemReserver implements SeqReserver {
  calls: [number, number][] = [];
  stored = new Map<number, number>();
  failing = false;
  reserve(spi: number, upTo: number): void {
    if (this.failing) throw new GatewayError('ERR_SEQ_STORE', 'disk full');
    this.calls.push([spi, upTo]);
    this.stored.set(spi, upTo);
  }
  load(spi: number): number {
    return this.stored.get(spi) ?? 0;
  }
}

test('sa: outbound sequence numbers start at 1 and count up', () => {
  const sa = new OutboundSa(base);
  for (let i = 1n; i <= 5n; i++) {
    assert.equal(sa.takeSeq(), null);
    assert.equal(seqOf(sa), i);
  }
});

test('sa: initialSeq and the end of the sequence space (table)', () => {
  // [esn, initialSeq, packets that succeed, last sequence number]
  const cases: [boolean, bigint, number, bigint][] = [
    [false, 1n, 3, 3n],
    [false, 0xfffffffdn, 3, 0xffffffffn],           // 2^32 - 1 is sent, then refused
    [false, 0xffffffffn, 1, 0xffffffffn],
    [true, 0xfffffffen, 5, 0x1_00000002n],          // ESN crosses 2^32
    [true, (1n << 64n) - 2n, 2, (1n << 64n) - 1n],  // 2^64 - 1 is sent, then refused
    [true, 1n << 53n, 3, (1n << 53n) + 2n],         // beyond Number precision
  ];
  for (const [i, [esn, initialSeq, n, last]] of cases.entries()) {
    const sa = new OutboundSa({ ...base, esn, initialSeq });
    const limit = last === (esn ? (1n << 64n) - 1n : 0xffffffffn);
    for (let k = 0; k < n; k++) assert.equal(sa.takeSeq(), null, `case ${i + 1}: packet ${k + 1}`);
    assert.equal(seqOf(sa), last, `case ${i + 1}`);
    if (limit) {
      assert.equal(sa.takeSeq(), 'seq-exhausted', `case ${i + 1}: refused`);
      assert.equal(sa.exhausted, true);
      assert.equal(sa.takeSeq(), 'seq-exhausted', `case ${i + 1}: still refused`);
      assert.equal(seqOf(sa), last, `case ${i + 1}: unchanged`);
    }
  }
});

test('sa: initialSeq outside the space is ERR_ESP_SEQ_EXHAUSTED', () => {
  const cases: [boolean, bigint | number][] = [[false, 0], [false, 0n], [false, 1n << 32n], [true, 1n << 64n], [true, -1n]];
  for (const [i, [esn, initialSeq]] of cases.entries()) {
    assert.throws(() => new OutboundSa({ ...base, esn, initialSeq }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ESP_SEQ_EXHAUSTED', `case ${i + 1}`);
  }
});

test('sa: SPI and option validation', () => {
  const bad: Partial<OutboundSaOptions>[] = [{ spi: 0 }, { spi: 255 }, { spi: 2 ** 32 }, { spi: 1.5 }, { reserveBlock: 0 }];
  for (const [i, o] of bad.entries()) {
    assert.throws(() => new OutboundSa({ ...base, ...o }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG', `case ${i + 1}`);
  }
  assert.throws(() => new OutboundSa({ ...base, keyMaterial: new Uint8Array(16) }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ESP_KEY');
  assert.throws(() => new InboundSa({ ...base, outerSource: new Uint8Array(5) }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG');
  assert.equal(new OutboundSa({ ...base, spi: 256 }).spi, 256);
  assert.equal(new OutboundSa({ ...base, spi: 0xffffffff }).spi, 0xffffffff);
});

test('sa: reservations are made in blocks, before a number above the mark is used', () => {
  const r = new MemReserver();
  const sa = new OutboundSa({ ...base, reserver: r, reserveBlock: 4 });
  const marks: number[] = [];
  for (let i = 0; i < 10; i++) {
    assert.equal(sa.takeSeq(), null);
    marks.push(r.calls.length === 0 ? 0 : r.calls[r.calls.length - 1][1]);
    assert.ok(BigInt(marks[i]) >= seqOf(sa), `seq ${seqOf(sa)} used with mark ${marks[i]}`);
  }
  assert.deepEqual(r.calls, [[0x1000, 4], [0x1000, 8], [0x1000, 12]]);
  assert.equal(SEQ_RESERVE_BLOCK_DEFAULT, 65536);
});

test('sa: a failing reserver drops the packet as seq-store, keeps the number, and recovers', () => {
  const r = new MemReserver();
  const sa = new OutboundSa({ ...base, reserver: r, reserveBlock: 2 });
  assert.equal(sa.takeSeq(), null);
  assert.equal(sa.takeSeq(), null);
  r.failing = true;
  assert.equal(sa.takeSeq(), 'seq-store');
  assert.ok(GatewayError.isGatewayError(sa.lastReserveError));
  assert.equal(seqOf(sa), 2n);
  assert.equal(sa.exhausted, false);
  r.failing = false;
  assert.equal(sa.takeSeq(), null);
  assert.equal(seqOf(sa), 3n);
  assert.equal(sa.lastReserveError, undefined);
  assert.deepEqual(r.calls.map((c) => c[1]), [2, 4]);
});

test('sa: a restarted SA resumes above the stored mark (table)', () => {
  // [esn, stored mark, initialSeq, expected first sequence number or 'exhausted']
  const cases: [boolean, number, bigint | undefined, bigint | 'exhausted'][] = [
    [false, 0, undefined, 1n],
    [false, 65536, undefined, 65537n],
    [false, 65536, 100000n, 100000n],            // an explicit higher start wins
    [false, 0xfffffffe, undefined, 0xffffffffn],
    [false, 0xffffffff, undefined, 'exhausted'],
    [true, 0xffffffff, undefined, 0x1_00000000n],
    [true, 2 ** 60, undefined, (1n << 60n) + 1n],
    [true, 2 ** 64, undefined, 'exhausted'],      // 2^64 - 1 rounded up
  ];
  for (const [i, [esn, stored, initialSeq, want]] of cases.entries()) {
    const r = new MemReserver();
    r.stored.set(base.spi, stored);
    const mk = (): OutboundSa => new OutboundSa({ ...base, esn, reserver: r, reserveBlock: 16, ...(initialSeq === undefined ? {} : { initialSeq }) });
    if (want === 'exhausted') {
      assert.throws(mk, (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ESP_SEQ_EXHAUSTED', `case ${i + 1}`);
      continue;
    }
    const sa = mk();
    assert.equal(sa.takeSeq(), null, `case ${i + 1}`);
    assert.equal(seqOf(sa), want, `case ${i + 1}`);
    assert.equal(r.calls.length, 1, `case ${i + 1}: reserved before use`);
    assert.ok(BigInt(r.calls[0][1]) >= want, `case ${i + 1}: mark covers the number`);
  }
});

test('sa: marks above 2^53 are rounded up, never down, and stop at the end of the space', () => {
  const r = new MemReserver();
  const start = (1n << 60n) + 3n;
  const sa = new OutboundSa({ ...base, esn: true, initialSeq: start, reserver: r, reserveBlock: 4 });
  for (let i = 0; i < 6; i++) {
    assert.equal(sa.takeSeq(), null);
    const mark = r.calls[r.calls.length - 1][1];
    assert.ok(BigInt(mark) >= seqOf(sa), `case ${i + 1}: mark ${mark} >= ${seqOf(sa)}`);
  }
  // Precision at 2^60 is 256: one rounded-up mark covers the next block too.
  assert.equal(r.calls.length, 1);
  const end = new OutboundSa({ ...base, spi: 0x2000, esn: true, initialSeq: (1n << 64n) - 3n, reserver: r, reserveBlock: 1000 });
  for (let i = 0; i < 3; i++) assert.equal(end.takeSeq(), null);
  assert.equal(end.takeSeq(), 'seq-exhausted');
  assert.equal(r.stored.get(0x2000), 2 ** 64);
});

test('sa: stats, clock and lifetime flags', () => {
  let now = 1000;
  const sa = new InboundSa({ ...base, now: () => now, lifetime: { softPackets: 2, hardBytes: 250 } });
  assert.deepEqual(sa.stats, { packets: 0, bytes: 0, lastUsedMs: 0, dummyPackets: 0 });
  const steps: [number, number, boolean, boolean][] = [[100, 1500, false, false], [100, 1600, true, false], [60, 1700, true, true]];
  for (const [i, [bytes, t, soft, hard]] of steps.entries()) {
    now = t;
    sa.countPacket(bytes);
    assert.equal(sa.stats.lastUsedMs, t, `step ${i + 1}`);
    assert.equal(sa.softExpired, soft, `step ${i + 1}: soft`);
    assert.equal(sa.hardExpired, hard, `step ${i + 1}: hard`);
  }
  assert.equal(sa.stats.packets, 3);
  assert.equal(sa.stats.bytes, 260);
});

test('sa: outer source matching', () => {
  const sa = new InboundSa({ ...base, outerSource: Uint8Array.from([198, 51, 100, 7]), peer: 'b' });
  const pkt = Uint8Array.from([0, 0, 198, 51, 100, 7, 0]);
  const cases: [number, number, boolean][] = [[2, 4, true], [1, 4, false], [2, 3, false], [2, 16, false], [5, 4, false], [-1, 4, false]];
  for (const [i, [off, len, want]] of cases.entries()) assert.equal(sa.sourceMatches(pkt, off, len), want, `case ${i + 1}`);
  assert.equal(new InboundSa(base).sourceMatches(pkt, 0, 4), true);
  assert.equal(sa.peer, 'b');
});
