/**
 * nft-inspect.test.ts: parsing nft's listing of our table (JSON captured from nft 1.0.6) and
 * comparing it with a plan.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildRulesSpec } from './model.js';
import { parseNftTable, parseTableComment, tableProblems } from './nft-inspect.js';
import { nftComment, planNft } from './nft-render.js';

const LISTING = JSON.stringify({ nftables: [
  { metainfo: { version: '1.0.6', json_schema_version: 1 } },
  { table: { family: 'inet', name: 'espgate', handle: 3 } },
  { set: { family: 'inet', name: 'peer6', table: 'espgate', type: 'ipv6_addr', handle: 12, flags: ['interval'], elem: ['2001:db8:1::2', { prefix: { addr: '2001:db8:1::100', len: 120 } }] } },
  { set: { family: 'inet', name: 'endp6', table: 'espgate', type: 'ipv6_addr', handle: 13 } },
  { chain: { family: 'inet', table: 'espgate', name: 'raw_prerouting', handle: 1, type: 'filter', hook: 'prerouting', prio: -301, policy: 'accept' } },
  { rule: { family: 'inet', table: 'espgate', chain: 'raw_prerouting', handle: 4, expr: [] } },
  { rule: { family: 'inet', table: 'espgate', chain: 'raw_prerouting', handle: 5, expr: [] } },
  { counter: { family: 'inet', table: 'espgate', name: 'c' } },
] });

test('parseNftTable: chains with hook, priority, policy and rule counts; sets with flags and element counts', () => {
  const t = parseNftTable(LISTING);
  assert.deepEqual(t.chains.get('raw_prerouting'), { type: 'filter', hook: 'prerouting', prio: -301, policy: 'accept', rules: 2 });
  assert.deepEqual(t.sets.get('peer6'), { type: 'ipv6_addr', flags: ['interval'], elements: 2 });
  assert.deepEqual(t.sets.get('endp6'), { type: 'ipv6_addr', flags: [], elements: 0 });
  assert.equal(t.others, 1);
  assert.throws(() => parseNftTable('{"x": 1}'), SyntaxError);
  assert.throws(() => parseNftTable('not json'), SyntaxError);
});

test('parseTableComment: the table\'s own comment only (numbered cases)', () => {
  const cases: [string, string | undefined][] = [
    ['table inet espgate {\n\tcomment "espgate ESPGATE 0123456789abcdef"\n\tset peer4 {\n', 'espgate ESPGATE 0123456789abcdef'],
    ['table inet espgate {\n\tset peer4 {\n\t\tcomment "a set"\n\t}\n', undefined],
    ['table inet espgate {\n\tchain c {\n\t\tcomment "chain"\n', undefined],
    ['', undefined],
  ];
  for (const [i, [text, want]] of cases.entries()) assert.equal(parseTableComment(text), want, `case ${i + 1}`);
});

test('tableProblems: exactly the plan is clean; each difference is named (numbered cases)', () => {
  const spec = buildRulesSpec({
    tun: 'eg0', queueNum: 7, mode: 'host', mssClamp: true, guard: true,
    families: { v4: { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.2/32'], endpoints: ['198.18.0.2'] } },
  });
  const plan = planNft(spec, { nativeQueue: false });
  const exact = (): { chains: Map<string, { type: string; hook: string; prio: number; policy: string; rules: number }>; sets: Map<string, { type: string; flags: string[]; elements: number }>; others: number } => ({
    chains: new Map(plan.chains.map((c) => [c.name, { type: c.type, hook: c.hook, prio: c.priority, policy: 'accept', rules: c.rules.length }])),
    sets: new Map(plan.sets.map((s) => [s.name, { type: s.type, flags: s.interval ? ['interval'] : [], elements: 0 }])),
    others: 0,
  });
  const good = nftComment(plan);
  const cases: [string, (s: ReturnType<typeof exact>) => void, string | undefined, RegExp | undefined][] = [
    ['exact', () => undefined, good, undefined],
    ['rules edited by hand (digest)', () => undefined, 'espgate ESPGATE 0000000000000000', /rules differ from the spec/],
    ['no comment', () => undefined, undefined, /comment \(none\)/],
    ['chain missing', (s) => s.chains.delete('filter_input'), good, /chain filter_input missing/],
    ['extra chain', (s) => s.chains.set('x', { type: 'filter', hook: 'input', prio: 0, policy: 'accept', rules: 0 }), good, /chain x not expected/],
    ['native-queue priority', (s) => { s.chains.set('raw_prerouting', { ...s.chains.get('raw_prerouting')!, prio: -300 }); }, good, /priority -300, want filter hook prerouting priority -301/],
    ['a rule deleted', (s) => { const c = s.chains.get('nat_output')!; s.chains.set('nat_output', { ...c, rules: c.rules - 1 }); }, good, /nat_output has 0 rule\(s\), want 1/],
    ['policy drop', (s) => { s.chains.set('filter_output', { ...s.chains.get('filter_output')!, policy: 'drop' }); }, good, /policy drop/],
    ['set missing', (s) => s.sets.delete('endp4'), good, /set endp4 missing/],
    ['set without interval', (s) => s.sets.set('peer4', { type: 'ipv4_addr', flags: [], elements: 1 }), good, /set peer4 is ipv4_addr, want ipv4_addr interval/],
    ['other objects', (s) => { s.others = 2; }, good, /2 other object/],
  ];
  for (const [i, [what, mutate, comment, want]] of cases.entries()) {
    const s = exact();
    mutate(s);
    const got = tableProblems(plan, s, comment);
    if (want === undefined) assert.deepEqual(got, [], `case ${i + 1} (${what})`);
    else assert.ok(got.length === 1 && want.test(got[0] ?? ''), `case ${i + 1} (${what}): ${JSON.stringify(got)}`);
  }
});
