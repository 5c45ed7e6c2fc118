/**
 * apply.ts: install, update, inspect and remove espgate's netfilter state on the running host.
 *
 * All changes go through the restore tools, text on stdin, never one process per rule:
 *
 *   1. ipset restore                  create/fill sets (staging set + swap: never empty)
 *   2. iptables-restore --noflush     IPv4: one process; each *table ... COMMIT section is one
 *                                     kernel transaction (iptables-nft commits per section)
 *   3. ip6tables-restore --noflush    IPv6, likewise
 *   4. ipset restore                  destroy sets no rule references any more
 *
 * Every step is rendered from the state read just before (iptables-save, ipset list -n), so
 * installing twice equals installing once, and uninstall removes exactly what is ours. A failed
 * fresh install is rolled back; a failed update leaves earlier sections applied, and running
 * install again converges.
 *
 * Tables and base chains: with the nf_tables backend, iptables-restore creates a table (and
 * the base chain it jumps from) on first use, and removing our rules leaves them behind, empty.
 * So the first install records, in a small state file, which of the tables it touches existed
 * and which base chains they had; uninstall deletes (with `nft`) the base chains and tables
 * that were absent before, and only when they are empty again. With the legacy backend a table
 * once loaded cannot be removed; uninstall then says so in its notes.
 *
 * Callers: the daemon (install on start, status), the CLI (install, uninstall, dry run). The
 * functions are not safe to run concurrently with each other on one host.
 */
import { rm } from 'node:fs/promises';
import { readStateFile, writeStateFile } from './state-file.js';
import type { TableRecord } from './state-file.js';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { IpFamily } from './cidr.js';
import { countForeignRules, emptyNftListing, parseNftJson, parseSave, parseSetNames } from './inspect.js';
import type { NftListing, SavedRuleset } from './inspect.js';
import { CHAIN_SUFFIXES, chainName, ourChainNames, ourSetNames, validateTag } from './model.js';
import type { RulesSpec } from './model.js';
import { BUILTIN_OF, formatTexts, planRules, renderFamilyRestore, renderSetsInstall, renderSetsRemove, ruleLines } from './render.js';
import type { FamilyPlan, RenderedTexts, RulesPlan } from './render.js';
import { spawnRunner } from './runner.js';
import type { RunResult, Runner } from './runner.js';

/** DEFAULT_STATE_DIR is where the state file lives unless ApplyOptions.stateDir says otherwise. */
export const DEFAULT_STATE_DIR = '/run/espgate';
/** DEFAULT_TOOL_TIMEOUT_MS bounds each tool invocation. */
export const DEFAULT_TOOL_TIMEOUT_MS = 15_000;
/** SET_DESTROY_ATTEMPTS bounds the retries of `ipset destroy` while the kernel still holds a reference. */
export const SET_DESTROY_ATTEMPTS = 20;
/** SET_DESTROY_RETRY_MS is the pause between those retries. */
export const SET_DESTROY_RETRY_MS = 100;

/** Backend is the iptables flavour `iptables --version` reports. */
export type Backend = 'nf_tables' | 'legacy';

/** ApplyOptions are shared by every entry point. */
export interface ApplyOptions {
  readonly runner?: Runner;
  /** stateDir holds `netfilter-<tag>.json`; default DEFAULT_STATE_DIR. */
  readonly stateDir?: string;
  readonly timeoutMs?: number;
}

/** A NetfilterError is a GatewayError that carries the failing tool's output. */
export class NetfilterError extends GatewayError {
  readonly tool: string;
  readonly stderr: string;
  /** line is the 1-based line of the input the tool complained about, when it said. */
  readonly line: number | undefined;
  /** lineText is that line of our input. */
  readonly lineText: string | undefined;
  constructor(code: ErrorCode, message: string, detail: { tool: string; stderr?: string; line?: number; lineText?: string }) {
    super(code, message);
    this.tool = detail.tool;
    this.stderr = detail.stderr ?? '';
    this.line = detail.line;
    this.lineText = detail.lineText;
  }
}

interface FamilyTools {
  readonly bin: string;
  readonly save: string;
  readonly restore: string;
  readonly legacySave: string;
  readonly nftSave: string;
  /** nft is the nftables family iptables-nft uses for this address family. */
  readonly nft: 'ip' | 'ip6';
}

