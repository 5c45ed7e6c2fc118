/**
 * render.ts: RulesSpec -> the exact input texts for `ipset restore`, `iptables-restore --noflush`
 * and `ip6tables-restore --noflush`. Pure: apply.ts reads the current state and passes it in.
 *
 * Chains (one per hook, each jumped to once, from the top of its builtin chain):
 *
 *   table   builtin      our chain   prio   what
 *   raw     PREROUTING   <tag>-PRE   -300   inbound ESP from a peer endpoint -> NFQUEUE (before conntrack)
 *   raw     OUTPUT       <tag>-OUT   -300   our ESP to a peer endpoint: no conntrack     (notrack)
 *   mangle  POSTROUTING  <tag>-POST  -150   fake dst not leaving via the TUN: drop (guard);
 *                                            clamp TCP MSS of SYNs leaving through the TUN   (mssClamp)
 *   nat     PREROUTING   <tag>-PRE   -100   forwarded traffic to peers: real -> fake dst    (gateway)
 *   nat     OUTPUT       <tag>-OUT   -100   local traffic to peers: real -> fake dst
 *   filter  INPUT        <tag>-IN       0   drop plaintext from peers; IKE/NAT-T exempt     (guard)
 *   filter  FORWARD      <tag>-FWD      0   drop plaintext to/from peers                    (gateway, guard)
 *   filter  OUTPUT       <tag>-OUT      0   accept our ESP (and with IKE: udp from our 500/4500);
 *                                            drop plaintext to peers                         (drops: guard)
 *   nat     INPUT        <tag>-IN     100   peer-opened connections: fake -> real src
 *   nat     POSTROUTING  <tag>-POST   100   peer-opened, forwarded: fake -> real src        (gateway)
 *
 * The number of rules depends on the number of prefix pairs, never on the number of peers:
 * peers live in ipsets (<tag>-PEER4/6 hash:net, <tag>-ENDP4/6 hash:ip).
 *
 * Rule texts are written the way iptables-save prints them, so that what is installed can be
 * compared with what was rendered, line for line.
 */
import type { IpFamily } from './cidr.js';
import type { SavedRuleset } from './inspect.js';
import { BUILTIN_CHAINS } from './inspect.js';
import { chainName, ourChainNames, ourSetNames, setName, tempSetName } from './model.js';
import type { ChainSuffix, FamilySpec, RulesSpec } from './model.js';

/** Table names the installer writes to, in hook-priority order of their first use. */
export type Table = 'raw' | 'mangle' | 'nat' | 'filter';
/** TABLE_ORDER is the order in which table sections are written. */
export const TABLE_ORDER: readonly Table[] = ['raw', 'mangle', 'nat', 'filter'];

/** Builtin is a builtin chain name. */
export type Builtin = 'PREROUTING' | 'INPUT' | 'FORWARD' | 'OUTPUT' | 'POSTROUTING';

/** BUILTIN_OF maps our chain suffix to the builtin chain that jumps to it. */
export const BUILTIN_OF: Readonly<Record<ChainSuffix, Builtin>> = {
  PRE: 'PREROUTING',
  IN: 'INPUT',
  OUT: 'OUTPUT',
  FWD: 'FORWARD',
  POST: 'POSTROUTING',
};

/** A ChainPlan is one of our chains: where it hangs and its lines ("# ..." lines are notes). */
export interface ChainPlan {
  readonly table: Table;
  readonly builtin: Builtin;
  readonly chain: string;
  readonly purpose: string;
  readonly lines: readonly string[];
}

/** A FamilyPlan is every chain of one address family, in TABLE_ORDER. */
export interface FamilyPlan {
  readonly family: IpFamily;
  readonly chains: readonly ChainPlan[];
}

/** A SetPlan is one ipset with its full content. */
export interface SetPlan {
  readonly name: string;
  readonly type: 'hash:net' | 'hash:ip';
  readonly family: 'inet' | 'inet6';
  readonly members: readonly string[];
}

/** A RulesPlan is everything one RulesSpec installs. */
export interface RulesPlan {
  readonly tag: string;
  readonly families: readonly FamilyPlan[];
  readonly sets: readonly SetPlan[];
}

