/**
 * nft-render.ts: RulesSpec -> the input of `nft -f` for the nftables backend (one table of
 * ours, `table inet <tag in lower case>`, replaced in one transaction), and, on kernels without
 * nft's `queue` statement, the small `iptables-restore --noflush` text that installs the one
 * NFQUEUE rule through xtables compat. Pure: nft-apply.ts reads the current state and runs it.
 *
 * Every rule render.ts renders for iptables has its counterpart here, at the same hook and
 * priority, in one base chain per (hook, priority) of our own table:
 *
 *   chain               hook         prio        what (iptables twin)
 *   raw_prerouting      prerouting   raw (-300)  inbound ESP from a peer endpoint -> queue   (raw <tag>-PRE)
 *                                    raw - 1     without nft queue: mark it for <tag>-NFQ instead
 *   raw_output          output       raw (-300)  our ESP to a peer endpoint: notrack         (raw <tag>-OUT, notrack)
 *   mangle_postrouting  postrouting  mangle      guard: fake dst not via the TUN; MSS clamp  (mangle <tag>-POST)
 *   nat_prerouting      prerouting   -100        forwarded to a peer: dnat ip prefix         (nat <tag>-PRE, gateway)
 *   nat_output          output       -100        local to a peer: dnat ip prefix             (nat <tag>-OUT)
 *   filter_input        input        filter (0)  guard                                       (filter <tag>-IN)
 *   filter_forward      forward      filter (0)  guard                                       (filter <tag>-FWD, gateway)
 *   filter_output       output       filter (0)  accept our ESP; guard                      (filter <tag>-OUT)
 *   nat_input           input        100         peer-opened: snat ip prefix                 (nat <tag>-IN)
 *   nat_postrouting     postrouting  100         peer-opened, forwarded: snat ip prefix      (nat <tag>-POST, gateway)
 *
 * Peers live in named sets (peer4/peer6: `flags interval` for prefixes; endp4/endp6: the outer
 * ESP addresses), so, as with ipsets, the number of rules depends on the prefix pairs only.
 * NETMAP is `dnat ip prefix to <fake>` / `snat ip prefix to <real>` (host bits kept).
 *
 * One difference from iptables: an `accept` in our table ends only our chain; a drop in another
 * table at the same hook still drops (see docs/nftables.md on firewalld and ufw).
 */
import { createHash } from 'node:crypto';
import type { IpFamily } from './cidr.js';
import type { SavedRuleset } from './inspect.js';
import { BUILTIN_CHAINS } from './inspect.js';
import type { FamilySpec, RulesSpec } from './model.js';
import { NFQUEUE_MAX_ESP_BYTES } from './render.js';

/** NFQ_MARK is the packet mark bit our raw chain sets on inbound ESP from a peer endpoint when the kernel lacks nft queue; <tag>-NFQ queues packets that carry it. */
export const NFQ_MARK = 0x20000000;
/** NFQ_CHAIN_SUFFIX names the iptables raw chain of the queue fallback (<tag>-NFQ, at most 27 characters). */
export const NFQ_CHAIN_SUFFIX = '-NFQ';
/** IKE_PORTS are IKE (RFC 7296 §2) and IKE/ESP NAT traversal (RFC 3948): exempt between us and peer endpoints when spec.ike. */
export const IKE_PORTS: readonly number[] = [500, 4500];
/** ICMPV6_ND_NAMES: router solicitation/advertisement, neighbour solicitation/advertisement, redirect (133-137). */
const ICMPV6_ND_NAMES = 'nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect';

/** NftHook is a netfilter hook of an inet base chain. */
export type NftHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

/** An NftChainPlan is one base chain of our table. */
export interface NftChainPlan {
  readonly name: string;
  readonly type: 'filter' | 'nat';
  readonly hook: NftHook;
  /** priority is the numeric priority (what `nft -j` lists as "prio"). */
  readonly priority: number;
  /** priorityText is how the priority is written in the input (a keyword where nft has one). */
  readonly priorityText: string;
  readonly purpose: string;
  readonly rules: readonly string[];
}