const TOOLS: Readonly<Record<IpFamily, FamilyTools>> = {
  v4: { bin: 'iptables', save: 'iptables-save', restore: 'iptables-restore', legacySave: 'iptables-legacy-save', nftSave: 'iptables-nft-save', nft: 'ip' },
  v6: { bin: 'ip6tables', save: 'ip6tables-save', restore: 'ip6tables-restore', legacySave: 'ip6tables-legacy-save', nftSave: 'ip6tables-nft-save', nft: 'ip6' },
};

const FAMILIES: readonly IpFamily[] = ['v4', 'v6'];

/** aptPackage names the Debian package that ships a tool. */
export function aptPackage(tool: string): string {
  if (tool === 'ipset') return 'ipset';
  if (tool === 'nft') return 'nftables';
  return 'iptables';
}

interface Ctx {
  readonly runner: Runner;
  readonly stateDir: string;
  readonly timeoutMs: number;
}

function context(opts: ApplyOptions): Ctx {
  return {
    runner: opts.runner ?? spawnRunner(),
    stateDir: opts.stateDir ?? DEFAULT_STATE_DIR,
    timeoutMs: opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS,
  };
}

function missingTool(tool: string): NetfilterError {
  return new NetfilterError('ERR_MISSING_TOOL', `${tool} not found: install the Debian package "${aptPackage(tool)}" (apt-get install ${aptPackage(tool)})`, { tool });
}

function firstLine(s: string): string {
  return s.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? '';
}

/** toolFailure turns a failed run into a NetfilterError naming the offending input line. */
function toolFailure(code: ErrorCode, what: string, r: RunResult, ctx: Ctx, input: string | undefined): NetfilterError {
  if (r.missing) return missingTool(what.split(' ')[0] ?? what);
  if (r.timedOut) return new NetfilterError(code, `${what} did not finish within ${ctx.timeoutMs} ms and was killed`, { tool: what, stderr: r.stderr });
  const m = /line:? (\d+)/i.exec(r.stderr);
  const line = m === null ? undefined : Number(m[1]);
  const lineText = line === undefined || input === undefined ? undefined : input.split('\n')[line - 1];
  const where = line === undefined ? '' : ` at input line ${line}${lineText === undefined ? '' : ` ("${lineText}")`}`;
  return new NetfilterError(code, `${what} failed (exit ${String(r.code)})${where}: ${firstLine(r.stderr)}`, {
    tool: what,
    stderr: r.stderr,
    ...(line === undefined ? {} : { line }),
    ...(lineText === undefined ? {} : { lineText }),
  });
}

async function run(ctx: Ctx, file: string, args: readonly string[], stdin?: string): Promise<RunResult> {
  return ctx.runner.run(file, args, stdin, ctx.timeoutMs);
}

