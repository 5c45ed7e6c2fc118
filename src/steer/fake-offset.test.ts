import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../errors.js';
import { formatIpAddress, parseIpAddress } from '../packet/address.js';
import { embedAt, Rng } from '../packet/testing.js';
import { OffsetMap } from './fake-offset.js';
import type { PrefixPair } from './fake-offset.js';

const V4: PrefixPair = { real: '198.18.0.0/24', fake: '198.19.0.0/24' };
const V6: PrefixPair = { real: '2001:db8:1::/48', fake: '2001:db8:f001::/48' };

const bad: [string, PrefixPair[], RegExp][] = [
  ['real not a prefix', [{ real: '198.18.0.0', fake: '198.19.0.0/24' }], /^prefix pair 1 \(real 198\.18\.0\.0, fake 198\.19\.0\.0\/24\): real prefix '198\.18\.0\.0' is not a prefix/],
  ['fake not an address', [{ real: '198.18.0.0/24', fake: 'fake/24' }], /^prefix pair 1 .*: fake prefix 'fake\/24': 'fake' is not an IPv4 or IPv6 address/],
  ['real has host bits set', [{ real: '198.18.0.1/24', fake: '198.19.0.0/24' }], /real prefix '198\.18\.0\.1\/24' has host bits set \(the network is 198\.18\.0\.0\/24\)/],
  ['fake has host bits set (v6)', [{ real: '2001:db8:1::/48', fake: '2001:db8:2::1/48' }], /fake prefix '2001:db8:2::1\/48' has host bits set \(the network is 2001:db8:2::\/48\)/],
  ['prefix length out of range', [{ real: '198.18.0.0/33', fake: '198.19.0.0/24' }], /prefix length '33' is not a number from 0 to 32/],
  ['families differ', [{ real: '198.18.0.0/24', fake: '2001:db8::/32' }], /real is IPv4 but fake is IPv6; both must be one family/],
  ['lengths differ', [{ real: '198.18.0.0/24', fake: '198.19.0.0/25' }], /real is a \/24 but fake is a \/25; the lengths must be equal/],
  ['real and fake identical', [{ real: '198.18.0.0/24', fake: '198.18.0.0/24' }], /prefix pair 1 .*: real and fake prefixes overlap/],
  ['real and fake overlap (/0)', [{ real: '0.0.0.0/0', fake: '0.0.0.0/0' }], /real and fake prefixes overlap/],
  ['second real overlaps first real', [V4, { real: '198.18.0.128/25', fake: '198.19.1.0/25' }],
    /^prefix pair 2 \(real 198\.18\.0\.128\/25, fake 198\.19\.1\.0\/25\): real prefix 198\.18\.0\.128\/25 overlaps the real prefix 198\.18\.0\.0\/24 of prefix pair 1 \(198\.18\.0\.0\/24 -> 198\.19\.0\.0\/24\)$/],
  ['second fake overlaps first real', [V4, { real: '198.18.1.0/24', fake: '198.18.0.0/24' }], /fake prefix 198\.18\.0\.0\/24 overlaps the real prefix 198\.18\.0\.0\/24 of prefix pair 1/],
  ['second real overlaps first fake', [V4, { real: '198.19.0.0/24', fake: '198.18.1.0/24' }], /prefix pair 2 .*: real prefix 198\.19\.0\.0\/24 overlaps the fake prefix 198\.19\.0\.0\/24 of prefix pair 1/],
  ['third fake overlaps second fake (v6, mixed list)', [V4, V6, { real: '2001:db8:2000::/36', fake: '2001:db8:f000::/36' }],
    /prefix pair 3 .*: fake prefix 2001:db8:f000::\/36 overlaps the fake prefix 2001:db8:f001::\/48 of prefix pair 2/],
  ['duplicate pair', [V4, V4], /prefix pair 2 .*overlaps the real prefix 198\.18\.0\.0\/24 of prefix pair 1/],
];
for (const [i, [name, pairs, message]] of bad.entries()) {
  test(`offset map bad ${i + 1}. ${name}`, () => {
    assert.throws(() => new OffsetMap(pairs), (e: unknown) => {
      assert.ok(GatewayError.isGatewayError(e));
      assert.equal(e.code, 'ERR_PREFIX');
      assert.match(e.message, message);
      return true;
    });
  });
}

test('offset map 1. valid mixed pairs are listed in canonical form', () => {
  const m = new OffsetMap([V4, { real: '2001:DB8:1::/48', fake: '2001:db8:f001:0::/48' }, { real: '203.0.113.0/28', fake: '203.0.113.16/28' }]);
  assert.deepEqual(m.pairs.map((p) => p.text), ['198.18.0.0/24 -> 198.19.0.0/24', '2001:db8:1::/48 -> 2001:db8:f001::/48', '203.0.113.0/28 -> 203.0.113.16/28']);
  assert.deepEqual(m.pairs.map((p) => p.family), [4, 6, 4]);
  assert.equal(new OffsetMap([]).pairs.length, 0, 'an empty map is valid and maps nothing');
});

const MAP = new OffsetMap([
  V4,
  { real: '198.51.100.0/28', fake: '198.51.100.240/28' }, // non-byte-aligned, same /24
  { real: '203.0.112.0/23', fake: '198.18.2.0/23' }, // /23: bit 0 of the third byte is host
  V6,
  { real: '2001:db8:0:ab00::/61', fake: '2001:db8:0:cd08::/61' },
  { real: '2001:db8:5::10/124', fake: '2001:db8:6::20/124' },
]);