/** RenderedTexts are the inputs of the four apply steps, in order; "" means the step is skipped. */
export interface RenderedTexts {
  /** ipset: `ipset restore` run first (sets must exist before rules reference them). */
  readonly ipset: string;
  readonly iptables: string;
  readonly ip6tables: string;
  /** ipsetCleanup: `ipset restore` run last (sets can only go once no rule references them). */
  readonly ipsetCleanup: string;
}

/** IPSET_DEFAULT_MAXELEM is ipset's default capacity; larger sets get an explicit maxelem. */
export const IPSET_DEFAULT_MAXELEM = 65536;

/** ICMPV4_FRAG_NEEDED is "destination unreachable / fragmentation needed" (PMTU for our ESP). */
const ICMPV4_FRAG_NEEDED = '3/4';
/** ICMPV6_PACKET_TOO_BIG is the IPv6 PMTU message. */
const ICMPV6_PACKET_TOO_BIG = 2;
/** ICMPV6_ND_TYPES: router solicitation/advertisement, neighbour solicitation/advertisement, redirect. */
const ICMPV6_ND_TYPES: readonly number[] = [133, 134, 135, 136, 137];

const IKE_PLACEHOLDER = '# IKE (udp 500/4500) exemption: placeholder, not enabled yet';
const IKE_FORWARD_NOTE = '# IKE (udp 500/4500) is not exempted here: it ends on this host, it is never forwarded';
/** IKE_PORT is the IKE UDP port (RFC 7296 §2). */
export const IKE_PORT = 500;
/** NAT_T_PORT is the NAT traversal port (RFC 3948, RFC 7296 §2.23): IKE behind a non-ESP marker, and UDP-encapsulated ESP. */
export const NAT_T_PORT = 4500;
/** IKE_LOCAL_PORTS are our side's ports of IKE and NAT-T; the exemptions match on them only. */
export const IKE_LOCAL_PORTS: readonly number[] = [IKE_PORT, NAT_T_PORT];

/**
 * ikeInbound matches IKE and UDP-encapsulated ESP from a peer endpoint to this host: on our
 * ports 500 and 4500, from any source port (a NAT in front of the peer rewrites its ports).
 */
function ikeInbound(endps: string): string[] {
  return IKE_LOCAL_PORTS.map((p) => `-p udp -m udp --dport ${p} -m set --match-set ${endps} src -m addrtype --dst-type LOCAL`);
}

/**
 * ikeOutbound matches IKE and UDP-encapsulated ESP from this host to a peer endpoint: from our
 * ports 500 and 4500, to any destination port (a reply goes to the port a NAT mapped the peer's to).
 */
function ikeOutbound(endps: string): string[] {
  return IKE_LOCAL_PORTS.map((p) => `-p udp -m udp --sport ${p} -m set --match-set ${endps} dst`);
}

