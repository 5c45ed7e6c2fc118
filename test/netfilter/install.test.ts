/**
 * install.test.ts (root): install/uninstall against the real iptables, ip6tables, ipset and
 * nft, each case in a network namespace of its own:
 *
 *   save before -> install -> install again (== after the first) -> uninstall -> save == before
 *
 * "save" is Netns.snapshot(): iptables-save, ip6tables-save, nft list ruleset and ipset save,
 * with comment lines, counters and random hash seeds removed. Skipped (with the reason) when
 * not root or a tool is missing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GatewayError } from '../../src/errors.js';
import { dryRunInstall, install, status, uninstall } from '../../src/netfilter/apply.js';
import type { ApplyOptions } from '../../src/netfilter/apply.js';
import { parseSave } from '../../src/netfilter/inspect.js';
import { buildRulesSpec } from '../../src/netfilter/model.js';
import type { RulesInput, RulesSpec } from '../../src/netfilter/model.js';
import { planRules, ruleLines } from '../../src/netfilter/render.js';
import type { Runner } from '../../src/netfilter/runner.js';
import { Netns, rootSkipReason } from './netns.js';

const skip = rootSkipReason(['iptables', 'ip6tables', 'iptables-save', 'ipset', 'nft']);

const V4 = { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.2/32', '198.18.0.128/25'], endpoints: ['198.18.0.2', '203.0.113.7'] };
const V6 = { pairs: [{ real: '2001:db8:1::/64', fake: '2001:db8:ff01::/64' }], peerAddrs: ['2001:db8:1::2/128'], endpoints: ['2001:db8:1::2'] };
const GATEWAY_DUAL: RulesInput = { tun: 'eg0', queueNum: 5, mode: 'gateway', mssClamp: true, guard: true, families: { v4: V4, v6: V6 } };
const HOST_V4: RulesInput = { tun: 'eg0', queueNum: 5, mode: 'host', mssClamp: false, guard: true, families: { v4: V4 } };

const dirs: string[] = [];
const spaces: Netns[] = [];
after(async () => {
  for (const n of spaces) n.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function setup(suffix: string): Promise<{ ns: Netns; opts: ApplyOptions & { runner: Runner } }> {
  const ns = new Netns(suffix);
  spaces.push(ns);
  const stateDir = await mkdtemp(join(tmpdir(), 'espgate-nf-root-'));
  dirs.push(stateDir);
  return { ns, opts: { runner: ns.runner(), stateDir } };
}

/** assertInstalledExactly checks every planned chain against iptables-save, rule for rule, and its jump is first. */
function assertInstalledExactly(ns: Netns, spec: RulesSpec): void {
  for (const f of planRules(spec).families) {
    const saved = parseSave(ns.sh(f.family === 'v4' ? 'iptables-save' : 'ip6tables-save'));
    for (const c of f.chains) {
      const t = saved.get(c.table);
      assert.ok(t !== undefined, `${f.family} ${c.table} missing`);
      assert.deepEqual(t.rules.get(c.chain) ?? [], ruleLines(c), `${f.family} ${c.table} ${c.chain}: installed rules differ from rendered`);
      const builtin = t.rules.get(c.builtin) ?? [];
      assert.equal(builtin[0], `-j ${c.chain}`, `${f.family} ${c.table} ${c.builtin}: our jump must come first`);
      assert.equal(builtin.filter((r) => r === `-j ${c.chain}`).length, 1);
    }
  }
}

