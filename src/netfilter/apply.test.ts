/**
 * apply.test.ts: install/uninstall/status/dry run against a scripted fake Runner. What the
 * real tools do with our texts is covered by test/netfilter/ (root, in network namespaces).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GatewayError } from '../errors.js';
import { dryRunInstall, install, NetfilterError, SET_DESTROY_ATTEMPTS, status, uninstall } from './apply.js';
import { buildRulesSpec } from './model.js';
import { renderInstall } from './render.js';
import type { RunResult, Runner } from './runner.js';

const SPEC = buildRulesSpec({
  tun: 'eg0', queueNum: 3, mode: 'host', mssClamp: true, guard: true,
  families: { v4: { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.2/32'], endpoints: ['198.18.0.2'] } },
});

type Handler = (stdin: string | undefined, fake: FakeRunner) => Partial<RunResult> | undefined;

/** FakeRunner answers from handlers keyed by "file args..."; it keeps a tiny model of ipset names. */
class FakeRunner implements Runner {
  readonly calls: { cmd: string; stdin: string | undefined }[] = [];
  readonly sets = new Set<string>();
  constructor(private readonly handlers: Record<string, Handler> = {}) {}
  run(file: string, args: readonly string[], stdin: string | undefined): Promise<RunResult> {
    const cmd = [file, ...args].join(' ');
    this.calls.push({ cmd, stdin });
    const base: RunResult = { code: 0, stdout: '', stderr: '', missing: false, timedOut: false };
    const h = this.handlers[cmd];
    const custom = h?.(stdin, this);
    if (custom !== undefined) return Promise.resolve({ ...base, ...custom });
    if (cmd === 'iptables --version' || cmd === 'ip6tables --version') return Promise.resolve({ ...base, stdout: `${file} v1.8.9 (nf_tables)\n` });
    if (cmd === 'ipset list -n') return Promise.resolve({ ...base, stdout: [...this.sets].join('\n') });
    if (cmd === 'ipset restore') {
      for (const l of (stdin ?? '').split('\n')) {
        const [verb, name] = l.split(' ');
        if (verb === 'create' && name !== undefined) this.sets.add(name);
        if (verb === 'destroy' && name !== undefined) this.sets.delete(name);
      }
      return Promise.resolve(base);
    }
    if (cmd.startsWith('nft -j list table ')) return Promise.resolve({ ...base, code: 1, stderr: 'Error: No such file or directory\n' });
    if (cmd.startsWith('nft -j list')) return Promise.resolve({ ...base, stdout: '{"nftables": [{"metainfo": {}}]}' });
    if (cmd.endsWith('-legacy-save')) return Promise.resolve({ ...base, missing: true, code: null });
    return Promise.resolve(base);
  }
  cmds(): string[] {
    return this.calls.map((c) => c.cmd);
  }
}

const dirs: string[] = [];
async function stateDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'espgate-nf-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function isErr(code: string, msg: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(GatewayError.isGatewayError(e), String(e));
    assert.equal(e.code, code);
    assert.match(e.message, msg);
    return true;
  };
}

const RESTORES = ['ipset restore', 'iptables-restore --noflush', 'ip6tables-restore --noflush', 'nft -f -'];
function restoreCalls(f: FakeRunner): string[] {
  return f.cmds().filter((c) => RESTORES.includes(c));
}