/** runChecked runs a tool and throws NetfilterError unless it exits 0. */
async function runChecked(ctx: Ctx, code: ErrorCode, file: string, args: readonly string[], stdin?: string): Promise<RunResult> {
  const r = await run(ctx, file, args, stdin);
  if (r.missing) throw missingTool(file);
  if (r.code !== 0 || r.timedOut) throw toolFailure(code, [file, ...args].join(' '), r, ctx, stdin);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Reading the current state.

interface FamilyState {
  readonly available: boolean;
  readonly backend: Backend | undefined;
  readonly saved: SavedRuleset;
}

/** A Snapshot is everything read before deciding what to change. */
interface Snapshot {
  readonly families: Readonly<Record<IpFamily, FamilyState>>;
  readonly sets: ReadonlySet<string>;
  /** nft is the table/chain listing when the nf_tables backend is in use and nft is installed. */
  readonly nft: NftListing | undefined;
  readonly notes: string[];
}

/** parseBackend reads `iptables --version`: "(nf_tables)" or "(legacy)"; before 1.8 there was only legacy. */
function parseBackend(versionText: string): Backend {
  return /nf_tables/.test(versionText) ? 'nf_tables' : 'legacy';
}

async function checkBackendMismatch(ctx: Ctx, family: IpFamily, backend: Backend): Promise<void> {
  const t = TOOLS[family];
  const other = backend === 'nf_tables' ? t.legacySave : t.nftSave;
  const r = await run(ctx, other, []);
  if (r.missing || r.code !== 0) return; // the other backend is not installed, or cannot be read
  const foreign = countForeignRules(parseSave(r.stdout));
  if (foreign.length === 0) return;
  const otherName = backend === 'nf_tables' ? `${t.bin}-legacy` : `${t.bin}-nft`;
  throw new NetfilterError('ERR_RULES_APPLY',
    `${t.bin} uses the ${backend} backend, but ${otherName} rules are present (${foreign.join('; ')}). ` +
    `Both rule sets would run side by side and ${t.save} shows only one of them. Move those rules to one backend ` +
    `(e.g. ${otherName}-save | ${t.bin}-${backend === 'nf_tables' ? 'nft' : 'legacy'}-restore, then flush them) ` +
    `or select the backend that holds them (update-alternatives --config ${t.bin}).`,
    { tool: other });
}

/**
 * takeSnapshot reads the current state. `need` lists families whose tools must exist (install);
 * for the others a missing tool means "nothing of ours can be there".
 */
async function takeSnapshot(ctx: Ctx, need: ReadonlySet<IpFamily>, strict: boolean): Promise<Snapshot> {
  const notes: string[] = [];
  const families = {} as Record<IpFamily, FamilyState>;
  for (const family of FAMILIES) {
    const t = TOOLS[family];
    const v = await run(ctx, t.bin, ['--version']);
    if (v.missing || v.code !== 0) {
      if (need.has(family)) {
        if (v.missing) throw missingTool(t.bin);
        throw toolFailure('ERR_RULES_APPLY', `${t.bin} --version`, v, ctx, undefined);
      }
      families[family] = { available: false, backend: undefined, saved: new Map() };
      continue;
    }
    const backend = parseBackend(v.stdout + v.stderr);
    if (strict) await checkBackendMismatch(ctx, family, backend);
    const s = await runChecked(ctx, 'ERR_RULES_APPLY', t.save, []);
    families[family] = { available: true, backend, saved: parseSave(s.stdout) };
  }
  let sets: ReadonlySet<string> = new Set();
  const l = await run(ctx, 'ipset', ['list', '-n']);
  if (l.missing) {
    if (strict) throw missingTool('ipset');
  } else if (l.code !== 0) {
    throw toolFailure('ERR_RULES_APPLY', 'ipset list -n', l, ctx, undefined);
  } else {
    sets = parseSetNames(l.stdout);
  }
  let nft: NftListing | undefined;
  if (FAMILIES.some((f) => families[f].backend === 'nf_tables')) {
    nft = await listNft(ctx, [['list', 'tables'], ['list', 'chains']]);
    if (nft === undefined) notes.push('nft is not installed (Debian package "nftables"): tables that iptables creates for us cannot be removed again on uninstall');
  }
  return { families, sets, nft, notes };
}

/** listNft merges several `nft -j` listings; undefined when nft is missing or unusable. */
async function listNft(ctx: Ctx, commands: readonly (readonly string[])[]): Promise<NftListing | undefined> {
  const listing = emptyNftListing();
  for (const c of commands) {
    const r = await run(ctx, 'nft', ['-j', ...c]);
    if (r.missing || r.code !== 0) return undefined;
    try {
      parseNftJson(r.stdout, listing);
    } catch {
      return undefined;
    }
  }
  return listing;
}

function ourPresence(tag: string, snap: Snapshot): { chains: string[]; sets: string[] } {
  const names = ourChainNames(tag);
  const chains: string[] = [];
  for (const family of FAMILIES) {
    for (const [table, t] of snap.families[family].saved) {
      for (const c of t.chains) if (names.includes(c)) chains.push(`${family} ${table} ${c}`);
    }
  }
  const sets = ourSetNames(tag).filter((n) => snap.sets.has(n));
  return { chains, sets };
}

// ---------------------------------------------------------------------------------------------
// State file.

/** StateFile is the JSON kept in `<stateDir>/netfilter-<tag>.json`. */
interface StateFile {
  readonly version: 1;
  readonly tag: string;
  /** tables maps "ip raw" style keys to their pre-install record (nf_tables backend only). */
  readonly tables: Record<string, TableRecord>;
  /** expected lists "v4 raw ESPGATE-PRE" style chain keys and set names of the last install. */
  readonly expected: { readonly chains: readonly string[]; readonly sets: readonly string[] };
}

function statePath(ctx: Ctx, tag: string): string {
  return join(ctx.stateDir, `netfilter-${tag}.json`);
}

function readState(ctx: Ctx, tag: string): Promise<StateFile | undefined> {
  return readStateFile<StateFile>(statePath(ctx, tag), (v) => v.version === 1 && v.tag === tag && typeof v.tables === 'object' && v.expected !== undefined, 'espgate netfilter state file');
}

function writeState(ctx: Ctx, s: StateFile): Promise<void> {
  return writeStateFile(ctx.stateDir, statePath(ctx, s.tag), s);
}

function expectedOf(plan: RulesPlan): StateFile['expected'] {
  const chains: string[] = [];
  for (const f of plan.families) for (const c of f.chains) chains.push(`${f.family} ${c.table} ${c.chain}`);
  return { chains, sets: plan.sets.map((s) => s.name) };
}

/** recordTables adds, for tables the plan touches and the state has not seen, what exists now. */
function recordTables(plan: RulesPlan, snap: Snapshot, prev: Record<string, TableRecord>): Record<string, TableRecord> {
  const out: Record<string, TableRecord> = { ...prev };
  const nft = snap.nft;
  if (nft === undefined) return out;
  for (const f of plan.families) {
    if (snap.families[f.family].backend !== 'nf_tables') continue;
    for (const c of f.chains) {
      const tkey = `${TOOLS[f.family].nft} ${c.table}`;
      if (out[tkey] !== undefined) continue;
      const baseChains = [...nft.chains].filter(([k, v]) => v.base && k.startsWith(`${tkey} `)).map(([k]) => k.slice(tkey.length + 1));
      out[tkey] = { existed: nft.tables.has(tkey), baseChains };
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/** InstallResult: the texts that were applied and remarks for the operator. */
export interface InstallResult {
  readonly texts: RenderedTexts;
  readonly notes: readonly string[];
}

function composeInstall(plan: RulesPlan, snap: Snapshot): RenderedTexts {
  const fam = (family: IpFamily): string => {
    if (!snap.families[family].available) return '';
    const want: FamilyPlan | undefined = plan.families.find((p) => p.family === family);
    return renderFamilyRestore(plan.tag, family, want, snap.families[family].saved);
  };
  return {
    ipset: renderSetsInstall(plan.tag, plan.sets, snap.sets),
    iptables: fam('v4'),
    ip6tables: fam('v6'),
    ipsetCleanup: renderSetsRemove(plan.tag, plan.sets, snap.sets),
  };
}

function neededFamilies(spec: RulesSpec): Set<IpFamily> {
  return new Set(spec.families.map((f) => f.family));
}

/**
 * dryRunInstall returns the texts install() would apply now, changing nothing (it reads the
 * current state, so the texts depend on what is already installed). formatted is for printing.
 */
export async function dryRunInstall(spec: RulesSpec, opts: ApplyOptions = {}): Promise<InstallResult & { formatted: string }> {
  const ctx = context(opts);
  const snap = await takeSnapshot(ctx, neededFamilies(spec), true);
  const texts = composeInstall(planRules(spec), snap);
  return { texts, notes: snap.notes, formatted: formatTexts(texts) };
}

async function applyTexts(ctx: Ctx, texts: RenderedTexts): Promise<void> {
  if (texts.ipset !== '') await runChecked(ctx, 'ERR_RULES_APPLY', 'ipset', ['restore'], texts.ipset);
  if (texts.iptables !== '') await runChecked(ctx, 'ERR_RULES_APPLY', TOOLS.v4.restore, ['--noflush'], texts.iptables);
  if (texts.ip6tables !== '') await runChecked(ctx, 'ERR_RULES_APPLY', TOOLS.v6.restore, ['--noflush'], texts.ip6tables);
  if (texts.ipsetCleanup !== '') await destroySets(ctx, texts.ipsetCleanup, 'ERR_RULES_APPLY');
}

/** destroySets runs an `ipset restore` of destroy lines, retrying while a set is still referenced. */
async function destroySets(ctx: Ctx, text: string, code: ErrorCode): Promise<void> {
  let pending = text;
  for (let attempt = 1; ; attempt++) {
    const r = await run(ctx, 'ipset', ['restore'], pending);
    if (r.missing) throw missingTool('ipset');
    if (r.code === 0 && !r.timedOut) return;
    const inUse = /in use/i.test(r.stderr);
    if (!inUse || attempt >= SET_DESTROY_ATTEMPTS) throw toolFailure(code, 'ipset restore', r, ctx, pending);
    // The kernel releases a set reference after the rule that held it is freed, asynchronously.
    await sleep(SET_DESTROY_RETRY_MS);
    const l = await runChecked(ctx, code, 'ipset', ['list', '-n']);
    const present = parseSetNames(l.stdout);
    const lines = pending.split('\n').filter((x) => !x.startsWith('destroy ') || present.has(x.slice('destroy '.length)));
    pending = lines.join('\n');
    if (!pending.split('\n').some((x) => x.startsWith('destroy '))) return;
  }
}

/**
 * install brings the host to exactly the state `spec` describes (creating, updating, or
 * removing our chains, jumps and sets). Idempotent. When nothing of ours was present before
 * and a step fails, everything is rolled back; otherwise the failing step's table file changed
 * nothing (each restore is atomic) and the error says which line was refused.
 */
export async function install(spec: RulesSpec, opts: ApplyOptions = {}): Promise<InstallResult> {
  const ctx = context(opts);
  const plan = planRules(spec);
  const snap = await takeSnapshot(ctx, neededFamilies(spec), true);
  const texts = composeInstall(plan, snap);
  const before = ourPresence(spec.tag, snap);
  const fresh = before.chains.length === 0 && before.sets.length === 0;
  const prev = await readState(ctx, spec.tag);
  // Keep what earlier installs recorded: only the state before the very first one counts.
  const tables = recordTables(plan, snap, prev?.tables ?? {});
  await writeState(ctx, {
    version: 1,
    tag: spec.tag,
    tables,
    expected: expectedOf(plan),
  });
  try {
    await applyTexts(ctx, texts);
    // Base chains and tables an earlier, wider spec created and this one no longer uses are
    // empty now: remove them (those in use hold our jumps and chains, so they stay).
    await removeCreatedTables(ctx, tables, Object.keys(tables));
  } catch (e) {
    if (fresh) {
      try {
        await uninstall(spec.tag, opts);
      } catch {
        // Keep the original error: it says what went wrong first.
      }
    }
    throw e;
  }
  return { texts, notes: snap.notes };
}

/** UninstallResult: whether anything of ours was found, and remarks for the operator. */
export interface UninstallResult {
  readonly removed: boolean;
  readonly texts: RenderedTexts;
  readonly notes: readonly string[];
}

/**
 * uninstall removes every chain, jump and set named with `tag`, then the tables and base
 * chains our install created (when empty), then the state file. Not installed: a no-op.
 */
export async function uninstall(tag: string, opts: ApplyOptions = {}): Promise<UninstallResult> {
  validateTag(tag);
  const ctx = context(opts);
  const snap = await takeSnapshot(ctx, new Set(), false);
  const present = ourPresence(tag, snap);
  const texts: RenderedTexts = {
    ipset: '',
    iptables: snap.families.v4.available ? renderFamilyRestore(tag, 'v4', undefined, snap.families.v4.saved) : '',
    ip6tables: snap.families.v6.available ? renderFamilyRestore(tag, 'v6', undefined, snap.families.v6.saved) : '',
    ipsetCleanup: renderSetsRemove(tag, [], snap.sets),
  };
  if (texts.iptables !== '') await runChecked(ctx, 'ERR_RULES_REMOVE', TOOLS.v4.restore, ['--noflush'], texts.iptables);
  if (texts.ip6tables !== '') await runChecked(ctx, 'ERR_RULES_REMOVE', TOOLS.v6.restore, ['--noflush'], texts.ip6tables);
  if (texts.ipsetCleanup !== '') await destroySets(ctx, texts.ipsetCleanup, 'ERR_RULES_REMOVE');
  const notes = [...snap.notes];
  const state = await readState(ctx, tag);
  if (state !== undefined) notes.push(...(await removeCreatedTables(ctx, state.tables, Object.keys(state.tables))));
  if (FAMILIES.some((f) => snap.families[f].backend === 'legacy')) {
    notes.push('legacy iptables backend: tables loaded for our rules stay registered (empty) until reboot');
  }
  await rm(statePath(ctx, tag), { force: true });
  return { removed: present.chains.length > 0 || present.sets.length > 0, texts, notes };
}

/**
 * removeCreatedTables deletes, with nft, the base chains our installs created and the tables
 * they created, among `keys`, when they are empty (no rules, no policy drop, nothing else).
 */
async function removeCreatedTables(ctx: Ctx, tables: Readonly<Record<string, TableRecord>>, keys: readonly string[]): Promise<string[]> {
  if (keys.length === 0) return [];
  const script: string[] = [];
  for (const tkey of keys) {
    const rec = tables[tkey];
    if (rec === undefined) continue;
    const [family, table] = tkey.split(' ');
    if (family === undefined || table === undefined) continue;
    const r = await run(ctx, 'nft', ['-j', 'list', 'table', family, table]);
    if (r.missing) return [`nft is not installed (Debian package "nftables"): left ${keys.join(', ')} in place`];
    if (r.code !== 0) continue; // the table is gone already
    let listing: NftListing;
    try {
      listing = parseNftJson(r.stdout);
    } catch {
      continue;
    }
    const deleted = new Set<string>();
    for (const [ckey, info] of listing.chains) {
      const chain = ckey.slice(tkey.length + 1);
      const empty = (listing.rules.get(ckey) ?? 0) === 0 && info.policy !== 'drop';
      if (info.base && empty && !rec.baseChains.includes(chain)) {
        script.push(`delete chain ${family} ${table} ${chain}`);
        deleted.add(ckey);
      }
    }
    const remaining = [...listing.chains.keys()].filter((k) => !deleted.has(k));
    if (!rec.existed && remaining.length === 0 && (listing.others.get(tkey) ?? 0) === 0) {
      script.push(`delete table ${family} ${table}`);
    }
  }
  if (script.length > 0) await runChecked(ctx, 'ERR_RULES_REMOVE', 'nft', ['-f', '-'], `${script.join('\n')}\n`);
  return [];
}

/** RulesStatus reports what of ours is installed. */
export interface RulesStatus {
  /** installed: everything expected is present (chains, jumps, sets; rule text too when a spec was given). */
  readonly installed: boolean;
  /** present: anything of ours is present. */
  readonly present: boolean;
  /** chains: "v4 nat ESPGATE-OUT" style keys of our chains found, with whether the jump to each exists. */
  readonly chains: readonly { readonly key: string; readonly jumped: boolean }[];
  readonly sets: readonly string[];
  /** problems: why installed is false although something is present. */
  readonly problems: readonly string[];
}

/**
 * status reports whether our rules are installed. With `spec`, it also checks that every
 * chain holds exactly the rendered rules (drift detection); without, it compares against the
 * state file of the last install, or failing that, checks that what is present is consistent.
 */
export async function status(tag: string, opts: ApplyOptions & { spec?: RulesSpec } = {}): Promise<RulesStatus> {
  validateTag(tag);
  const ctx = context(opts);
  const snap = await takeSnapshot(ctx, new Set(), false);
  const names = ourChainNames(tag);
  const chains: { key: string; jumped: boolean }[] = [];
  const rulesOf = new Map<string, readonly string[]>();
  for (const family of FAMILIES) {
    for (const [table, t] of snap.families[family].saved) {
      for (const c of t.chains) {
        if (!names.includes(c)) continue;
        const suffix = CHAIN_SUFFIXES.find((x) => chainName(tag, x) === c);
        const b = suffix === undefined ? '' : BUILTIN_OF[suffix];
        const jumps = (t.rules.get(b) ?? []).filter((r) => r === `-j ${c}`).length;
        const key = `${family} ${table} ${c}`;
        chains.push({ key, jumped: jumps === 1 });
        rulesOf.set(key, t.rules.get(c) ?? []);
      }
    }
  }
  const sets = ourSetNames(tag).filter((n) => snap.sets.has(n));
  const problems: string[] = [];
  for (const c of chains) if (!c.jumped) problems.push(`${c.key}: not jumped to exactly once from its builtin chain`);
  let expected: StateFile['expected'] | undefined;
  let plan: RulesPlan | undefined;
  if (opts.spec !== undefined) {
    plan = planRules(opts.spec);
    expected = expectedOf(plan);
  } else {
    expected = (await readState(ctx, tag))?.expected;
  }
  if (expected !== undefined) {
    for (const k of expected.chains) if (!chains.some((c) => c.key === k)) problems.push(`${k}: missing`);
    for (const c of chains) if (!expected.chains.includes(c.key)) problems.push(`${c.key}: not expected`);
    for (const s of expected.sets) if (!sets.includes(s)) problems.push(`set ${s}: missing`);
  } else {
    for (const c of chains) {
      const fam = c.key.startsWith('v4') ? '4' : '6';
      for (const kind of ['PEER', 'ENDP']) {
        const s = `${tag}-${kind}${fam}`;
        if (!sets.includes(s) && !problems.includes(`set ${s}: missing`)) problems.push(`set ${s}: missing`);
      }
    }
  }
  if (plan !== undefined) {
    for (const f of plan.families) {
      for (const c of f.chains) {
        const key = `${f.family} ${c.table} ${c.chain}`;
        const have = rulesOf.get(key);
        if (have !== undefined && have.join('\n') !== ruleLines(c).join('\n')) problems.push(`${key}: rules differ from the spec`);
      }
    }
  }
  const present = chains.length > 0 || sets.length > 0;
  return { installed: present && problems.length === 0, present, chains, sets, problems };
}