function ndReturns(): string[] {
  return ICMPV6_ND_TYPES.map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`);
}

/** inboundPmtuException lets PMTU errors about our ESP reach the stack. */
function inboundPmtuException(family: IpFamily): string[] {
  return family === 'v4'
    ? [`-p icmp -m icmp --icmp-type ${ICMPV4_FRAG_NEEDED} -j RETURN`]
    : [`-p ipv6-icmp -m icmp6 --icmpv6-type ${ICMPV6_PACKET_TOO_BIG} -j RETURN`];
}

/** Exceptions at the top of inbound guard chains: PMTU errors about our ESP, and (v6) neighbour discovery. */
function inboundExceptions(family: IpFamily): string[] {
  return family === 'v4' ? inboundPmtuException(family) : [...inboundPmtuException(family), ...ndReturns()];
}

function outboundExceptions(family: IpFamily): string[] {
  return family === 'v4' ? [] : ndReturns();
}

/** inboundGuard is the INPUT guard: exceptions, then nothing from a protected peer or a fake source unless it comes from the TUN. */
function inboundGuard(spec: RulesSpec, f: FamilySpec, endps: string, peers: string): string[] {
  const { tun } = spec;
  return [
    ...inboundExceptions(f.family),
    ...(spec.ike ? ikeInbound(endps).map((m) => `${m} -j RETURN`) : [IKE_PLACEHOLDER]),
    `! -i ${tun} ! -p esp -m set --match-set ${peers} src -j DROP`,
    ...f.pairs.map((p) => `-s ${p.fake} ! -i ${tun} -j DROP`),
  ];
}

/**
 * protoUnreachableDrop drops the answer a kernel without an ESP protocol of its own gives to ESP
 * that no raw socket took (IPv4 ICMP 3/2 "protocol unreachable", ICMPv6 4/1 "unrecognized next
 * header"), on its way to a peer endpoint: with the daemon stopped, its peers hear nothing.
 */
function protoUnreachableDrop(family: IpFamily, endps: string): string {
  return family === 'v4'
    ? `-p icmp -m icmp --icmp-type 3/2 -m set --match-set ${endps} dst -j DROP`
    : `-p ipv6-icmp -m icmp6 --icmpv6-type 4/1 -m set --match-set ${endps} dst -j DROP`;
}

/** NFQUEUE_MAX_ESP_BYTES is the largest ESP packet queued to the daemon (src/io/nfqueue.ts: the binding's 65535-byte receive buffer). */
export const NFQUEUE_MAX_ESP_BYTES = 65000;

function familyChains(spec: RulesSpec, f: FamilySpec): ChainPlan[] {
  const { tag, tun } = spec;
  const gw = spec.mode === 'gateway';
  const peers = setName(tag, 'PEER', f.family);
  const endps = setName(tag, 'ENDP', f.family);
  const nd = f.family === 'v6' ? ndReturns() : [];
  const chains: ChainPlan[] = [];
  const add = (table: Table, suffix: ChainSuffix, purpose: string, lines: string[]): void => {
    chains.push({ table, builtin: BUILTIN_OF[suffix], chain: chainName(tag, suffix), purpose, lines });
  };

  const socket = spec.inbound === 'socket';
  if (!socket) {
    add('raw', 'PRE', 'inbound ESP addressed to us from a peer endpoint goes to the daemon, before conntrack; no --queue-bypass: dropped while the daemon is down. ESP over 65000 bytes is dropped first: the nfqueue binding cannot give it a verdict, so it would hold a queue slot forever', [
      `-p esp -m length --length ${NFQUEUE_MAX_ESP_BYTES + 1}:65535 -j DROP`,
      `-p esp -m addrtype --dst-type LOCAL -m set --match-set ${endps} src -j NFQUEUE --queue-num ${spec.queueNum}`,
    ]);
  } else if (spec.notrack) {
    add('raw', 'PRE', 'inbound ESP addressed to us from a peer endpoint skips conntrack on its way to the daemon\'s raw ESP sockets: no rule matches it by state', [
      `-p esp -m addrtype --dst-type LOCAL -m set --match-set ${endps} src -j CT --notrack`,
    ]);
  }
  if (spec.notrack) {
    add('raw', 'OUT', `our own ESP to a peer endpoint skips conntrack: no rule matches it by state, and inbound ESP never reaches conntrack (${socket ? 'it is notracked above' : 'it is queued above'}), so each entry would only cost a lookup per packet sent`, [
      `-p esp -m set --match-set ${endps} dst -j CT --notrack`,
    ]);
  }

  // POSTROUTING is the first hook that knows the final output device of local traffic: at
  // filter OUTPUT, "-o" still names the device chosen before nat OUTPUT rerouted the packet.
  if (spec.mssClamp || spec.guard) {
    const purpose = [
      spec.guard ? 'guard: a packet for a fake address that does not leave through the TUN (TUN gone, route changed) is a leak' : '',
      spec.mssClamp ? 'clamp the MSS of TCP SYN and SYN-ACK leaving through the TUN to its MTU (local and forwarded)' : '',
    ].filter((x) => x !== '').join('; ');
    add('mangle', 'POST', purpose, [
      ...(spec.guard ? f.pairs.map((p) => `-d ${p.fake} ! -o ${tun} -j DROP`) : []),
      ...(spec.mssClamp ? [`-o ${tun} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu`] : []),
    ]);
  }

  if (gw) {
    add('nat', 'PRE', 'forwarded traffic to a protected peer: real -> fake destination, routed into the TUN', [
      ...nd,
      ...f.pairs.map((p) => `-d ${p.real} ! -i ${tun} ! -p esp -m set --match-set ${peers} dst -j NETMAP --to ${p.fake}`),
    ]);
  }
  add('nat', 'OUT', spec.ike
    ? 'locally generated traffic to a protected peer: real -> fake destination, routed into the TUN; IKE and UDP-encapsulated ESP (from our udp 500/4500) to a peer endpoint are not steered'
    : 'locally generated traffic to a protected peer: real -> fake destination, routed into the TUN', [
    ...nd,
    ...(spec.ike ? ikeOutbound(endps).map((m) => `${m} -j RETURN`) : []),
    ...f.pairs.map((p) => `-d ${p.real} ! -p esp -m set --match-set ${peers} dst -j NETMAP --to ${p.fake}`),
  ]);
  add('nat', 'IN', 'connections opened by a peer: fake -> real source, so local servers see the real address', [
    ...f.pairs.map((p) => `-s ${p.fake} -i ${tun} -j NETMAP --to ${p.real}`),
  ]);
  if (gw) {
    add('nat', 'POST', 'connections opened by a peer and forwarded: fake -> real source', [
      ...f.pairs.map((p) => `-s ${p.fake} ! -o ${tun} -j NETMAP --to ${p.real}`),
    ]);
  }

  if (spec.guard || socket) {
    const purpose = [
      socket ? 'accept ESP from peer endpoints for the daemon\'s raw ESP sockets, even under a default-drop INPUT policy' : '',
      spec.guard ? `guard: nothing from a protected peer in the clear${socket ? '' : ' (ESP is consumed in raw before this)'}` : '',
    ].filter((x) => x !== '').join('; ');
    add('filter', 'IN', purpose, [
      ...(socket ? [`-p esp -m addrtype --dst-type LOCAL -m set --match-set ${endps} src -j ACCEPT`] : []),
      ...(spec.guard ? inboundGuard(spec, f, endps, peers) : []),
    ]);
  }
  if (gw && spec.guard) {
    // Outbound drops come before the PMTU exception: no ICMP error goes towards a peer in the clear.
    add('filter', 'FWD', 'guard: nothing forwarded to or from a protected peer in the clear', [
      ...nd,
      `! -o ${tun} ! -p esp -m set --match-set ${peers} dst -j DROP`,
      ...inboundPmtuException(f.family),
      spec.ike ? IKE_FORWARD_NOTE : IKE_PLACEHOLDER,
      `! -i ${tun} ! -p esp -m set --match-set ${peers} src -j DROP`,
      ...f.pairs.map((p) => `-s ${p.fake} ! -i ${tun} -j DROP`),
    ]);
  }
  add('filter', 'OUT', [
    'accept our ESP to peer endpoints',
    socket ? 'drop the kernel\'s "protocol unreachable" answer to a peer\'s ESP while no raw ESP socket of ours is open (a stopped daemon stays silent)' : '',
    spec.guard ? 'guard: after nat OUTPUT, anything not ESP still addressed to a real peer address is a leak' : '',
  ].filter((x) => x !== '').join('; '), [
    `-p esp -m set --match-set ${endps} dst -j ACCEPT`,
    ...(socket ? [protoUnreachableDrop(f.family, endps)] : []),
    ...(spec.guard
      ? [
          ...outboundExceptions(f.family),
          ...(spec.ike ? ikeOutbound(endps).map((m) => `${m} -j ACCEPT`) : [IKE_PLACEHOLDER]),
          `! -o ${tun} ! -p esp -m set --match-set ${peers} dst -j DROP`,
        ]
      : []),
  ]);

  const order = (t: Table): number => TABLE_ORDER.indexOf(t);
  return chains.sort((a, b) => order(a.table) - order(b.table));
}

/** planRules expands a RulesSpec into chains and sets. Pure. */
export function planRules(spec: RulesSpec): RulesPlan {
  const families = spec.families.map((f) => ({ family: f.family, chains: familyChains(spec, f) }));
  const sets: SetPlan[] = [];
  for (const f of spec.families) {
    const fam = f.family === 'v4' ? 'inet' : 'inet6';
    sets.push({ name: setName(spec.tag, 'PEER', f.family), type: 'hash:net', family: fam, members: f.peerAddrs });
    sets.push({ name: setName(spec.tag, 'ENDP', f.family), type: 'hash:ip', family: fam, members: f.endpoints });
  }
  return { tag: spec.tag, families, sets };
}

/** ruleLines returns the rule lines of a chain (notes dropped). */
export function ruleLines(c: ChainPlan): string[] {
  return c.lines.filter((l) => !l.startsWith('#'));
}

/** ruleCount counts iptables rules (jumps included) of a plan. */
export function ruleCount(plan: RulesPlan): number {
  let n = 0;
  for (const f of plan.families) for (const c of f.chains) n += ruleLines(c).length + 1;
  return n;
}

function jumpTarget(args: string): string | undefined {
  const m = /(?:^| )-[jg] (\S+)(?: |$)/.exec(args);
  return m?.[1];
}

/**
 * renderFamilyRestore returns the `iptables-restore --noflush` input that takes one family
 * from `current` (parsed iptables-save) to `desired` (undefined: nothing of ours). It only
 * names tables that hold or will hold our chains, so it never creates a table needlessly.
 * Returns "" when there is nothing to do.
 *
 * Per table section the order is: declare (creates, or flushes an existing chain), delete
 * surplus jumps, add rules, delete chains no longer wanted, insert missing jumps at the top.
 */
export function renderFamilyRestore(tag: string, family: IpFamily, desired: FamilyPlan | undefined, current: SavedRuleset): string {
  const ours = ourChainNames(tag);
  const sections: string[] = [];
  for (const table of TABLE_ORDER) {
    const want = desired?.chains.filter((c) => c.table === table) ?? [];
    const cur = current.get(table);
    const present = cur?.chains.filter((c) => ours.includes(c)) ?? [];
    // Every rule in a builtin chain that targets one of our chains.
    const jumps: { builtin: string; args: string; chain: string }[] = [];
    for (const b of BUILTIN_CHAINS) {
      for (const args of cur?.rules.get(b) ?? []) {
        const t = jumpTarget(args);
        if (t !== undefined && ours.includes(t)) jumps.push({ builtin: b, args, chain: t });
      }
    }
    if (want.length === 0 && present.length === 0 && jumps.length === 0) continue;

    const decl: string[] = [];
    const dels: string[] = [];
    const body: string[] = [];
    const drops: string[] = [];
    const ins: string[] = [];
    for (const c of want) decl.push(`:${c.chain} - [0:0]`);
    const stale = present.filter((p) => !want.some((w) => w.chain === p));
    for (const s of stale) decl.push(`:${s} - [0:0]`);
    const kept = new Set<string>();
    for (const j of jumps) {
      const w = want.find((c) => c.chain === j.chain);
      const canonical = w !== undefined && j.builtin === w.builtin && j.args === `-j ${w.chain}`;
      if (canonical && !kept.has(w.chain)) {
        kept.add(w.chain);
      } else {
        dels.push(`-D ${j.builtin} ${j.args}`);
      }
    }
    for (const c of want) {
      body.push(`# ${c.chain} (${table} ${c.builtin}): ${c.purpose}`);
      for (const l of c.lines) body.push(l.startsWith('#') ? l : `-A ${c.chain} ${l}`);
      if (!kept.has(c.chain)) ins.push(`-I ${c.builtin} 1 -j ${c.chain}`);
    }
    for (const s of stale) drops.push(`-X ${s}`);
    sections.push([`*${table}`, ...decl, ...dels, ...body, ...drops, ...ins, 'COMMIT'].join('\n'));
  }
  if (sections.length === 0) return '';
  const tool = family === 'v4' ? 'iptables-restore' : 'ip6tables-restore';
  return `# espgate ${tag}: ${tool} --noflush input\n${sections.join('\n')}\n`;
}

