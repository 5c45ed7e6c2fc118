/**
 * nft-render.test.ts: the nftables renderer against the reviewed golden files
 * rules/golden/nft-*.nft (the same specs as the iptables goldens), plus the properties the
 * design depends on. UPDATE_GOLDEN=1 rewrites the golden files instead of comparing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSave } from './inspect.js';
import { buildRulesSpec, IPT_CHAIN_NAME_MAX, MAX_TAG_LEN } from './model.js';
import type { RulesInput } from './model.js';
import { GOLDEN_BASE, GOLDEN_CASES, GOLDEN_V4, checkGolden } from './golden-cases.js';
import {
  formatNftTexts, NFQ_MARK, nfqChainName, nftComment, nftDigest, nftTableName, planNft, renderNfqRestore, renderNftFreshInstall,
  renderNftFreshUninstall, renderNftInstall, renderNftSetsUpdate, savedNfq,
} from './nft-render.js';
import { planRules, ruleLines } from './render.js';

const V4 = GOLDEN_V4;
const BASE = GOLDEN_BASE;

/** GOLDEN lists the reviewed specs (golden-cases.ts), as nft-<name>.nft. */
const GOLDEN: readonly { file: string; input: RulesInput }[] = GOLDEN_CASES.map((c) => ({ file: `nft-${c.name}.nft`, input: c.input }));

function golden(input: RulesInput): string {
  const spec = buildRulesSpec(input);
  const native = { nativeQueue: true };
  const fallback = { nativeQueue: false };
  return [
    '## install (kernel with nft queue)\n',
    formatNftTexts(renderNftFreshInstall(spec, native)),
    '## install (kernel without nft queue: the NFQUEUE rule goes through iptables)\n',
    formatNftTexts(renderNftFreshInstall(spec, fallback)),
    '## update (the table already holds these rules: set elements only)\n',
    `### nft -f -\n${renderNftSetsUpdate(planNft(spec, native))}`,
    '## uninstall (kernel without nft queue; with it, only the nft step)\n',
    formatNftTexts(renderNftFreshUninstall(spec, fallback)),
  ].join('\n');
}

describe('nft render: golden files', () => {
  GOLDEN.forEach(({ file, input }, i) => {
    test(`case ${i + 1}: ${file}`, () => {
      checkGolden(file, golden(input), 'the nft renderer');
    });
  });
  test(`case ${GOLDEN.length + 1}: every iptables golden spec has an nft golden`, () => {
    const ipt = ['host-v4-one-pair', 'host-dual-stack', 'gateway-v4-two-pairs', 'gateway-dual-stack', 'host-v4-no-guard-no-clamp', 'host-v4-ike', 'gateway-dual-stack-ike',
      'host-dual-stack-socket', 'gateway-dual-stack-ike-socket', 'host-v4-socket-no-guard-no-notrack'];
    assert.deepEqual(GOLDEN.map((g) => g.file), ipt.map((n) => `nft-${n}.nft`));
  });
});

