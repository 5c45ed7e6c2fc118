/** cidr.test.ts: address and prefix parsing/printing, table-driven. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cidrContains, cidrOverlaps, formatCidr, formatIp, maskAddr, parseCidr, parseIp } from './cidr.js';
import type { Cidr } from './cidr.js';

function cidr(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(p.reason);
  return p.cidr;
}

describe('parseIp/formatIp round trip (glibc inet_ntop form)', () => {
  const cases: readonly [string, string][] = [
    ['198.18.0.1', '198.18.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'], // first longest run wins
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['2001:db8:1:1:1:1:0:1', '2001:db8:1:1:1:1:0:1'], // a single zero group is not compressed
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'],
    ['::198.18.0.1', '::198.18.0.1'],
    ['2001:db8::198.18.0.1', '2001:db8::c612:1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ];
  cases.forEach(([input, want], i) => {
    test(`case ${i + 1}: ${input}`, () => {
      const ip = parseIp(input);
      assert.ok(ip !== undefined);
      assert.equal(formatIp(ip.family, ip.addr), want);
      const again = parseIp(want);
      assert.deepEqual(again?.addr, ip.addr);
    });
  });
});

describe('parseIp rejects', () => {
  const bad = ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-1', 'a.b.c.d', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7', '12345::', 'fe80::1%eth0', '1:2:3:4:5:6:7::8', 'g::1', '::1.2.3'];
  bad.forEach((input, i) => {
    test(`case ${i + 1}: ${JSON.stringify(input)}`, () => assert.equal(parseIp(input), undefined));
  });
});

describe('parseCidr', () => {
  const cases: readonly { input: string; want?: string; hostBits?: boolean; error?: RegExp }[] = [
    { input: '198.18.0.0/24', want: '198.18.0.0/24', hostBits: false },
    { input: '198.18.0.7', want: '198.18.0.7/32', hostBits: false },
    { input: '198.18.0.7/24', want: '198.18.0.0/24', hostBits: true },
    { input: '198.18.0.0/15', want: '198.18.0.0/15', hostBits: false },
    { input: '198.19.0.0/15', want: '198.18.0.0/15', hostBits: true },
    { input: '2001:db8:1::/64', want: '2001:db8:1::/64', hostBits: false },
    { input: '2001:db8:1::5/64', want: '2001:db8:1::/64', hostBits: true },
    { input: '2001:db8::2', want: '2001:db8::2/128', hostBits: false },
    { input: '198.18.0.0/33', error: /0-32/ },
    { input: '2001:db8::/129', error: /0-128/ },
    { input: '198.18.0.0/', error: /prefix length/ },
    { input: '198.18.0.0/08', error: /prefix length/ },
    { input: 'eth0/24', error: /not an IPv4 or IPv6 address/ },
  ];
  cases.forEach((c, i) => {
    test(`case ${i + 1}: ${c.input}`, () => {
      const p = parseCidr(c.input);
      if (c.error !== undefined) {
        assert.equal(p.ok, false);
        if (!p.ok) assert.match(p.reason, c.error);
        return;
      }
      assert.ok(p.ok);
      assert.equal(formatCidr(p.cidr), c.want);
      assert.equal(p.hostBitsSet, c.hostBits);
    });
  });
});

describe('maskAddr on a subarray with a non-zero byteOffset', () => {
  test('case 1: reads only its view and returns a fresh array', () => {
    const backing = new Uint8Array([0xff, 198, 18, 0, 7, 0xff]);
    const view = backing.subarray(1, 5);
    const m = maskAddr(view, 24);
    assert.deepEqual(Array.from(m), [198, 18, 0, 0]);
    assert.equal(backing[4], 7);
  });
});

describe('cidrContains / cidrOverlaps', () => {
  const cases: readonly [string, string, boolean, boolean][] = [
    // outer, inner, contains, overlaps
    ['198.18.0.0/24', '198.18.0.2/32', true, true],
    ['198.18.0.0/24', '198.18.0.0/24', true, true],
    ['198.18.0.0/24', '198.18.0.0/23', false, true],
    ['198.18.0.0/24', '198.18.1.0/24', false, false],
    ['198.18.0.0/15', '198.19.255.0/24', true, true],
    ['2001:db8:1::/64', '2001:db8:1::2/128', true, true],
    ['2001:db8:1::/64', '2001:db8:2::/64', false, false],
    ['198.18.0.0/24', '2001:db8::/32', false, false],
  ];
  cases.forEach(([o, n, contains, overlaps], i) => {
    test(`case ${i + 1}: ${o} vs ${n}`, () => {
      assert.equal(cidrContains(cidr(o), cidr(n)), contains);
      assert.equal(cidrOverlaps(cidr(o), cidr(n)), overlaps);
      assert.equal(cidrOverlaps(cidr(n), cidr(o)), overlaps);
    });
  });
});
