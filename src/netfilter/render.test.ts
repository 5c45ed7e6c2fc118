/**
 * render.test.ts: render() against the reviewed golden files in rules/golden/, plus the
 * properties the design depends on (O(1) rules in the number of peers, one jump per chain,
 * state-aware re-rendering). UPDATE_GOLDEN=1 rewrites the golden files instead of comparing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSave } from './inspect.js';
import type { SavedRuleset } from './inspect.js';
import { buildRulesSpec, IPT_CHAIN_NAME_MAX, IPSET_NAME_MAX } from './model.js';
import type { RulesInput } from './model.js';
import { GOLDEN_BASE, GOLDEN_CASES, checkGolden } from './golden-cases.js';
import {
  formatTexts, planRules, renderFamilyRestore, renderInstall, renderSetsInstall, renderSetsRemove,
  renderUninstall, ruleCount, ruleLines, savedFromPlan,
} from './render.js';

const BASE = GOLDEN_BASE;

/** GOLDEN lists the reviewed specs (golden-cases.ts), as <name>.txt. */
const GOLDEN: readonly { file: string; input: RulesInput }[] = GOLDEN_CASES.map((c) => ({ file: `${c.name}.txt`, input: c.input }));

function golden(input: RulesInput): string {
  const spec = buildRulesSpec(input);
  return `## install\n\n${formatTexts(renderInstall(spec))}\n## uninstall\n\n${formatTexts(renderUninstall(spec))}`;
}

describe('render: golden files', () => {
  GOLDEN.forEach(({ file, input }, i) => {
    test(`case ${i + 1}: ${file}`, () => {
      checkGolden(file, golden(input), 'render()');
    });
  });
});

function peers(n: number): string[] {
  // n distinct /32s inside 198.18.0.0/16.
  return Array.from({ length: n }, (_, i) => `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}/32`);
}

describe('render: rule count does not depend on the number of peers', () => {
  const mk = (n: number): RulesInput => ({
    ...BASE, mode: 'gateway', families: {
      v4: { pairs: [{ real: '198.18.0.0/16', fake: '198.19.0.0/16' }], peerAddrs: peers(n), endpoints: peers(n).map((p) => p.split('/')[0] ?? '') },
    },
  });
  const one = buildRulesSpec(mk(1));
  const many = buildRulesSpec(mk(1000));

  test('case 1: same iptables text for 1 and 1000 peers', () => {
    assert.equal(renderInstall(one).iptables, renderInstall(many).iptables);
    assert.equal(ruleCount(planRules(one)), ruleCount(planRules(many)));
  });
  test('case 2: only the ipset text grows, by one add per extra peer and endpoint', () => {
    const a = renderInstall(one).ipset.split('\n').length;
    const b = renderInstall(many).ipset.split('\n').length;
    assert.equal(b - a, 2 * 999);
  });
  test('case 3: a set past the ipset default capacity gets an explicit maxelem', () => {
    const big = renderSetsInstall('T', [{ name: 'T-PEER4', type: 'hash:net', family: 'inet', members: peers(70000).map(() => '198.18.0.1/32') }], new Set());
    assert.match(big, /^create T-PEER4 hash:net family inet maxelem 70000$/m);
  });
});

