import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimitedLog } from './log.js';

test('RateLimitedLog: lets perInterval lines through, then counts the rest and reports them', () => {
  let now = 0;
  const lines: { key: string; msg: string; suppressed: number }[] = [];
  const rl = new RateLimitedLog((key, msg, suppressed) => lines.push({ key, msg, suppressed }), 3, 1000, () => now);
  const logged = Array.from({ length: 10 }, () => rl.note('auth', 'bad ICV'));
  assert.deepEqual(logged, [true, true, true, false, false, false, false, false, false, false]);
  assert.equal(lines.length, 3);
  assert.equal(rl.note('replay', 'replayed'), true, 'keys have separate budgets');
  now = 1000;
  assert.equal(rl.note('auth', 'bad ICV'), true);
  assert.deepEqual(lines.at(-2), { key: 'auth', msg: '7 similar messages suppressed', suppressed: 7 });
});