function maxElemOpt(s: SetPlan): string {
  return s.members.length > IPSET_DEFAULT_MAXELEM ? ` maxelem ${s.members.length}` : '';
}

/**
 * renderSetsInstall returns the `ipset restore` input that gives every planned set exactly its
 * members without a moment of emptiness: fill a staging set, swap it in, destroy the old content.
 * `present` is the output of `ipset list -n`.
 */
export function renderSetsInstall(tag: string, sets: readonly SetPlan[], present: ReadonlySet<string>): string {
  if (sets.length === 0) return '';
  const lines: string[] = [`# espgate ${tag}: ipset restore input`];
  for (const s of sets) {
    const tmp = tempSetName(s.name);
    const create = `${s.type} family ${s.family}${maxElemOpt(s)}`;
    if (!present.has(s.name)) lines.push(`create ${s.name} ${create}`);
    if (present.has(tmp)) lines.push(`destroy ${tmp}`);
    lines.push(`create ${tmp} ${create}`);
    for (const m of s.members) lines.push(`add ${tmp} ${m}`);
    lines.push(`swap ${tmp} ${s.name}`, `destroy ${tmp}`);
  }
  return `${lines.join('\n')}\n`;
}

/** renderSetsRemove destroys every present set of ours that is not in `keep`. */
export function renderSetsRemove(tag: string, keep: readonly SetPlan[], present: ReadonlySet<string>): string {
  // Staging sets of kept sets are destroyed by renderSetsInstall's own text.
  const names = ourSetNames(tag).filter((n) => present.has(n) && !keep.some((k) => k.name === n || tempSetName(k.name) === n));
  if (names.length === 0) return '';
  return `# espgate ${tag}: ipset restore input\n${names.map((n) => `destroy ${n}`).join('\n')}\n`;
}

