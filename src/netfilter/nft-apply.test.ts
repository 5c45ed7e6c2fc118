/**
 * nft-apply.test.ts: nftInstall/nftUninstall/nftStatus against a scripted fake Runner that keeps
 * a tiny model of our table and of the raw table. What nft and the kernel do with our texts is
 * covered by test/lab/nft.test.ts (root, in network namespaces).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GatewayError } from '../errors.js';
import { buildRulesSpec } from './model.js';
import { nftInstall, nftStatus, nftUninstall } from './nft-apply.js';
import type { NftPlan } from './nft-render.js';
import { nftComment, planNft, renderNftSetsUpdate } from './nft-render.js';
import type { RunResult, Runner } from './runner.js';

const SPEC = buildRulesSpec({
  tun: 'eg0', queueNum: 3, mode: 'host', mssClamp: true, guard: true,
  families: {
    v4: { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.2/32'], endpoints: ['198.18.0.2'] },
    v6: { pairs: [{ real: '2001:db8:1::/64', fake: '2001:db8:ff01::/64' }], peerAddrs: ['2001:db8:1::2/128'], endpoints: ['2001:db8:1::2'] },
  },
});

/** listing renders what `nft -j list table` prints for a table built from plan. */
function listing(plan: NftPlan): string {
  const items: unknown[] = [{ metainfo: { version: '1.0.6' } }, { table: { family: 'inet', name: plan.table } }];
  for (const s of plan.sets) items.push({ set: { family: 'inet', table: plan.table, name: s.name, type: s.type, ...(s.interval ? { flags: ['interval'] } : {}) } });
  for (const c of plan.chains) {
    items.push({ chain: { family: 'inet', table: plan.table, name: c.name, type: c.type, hook: c.hook, prio: c.priority, policy: 'accept' } });
    for (let i = 0; i < c.rules.length; i++) items.push({ rule: { family: 'inet', table: plan.table, chain: c.name, expr: [] } });
  }
  return JSON.stringify({ nftables: items });
}

/** FakeHost: our table is present once an `nft -f` created it (as the plan of the last install); raw tables as iptables-save text. */
class FakeHost implements Runner {
  readonly calls: { cmd: string; stdin: string | undefined }[] = [];
  table: NftPlan | undefined;
  raw: Record<string, string> = { 'iptables-save': '', 'ip6tables-save': '' };
  missing = new Set<string>();
  constructor(private readonly plan: NftPlan) {}
  run(file: string, args: readonly string[], stdin: string | undefined): Promise<RunResult> {
    const cmd = [file, ...args].join(' ');
    this.calls.push({ cmd, stdin });
    const ok = (stdout = ''): Promise<RunResult> => Promise.resolve({ code: 0, stdout, stderr: '', missing: false, timedOut: false });
    if (this.missing.has(file)) return Promise.resolve({ code: null, stdout: '', stderr: '', missing: true, timedOut: false });
    if (cmd === 'nft -j list tables') return ok(JSON.stringify({ nftables: this.table === undefined ? [] : [{ table: { family: 'inet', name: 'espgate' } }] }));
    if (cmd === 'nft -j list chains') return ok('{"nftables": []}');
    if (cmd === 'nft -j list table inet espgate' && this.table !== undefined) return ok(listing(this.table));
    if (cmd === 'nft -t list table inet espgate' && this.table !== undefined) return ok(`table inet espgate {\n\tcomment "${nftComment(this.table)}"\n}\n`);
    if (cmd.startsWith('nft -j list table ')) return Promise.resolve({ code: 1, stdout: '', stderr: 'Error: No such file or directory\n', missing: false, timedOut: false });
    if (cmd === 'nft -f -') {
      if (/^table inet espgate \{$/m.test(stdin ?? '')) this.table = this.plan;
      else if (/^delete table inet espgate$/m.test(stdin ?? '')) this.table = undefined;
      return ok();
    }
    if (cmd.endsWith('-save -t raw')) return ok(this.raw[file] ?? '');
    if (cmd.endsWith('-restore --noflush')) {
      const save = file.replace('restore', 'save');
      this.raw[save] = /^-A ESPGATE-NFQ /m.test(stdin ?? '')
        ? '*raw\n:PREROUTING ACCEPT [0:0]\n:ESPGATE-NFQ - [0:0]\n-A PREROUTING -j ESPGATE-NFQ\n-A ESPGATE-NFQ -p esp -m mark --mark 0x20000000/0x20000000 -j NFQUEUE --queue-num 3\nCOMMIT\n'
        : '*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n';
      return ok();
    }
    return ok();
  }
  cmds(): string[] {
    return this.calls.map((c) => c.cmd);
  }
}

const dirs: string[] = [];
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });
async function stateDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'espgate-nft-'));
  dirs.push(d);
  return d;
}

