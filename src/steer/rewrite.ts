/**
 * steer/rewrite.ts: the two per-packet address rewrites of the steering design, in place, with
 * incremental checksum fixes (RFC 1624). Allocation-free; not re-entrant (module scratch), which
 * is fine on one thread: each worker has its own module instance.
 *
 * Inbound (decrypted inner packet from a peer, on its way to our TUN):
 *   outer SOURCE real -> fake; for an ICMP/ICMPv6 error, the quoted packet's DESTINATION too.
 * Outbound (packet read from our TUN, on its way into ESP):
 *   outer DESTINATION fake -> real; for an ICMP/ICMPv6 error, the quoted packet's SOURCE too.
 *
 * The quoted packet is one that went the other way, so its addresses are swapped: mapping it the
 * same way as the outer header lets conntrack on each side match the error to its flow (RELATED).
 *
 * Checksums fixed, each by folding the address change into the stored value (never recomputed,
 * so a checksum that was wrong stays wrong and the kernel still drops the packet):
 *
 *   IPv4 header ─────────────── always (the address is in it)
 *   TCP/UDP/UDP-Lite/DCCP ───── pseudo-header; only in an unfragmented packet or first fragment;
 *                                a UDP checksum of 0 ("none") stays 0, a result of 0 becomes 0xFFFF
 *   ICMPv6 ──────────────────── pseudo-header (IPv6 only; ICMPv4 has none)
 *   ICMP/ICMPv6 error ───────── body changes: quoted address, quoted IPv4 header checksum and the
 *                                quoted transport checksum when it lies inside the quoted bytes
 *
 *   ICMPv4 error:  | IP hdr | type code csum | rest | quoted IP hdr (addr, csum) | quoted L4 (csum?) ...
 *                     ▲ addr    ▲ csum fixed for every change to the right ──────────────────▶
 */

import type { DropReason } from '../drops.js';
import { inBounds, readU16, writeU16 } from '../packet/bytes.js';
import { checksumUpdateField, onesSum } from '../packet/checksum.js';
import { checkIpv4, ipv4FragmentOffset, ipv4HeaderLength, ipv4TotalLength } from '../packet/ipv4.js';
import { checkIpv6, findIpv6Transport, Ipv6Transport, ipv6PacketLength } from '../packet/ipv6.js';
import { isIcmpError, pseudoChecksumOffset } from '../packet/l4.js';
import {
  ICMP_HEADER_LEN, ICMP_OFFSET_BODY, ICMP_OFFSET_CSUM, ICMP_OFFSET_TYPE, IPV4_ADDR_LEN, IPV4_HEADER_MIN_LEN,
  IPV4_OFFSET_CSUM, IPV4_OFFSET_DST, IPV4_OFFSET_PROTO, IPV4_OFFSET_SRC, IPV6_ADDR_LEN, IPV6_HEADER_LEN,
  IPV6_OFFSET_DST, IPV6_OFFSET_SRC, PROTO_ICMP, PROTO_ICMPV6, PROTO_UDP,
} from '../packet/offsets.js';
import type { IpFamily } from '../packet/offsets.js';
import type { OffsetMap } from './fake-offset.js';

/**
 * RewriteResult is 'ok' or why the packet must be dropped: 'truncated' (shorter than its headers
 * or its declared length), 'bad-inner' (not a valid IP packet, or an ICMP error quoting no valid
 * IP header of the same version) or 'unmapped' (an address to rewrite lies outside every
 * prefix). On a drop nothing has been written: every check runs before the first change.
 */
export type RewriteResult = 'ok' | Extract<DropReason, 'truncated' | 'bad-inner' | 'unmapped'>;

/**
 * rewriteInbound rewrites, in place, the decrypted inner packet at pkt[off, off + len) that a peer
 * sent us: its source real -> fake and, for an ICMP error, the quoted destination real -> fake,
 * fixing every checksum concerned. Bytes after the packet's declared length are ignored.
 */
export function rewriteInbound(pkt: Uint8Array, off: number, len: number, map: OffsetMap): RewriteResult {
  return rewrite(pkt, off, len, map, true);
}