describe('install: missing tools and backend mismatch change nothing', () => {
  const cases: readonly { name: string; handlers: Record<string, Handler>; code: string; msg: RegExp }[] = [
    { name: 'no iptables', handlers: { 'iptables --version': () => ({ missing: true, code: null }) }, code: 'ERR_MISSING_TOOL', msg: /iptables not found: install the Debian package "iptables"/ },
    { name: 'no ipset', handlers: { 'ipset list -n': () => ({ missing: true, code: null }) }, code: 'ERR_MISSING_TOOL', msg: /ipset not found: .*apt-get install ipset/ },
    { name: 'no iptables-save', handlers: { 'iptables-save': () => ({ missing: true, code: null }) }, code: 'ERR_MISSING_TOOL', msg: /iptables-save not found/ },
    {
      name: 'legacy rules next to nf_tables',
      handlers: { 'iptables-legacy-save': () => ({ stdout: '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n' }) },
      code: 'ERR_RULES_APPLY', msg: /iptables uses the nf_tables backend, but iptables-legacy rules are present \(filter: 1 rule\(s\)\)/,
    },
    {
      name: 'nft rules next to legacy',
      handlers: {
        'iptables --version': () => ({ stdout: 'iptables v1.8.9 (legacy)\n' }),
        'iptables-nft-save': () => ({ stdout: '*nat\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\nCOMMIT\n' }),
      },
      code: 'ERR_RULES_APPLY', msg: /legacy backend, but iptables-nft rules are present \(nat: 0 rule\(s\); chains X\)/,
    },
  ];
  cases.forEach((c, i) => {
    test(`case ${i + 1}: ${c.name}`, async () => {
      const fake = new FakeRunner(c.handlers);
      const dir = await stateDir();
      await assert.rejects(install(SPEC, { runner: fake, stateDir: dir }), isErr(c.code, c.msg));
      assert.deepEqual(restoreCalls(fake), []);
      await assert.rejects(stat(join(dir, 'netfilter-ESPGATE.json')));
    });
  });
  test('case 6: ip6tables missing is fine for a v4-only spec', async () => {
    const fake = new FakeRunner({ 'ip6tables --version': () => ({ missing: true, code: null }) });
    await install(SPEC, { runner: fake, stateDir: await stateDir() });
    assert.deepEqual(restoreCalls(fake), ['ipset restore', 'iptables-restore --noflush']);
  });
});

describe('install', () => {
  test('case 1: fresh install applies the rendered texts in order and records tables', async () => {
    const nftTables = '{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "hook": "input", "policy": "accept"}}]}';
    const fake = new FakeRunner({ 'nft -j list tables': () => ({ stdout: nftTables }), 'nft -j list chains': () => ({ stdout: nftTables }) });
    const dir = await stateDir();
    const res = await install(SPEC, { runner: fake, stateDir: dir });
    const want = renderInstall(SPEC);
    assert.deepEqual(restoreCalls(fake), ['ipset restore', 'iptables-restore --noflush']);
    assert.equal(fake.calls.find((c) => c.cmd === 'iptables-restore --noflush')?.stdin, want.iptables);
    assert.equal(fake.calls.find((c) => c.cmd === 'ipset restore')?.stdin, want.ipset);
    assert.equal(res.texts.iptables, want.iptables);
    const state = JSON.parse(await readFile(join(dir, 'netfilter-ESPGATE.json'), 'utf8')) as { tables: Record<string, unknown>; expected: { sets: string[] } };
    assert.deepEqual(state.tables, {
      'ip raw': { existed: false, baseChains: [] },
      'ip mangle': { existed: false, baseChains: [] },
      'ip nat': { existed: false, baseChains: [] },
      'ip filter': { existed: true, baseChains: ['INPUT'] },
    });
    assert.deepEqual(state.expected.sets, ['ESPGATE-PEER4', 'ESPGATE-ENDP4']);
  });

  test('case 2: a refused line is named, and a fresh install is rolled back', async () => {
    const fake = new FakeRunner({
      'iptables-restore --noflush': (stdin) => stdin?.includes('-I PREROUTING') === true
        ? { code: 2, stderr: 'iptables-restore v1.8.9 (nf_tables): Set ESPGATE-ENDP4 doesn\'t exist.\n\nError occurred at line: 5\n' }
        : undefined,
    });
    const dir = await stateDir();
    const text = renderInstall(SPEC).iptables;
    await assert.rejects(install(SPEC, { runner: fake, stateDir: dir }), (e: unknown) => {
      assert.ok(e instanceof NetfilterError);
      assert.equal(e.code, 'ERR_RULES_APPLY');
      assert.equal(e.line, 5);
      assert.equal(e.lineText, text.split('\n')[4]);
      assert.match(e.message, /iptables-restore --noflush failed \(exit 2\) at input line 5 \("-A ESPGATE-PRE -p esp .*"\): iptables-restore v1\.8\.9/);
      assert.match(e.stderr, /Error occurred at line: 5/);
      return true;
    });
    // Rollback destroyed the sets the failed install had created, and removed the state file.
    assert.deepEqual([...fake.sets], []);
    assert.equal(restoreCalls(fake).at(-1), 'ipset restore');
    await assert.rejects(stat(join(dir, 'netfilter-ESPGATE.json')));
  });

  test('case 3: re-install of an installed state inserts no jump and creates no set', async () => {
    const saveText = [
      '*raw', ':PREROUTING ACCEPT [0:0]', ':ESPGATE-PRE - [0:0]', '-A PREROUTING -j ESPGATE-PRE', 'COMMIT',
      '*mangle', ':POSTROUTING ACCEPT [0:0]', ':ESPGATE-POST - [0:0]', '-A POSTROUTING -j ESPGATE-POST', 'COMMIT',
      '*nat', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':ESPGATE-IN - [0:0]', ':ESPGATE-OUT - [0:0]', '-A INPUT -j ESPGATE-IN', '-A OUTPUT -j ESPGATE-OUT', 'COMMIT',
      '*filter', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':ESPGATE-IN - [0:0]', ':ESPGATE-OUT - [0:0]', '-A INPUT -j ESPGATE-IN', '-A OUTPUT -j ESPGATE-OUT', 'COMMIT', '',
    ].join('\n');
    const fake = new FakeRunner({ 'iptables-save': () => ({ stdout: saveText }) });
    for (const s of ['ESPGATE-PEER4', 'ESPGATE-ENDP4']) fake.sets.add(s);
    await install(SPEC, { runner: fake, stateDir: await stateDir() });
    const v4 = fake.calls.find((c) => c.cmd === 'iptables-restore --noflush')?.stdin ?? '';
    assert.doesNotMatch(v4, /^-[ID] /m);
    const ipset = fake.calls.find((c) => c.cmd === 'ipset restore')?.stdin ?? '';
    assert.doesNotMatch(ipset, /^create ESPGATE-PEER4 /m);
    assert.match(ipset, /^swap ESPGATE-PEER4-T ESPGATE-PEER4$/m);
  });

  test('case 4: a tool that hangs is killed and reported', async () => {
    const fake = new FakeRunner({ 'iptables-restore --noflush': () => ({ code: null, timedOut: true }) });
    await assert.rejects(install(SPEC, { runner: fake, stateDir: await stateDir(), timeoutMs: 1234 }), isErr('ERR_RULES_APPLY', /did not finish within 1234 ms/));
  });
});