describe('render: structure', () => {
  const specs = GOLDEN.map((g) => buildRulesSpec(g.input));
  test('case 1: every chain is jumped to exactly once, from its builtin, at the top', () => {
    for (const spec of specs) {
      for (const fam of ['v4', 'v6'] as const) {
        const text = fam === 'v4' ? renderInstall(spec).iptables : renderInstall(spec).ip6tables;
        const plan = planRules(spec).families.find((f) => f.family === fam);
        if (plan === undefined) { assert.equal(text, ''); continue; }
        for (const c of plan.chains) {
          // Within its own table section, exactly one insert from the right builtin.
          const section = text.split('COMMIT').find((s) => s.includes(`*${c.table}\n`)) ?? '';
          assert.deepEqual(section.split('\n').filter((l) => l.endsWith(`-j ${c.chain}`)), [`-I ${c.builtin} 1 -j ${c.chain}`]);
        }
      }
    }
  });
  test('case 2: names fit iptables and ipset limits for the longest tag', () => {
    const spec = buildRulesSpec({ ...GOLDEN[3].input, tag: 'A'.repeat(23) });
    const plan = planRules(spec);
    for (const f of plan.families) for (const c of f.chains) assert.ok(c.chain.length <= IPT_CHAIN_NAME_MAX, c.chain);
    for (const s of plan.sets) assert.ok(`${s.name}-T`.length <= IPSET_NAME_MAX, s.name);
  });
  test('case 3: ESP is never NATed', () => {
    for (const spec of specs) {
      for (const f of planRules(spec).families) {
        for (const c of f.chains.filter((x) => x.table === 'nat' && (x.builtin === 'OUTPUT' || x.builtin === 'PREROUTING'))) {
          for (const l of ruleLines(c).filter((x) => x.includes('NETMAP'))) assert.match(l, /! -p esp/);
        }
      }
    }
  });
  test('case 4: the NFQUEUE rule has no --queue-bypass (fail closed; inbound: queue)', () => {
    for (const spec of specs.filter((s) => s.inbound === 'queue')) {
      for (const f of planRules(spec).families) {
        const q = f.chains.find((c) => c.table === 'raw');
        assert.deepEqual(ruleLines(q!).filter((l) => l.includes('NFQUEUE')).length, 1);
        for (const l of ruleLines(q!)) assert.doesNotMatch(l, /queue-bypass/);
      }
    }
  });
  test('case 5: IPv6 guard never drops neighbour discovery before its RETURN', () => {
    const spec = buildRulesSpec(GOLDEN[3].input);
    const v6 = planRules(spec).families.find((f) => f.family === 'v6');
    for (const c of v6?.chains.filter((x) => x.table === 'filter') ?? []) {
      const lines = ruleLines(c);
      // Every DROP that matches on the peer set could hit ND between peers; ND must RETURN first.
      const drops = lines.map((l, i) => (l.endsWith('-j DROP') && l.includes('--match-set') ? i : -1)).filter((i) => i >= 0);
      assert.ok(drops.length > 0, c.chain);
      for (const t of [133, 134, 135, 136, 137]) {
        const ret = lines.indexOf(`-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`);
        assert.ok(ret >= 0 && drops.every((d) => ret < d), `${c.chain}: ND type ${t} must RETURN before any peer-set DROP`);
      }
    }
  });
});

