/**
 * daemon/conntrack.ts: flows that began before the gate.
 *
 * Steering is a NAT binding, made on a flow's first packet. A flow to a peer that began while no
 * gate was installed (and conntrack was tracking: another NAT or stateful rule on the host) keeps
 * an entry without that binding; once the gate is in, the guard drops its packets (the sender
 * sees EPERM) until the entry expires: minutes for UDP, days for an established TCP connection.
 * After installing the gate we delete the entries of such flows: their next packet is a new flow
 * to conntrack, gets the binding, and goes through the tunnel (a TCP connection carries on: the
 * inner packets keep the real addresses). Steered entries (their reply comes from the fake
 * address) and ESP are never deleted: each delete names the protocol and requires the reply to
 * come from the peer address itself (`-r`). IKE and NAT-T, exempt from steering exactly as the
 * rules exempt them (from our UDP port 500 or 4500 to a peer endpoint, when IKE is on), cause
 * no delete; when another un-steered UDP flow goes to the same address, that address's un-NATed
 * IKE entries go too, and conntrack makes them again on their next packet (nothing rewrote them).
 */
import { PrefixTable } from '../datapath/prefix-table.js';
import { parseCidr } from '../netfilter/cidr.js';
import type { RulesSpec } from '../netfilter/model.js';
import { IKE_LOCAL_PORTS } from '../netfilter/render.js';
import type { Runner } from '../netfilter/runner.js';

/** CONNTRACK_TIMEOUT_MS bounds each conntrack(8) call. */
const CONNTRACK_TIMEOUT_MS = 10_000;
/** IKE_PORTS are our UDP ports of IKE and NAT-T, as conntrack -L prints them. */
const IKE_PORTS = new Set(IKE_LOCAL_PORTS.map(String));

/** Unsteered is a peer address and an IP protocol number (conntrack -L's second column) with un-steered flows. */
export interface Unsteered {
  readonly addr: string;
  readonly proto: string;
}

/**
 * unsteeredPeerAddresses reads `conntrack -L` output and returns, once each, the (peer address,
 * protocol) pairs that flows go to without the steering binding (the reply comes from the
 * address the flow was sent to, not from its fake address). isPeer says whether an address is
 * protected by a peer; isEndpoint whether it is a peer's endpoint, to which UDP from our ports
 * 500 and 4500 (IKE, NAT-T) is exempt from steering (undefined: no IKE exemption).
 */
export function unsteeredPeerAddresses(listing: string, isPeer: (addr: string) => boolean, isEndpoint?: (addr: string) => boolean): Unsteered[] {
  const out = new Map<string, Unsteered>();
  for (const line of listing.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3) continue;
    const protoNum = f[1] ?? '';
    const srcs: string[] = [];
    const dsts: string[] = [];
    let sport: string | undefined;
    for (const t of f) {
      if (t.startsWith('src=')) srcs.push(t.slice(4));
      else if (t.startsWith('dst=')) dsts.push(t.slice(4));
      else if (t.startsWith('sport=') && sport === undefined) sport = t.slice(6);
    }
    const dst = dsts[0];
    const replySrc = srcs[1];
    if (dst === undefined || replySrc === undefined || replySrc !== dst) continue; // steered (or not an entry line)
    if (protoNum === '50') continue;
    if (protoNum === '17' && sport !== undefined && IKE_PORTS.has(sport) && isEndpoint?.(dst) === true) continue;
    if (!/^[0-9]{1,3}$/.test(protoNum) || !isPeer(dst)) continue;
    out.set(`${dst} ${protoNum}`, { addr: dst, proto: protoNum });
  }
  return [...out.values()];
}

/**
 * matcherOf says whether an address lies in one of the given prefixes (or is one of the
 * addresses): the data path's longest-prefix tables, so a listing of many entries against
 * thousands of peers costs one lookup per entry.
 */
function matcherOf(list: readonly string[]): (addr: string) => boolean {
  const t4 = new PrefixTable<true>(4);
  const t6 = new PrefixTable<true>(6);
  for (const p of list) {
    const c = parseCidr(p);
    if (c.ok) (c.cidr.family === 'v4' ? t4 : t6).insert(c.cidr.addr, c.cidr.prefixLen, true);
  }
  return (addr: string): boolean => (addr.includes(':') ? t6 : t4).lookupText(addr) === true;
}

/**
 * flushUnsteered deletes the conntrack entries of unsteered flows to the peers' protected
 * prefixes (the gate's peer sets; its IKE exemption as the rules have it). Returns notes for the
 * install log: which addresses had entries deleted, or why nothing could be done (no
 * conntrack(8): such flows stay blocked until they expire).
 */
export async function flushUnsteered(runner: Runner, spec: RulesSpec): Promise<string[]> {
  const isPeer = matcherOf(spec.families.flatMap((f) => f.peerAddrs));
  const isEndpoint = spec.ike ? matcherOf(spec.families.flatMap((f) => f.endpoints)) : undefined;
  const moved = new Set<string>();
  for (const f of spec.families) {
    if (f.peerAddrs.length === 0) continue;
    const family = f.family === 'v4' ? 'ipv4' : 'ipv6';
    const l = await runner.run('conntrack', ['-L', '-f', family], undefined, CONNTRACK_TIMEOUT_MS);
    if (l.missing) return ['conntrack(8) is not installed (Debian package "conntrack"): flows to peers that began before the gate stay blocked until their conntrack entries expire'];
    // Exit 1 with "0 flow entries": nothing tracked (or no conntrack in this namespace yet).
    for (const u of unsteeredPeerAddresses(l.stdout, isPeer, isEndpoint)) {
      // -r: only entries whose reply comes from the address itself (never a steered one).
      // Exit 0: at least one deleted (1: none left, e.g. it expired meanwhile).
      const d = await runner.run('conntrack', ['-D', '-f', family, '-p', u.proto, '-d', u.addr, '-r', u.addr], undefined, CONNTRACK_TIMEOUT_MS);
      if (d.code === 0) moved.add(u.addr);
    }
  }
  return moved.size === 0 ? [] : [`flows to ${[...moved].join(', ')} that began before the gate were not steered: their conntrack entries were deleted, so their next packets go through the tunnel`];
}
