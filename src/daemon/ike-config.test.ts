/** ike-config.test.ts: the config's ike sections as IKE driver peers, and what is refused. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { ikeAlgorithmsOf, ikePeersOf, pskBytes, readPskFile } from './ike-config.js';

const BASE = `
local: { protect: [198.18.0.1/32] }
prefixes: [{ real: 198.18.0.0/24, fake: 198.19.0.0/24 }]
peers:
  - name: bob
    endpoint: 198.18.0.2
    protect: [198.18.0.2/32]
`;

const cfgWith = (ike: string): string => `${BASE}    ike: ${ike}\n`;

test('ike-config: defaults map to the driver peer', () => {
  const [p] = ikePeersOf(parseConfig(cfgWith('{ psk: "correct horse battery staple" }')));
  assert.ok(p);
  assert.equal(p.name, 'bob', '1');
  assert.deepEqual([...p.psk], [...Buffer.from('correct horse battery staple')], '2: text psk is its UTF-8 octets');
  assert.deepEqual(p.ike, { encryption: ['aes256gcm16'], prf: [5], dhGroups: [31, 19] }, '3: default IKE proposals');
  assert.deepEqual(p.esp, { encryption: ['aes256gcm16', 'aes128gcm16'] }, '4: default ESP');
  assert.equal(p.pfs, true, '5');
  assert.equal(p.dpdMs, 30_000, '6');
  assert.equal(p.ikeLifetimeMs, 14_400_000, '7');
  assert.equal(p.childLifetimeMs, 3_600_000, '8');
  assert.equal(p.childLifetimeBytes, undefined, '9: 0 = no limit');
  assert.equal(p.initiate, true, '10');
  assert.equal(p.localId, undefined, '11: default identity left to the driver');
});

test('ike-config: every setting is carried', () => {
  const [p] = ikePeersOf(parseConfig(cfgWith(`{ psk: "0x${'ab'.repeat(16)}", localId: "@alice.example", remoteId: "@#0102", initiate: false, ikeProposals: [aes128gcm16-prfsha256-ecp256], espProposals: [aes128gcm16], pfs: false, dpdDelay: 0, ikeLifetime: 600, childLifetime: 20, childLifetimeBytes: 1000000, childLifetimePackets: 5000 }`)));
  assert.ok(p);
  assert.deepEqual([...p.psk], new Array<number>(16).fill(0xab), '1: hex psk');
  assert.deepEqual(p.localId, { kind: 'fqdn', name: 'alice.example' }, '2');
  assert.equal(p.remoteId?.kind, 'key-id', '3');
  assert.equal(p.initiate, false, '4');
  assert.deepEqual(p.ike, { encryption: ['aes128gcm16'], prf: [5], dhGroups: [19] }, '5');
  assert.deepEqual(p.esp, { encryption: ['aes128gcm16'] }, '6');
  assert.equal(p.pfs, false, '7');
  assert.equal(p.dpdMs, 0, '8');
  assert.equal(p.ikeLifetimeMs, 600_000, '9');
  assert.equal(p.childLifetimeMs, 20_000, '10');
  assert.equal(p.childLifetimeBytes, 1_000_000, '11');
  assert.equal(p.childLifetimePackets, 5000, '12');
});

test('ike-config: mistakes are refused with the field named', () => {
  const cases: [number, string, RegExp][] = [
    [1, '{ psk: "short" }', /peers\[0\]\.ike\.psk.*at least 16/],
    [2, '{ }', /exactly one of psk or pskFile/],
    [3, '{ psk: "correct horse battery staple", pskFile: /x }', /exactly one of psk or pskFile/],
    [4, '{ psk: "correct horse battery staple", ikeProposals: [aes256gcm16-prfsha1-x25519] }', /ikeProposals\[0\]/],
    [5, '{ psk: "correct horse battery staple", espProposals: [aes256cbc] }', /espProposals\[0\]/],
    [6, '{ psk: "correct horse battery staple", remoteId: "@#xyz" }', /peers\[0\]\.ike\.remoteId.*key ID/],
    [7, '{ psk: "0xabcd" }', /at least 16/],
    [8, '{ psk: "correct horse battery staple", childLifetime: 1 }', /childLifetime/],
    [9, '{ psk: "correct horse battery staple", cipher: x }', /unknown field.*cipher/],
  ];
  for (const [n, ike, re] of cases) {
    assert.throws(() => parseConfig(cfgWith(ike)), (e: unknown) => GatewayError.isGatewayError(e) && re.test(e.message), `${n}: ${ike}`);
  }
  const both = `${BASE}    ike: { psk: "correct horse battery staple" }\n    sa: { out: { spi: 0x1002, key: "0x${'01'.repeat(20)}" }, in: { spi: 0x2001, key: "0x${'02'.repeat(20)}" } }\n`;
  assert.throws(() => parseConfig(both), /exactly one of sa \(static keys\) or ike/, '10: sa and ike');
  assert.throws(() => parseConfig(BASE), /exactly one of sa \(static keys\) or ike/, '11: neither');
});

test('ike-config: pskFile is read, and refused when others can read it or it is short', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egt-psk-'));
  try {
    const f = join(dir, 'bob.psk');
    writeFileSync(f, 'correct horse battery staple\nignored second line\n', { mode: 0o600 });
    chmodSync(f, 0o600);
    const [p] = ikePeersOf(parseConfig(cfgWith(`{ pskFile: ${f} }`)));
    assert.deepEqual([...(p?.psk ?? [])], [...Buffer.from('correct horse battery staple')], '1: first line');
    chmodSync(f, 0o644);
    assert.throws(() => readPskFile(f, 'x'), /readable by group or others.*chmod 600/, '2: mode 644');
    writeFileSync(f, 'short\n', { mode: 0o600 });
    chmodSync(f, 0o600);
    assert.throws(() => readPskFile(f, 'peers[0].ike.pskFile'), /peers\[0\]\.ike\.pskFile.*shorter than 16/, '3: short');
    assert.throws(() => readPskFile(join(dir, 'missing'), 'w'), /w: cannot read/, '4: missing');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ike-config: proposal lists keep first-mention order without duplicates', () => {
  assert.deepEqual(ikeAlgorithmsOf(['aes128gcm16-prfsha256-ecp256', 'aes256gcm16-prfsha256-x25519', 'aes128gcm16-prfsha256-curve25519']),
    { encryption: ['aes128gcm16', 'aes256gcm16'], prf: [5], dhGroups: [19, 31] });
  assert.throws(() => ikeAlgorithmsOf(['aes256gcm16-prfsha256-modp2048']), /not one of/);
  assert.deepEqual([...pskBytes('0x0102')], [1, 2]);
});