/** An NftSetPlan is one named set of our table with its full content. */
export interface NftSetPlan {
  readonly name: string;
  readonly type: 'ipv4_addr' | 'ipv6_addr';
  /** interval: prefixes (peer sets); auto-merge folds overlapping ones as hash:net would hold them. */
  readonly interval: boolean;
  readonly elements: readonly string[];
}

/** An NfqPlan is the iptables part of the queue fallback: one chain per family. */
export interface NfqPlan {
  readonly chain: string;
  readonly families: readonly IpFamily[];
  readonly rule: string;
}

/** An NftPlan is everything one RulesSpec installs with the nftables backend. */
export interface NftPlan {
  readonly tag: string;
  /** table is our table's name (inet family). */
  readonly table: string;
  readonly sets: readonly NftSetPlan[];
  readonly chains: readonly NftChainPlan[];
  /** nfq is set when the kernel lacks nft queue: the NFQUEUE rule goes through iptables. */
  readonly nfq: NfqPlan | undefined;
}

/** NftRenderOptions: nativeQueue says whether the kernel offers nft's queue statement. */
export interface NftRenderOptions {
  readonly nativeQueue: boolean;
}

/** nftTableName returns the name of our table for a tag (lower case: "ESPGATE" -> "espgate"). */
export function nftTableName(tag: string): string {
  return tag.toLowerCase();
}

