import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4, isIPv6 } from 'node:net';
import {
  cidrContains, cidrsOverlap, formatCidr, formatIpAddress, formatIpv4Address, formatIpv6Address, parseCidr,
  parseIpAddress, parseIpv4Address, parseIpv6Address,
} from './address.js';
import type { Cidr } from './address.js';
import { embedAt, Rng } from './testing.js';

const v4ok: [string, number[]][] = [
  ['0.0.0.0', [0, 0, 0, 0]],
  ['198.18.0.7', [198, 18, 0, 7]],
  ['255.255.255.255', [255, 255, 255, 255]],
  ['203.0.113.10', [203, 0, 113, 10]],
];
for (const [i, [text, bytes]] of v4ok.entries()) {
  test(`address v4 ok ${i + 1}. ${text}`, () => {
    const b = parseIpv4Address(text);
    assert.deepEqual(b, Uint8Array.from(bytes));
    assert.equal(formatIpv4Address(embedAt(Uint8Array.from(bytes), 3)), text);
  });
}

const v4bad = ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '010.0.0.1', '1.2.3.-4', ' 1.2.3.4', '1.2.3.4 ', '1..2.3', 'a.b.c.d', '1.2.3.4/32', '0x1.2.3.4', '1.2.3.1e1'];
for (const [i, text] of v4bad.entries()) {
  test(`address v4 bad ${i + 1}. '${text}'`, () => {
    assert.equal(parseIpv4Address(text), undefined);
    assert.equal(isIPv4(text), false, 'node:net agrees');
  });
}

const v6ok: [string, string][] = [
  // input, canonical (RFC 5952)
  ['::', '::'],
  ['::1', '::1'],
  ['1::', '1::'],
  ['2001:db8::1', '2001:db8::1'],
  ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
  ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
  ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
  ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
  ['2001:db8::1:0:0:0:1', '2001:db8:0:1::1'], // the longer run wins
  ['::ffff:198.18.0.7', '::ffff:198.18.0.7'],
  ['::ffff:c612:7', '::ffff:198.18.0.7'],
  ['64:ff9b::198.51.100.1', '64:ff9b::c633:6401'],
  ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
  ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
  ['fe80::1:2:3:4', 'fe80::1:2:3:4'],
  ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
];
for (const [i, [text, canon]] of v6ok.entries()) {
  test(`address v6 ok ${i + 1}. ${text}`, () => {
    const b = parseIpv6Address(text);
    assert.ok(b !== undefined);
    assert.equal(isIPv6(text), true, 'node:net agrees it is valid');
    assert.equal(formatIpv6Address(embedAt(b, 5)), canon);
    assert.deepEqual(parseIpv6Address(canon), b, 'the canonical form parses back to the same bytes');
  });
}

const v6bad = [
  '', ':', ':::', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1::2::3', ':1::', '1:::2', '12345::', 'g::',
  '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8', '1.2.3.4::', '::1.2.3.4:1', 'fe80::1%eth0', '[::1]', '::ffff:256.0.0.1',
  '1:2:3:4:5:6:7:1.2.3.4', ' ::1', '::1 ', '2001:db8::/32',
];
for (const [i, text] of v6bad.entries()) {
  test(`address v6 bad ${i + 1}. '${text}'`, () => {
    assert.equal(parseIpv6Address(text), undefined);
    if (!text.includes('%')) assert.equal(isIPv6(text), false, 'node:net agrees (it accepts zone ids; we do not)');
  });
}

test('address 1. random IPv6 bytes: format then parse round trips; node:net and WHATWG URL agree', () => {
  const rng = new Rng(5952);
  for (let n = 0; n < 3000; n++) {
    const b = rng.bytes(16);
    // Make zero runs likely.
    for (let g = 0; g < 8; g++) if (rng.int(3) === 0) { b[2 * g] = 0; b[2 * g + 1] = 0; }
    const text = formatIpv6Address(b);
    assert.ok(isIPv6(text), text);
    assert.deepEqual(parseIpv6Address(text), b, text);
    const mapped = b.subarray(0, 12).every((v, i) => (i < 10 ? v === 0 : v === 0xff));
    if (!mapped) assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1), 'canonical like WHATWG URL');
  }
});

test('address 2. random IPv4 bytes round trip', () => {
  const rng = new Rng(791);
  for (let n = 0; n < 1000; n++) {
    const b = rng.bytes(4);
    const text = formatIpv4Address(b);
    assert.ok(isIPv4(text));
    assert.deepEqual(parseIpv4Address(text), b);
  }
});