describe('render: against current state', () => {
  const spec = buildRulesSpec(GOLDEN[1].input);
  const plan = planRules(spec);
  const v4 = plan.families.find((f) => f.family === 'v4');
  const installed: SavedRuleset = savedFromPlan(plan, 'v4');

  test('case 1: re-install flushes and refills our chains but inserts no second jump', () => {
    const text = renderFamilyRestore('ESPGATE', 'v4', v4, installed);
    assert.doesNotMatch(text, /^-I /m);
    assert.doesNotMatch(text, /^-D /m);
    assert.match(text, /^:ESPGATE-OUT - \[0:0\]$/m);
  });
  test('case 2: duplicate and misplaced jumps are deleted, one canonical jump kept', () => {
    const save = parseSave([
      '*filter', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':ESPGATE-OUT - [0:0]', ':ESPGATE-IN - [0:0]',
      '-A INPUT -j ESPGATE-OUT', '-A OUTPUT -j ESPGATE-OUT', '-A OUTPUT -o eth0 -j ESPGATE-OUT', '-A OUTPUT -j ESPGATE-OUT', 'COMMIT', '',
    ].join('\n'));
    const text = renderFamilyRestore('ESPGATE', 'v4', v4, save);
    const filter = text.slice(text.indexOf('*filter'));
    assert.deepEqual(filter.split('\n').filter((l) => l.startsWith('-D ')), [
      '-D INPUT -j ESPGATE-OUT', '-D OUTPUT -o eth0 -j ESPGATE-OUT', '-D OUTPUT -j ESPGATE-OUT',
    ]);
    assert.deepEqual(filter.split('\n').filter((l) => l.startsWith('-I ')), ['-I INPUT 1 -j ESPGATE-IN']);
  });
  test('case 3: chains no longer wanted are flushed and deleted after their jumps', () => {
    const gw = planRules(buildRulesSpec(GOLDEN[3].input));
    const text = renderFamilyRestore('ESPGATE', 'v4', v4, savedFromPlan(gw, 'v4'));
    const nat = text.slice(text.indexOf('*nat'), text.indexOf('COMMIT', text.indexOf('*nat')));
    const lines = nat.split('\n');
    assert.ok(lines.includes('-D PREROUTING -j ESPGATE-PRE'));
    assert.ok(lines.includes('-X ESPGATE-PRE'));
    assert.ok(lines.indexOf('-D PREROUTING -j ESPGATE-PRE') < lines.indexOf('-X ESPGATE-PRE'));
    assert.ok(lines.indexOf(':ESPGATE-PRE - [0:0]') < lines.indexOf('-X ESPGATE-PRE'));
  });
  test('case 4: nothing wanted and nothing present renders nothing (no table gets created)', () => {
    const other = parseSave('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n');
    assert.equal(renderFamilyRestore('ESPGATE', 'v4', undefined, other), '');
    assert.equal(renderFamilyRestore('ESPGATE', 'v4', undefined, new Map()), '');
  });
  test('case 5: tables without our chains are not named', () => {
    const text = renderInstall(buildRulesSpec(GOLDEN[4].input)).iptables;
    assert.doesNotMatch(text, /^\*mangle$/m);
    const filter = text.slice(text.indexOf('*filter'));
    assert.match(filter, /^:ESPGATE-OUT /m);
    assert.doesNotMatch(filter, /^:ESPGATE-IN /m);
  });
  test('case 6: sets already present are not created again; leftover staging sets are destroyed first', () => {
    const text = renderSetsInstall('ESPGATE', plan.sets, new Set(['ESPGATE-PEER4', 'ESPGATE-PEER4-T']));
    assert.doesNotMatch(text, /^create ESPGATE-PEER4 /m);
    const lines = text.split('\n');
    assert.ok(lines.indexOf('destroy ESPGATE-PEER4-T') < lines.indexOf('create ESPGATE-PEER4-T hash:net family inet'));
  });
  test('case 7: set removal keeps wanted sets and their staging names', () => {
    const present = new Set(['ESPGATE-PEER4', 'ESPGATE-PEER4-T', 'ESPGATE-PEER6', 'OTHER']);
    const v4only = plan.sets.filter((s) => s.family === 'inet');
    assert.equal(renderSetsRemove('ESPGATE', v4only, present), '# espgate ESPGATE: ipset restore input\ndestroy ESPGATE-PEER6\n');
    assert.equal(renderSetsRemove('ESPGATE', plan.sets, new Set(['OTHER'])), '');
  });
});

describe('render: IKE and NAT-T exemptions (RulesInput.ike)', () => {
  // [case, chain (table/suffix), exact rule lines expected with ike on]
  const v4 = planRules(buildRulesSpec(GOLDEN[5].input)).families[0];
  const plain = planRules(buildRulesSpec(GOLDEN[0].input)).families[0];
  const cases: [string, string, string[]][] = [
    ['nat', 'ESPGATE-OUT', [
      '-p udp -m udp --sport 500 -m set --match-set ESPGATE-ENDP4 dst -j RETURN',
      '-p udp -m udp --sport 4500 -m set --match-set ESPGATE-ENDP4 dst -j RETURN',
    ]],
    ['filter', 'ESPGATE-IN', [
      '-p udp -m udp --dport 500 -m set --match-set ESPGATE-ENDP4 src -m addrtype --dst-type LOCAL -j RETURN',
      '-p udp -m udp --dport 4500 -m set --match-set ESPGATE-ENDP4 src -m addrtype --dst-type LOCAL -j RETURN',
    ]],
    ['filter', 'ESPGATE-OUT', [
      '-p udp -m udp --sport 500 -m set --match-set ESPGATE-ENDP4 dst -j ACCEPT',
      '-p udp -m udp --sport 4500 -m set --match-set ESPGATE-ENDP4 dst -j ACCEPT',
    ]],
  ];
  for (const [i, [table, chain, want]] of cases.entries()) {
    test(`case ${i + 1}: ${table} ${chain} exempts udp on our ports 500 and 4500, any peer port, before its first DROP or NETMAP`, () => {
      const c = v4?.chains.find((x) => x.table === table && x.chain === chain);
      assert.ok(c !== undefined);
      const lines = ruleLines(c);
      for (const w of want) assert.ok(lines.includes(w), `${w} in ${JSON.stringify(lines)}`);
      const firstCut = lines.findIndex((l) => / -j (DROP|NETMAP)( |$)/.test(l));
      assert.ok(firstCut < 0 || Math.max(...want.map((w) => lines.indexOf(w))) < firstCut, 'exemptions come first');
      const off = plain?.chains.find((x) => x.table === table && x.chain === chain);
      assert.ok(off !== undefined);
      assert.equal(ruleLines(off).filter((l) => l.includes('-p udp')).length, 0, 'no exemption without ike');
    });
  }
  test('case 4: raw and mangle never see an IKE rule; UDP is never queued', () => {
    for (const c of v4?.chains ?? []) {
      if (c.table !== 'raw' && c.table !== 'mangle') continue;
      assert.equal(ruleLines(c).filter((l) => l.includes('udp')).length, 0, c.chain);
    }
  });
});

