import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../../errors.js';
import { TS_TYPE } from '../constants.js';
import type { AddressRangeSelector, TrafficSelector } from '../payloads.js';
import {
  formatSelector, intersectSelectors, narrowSelectors, selectorContains, selectorsFromPrefixes, selectorsWithin,
} from './ts.js';

const sel = (cidr: string): AddressRangeSelector => selectorsFromPrefixes([cidr], 'test')[0];
const withPorts = (s: AddressRangeSelector, ipProtocol: number, startPort: number, endPort: number): AddressRangeSelector =>
  ({ ...s, ipProtocol, startPort, endPort });

test('ts: prefixes become address ranges, any protocol, all ports', () => {
  const cases: [string, string, string, number][] = [
    ['198.18.0.0/24', 'c6120000', 'c61200ff', TS_TYPE.IPV4_ADDR_RANGE],
    ['198.18.0.7/32', 'c6120007', 'c6120007', TS_TYPE.IPV4_ADDR_RANGE],
    ['0.0.0.0/0', '00000000', 'ffffffff', TS_TYPE.IPV4_ADDR_RANGE],
    ['198.18.0.0/15', 'c6120000', 'c613ffff', TS_TYPE.IPV4_ADDR_RANGE],
    ['2001:db8::/64', '20010db8000000000000000000000000', '20010db800000000ffffffffffffffff', TS_TYPE.IPV6_ADDR_RANGE],
  ];
  for (const [i, [cidr, start, end, type]] of cases.entries()) {
    const s = sel(cidr);
    assert.equal(Buffer.from(s.startAddress).toString('hex'), start, `case ${i + 1}`);
    assert.equal(Buffer.from(s.endAddress).toString('hex'), end, `case ${i + 1}`);
    assert.deepEqual([s.tsType, s.ipProtocol, s.startPort, s.endPort], [type, 0, 0, 65535], `case ${i + 1}`);
    assert.equal(formatSelector(s), cidr, `case ${i + 1}: formats back as the prefix`);
  }
  assert.throws(() => selectorsFromPrefixes(['198.18.0.1/24'], 'x'), GatewayError);
  assert.throws(() => selectorsFromPrefixes([], 'x'), GatewayError);
});

test('ts: intersection and containment', () => {
  const a = sel('198.18.0.0/24');
  const cases: [string, AddressRangeSelector, AddressRangeSelector, string | undefined][] = [
    ['same', a, a, '198.18.0.0/24'],
    ['narrower inside', a, sel('198.18.0.128/25'), '198.18.0.128/25'],
    ['wider outside', sel('198.18.0.128/25'), sel('198.18.0.0/16'), '198.18.0.128/25'],
    ['disjoint', a, sel('198.18.1.0/24'), undefined],
    ['other family', a, sel('2001:db8::/32'), undefined],
    ['protocol any x tcp', a, withPorts(a, 6, 0, 65535), '198.18.0.0/24 proto 6'],
    ['tcp x udp', withPorts(a, 6, 0, 65535), withPorts(a, 17, 0, 65535), undefined],
    ['ports overlap', withPorts(a, 6, 100, 200), withPorts(a, 6, 150, 300), '198.18.0.0/24 proto 6 ports 150-200'],
    ['ports disjoint', withPorts(a, 6, 100, 200), withPorts(a, 6, 201, 300), undefined],
  ];
  for (const [i, [name, x, y, want]] of cases.entries()) {
    const r = intersectSelectors(x, y);
    assert.equal(r === undefined ? undefined : formatSelector(r), want, `case ${i + 1}: ${name}`);
    const r2 = intersectSelectors(y, x);
    assert.equal(r2 === undefined ? undefined : formatSelector(r2), want, `case ${i + 1}: ${name} (commuted)`);
    if (r !== undefined) {
      assert.ok(selectorContains(x, r) && selectorContains(y, r), `case ${i + 1}: the intersection lies in both`);
    }
  }
  assert.equal(formatSelector({ ...a, endAddress: Uint8Array.of(198, 18, 0, 9) }), '198.18.0.0-198.18.0.9');
});

test('ts: the responder narrows, the initiator checks the answer is inside its proposal', () => {
  const proposed: TrafficSelector[] = [sel('198.18.0.0/23'), { kind: 'raw', tsType: 10, bytes: new Uint8Array(8) }, sel('2001:db8::/48')];
  const cases: [string, AddressRangeSelector[], string[]][] = [
    ['policy narrower', [sel('198.18.1.0/24')], ['198.18.1.0/24']],
    ['policy wider', [sel('198.18.0.0/16')], ['198.18.0.0/23']],
    ['two policy prefixes', [sel('198.18.0.0/25'), sel('2001:db8:0:1::/64')], ['198.18.0.0/25', '2001:db8:0:1::/64']],
    ['duplicates collapse', [sel('198.18.0.0/24'), sel('198.18.0.0/24')], ['198.18.0.0/24']],
    ['nothing in common', [sel('203.0.113.0/24')], []],
  ];
  for (const [i, [name, policy, want]] of cases.entries()) {
    const n = narrowSelectors(proposed, policy);
    assert.deepEqual(n.map(formatSelector), want, `case ${i + 1}: ${name}`);
    const ranges = proposed.filter((p): p is AddressRangeSelector => p.kind === 'range');
    assert.equal(selectorsWithin(n, ranges), want.length > 0, `case ${i + 1}: within`);
  }
  const mine = [sel('198.18.0.0/24')];
  assert.equal(selectorsWithin([sel('198.18.0.0/23')], mine), false, 'a wider answer is refused');
  assert.equal(selectorsWithin([sel('198.18.0.0/25'), sel('198.18.9.0/24')], mine), false, 'one selector outside is enough to refuse');
  assert.equal(selectorsWithin([{ kind: 'raw', tsType: 10, bytes: new Uint8Array(8) }], mine), false, 'a raw selector is refused');
  assert.equal(selectorsWithin([], mine), false, 'an empty answer is refused');
});