function peers(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}/32`);
}

describe('nft render: properties', () => {
  const specs = GOLDEN.map((g) => buildRulesSpec(g.input));
  const both = [{ nativeQueue: true }, { nativeQueue: false }];

  test('case 1: the rules do not depend on the number of peers; only the elements grow', () => {
    const mk = (n: number) => buildRulesSpec({
      ...BASE, mode: 'gateway', families: { v4: { pairs: [{ real: '198.18.0.0/16', fake: '198.19.0.0/16' }], peerAddrs: peers(n), endpoints: peers(n).map((p) => p.split('/')[0] ?? '') } },
    });
    const one = planNft(mk(1), both[0]);
    const many = planNft(mk(1000), both[0]);
    assert.deepEqual(one.chains, many.chains);
    assert.equal(nftDigest(one), nftDigest(many), 'the digest covers rules, not elements');
    assert.equal(many.sets.find((s) => s.name === 'peer4')?.elements.length, 1000);
    // /32 elements are written bare, as nft lists them
    assert.equal(many.sets.find((s) => s.name === 'peer4')?.elements[0], '198.18.0.1');
  });

  test('case 2: every chain of render.ts has its nft twin at the same hook and priority', () => {
    const prio: Record<string, number> = { raw: -300, mangle: -150, filter: 0 };
    const hook: Record<string, string> = { PREROUTING: 'prerouting', INPUT: 'input', FORWARD: 'forward', OUTPUT: 'output', POSTROUTING: 'postrouting' };
    for (const spec of specs) {
      const nft = planNft(spec, both[0]);
      const want = new Set<string>();
      for (const f of planRules(spec).families) {
        for (const c of f.chains) {
          const p = c.table === 'nat' ? (c.builtin === 'PREROUTING' || c.builtin === 'OUTPUT' ? -100 : 100) : prio[c.table];
          want.add(`${c.table}_${hook[c.builtin]} ${p}`);
        }
      }
      assert.deepEqual(new Set(nft.chains.map((c) => `${c.name} ${c.priority}`)), want);
    }
  });

  test('case 3: per chain and family, as many rules as iptables (ND and shared rules aside)', () => {
    for (const spec of specs) {
      const nft = planNft(spec, both[0]);
      for (const f of planRules(spec).families) {
        for (const c of f.chains) {
          const name = `${c.table}_${{ PREROUTING: 'prerouting', INPUT: 'input', FORWARD: 'forward', OUTPUT: 'output', POSTROUTING: 'postrouting' }[c.builtin]}`;
          const ip = f.family === 'v4' ? /\bip (saddr|daddr)\b/ : /\bip6 (saddr|daddr)\b/;
          // IKE: one nft rule with a port set where iptables has one rule per port (500, 4500)
          const all = nft.chains.find((x) => x.name === name)?.rules.filter((r) => ip.test(r)) ?? [];
          const ours = all.filter((r) => !/udp [sd]port \{ 500, 4500 \}/.test(r));
          const theirs = ruleLines(c).filter((l) => / -[sd] |--match-set /.test(` ${l}`) && !/-p udp -m udp --[sd]port (500|4500) /.test(l));
          assert.equal(all.length - ours.length, (ruleLines(c).length - ruleLines(c).filter((l) => !/-p udp -m udp --[sd]port (500|4500) /.test(l)).length) / 2, `${name}: IKE rules`);
          assert.equal(ours.length, theirs.length, `${spec.mode} ${f.family} ${name}: ${JSON.stringify(ours)} vs ${JSON.stringify(theirs)}`);
        }
      }
    }
  });

  test('case 4: ESP is never NATed; no queue bypass; fallback marks instead of queueing (inbound: queue)', () => {
    for (const spec of specs.filter((s) => s.inbound === 'queue')) {
      for (const o of both) {
        const plan = planNft(spec, o);
        for (const c of plan.chains) {
          for (const r of c.rules.filter((x) => / dnat /.test(x))) assert.match(r, /meta l4proto != esp/);
          for (const r of c.rules) assert.doesNotMatch(r, /bypass|fanout/);
        }
        const raw = plan.chains.find((c) => c.name === 'raw_prerouting');
        assert.ok(raw !== undefined);
        assert.equal(raw.rules.filter((r) => / queue num 7$/.test(r)).length, o.nativeQueue ? spec.families.length : 0);
        assert.equal(raw.rules.filter((r) => r.endsWith(`meta mark set meta mark | 0x${NFQ_MARK.toString(16)}`)).length, o.nativeQueue ? 0 : spec.families.length);
        assert.equal(raw.priority, o.nativeQueue ? -300 : -301, 'the mark is set before iptables raw (-300) runs');
        assert.equal(plan.nfq === undefined, o.nativeQueue);
      }
    }
  });

  test('case 5: IPv6 neighbour discovery returns before any drop that matches a peer set', () => {
    for (const spec of specs.filter((s) => s.families.some((f) => f.family === 'v6') && s.guard)) {
      for (const c of planNft(spec, both[0]).chains) {
        const nd = c.rules.findIndex((r) => r.startsWith('icmpv6 type { nd-router-solicit'));
        const drops = c.rules.map((r, i) => (/ip6 [sd]addr @peer6 drop$/.test(r) ? i : -1)).filter((i) => i >= 0);
        if (drops.length > 0) assert.ok(nd >= 0 && drops.every((d) => nd < d), `${c.name}: ND returns first`);
      }
    }
  });

  test('case 6: IKE exemption only with spec.ike: UDP 500 and 4500, inbound by our port, outbound from our port', () => {
    const ike = planNft(buildRulesSpec(GOLDEN[6].input), both[0]);
    const rules = (n: string): readonly string[] => ike.chains.find((c) => c.name === n)?.rules ?? [];
    assert.ok(rules('filter_input').includes('ip saddr @endp4 udp dport { 500, 4500 } fib daddr type local return'));
    assert.ok(rules('filter_input').includes('ip6 saddr @endp6 udp dport { 500, 4500 } fib daddr type local return'));
    assert.ok(rules('filter_output').includes('ip daddr @endp4 udp sport { 500, 4500 } accept'));
    assert.ok(rules('nat_output').includes('ip6 daddr @endp6 udp sport { 500, 4500 } return'));
    // the exemption comes before the drops / the NETMAP it exempts
    const out = rules('filter_output');
    assert.ok(out.indexOf('ip daddr @endp4 udp sport { 500, 4500 } accept') < out.findIndex((r) => r.endsWith('ip daddr @peer4 drop')));
    const plain = planNft(buildRulesSpec(GOLDEN[3].input), both[0]);
    for (const c of plain.chains) for (const r of c.rules) assert.doesNotMatch(r, /\b(500|4500)\b/);
  });

  test('case 7: names: table from the tag in lower case; the NFQ chain fits iptables for the longest tag', () => {
    assert.equal(nftTableName('ESPGATE'), 'espgate');
    const tag = 'A'.repeat(MAX_TAG_LEN);
    assert.ok(nfqChainName(tag).length <= IPT_CHAIN_NAME_MAX);
    const plan = planNft(buildRulesSpec({ ...GOLDEN[0].input, tag }), both[1]);
    assert.equal(plan.table, 'a'.repeat(MAX_TAG_LEN));
    assert.match(renderNftInstall(plan), new RegExp(`^table inet ${plan.table}\\ndelete table inet ${plan.table}\\ntable inet ${plan.table} \\{$`, 'm'));
  });

  test('case 8: the comment carries a digest of the rules: another spec, another digest', () => {
    // With inbound: socket nothing is queued, so nativeQueue makes no difference there.
    const digests = new Set(specs.flatMap((s) => both.map((o) => nftDigest(planNft(s, o)))));
    assert.equal(digests.size, specs.filter((s) => s.inbound === 'queue').length * both.length + specs.filter((s) => s.inbound === 'socket').length);
    assert.match(nftComment(planNft(specs[0], both[0])), /^espgate ESPGATE [0-9a-f]{16}$/);
  });

  test('case 9: the set update flushes and refills every set, in one text, naming only our table', () => {
    const text = renderNftSetsUpdate(planNft(specs[1], both[0]));
    const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.deepEqual(lines, [
      'flush set inet espgate peer4', 'add element inet espgate peer4 { 198.18.0.2 }',
      'flush set inet espgate endp4', 'add element inet espgate endp4 { 198.18.0.2 }',
      'flush set inet espgate peer6', 'add element inet espgate peer6 { 2001:db8:1::2, 2001:db8:1::100/120 }',
      'flush set inet espgate endp6', 'add element inet espgate endp6 { 2001:db8:1::2 }',
    ]);
    const empty = buildRulesSpec({ ...BASE, mode: 'host', families: { v4: { ...V4, peerAddrs: [], endpoints: [] } } });
    assert.doesNotMatch(renderNftSetsUpdate(planNft(empty, both[0])), /add element/);
    assert.doesNotMatch(renderNftInstall(planNft(empty, both[0])), /elements =/);
  });
});

describe('nft render: our own ESP skips conntrack (spec.notrack)', () => {
  test('case 1: raw_output at raw priority with one notrack rule per family, ESP to a peer endpoint only', () => {
    const on = planNft(buildRulesSpec({ ...GOLDEN[1].input, notrack: true }), { nativeQueue: true });
    const c = on.chains.find((x) => x.name === 'raw_output');
    assert.ok(c !== undefined);
    assert.equal(c.hook, 'output');
    assert.equal(c.priority, -300);
    assert.deepEqual(c.rules, ['meta l4proto esp ip daddr @endp4 notrack', 'meta l4proto esp ip6 daddr @endp6 notrack']);
  });
  test('case 2: without notrack: no raw_output chain, no notrack anywhere, and another digest', () => {
    const input = GOLDEN[1].input;
    const off = planNft(buildRulesSpec({ ...input, notrack: false }), { nativeQueue: true });
    assert.equal(off.chains.find((x) => x.name === 'raw_output'), undefined);
    assert.doesNotMatch(renderNftInstall(off), /notrack/);
    assert.notEqual(nftDigest(off), nftDigest(planNft(buildRulesSpec({ ...input, notrack: true }), { nativeQueue: true })));
  });
});

describe('nft render: the NFQ fallback chain against the current raw table', () => {
  const spec = buildRulesSpec(GOLDEN[1].input);
  const plan = planNft(spec, { nativeQueue: false });

  test('case 1: fresh: declare, add the rule, one jump at the top of PREROUTING', () => {
    assert.equal(renderNfqRestore('ESPGATE', 'v4', plan.nfq, new Map()), [
      '# espgate ESPGATE: iptables-restore --noflush input', '*raw', ':ESPGATE-NFQ - [0:0]',
      '# ESPGATE-NFQ (raw PREROUTING, -300): inbound ESP that our nft table marked goes to the daemon (this kernel has no nft queue); no --queue-bypass',
      '-A ESPGATE-NFQ -p esp -m mark --mark 0x20000000/0x20000000 -j NFQUEUE --queue-num 7', '-I PREROUTING 1 -j ESPGATE-NFQ', 'COMMIT', '',
    ].join('\n'));
  });
  test('case 2: installed: the chain is flushed and refilled, no second jump', () => {
    const text = renderNfqRestore('ESPGATE', 'v4', plan.nfq, savedNfq('ESPGATE'));
    assert.doesNotMatch(text, /^-[ID] /m);
    assert.match(text, /^-A ESPGATE-NFQ /m);
  });
  test('case 3: duplicate and misplaced jumps are deleted, one canonical jump kept', () => {
    const save = parseSave('*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ESPGATE-NFQ - [0:0]\n-A PREROUTING -j ESPGATE-NFQ\n-A PREROUTING -i eth0 -j ESPGATE-NFQ\n-A OUTPUT -j ESPGATE-NFQ\n-A PREROUTING -j ESPGATE-NFQ\nCOMMIT\n');
    const text = renderNfqRestore('ESPGATE', 'v4', plan.nfq, save);
    assert.deepEqual(text.split('\n').filter((l) => l.startsWith('-D ') || l.startsWith('-I ')), [
      '-D PREROUTING -i eth0 -j ESPGATE-NFQ', '-D PREROUTING -j ESPGATE-NFQ', '-D OUTPUT -j ESPGATE-NFQ',
    ]);
  });
  test('case 4: remove: jumps, then the chain; nothing of ours and nothing wanted renders nothing', () => {
    const text = renderNfqRestore('ESPGATE', 'v6', undefined, savedNfq('ESPGATE'));
    const lines = text.split('\n');
    assert.ok(lines.indexOf('-D PREROUTING -j ESPGATE-NFQ') < lines.indexOf('-X ESPGATE-NFQ'));
    assert.match(text, /^# espgate ESPGATE: ip6tables-restore --noflush input$/m);
    const other = parseSave('*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j CT --notrack\nCOMMIT\n');
    assert.equal(renderNfqRestore('ESPGATE', 'v4', undefined, other), '');
    assert.equal(renderNfqRestore('ESPGATE', 'v4', { ...plan.nfq!, families: ['v6'] }, new Map()), '', 'not wanted for this family');
  });
  test('case 5: with nft queue nothing goes to iptables', () => {
    const t = renderNftFreshInstall(spec, { nativeQueue: true });
    assert.equal(t.iptables, '');
    assert.equal(t.ip6tables, '');
  });
});

describe('nft render: inbound ESP through raw sockets (inbound: socket)', () => {
  const dual = GOLDEN_CASES.find((c) => c.name === 'host-dual-stack')?.input;
  assert.ok(dual !== undefined);
  const sock = buildRulesSpec({ ...dual, inbound: 'socket' });
  const rulesOf = (spec: typeof sock, name: string): readonly string[] | undefined => planNft(spec, { nativeQueue: true }).chains.find((c) => c.name === name)?.rules;

  test('case 1: no queue and no fallback chain, with or without nft queue; raw_prerouting notracks ESP from a peer endpoint to us', () => {
    for (const nativeQueue of [true, false]) {
      const plan = planNft(sock, { nativeQueue });
      assert.equal(plan.nfq, undefined);
      for (const c of plan.chains) for (const r of c.rules) assert.doesNotMatch(r, /queue|meta mark/);
    }
    assert.deepEqual(rulesOf(sock, 'raw_prerouting'), [
      'meta l4proto esp fib daddr type local ip saddr @endp4 notrack',
      'meta l4proto esp fib daddr type local ip6 saddr @endp6 notrack',
    ]);
    assert.equal(rulesOf(buildRulesSpec({ ...dual, inbound: 'socket', notrack: false }), 'raw_prerouting'), undefined);
  });
  test('case 2: filter_input accepts ESP from peer endpoints before the guard; filter_output drops protocol-unreachable to them', () => {
    const input = rulesOf(sock, 'filter_input') ?? [];
    assert.equal(input[0], 'meta l4proto esp fib daddr type local ip saddr @endp4 accept');
    assert.ok(input.includes('meta l4proto esp fib daddr type local ip6 saddr @endp6 accept'));
    for (const ip of ['ip', 'ip6']) {
      const accept = input.indexOf(`meta l4proto esp fib daddr type local ${ip} saddr @endp${ip === 'ip' ? 4 : 6} accept`);
      const firstDrop = input.findIndex((r) => r.includes(`${ip} saddr`) && r.endsWith(' drop'));
      assert.ok(accept >= 0 && firstDrop > accept, `${ip}: the accept comes before the family's guard drops`);
    }
    const output = rulesOf(sock, 'filter_output') ?? [];
    assert.ok(output.includes('ip daddr @endp4 icmp type destination-unreachable icmp code prot-unreachable drop'));
    assert.ok(output.includes('ip6 daddr @endp6 icmpv6 type parameter-problem icmpv6 code 1 drop'));
    assert.deepEqual(rulesOf(buildRulesSpec({ ...dual, inbound: 'socket', guard: false }), 'filter_input'), [
      'meta l4proto esp fib daddr type local ip saddr @endp4 accept',
      'meta l4proto esp fib daddr type local ip6 saddr @endp6 accept',
    ]);
  });
  test('case 3: every iptables chain has its nft twin at the same hook in socket mode too', () => {
    const ipt = new Set(planRules(sock).families.flatMap((f) => f.chains.map((c) => `${c.table} ${c.builtin}`)));
    const nft = new Set(planNft(sock, { nativeQueue: true }).chains.map((c) => c.name));
    const twin: Record<string, string> = {
      'raw PREROUTING': 'raw_prerouting', 'raw OUTPUT': 'raw_output', 'mangle POSTROUTING': 'mangle_postrouting', 'nat PREROUTING': 'nat_prerouting',
      'nat OUTPUT': 'nat_output', 'nat INPUT': 'nat_input', 'nat POSTROUTING': 'nat_postrouting', 'filter INPUT': 'filter_input', 'filter FORWARD': 'filter_forward', 'filter OUTPUT': 'filter_output',
    };
    for (const c of ipt) assert.ok(nft.has(twin[c] ?? '?'), c);
  });
});
