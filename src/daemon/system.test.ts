import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../errors.js';
import { checkPrivileges, missingCapabilities } from './system.js';

test('missingCapabilities: reads CapEff (numbered cases)', () => {
  const cases: [string, string, string[]][] = [
    ['root', 'CapEff:\t000001ffffffffff\n', []],
    ['net_admin + net_raw', 'Name:\tnode\nCapEff:\t0000000000003000\n', []],
    ['net_raw only', 'CapEff:\t0000000000002000\n', ['CAP_NET_ADMIN']],
    ['net_admin only', 'CapEff:\t0000000000001000\n', ['CAP_NET_RAW']],
    ['none', 'CapEff:\t0000000000000000\n', ['CAP_NET_ADMIN', 'CAP_NET_RAW']],
    ['no CapEff line: let the kernel decide', 'Name:\tnode\n', []],
  ];
  for (const [i, [what, text, want]] of cases.entries()) assert.deepEqual(missingCapabilities(text), want, `case ${i + 1}: ${what}`);
});

test('checkPrivileges: ERR_PRIVILEGE names the capability and the fix', () => {
  assert.throws(() => checkPrivileges('CapEff:\t0000000000002000\n'),
    (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_PRIVILEGE' && /lacks CAP_NET_ADMIN/.test(e.message) && /CapabilityBoundingSet/.test(e.message));
  assert.doesNotThrow(() => checkPrivileges('CapEff:\t0000000000003000\n'));
});
