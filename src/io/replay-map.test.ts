import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// The SIGBUS guard of the replay-top mapping (src/io/native/replay_map.h), in processes of its
// own: a C++ driver built with the compiler the native addons need.
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const source = join(root, 'src', 'io', 'native', 'test', 'replay_map_driver.cc');
const haveCompiler = spawnSync('g++', ['--version']).status === 0;

test('replay_map.h: a store into a page that lost its file is caught; kill -BUS and faults elsewhere still end the process with SIGBUS', { skip: haveCompiler ? false : 'no g++ here' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'espgate-replay-map-'));
  try {
    const bin = join(dir, 'driver');
    const cc = spawnSync('g++', ['-O2', '-std=c++17', '-Wall', '-Wextra', '-o', bin, source], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const run = (mode: string): ReturnType<typeof spawnSync> => spawnSync(bin, [dir, mode], { encoding: 'utf8', timeout: 10_000 });
    const ours = run('ours');
    assert.deepEqual([ours.status, ours.signal, ours.stdout], [0, null, 'store after truncate: caught\n'], 'our page: caught, the process lives');
    const sent = run('kill');
    assert.equal(sent.signal, 'SIGBUS', 'kill -BUS: the default action, as without the guard');
    const foreign = run('foreign');
    assert.equal(foreign.signal, 'SIGBUS', 'a fault in a mapping that is not ours: SIGBUS, not a loop (the 10 s timeout would say SIGTERM)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
