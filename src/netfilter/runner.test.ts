/** runner.test.ts: spawnRunner against real, harmless programs (cat, sh, sleep). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { spawnRunner } from './runner.js';

describe('spawnRunner', () => {
  const r = spawnRunner();
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
    const res = await spawnRunner({ prefix: ['env'] }).run('sh', ['-c', 'echo $LC_ALL'], undefined, 5000);
    assert.equal(res.stdout, 'C\n');
  });
});