const maps: [string, string, number][] = [
  ['198.18.0.7', '198.19.0.7', 0],
  ['198.18.0.0', '198.19.0.0', 0],
  ['198.18.0.255', '198.19.0.255', 0],
  ['198.51.100.0', '198.51.100.240', 1],
  ['198.51.100.15', '198.51.100.255', 1],
  ['198.51.100.9', '198.51.100.249', 1],
  ['203.0.112.1', '198.18.2.1', 2],
  ['203.0.113.254', '198.18.3.254', 2],
  ['2001:db8:1::7', '2001:db8:f001::7', 3],
  ['2001:db8:1:ffff:ffff:ffff:ffff:ffff', '2001:db8:f001:ffff:ffff:ffff:ffff:ffff', 3],
  ['2001:db8:0:ab00::1', '2001:db8:0:cd08::1', 4],
  ['2001:db8:0:ab07:1:2:3:4', '2001:db8:0:cd0f:1:2:3:4', 4],
  ['2001:db8:5::1f', '2001:db8:6::2f', 5],
];
for (const [i, [real, fake, index]] of maps.entries()) {
  test(`offset map mapping ${i + 1}. ${real} <-> ${fake}`, () => {
    assert.equal(MAP.mapToFake(real), fake);
    assert.equal(MAP.unmapFromFake(fake), real);
    const a = parseIpAddress(real);
    assert.ok(a !== undefined);
    const b = embedAt(Uint8Array.from([0xaa, ...a.bytes, 0xbb]), 9);
    assert.equal(MAP.indexOfReal(b, 1, a.family), index);
    assert.equal(MAP.isReal(b, 1, a.family), true);
    assert.equal(MAP.isFake(b, 1, a.family), false);
    assert.equal(MAP.toFake(b, 1, a.family), true);
    assert.equal(formatIpAddress(b, 1, a.family), fake);
    assert.equal(b[0], 0xaa, 'byte before untouched');
    assert.equal(b[b.length - 1], 0xbb, 'byte after untouched');
    assert.equal(MAP.indexOfFake(b, 1, a.family), index);
    assert.equal(MAP.toFake(b, 1, a.family), false, 'a fake address is in no real prefix');
    assert.equal(MAP.toReal(b, 1, a.family), true);
    assert.equal(formatIpAddress(b, 1, a.family), real);
  });
}

const unmapped = ['198.18.1.7', '198.51.100.16', '198.51.100.239', '203.0.114.0', '2001:db8:2::7', '2001:db8:0:ab08::', '2001:db8:5::20', '192.0.2.1'];
for (const [i, text] of unmapped.entries()) {
  test(`offset map unmapped ${i + 1}. ${text}`, () => {
    const a = parseIpAddress(text);
    assert.ok(a !== undefined);
    const b = embedAt(a.bytes, 4);
    const before = Uint8Array.from(b);
    assert.equal(MAP.toFake(b, 0, a.family), false);
    assert.equal(MAP.toReal(b, 0, a.family), false);
    assert.deepEqual(Uint8Array.from(b), before, 'left untouched');
    assert.equal(MAP.indexOfReal(b, 0, a.family), -1);
    assert.equal(MAP.indexOfFake(b, 0, a.family), -1);
    assert.throws(() => MAP.mapToFake(text), { code: 'ERR_PREFIX', message: `${text} is not inside any real prefix` });
    assert.throws(() => MAP.unmapFromFake(text), { code: 'ERR_PREFIX', message: `${text} is not inside any fake prefix` });
  });
}

test('offset map 2. the family selects the pairs: IPv4 bytes read as IPv6 are not matched by v4 pairs', () => {
  const b = Uint8Array.from([198, 18, 0, 7, ...new Array<number>(12).fill(0)]);
  assert.equal(MAP.isReal(b, 0, 6), false);
  assert.equal(MAP.isReal(b, 0, 4), true);
});

test('offset map 3. bad address text', () => {
  assert.throws(() => MAP.mapToFake('198.18.0'), { code: 'ERR_PREFIX', message: "'198.18.0' is not an IPv4 or IPv6 address" });
});

test('offset map 4. unmap(map(x)) == x for random addresses in every pair, v4 and v6', () => {
  const rng = new Rng(2026);
  for (const p of MAP.pairs) {
    const len = p.real.bytes.length;
    for (let n = 0; n < 500; n++) {
      // A random address inside the real prefix: network bits from the prefix, host bits random.
      const r = rng.bytes(len);
      for (let i = 0; i < len; i++) {
        const bits = Math.max(0, Math.min(8, p.real.prefixLen - 8 * i));
        const m = bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
        r[i] = (p.real.bytes[i] & m) | (r[i] & ~m & 0xff);
      }
      const b = embedAt(r, 1 + rng.int(7));
      assert.equal(MAP.toFake(b, 0, p.family), true);
      for (let i = 0; i < len; i++) {
        const bits = Math.max(0, Math.min(8, p.fake.prefixLen - 8 * i));
        const m = bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
        assert.equal(b[i] & m, p.fake.bytes[i], 'network bits are the fake prefix');
        assert.equal(b[i] & ~m & 0xff, r[i] & ~m & 0xff, 'host bits kept');
      }
      assert.equal(MAP.toReal(b, 0, p.family), true);
      assert.deepEqual(Uint8Array.from(b), r);
    }
  }
});

test('offset map 5. every address of a /28 maps one to one', () => {
  const m = new OffsetMap([{ real: '198.51.100.0/28', fake: '198.51.100.16/28' }]);
  const seen = new Set<string>();
  for (let h = 0; h < 16; h++) {
    const f = m.mapToFake(`198.51.100.${h}`);
    assert.equal(f, `198.51.100.${16 + h}`);
    seen.add(f);
    assert.equal(m.unmapFromFake(f), `198.51.100.${h}`);
  }
  assert.equal(seen.size, 16);
});
