import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../errors.js';
import { REPLAY_WINDOW_DEFAULT, ReplayWindow } from './replay.js';
import type { ReplayReject } from './replay.js';

type Op = 'check' | 'accept';
type Step = [op: Op, seq: bigint, want: ReplayReject | null];

function run(w: ReplayWindow, steps: Step[], label: string): void {
  for (const [i, [op, seq, want]] of steps.entries()) {
    const hi = Number(seq >> 32n);
    const lo = Number(seq & 0xffffffffn);
    const got = op === 'check' ? w.check(hi, lo) : w.accept(hi, lo);
    assert.equal(got, want, `${label} step ${i + 1}: ${op}(${seq})`);
  }
}

test('replay: window of 64, table of edges (numbered steps)', () => {
  const w = new ReplayWindow({ size: 64 });
  run(w, [
    ['check', 0n, 'too-old'],     // 1: seq 0 is never valid
    ['accept', 0n, 'too-old'],    // 2
    ['check', 1n, null],          // 3: first packet
    ['accept', 1n, null],         // 4
    ['accept', 1n, 'replay'],     // 5: duplicate
    ['accept', 3n, null],         // 6: gap
    ['accept', 2n, null],         // 7: reordered into the gap
    ['accept', 2n, 'replay'],     // 8
    ['accept', 100n, null],       // 9: jump < window: top = 100
    ['check', 100n, 'replay'],    // 10: top itself
    ['check', 37n, null],         // 11: top - size + 1: left edge, inside
    ['check', 36n, 'too-old'],    // 12: top - size: just outside
    ['accept', 37n, null],        // 13
    ['accept', 37n, 'replay'],    // 14
    ['check', 38n, null],         // 15: never seen, inside
    ['check', 3n, 'too-old'],     // 16: seen long ago, now left of the window
    ['accept', 164n, null],       // 17: slide by exactly the window size
    ['check', 100n, 'too-old'],   // 18: old top is now top - size
    ['check', 101n, null],        // 19: left edge, never seen
    ['accept', 1164n, null],      // 20: far jump (> window): bitmap cleared
    ['check', 164n, 'too-old'],   // 21
    ['check', 1101n, null],       // 22: left edge after the jump, clear
    ['check', 1164n, 'replay'],   // 23
    ['accept', 1165n, null],      // 24: next in order
    ['accept', 1163n, null],      // 25: reordered by 2
    ['accept', 1102n, null],      // 26: reordered by 63 (left edge)
    ['accept', 1101n, 'too-old'], // 27: top moved to 1165, so 1101 = top - size
  ], 'w64');
  assert.equal(w.topLo, 1165);
  assert.equal(w.topHi, 0);
});

test('replay: window slides across many ring laps without stale bits', () => {
  // Step by 7 so top crosses word and ring boundaries at every alignment; every accepted
  // number must stay 'replay' while inside the window and every skipped one must stay fresh.
  for (const [c, size] of [64, 96, 1024].entries()) {
    const w = new ReplayWindow({ size });
    for (let s = 1n; s < 20000n; s += 7n) {
      assert.equal(w.accept(0, Number(s)), null, `case ${c + 1}: accept ${s}`);
      for (const back of [0n, 7n, 14n, BigInt(size) - 7n]) {
        const t = s - back;
        if (t < 1n || back >= BigInt(size)) continue;
        const want = back % 7n === 0n ? 'replay' : null;
        assert.equal(w.check(0, Number(t)), want, `case ${c + 1}: top ${s}, check ${t}`);
      }
      if (s > 1n) assert.equal(w.check(0, Number(s - 1n)), null, `case ${c + 1}: ${s - 1n} never seen`);
    }
  }
});

test('replay: random walk agrees with a set-based model (seeded)', () => {
  let seed = 0x2545f491;
  const rnd = (n: number): number => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  for (const [c, size] of [64, 128, 1024, 4096].entries()) {
    const w = new ReplayWindow({ size });
    const seen = new Set<bigint>();
    let top = 0n;
    const base = c === 3 ? 0xfffff000n : 0n; // case 4 crosses the 2^32 boundary (64-bit numbers)
    const model = (s: bigint): ReplayReject | null => {
      if (s === 0n) return 'too-old';
      if (s > top) return null;
      if (top - s >= BigInt(size)) return 'too-old';
      return seen.has(s) ? 'replay' : null;
    };
    for (let i = 0; i < 20000; i++) {
      const r = rnd(100);
      let s: bigint;
      if (top === 0n || r < 2) s = base + top + BigInt(rnd(3 * size)) + 1n; // far-ish jump ahead
      else if (r < 50) s = top + BigInt(rnd(8)) + 1n;                     // in order-ish
      else s = top - BigInt(rnd(size + 16));                                // reordered / old
      if (s < 0n) s = 0n;
      const hi = Number(s >> 32n);
      const lo = Number(s & 0xffffffffn);
      const want = model(s);
      assert.equal(w.check(hi, lo), want, `case ${c + 1} op ${i}: check ${s}`);
      if (rnd(4) !== 0) {
        assert.equal(w.accept(hi, lo), want, `case ${c + 1} op ${i}: accept ${s}`);
        if (want === null) {
          seen.add(s);
          if (s > top) top = s;
        }
      }
    }
  }
});