/**
 * rewriteOutbound rewrites, in place, the packet at pkt[off, off + len) read from our TUN: its
 * destination fake -> real and, for an ICMP error, the quoted source fake -> real, fixing every
 * checksum concerned. Bytes after the packet's declared length are ignored.
 */
export function rewriteOutbound(pkt: Uint8Array, off: number, len: number, map: OffsetMap): RewriteResult {
  return rewrite(pkt, off, len, map, false);
}

// Scratch for the IPv6 extension-header walks: one for the packet, one for a quoted packet.
const outerTransport = new Ipv6Transport();
const quotedTransport = new Ipv6Transport();

function rewrite(pkt: Uint8Array, off: number, len: number, map: OffsetMap, inbound: boolean): RewriteResult {
  if (!inBounds(pkt, off, len) || len < 1) return 'truncated';
  const version = pkt[off] >> 4;
  if (version === 4) return rewrite4(pkt, off, len, map, inbound);
  if (version === 6) return rewrite6(pkt, off, len, map, inbound);
  return 'bad-inner';
}

/** mapAddress maps the address at pkt[at] (toFake when inbound); false when it is in no prefix. */
function mapAddress(map: OffsetMap, pkt: Uint8Array, at: number, family: IpFamily, inbound: boolean): boolean {
  return inbound ? map.toFake(pkt, at, family) : map.toReal(pkt, at, family);
}

/** canMap says whether mapAddress would succeed, without changing anything. */
function canMap(map: OffsetMap, pkt: Uint8Array, at: number, family: IpFamily, inbound: boolean): boolean {
  return inbound ? map.isReal(pkt, at, family) : map.isFake(pkt, at, family);
}

/**
 * fixPseudoChecksum folds an address change (oldSum -> newSum) into the transport checksum at
 * pkt[at]. UDP and UDP-Lite share offset 6 but only UDP maps a computed 0 to 0xFFFF (RFC 768);
 * both are only called with a non-zero stored checksum when the protocol is UDP.
 */
function fixPseudoChecksum(pkt: Uint8Array, at: number, oldSum: number, newSum: number, udp: boolean): void {
  checksumUpdateField(pkt, at, oldSum, newSum);
  if (udp && readU16(pkt, at) === 0) writeU16(pkt, at, 0xffff);
}

/**
 * fixCovered fixes the checksum field at pkt[at] for an address change and then folds the change
 * of that field itself into the enclosing ICMP checksum at pkt[icmpCsum].
 */
function fixCovered(pkt: Uint8Array, at: number, oldSum: number, newSum: number, udp: boolean, icmpCsum: number): void {
  const before = readU16(pkt, at);
  fixPseudoChecksum(pkt, at, oldSum, newSum, udp);
  checksumUpdateField(pkt, icmpCsum, before, readU16(pkt, at));
}

/** transportChecksumAt is the absolute offset of a pseudo-header checksum to fix, or -1 (none, or UDP's "no checksum"). */
function transportChecksumAt(pkt: Uint8Array, l4: number, protocol: number, family: IpFamily): number {
  const at = pseudoChecksumOffset(protocol, family);
  if (at < 0) return -1;
  if (protocol === PROTO_UDP && readU16(pkt, l4 + at) === 0) return -1;
  return l4 + at;
}

// ---------------------------------------------------------------------------------------- IPv4

