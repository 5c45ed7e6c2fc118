/**
 * model.ts: the typed, validated description of the netfilter state espgate installs.
 *
 * The daemon passes a small RulesInput (built from its config); buildRulesSpec validates it
 * and returns a frozen RulesSpec with canonical prefixes. Everything downstream (render.ts,
 * apply.ts) trusts a RulesSpec and never re-validates. Pure: no I/O.
 *
 * Names: every object we create carries the tag as a prefix, so that we can find and remove
 * exactly ours and nothing else:
 *
 *   chains  <tag>-PRE  <tag>-IN  <tag>-OUT  <tag>-FWD  <tag>-POST     (<= 28 chars, iptables)
 *   ipsets  <tag>-PEER4 <tag>-PEER6 <tag>-ENDP4 <tag>-ENDP6 (+ "-T")   (<= 31 chars, ipset)
 */
import { GatewayError } from '../errors.js';
import { cidrContains, cidrOverlaps, formatCidr, formatIp, parseCidr, parseIp } from './cidr.js';
import type { Cidr, IpFamily } from './cidr.js';

/** DEFAULT_TAG is the prefix of our chain and set names when the input gives none. */
export const DEFAULT_TAG = 'ESPGATE';

/** IPT_CHAIN_NAME_MAX is the longest chain name iptables accepts (XT_EXTENSION_MAXNAMELEN - 1). */
export const IPT_CHAIN_NAME_MAX = 28;
/** IPSET_NAME_MAX is the longest set name ipset accepts (IPSET_MAXNAMELEN - 1). */
export const IPSET_NAME_MAX = 31;
/** IFNAME_MAX is the longest interface name (IFNAMSIZ - 1). */
export const IFNAME_MAX = 15;
/** QUEUE_NUM_MAX is the highest NFQUEUE queue number. */
export const QUEUE_NUM_MAX = 65535;

/** ChainSuffix names our chains by the builtin hook they hang off. */
export type ChainSuffix = 'PRE' | 'IN' | 'OUT' | 'FWD' | 'POST';
/** CHAIN_SUFFIXES lists every chain suffix we may create, in any table. */
export const CHAIN_SUFFIXES: readonly ChainSuffix[] = ['PRE', 'IN', 'OUT', 'FWD', 'POST'];

/** SetKind: PEER holds protected peer prefixes (hash:net), ENDP the peers' outer ESP addresses (hash:ip). */
export type SetKind = 'PEER' | 'ENDP';
/** SET_KINDS lists the set kinds. */
export const SET_KINDS: readonly SetKind[] = ['PEER', 'ENDP'];
/** TEMP_SET_SUFFIX marks the staging set that is filled and then swapped in atomically. */
export const TEMP_SET_SUFFIX = '-T';

const LONGEST_CHAIN_SUFFIX = '-POST';
const LONGEST_SET_SUFFIX = `-PEER4${TEMP_SET_SUFFIX}`;
/** MAX_TAG_LEN keeps every derived chain name <= 28 and set name <= 31 characters. */
export const MAX_TAG_LEN = Math.min(
  IPT_CHAIN_NAME_MAX - LONGEST_CHAIN_SUFFIX.length,
  IPSET_NAME_MAX - LONGEST_SET_SUFFIX.length,
);

/** Mode: 'host' steers only this host's traffic; 'gateway' also steers traffic it forwards. */
export type Mode = 'host' | 'gateway';

/** A PrefixPairInput maps a real prefix onto a fake prefix of the same length. */
export interface PrefixPairInput {
  readonly real: string;
  readonly fake: string;
}

/** A FamilyInput is the per-address-family part of RulesInput. */
export interface FamilyInput {
  /** pairs are the real <-> fake prefix pairs (NETMAP is one rule per pair, not per peer). */
  readonly pairs: readonly PrefixPairInput[];
  /** peerAddrs are all protected prefixes of all peers, as real addresses. */
  readonly peerAddrs: readonly string[];
  /** endpoints are the peers' outer (ESP) addresses of this family. */
  readonly endpoints: readonly string[];
}

