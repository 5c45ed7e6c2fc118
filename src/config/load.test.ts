/**
 * Broken configs: each is refused with a message that names the field (path) and says what is
 * wrong. The table (test/support/broken-configs.ts) starts from the documented example and
 * applies one edit per case.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, formatPath } from './load.js';
import { EXAMPLE } from './reference.js';
import { GatewayError } from '../errors.js';
// The table is shared with the lab's CLI proof (test/lab/cli-config.test.ts).
import { BROKEN_CONFIGS as CASES, renderBrokenConfig } from '../../test/support/broken-configs.js';

test('broken configs are refused, naming the field (numbered cases)', () => {
  for (const [n, what, edit, path, msg] of CASES) {
    const text = renderBrokenConfig(edit, EXAMPLE);
    let err: unknown;
    try { parseConfig(text, 'case.yaml'); } catch (e) { err = e; }
    assert.ok(GatewayError.isGatewayError(err), `case ${n} (${what}): expected a GatewayError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_CONFIG', `case ${n}`);
    const problems = (err as GatewayError & { problems: { path: string; message: string }[] }).problems;
    const hit = problems.find((p) => p.path === path && msg.test(p.message));
    assert.ok(hit, `case ${n} (${what}): no problem at ${path} matching ${String(msg)}; got ${JSON.stringify(problems)}`);
    assert.match(err.message, new RegExp(`case\\.yaml(:\\d+)?: ${path.replace(/[[\]().]/g, '\\$&')}`), `case ${n}: message names file and path`);
  }
  assert.ok(CASES.length >= 30);
});

test('errors carry the YAML line of the field', () => {
  const text = EXAMPLE.replace('spi: "0x00001002"', 'spi: 12');
  try { parseConfig(text, 'f.yaml'); assert.fail('accepted'); } catch (e) {
    const line = EXAMPLE.split('\n').findIndex((l) => l.includes('0x00001002')) + 1;
    assert.match((e as Error).message, new RegExp(`f\\.yaml:${line}: peers\\[0\\]\\.sa\\.out\\.spi`));
  }
});

test('formatPath renders zod paths', () => {
  assert.equal(formatPath(['peers', 1, 'sa', 'out', 'key']), 'peers[1].sa.out.key');
  assert.equal(formatPath([]), '(top level)');
});

test('validateSemantics: every overlapping pair of peer prefixes, in config order (nested, duplicate, both families)', () => {
  const peer = (n: number, protect: string[]): string => `  - name: p${n}
    endpoint: 198.18.0.${100 + n}
    protect: [${protect.map((p) => `"${p}"`).join(', ')}]
    sa:
      out: { spi: "0x${(0x1000 + n).toString(16)}", key: "0x${'11'.repeat(19)}${n.toString(16).padStart(2, '0')}" }
      in: { spi: "0x${(0x2000 + n).toString(16)}", key: "0x${'22'.repeat(19)}${n.toString(16).padStart(2, '0')}" }
`;
  const text = `local: { protect: [198.18.0.1/32] }
prefixes:
  - { real: 198.18.0.0/24, fake: 198.19.0.0/24 }
  - { real: "2001:db8:0:1::/64", fake: "2001:db8:0:ff01::/64" }
peers:
${peer(1, ['198.18.0.64/26', '2001:db8:0:1::10/128'])}${peer(2, ['198.18.0.70/32'])}${peer(3, ['198.18.0.64/27', '2001:db8:0:1::10/128'])}${peer(4, ['198.18.0.200/32'])}`;
  let msg = '';
  try { parseConfig(text, 'overlap.yaml'); } catch (e) { msg = (e as Error).message; }
  const lines = msg.split('\n').filter((l) => l.includes('overlaps peers'));
  assert.deepEqual(lines.map((l) => l.replace(/^\s*overlap\.yaml:\d+: /, '').replace(/ \(p\d\).*$/, '')), [
    'peers[1].protect[0]: 198.18.0.70/32 overlaps peers[0].protect[0]',
    'peers[2].protect[0]: 198.18.0.64/27 overlaps peers[0].protect[0]',
    'peers[2].protect[0]: 198.18.0.64/27 overlaps peers[1].protect[0]',
    'peers[2].protect[1]: 2001:db8:0:1::10/128 overlaps peers[0].protect[1]',
  ], msg);
});
