/**
 * packet/checksum.ts: the Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * A "sum" here is a one's complement sum of 16-bit big-endian words, folded to 16 bits and not
 * complemented (0..0xFFFF). A "checksum" is the complement of a sum, as it sits in a header.
 * Words are aligned to the start of the range given, so a range must start at an even distance
 * from the start of the region the checksum covers.
 */

import { readU16, writeU16 } from './bytes.js';

/** fold16 folds a non-negative sum of 16-bit words (below 2^53) to 16 bits with end-around carry. */
export function fold16(sum: number): number {
  let s = sum;
  // Integer steps while the value fits 32 bits (every real packet); exact double steps beyond.
  while (s > 0xffffffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/**
 * onesSum is the folded one's complement sum of buf[off, off + len) taken as big-endian 16-bit
 * words, plus `initial` (a folded sum, eg. of a pseudo-header). An odd last byte is padded with a
 * zero byte (RFC 1071 §4.1). Allocation-free.
 */
export function onesSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let s = initial;
  const end = off + len;
  const evenEnd = off + (len & ~1);
  let i = off;
  // Accumulate in a double: exact up to 2^53, far beyond any packet; fold once at the end.
  for (; i < evenEnd; i += 2) s += (buf[i] << 8) | buf[i + 1];
  if (i < end) s += buf[i] << 8;
  return fold16(s);
}

/** internetChecksum is the value to store in a checksum field: the complement of onesSum. */
export function internetChecksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return ~onesSum(buf, off, len, initial) & 0xffff;
}

/**
 * checksumAdjust returns checksum `hc` updated for covered data whose sum changed from `oldSum` to
 * `newSum`: RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'). m and m' may be single 16-bit words or the
 * folded sums of equally aligned ranges (eg. a 4- or 16-byte address before and after). Unlike
 * RFC 1141's HC' = HC + m + ~m' it never turns a result of 0x0000 into 0xFFFF (-0); see RFC 1624 §4.
 */
export function checksumAdjust(hc: number, oldSum: number, newSum: number): number {
  return ~fold16((~hc & 0xffff) + (~oldSum & 0xffff) + (newSum & 0xffff)) & 0xffff;
}

/** checksumUpdateField applies checksumAdjust to the checksum stored at buf[csumOff] in place. */
export function checksumUpdateField(buf: Uint8Array, csumOff: number, oldSum: number, newSum: number): void {
  writeU16(buf, csumOff, checksumAdjust(readU16(buf, csumOff), oldSum, newSum));
}

/**
 * checksumReplaceWord writes the 16-bit word `value` at buf[wordOff] and folds the change into the
 * checksum field at buf[csumOff] (which must cover that word at an even distance). Allocation-free.
 */
export function checksumReplaceWord(buf: Uint8Array, wordOff: number, value: number, csumOff: number): void {
  const old = readU16(buf, wordOff);
  writeU16(buf, wordOff, value);
  checksumUpdateField(buf, csumOff, old, value & 0xffff);
}

/**
 * checksumReplaceAddress copies a len-byte address (4 or 16) from src[srcOff] over buf[addrOff]
 * and folds the change into the checksum field at buf[csumOff]. For an address that is also in a
 * pseudo-header, call checksumUpdateField for the transport checksum with the same two sums
 * (see addressSum). Allocation-free.
 */
export function checksumReplaceAddress(
  buf: Uint8Array, addrOff: number, src: Uint8Array, srcOff: number, len: number, csumOff: number,
): void {
  const oldSum = onesSum(buf, addrOff, len);
  for (let i = 0; i < len; i++) buf[addrOff + i] = src[srcOff + i];
  checksumUpdateField(buf, csumOff, oldSum, onesSum(buf, addrOff, len));
}

/**
 * pseudoHeaderSum is the folded sum of the TCP/UDP/ICMPv6 pseudo-header: source and destination
 * address (addrLen 4 or 16 bytes, read from buf), the protocol and the upper-layer length
 * (RFC 793 §3.1, RFC 768, RFC 8200 §8.1). Pass it as `initial` to internetChecksum.
 */
export function pseudoHeaderSum(
  buf: Uint8Array, srcOff: number, dstOff: number, addrLen: number, protocol: number, l4Len: number,
): number {
  // IPv6 carries a 32-bit length; as 16-bit words that is (len >>> 16) + (len & 0xffff).
  return onesSum(buf, dstOff, addrLen, onesSum(buf, srcOff, addrLen, protocol + (l4Len >>> 16) + (l4Len & 0xffff)));
}