/** savedFromPlan builds the SavedRuleset that iptables-save would print right after installing `plan` (our parts only). */
export function savedFromPlan(plan: RulesPlan, family: IpFamily): SavedRuleset {
  const out = new Map<string, { chains: string[]; policies: Map<string, string>; rules: Map<string, string[]> }>();
  const fp = plan.families.find((f) => f.family === family);
  for (const c of fp?.chains ?? []) {
    const t = out.get(c.table) ?? { chains: [], policies: new Map<string, string>(), rules: new Map<string, string[]>() };
    t.chains.push(c.chain);
    t.rules.set(c.chain, ruleLines(c));
    t.rules.set(c.builtin, [...(t.rules.get(c.builtin) ?? []), `-j ${c.chain}`]);
    out.set(c.table, t);
  }
  return out;
}

/** renderInstall renders a fresh install (nothing of ours present). Pure; used by golden tests and docs. */
export function renderInstall(spec: RulesSpec): RenderedTexts {
  const plan = planRules(spec);
  const fam = (f: IpFamily): string => renderFamilyRestore(spec.tag, f, plan.families.find((p) => p.family === f), new Map());
  return { ipset: renderSetsInstall(spec.tag, plan.sets, new Set()), iptables: fam('v4'), ip6tables: fam('v6'), ipsetCleanup: '' };
}

