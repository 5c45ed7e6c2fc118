/**
 * tun-common.test.ts: the parts of the I/O edges that need no privileges: name checks, the
 * errno -> ERR_TUN message table, a missing clone device, and NFQUEUE option checks. The kernel
 * side is tested as root in test/io/.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { GatewayError } from '../errors.js';
import { openEspReceiver } from './receiver.js';
import { errnoCode, findProjectRoot, tunOpenError, validateTunName } from './tun-common.js';
import { openTun } from './tun.js';

test('validateTunName: numbered cases', () => {
  const cases: [string, boolean][] = [
    /* 1 */ ['eg0', true],
    /* 2 */ ['a', true],
    /* 3 */ ['fifteen-chars-x', true],
    /* 4 */ ['sixteen-chars-xx', false],
    /* 5 */ ['', false],
    /* 6 */ ['has space', false],
    /* 7 */ ['a/b', false],
    /* 8 */ ['a:1', false],
    /* 9 */ ['..', false],
  ];
  for (const [i, [name, ok]] of cases.entries()) {
    if (ok) assert.doesNotThrow(() => validateTunName(name), `case ${i + 1}`);
    else assert.throws(() => validateTunName(name), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_TUN', `case ${i + 1}`);
  }
});

test('tunOpenError: each errno names its fix', () => {
  const sys = (code: string): Error => Object.assign(new Error(code), { code });
  const cases: [Parameters<typeof tunOpenError>[1], string, RegExp][] = [
    /* 1 */ ['open', 'ENOENT', /modprobe tun/],
    /* 2 */ ['open', 'ENODEV', /modprobe tun/],
    /* 3 */ ['open', 'EACCES', /CAP_NET_ADMIN/],
    /* 4 */ ['setiff', 'EPERM', /CAP_NET_ADMIN/],
    /* 5 */ ['setiff', 'EBUSY', /another process/],
    /* 6 */ ['setiff', 'EINVAL', /not a TUN|IFF_MULTI_QUEUE/],
    /* 7 */ ['setiff', 'EIO', /TUNSETIFF eg0 failed: EIO/],
    /* 8 */ ['persist', 'EPERM', /TUNSETPERSIST/],
  ];
  for (const [i, [step, code, re]] of cases.entries()) {
    const cause = sys(code);
    const e = tunOpenError(cause, step, 'eg0', '/dev/net/tun');
    assert.equal(e.code, 'ERR_TUN', `case ${i + 1}`);
    assert.match(e.message, re, `case ${i + 1}`);
    assert.equal(e.cause, cause, `case ${i + 1}: cause kept`);
  }
});

test('errnoCode reads .code only when it is a string', () => {
  assert.equal(errnoCode(Object.assign(new Error('x'), { code: 'EPERM' })), 'EPERM');
  assert.equal(errnoCode(Object.assign(new Error('x'), { code: 1 })), undefined);
  assert.equal(errnoCode('EPERM'), undefined);
  assert.equal(errnoCode(null), undefined);
});

test('openTun: a missing clone device is ERR_TUN telling to modprobe tun (both implementations)', () => {
  for (const impl of ['auto', 'koffi'] as const) {
    assert.throws(
      () => openTun('egtunit0', { impl, devicePath: '/nonexistent/dev/net/tun' }),
      (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_TUN' && /modprobe tun/.test(e.message),
      impl,
    );
  }
});

test('openEspReceiver: queue numbers outside 0..65535 are ERR_NFQUEUE', () => {
  for (const impl of ['native', 'npm'] as const) {
    for (const [i, q] of [-1, 65536, 1.5, Number.NaN].entries()) {
      assert.throws(() => openEspReceiver({ queueNum: q, impl }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_NFQUEUE', `${impl} case ${i + 1}`);
    }
    const rx = openEspReceiver({ queueNum: 0, impl });
    assert.equal(rx.queueNum, 0);
    assert.equal(rx.impl, impl);
  }
});

test('findProjectRoot finds the espgate package.json from this directory', () => {
  assert.match(findProjectRoot(), /\S/);
});
