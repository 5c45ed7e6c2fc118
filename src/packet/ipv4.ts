/**
 * packet/ipv4.ts: IPv4 header validation, views and the encode/parse pair (RFC 791).
 *
 * The data path calls checkIpv4 and the ipv4* accessors: they read in place and never allocate
 * or throw. parseIpv4 returns a copied header object for the control plane and tests;
 * encodeIpv4Header / ipv4HeaderEncodingLength are the encode half of the triple.
 */

import { copyBytes, inBounds, readU16, writeU16 } from './bytes.js';
import { internetChecksum, onesSum } from './checksum.js';
import {
  IPV4_ADDR_LEN, IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_FRAG_OFFSET_MASK, IPV4_FRAG_UNIT_BYTES,
  IPV4_HEADER_MAX_LEN, IPV4_HEADER_MIN_LEN, IPV4_MAX_PACKET_LEN, IPV4_OFFSET_CSUM, IPV4_OFFSET_DST,
  IPV4_OFFSET_FRAG, IPV4_OFFSET_ID, IPV4_OFFSET_OPTIONS, IPV4_OFFSET_PROTO, IPV4_OFFSET_SRC, IPV4_OFFSET_TOS,
  IPV4_OFFSET_TOTAL_LEN, IPV4_OFFSET_TTL, IPV4_OFFSET_VERSION_IHL,
} from './offsets.js';

/**
 * Ipv4ParseError is why an IPv4 header was refused:
 * - 'truncated': fewer bytes than the header or the total-length field says;
 * - 'bad-version': the version nibble is not 4;
 * - 'bad-header-length': IHL below 5;
 * - 'bad-total-length': total length smaller than the header;
 * - 'bad-fragment': fragment offset + payload would end beyond 65535 bytes;
 * - 'bad-checksum': the header checksum does not verify (only when asked to check it).
 */
export type Ipv4ParseError = 'truncated' | 'bad-version' | 'bad-header-length' | 'bad-total-length' | 'bad-fragment' | 'bad-checksum';

/** Ipv4Check is checkIpv4's answer. */
export type Ipv4Check = 'ok' | Ipv4ParseError;

/** Ipv4HeaderFields are the fields a caller chooses when encoding; length and checksum are derived. */
export interface Ipv4HeaderFields {
  readonly tos: number;
  /** totalLength is header plus payload in bytes. */
  readonly totalLength: number;
  readonly identification: number;
  readonly dontFragment: boolean;
  readonly moreFragments: boolean;
  /** fragmentOffset is in bytes (a multiple of 8). */
  readonly fragmentOffset: number;
  readonly ttl: number;
  readonly protocol: number;
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  /** options are raw option bytes, a multiple of 4 and at most 40 (empty for none). */
  readonly options: Uint8Array;
}

/** Ipv4Header is a parsed header: the fields plus header length and the checksum as found. */
export interface Ipv4Header extends Ipv4HeaderFields {
  readonly headerLength: number;
  readonly checksum: number;
}

/**
 * checkIpv4 validates the IPv4 header at buf[off] with len bytes available: version, IHL >= 5,
 * header and total length inside len, fragment end <= 65535 and, if verifyChecksum, the header
 * checksum. Bytes after the total length (eg. padding) are allowed: trim to ipv4TotalLength.
 */
export function checkIpv4(buf: Uint8Array, off: number, len: number, verifyChecksum = false): Ipv4Check {
  if (!inBounds(buf, off, len) || len < IPV4_HEADER_MIN_LEN) return 'truncated';
  if (buf[off + IPV4_OFFSET_VERSION_IHL] >> 4 !== 4) return 'bad-version';
  const hl = ipv4HeaderLength(buf, off);
  if (hl < IPV4_HEADER_MIN_LEN) return 'bad-header-length';
  if (hl > len) return 'truncated';
  const total = readU16(buf, off + IPV4_OFFSET_TOTAL_LEN);
  if (total < hl) return 'bad-total-length';
  if (total > len) return 'truncated';
  if (ipv4FragmentOffset(buf, off) + total - hl > IPV4_MAX_PACKET_LEN) return 'bad-fragment';
  if (verifyChecksum && onesSum(buf, off, hl) !== 0xffff) return 'bad-checksum';
  return 'ok';
}

/** ipv4HeaderLength is IHL * 4 of the header at buf[off] (not validated). */
export function ipv4HeaderLength(buf: Uint8Array, off: number): number {
  return (buf[off + IPV4_OFFSET_VERSION_IHL] & 0x0f) * 4;
}

/** ipv4TotalLength is the total-length field of the header at buf[off]. */
export function ipv4TotalLength(buf: Uint8Array, off: number): number {
  return readU16(buf, off + IPV4_OFFSET_TOTAL_LEN);
}

/** ipv4Protocol is the protocol field of the header at buf[off]. */
export function ipv4Protocol(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_OFFSET_PROTO];
}

/** ipv4FragmentOffset is the fragment offset of the header at buf[off], in bytes. */
export function ipv4FragmentOffset(buf: Uint8Array, off: number): number {
  return (readU16(buf, off + IPV4_OFFSET_FRAG) & IPV4_FRAG_OFFSET_MASK) * IPV4_FRAG_UNIT_BYTES;
}

/** ipv4MoreFragments is the MF flag of the header at buf[off]. */
export function ipv4MoreFragments(buf: Uint8Array, off: number): boolean {
  return (readU16(buf, off + IPV4_OFFSET_FRAG) & IPV4_FLAG_MF) !== 0;
}