/** renderUninstall renders the removal of exactly what renderInstall(spec) installs. Pure. */
export function renderUninstall(spec: RulesSpec): RenderedTexts {
  const plan = planRules(spec);
  const fam = (f: IpFamily): string => renderFamilyRestore(spec.tag, f, undefined, savedFromPlan(plan, f));
  return {
    ipset: '',
    iptables: fam('v4'),
    ip6tables: fam('v6'),
    ipsetCleanup: renderSetsRemove(spec.tag, [], new Set(plan.sets.map((s) => s.name))),
  };
}

/** STEP_TITLES names the command that consumes each RenderedTexts field. */
export const STEP_TITLES: Readonly<Record<keyof RenderedTexts, string>> = {
  ipset: 'ipset restore',
  iptables: 'iptables-restore --noflush',
  ip6tables: 'ip6tables-restore --noflush',
  ipsetCleanup: 'ipset restore',
};

/** formatTexts prints the non-empty steps with a header each, for dry runs and golden files. */
export function formatTexts(t: RenderedTexts): string {
  const out: string[] = [];
  for (const k of ['ipset', 'iptables', 'ip6tables', 'ipsetCleanup'] as const) {
    if (t[k] !== '') out.push(`### ${STEP_TITLES[k]}\n${t[k]}`);
  }
  return out.join('\n');
}