test('replay: ESN high-half reconstruction (RFC 4303 A2.2), window 64', () => {
  const W = 64n;
  // [top, received low half, expected 64-bit seq or -1]
  const cases: [bigint, number, bigint][] = [
    [0n, 1, 1n],                                  // 1: case B at the start
    [0n, 0xffffffff, -1n],                        // 2: case B, would need Th - 1 < 0
    [0n, 0xffffffc1, -1n],                        // 3: case B boundary: Tl - W + 1 mod 2^32
    [0n, 0xffffffc0, 0xffffffc0n],                // 4: just below that boundary -> Th
    [0x1_00000005n, 0xfffffff8, 0xfffffff8n],     // 5: case B, left part in the previous block
    [0x1_00000005n, 0x00000006, 0x1_00000006n],   // 6: case B, ahead in the current block
    [0x1_00000005n, 0xffffff00, 0x1_ffffff00n],   // 7: case B, below the window start -> Th (far ahead)
    [0x1_fffffff0n, 0x00000005, 0x2_00000005n],   // 8: case A, low half wrapped -> Th + 1
    [0x1_fffffff0n, 0xffffffb1, 0x1_ffffffb1n],   // 9: case A, left edge Tl - W + 1 -> Th
    [0x1_fffffff0n, 0xffffffb0, 0x2_ffffffb0n],   // 10: case A, just left of the edge -> Th + 1
    [0x1_0000003fn, 0x00000000, 0x1_00000000n],   // 11: Tl = W - 1 is case A; 0 = Tl - W + 1 -> Th
    [0x1_0000003en, 0xffffffff, 0x0_ffffffffn],   // 12: Tl = W - 2 is case B; 2^32 - 1 -> Th - 1
    [0xffffffff_fffffff0n, 0x00000001, -1n],      // 13: would need Th + 1 > 2^32 - 1
    [0xffffffff_fffffff0n, 0xffffffff, 0xffffffff_ffffffffn], // 14: last number of the space
  ];
  for (const [i, [top, lo, want]] of cases.entries()) {
    const w = new ReplayWindow({ size: Number(W), initialTop: top });
    const hi = w.esnHigh(lo);
    const got = hi < 0 ? -1n : (BigInt(hi) << 32n) | BigInt(lo);
    assert.equal(got, want, `case ${i + 1}: top 0x${top.toString(16)} lo 0x${lo.toString(16)}`);
  }
});

test('replay: ESN wrap, accept across the 2^32 boundary with reconstructed high bits', () => {
  const w = new ReplayWindow({ size: 64, initialTop: 0xfffffff0n });
  const steps: [Op, number, bigint, ReplayReject | null][] = [
    ['accept', 0xfffffff1, 0xfffffff1n, null],      // 1
    ['accept', 0x00000002, 0x1_00000002n, null],    // 2: low half wrapped: Seqh = Th + 1
    ['accept', 0xfffffff5, 0xfffffff5n, null],      // 3: late packet from before the wrap, inside the window
    ['accept', 0xfffffff5, 0xfffffff5n, 'replay'],  // 4
    ['accept', 0xfffffff1, 0xfffffff1n, 'replay'],  // 5
    ['accept', 0x00000001, 0x1_00000001n, null],    // 6
    ['accept', 0x00000002, 0x1_00000002n, 'replay'], // 7
    ['check', 0xffffffc3, 0xffffffc3n, null],       // 8: top - 63, the left edge: previous block, fresh
    ['check', 0xffffffc2, 0x1_ffffffc2n, null],     // 9: top - 64 cannot be told from "far ahead" (A2.2): Th
    ['accept', 0xffffffc3, 0xffffffc3n, null],      // 10
    ['accept', 0x00000040, 0x1_00000040n, null],    // 11: slide 62 past the boundary
    ['check', 0xffffffc3, 0x1_ffffffc3n, null],     // 12: now case A (Tl = 64 >= 63): maps ahead, not back
    ['check', 0x00000001, 0x1_00000001n, 'replay'], // 13: 63 below top, seen in step 6
  ];
  for (const [i, [op, lo, want64, want]] of steps.entries()) {
    const hi = w.esnHigh(lo);
    assert.equal((BigInt(hi) << 32n) | BigInt(lo), want64, `step ${i + 1}: reconstruction`);
    assert.equal(op === 'check' ? w.check(hi, lo) : w.accept(hi, lo), want, `step ${i + 1}: ${op}`);
  }
  assert.equal(w.topHi, 1);
  assert.equal(w.topLo, 0x40);
});

test('replay: configuration checks', () => {
  const bad = [0, 32, 63, 65, 100, 65568, 131072, 1.5, -64, Number.NaN];
  for (const [i, size] of bad.entries()) {
    assert.throws(() => new ReplayWindow({ size }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG', `bad case ${i + 1}: ${size}`);
  }
  for (const [i, size] of [64, 96, 1024, 65536].entries()) {
    assert.equal(new ReplayWindow({ size }).size, size, `ok case ${i + 1}`);
  }
  assert.equal(new ReplayWindow().size, REPLAY_WINDOW_DEFAULT);
  assert.equal(REPLAY_WINDOW_DEFAULT, 1024);
  assert.throws(() => new ReplayWindow({ initialTop: 1n << 64n }), (e: unknown) => GatewayError.isGatewayError(e));
});