test('nftInstall: fresh, without nft queue: one nft transaction, then the NFQ chain per family; the raw tables are recorded', async () => {
  const host = new FakeHost(planNft(SPEC, { nativeQueue: false }));
  const dir = await stateDir();
  const r = await nftInstall(SPEC, { runner: host, stateDir: dir, nativeQueue: false });
  assert.equal(r.mode, 'replace');
  const writes = host.calls.filter((c) => c.cmd === 'nft -f -' || c.cmd.endsWith('--noflush'));
  assert.deepEqual(writes.map((c) => c.cmd), ['nft -f -', 'iptables-restore --noflush', 'ip6tables-restore --noflush']);
  assert.match(writes[0]?.stdin ?? '', /^table inet espgate\ndelete table inet espgate\ntable inet espgate \{$/m);
  assert.match(writes[1]?.stdin ?? '', /^-I PREROUTING 1 -j ESPGATE-NFQ$/m);
  const state = JSON.parse(await readFile(join(dir, 'nftables-ESPGATE.json'), 'utf8')) as { tables: Record<string, { existed: boolean }> };
  assert.deepEqual(Object.keys(state.tables).sort(), ['ip raw', 'ip6 raw']);
  assert.match(r.notes.join('\n'), /no nft queue: inbound ESP is queued by the iptables chain ESPGATE-NFQ/);
  assert.deepEqual((await nftStatus(SPEC, { runner: host, stateDir: dir, nativeQueue: false })).problems, []);
});

test('nftInstall: the table already right: one transaction that only refills the sets; the NFQ jump is not inserted twice', async () => {
  const plan = planNft(SPEC, { nativeQueue: false });
  const host = new FakeHost(plan);
  const dir = await stateDir();
  await nftInstall(SPEC, { runner: host, stateDir: dir, nativeQueue: false });
  host.calls.length = 0;
  const r = await nftInstall(SPEC, { runner: host, stateDir: dir, nativeQueue: false });
  assert.equal(r.mode, 'sets');
  assert.equal(host.calls.find((c) => c.cmd === 'nft -f -')?.stdin, renderNftSetsUpdate(plan));
  for (const c of host.calls.filter((x) => x.cmd.endsWith('--noflush'))) assert.doesNotMatch(c.stdin ?? '', /^-I /m);
});

test('nftInstall: a table with other rules (another spec, or edited) is replaced whole', async () => {
  const host = new FakeHost(planNft(SPEC, { nativeQueue: true }));
  host.table = planNft(SPEC, { nativeQueue: false });
  const dir = await stateDir();
  const r = await nftInstall(SPEC, { runner: host, stateDir: dir, nativeQueue: true });
  assert.equal(r.mode, 'replace');
  assert.deepEqual(host.cmds().filter((c) => c.endsWith('--noflush')), [], 'with nft queue and no NFQ chain present, iptables is not written');
});

test('nftInstall: without nft queue and without iptables: ERR_MISSING_TOOL, and the fresh install is removed again', async () => {
  const host = new FakeHost(planNft(SPEC, { nativeQueue: false }));
  host.missing.add('iptables-save');
  host.missing.add('iptables-restore');
  await assert.rejects(nftInstall(SPEC, { runner: host, stateDir: await stateDir(), nativeQueue: false }),
    (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_MISSING_TOOL' && /iptables-restore/.test(e.message));
  assert.equal(host.table, undefined, 'nothing of ours left');
});

test('nftUninstall: deletes our table and the NFQ chains; a second run finds nothing and writes nothing', async () => {
  const host = new FakeHost(planNft(SPEC, { nativeQueue: false }));
  const dir = await stateDir();
  await nftInstall(SPEC, { runner: host, stateDir: dir, nativeQueue: false });
  host.calls.length = 0;
  const r = await nftUninstall('ESPGATE', { runner: host, stateDir: dir });
  assert.equal(r.removed, true);
  assert.equal(host.table, undefined);
  assert.match(r.texts.iptables, /^-D PREROUTING -j ESPGATE-NFQ$/m);
  assert.match(r.texts.ip6tables, /^-X ESPGATE-NFQ$/m);
  for (const c of host.calls.filter((x) => x.cmd === 'nft -f -')) assert.doesNotMatch(c.stdin ?? '', /table (ip|ip6|inet) (?!espgate\b|raw\b)/, 'names no other table');
  host.calls.length = 0;
  const again = await nftUninstall('ESPGATE', { runner: host, stateDir: dir });
  assert.equal(again.removed, false);
  assert.deepEqual(host.cmds().filter((c) => c === 'nft -f -' || c.endsWith('--noflush')), []);
  const st = await nftStatus(SPEC, { runner: host, stateDir: dir, nativeQueue: false });
  assert.equal(st.present, false);
  assert.equal(st.installed, false);
});
