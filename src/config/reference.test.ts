import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderReference, EXAMPLE, EXAMPLE_IKE } from './reference.js';
import { parseConfig } from './load.js';

function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

test('docs/config.md is generated from the schema (regenerate: node dist/src/config/reference.js > docs/config.md)', () => {
  assert.equal(readFileSync(join(projectRoot(), 'docs', 'config.md'), 'utf8'), renderReference());
});

test('the documented example parses', () => {
  const cfg = parseConfig(EXAMPLE, 'example');
  assert.equal(cfg.peers[0]?.sa?.out.spi, 0x1002);
  assert.equal(cfg.peers[0]?.replayWindow, 1024);
  assert.equal(cfg.tun.name, 'eg0');
  assert.ok(Object.isFrozen(cfg.peers[0]));
});

test('the documented IKE example parses', () => {
  const cfg = parseConfig(EXAMPLE_IKE, 'example-ike');
  assert.equal(cfg.peers[0]?.ike?.pskFile, '/etc/espgate/bob.psk');
  assert.equal(cfg.peers[0]?.sa, undefined);
});
