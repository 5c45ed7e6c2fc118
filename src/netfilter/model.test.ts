/** model.test.ts: buildRulesSpec validation and canonical form, table-driven. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError } from '../errors.js';
import { buildRulesSpec, chainName, DEFAULT_TAG, MAX_TAG_LEN, ourSetNames, setName } from './model.js';
import type { FamilyInput, RulesInput } from './model.js';

const V4: FamilyInput = { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.2/32'], endpoints: ['198.18.0.2'] };
const V6: FamilyInput = { pairs: [{ real: '2001:db8:1::/64', fake: '2001:db8:ff01::/64' }], peerAddrs: ['2001:db8:1::2'], endpoints: ['2001:db8:1::2'] };
const OK: RulesInput = { tun: 'eg0', queueNum: 0, mode: 'host', mssClamp: true, guard: true, families: { v4: V4 } };

describe('buildRulesSpec: accepted inputs', () => {
  test('case 1: defaults and canonical forms', () => {
    const spec = buildRulesSpec({
      ...OK,
      families: {
        v4: { ...V4, peerAddrs: ['198.18.0.2', '198.18.0.2/32', '198.18.0.128/25'], endpoints: ['198.18.0.2', '198.18.0.2'] },
        v6: { ...V6, pairs: [{ real: '2001:DB8:1:0::/64', fake: '2001:db8:ff01:0:0::/64' }] },
      },
    });
    assert.equal(spec.tag, DEFAULT_TAG);
    assert.deepEqual(spec.families.map((f) => f.family), ['v4', 'v6']);
    assert.deepEqual(spec.families[0]?.peerAddrs, ['198.18.0.2/32', '198.18.0.128/25']);
    assert.deepEqual(spec.families[0]?.endpoints, ['198.18.0.2']);
    assert.deepEqual(spec.families[1]?.pairs, [{ real: '2001:db8:1::/64', fake: '2001:db8:ff01::/64' }]);
    assert.deepEqual(spec.families[1]?.peerAddrs, ['2001:db8:1::2/128']);
    assert.ok(Object.isFrozen(spec) && Object.isFrozen(spec.families) && Object.isFrozen(spec.families[0]?.peerAddrs));
  });
  test('case 2: v6 only, gateway, longest tag, empty peer list', () => {
    const tag = 'T'.repeat(MAX_TAG_LEN);
    const spec = buildRulesSpec({ ...OK, tag, mode: 'gateway', queueNum: 65535, families: { v6: { ...V6, peerAddrs: [] } } });
    assert.equal(spec.tag, tag);
    assert.equal(spec.families.length, 1);
    assert.deepEqual(spec.families[0]?.peerAddrs, []);
  });
  test('case 3: endpoint outside the real prefixes (gateway peers)', () => {
    const spec = buildRulesSpec({ ...OK, families: { v4: { ...V4, endpoints: ['203.0.113.9'] } } });
    assert.deepEqual(spec.families[0]?.endpoints, ['203.0.113.9']);
  });
});

describe('buildRulesSpec: rejected inputs name the field', () => {
  const cases: readonly { name: string; input: RulesInput; code: string; msg: RegExp }[] = [
    { name: 'tag too long', input: { ...OK, tag: 'T'.repeat(MAX_TAG_LEN + 1) }, code: 'ERR_CONFIG', msg: /tag: .*must be 1-23/ },
    { name: 'empty tag', input: { ...OK, tag: '' }, code: 'ERR_CONFIG', msg: /tag/ },
    { name: 'tag with a space', input: { ...OK, tag: 'ESP GATE' }, code: 'ERR_CONFIG', msg: /tag: .*letters/ },
    { name: 'tag starting with "-"', input: { ...OK, tag: '-X' }, code: 'ERR_CONFIG', msg: /tag/ },
    { name: 'tun too long', input: { ...OK, tun: 'a'.repeat(16) }, code: 'ERR_CONFIG', msg: /tun/ },
    { name: 'tun wildcard', input: { ...OK, tun: 'eg+' }, code: 'ERR_CONFIG', msg: /tun/ },
    { name: 'queue out of range', input: { ...OK, queueNum: 65536 }, code: 'ERR_CONFIG', msg: /queueNum/ },
    { name: 'queue not integer', input: { ...OK, queueNum: 1.5 }, code: 'ERR_CONFIG', msg: /queueNum/ },
    { name: 'bad mode', input: { ...OK, mode: 'router' as 'host' }, code: 'ERR_CONFIG', msg: /mode/ },
    { name: 'no family', input: { ...OK, families: {} }, code: 'ERR_CONFIG', msg: /families/ },
    { name: 'no pair', input: { ...OK, families: { v4: { ...V4, pairs: [] } } }, code: 'ERR_PREFIX', msg: /v4\.pairs: at least one/ },
    { name: 'length mismatch', input: { ...OK, families: { v4: { ...V4, pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/23' }] } } }, code: 'ERR_PREFIX', msg: /pairs\[0\]: .*same prefix length/ },
    { name: 'real overlaps fake', input: { ...OK, families: { v4: { ...V4, pairs: [{ real: '198.18.0.0/16', fake: '198.18.1.0/16' }] } } }, code: 'ERR_PREFIX', msg: /bits set|overlaps/ },
    { name: 'real overlaps fake, aligned', input: { ...OK, families: { v4: { ...V4, pairs: [{ real: '198.18.0.0/24', fake: '198.18.0.0/24' }] } } }, code: 'ERR_PREFIX', msg: /pairs\[0\]\.fake: .*overlaps 198\.18\.0\.0\/24 \(families\.v4\.pairs\[0\]\.real\)/ },
    { name: 'two pairs overlap', input: { ...OK, families: { v4: { ...V4, pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }, { real: '198.18.0.128/25', fake: '198.19.1.0/25' }] } } }, code: 'ERR_PREFIX', msg: /pairs\[1\]\.real: .*overlaps/ },
    { name: 'host bits', input: { ...OK, families: { v4: { ...V4, pairs: [{ real: '198.18.0.1/24', fake: '198.19.0.0/24' }] } } }, code: 'ERR_PREFIX', msg: /did you mean 198\.18\.0\.0\/24/ },
    { name: 'v6 prefix in v4', input: { ...OK, families: { v4: { ...V4, pairs: [{ real: '2001:db8::/64', fake: '198.19.0.0/24' }] } } }, code: 'ERR_PREFIX', msg: /not an IPv4 prefix/ },
    { name: '/0 prefix', input: { ...OK, families: { v4: { ...V4, pairs: [{ real: '0.0.0.0/0', fake: '198.19.0.0/0' }] } } }, code: 'ERR_PREFIX', msg: /bits set|\/0/ },
    { name: 'peer outside real', input: { ...OK, families: { v4: { ...V4, peerAddrs: ['198.18.1.2'] } } }, code: 'ERR_PREFIX', msg: /peerAddrs\[0\]: .*not inside any real prefix/ },
    { name: 'peer wider than real', input: { ...OK, families: { v4: { ...V4, peerAddrs: ['198.18.0.0/23'] } } }, code: 'ERR_PREFIX', msg: /not inside/ },
    { name: 'peer garbage', input: { ...OK, families: { v4: { ...V4, peerAddrs: ['peer-b'] } } }, code: 'ERR_PREFIX', msg: /peerAddrs\[0\]/ },
    { name: 'endpoint with prefix', input: { ...OK, families: { v4: { ...V4, endpoints: ['198.18.0.2/32'] } } }, code: 'ERR_PREFIX', msg: /endpoints\[0\]: .*bare IP/ },
    { name: 'endpoint of other family', input: { ...OK, families: { v4: { ...V4, endpoints: ['2001:db8::1'] } } }, code: 'ERR_PREFIX', msg: /endpoints\[0\]: .*not an IPv4 address/ },
    { name: 'endpoint in fake prefix', input: { ...OK, families: { v4: { ...V4, endpoints: ['198.19.0.2'] } } }, code: 'ERR_PREFIX', msg: /inside fake prefix/ },
    { name: 'v4 address in v6 family', input: { ...OK, families: { v6: { ...V6, peerAddrs: ['198.18.0.2'] } } }, code: 'ERR_PREFIX', msg: /v6\.peerAddrs\[0\]: .*not an IPv6 prefix/ },
  ];
  cases.forEach((c, i) => {
    test(`case ${i + 1}: ${c.name}`, () => {
      assert.throws(() => buildRulesSpec(c.input), (e: unknown) => {
        assert.ok(GatewayError.isGatewayError(e));
        assert.equal(e.code, c.code);
        assert.match(e.message, c.msg);
        return true;
      });
    });
  });
});

describe('names', () => {
  test('case 1: chain and set names', () => {
    assert.equal(chainName('ESPGATE', 'OUT'), 'ESPGATE-OUT');
    assert.equal(setName('ESPGATE', 'PEER', 'v6'), 'ESPGATE-PEER6');
    assert.equal(ourSetNames('X').length, 8);
    assert.ok(ourSetNames('X').includes('X-ENDP4-T'));
  });
});