/** nfqChainName returns the iptables raw chain of the queue fallback. */
export function nfqChainName(tag: string): string {
  return `${tag}${NFQ_CHAIN_SUFFIX}`;
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

function famKeys(f: IpFamily): { ip: 'ip' | 'ip6'; n: '4' | '6' } {
  return f === 'v4' ? { ip: 'ip', n: '4' } : { ip: 'ip6', n: '6' };
}

function ikePorts(): string {
  return `{ ${IKE_PORTS.join(', ')} }`;
}

/** PerFamily renders one chain's rules for one family (after the chain's common rules). */
type PerFamily = (f: FamilySpec) => string[];

/** planNft expands a RulesSpec into our table's sets and chains. Pure. */
export function planNft(spec: RulesSpec, opts: NftRenderOptions): NftPlan {
  const { tag, tun } = spec;
  const gw = spec.mode === 'gateway';
  const tunName = JSON.stringify(tun);
  const hasV6 = spec.families.some((f) => f.family === 'v6');
  const nd = hasV6 ? [`icmpv6 type { ${ICMPV6_ND_NAMES} } return`] : [];
  const chains: NftChainPlan[] = [];
  const add = (c: Omit<NftChainPlan, 'rules'>, common: string[], per: PerFamily, tail: string[] = []): void => {
    chains.push({ ...c, rules: [...common, ...spec.families.flatMap(per), ...tail] });
  };
  const sets: NftSetPlan[] = [];
  for (const f of spec.families) {
    const { n } = famKeys(f.family);
    const type = f.family === 'v4' ? 'ipv4_addr' : 'ipv6_addr';
    sets.push({ name: `peer${n}`, type, interval: true, elements: f.peerAddrs.map(setElement) });
    sets.push({ name: `endp${n}`, type, interval: false, elements: f.endpoints });
  }
  const ep = (f: FamilySpec): string => `@endp${famKeys(f.family).n}`;
  const peers = (f: FamilySpec): string => `@peer${famKeys(f.family).n}`;
  const ip = (f: FamilySpec): string => famKeys(f.family).ip;

  const socket = spec.inbound === 'socket';
  if (socket && spec.notrack) {
    add({
      name: 'raw_prerouting', type: 'filter', hook: 'prerouting', priority: -300, priorityText: 'raw',
      purpose: 'inbound ESP addressed to us from a peer endpoint skips conntrack on its way to the daemon\'s raw ESP sockets: no rule matches it by state',
    }, [], (f) => [`meta l4proto esp fib daddr type local ${ip(f)} saddr ${ep(f)} notrack`]);
  }
  if (!socket) {
    add({
      name: 'raw_prerouting', type: 'filter', hook: 'prerouting',
      priority: opts.nativeQueue ? -300 : -301, priorityText: opts.nativeQueue ? 'raw' : 'raw - 1',
      purpose: opts.nativeQueue
        ? 'inbound ESP addressed to us from a peer endpoint goes to the daemon, before conntrack; no bypass: dropped while the daemon is down. ESP over 65000 bytes is dropped first (the nfqueue binding cannot give it a verdict)'
        : `inbound ESP addressed to us from a peer endpoint is marked ${hex(NFQ_MARK)} for the iptables chain ${nfqChainName(tag)} (raw, -300), which queues it: this kernel has no nft queue. ESP over 65000 bytes is dropped first`,
    }, [`meta l4proto esp meta length ${NFQUEUE_MAX_ESP_BYTES + 1}-65535 drop`], (f) => [
      `meta l4proto esp fib daddr type local ${ip(f)} saddr ${ep(f)} ${opts.nativeQueue ? `queue num ${spec.queueNum}` : `meta mark set meta mark | ${hex(NFQ_MARK)}`}`,
    ]);
  }

  if (spec.notrack) {
    add({
      name: 'raw_output', type: 'filter', hook: 'output', priority: -300, priorityText: 'raw',
      purpose: 'our own ESP to a peer endpoint skips conntrack: no rule matches it by state, and inbound ESP never reaches conntrack',
    }, [], (f) => [`meta l4proto esp ${ip(f)} daddr ${ep(f)} notrack`]);
  }

  if (spec.mssClamp || spec.guard) {
    const purpose = [
      spec.guard ? 'guard: a packet for a fake address that does not leave through the TUN is a leak' : '',
      spec.mssClamp ? 'clamp the MSS of TCP SYN and SYN-ACK leaving through the TUN to its MTU' : '',
    ].filter((x) => x !== '').join('; ');
    add({ name: 'mangle_postrouting', type: 'filter', hook: 'postrouting', priority: -150, priorityText: 'mangle', purpose }, [],
      (f) => (spec.guard ? f.pairs.map((p) => `${ip(f)} daddr ${p.fake} oifname != ${tunName} drop`) : []),
      spec.mssClamp ? [`oifname ${tunName} tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu`] : []);
  }

  if (gw) {
    add({ name: 'nat_prerouting', type: 'nat', hook: 'prerouting', priority: -100, priorityText: '-100', purpose: 'forwarded traffic to a protected peer: real -> fake destination, routed into the TUN' }, nd,
      (f) => f.pairs.map((p) => `${ip(f)} daddr ${p.real} iifname != ${tunName} meta l4proto != esp ${ip(f)} daddr ${peers(f)} dnat ${ip(f)} prefix to ${p.fake}`));
  }
  add({
    name: 'nat_output', type: 'nat', hook: 'output', priority: -100, priorityText: '-100',
    purpose: `locally generated traffic to a protected peer: real -> fake destination, routed into the TUN${spec.ike ? '; IKE to a peer endpoint is not steered' : ''}`,
  }, nd, (f) => [
    ...(spec.ike ? [`${ip(f)} daddr ${ep(f)} udp sport ${ikePorts()} return`] : []),
    ...f.pairs.map((p) => `${ip(f)} daddr ${p.real} meta l4proto != esp ${ip(f)} daddr ${peers(f)} dnat ${ip(f)} prefix to ${p.fake}`),
  ]);

  const inputGuard = (f: FamilySpec): string[] => [
    ...(f.family === 'v4' ? ['icmp type destination-unreachable icmp code frag-needed return'] : ['icmpv6 type packet-too-big return', ...nd]),
    ...(spec.ike ? [`${ip(f)} saddr ${ep(f)} udp dport ${ikePorts()} fib daddr type local return`] : []),
    `iifname != ${tunName} meta l4proto != esp ${ip(f)} saddr ${peers(f)} drop`,
    ...f.pairs.map((p) => `${ip(f)} saddr ${p.fake} iifname != ${tunName} drop`),
  ];
  if (spec.guard || socket) {
    const purpose = [
      socket ? 'accept ESP from peer endpoints for the daemon\'s raw ESP sockets, even under a default-drop input policy' : '',
      spec.guard ? `guard: nothing from a protected peer in the clear${socket ? '' : ' (ESP is consumed in raw before this)'}` : '',
    ].filter((x) => x !== '').join('; ');
    add({ name: 'filter_input', type: 'filter', hook: 'input', priority: 0, priorityText: 'filter', purpose }, [], (f) => [
      ...(socket ? [`meta l4proto esp fib daddr type local ${ip(f)} saddr ${ep(f)} accept`] : []),
      ...(spec.guard ? inputGuard(f) : []),
    ]);
  }
  if (gw && spec.guard) {
    // Outbound drops come before the PMTU exception: no ICMP error goes towards a peer in the clear.
    add({ name: 'filter_forward', type: 'filter', hook: 'forward', priority: 0, priorityText: 'filter', purpose: 'guard: nothing forwarded to or from a protected peer in the clear' }, [], (f) => [
      ...(f.family === 'v6' ? nd : []),
      `oifname != ${tunName} meta l4proto != esp ${ip(f)} daddr ${peers(f)} drop`,
      f.family === 'v4' ? 'icmp type destination-unreachable icmp code frag-needed return' : 'icmpv6 type packet-too-big return',
      `iifname != ${tunName} meta l4proto != esp ${ip(f)} saddr ${peers(f)} drop`,
      ...f.pairs.map((p) => `${ip(f)} saddr ${p.fake} iifname != ${tunName} drop`),
    ]);
  }
  add({
    name: 'filter_output', type: 'filter', hook: 'output', priority: 0, priorityText: 'filter',
    purpose: [
      'accept our ESP to peer endpoints',
      socket ? 'drop the kernel\'s "protocol unreachable" answer to a peer\'s ESP while no raw ESP socket of ours is open (a stopped daemon stays silent)' : '',
      spec.guard ? 'guard: after nat output, anything not ESP still addressed to a real peer address is a leak' : '',
    ].filter((x) => x !== '').join('; '),
  }, [], (f) => [
    `meta l4proto esp ${ip(f)} daddr ${ep(f)} accept`,
    ...(socket ? [f.family === 'v4'
      ? `${ip(f)} daddr ${ep(f)} icmp type destination-unreachable icmp code prot-unreachable drop`
      : `${ip(f)} daddr ${ep(f)} icmpv6 type parameter-problem icmpv6 code 1 drop`] : []),
    ...(spec.guard
      ? [
          ...(f.family === 'v6' ? nd : []),
          ...(spec.ike ? [`${ip(f)} daddr ${ep(f)} udp sport ${ikePorts()} accept`] : []),
          `oifname != ${tunName} meta l4proto != esp ${ip(f)} daddr ${peers(f)} drop`,
        ]
      : []),
  ]);

  add({ name: 'nat_input', type: 'nat', hook: 'input', priority: 100, priorityText: '100', purpose: 'connections opened by a peer: fake -> real source, so local servers see the real address' }, [],
    (f) => f.pairs.map((p) => `${ip(f)} saddr ${p.fake} iifname ${tunName} snat ${ip(f)} prefix to ${p.real}`));
  if (gw) {
    add({ name: 'nat_postrouting', type: 'nat', hook: 'postrouting', priority: 100, priorityText: '100', purpose: 'connections opened by a peer and forwarded: fake -> real source' }, [],
      (f) => f.pairs.map((p) => `${ip(f)} saddr ${p.fake} oifname != ${tunName} snat ${ip(f)} prefix to ${p.real}`));
  }

  const nfq: NfqPlan | undefined = opts.nativeQueue || socket ? undefined : {
    chain: nfqChainName(tag),
    families: spec.families.map((f) => f.family),
    rule: `-p esp -m mark --mark ${hex(NFQ_MARK)}/${hex(NFQ_MARK)} -j NFQUEUE --queue-num ${spec.queueNum}`,
  };
  return { tag, table: nftTableName(tag), sets, chains: chains.sort(byHookOrder), nfq };
}

/** setElement writes a /32 or /128 as the bare address (how nft lists it). */
function setElement(cidr: string): string {
  return cidr.endsWith('/32') || cidr.endsWith('/128') ? cidr.slice(0, cidr.lastIndexOf('/')) : cidr;
}

/** CHAIN_ORDER is the order chains are written in: the order render.ts writes iptables tables and chains. */
const CHAIN_ORDER: readonly string[] = [
  'raw_prerouting', 'raw_output', 'mangle_postrouting', 'nat_prerouting', 'nat_output', 'nat_input', 'nat_postrouting', 'filter_input', 'filter_forward', 'filter_output',
];

function byHookOrder(a: NftChainPlan, b: NftChainPlan): number {
  return CHAIN_ORDER.indexOf(a.name) - CHAIN_ORDER.indexOf(b.name);
}

function renderSet(s: NftSetPlan, withElements: boolean): string[] {
  const lines = [`\tset ${s.name} {`, `\t\ttype ${s.type}`];
  if (s.interval) lines.push('\t\tflags interval', '\t\tauto-merge');
  if (withElements && s.elements.length > 0) lines.push(`\t\telements = { ${s.elements.join(', ')} }`);
  lines.push('\t}');
  return lines;
}

function renderChain(c: NftChainPlan, withPurpose: boolean): string[] {
  return [
    ...(withPurpose ? [`\t# ${c.name}: ${c.purpose}`] : []),
    `\tchain ${c.name} {`,
    `\t\ttype ${c.type} hook ${c.hook} priority ${c.priorityText}; policy accept;`,
    ...c.rules.map((r) => `\t\t${r}`),
    '\t}',
  ];
}

/** nftSkeleton is the table without set elements, comment or notes: what the digest covers. */
function nftSkeleton(plan: NftPlan): string {
  return [...plan.sets.flatMap((s) => renderSet(s, false)), ...plan.chains.flatMap((c) => renderChain(c, false))].join('\n');
}

/** nftDigest is a short hash of the table's structure and rules (not its set elements); it goes in the table's comment. */
export function nftDigest(plan: NftPlan): string {
  return createHash('sha256').update(nftSkeleton(plan)).digest('hex').slice(0, 16);
}

/** nftComment is our table's comment: "espgate <tag> <digest>" (nft -t list table prints it). */
export function nftComment(plan: NftPlan): string {
  return `espgate ${plan.tag} ${nftDigest(plan)}`;
}

/** renderNftTable returns the `table inet <name> { ... }` block with every set's elements. */
export function renderNftTable(plan: NftPlan): string {
  const body = [
    `\tcomment ${JSON.stringify(nftComment(plan))}`,
    ...plan.sets.flatMap((s) => renderSet(s, true)),
    ...plan.chains.flatMap((c) => renderChain(c, true)),
  ];
  return `table inet ${plan.table} {\n${body.join('\n')}\n}\n`;
}

/**
 * renderNftInstall returns the one `nft -f` transaction that replaces our table: declare it
 * (a no-op when it exists), delete it, create it whole. Every packet sees either the old table
 * or the new one. It never names another table.
 */
export function renderNftInstall(plan: NftPlan): string {
  return `# espgate ${plan.tag}: nft -f input (one transaction)\ntable inet ${plan.table}\ndelete table inet ${plan.table}\n${renderNftTable(plan)}`;
}

/** renderNftSetsUpdate returns the one `nft -f` transaction that gives every set exactly its elements (flush + add), for a table whose rules are already right. */
export function renderNftSetsUpdate(plan: NftPlan): string {
  const lines = [`# espgate ${plan.tag}: nft -f input (one transaction: set elements only)`];
  for (const s of plan.sets) {
    lines.push(`flush set inet ${plan.table} ${s.name}`);
    if (s.elements.length > 0) lines.push(`add element inet ${plan.table} ${s.name} { ${s.elements.join(', ')} }`);
  }
  return `${lines.join('\n')}\n`;
}

/** renderNftRemove returns the `nft -f` input that deletes our table (declared first, so it cannot fail when absent). */
export function renderNftRemove(tag: string): string {
  const t = nftTableName(tag);
  return `# espgate ${tag}: nft -f input\ntable inet ${t}\ndelete table inet ${t}\n`;
}

function jumpTarget(args: string): string | undefined {
  return /(?:^| )-[jg] (\S+)(?: |$)/.exec(args)?.[1];
}

/**
 * renderNfqRestore returns the `iptables-restore --noflush` (or ip6tables) input that takes the
 * raw table from `current` to: our <tag>-NFQ chain with the one NFQUEUE rule, jumped to once from
 * the top of PREROUTING (want), or none of it (!want). "" when there is nothing to do.
 */
export function renderNfqRestore(tag: string, family: IpFamily, want: NfqPlan | undefined, current: SavedRuleset): string {
  const chain = nfqChainName(tag);
  const raw = current.get('raw');
  const present = raw?.chains.includes(chain) ?? false;
  const jumps: string[] = [];
  for (const b of BUILTIN_CHAINS) {
    for (const args of raw?.rules.get(b) ?? []) if (jumpTarget(args) === chain) jumps.push(`${b} ${args}`);
  }
  const wanted = want !== undefined && want.families.includes(family);
  if (!wanted && !present && jumps.length === 0) return '';
  const lines = ['*raw', `:${chain} - [0:0]`];
  let kept = false;
  for (const j of jumps) {
    if (wanted && !kept && j === `PREROUTING -j ${chain}`) kept = true;
    else lines.push(`-D ${j}`);
  }
  if (wanted) {
    lines.push(`# ${chain} (raw PREROUTING, -300): inbound ESP that our nft table marked goes to the daemon (this kernel has no nft queue); no --queue-bypass`);
    lines.push(`-A ${chain} ${want.rule}`);
    if (!kept) lines.push(`-I PREROUTING 1 -j ${chain}`);
  } else {
    lines.push(`-X ${chain}`);
  }
  lines.push('COMMIT');
  const tool = family === 'v4' ? 'iptables-restore' : 'ip6tables-restore';
  return `# espgate ${tag}: ${tool} --noflush input\n${lines.join('\n')}\n`;
}

/** NftTexts are the inputs of the nftables backend's steps; "" means the step is skipped. */
export interface NftTexts {
  readonly nft: string;
  readonly iptables: string;
  readonly ip6tables: string;
}

/** NFT_STEP_TITLES names the command that consumes each NftTexts field. */
export const NFT_STEP_TITLES: Readonly<Record<keyof NftTexts, string>> = {
  nft: 'nft -f -',
  iptables: 'iptables-restore --noflush',
  ip6tables: 'ip6tables-restore --noflush',
};

/** formatNftTexts prints the non-empty steps with a header each, for dry runs and golden files. */
export function formatNftTexts(t: NftTexts): string {
  const out: string[] = [];
  for (const k of ['nft', 'iptables', 'ip6tables'] as const) if (t[k] !== '') out.push(`### ${NFT_STEP_TITLES[k]}\n${t[k]}`);
  return out.join('\n');
}

/** renderNftFreshInstall renders an install on a host with nothing of ours. Pure; for golden tests and docs. */
export function renderNftFreshInstall(spec: RulesSpec, opts: NftRenderOptions): NftTexts {
  const plan = planNft(spec, opts);
  return {
    nft: renderNftInstall(plan),
    iptables: renderNfqRestore(spec.tag, 'v4', plan.nfq, new Map()),
    ip6tables: renderNfqRestore(spec.tag, 'v6', plan.nfq, new Map()),
  };
}

/** savedNfq is the raw table iptables-save prints right after the fallback chain was installed (ours only). */
export function savedNfq(tag: string): SavedRuleset {
  const chain = nfqChainName(tag);
  return new Map([['raw', { chains: ['PREROUTING', 'OUTPUT', chain], policies: new Map(), rules: new Map([['PREROUTING', [`-j ${chain}`]]]) }]]);
}

/** renderNftFreshUninstall renders the removal of what renderNftFreshInstall installs. Pure. */
export function renderNftFreshUninstall(spec: RulesSpec, opts: NftRenderOptions): NftTexts {
  // What the fresh install left in iptables: the NFQ chain where its plan has one.
  const nfq = planNft(spec, opts).nfq;
  const cur = (f: IpFamily): SavedRuleset => (nfq?.families.includes(f) === true ? savedNfq(spec.tag) : new Map());
  return {
    nft: renderNftRemove(spec.tag),
    iptables: renderNfqRestore(spec.tag, 'v4', undefined, cur('v4')),
    ip6tables: renderNfqRestore(spec.tag, 'v6', undefined, cur('v6')),
  };
}
