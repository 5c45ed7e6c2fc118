import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenControl, closeControl, lockNetns, requestControl, probeControl } from './control.js';
import { GatewayError } from '../errors.js';

test('control socket: answers requests, is 0600, refuses a second daemon, cleans up', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'egctl-'));
  const path = join(dir, 'espgate.sock');
  try {
    const srv = await listenControl(path, (req) => (req.cmd === 'status' ? { ok: true, peers: 2 } : { error: `unknown command ${req.cmd}` }));
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(await requestControl(path, { cmd: 'status' }), { ok: true, peers: 2 });
    assert.deepEqual(await requestControl(path, { cmd: 'nope' }), { error: 'unknown command nope' });
    await assert.rejects(listenControl(path, () => ({})), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ALREADY_RUNNING');
    await closeControl(srv, path);
    assert.equal(await probeControl(path), false);
    await assert.rejects(requestControl(path, { cmd: 'status' }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONTROL');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lockNetns: one holder per network namespace; released, it can be taken again', async () => {
  const name = `espgate-test/${process.pid}-${Date.now()}`;
  const release = await lockNetns(name);
  await assert.rejects(lockNetns(name), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_ALREADY_RUNNING'
    && /another espgate daemon is running in this network namespace/.test(e.message), '1: a second holder is refused');
  await release();
  const again = await lockNetns(name);
  await again();
});