describe('render: our own ESP skips conntrack (RulesInput.notrack)', () => {
  const dual = buildRulesSpec({ ...GOLDEN[1].input, notrack: true });
  const off = buildRulesSpec({ ...GOLDEN[1].input, notrack: false });
  const rawOut = (spec: typeof dual, family: 'v4' | 'v6'): readonly string[] | undefined => {
    const c = planRules(spec).families.find((f) => f.family === family)?.chains.find((x) => x.table === 'raw' && x.builtin === 'OUTPUT');
    return c === undefined ? undefined : ruleLines(c);
  };

  test('case 1: one raw OUTPUT rule per family: ESP, to a peer endpoint, CT --notrack; nothing else is exempted', () => {
    assert.deepEqual(rawOut(dual, 'v4'), ['-p esp -m set --match-set ESPGATE-ENDP4 dst -j CT --notrack']);
    assert.deepEqual(rawOut(dual, 'v6'), ['-p esp -m set --match-set ESPGATE-ENDP6 dst -j CT --notrack']);
    const text = renderInstall(dual).iptables;
    assert.equal(text.split('\n').filter((l) => l.includes('--notrack')).length, 1);
    assert.ok(text.split('\n').includes('-I OUTPUT 1 -j ESPGATE-OUT'));
  });
  test('case 2: without notrack there is no raw OUTPUT chain and no notrack anywhere', () => {
    assert.equal(rawOut(off, 'v4'), undefined);
    assert.equal(rawOut(off, 'v6'), undefined);
    assert.doesNotMatch(formatTexts(renderInstall(off)), /notrack/i);
  });
  test('case 3: turning it off on a live gate deletes the jump, then the chain; turning it on adds them', () => {
    const v4Off = planRules(off).families.find((f) => f.family === 'v4');
    const down = renderFamilyRestore('ESPGATE', 'v4', v4Off, savedFromPlan(planRules(dual), 'v4'));
    const raw = down.slice(down.indexOf('*raw'), down.indexOf('COMMIT', down.indexOf('*raw'))).split('\n');
    assert.ok(raw.indexOf('-D OUTPUT -j ESPGATE-OUT') >= 0 && raw.indexOf('-D OUTPUT -j ESPGATE-OUT') < raw.indexOf('-X ESPGATE-OUT'), raw.join('\n'));
    assert.ok(!raw.includes('-D PREROUTING -j ESPGATE-PRE'), 'the queue chain stays');
    const v4On = planRules(dual).families.find((f) => f.family === 'v4');
    const up = renderFamilyRestore('ESPGATE', 'v4', v4On, savedFromPlan(planRules(off), 'v4'));
    assert.deepEqual(up.split('\n').filter((l) => l.startsWith('-I ')), ['-I OUTPUT 1 -j ESPGATE-OUT']);
  });
  test('case 4: uninstall removes the raw OUTPUT jump and chain', () => {
    for (const text of [renderUninstall(dual).iptables, renderUninstall(dual).ip6tables]) {
      const raw = text.slice(text.indexOf('*raw'), text.indexOf('COMMIT', text.indexOf('*raw'))).split('\n');
      assert.ok(raw.includes('-D OUTPUT -j ESPGATE-OUT') && raw.includes('-X ESPGATE-OUT'), raw.join('\n'));
    }
  });
});

