/**
 * rules-input.test.ts: what the rules installer is asked for, from a config: the documented
 * example as it stands, and the switches that change the gate (IKE, the ESP notrack rule, inbound).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.js';
import { EXAMPLE } from '../config/reference.js';
import { buildRulesSpec } from '../netfilter/model.js';
import { formatTexts, renderInstall } from '../netfilter/render.js';
import { rulesInputOf } from './rules-input.js';

test('rulesInputOf: the example config asks for notrack by default; rules.espNotrack: false turns it off', () => {
  const on = rulesInputOf(parseConfig(EXAMPLE, 'example.yaml'));
  assert.equal(on.notrack, true);
  assert.equal(buildRulesSpec(on).notrack, true);
  assert.ok((on.families.v4?.endpoints.length ?? 0) > 0, 'the example has an IPv4 endpoint for the rule to match');
  assert.doesNotMatch(EXAMPLE, /^rules:/m, 'the example leaves rules at their defaults');
  const text = `${EXAMPLE.trimEnd()}\nrules:\n  espNotrack: false\n`;
  const off = rulesInputOf(parseConfig(text, 'example.yaml'));
  assert.equal(off.notrack, false);
  assert.equal(buildRulesSpec(off).notrack, false);
});

test('rulesInputOf: a non-boolean espNotrack is refused, naming the field', () => {
  assert.throws(() => parseConfig(`${EXAMPLE.trimEnd()}\nrules:\n  espNotrack: "yes"\n`, 'example.yaml'), /rules\.espNotrack/);
});

test('rulesInputOf: inbound ESP through NFQUEUE by default; inbound: socket asks for no queue', () => {
  const queued = rulesInputOf(parseConfig(EXAMPLE, 'example.yaml'));
  assert.equal(queued.inbound, 'queue');
  assert.match(formatTexts(renderInstall(buildRulesSpec(queued))), /-j NFQUEUE --queue-num 0/);
  const sockets = rulesInputOf(parseConfig(`${EXAMPLE.trimEnd()}\ninbound: socket\n`, 'example.yaml'));
  assert.equal(sockets.inbound, 'socket');
  assert.doesNotMatch(formatTexts(renderInstall(buildRulesSpec(sockets))), /NFQUEUE/);
  assert.throws(() => parseConfig(`${EXAMPLE.trimEnd()}\ninbound: tap\n`, 'example.yaml'), /inbound/);
});