/** RulesInput is what the daemon passes to build a RulesSpec. */
export interface RulesInput {
  /** tun is the TUN interface the fake prefixes are routed to, e.g. "eg0". */
  readonly tun: string;
  /** tag prefixes our chain and set names; default DEFAULT_TAG. */
  readonly tag?: string;
  /** queueNum is the NFQUEUE number the daemon reads inbound ESP from. */
  readonly queueNum: number;
  readonly mode: Mode;
  readonly families: { readonly v4?: FamilyInput; readonly v6?: FamilyInput };
  /** mssClamp clamps the MSS of TCP SYNs leaving through the TUN to the TUN's PMTU. */
  readonly mssClamp: boolean;
  /** guard installs the fail-closed filter rules (no plaintext to or from protected peers). */
  readonly guard: boolean;
  /** ike lets IKE (UDP 500 both ways) through between this host and the peer endpoints (default false). */
  readonly ike?: boolean;
  /** notrack exempts this host's own ESP to peer endpoints from connection tracking (default false). */
  readonly notrack?: boolean;
  /** inbound: how the daemon takes inbound ESP, 'queue' (NFQUEUE, the default here) or 'socket' (raw ESP sockets). */
  readonly inbound?: Inbound;
}

/**
 * Inbound says how inbound ESP reaches the daemon: 'queue', an NFQUEUE rule in raw PREROUTING
 * (before conntrack; dropped while nobody reads the queue); 'socket', the daemon's raw ESP
 * sockets after the stack's input hooks (notracked in raw PREROUTING with `notrack`, accepted in
 * filter INPUT; while no socket is open the kernel drops it and its "protocol unreachable"
 * answer is dropped in filter OUTPUT).
 */
export type Inbound = 'queue' | 'socket';

/** A PrefixPair is a validated pair in canonical "network/len" form. */
export interface PrefixPair {
  readonly real: string;
  readonly fake: string;
}

/** A FamilySpec is the validated per-family part of a RulesSpec. */
export interface FamilySpec {
  readonly family: IpFamily;
  readonly pairs: readonly PrefixPair[];
  /** peerAddrs: canonical "network/len", deduplicated, in input order. */
  readonly peerAddrs: readonly string[];
  /** endpoints: canonical bare addresses, deduplicated, in input order. */
  readonly endpoints: readonly string[];
}

/** A RulesSpec is a validated, frozen RulesInput; families are ordered v4 then v6. */
export interface RulesSpec {
  readonly tun: string;
  readonly tag: string;
  readonly queueNum: number;
  readonly mode: Mode;
  readonly families: readonly FamilySpec[];
  readonly mssClamp: boolean;
  readonly guard: boolean;
  /** ike: IKE (UDP 500) between this host and the peer endpoints is exempt from NAT and guard. */
  readonly ike: boolean;
  /**
   * notrack: our own outbound ESP to peer endpoints skips conntrack (raw OUTPUT). Nothing needs it
   * tracked: inbound ESP is taken in raw PREROUTING before conntrack, and every rule matches ESP
   * by protocol and address, never by state. Saves a conntrack lookup per packet sent. With
   * inbound 'socket' it also exempts inbound ESP from peer endpoints (raw PREROUTING).
   */
  readonly notrack: boolean;
  readonly inbound: Inbound;
}

function inboundOf(v: Inbound | undefined): Inbound {
  if (v === undefined) return 'queue';
  if (v !== 'queue' && v !== 'socket') throw configError('inbound', `${String(v)} is not 'queue' or 'socket'`);
  return v;
}

/** chainName returns the name of our chain for a hook suffix. */
export function chainName(tag: string, suffix: ChainSuffix): string {
  return `${tag}-${suffix}`;
}

/** setName returns the name of one of our ipsets. */
export function setName(tag: string, kind: SetKind, family: IpFamily): string {
  return `${tag}-${kind}${family === 'v4' ? '4' : '6'}`;
}