describe('netfilter install/uninstall in a namespace', { skip }, () => {
  test('case 1: fresh namespace: install, install again, uninstall restores the exact state', async () => {
    const { ns, opts } = await setup('a');
    const spec = buildRulesSpec(GATEWAY_DUAL);
    const before = ns.snapshot();

    await install(spec, opts);
    const first = ns.snapshot();
    assert.notEqual(first, before);
    assertInstalledExactly(ns, spec);
    assert.match(ns.sh('ipset list ESPGATE-PEER4'), /198\.18\.0\.128\/25/);
    const st = await status('ESPGATE', { ...opts, spec });
    assert.deepEqual(st.problems, []);
    assert.equal(st.installed, true);

    await install(spec, opts);
    assert.equal(ns.snapshot(), first, 'installing twice must equal installing once');

    const res = await uninstall('ESPGATE', opts);
    assert.equal(res.removed, true);
    assert.deepEqual(res.notes, []);
    assert.equal(ns.snapshot(), before, 'uninstall must restore the state before install');
    await assert.rejects(stat(join(opts.stateDir ?? '', 'netfilter-ESPGATE.json')));

    const again = await uninstall('ESPGATE', opts);
    assert.equal(again.removed, false);
    assert.equal(ns.snapshot(), before);
    assert.equal((await status('ESPGATE', opts)).present, false);
  });

  test('case 2: existing rules, chains, tables and sets of others are kept, ours go first', async () => {
    const { ns, opts } = await setup('b');
    ns.sh([
      'iptables -A INPUT -p tcp --dport 22 -j ACCEPT',
      'iptables -N MYCHAIN',
      'iptables -A OUTPUT -j MYCHAIN',
      'iptables -t nat -A POSTROUTING -o lo -j RETURN',
      'iptables -t raw -A OUTPUT -p udp --dport 53 -j ACCEPT',
      'ip6tables -A INPUT -p tcp --dport 22 -j ACCEPT',
      'nft add table ip mangle',
      'nft add table inet mine',
      'nft add chain inet mine c "{ type filter hook output priority 10; policy accept; }"',
      'ipset create OTHER hash:ip',
    ].join(' && '));
    const before = ns.snapshot();
    const spec = buildRulesSpec({ ...GATEWAY_DUAL, mode: 'host' });
    await install(spec, opts);
    assertInstalledExactly(ns, spec);
    const input = ns.sh('iptables -S INPUT').split('\n');
    assert.deepEqual(input.slice(1, 3), ['-A INPUT -j ESPGATE-IN', '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT']);
    await uninstall('ESPGATE', opts);
    assert.equal(ns.snapshot(), before);
  });

  test('case 3: a changed spec converges (gateway dual-stack -> host v4 only), then uninstall', async () => {
    const { ns, opts } = await setup('c');
    const before = ns.snapshot();
    await install(buildRulesSpec(GATEWAY_DUAL), opts);
    const host = buildRulesSpec(HOST_V4);
    await install(host, opts);
    assertInstalledExactly(ns, host);
    assert.doesNotMatch(ns.sh('ip6tables-save'), /ESPGATE/);
    assert.doesNotMatch(ns.sh('iptables-save -t nat'), /ESPGATE-PRE|ESPGATE-POST/);
    assert.doesNotMatch(ns.sh('iptables-save -t mangle'), /TCPMSS/);
    assert.deepEqual(ns.sh('ipset list -n').split('\n').filter((l) => l !== '').sort(), ['ESPGATE-ENDP4', 'ESPGATE-PEER4']);
    const st = await status('ESPGATE', { ...opts, spec: host });
    assert.deepEqual(st.problems, []);
    // A fresh install of the same spec gives the same state as the converged one: tables the
    // wider spec created and the narrower one does not use were removed again.
    const converged = ns.snapshot();
    await uninstall('ESPGATE', opts);
    assert.equal(ns.snapshot(), before);
    await install(host, opts);
    assert.equal(ns.snapshot(), converged);
    await uninstall('ESPGATE', opts);
    assert.equal(ns.snapshot(), before);
  });

  test('case 4: dry run changes nothing and writes no state', async () => {
    const { ns, opts } = await setup('d');
    const before = ns.snapshot();
    const spec = buildRulesSpec(GATEWAY_DUAL);
    const dry = await dryRunInstall(spec, opts);
    assert.match(dry.formatted, /^-I OUTPUT 1 -j ESPGATE-OUT$/m);
    assert.equal(ns.snapshot(), before);
    await assert.rejects(stat(join(opts.stateDir ?? '', 'netfilter-ESPGATE.json')));
    // After an install, the dry run of the same spec inserts no jump.
    await install(spec, opts);
    const installed = ns.snapshot();
    const dry2 = await dryRunInstall(spec, opts);
    assert.doesNotMatch(dry2.formatted, /^-I /m);
    assert.equal(ns.snapshot(), installed);
    await uninstall('ESPGATE', opts);
    assert.equal(ns.snapshot(), before);
  });

  test('case 5: an invalid spec is refused before any tool runs; nothing changes', async () => {
    const { ns, opts } = await setup('e');
    const before = ns.snapshot();
    let calls = 0;
    const counting: Runner = { run: (...a) => { calls++; return opts.runner.run(...a); } };
    assert.throws(() => buildRulesSpec({ ...HOST_V4, families: { v4: { ...V4, pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/23' }] } } }),
      (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_PREFIX');
    await assert.rejects(uninstall('no such tag!', { ...opts, runner: counting }), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG');
    assert.equal(calls, 0);
    assert.equal(ns.snapshot(), before);
  });

  test('case 6: a refused table file rolls a fresh install back completely', async () => {
    const { ns, opts } = await setup('f');
    const before = ns.snapshot();
    // The first IPv6 text gets a rule the kernel refuses in its last table section: by then the
    // sets, all IPv4 tables and the earlier IPv6 table sections (each its own transaction) are in.
    let broken = false;
    const breaking: Runner = {
      run: (file, args, stdin, t) => {
        if (file !== 'ip6tables-restore' || stdin === undefined || broken) return opts.runner.run(file, args, stdin, t);
        broken = true;
        return opts.runner.run(file, args, stdin.replace(/COMMIT\n$/, '-A ESPGATE-OUT -j NO-SUCH-CHAIN\nCOMMIT\n'), t);
      },
    };
    await assert.rejects(install(buildRulesSpec(GATEWAY_DUAL), { ...opts, runner: breaking }), (e: unknown) => {
      assert.ok(GatewayError.isGatewayError(e));
      assert.equal(e.code, 'ERR_RULES_APPLY');
      assert.match(e.message, /ip6tables-restore --noflush failed .*at input line \d+/);
      return true;
    });
    assert.equal(ns.snapshot(), before);
  });

  test('case 7: iptables-legacy rules present: refused with a clear message, nothing changed', async (t) => {
    const { ns, opts } = await setup('g');
    if (ns.trySh('iptables-legacy -A OUTPUT -d 192.0.2.1 -j DROP').code !== 0) {
      t.skip('iptables-legacy cannot be used here');
      return;
    }
    const before = ns.snapshot();
    await assert.rejects(install(buildRulesSpec(HOST_V4), opts), (e: unknown) => {
      assert.ok(GatewayError.isGatewayError(e));
      assert.equal(e.code, 'ERR_RULES_APPLY');
      assert.match(e.message, /iptables uses the nf_tables backend, but iptables-legacy rules are present \(filter: 1 rule\(s\)\)/);
      return true;
    });
    assert.equal(ns.snapshot(), before);
  });

  test('case 8: inbound: socket: install, switch a live gate to the queue and back, uninstall restores the exact state', async () => {
    const { ns, opts } = await setup('s');
    const sockets = buildRulesSpec({ ...GATEWAY_DUAL, notrack: true, inbound: 'socket' });
    const queue = buildRulesSpec({ ...GATEWAY_DUAL, notrack: true, inbound: 'queue' });
    const before = ns.snapshot();
    await install(sockets, opts);
    assertInstalledExactly(ns, sockets);
    const first = ns.snapshot();
    assert.doesNotMatch(first, /NFQUEUE/);
    assert.match(first, /-A ESPGATE-IN -p esp -m addrtype --dst-type LOCAL -m set --match-set ESPGATE-ENDP4 src -j ACCEPT/);
    assert.match(first, /-A ESPGATE-OUT -p ipv6-icmp -m icmp6 --icmpv6-type 4\/1 -m set --match-set ESPGATE-ENDP6 dst -j DROP/);
    assert.deepEqual((await status('ESPGATE', { ...opts, spec: sockets })).problems, []);
    await install(queue, opts);
    assertInstalledExactly(ns, queue);
    assert.doesNotMatch(ns.snapshot(), /icmp-type 3\/2|icmpv6-type 4\/1/);
    await install(sockets, opts);
    assert.equal(ns.snapshot(), first, 'back to sockets: the same state as the first install');
    await uninstall('ESPGATE', opts);
    assert.equal(ns.snapshot(), before);
  });
});
