/**
 * test/lab/cli-config.test.ts: every broken config is refused by the CLI on a real system, and
 * nothing on that system changes (root only; skips otherwise). The cases are the parser's own
 * table (test/support/broken-configs.ts, shared with src/config/load.test.ts); the base document
 * is the documented EXAMPLE (alice's side of the `lan` lab), so the commands run in alice's
 * namespace, where a valid config would really install rules, routes and a TUN.
 *
 *   C0  control: the unedited EXAMPLE passes `check` (exit 0, nothing changed); `rules install`
 *       changes the namespace (so the comparison below can see a change) and `rules remove`
 *       brings it back exactly
 *   C1 .. C36  per case, `espgate up -c BAD`, `espgate rules install -c BAD` and
 *       `espgate check -c BAD`, run at the same time: each exits 2 (config error) by itself,
 *       prints nothing on stdout, and names the file, the field (path) and the problem on
 *       stderr; afterwards the namespace's iptables, ip6tables, ipsets, routes and links equal
 *       the baseline, and the case's own stateDir was never created
 *
 * Every command is bounded (CMD_TIMEOUT_MS); the lab is torn down in after() (the run dir is kept
 * when a case failed, or with EGL_KEEP=1).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LabRun } from '../../lab/harness.js';
import { cliPath, labUnavailable, labUp } from '../../lab/harness.js';
import { EXAMPLE } from '../../src/config/reference.js';
import { BROKEN_CONFIGS, renderBrokenConfig } from '../support/broken-configs.js';
import type { LabTestState, RunResult } from './support.js';
import { describeResult, diffLines, runIn, snapshotState, tearDownLab } from './support.js';

/** HOST is where the commands run: EXAMPLE is alice's config. */
const HOST = 'alice';
/** COMMANDS are the three CLI commands that take a config and must refuse a broken one. */
const COMMANDS: readonly (readonly string[])[] = [['up'], ['rules', 'install'], ['check']];
/** CONFIG_ERROR_EXIT is the CLI's exit status for a usage or config error (src/cli/main.ts). */
const CONFIG_ERROR_EXIT = 2;
/** CMD_TIMEOUT_MS bounds one command: a refused config must end the process by itself. */
const CMD_TIMEOUT_MS = 30_000;
const HOOK_TIMEOUT_MS = 120_000;
const CASE_TIMEOUT_MS = 90_000;

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe(`cli-config: ${BROKEN_CONFIGS.length} broken configs refused by \`up\`, \`rules install\` and \`check\` in a lab namespace, naming the field; nothing changes`, { skip: labUnavailable() ?? false }, () => {
  const st: LabTestState & { baseline?: Map<string, string>; dir?: string } = { daemons: new Map(), failed: false };
  const runOf = (): LabRun => {
    if (st.run === undefined) throw new Error('the lab is not up (see the before hook)');
    return st.run;
  };
  const dirOf = (): string => {
    if (st.dir === undefined) throw new Error('no case dir (see the before hook)');
    return st.dir;
  };
  const cli = (args: readonly string[], file: string): Promise<RunResult> => runIn(runOf(), HOST, ['node', cliPath(), ...args, '-c', file], CMD_TIMEOUT_MS);

  /** changesSince lists the commands whose output differs from the baseline, with the differing lines. */
  const changesSince = async (): Promise<string[]> => {
    const now = await snapshotState(runOf(), HOST);
    const out: string[] = [];
    for (const [cmd, text] of st.baseline ?? new Map<string, string>()) {
      if (now.get(cmd) !== text) out.push(`\`${cmd}\`:\n${diffLines(text, now.get(cmd) ?? '')}`);
    }
    return out;
  };

  before(async () => {
    try {
      const run = labUp('lan');
      st.run = run;
      st.dir = join(run.dir, 'cli');
      mkdirSync(st.dir, { recursive: true, mode: 0o700 });
      st.baseline = await snapshotState(run, HOST);
    } catch (e) {
      st.failed = true;
      throw e;
    }
  }, { timeout: HOOK_TIMEOUT_MS });

  after(async () => {
    await tearDownLab(st, 'cli-config');
  }, { timeout: HOOK_TIMEOUT_MS });

  test('C0. control: the unedited EXAMPLE passes `check` and changes nothing; `rules install` changes the namespace, `rules remove` restores it exactly', { timeout: CASE_TIMEOUT_MS }, async (t) => {
    try {
      const file = join(dirOf(), 'valid.yaml');
      writeFileSync(file, renderBrokenConfig(() => {}, EXAMPLE, (d) => { d['stateDir'] = join(dirOf(), 'state-valid'); }), { mode: 0o600 });
      const check = await cli(['check'], file);
      assert.equal(check.status, 0, `check accepts the EXAMPLE: ${describeResult(check)}`);
      assert.match(check.stdout, /: ok \(1 peer\(s\), mode host, tun eg0\)/);
      assert.deepEqual(await changesSince(), [], '`check` changes nothing');
      const install = await cli(['rules', 'install'], file);
      assert.equal(install.status, 0, `rules install: ${describeResult(install)}`);
      const changed = await changesSince();
      t.diagnostic(`rules install changed: ${changed.map((c) => c.split(':')[0]).join(', ')}`);
      for (const cmd of ['iptables-save', 'ip6tables-save', 'ip route', 'ipset list -n']) {
        assert.ok(changed.some((c) => c.startsWith(`\`${cmd}\``)), `the snapshot sees what \`rules install\` added to \`${cmd}\``);
      }
      const remove = await cli(['rules', 'remove'], file);
      assert.equal(remove.status, 0, `rules remove: ${describeResult(remove)}`);
      assert.deepEqual(await changesSince(), [], '`rules remove` restores the baseline exactly');
    } catch (e) {
      st.failed = true;
      throw e;
    }
  });

  for (const [n, what, edit, path, message] of BROKEN_CONFIGS) {
    test(`C${n}. ${what}: refused at ${path} by up, rules install and check; nothing changes`, { timeout: CASE_TIMEOUT_MS }, async () => {
      try {
        const stateDir = join(dirOf(), `state-${n}`);
        const file = join(dirOf(), `case-${String(n).padStart(2, '0')}.yaml`);
        writeFileSync(file, renderBrokenConfig(edit, EXAMPLE, (d) => { d['stateDir'] = stateDir; }), { mode: 0o600 });
        const results = await Promise.all(COMMANDS.map((args) => cli(args, file)));
        const problemLine = new RegExp(`^\\s*${escapeRe(file)}(:\\d+)?: ${escapeRe(path)}: (.*)$`, 'm');
        results.forEach((r, i) => {
          const cmd = `espgate ${(COMMANDS[i] ?? []).join(' ')}`;
          assert.ok(!r.timedOut, `${cmd} ends by itself`);
          assert.equal(r.status, CONFIG_ERROR_EXIT, `${cmd}: exit status ${CONFIG_ERROR_EXIT} (config error): ${describeResult(r)}`);
          assert.equal(r.stdout, '', `${cmd}: nothing on stdout (it did not start anything)`);
          assert.match(r.stderr, new RegExp(`^espgate: invalid config ${escapeRe(file)}:`), `${cmd}: stderr says which file is invalid`);
          const lines = r.stderr.split('\n').filter((l) => problemLine.test(l));
          assert.ok(lines.length > 0, `${cmd}: stderr names the field ${path}: ${r.stderr}`);
          assert.ok(lines.some((l) => message.test(l.replace(problemLine, '$2'))), `${cmd}: the problem at ${path} says ${String(message)}: ${lines.join(' | ')}`);
        });
        assert.deepEqual(await changesSince(), [], 'iptables, ip6tables, ipsets, routes and links as before');
        if (typeof edit !== 'string') assert.equal(existsSync(stateDir), false, `the case's stateDir ${stateDir} was never created`);
      } catch (e) {
        st.failed = true;
        throw e;
      }
    });
  }
});
