/**
 * inspect.ts: pure parsers for what the netfilter tools print, so that apply.ts can decide
 * what to change and tests can compare states.
 *
 *   iptables-save / ip6tables-save  -> SavedRuleset (tables, chains, rules as save prints them)
 *   ipset list -n                   -> set names
 *   nft -j list ...                 -> NftListing (tables, chains, rule counts)
 */

/** A SavedTable is one `*table` section of iptables-save output. */
export interface SavedTable {
  /** chains lists every chain declared in the section (builtins and user chains). */
  readonly chains: readonly string[];
  /** policies maps builtin chains to their policy (user chains print "-"). */
  readonly policies: ReadonlyMap<string, string>;
  /** rules maps a chain to its rules, each the text after "-A CHAIN ". */
  readonly rules: ReadonlyMap<string, readonly string[]>;
}

/** A SavedRuleset maps table names ("raw", "nat", ...) to their parsed sections. */
export type SavedRuleset = ReadonlyMap<string, SavedTable>;

/** BUILTIN_CHAINS lists the builtin chain names of all iptables tables. */
export const BUILTIN_CHAINS: readonly string[] = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'];

/** parseSave parses iptables-save output; comment lines and counters are ignored. */
export function parseSave(text: string): SavedRuleset {
  const out = new Map<string, SavedTable>();
  let chains: string[] = [];
  let policies = new Map<string, string>();
  let rules = new Map<string, string[]>();
  let table: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      table = line.slice(1);
      chains = [];
      policies = new Map();
      rules = new Map();
      continue;
    }
    if (table === undefined) continue;
    if (line === 'COMMIT') {
      out.set(table, { chains, policies, rules });
      table = undefined;
      continue;
    }
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(' ');
      if (name === undefined) continue;
      chains.push(name);
      if (policy !== undefined) policies.set(name, policy);
      continue;
    }
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (m !== null) {
      const chain = m[1] ?? '';
      const list = rules.get(chain) ?? [];
      list.push(m[2] ?? '');
      rules.set(chain, list);
    }
  }
  return out;
}

/** normalizeSave drops comment lines and zeroes packet/byte counters, for before/after comparisons. */
export function normalizeSave(text: string): string {
  return text
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]'))
    .join('\n');
}

/** countForeignRules summarises a ruleset that should be empty (the other iptables backend's). */
export function countForeignRules(saved: SavedRuleset): string[] {
  const out: string[] = [];
  for (const [table, t] of saved) {
    let n = 0;
    for (const list of t.rules.values()) n += list.length;
    const userChains = t.chains.filter((c) => !BUILTIN_CHAINS.includes(c));
    const closed = [...t.policies].filter(([c, p]) => BUILTIN_CHAINS.includes(c) && p !== 'ACCEPT');
    if (n > 0 || userChains.length > 0 || closed.length > 0) {
      const parts = [`${n} rule(s)`];
      if (userChains.length > 0) parts.push(`chains ${userChains.join(', ')}`);
      if (closed.length > 0) parts.push(`policies ${closed.map(([c, p]) => `${c} ${p}`).join(', ')}`);
      out.push(`${table}: ${parts.join('; ')}`);
    }
  }
  return out;
}

/** parseSetNames parses `ipset list -n` (one name per line). */
export function parseSetNames(text: string): Set<string> {
  return new Set(text.split('\n').map((l) => l.trim()).filter((l) => l !== ''));
}

/** An NftListing is what we need to know from `nft -j list ...` output. */
export interface NftListing {
  /** tables holds "family table" keys, e.g. "ip raw". */
  readonly tables: Set<string>;
  /** chains maps "family table chain" keys to whether the chain is a base chain (has a hook) and its policy. */
  readonly chains: Map<string, { readonly base: boolean; readonly policy: string | undefined }>;
  /** rules counts rules per "family table chain" key (only when the listing included rules). */
  readonly rules: Map<string, number>;
  /** others counts sets, maps, flowtables and stateful objects per "family table" key. */
  readonly others: Map<string, number>;
}

/** emptyNftListing returns a listing with nothing in it. */
export function emptyNftListing(): NftListing {
  return { tables: new Set(), chains: new Map(), rules: new Map(), others: new Map() };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/**
 * parseNftJson merges `nft -j list tables|chains|table F T` output into `into`.
 * It throws SyntaxError on malformed JSON; unknown object kinds count as "others".
 */
export function parseNftJson(text: string, into: NftListing = emptyNftListing()): NftListing {
  const doc = JSON.parse(text) as unknown;
  const items = (doc as { nftables?: unknown }).nftables;
  if (!Array.isArray(items)) throw new SyntaxError('nft -j output has no "nftables" array');
  for (const item of items as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const entry: [string, unknown] | undefined = Object.entries(item as Record<string, unknown>)[0];
    if (entry === undefined) continue;
    const [kind, body] = entry;
    if (typeof body !== 'object' || body === null || kind === 'metainfo') continue;
    const o = body as Record<string, unknown>;
    const family = str(o['family']);
    const tableName = kind === 'table' ? str(o['name']) : str(o['table']);
    const tkey = `${family} ${tableName}`;
    if (kind === 'table') {
      into.tables.add(tkey);
    } else if (kind === 'chain') {
      into.tables.add(tkey);
      const policy = typeof o['policy'] === 'string' ? o['policy'] : undefined;
      into.chains.set(`${tkey} ${str(o['name'])}`, { base: typeof o['hook'] === 'string', policy });
    } else if (kind === 'rule') {
      const ckey = `${tkey} ${str(o['chain'])}`;
      into.rules.set(ckey, (into.rules.get(ckey) ?? 0) + 1);
    } else {
      into.others.set(tkey, (into.others.get(tkey) ?? 0) + 1);
    }
  }
  return into;
}
