/**
 * nft-inspect.ts: pure parsers for what nft prints about our table, and the comparison of
 * that with an NftPlan, so that nft-apply.ts can tell "installed and right" from "needs a
 * replace", and tests can check both without root.
 *
 *   nft -j list table inet <t>   -> NftTableState (chains with hook/prio/type/policy and rule
 *                                   counts; sets with type, flags and element counts)
 *   nft -t list table inet <t>   -> the table's comment (JSON output of nft 1.0 omits it)
 */
import type { NftPlan } from './nft-render.js';
import { nftComment } from './nft-render.js';

/** NftChainState is one chain of a listed table. */
export interface NftChainState {
  readonly type: string | undefined;
  readonly hook: string | undefined;
  readonly prio: number | undefined;
  readonly policy: string | undefined;
  readonly rules: number;
}

/** NftSetState is one set of a listed table. */
export interface NftSetState {
  readonly type: string;
  readonly flags: readonly string[];
  readonly elements: number;
}

/** NftTableState is what `nft -j list table` says about one table. */
export interface NftTableState {
  readonly chains: ReadonlyMap<string, NftChainState>;
  readonly sets: ReadonlyMap<string, NftSetState>;
  /** others counts maps, flowtables and stateful objects. */
  readonly others: number;
}

function rec(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** parseNftTable reads `nft -j list table inet <name>`; throws SyntaxError on malformed output. */
export function parseNftTable(text: string): NftTableState {
  const doc = rec(JSON.parse(text) as unknown);
  const items = doc?.['nftables'];
  if (!Array.isArray(items)) throw new SyntaxError('nft -j output has no "nftables" array');
  const chains = new Map<string, { type: string | undefined; hook: string | undefined; prio: number | undefined; policy: string | undefined; rules: number }>();
  const sets = new Map<string, NftSetState>();
  let others = 0;
  for (const item of items as unknown[]) {
    const entry = Object.entries(rec(item) ?? {})[0];
    if (entry === undefined) continue;
    const [kind, raw] = entry;
    const o = rec(raw);
    if (o === undefined || kind === 'metainfo' || kind === 'table') continue;
    const s = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
    if (kind === 'chain') {
      const name = s('name') ?? '';
      const prev = chains.get(name);
      chains.set(name, { type: s('type'), hook: s('hook'), prio: typeof o['prio'] === 'number' ? o['prio'] : undefined, policy: s('policy'), rules: prev?.rules ?? 0 });
    } else if (kind === 'rule') {
      const name = s('chain') ?? '';
      const c = chains.get(name) ?? { type: undefined, hook: undefined, prio: undefined, policy: undefined, rules: 0 };
      chains.set(name, { ...c, rules: c.rules + 1 });
    } else if (kind === 'set') {
      const flags = Array.isArray(o['flags']) ? (o['flags'] as unknown[]).filter((f): f is string => typeof f === 'string') : typeof o['flags'] === 'string' ? [o['flags']] : [];
      sets.set(s('name') ?? '', { type: s('type') ?? '', flags, elements: Array.isArray(o['elem']) ? o['elem'].length : 0 });
    } else {
      others++;
    }
  }
  return { chains, sets, others };
}

/** parseTableComment returns the comment of the table in `nft -t list table` output (undefined: none). */
export function parseTableComment(text: string): string | undefined {
  // The table's own comment comes before its first set or chain.
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (/^(set|chain|map|flowtable|counter|quota|limit|ct|secmark|synproxy)\b/.test(l)) return undefined;
    const m = /^comment "(.*)"$/.exec(l);
    if (m !== null) return m[1];
  }
  return undefined;
}

/**
 * tableProblems compares a listed table with a plan: missing, extra or different chains and
 * sets, rule counts, and the comment's digest (which covers every rule's text). [] means the
 * table holds exactly the plan's rules; set elements are not compared.
 */
export function tableProblems(plan: NftPlan, state: NftTableState, comment: string | undefined): string[] {
  const out: string[] = [];
  const where = `table inet ${plan.table}`;
  for (const c of plan.chains) {
    const have = state.chains.get(c.name);
    if (have === undefined) { out.push(`${where}: chain ${c.name} missing`); continue; }
    if (have.type !== c.type || have.hook !== c.hook || have.prio !== c.priority) {
      out.push(`${where}: chain ${c.name} is ${have.type ?? '?'} hook ${have.hook ?? '?'} priority ${String(have.prio)}, want ${c.type} hook ${c.hook} priority ${c.priority}`);
    }
    if (have.policy !== 'accept') out.push(`${where}: chain ${c.name} has policy ${have.policy ?? '?'}, want accept`);
    if (have.rules !== c.rules.length) out.push(`${where}: chain ${c.name} has ${have.rules} rule(s), want ${c.rules.length}`);
  }
  for (const name of state.chains.keys()) if (!plan.chains.some((c) => c.name === name)) out.push(`${where}: chain ${name} not expected`);
  for (const s of plan.sets) {
    const have = state.sets.get(s.name);
    if (have === undefined) { out.push(`${where}: set ${s.name} missing`); continue; }
    const interval = have.flags.includes('interval');
    if (have.type !== s.type || interval !== s.interval) out.push(`${where}: set ${s.name} is ${have.type}${interval ? ' interval' : ''}, want ${s.type}${s.interval ? ' interval' : ''}`);
  }
  for (const name of state.sets.keys()) if (!plan.sets.some((s) => s.name === name)) out.push(`${where}: set ${name} not expected`);
  if (state.others > 0) out.push(`${where}: ${state.others} other object(s) (maps, counters, ...) not expected`);
  const want = nftComment(plan);
  if (comment !== want) out.push(`${where}: comment ${comment === undefined ? '(none)' : `"${comment}"`}, want "${want}": rules differ from the spec`);
  return out;
}
