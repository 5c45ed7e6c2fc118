import assert from 'node:assert/strict';
import { test } from 'node:test';

import { GateWatch } from './gate-watch.js';
import type { GateProbe } from './gate-watch.js';
import { BLACKHOLE_METRIC, blackholesInProc } from './netdev.js';

/** FakeProbe is a scripted system: gen, inNf, fullOk, routesOk; it counts calls. */
class FakeProbe implements GateProbe {
  gen = 7;
  inNf = true;
  fullOk = true;
  routesOk = true;
  fulls = 0;
  routeChecks = 0;
  /** bumpDuringFull: a rule change lands while the full check runs. */
  bumpDuringFull = false;
  generation(): number { return this.gen; }
  inNfTables(): Promise<boolean> { return Promise.resolve(this.inNf); }
  full(): Promise<boolean> {
    this.fulls++;
    if (this.bumpDuringFull) { this.gen++; this.bumpDuringFull = false; }
    return Promise.resolve(this.fullOk);
  }
  routes(): Promise<boolean> {
    this.routeChecks++;
    return Promise.resolve(this.routesOk);
  }
}

test('GateWatch: the full check only when the nf_tables generation moved, a route went, or every fullEvery checks (numbered cases)', async () => {
  const p = new FakeProbe();
  const w = new GateWatch(p, 5);
  // [case, change before the check, want installed, want fulls so far, want route checks so far]
  const steps: [number, () => void, boolean, number, number][] = [
    [1, () => {}, true, 1, 0], // first: full
    [2, () => {}, true, 1, 1], // unchanged: routes only
    [3, () => {}, true, 1, 2],
    [4, () => { p.gen = 8; }, true, 2, 2], // a rule changed somewhere: full
    [5, () => {}, true, 2, 3],
    [6, () => { p.routesOk = false; }, false, 2, 4], // a blackhole route went: seen from /proc
    [7, () => { p.routesOk = true; }, true, 3, 4], // and the next check is a full one
    [8, () => {}, true, 3, 5],
    [9, () => {}, true, 3, 6],
    [10, () => {}, true, 3, 7],
    [11, () => {}, true, 3, 8],
    [12, () => {}, true, 4, 8], // fullEvery (5): full again although nothing moved
    [13, () => { p.gen = 9; p.fullOk = false; }, false, 5, 8], // rules gone: full says so
    [14, () => {}, false, 6, 8], // not installed is never cached
    [15, () => { p.fullOk = true; p.bumpDuringFull = true; }, true, 7, 8], // changed during the check
    [16, () => {}, true, 8, 8], // so the generation kept is stale: full again
    [17, () => {}, true, 8, 9],
  ];
  for (const [n, change, want, fulls, routes] of steps) {
    change();
    assert.equal(await w.check(), want, `case ${n}: installed`);
    assert.deepEqual([p.fulls, p.routeChecks], [fulls, routes], `case ${n}: full checks, route checks`);
  }
  assert.deepEqual([w.fullChecks, w.quickChecks], [8, 9]);
});

test('GateWatch: always the full check when the generation is unknown or the rules are not all in nf_tables', async () => {
  for (const [n, gen, inNf] of [[1, -1, true], [2, 7, false]] as const) {
    const p = new FakeProbe();
    p.gen = gen;
    p.inNf = inNf;
    const w = new GateWatch(p, 30);
    for (let i = 0; i < 4; i++) assert.equal(await w.check(), true);
    assert.deepEqual([p.fulls, p.routeChecks], [4, 0], `case ${n}`);
  }
});

// /proc texts as a lab namespace prints them with the daemon's blackholes installed.
const ROUTE4 = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eg0\t000013C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
*\t000013C6\t00000000\t0001\t0\t0\t${BLACKHOLE_METRIC}\t00FFFFFF\t0\t0\t0
`;
const ROUTE6 = `20010db80000ff010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001      eg0
20010db80000ff010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00001092 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
`;

test('blackholesInProc reads the blackhole routes from /proc texts (numbered cases)', () => {
  const fakes = ['198.19.0.0/24', '2001:db8:0:ff01::/64'];
  const noBh4 = ROUTE4.split('\n').filter((l) => !l.startsWith('*')).join('\n');
  const noBh6 = ROUTE6.split('\n').filter((l) => !l.includes('00001092')).join('\n');
  const cases: [number, readonly string[], string | undefined, string | undefined, boolean | undefined][] = [
    [1, fakes, ROUTE4, ROUTE6, true],
    [2, fakes, noBh4, ROUTE6, false], // the v4 blackhole went (the eg0 route alone is not one)
    [3, fakes, ROUTE4, noBh6, false], // the v6 one went (the eg0 route has another metric, no reject flag)
    [4, ['198.19.0.0/16'], ROUTE4, ROUTE6, false], // another prefix length
    [5, ['198.19.1.0/24'], ROUTE4, ROUTE6, false],
    [6, fakes, undefined, ROUTE6, undefined], // no /proc/net/route: ask ip(8)
    [7, ['198.19.0.0/24'], ROUTE4, undefined, true], // IPv6 text not needed without an IPv6 prefix
    [8, fakes, ROUTE4, undefined, undefined],
    [9, fakes, ROUTE4, ROUTE6.replace('00200200       lo\n0000', '00000001       lo\n0000'), false], // same prefix and metric, not a reject route
  ];
  for (const [n, f, r4, r6, want] of cases) assert.equal(blackholesInProc(f, r4, r6), want, `case ${n}`);
});