describe('dry run', () => {
  test('case 1: returns the texts, runs no restore, writes no state', async () => {
    const fake = new FakeRunner();
    const dir = await stateDir();
    const res = await dryRunInstall(SPEC, { runner: fake, stateDir: dir });
    assert.equal(res.texts.iptables, renderInstall(SPEC).iptables);
    assert.match(res.formatted, /^### iptables-restore --noflush$/m);
    assert.deepEqual(restoreCalls(fake), []);
    await assert.rejects(stat(join(dir, 'netfilter-ESPGATE.json')));
  });
});

describe('uninstall', () => {
  test('case 1: nothing installed: a successful no-op', async () => {
    const fake = new FakeRunner({ 'ipset list -n': () => ({ stdout: 'OTHER\n' }) });
    const res = await uninstall('ESPGATE', { runner: fake, stateDir: await stateDir() });
    assert.equal(res.removed, false);
    assert.deepEqual(restoreCalls(fake), []);
  });
  test('case 2: ipset destroy is retried while the kernel still holds the set', async () => {
    let n = 0;
    const fake = new FakeRunner({
      'ipset restore': () => (++n === 1 ? { code: 1, stderr: 'ipset v7.17: Error in line 1: Set cannot be destroyed: it is in use by a kernel component\n' } : undefined),
    });
    fake.sets.add('ESPGATE-PEER4');
    const res = await uninstall('ESPGATE', { runner: fake, stateDir: await stateDir() });
    assert.equal(res.removed, true);
    assert.equal(n, 2);
    assert.deepEqual([...fake.sets], []);
  });
  test('case 3: retries are bounded', async () => {
    const fake = new FakeRunner({ 'ipset restore': () => ({ code: 1, stderr: 'Error in line 1: Set cannot be destroyed: it is in use by a kernel component\n' }) });
    fake.sets.add('ESPGATE-PEER4');
    await assert.rejects(uninstall('ESPGATE', { runner: fake, stateDir: await stateDir() }), isErr('ERR_RULES_REMOVE', /in use/));
    assert.equal(fake.cmds().filter((c) => c === 'ipset restore').length, SET_DESTROY_ATTEMPTS);
  });
  test('case 4: tables and base chains we created are deleted when empty, others kept', async () => {
    const dir = await stateDir();
    await writeFile(join(dir, 'netfilter-ESPGATE.json'), JSON.stringify({
      version: 1, tag: 'ESPGATE', expected: { chains: [], sets: [] },
      tables: { 'ip raw': { existed: false, baseChains: [] }, 'ip filter': { existed: true, baseChains: ['INPUT'] }, 'ip nat': { existed: false, baseChains: [] } },
    }));
    const chain = (t: string, c: string, hook: string, policy = 'accept'): object => ({ chain: { family: 'ip', table: t, name: c, hook, policy } });
    const listing = (...items: object[]): Partial<RunResult> => ({ stdout: JSON.stringify({ nftables: [{ metainfo: {} }, ...items] }) });
    const fake = new FakeRunner({
      'nft -j list table ip raw': () => listing({ table: { family: 'ip', name: 'raw' } }, chain('raw', 'PREROUTING', 'prerouting')),
      'nft -j list table ip filter': () => listing(chain('filter', 'INPUT', 'input'), chain('filter', 'OUTPUT', 'output'), chain('filter', 'FORWARD', 'forward', 'drop')),
      'nft -j list table ip nat': () => listing(chain('nat', 'OUTPUT', 'output'), { rule: { family: 'ip', table: 'nat', chain: 'OUTPUT' } }),
    });
    await uninstall('ESPGATE', { runner: fake, stateDir: dir });
    const script = fake.calls.find((c) => c.cmd === 'nft -f -')?.stdin;
    assert.equal(script, 'delete chain ip raw PREROUTING\ndelete table ip raw\ndelete chain ip filter OUTPUT\n');
    await assert.rejects(stat(join(dir, 'netfilter-ESPGATE.json')));
  });
  test('case 5: invalid tag is refused before any tool runs', async () => {
    const fake = new FakeRunner();
    await assert.rejects(uninstall('bad tag', { runner: fake }), isErr('ERR_CONFIG', /tag/));
    assert.deepEqual(fake.calls, []);
  });
});

describe('status', () => {
  const saveText = (extra: string): string => [
    '*filter', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':ESPGATE-OUT - [0:0]', '-A OUTPUT -j ESPGATE-OUT', extra, 'COMMIT', '',
  ].join('\n');
  test('case 1: nothing present', async () => {
    const s = await status('ESPGATE', { runner: new FakeRunner(), stateDir: await stateDir() });
    assert.deepEqual(s, { installed: false, present: false, chains: [], sets: [], problems: [] });
  });
  test('case 2: partial install names what is missing', async () => {
    const fake = new FakeRunner({ 'iptables-save': () => ({ stdout: saveText('') }) });
    fake.sets.add('ESPGATE-PEER4');
    const s = await status('ESPGATE', { runner: fake, stateDir: await stateDir(), spec: SPEC });
    assert.equal(s.installed, false);
    assert.equal(s.present, true);
    assert.ok(s.problems.includes('v4 raw ESPGATE-PRE: missing'));
    assert.ok(s.problems.includes('set ESPGATE-ENDP4: missing'));
    assert.ok(s.problems.includes('v4 filter ESPGATE-OUT: rules differ from the spec'));
  });
  test('case 3: without spec or state file, consistency only', async () => {
    const fake = new FakeRunner({ 'iptables-save': () => ({ stdout: saveText('-A ESPGATE-OUT -j ACCEPT') }) });
    fake.sets.add('ESPGATE-PEER4');
    fake.sets.add('ESPGATE-ENDP4');
    const s = await status('ESPGATE', { runner: fake, stateDir: await stateDir() });
    assert.deepEqual(s.chains, [{ key: 'v4 filter ESPGATE-OUT', jumped: true }]);
    assert.equal(s.installed, true);
  });
});