test('address 3. parseIpAddress and formatIpAddress pick the family', () => {
  assert.deepEqual(parseIpAddress('198.18.0.1'), { family: 4, bytes: Uint8Array.from([198, 18, 0, 1]) });
  assert.equal(parseIpAddress('2001:db8::1')?.family, 6);
  assert.equal(parseIpAddress('nonsense'), undefined);
  const v6 = parseIpv6Address('2001:db8::7');
  assert.ok(v6 !== undefined);
  assert.equal(formatIpAddress(embedAt(v6, 2), 0, 6), '2001:db8::7');
});

const cidrOk: [string, string, number][] = [
  ['198.18.0.0/15', '198.18.0.0/15', 15],
  ['198.19.0.0/24', '198.19.0.0/24', 24],
  ['198.18.0.7/32', '198.18.0.7/32', 32],
  ['0.0.0.0/0', '0.0.0.0/0', 0],
  ['2001:db8::/32', '2001:db8::/32', 32],
  ['2001:DB8:0:0::/64', '2001:db8::/64', 64],
  ['2001:db8:1::8/125', '2001:db8:1::8/125', 125],
  ['::/0', '::/0', 0],
];
for (const [i, [text, canon, len]] of cidrOk.entries()) {
  test(`cidr ok ${i + 1}. ${text}`, () => {
    const r = parseCidr(text);
    assert.ok(r.ok);
    assert.equal(r.cidr.prefixLen, len);
    assert.equal(formatCidr(r.cidr), canon);
  });
}

const cidrBad: [string, RegExp][] = [
  ['198.18.0.0', /'198\.18\.0\.0' is not a prefix: expected address\/length/],
  ['198.18.0.1/24', /'198\.18\.0\.1\/24' has host bits set \(the network is 198\.18\.0\.0\/24\)/],
  ['198.19.0.0/15', /has host bits set \(the network is 198\.18\.0\.0\/15\)/],
  ['2001:db8::1/64', /has host bits set \(the network is 2001:db8::\/64\)/],
  ['198.18.0.0/33', /prefix length '33' is not a number from 0 to 32/],
  ['2001:db8::/129', /prefix length '129' is not a number from 0 to 128/],
  ['198.18.0.0/', /prefix length '' is not a number/],
  ['198.18.0.0/024', /prefix length '024' is not a number/],
  ['198.18.0.0/-1', /prefix length '-1' is not a number/],
  ['198.18.0.0/24/1', /prefix length '24\/1' is not a number/],
  ['198.18.0/24', /'198\.18\.0' is not an IPv4 or IPv6 address/],
  ['/24', /'' is not an IPv4 or IPv6 address/],
];
for (const [i, [text, message]] of cidrBad.entries()) {
  test(`cidr bad ${i + 1}. ${text}`, () => {
    const r = parseCidr(text);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.message, message);
  });
}

function cidr(text: string): Cidr {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(r.message);
  return r.cidr;
}

const overlaps: [string, string, boolean][] = [
  ['198.18.0.0/24', '198.19.0.0/24', false],
  ['198.18.0.0/15', '198.19.0.0/24', true],
  ['198.19.0.0/24', '198.18.0.0/15', true],
  ['198.18.0.0/24', '198.18.0.128/25', true],
  ['198.18.0.0/25', '198.18.0.128/25', false],
  ['0.0.0.0/0', '203.0.113.0/24', true],
  ['2001:db8::/32', '2001:db8:1::/48', true],
  ['2001:db8:1::/48', '2001:db8:2::/48', false],
  ['198.18.0.0/24', '::/0', false],
];
for (const [i, [a, b, want]] of overlaps.entries()) {
  test(`cidr overlap ${i + 1}. ${a} vs ${b} -> ${want}`, () => {
    assert.equal(cidrsOverlap(cidr(a), cidr(b)), want);
    assert.equal(cidrsOverlap(cidr(b), cidr(a)), want);
  });
}

test('cidr contains: non-byte-aligned prefixes, address at an offset', () => {
  const c = cidr('198.18.0.0/15');
  const a = embedAt(Uint8Array.from([9, 198, 19, 255, 255]), 4);
  assert.equal(cidrContains(c, a, 1), true);
  a[2] = 20;
  assert.equal(cidrContains(c, a, 1), false);
});