/** tempSetName returns the staging name used while a set's content is replaced. */
export function tempSetName(name: string): string {
  return `${name}${TEMP_SET_SUFFIX}`;
}

/** ourChainNames lists every chain name the tag may own (in any table). */
export function ourChainNames(tag: string): readonly string[] {
  return CHAIN_SUFFIXES.map((s) => chainName(tag, s));
}

/** ourSetNames lists every set name the tag may own, staging names included. */
export function ourSetNames(tag: string): readonly string[] {
  const out: string[] = [];
  for (const family of ['v4', 'v6'] as const) {
    for (const kind of SET_KINDS) {
      const n = setName(tag, kind, family);
      out.push(n, tempSetName(n));
    }
  }
  return out;
}

const TAG_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;
const IFNAME_RE = /^[A-Za-z0-9_.-]+$/;

function configError(path: string, msg: string): GatewayError {
  return new GatewayError('ERR_CONFIG', `rules: ${path}: ${msg}`);
}

function prefixError(path: string, msg: string): GatewayError {
  return new GatewayError('ERR_PREFIX', `rules: ${path}: ${msg}`);
}

/** validateTag throws ERR_CONFIG unless tag yields valid chain and set names. */
export function validateTag(tag: string): void {
  if (tag.length === 0 || tag.length > MAX_TAG_LEN) {
    throw configError('tag', `"${tag}" must be 1-${MAX_TAG_LEN} characters (chain names <= ${IPT_CHAIN_NAME_MAX}, set names <= ${IPSET_NAME_MAX})`);
  }
  if (!TAG_RE.test(tag)) {
    throw configError('tag', `"${tag}" must start with a letter and contain only letters, digits, "_" and "-"`);
  }
}

function validateTun(tun: string): void {
  if (tun.length === 0 || tun.length > IFNAME_MAX || !IFNAME_RE.test(tun) || tun === '.' || tun === '..') {
    throw configError('tun', `"${tun}" is not a valid interface name (1-${IFNAME_MAX} of [A-Za-z0-9_.-], no wildcards)`);
  }
}

function parsePrefix(family: IpFamily, text: string, path: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw prefixError(path, p.reason);
  if (p.cidr.family !== family) throw prefixError(path, `"${text}" is not an ${family === 'v4' ? 'IPv4' : 'IPv6'} prefix`);
  if (p.hostBitsSet) throw prefixError(path, `"${text}" has bits set after the prefix length (did you mean ${formatCidr(p.cidr)}?)`);
  if (p.cidr.prefixLen === 0) throw prefixError(path, `"${text}": a /0 prefix is not allowed`);
  return p.cidr;
}

function parseEndpoint(family: IpFamily, text: string, path: string): { text: string; cidr: Cidr } {
  const ip = parseIp(text);
  if (ip === undefined) throw prefixError(path, `"${text}" is not a bare IP address`);
  if (ip.family !== family) throw prefixError(path, `"${text}" is not an ${family === 'v4' ? 'IPv4' : 'IPv6'} address`);
  const bits = family === 'v4' ? 32 : 128;
  return { text: formatIp(family, ip.addr), cidr: { family, addr: ip.addr, prefixLen: bits } };
}

