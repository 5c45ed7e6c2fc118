/**
 * packet/l4.ts: the little the steering rewrite needs to know about transport headers: where a
 * checksum that covers the IP pseudo-header sits, and which ICMP types quote an offending packet.
 */

import {
  DCCP_OFFSET_CSUM, ICMP_DEST_UNREACH, ICMP_OFFSET_CSUM, ICMP_PARAM_PROBLEM, ICMP_REDIRECT, ICMP_SOURCE_QUENCH,
  ICMP_TIME_EXCEEDED, ICMPV6_DEST_UNREACH, ICMPV6_PARAM_PROBLEM, PROTO_DCCP, PROTO_ICMP, PROTO_ICMPV6,
  PROTO_TCP, PROTO_UDP, PROTO_UDPLITE, TCP_OFFSET_CSUM, UDP_OFFSET_CSUM, UDPLITE_OFFSET_CSUM,
} from './offsets.js';
import type { IpFamily } from './offsets.js';

/**
 * pseudoChecksumOffset is the offset, inside the transport header, of a checksum that covers the
 * IP pseudo-header (so changes with the IP addresses), or -1 when the protocol has none:
 * TCP, UDP, UDP-Lite and DCCP for both families, ICMPv6 for IPv6. (ICMPv4's checksum covers the
 * ICMP message only; SCTP's CRC32c covers no addresses.)
 */
export function pseudoChecksumOffset(protocol: number, family: IpFamily): number {
  switch (protocol) {
    case PROTO_TCP: return TCP_OFFSET_CSUM;
    case PROTO_UDP: return UDP_OFFSET_CSUM;
    case PROTO_UDPLITE: return UDPLITE_OFFSET_CSUM;
    case PROTO_DCCP: return DCCP_OFFSET_CSUM;
    case PROTO_ICMPV6: return family === 6 ? ICMP_OFFSET_CSUM : -1;
    default: return -1;
  }
}

/**
 * isIcmpError says whether an ICMP (protocol 1, types 3, 4, 5, 11, 12) or ICMPv6 (protocol 58,
 * types 1-4) message of this type carries a quoted copy of the packet it is about (RFC 792,
 * RFC 4443 §2.1: error types are below 128).
 */
export function isIcmpError(protocol: number, type: number): boolean {
  if (protocol === PROTO_ICMP) {
    return type === ICMP_DEST_UNREACH || type === ICMP_SOURCE_QUENCH || type === ICMP_REDIRECT
      || type === ICMP_TIME_EXCEEDED || type === ICMP_PARAM_PROBLEM;
  }
  if (protocol === PROTO_ICMPV6) return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAM_PROBLEM;
  return false;
}
