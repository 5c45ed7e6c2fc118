/**
 * nft-apply.ts: install, update, inspect and remove the gate with the nftables backend.
 *
 *   install   one `nft -f` transaction: our table is declared, deleted and created whole, so
 *             a re-install replaces exactly ours and every packet sees the old table or the new
 *             one. When the table already holds exactly the spec's chains and rules (reload with
 *             new peers), the transaction only flushes and refills the sets instead.
 *             Without nft queue in the kernel, then `iptables-restore --noflush` (and ip6tables)
 *             for the one NFQUEUE chain <tag>-NFQ in the raw table.
 *   remove    `delete table inet <ours>`; the <tag>-NFQ chains and their jumps; the raw tables
 *             and base chains iptables-nft created for them (when empty and absent before).
 *   status    `nft -j list tables`, then our table's listing compared with the plan.
 *
 * Nothing here names a table or chain that is not ours. State for the fallback's raw tables
 * lives in <stateDir>/nftables-<tag>.json. Not safe to run concurrently with itself on one host.
 */
import { rm } from 'node:fs/promises';
import { readStateFile, writeStateFile } from './state-file.js';
import type { TableRecord } from './state-file.js';
import { join } from 'node:path';
import { GatewayError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { ApplyOptions } from './apply.js';
import { DEFAULT_STATE_DIR, DEFAULT_TOOL_TIMEOUT_MS, NetfilterError, aptPackage } from './apply.js';
import type { IpFamily } from './cidr.js';
import type { NftListing, SavedRuleset } from './inspect.js';
import { emptyNftListing, parseNftJson, parseSave } from './inspect.js';
import type { RulesSpec } from './model.js';
import { validateTag } from './model.js';
import { parseNftTable, parseTableComment, tableProblems } from './nft-inspect.js';
import type { NftPlan, NftTexts } from './nft-render.js';
import {
  formatNftTexts, nfqChainName, nftTableName, planNft, renderNfqRestore, renderNftInstall, renderNftRemove, renderNftSetsUpdate,
} from './nft-render.js';
import { spawnRunner } from './runner.js';
import type { RunResult, Runner } from './runner.js';

/** NftApplyOptions: nativeQueue says whether the kernel has nft queue (nft-probe.ts). */
export interface NftApplyOptions extends ApplyOptions {
  readonly nativeQueue: boolean;
}

interface Ctx {
  readonly runner: Runner;
  readonly stateDir: string;
  readonly timeoutMs: number;
}

function context(opts: ApplyOptions): Ctx {
  return { runner: opts.runner ?? spawnRunner(), stateDir: opts.stateDir ?? DEFAULT_STATE_DIR, timeoutMs: opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS };
}

const FAMILIES: readonly IpFamily[] = ['v4', 'v6'];
const IPT: Readonly<Record<IpFamily, { save: string; restore: string; nft: 'ip' | 'ip6' }>> = {
  v4: { save: 'iptables-save', restore: 'iptables-restore', nft: 'ip' },
  v6: { save: 'ip6tables-save', restore: 'ip6tables-restore', nft: 'ip6' },
};

function missingTool(tool: string): NetfilterError {
  return new NetfilterError('ERR_MISSING_TOOL', `${tool} not found: install the Debian package "${aptPackage(tool)}" (apt-get install ${aptPackage(tool)})`, { tool });
}

function failure(code: ErrorCode, what: string, r: RunResult, ctx: Ctx, input: string | undefined): NetfilterError {
  if (r.timedOut) return new NetfilterError(code, `${what} did not finish within ${ctx.timeoutMs} ms and was killed`, { tool: what, stderr: r.stderr });
  // nft: "/dev/stdin:12:3-7: Error: ..."; iptables-restore: "line 4 failed".
  const m = /(?:stdin|-):(\d+):|line:? (\d+)/i.exec(r.stderr);
  const line = m === null ? undefined : Number(m[1] ?? m[2]);
  const lineText = line === undefined || input === undefined ? undefined : input.split('\n')[line - 1];
  const where = line === undefined ? '' : ` at input line ${line}${lineText === undefined ? '' : ` ("${lineText.trim()}")`}`;
  const first = r.stderr.split('\n').map((l) => l.trim()).find((l) => /Error/.test(l)) ?? r.stderr.trim().split('\n')[0] ?? '';
  return new NetfilterError(code, `${what} failed (exit ${String(r.code)})${where}: ${first}`, {
    tool: what, stderr: r.stderr, ...(line === undefined ? {} : { line }), ...(lineText === undefined ? {} : { lineText }),
  });
}

async function runChecked(ctx: Ctx, code: ErrorCode, file: string, args: readonly string[], stdin?: string): Promise<RunResult> {
  const r = await ctx.runner.run(file, args, stdin, ctx.timeoutMs);
  if (r.missing) throw missingTool(file);
  if (r.code !== 0 || r.timedOut) throw failure(code, [file, ...args].join(' '), r, ctx, stdin);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Reading.

/** OurTable is our table as listed now; problems compares it with a plan. */
interface OurTable {
  readonly present: boolean;
  readonly problems: (plan: NftPlan) => string[];
}

function parseOr<T>(code: ErrorCode, what: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new GatewayError(code, `${what} printed something that is not nft JSON`, { cause: e });
  }
}

async function listTables(ctx: Ctx, code: ErrorCode): Promise<NftListing> {
  const r = await runChecked(ctx, code, 'nft', ['-j', 'list', 'tables']);
  return parseOr(code, 'nft -j list tables', () => parseNftJson(r.stdout));
}

async function readOurTable(ctx: Ctx, tag: string, code: ErrorCode): Promise<OurTable> {
  const table = nftTableName(tag);
  const tables = await listTables(ctx, code);
  if (!tables.tables.has(`inet ${table}`)) return { present: false, problems: () => [`table inet ${table} missing`] };
  const j = await runChecked(ctx, code, 'nft', ['-j', 'list', 'table', 'inet', table]);
  const t = await runChecked(ctx, code, 'nft', ['-t', 'list', 'table', 'inet', table]);
  const state = parseOr(code, `nft -j list table inet ${table}`, () => parseNftTable(j.stdout));
  const comment = parseTableComment(t.stdout);
  return { present: true, problems: (plan) => tableProblems(plan, state, comment) };
}

/** readRaw returns iptables-save's raw table of a family; undefined when the tool is missing. */
async function readRaw(ctx: Ctx, family: IpFamily, code: ErrorCode): Promise<SavedRuleset | undefined> {
  const r = await ctx.runner.run(IPT[family].save, ['-t', 'raw'], undefined, ctx.timeoutMs);
  if (r.missing) return undefined;
  if (r.code !== 0 || r.timedOut) {
    // Without the raw table module (or the family) there is nothing of ours in it.
    if (/Table does not exist|can't initialize|Address family not supported/i.test(r.stderr)) return new Map();
    throw failure(code, `${IPT[family].save} -t raw`, r, ctx, undefined);
  }
  return parseSave(r.stdout);
}

function hasNfq(tag: string, raw: SavedRuleset | undefined): boolean {
  const t = raw?.get('raw');
  const chain = nfqChainName(tag);
  return (t?.chains.includes(chain) ?? false) || [...(t?.rules.values() ?? [])].some((rs) => rs.some((r) => r.endsWith(`-j ${chain}`)));
}

// ---------------------------------------------------------------------------------------------
// State file: the raw tables iptables-nft creates for the fallback chain.

interface StateFile {
  readonly version: 1;
  readonly tag: string;
  /** tables maps "ip raw" / "ip6 raw" to what they were before our first fallback install. */
  readonly tables: Record<string, TableRecord>;
}

function statePath(ctx: Ctx, tag: string): string {
  return join(ctx.stateDir, `nftables-${tag}.json`);
}

function readState(ctx: Ctx, tag: string): Promise<StateFile | undefined> {
  return readStateFile<StateFile>(statePath(ctx, tag), (v) => v.version === 1 && v.tag === tag && typeof v.tables === 'object', 'espgate nftables state file');
}

function writeState(ctx: Ctx, s: StateFile): Promise<void> {
  return writeStateFile(ctx.stateDir, statePath(ctx, s.tag), s);
}

/** recordRawTables adds, for the families' raw tables not yet recorded, whether they exist now and their base chains. */
async function recordRawTables(ctx: Ctx, tag: string, families: readonly IpFamily[]): Promise<void> {
  const prev = await readState(ctx, tag);
  const tables: Record<string, TableRecord> = { ...(prev?.tables ?? {}) };
  const keys = families.map((f) => `${IPT[f].nft} raw`).filter((k) => tables[k] === undefined);
  if (keys.length === 0 && prev !== undefined) return;
  const r = await runChecked(ctx, 'ERR_RULES_APPLY', 'nft', ['-j', 'list', 'chains']);
  const base = await listTables(ctx, 'ERR_RULES_APPLY');
  const listing = parseOr('ERR_RULES_APPLY', 'nft -j list chains', () => parseNftJson(r.stdout, base));
  for (const k of keys) {
    const baseChains = [...listing.chains].filter(([c, v]) => v.base && c.startsWith(`${k} `)).map(([c]) => c.slice(k.length + 1));
    tables[k] = { existed: listing.tables.has(k), baseChains };
  }
  await writeState(ctx, { version: 1, tag, tables });
}

/** removeCreatedRawTables deletes the raw tables and base chains iptables-nft created for our fallback chain, when empty. */
async function removeCreatedRawTables(ctx: Ctx, state: StateFile | undefined): Promise<void> {
  if (state === undefined) return;
  const script: string[] = [];
  for (const [tkey, rec] of Object.entries(state.tables)) {
    const [family, table] = tkey.split(' ');
    if (family === undefined || table === undefined) continue;
    const r = await ctx.runner.run('nft', ['-j', 'list', 'table', family, table], undefined, ctx.timeoutMs);
    if (r.missing || r.code !== 0) continue; // gone already (or the legacy backend holds it)
    let listing: NftListing;
    try {
      listing = parseNftJson(r.stdout, emptyNftListing());
    } catch {
      continue;
    }
    const deleted = new Set<string>();
    for (const [ckey, info] of listing.chains) {
      const chain = ckey.slice(tkey.length + 1);
      if (info.base && (listing.rules.get(ckey) ?? 0) === 0 && info.policy !== 'drop' && !rec.baseChains.includes(chain)) {
        script.push(`delete chain ${family} ${table} ${chain}`);
        deleted.add(ckey);
      }
    }
    const remaining = [...listing.chains.keys()].filter((k) => !deleted.has(k));
    if (!rec.existed && remaining.length === 0 && (listing.others.get(tkey) ?? 0) === 0) script.push(`delete table ${family} ${table}`);
  }
  if (script.length > 0) await runChecked(ctx, 'ERR_RULES_REMOVE', 'nft', ['-f', '-'], `${script.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/** NftInstallResult: the texts applied, whether the table was replaced or only its sets refilled, and remarks. */
export interface NftInstallResult {
  readonly texts: NftTexts;
  readonly mode: 'replace' | 'sets';
  readonly notes: readonly string[];
}

async function compose(ctx: Ctx, spec: RulesSpec, nativeQueue: boolean): Promise<{ plan: NftPlan; texts: NftTexts; mode: 'replace' | 'sets'; fresh: boolean }> {
  const plan = planNft(spec, { nativeQueue });
  const ours = await readOurTable(ctx, spec.tag, 'ERR_RULES_APPLY');
  const mode = ours.present && ours.problems(plan).length === 0 ? 'sets' : 'replace';
  const fam = async (f: IpFamily): Promise<string> => {
    const raw = await readRaw(ctx, f, 'ERR_RULES_APPLY');
    const wanted = plan.nfq?.families.includes(f) ?? false;
    if (raw === undefined) {
      if (wanted) throw missingTool(IPT[f].restore);
      return '';
    }
    return renderNfqRestore(spec.tag, f, plan.nfq, raw);
  };
  const iptables = await fam('v4');
  const ip6tables = await fam('v6');
  const texts: NftTexts = { nft: mode === 'sets' ? renderNftSetsUpdate(plan) : renderNftInstall(plan), iptables, ip6tables };
  return { plan, texts, mode, fresh: !ours.present };
}

/** nftDryRun returns the texts nftInstall would apply now, changing nothing. */
export async function nftDryRun(spec: RulesSpec, opts: NftApplyOptions): Promise<NftInstallResult & { formatted: string }> {
  const ctx = context(opts);
  const { texts, mode } = await compose(ctx, spec, opts.nativeQueue);
  return { texts, mode, notes: [], formatted: formatNftTexts(texts) };
}

/**
 * nftInstall brings our table (and, without nft queue, the <tag>-NFQ chains) to exactly what
 * `spec` describes. Idempotent. A failed fresh install is removed again.
 */
export async function nftInstall(spec: RulesSpec, opts: NftApplyOptions): Promise<NftInstallResult> {
  const ctx = context(opts);
  const { plan, texts, mode, fresh } = await compose(ctx, spec, opts.nativeQueue);
  const notes: string[] = [];
  try {
    await runChecked(ctx, 'ERR_RULES_APPLY', 'nft', ['-f', '-'], texts.nft);
    if (plan.nfq !== undefined) await recordRawTables(ctx, spec.tag, plan.nfq.families);
    for (const f of FAMILIES) {
      const text = f === 'v4' ? texts.iptables : texts.ip6tables;
      if (text !== '') await runChecked(ctx, 'ERR_RULES_APPLY', IPT[f].restore, ['--noflush'], text);
    }
    if (plan.nfq === undefined) await removeCreatedRawTables(ctx, await readState(ctx, spec.tag));
  } catch (e) {
    if (fresh) {
      try {
        await nftUninstall(spec.tag, opts);
      } catch {
        // Keep the original error: it says what went wrong first.
      }
    }
    throw e;
  }
  if (plan.nfq !== undefined) notes.push(`the kernel has no nft queue: inbound ESP is queued by the iptables chain ${plan.nfq.chain} (raw PREROUTING), everything else is in table inet ${plan.table}`);
  return { texts, mode, notes };
}

/** NftUninstallResult: whether anything of ours was found, the texts applied, remarks. */
export interface NftUninstallResult {
  readonly removed: boolean;
  readonly texts: NftTexts;
  readonly notes: readonly string[];
}

/** nftUninstall deletes our table, the <tag>-NFQ chains and jumps, and the raw tables created for them; not installed: a no-op. */
export async function nftUninstall(tag: string, opts: ApplyOptions = {}): Promise<NftUninstallResult> {
  validateTag(tag);
  const ctx = context(opts);
  const tables = await ctx.runner.run('nft', ['-j', 'list', 'tables'], undefined, ctx.timeoutMs);
  let present = false;
  if (!tables.missing) {
    if (tables.code !== 0 || tables.timedOut) throw failure('ERR_RULES_REMOVE', 'nft -j list tables', tables, ctx, undefined);
    present = parseOr('ERR_RULES_REMOVE', 'nft -j list tables', () => parseNftJson(tables.stdout)).tables.has(`inet ${nftTableName(tag)}`);
  }
  const nft = present ? renderNftRemove(tag) : '';
  if (nft !== '') await runChecked(ctx, 'ERR_RULES_REMOVE', 'nft', ['-f', '-'], nft);
  const ipt: Record<IpFamily, string> = { v4: '', v6: '' };
  let nfq = false;
  for (const f of FAMILIES) {
    const raw = await readRaw(ctx, f, 'ERR_RULES_REMOVE');
    if (!hasNfq(tag, raw)) continue;
    nfq = true;
    ipt[f] = renderNfqRestore(tag, f, undefined, raw ?? new Map());
    if (ipt[f] !== '') await runChecked(ctx, 'ERR_RULES_REMOVE', IPT[f].restore, ['--noflush'], ipt[f]);
  }
  if (!tables.missing) await removeCreatedRawTables(ctx, await readState(ctx, tag));
  await rm(statePath(ctx, tag), { force: true });
  return { removed: present || nfq, texts: { nft, iptables: ipt.v4, ip6tables: ipt.v6 }, notes: [] };
}

/** NftStatus reports what of ours is installed with the nftables backend. */
export interface NftStatus {
  /** installed: our table holds exactly the spec's chains, rules and sets (and the NFQ chains where needed). */
  readonly installed: boolean;
  /** present: our table or an NFQ chain of ours exists. */
  readonly present: boolean;
  readonly problems: readonly string[];
}

/** nftStatus compares what is installed with what nftInstall(spec) would install. */
export async function nftStatus(spec: RulesSpec, opts: NftApplyOptions): Promise<NftStatus> {
  const ctx = context(opts);
  const plan = planNft(spec, { nativeQueue: opts.nativeQueue });
  const r = await ctx.runner.run('nft', ['-j', 'list', 'tables'], undefined, ctx.timeoutMs);
  if (r.missing) return { installed: false, present: false, problems: ['nft is not installed'] };
  const ours = await readOurTable(ctx, spec.tag, 'ERR_RULES_APPLY');
  const problems = ours.problems(plan);
  let nfqPresent = false;
  for (const f of FAMILIES) {
    const raw = await readRaw(ctx, f, 'ERR_RULES_APPLY');
    const wanted = plan.nfq?.families.includes(f) ?? false;
    const present = hasNfq(spec.tag, raw);
    nfqPresent ||= present;
    if (!wanted && present) problems.push(`${IPT[f].save}: chain ${nfqChainName(spec.tag)} not expected (${spec.inbound === 'socket' ? 'inbound: socket has no queue rule' : 'the kernel has nft queue'})`);
    // Installed right when re-rendering against the current state changes nothing but the flush.
    if (wanted && raw !== undefined) {
      const t = raw.get('raw');
      const chain = nfqChainName(spec.tag);
      const jumps = (t?.rules.get('PREROUTING') ?? []).filter((x) => x === `-j ${chain}`).length;
      const rules = t?.rules.get(chain) ?? [];
      if (jumps !== 1 || rules.length !== 1 || rules[0] !== plan.nfq?.rule) problems.push(`${IPT[f].save}: raw ${chain} is not exactly the NFQUEUE rule jumped to once from PREROUTING`);
    } else if (wanted) {
      problems.push(`${IPT[f].save} is not installed: no NFQUEUE rule`);
    }
  }
  const present = ours.present || nfqPresent;
  return { installed: ours.present && problems.length === 0, present, problems };
}