function buildFamily(family: IpFamily, input: FamilyInput): FamilySpec {
  const base = `families.${family}`;
  if (input.pairs.length === 0) throw prefixError(`${base}.pairs`, 'at least one real/fake prefix pair is required');
  const pairs: PrefixPair[] = [];
  const seen: { cidr: Cidr; path: string }[] = [];
  const reals: Cidr[] = [];
  const fakes: Cidr[] = [];
  input.pairs.forEach((pair, i) => {
    const real = parsePrefix(family, pair.real, `${base}.pairs[${i}].real`);
    const fake = parsePrefix(family, pair.fake, `${base}.pairs[${i}].fake`);
    if (real.prefixLen !== fake.prefixLen) {
      throw prefixError(`${base}.pairs[${i}]`, `real ${formatCidr(real)} and fake ${formatCidr(fake)} must have the same prefix length (NETMAP maps host bits one to one)`);
    }
    for (const [c, what] of [[real, 'real'], [fake, 'fake']] as const) {
      const path = `${base}.pairs[${i}].${what}`;
      for (const other of seen) {
        if (cidrOverlaps(c, other.cidr)) {
          throw prefixError(path, `${formatCidr(c)} overlaps ${formatCidr(other.cidr)} (${other.path})`);
        }
      }
      seen.push({ cidr: c, path });
    }
    reals.push(real);
    fakes.push(fake);
    pairs.push({ real: formatCidr(real), fake: formatCidr(fake) });
  });

  // Sets beside the arrays keep the order and make de-duplication O(1) (includes() on the
  // growing arrays was O(n^2): 3.5 s at 10,000 peers, bench/scale.ts).
  const peerAddrs: string[] = [];
  const peerAddrSet = new Set<string>();
  input.peerAddrs.forEach((text, i) => {
    const path = `${base}.peerAddrs[${i}]`;
    const c = parsePrefix(family, text, path);
    if (!reals.some((r) => cidrContains(r, c))) {
      throw prefixError(path, `${formatCidr(c)} is not inside any real prefix (${pairs.map((p) => p.real).join(', ')}): it could never be steered`);
    }
    const canon = formatCidr(c);
    if (!peerAddrSet.has(canon)) {
      peerAddrSet.add(canon);
      peerAddrs.push(canon);
    }
  });

  const endpoints: string[] = [];
  const endpointSet = new Set<string>();
  input.endpoints.forEach((text, i) => {
    const path = `${base}.endpoints[${i}]`;
    const ep = parseEndpoint(family, text, path);
    const inFake = fakes.find((f) => cidrContains(f, ep.cidr));
    if (inFake !== undefined) throw prefixError(path, `${ep.text} lies inside fake prefix ${formatCidr(inFake)}`);
    if (!endpointSet.has(ep.text)) {
      endpointSet.add(ep.text);
      endpoints.push(ep.text);
    }
  });

  return Object.freeze({
    family,
    pairs: Object.freeze(pairs.map((p) => Object.freeze(p))),
    peerAddrs: Object.freeze(peerAddrs),
    endpoints: Object.freeze(endpoints),
  });
}

/**
 * buildRulesSpec validates a RulesInput and returns the frozen RulesSpec. It throws
 * GatewayError ERR_CONFIG (names, numbers) or ERR_PREFIX (prefix maths) naming the field.
 * Pure; callable from anywhere.
 */
export function buildRulesSpec(input: RulesInput): RulesSpec {
  const tag = input.tag ?? DEFAULT_TAG;
  validateTag(tag);
  validateTun(input.tun);
  if (!Number.isInteger(input.queueNum) || input.queueNum < 0 || input.queueNum > QUEUE_NUM_MAX) {
    throw configError('queueNum', `${String(input.queueNum)} is not an integer in 0-${QUEUE_NUM_MAX}`);
  }
  if (input.mode !== 'host' && input.mode !== 'gateway') {
    throw configError('mode', `${String(input.mode)} is not "host" or "gateway"`);
  }
  const families: FamilySpec[] = [];
  if (input.families.v4 !== undefined) families.push(buildFamily('v4', input.families.v4));
  if (input.families.v6 !== undefined) families.push(buildFamily('v6', input.families.v6));
  if (families.length === 0) throw configError('families', 'at least one of v4, v6 is required');
  return Object.freeze({
    tun: input.tun,
    tag,
    queueNum: input.queueNum,
    mode: input.mode,
    families: Object.freeze(families),
    mssClamp: input.mssClamp,
    guard: input.guard,
    ike: input.ike ?? false,
    notrack: input.notrack ?? false,
    inbound: inboundOf(input.inbound),
  });
}