/** ipv4IsFragment says whether the packet at buf[off] is a fragment (offset > 0 or MF). */
export function ipv4IsFragment(buf: Uint8Array, off: number): boolean {
  return (readU16(buf, off + IPV4_OFFSET_FRAG) & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) !== 0;
}

/** ipv4HeaderChecksum computes (does not store) the header checksum of the header at buf[off]. */
export function ipv4HeaderChecksum(buf: Uint8Array, off: number): number {
  const hl = ipv4HeaderLength(buf, off);
  // Sum around the checksum field instead of zeroing it: the buffer stays untouched.
  const before = onesSum(buf, off, IPV4_OFFSET_CSUM);
  return internetChecksum(buf, off + IPV4_OFFSET_CSUM + 2, hl - IPV4_OFFSET_CSUM - 2, before);
}

/**
 * parseIpv4 validates like checkIpv4 and returns the header as an object (addresses and options
 * copied), or the reason it was refused. Allocates: not for the per-packet path.
 */
export function parseIpv4(buf: Uint8Array, off: number, len: number, opts?: { readonly verifyChecksum?: boolean }): Ipv4Header | Ipv4ParseError {
  const c = checkIpv4(buf, off, len, opts?.verifyChecksum ?? false);
  if (c !== 'ok') return c;
  const hl = ipv4HeaderLength(buf, off);
  const frag = readU16(buf, off + IPV4_OFFSET_FRAG);
  return {
    headerLength: hl,
    tos: buf[off + IPV4_OFFSET_TOS],
    totalLength: ipv4TotalLength(buf, off),
    identification: readU16(buf, off + IPV4_OFFSET_ID),
    dontFragment: (frag & IPV4_FLAG_DF) !== 0,
    moreFragments: (frag & IPV4_FLAG_MF) !== 0,
    fragmentOffset: (frag & IPV4_FRAG_OFFSET_MASK) * IPV4_FRAG_UNIT_BYTES,
    ttl: buf[off + IPV4_OFFSET_TTL],
    protocol: buf[off + IPV4_OFFSET_PROTO],
    checksum: readU16(buf, off + IPV4_OFFSET_CSUM),
    src: copyBytes(buf, off + IPV4_OFFSET_SRC, off + IPV4_OFFSET_SRC + IPV4_ADDR_LEN),
    dst: copyBytes(buf, off + IPV4_OFFSET_DST, off + IPV4_OFFSET_DST + IPV4_ADDR_LEN),
    options: copyBytes(buf, off + IPV4_OFFSET_OPTIONS, off + hl),
  };
}

/** ipv4HeaderEncodingLength is the number of bytes encodeIpv4Header writes for h. */
export function ipv4HeaderEncodingLength(h: Pick<Ipv4HeaderFields, 'options'>): number {
  return IPV4_HEADER_MIN_LEN + h.options.length;
}

/**
 * encodeIpv4Header writes h at buf[off] with a freshly computed header checksum and returns the
 * number of bytes written. Throws RangeError on fields that cannot be encoded or too little room
 * (a programming error, not bad input).
 */
export function encodeIpv4Header(h: Ipv4HeaderFields, buf: Uint8Array, off: number): number {
  const hl = ipv4HeaderEncodingLength(h);
  if (h.options.length % 4 !== 0 || hl > IPV4_HEADER_MAX_LEN) throw new RangeError(`IPv4 options must be a multiple of 4 bytes, at most 40 (got ${h.options.length})`);
  if (h.src.length !== IPV4_ADDR_LEN || h.dst.length !== IPV4_ADDR_LEN) throw new RangeError('IPv4 addresses must be 4 bytes');
  if (h.fragmentOffset % IPV4_FRAG_UNIT_BYTES !== 0 || h.fragmentOffset / IPV4_FRAG_UNIT_BYTES > IPV4_FRAG_OFFSET_MASK) throw new RangeError(`bad IPv4 fragment offset ${h.fragmentOffset}`);
  if (h.totalLength < hl || h.totalLength > IPV4_MAX_PACKET_LEN) throw new RangeError(`bad IPv4 total length ${h.totalLength}`);
  if (!inBounds(buf, off, hl)) throw new RangeError('buffer too small for the IPv4 header');
  buf[off + IPV4_OFFSET_VERSION_IHL] = 0x40 | (hl / 4);
  buf[off + IPV4_OFFSET_TOS] = h.tos & 0xff;
  writeU16(buf, off + IPV4_OFFSET_TOTAL_LEN, h.totalLength);
  writeU16(buf, off + IPV4_OFFSET_ID, h.identification);
  writeU16(buf, off + IPV4_OFFSET_FRAG,
    (h.dontFragment ? IPV4_FLAG_DF : 0) | (h.moreFragments ? IPV4_FLAG_MF : 0) | (h.fragmentOffset / IPV4_FRAG_UNIT_BYTES));
  buf[off + IPV4_OFFSET_TTL] = h.ttl & 0xff;
  buf[off + IPV4_OFFSET_PROTO] = h.protocol & 0xff;
  buf.set(h.src, off + IPV4_OFFSET_SRC);
  buf.set(h.dst, off + IPV4_OFFSET_DST);
  buf.set(h.options, off + IPV4_OFFSET_OPTIONS);
  writeU16(buf, off + IPV4_OFFSET_CSUM, 0);
  writeU16(buf, off + IPV4_OFFSET_CSUM, internetChecksum(buf, off, hl));
  return hl;
}