function rewrite4(pkt: Uint8Array, off: number, len: number, map: OffsetMap, inbound: boolean): RewriteResult {
  const check = checkIpv4(pkt, off, len);
  if (check === 'truncated') return 'truncated';
  if (check !== 'ok') return 'bad-inner';
  const end = off + ipv4TotalLength(pkt, off);
  const l4 = off + ipv4HeaderLength(pkt, off);
  const protocol = pkt[off + IPV4_OFFSET_PROTO];
  let l4Csum = -1;
  let quoted = -1;
  if (ipv4FragmentOffset(pkt, off) === 0) {
    const at = pseudoChecksumOffset(protocol, 4);
    if (at >= 0 && end - l4 < at + 2) return 'truncated';
    if (at >= 0) l4Csum = transportChecksumAt(pkt, l4, protocol, 4);
    if (protocol === PROTO_ICMP) {
      if (end - l4 < ICMP_HEADER_LEN) return 'truncated';
      if (isIcmpError(protocol, pkt[l4 + ICMP_OFFSET_TYPE])) {
        quoted = l4 + ICMP_OFFSET_BODY;
        const q = checkQuoted4(pkt, quoted, end, map, inbound);
        if (q !== 'ok') return q;
      }
    }
  }
  // Everything is checked; from here on only the first mapAddress can fail, and then it has
  // changed nothing.
  const addr = off + (inbound ? IPV4_OFFSET_SRC : IPV4_OFFSET_DST);
  const oldSum = onesSum(pkt, addr, IPV4_ADDR_LEN);
  if (!mapAddress(map, pkt, addr, 4, inbound)) return 'unmapped';
  const newSum = onesSum(pkt, addr, IPV4_ADDR_LEN);
  checksumUpdateField(pkt, off + IPV4_OFFSET_CSUM, oldSum, newSum);
  if (l4Csum >= 0) fixPseudoChecksum(pkt, l4Csum, oldSum, newSum, protocol === PROTO_UDP);
  if (quoted >= 0) rewriteQuoted4(pkt, quoted, end, map, inbound, l4 + ICMP_OFFSET_CSUM);
  return 'ok';
}

/** checkQuoted4 checks the IPv4 header quoted at pkt[q] (ending by `end`) and that its address maps. */
function checkQuoted4(pkt: Uint8Array, q: number, end: number, map: OffsetMap, inbound: boolean): RewriteResult {
  if (end - q < IPV4_HEADER_MIN_LEN || pkt[q] >> 4 !== 4) return 'bad-inner';
  const hl = ipv4HeaderLength(pkt, q);
  if (hl < IPV4_HEADER_MIN_LEN || end - q < hl) return 'bad-inner';
  if (!canMap(map, pkt, q + (inbound ? IPV4_OFFSET_DST : IPV4_OFFSET_SRC), 4, inbound)) return 'unmapped';
  return 'ok';
}

/**
 * rewriteQuoted4 maps the quoted packet's destination (inbound) or source (outbound), fixes its
 * header checksum and, if quoted, its transport checksum, and folds each change into the ICMP
 * checksum at pkt[icmpCsum]. checkQuoted4 must have passed.
 */
function rewriteQuoted4(pkt: Uint8Array, q: number, end: number, map: OffsetMap, inbound: boolean, icmpCsum: number): void {
  const addr = q + (inbound ? IPV4_OFFSET_DST : IPV4_OFFSET_SRC);
  const oldSum = onesSum(pkt, addr, IPV4_ADDR_LEN);
  mapAddress(map, pkt, addr, 4, inbound);
  const newSum = onesSum(pkt, addr, IPV4_ADDR_LEN);
  checksumUpdateField(pkt, icmpCsum, oldSum, newSum);
  fixCovered(pkt, q + IPV4_OFFSET_CSUM, oldSum, newSum, false, icmpCsum);
  if (ipv4FragmentOffset(pkt, q) !== 0) return;
  const l4 = q + ipv4HeaderLength(pkt, q);
  const protocol = pkt[q + IPV4_OFFSET_PROTO];
  const at = pseudoChecksumOffset(protocol, 4);
  if (at < 0 || l4 + at + 2 > end) return; // not quoted: the error carries only the first bytes
  const csum = transportChecksumAt(pkt, l4, protocol, 4);
  if (csum >= 0) fixCovered(pkt, csum, oldSum, newSum, protocol === PROTO_UDP, icmpCsum);
}

// ---------------------------------------------------------------------------------------- IPv6

