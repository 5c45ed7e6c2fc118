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
 * come from the peer address itself (`-r`). IKE (UDP 500/4500) alone causes no delete; when
 * another un-steered UDP flow goes to the same address, that address's un-NATed IKE entries go
 * too, and conntrack makes them again on their next packet.
 */
import type { Cidr } from '../netfilter/cidr.js';
import { cidrContains, parseCidr } from '../netfilter/cidr.js';
import type { Runner } from '../netfilter/runner.js';

/** CONNTRACK_TIMEOUT_MS bounds each conntrack(8) call. */
const CONNTRACK_TIMEOUT_MS = 10_000;
/** IKE_PORTS are the UDP ports of IKE and NAT-T, never steered. */
const IKE_PORTS = new Set(['500', '4500']);

/** Unsteered is a peer address and an IP protocol number (conntrack -L's second column) with un-steered flows. */
export interface Unsteered {
  readonly addr: string;
  readonly proto: string;
}

/**
 * unsteeredPeerAddresses reads `conntrack -L` output and returns, once each, the (peer address,
 * protocol) pairs that flows go to without the steering binding (the reply comes from the
 * address the flow was sent to, not from its fake address). isPeer says whether an address is
 * protected by a peer.
 */
export function unsteeredPeerAddresses(listing: string, isPeer: (addr: string) => boolean): Unsteered[] {
  const out = new Map<string, Unsteered>();
  for (const line of listing.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3) continue;
    const protoNum = f[1] ?? '';
    const srcs: string[] = [];
    const dsts: string[] = [];
    let dport: string | undefined;
    for (const t of f) {
      if (t.startsWith('src=')) srcs.push(t.slice(4));
      else if (t.startsWith('dst=')) dsts.push(t.slice(4));
      else if (t.startsWith('dport=') && dport === undefined) dport = t.slice(6);
    }
    const dst = dsts[0];
    const replySrc = srcs[1];
    if (dst === undefined || replySrc === undefined || replySrc !== dst) continue; // steered (or not an entry line)
    if (protoNum === '50' || (protoNum === '17' && dport !== undefined && IKE_PORTS.has(dport))) continue;
    if (!/^[0-9]{1,3}$/.test(protoNum) || !isPeer(dst)) continue;
    out.set(`${dst} ${protoNum}`, { addr: dst, proto: protoNum });
  }
  return [...out.values()];
}

/**
 * flushUnsteered deletes the conntrack entries of unsteered flows to the peers' protected
 * prefixes. Returns notes for the install log: how many addresses were moved into the tunnel,
 * or why nothing could be done (no conntrack(8): such flows stay blocked until they expire).
 */
export async function flushUnsteered(runner: Runner, peerPrefixes: readonly string[]): Promise<string[]> {
  const prefixes: Cidr[] = [];
  for (const p of peerPrefixes) {
    const c = parseCidr(p);
    if (c.ok) prefixes.push(c.cidr);
  }
  const isPeer = (addr: string): boolean => {
    const c = parseCidr(addr);
    return c.ok && prefixes.some((p) => cidrContains(p, c.cidr));
  };
  const moved = new Set<string>();
  for (const family of ['ipv4', 'ipv6'] as const) {
    if (!prefixes.some((p) => p.family === (family === 'ipv4' ? 'v4' : 'v6'))) continue;
    const l = await runner.run('conntrack', ['-L', '-f', family], undefined, CONNTRACK_TIMEOUT_MS);
    if (l.missing) return ['conntrack(8) is not installed (Debian package "conntrack"): flows to peers that began before the gate stay blocked until their conntrack entries expire'];
    // Exit 1 with "0 flow entries": nothing tracked (or no conntrack in this namespace yet).
    for (const u of unsteeredPeerAddresses(l.stdout, isPeer)) {
      // -r: only entries whose reply comes from the address itself (never a steered one).
      await runner.run('conntrack', ['-D', '-f', family, '-p', u.proto, '-d', u.addr, '-r', u.addr], undefined, CONNTRACK_TIMEOUT_MS);
      moved.add(u.addr);
    }
  }
  return moved.size === 0 ? [] : [`flows to ${[...moved].join(', ')} that began before the gate were not steered: their conntrack entries were deleted, so their next packets go through the tunnel`];
}
