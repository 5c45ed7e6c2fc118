/**
 * packet/ip.ts: version-independent views of an IP packet, for the data path's checks on an
 * inner packet (version, declared length, addresses). Allocation-free; never throws.
 */

import { inBounds } from './bytes.js';
import { checkIpv4, ipv4TotalLength } from './ipv4.js';
import type { Ipv4ParseError } from './ipv4.js';
import { checkIpv6, ipv6PacketLength } from './ipv6.js';
import { IPV4_OFFSET_DST, IPV4_OFFSET_SRC, IPV6_OFFSET_DST, IPV6_OFFSET_SRC } from './offsets.js';
import type { IpFamily } from './offsets.js';

/** IpCheck is checkIpPacket's answer: 'ok' or why the packet is not a valid IPv4/IPv6 packet. */
export type IpCheck = 'ok' | Ipv4ParseError;

/** ipVersion is the version nibble of the packet at buf[off] (0 when there is no byte). */
export function ipVersion(buf: Uint8Array, off: number): number {
  return inBounds(buf, off, 1) ? buf[off] >> 4 : 0;
}

/**
 * checkIpPacket validates the IPv4 or IPv6 header at buf[off] with len bytes available (see
 * checkIpv4 and checkIpv6); 'bad-version' for any other version. With `family` it also requires
 * that version (eg. the one the ESP next header announced).
 */
export function checkIpPacket(buf: Uint8Array, off: number, len: number, family?: IpFamily): IpCheck {
  if (!inBounds(buf, off, len) || len < 1) return 'truncated';
  const v = buf[off] >> 4;
  if (family !== undefined && v !== family) return 'bad-version';
  if (v === 4) return checkIpv4(buf, off, len);
  if (v === 6) return checkIpv6(buf, off, len);
  return 'bad-version';
}

/** ipPacketLength is the declared length (IPv4 total length, IPv6 40 + payload length) of a checked packet. */
export function ipPacketLength(buf: Uint8Array, off: number): number {
  return buf[off] >> 4 === 4 ? ipv4TotalLength(buf, off) : ipv6PacketLength(buf, off);
}

/** ipSrcOffset is the offset of the source address in the fixed header of that family. */
export function ipSrcOffset(family: IpFamily): number {
  return family === 4 ? IPV4_OFFSET_SRC : IPV6_OFFSET_SRC;
}

/** ipDstOffset is the offset of the destination address in the fixed header of that family. */
export function ipDstOffset(family: IpFamily): number {
  return family === 4 ? IPV4_OFFSET_DST : IPV6_OFFSET_DST;
}