function rewrite6(pkt: Uint8Array, off: number, len: number, map: OffsetMap, inbound: boolean): RewriteResult {
  const check = checkIpv6(pkt, off, len);
  if (check === 'truncated') return 'truncated';
  if (check !== 'ok') return 'bad-inner';
  const end = off + ipv6PacketLength(pkt, off);
  const walk = findIpv6Transport(pkt, off, end, outerTransport);
  if (walk === 'truncated') return 'truncated';
  if (walk !== 'ok') return 'bad-inner';
  const l4 = outerTransport.offset;
  const protocol = outerTransport.protocol;
  let l4Csum = -1;
  let quoted = -1;
  if (outerTransport.fragment !== 'non-first') {
    const at = pseudoChecksumOffset(protocol, 6);
    if (at >= 0 && end - l4 < at + 2) return 'truncated';
    // Outbound changes the destination; while a routing header has segments left, the
    // pseudo-header holds the final destination instead, which we do not change.
    if (at >= 0 && (inbound || !outerTransport.routingPending)) l4Csum = transportChecksumAt(pkt, l4, protocol, 6);
    if (protocol === PROTO_ICMPV6) {
      if (end - l4 < ICMP_HEADER_LEN) return 'truncated';
      if (isIcmpError(protocol, pkt[l4 + ICMP_OFFSET_TYPE])) {
        quoted = l4 + ICMP_OFFSET_BODY;
        const q = checkQuoted6(pkt, quoted, end, map, inbound);
        if (q !== 'ok') return q;
      }
    }
  }
  const addr = off + (inbound ? IPV6_OFFSET_SRC : IPV6_OFFSET_DST);
  const oldSum = onesSum(pkt, addr, IPV6_ADDR_LEN);
  if (!mapAddress(map, pkt, addr, 6, inbound)) return 'unmapped';
  const newSum = onesSum(pkt, addr, IPV6_ADDR_LEN);
  if (l4Csum >= 0) fixPseudoChecksum(pkt, l4Csum, oldSum, newSum, protocol === PROTO_UDP);
  if (quoted >= 0) rewriteQuoted6(pkt, quoted, end, map, inbound, l4 + ICMP_OFFSET_CSUM);
  return 'ok';
}

/** checkQuoted6 checks the IPv6 header quoted at pkt[q] (ending by `end`) and that its address maps. */
function checkQuoted6(pkt: Uint8Array, q: number, end: number, map: OffsetMap, inbound: boolean): RewriteResult {
  if (end - q < IPV6_HEADER_LEN || pkt[q] >> 4 !== 6) return 'bad-inner';
  if (!canMap(map, pkt, q + (inbound ? IPV6_OFFSET_DST : IPV6_OFFSET_SRC), 6, inbound)) return 'unmapped';
  return 'ok';
}

/**
 * rewriteQuoted6 maps the quoted packet's destination (inbound) or source (outbound), fixes its
 * transport checksum if quoted, and folds each change into the ICMPv6 checksum at pkt[icmpCsum].
 * checkQuoted6 must have passed.
 */
function rewriteQuoted6(pkt: Uint8Array, q: number, end: number, map: OffsetMap, inbound: boolean, icmpCsum: number): void {
  const addr = q + (inbound ? IPV6_OFFSET_DST : IPV6_OFFSET_SRC);
  const oldSum = onesSum(pkt, addr, IPV6_ADDR_LEN);
  mapAddress(map, pkt, addr, 6, inbound);
  const newSum = onesSum(pkt, addr, IPV6_ADDR_LEN);
  checksumUpdateField(pkt, icmpCsum, oldSum, newSum);
  // A quoted extension-header chain cut short by the quote just means no transport checksum.
  if (findIpv6Transport(pkt, q, end, quotedTransport) !== 'ok' || quotedTransport.fragment === 'non-first') return;
  // Inbound changes the quoted destination: see the routing-header note in rewrite6.
  if (inbound && quotedTransport.routingPending) return;
  const l4 = quotedTransport.offset;
  const protocol = quotedTransport.protocol;
  const at = pseudoChecksumOffset(protocol, 6);
  if (at < 0 || l4 + at + 2 > end) return;
  const csum = transportChecksumAt(pkt, l4, protocol, 6);
  if (csum >= 0) fixCovered(pkt, csum, oldSum, newSum, protocol === PROTO_UDP, icmpCsum);
}
