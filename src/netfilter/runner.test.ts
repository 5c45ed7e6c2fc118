/** runner.test.ts: both runners against real, harmless programs (cat, sh, sleep): one behaviour. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { spawnRunner, vforkRunner } from './runner.js';
import type { SpawnRunnerOptions, Runner } from './runner.js';
import { loadAddon } from '../io/native-addon.js';

for (const [name, make] of [['spawnRunner', spawnRunner], ['vforkRunner', vforkRunner]] as [string, (o?: SpawnRunnerOptions) => Runner][]) describe(name, () => {
  const r = make();
  test('case 1: stdin reaches the tool, stdout comes back', async () => {
    const res = await r.run('cat', [], 'line one\nline two\n', 5000);
    assert.deepEqual(res, { code: 0, stdout: 'line one\nline two\n', stderr: '', missing: false, timedOut: false });
  });
  test('case 2: exit code and stderr', async () => {
    const res = await r.run('sh', ['-c', 'echo oops >&2; exit 3'], undefined, 5000);
    assert.equal(res.code, 3);
    assert.equal(res.stderr, 'oops\n');
    assert.equal(res.missing, false);
  });
  test('case 3: a missing binary is reported, not thrown', async () => {
    const res = await r.run('espgate-no-such-tool', ['x'], 'data', 5000);
    assert.equal(res.missing, true);
    assert.equal(res.code, null);
  });
  test('case 4: a tool past its time limit is killed', async () => {
    const res = await r.run('sleep', ['30'], undefined, 200);
    assert.equal(res.timedOut, true);
    assert.equal(res.code, null);
  });
  test('case 5: a tool that ignores stdin and exits early does not crash us (EPIPE)', async () => {
    const res = await r.run('true', [], 'x'.repeat(4 * 1024 * 1024), 5000);
    assert.equal(res.code, 0);
  });
  test('case 6: the prefix is prepended', async () => {
    const res = await make({ prefix: ['env'] }).run('sh', ['-c', 'echo $LC_ALL'], undefined, 5000);
    assert.equal(res.stdout, 'C\n');
  });
});

test('vforkRunner: the sys addon is built, so it is not the spawnRunner fallback', () => {
  const addon = loadAddon<{ spawn?: unknown; waitpid?: unknown }>('espgate_sys').addon;
  assert.equal(typeof addon?.spawn, 'function', 'spawn in espgate_sys (npm run build:native)');
  assert.equal(typeof addon?.waitpid, 'function');
});
