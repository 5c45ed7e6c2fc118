import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { parseHostArg, parsePrefixArg, renderInitConfigs, writeInitConfigs } from './init.js';
import type { InitOptions } from './init.js';

const OPTS: InitOptions = {
  local: { name: 'alice', address: '198.18.0.1' },
  peer: { name: 'bob', address: '198.18.0.2' },
  prefixes: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }],
  aesBits: 256,
  keying: 'static',
};

test('init: the two configs mirror each other, parse, and carry fresh keys', () => {
  const [a, b] = renderInitConfigs(OPTS);
  const ca = parseConfig(a, 'alice.yaml');
  const cb = parseConfig(b, 'bob.yaml');
  const pa = ca.peers[0];
  const pb = cb.peers[0];
  assert.ok(pa?.sa && pb?.sa);
  assert.equal(pa.name, 'bob', '1: alice peers with bob');
  assert.equal(pb.name, 'alice', '2: bob peers with alice');
  assert.equal(pa.endpoint, '198.18.0.2', '3');
  assert.deepEqual(ca.local.protect, ['198.18.0.1/32'], '4');
  assert.deepEqual(pa.sa.out, pb.sa.in, '5: alice out = bob in');
  assert.deepEqual(pa.sa.in, pb.sa.out, '6: alice in = bob out');
  assert.notEqual(pa.sa.out.spi, pa.sa.in.spi, '7: distinct SPIs');
  assert.ok(pa.sa.out.spi >= 0x10000 && pa.sa.in.spi >= 0x10000, '8: SPIs clear of the reserved and hand-picked range');
  assert.equal(Buffer.from(pa.sa.out.key).length, 36, '9: AES-256 key + salt');
  assert.notDeepEqual(pa.sa.out.key, pa.sa.in.key, '10: one key per direction');
  const [a2] = renderInitConfigs(OPTS);
  assert.notEqual(a2, a, '11: fresh randomness on every run');
  assert.match(a, /^# espgate config for alice/m, '12: commented');
});

test('init: AES-128, IPv6 and dual-stack prefixes', () => {
  const [a] = renderInitConfigs({
    local: { name: 'v6a', address: '2001:db8:0:1::1' }, peer: { name: 'v6b', address: '2001:db8:0:1::2' },
    prefixes: [{ real: '2001:db8:0:1::/64', fake: '2001:db8:0:ff01::/64' }], aesBits: 128, keying: 'static',
  });
  const c = parseConfig(a, 'v6a.yaml');
  assert.deepEqual(c.local.protect, ['2001:db8:0:1::1/128']);
  assert.equal(Buffer.from(c.peers[0]?.sa?.out.key ?? []).length, 20);
});

test('init: bad arguments are refused with a message naming the option', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['host without =', () => parseHostArg('local', 'alice'), /--local must be NAME=ADDRESS/],
    ['bad address', () => parseHostArg('peer', 'bob=300.1.1.1'), /--peer: "300.1.1.1" is not/],
    ['prefix without =', () => parsePrefixArg('198.18.0.0/24'), /--prefix must be REAL=FAKE/],
    ['same names', () => renderInitConfigs({ ...OPTS, peer: { name: 'alice', address: '198.18.0.2' } }), /different names/],
    ['address outside the prefix', () => renderInitConfigs({ ...OPTS, peer: { name: 'bob', address: '203.0.113.9' } }), /protect/],
  ];
  for (const [i, [what, fn, msg]] of cases.entries()) {
    assert.throws(fn, (e: unknown) => GatewayError.isGatewayError(e) && msg.test(e.message), `case ${i + 1}: ${what}`);
  }
});

test('init: files are 0600 and never overwritten without --force', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eginit-'));
  try {
    const texts = renderInitConfigs(OPTS);
    const files = writeInitConfigs(join(dir, 'conf'), OPTS, texts, false);
    for (const f of files) assert.equal(statSync(f).mode & 0o777, 0o600, f);
    assert.equal(readFileSync(files[0] ?? '', 'utf8'), texts[0]);
    assert.throws(() => writeInitConfigs(join(dir, 'conf'), OPTS, renderInitConfigs(OPTS), false), /already exist/);
    assert.equal(readFileSync(files[0] ?? '', 'utf8'), texts[0], 'keys untouched');
    writeFileSync(files[1] ?? '', 'x', { mode: 0o644 });
    const again = renderInitConfigs(OPTS);
    writeInitConfigs(join(dir, 'conf'), OPTS, again, true);
    assert.equal(readFileSync(files[1] ?? '', 'utf8'), again[1], '--force overwrites');
    assert.equal(statSync(files[1] ?? '').mode & 0o777, 0o600, 'and tightens the mode');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('init: IKEv2 by default: one fresh pre-shared key on both ends, no static SAs', () => {
  const dflt: InitOptions = { local: OPTS.local, peer: OPTS.peer, prefixes: OPTS.prefixes, aesBits: 256 };
  const [a, b] = renderInitConfigs(dflt);
  const pa = parseConfig(a, 'alice.yaml').peers[0];
  const pb = parseConfig(b, 'bob.yaml').peers[0];
  assert.equal(pa?.sa, undefined, '1: no static SA');
  assert.ok(pa?.ike?.psk !== undefined && pb?.ike?.psk !== undefined, '2: both keyed by IKE');
  assert.equal(pa.ike.psk, pb.ike.psk, '3: the same key on both ends');
  assert.match(pa.ike.psk, /^0x[0-9a-f]{64}$/, '4: 32 random octets in hex');
  assert.notEqual(renderInitConfigs(dflt)[0], a, '5: fresh key on every run');
  assert.doesNotMatch(a, /RFC 4106 forbids/, '6: no static-key warning');
});
