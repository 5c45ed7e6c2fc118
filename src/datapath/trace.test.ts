import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TRACE_MAX_COUNT, TRACE_RING, Tracer, formatTraceEvent } from './trace.js';

test('Tracer: filters by host or peer, stops at count or time (numbered cases)', () => {
  const cases: [string, ConstructorParameters<typeof Tracer>[0], readonly string[], string | null, boolean][] = [
    ['host matches inner src', { host: '198.18.0.2' }, ['198.18.0.2', '198.18.0.1'], null, true],
    ['host matches endpoint', { host: '198.18.0.2' }, ['198.18.0.2'], 'bob', true],
    ['host does not match', { host: '198.18.0.3' }, ['198.18.0.2', '198.18.0.1'], 'bob', false],
    ['peer matches', { peer: 'bob' }, ['203.0.113.9'], 'bob', true],
    ['peer does not match', { peer: 'carol' }, ['198.18.0.2'], 'bob', false],
    ['no filter: everything', {}, [], null, true],
  ];
  for (const [i, [what, filter, addrs, peer, want]] of cases.entries()) {
    assert.equal(new Tracer(filter, 5, 5).matches(addrs, peer), want, `case ${i + 1}: ${what}`);
  }
  const t = new Tracer({}, 2, 5, 1000);
  t.record('out', 'bob', ['a'], 'ok', 1001);
  t.record('in', 'bob', ['b'], 'auth', 1002);
  t.record('in', 'bob', ['c'], 'ok', 1003);
  const r = t.read(0, 1003);
  assert.deepEqual(r.events.map((e) => e.n), [1, 2], 'count bound: the third is not recorded');
  assert.equal(r.done, true);
  assert.deepEqual(t.read(1, 1003).events.map((e) => e.n), [2], 'read since');
  const timed = new Tracer({}, 100, 1, 0);
  assert.equal(timed.done(999), false);
  assert.equal(timed.done(1000), true, 'time bound');
  assert.equal(new Tracer({}, 1e9, 1e9, 0).done(TRACE_MAX_COUNT), false);
});

test('Tracer: the ring keeps the newest TRACE_RING events and counts the lost ones', () => {
  const t = new Tracer({}, TRACE_RING + 10, 60, 0);
  for (let i = 0; i < TRACE_RING + 10; i++) t.record('out', null, ['x'], 'ok', 1);
  const r = t.read(0, 1);
  assert.equal(r.events.length, TRACE_RING);
  assert.equal(r.events[0]?.n, 11);
  assert.equal(r.lost, 10);
});

test('formatTraceEvent: stages joined, the drop reason last', () => {
  assert.equal(formatTraceEvent({ n: 3, ms: 1500, dir: 'in', peer: 'bob', stages: ['ESP from 198.18.0.2 spi 0x00002001 seq 9 120 bytes'], outcome: 'auth' }),
    '#3 +1.500s in  bob: ESP from 198.18.0.2 spi 0x00002001 seq 9 120 bytes -> DROPPED: auth');
});