describe('render: inbound ESP through raw sockets (RulesInput.inbound: socket)', () => {
  const sock = buildRulesSpec({ ...GOLDEN[1].input, inbound: 'socket' });
  const queue = buildRulesSpec({ ...GOLDEN[1].input, inbound: 'queue' });
  const chain = (spec: typeof sock, family: 'v4' | 'v6', table: string, builtin: string): readonly string[] | undefined => {
    const c = planRules(spec).families.find((f) => f.family === family)?.chains.find((x) => x.table === table && x.builtin === builtin);
    return c === undefined ? undefined : ruleLines(c);
  };

  test('case 1: nothing is queued; inbound ESP from a peer endpoint to us is notracked in raw PREROUTING, nothing else', () => {
    assert.doesNotMatch(formatTexts(renderInstall(sock)), /NFQUEUE|--length/);
    assert.deepEqual(chain(sock, 'v4', 'raw', 'PREROUTING'), ['-p esp -m addrtype --dst-type LOCAL -m set --match-set ESPGATE-ENDP4 src -j CT --notrack']);
    assert.deepEqual(chain(sock, 'v6', 'raw', 'PREROUTING'), ['-p esp -m addrtype --dst-type LOCAL -m set --match-set ESPGATE-ENDP6 src -j CT --notrack']);
    const noTrack = buildRulesSpec({ ...GOLDEN[1].input, inbound: 'socket', notrack: false });
    assert.equal(chain(noTrack, 'v4', 'raw', 'PREROUTING'), undefined, 'rules.espNotrack off: inbound ESP is tracked too');
    assert.doesNotMatch(formatTexts(renderInstall(noTrack)), /notrack|NFQUEUE/);
  });
  test('case 2: filter INPUT accepts ESP from peer endpoints first (before any guard drop), even without the guard', () => {
    for (const [family, endp] of [['v4', 'ESPGATE-ENDP4'], ['v6', 'ESPGATE-ENDP6']] as const) {
      const lines = chain(sock, family, 'filter', 'INPUT') ?? [];
      assert.equal(lines[0], `-p esp -m addrtype --dst-type LOCAL -m set --match-set ${endp} src -j ACCEPT`);
      assert.ok(lines.some((l) => l.endsWith('-j DROP')), 'the guard follows');
    }
    const bare = buildRulesSpec({ ...GOLDEN[1].input, inbound: 'socket', guard: false });
    assert.deepEqual(chain(bare, 'v4', 'filter', 'INPUT'), ['-p esp -m addrtype --dst-type LOCAL -m set --match-set ESPGATE-ENDP4 src -j ACCEPT']);
    assert.equal(chain(buildRulesSpec({ ...GOLDEN[1].input, inbound: 'queue', guard: false }), 'v4', 'filter', 'INPUT'), undefined);
  });
  test('case 3: filter OUTPUT drops the kernel\'s protocol-unreachable answer to a peer endpoint (ICMP 3/2, ICMPv6 4/1); the queue needs none', () => {
    assert.ok(chain(sock, 'v4', 'filter', 'OUTPUT')?.includes('-p icmp -m icmp --icmp-type 3/2 -m set --match-set ESPGATE-ENDP4 dst -j DROP'));
    assert.ok(chain(sock, 'v6', 'filter', 'OUTPUT')?.includes('-p ipv6-icmp -m icmp6 --icmpv6-type 4/1 -m set --match-set ESPGATE-ENDP6 dst -j DROP'));
    assert.doesNotMatch(formatTexts(renderInstall(queue)), /icmp-type 3\/2|icmpv6-type 4\/1/);
  });
  test('case 4: switching a live gate from queue to socket replaces the raw PREROUTING rules and keeps one jump', () => {
    const v4 = planRules(sock).families.find((f) => f.family === 'v4');
    const text = renderFamilyRestore('ESPGATE', 'v4', v4, savedFromPlan(planRules(queue), 'v4'));
    const raw = text.slice(text.indexOf('*raw'), text.indexOf('COMMIT', text.indexOf('*raw'))).split('\n');
    assert.ok(raw.includes(':ESPGATE-PRE - [0:0]'), 'declaring the chain flushes it (iptables-restore --noflush)');
    assert.ok(raw.includes('-A ESPGATE-PRE -p esp -m addrtype --dst-type LOCAL -m set --match-set ESPGATE-ENDP4 src -j CT --notrack'), raw.join('\n'));
    assert.ok(!raw.some((l) => l.startsWith('-I PREROUTING')), 'the jump is already there');
  });
  test('case 5: an unknown inbound mode is a config error', () => {
    assert.throws(() => buildRulesSpec({ ...GOLDEN[1].input, inbound: 'tap' as 'socket' }), /inbound/);
  });
});
