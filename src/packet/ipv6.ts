/**
 * packet/ipv6.ts: IPv6 header validation, views, the encode/parse pair (RFC 8200 §3) and the
 * extension-header walk that finds the transport header (RFC 8200 §4).
 *
 * checkIpv6, the ipv6* accessors and findIpv6Transport read in place and never allocate or throw;
 * parseIpv6 returns a copied header object for the control plane and tests.
 */

import { copyBytes, inBounds, readU16, writeU16, writeU32 } from './bytes.js';
import {
  AH_LEN_UNIT_BYTES, IPV6_ADDR_LEN, IPV6_EXT_DEST_OPTS, IPV6_EXT_FRAGMENT, IPV6_EXT_HOP_BY_HOP,
  IPV6_EXT_LEN_UNIT_BYTES, IPV6_EXT_OFFSET_LEN, IPV6_EXT_OFFSET_NEXT_HEADER, IPV6_EXT_ROUTING,
  IPV6_FRAG_HEADER_LEN, IPV6_FRAG_OFFSET_FRAG, IPV6_FRAG_OFFSET_MASK, IPV6_HEADER_LEN, IPV6_MAX_EXT_HEADERS,
  IPV6_MAX_PAYLOAD_LEN, IPV6_NO_NEXT_HEADER, IPV6_OFFSET_DST, IPV6_OFFSET_HOP_LIMIT, IPV6_OFFSET_NEXT_HEADER,
  IPV6_OFFSET_PAYLOAD_LEN, IPV6_OFFSET_SRC, IPV6_OFFSET_VERSION_CLASS_FLOW, IPV6_ROUTING_OFFSET_SEGMENTS_LEFT,
  PROTO_AH,
} from './offsets.js';

/**
 * Ipv6ParseError is why an IPv6 header was refused: 'truncated' (fewer than 40 bytes, or fewer
 * than 40 + payload length) or 'bad-version' (version nibble not 6). Jumbograms (payload length
 * 0 with a jumbo option) are not supported: such a packet is taken as having no payload.
 */
export type Ipv6ParseError = 'truncated' | 'bad-version';

/** Ipv6Check is checkIpv6's answer. */
export type Ipv6Check = 'ok' | Ipv6ParseError;

/** Ipv6HeaderFields are the fixed header's fields. */
export interface Ipv6HeaderFields {
  readonly trafficClass: number;
  /** flowLabel is 20 bits. */
  readonly flowLabel: number;
  /** payloadLength counts everything after the fixed 40 bytes, extension headers included. */
  readonly payloadLength: number;
  readonly nextHeader: number;
  readonly hopLimit: number;
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
}

/** Ipv6Header is a parsed fixed header (the fields are all there is to it). */
export type Ipv6Header = Ipv6HeaderFields;

/**
 * checkIpv6 validates the IPv6 header at buf[off] with len bytes available: version 6 and
 * 40 + payload length <= len. Bytes after that are allowed: trim to ipv6PacketLength.
 */
export function checkIpv6(buf: Uint8Array, off: number, len: number): Ipv6Check {
  if (!inBounds(buf, off, len) || len < IPV6_HEADER_LEN) return 'truncated';
  if (buf[off + IPV6_OFFSET_VERSION_CLASS_FLOW] >> 4 !== 6) return 'bad-version';
  if (ipv6PacketLength(buf, off) > len) return 'truncated';
  return 'ok';
}

/** ipv6PayloadLength is the payload-length field of the header at buf[off]. */
export function ipv6PayloadLength(buf: Uint8Array, off: number): number {
  return readU16(buf, off + IPV6_OFFSET_PAYLOAD_LEN);
}

/** ipv6PacketLength is 40 + payload length of the header at buf[off]. */
export function ipv6PacketLength(buf: Uint8Array, off: number): number {
  return IPV6_HEADER_LEN + readU16(buf, off + IPV6_OFFSET_PAYLOAD_LEN);
}

/** ipv6NextHeader is the next-header field of the fixed header at buf[off]. */
export function ipv6NextHeader(buf: Uint8Array, off: number): number {
  return buf[off + IPV6_OFFSET_NEXT_HEADER];
}

/** parseIpv6 validates like checkIpv6 and returns the fixed header as an object (addresses copied). */
export function parseIpv6(buf: Uint8Array, off: number, len: number): Ipv6Header | Ipv6ParseError {
  const c = checkIpv6(buf, off, len);
  if (c !== 'ok') return c;
  const w0 = ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
  return {
    trafficClass: (w0 >>> 20) & 0xff,
    flowLabel: w0 & 0xfffff,
    payloadLength: ipv6PayloadLength(buf, off),
    nextHeader: buf[off + IPV6_OFFSET_NEXT_HEADER],
    hopLimit: buf[off + IPV6_OFFSET_HOP_LIMIT],
    src: copyBytes(buf, off + IPV6_OFFSET_SRC, off + IPV6_OFFSET_SRC + IPV6_ADDR_LEN),
    dst: copyBytes(buf, off + IPV6_OFFSET_DST, off + IPV6_OFFSET_DST + IPV6_ADDR_LEN),
  };
}

/** ipv6HeaderEncodingLength is the number of bytes encodeIpv6Header writes: always 40. */
export function ipv6HeaderEncodingLength(): number {
  return IPV6_HEADER_LEN;
}

/**
 * encodeIpv6Header writes the fixed header h at buf[off] and returns the number of bytes written.
 * Throws RangeError on fields that cannot be encoded or too little room (a programming error).
 */
export function encodeIpv6Header(h: Ipv6HeaderFields, buf: Uint8Array, off: number): number {
  if (h.src.length !== IPV6_ADDR_LEN || h.dst.length !== IPV6_ADDR_LEN) throw new RangeError('IPv6 addresses must be 16 bytes');
  if (h.payloadLength < 0 || h.payloadLength > IPV6_MAX_PAYLOAD_LEN) throw new RangeError(`bad IPv6 payload length ${h.payloadLength}`);
  if (h.flowLabel < 0 || h.flowLabel > 0xfffff) throw new RangeError(`bad IPv6 flow label ${h.flowLabel}`);
  if (!inBounds(buf, off, IPV6_HEADER_LEN)) throw new RangeError('buffer too small for the IPv6 header');
  writeU32(buf, off + IPV6_OFFSET_VERSION_CLASS_FLOW, ((6 << 28) | ((h.trafficClass & 0xff) << 20) | h.flowLabel) >>> 0);
  writeU16(buf, off + IPV6_OFFSET_PAYLOAD_LEN, h.payloadLength);
  buf[off + IPV6_OFFSET_NEXT_HEADER] = h.nextHeader & 0xff;
  buf[off + IPV6_OFFSET_HOP_LIMIT] = h.hopLimit & 0xff;
  buf.set(h.src, off + IPV6_OFFSET_SRC);
  buf.set(h.dst, off + IPV6_OFFSET_DST);
  return IPV6_HEADER_LEN;
}

/**
 * Ipv6Fragment says where a packet sits in a fragmented datagram: 'none' (no fragment header),
 * 'first' (offset 0: the transport header is here) or 'non-first' (no transport header).
 */
export type Ipv6Fragment = 'none' | 'first' | 'non-first';

/**
 * Ipv6Transport is findIpv6Transport's output, a caller-owned scratch object reused per packet so
 * the walk allocates nothing. Not safe for concurrent use.
 */
export class Ipv6Transport {
  /** protocol is the first next-header value that is not an extension header we skip. */
  protocol = IPV6_NO_NEXT_HEADER;
  /** offset is the absolute index in buf of that header (for 'non-first', of the fragment data). */
  offset = 0;
  fragment: Ipv6Fragment = 'none';
  /**
   * routingPending is true when a routing header has segments left > 0: the destination field is
   * then not the final destination, and the pseudo-header uses the final one (RFC 8200 §8.1).
   */
  routingPending = false;
}

/** Ipv6TransportResult is findIpv6Transport's answer: 'bad-extension' is a chain longer than IPV6_MAX_EXT_HEADERS. */
export type Ipv6TransportResult = 'ok' | 'truncated' | 'bad-extension';

/**
 * findIpv6Transport walks the extension headers of the IPv6 packet whose fixed header starts at
 * buf[off], reading no byte at or beyond the absolute index `end`, and fills `out`. It skips
 * hop-by-hop (0), routing (43), destination options (60), AH (51) and fragment (44) headers; it
 * stops after a fragment header with a non-zero offset (out.fragment = 'non-first'). The caller
 * must have checked that buf[off, off + 40) is available.
 */
export function findIpv6Transport(buf: Uint8Array, off: number, end: number, out: Ipv6Transport): Ipv6TransportResult {
  let nh = buf[off + IPV6_OFFSET_NEXT_HEADER];
  let p = off + IPV6_HEADER_LEN;
  out.fragment = 'none';
  out.routingPending = false;
  for (let n = 0; n <= IPV6_MAX_EXT_HEADERS; n++) {
    let extLen: number;
    if (nh === IPV6_EXT_HOP_BY_HOP || nh === IPV6_EXT_ROUTING || nh === IPV6_EXT_DEST_OPTS) {
      if (p + IPV6_EXT_LEN_UNIT_BYTES > end) return 'truncated';
      if (nh === IPV6_EXT_ROUTING && buf[p + IPV6_ROUTING_OFFSET_SEGMENTS_LEFT] !== 0) out.routingPending = true;
      extLen = (buf[p + IPV6_EXT_OFFSET_LEN] + 1) * IPV6_EXT_LEN_UNIT_BYTES;
    } else if (nh === PROTO_AH) {
      if (p + IPV6_EXT_LEN_UNIT_BYTES > end) return 'truncated';
      extLen = (buf[p + IPV6_EXT_OFFSET_LEN] + 2) * AH_LEN_UNIT_BYTES;
    } else if (nh === IPV6_EXT_FRAGMENT) {
      if (p + IPV6_FRAG_HEADER_LEN > end) return 'truncated';
      const first = (readU16(buf, p + IPV6_FRAG_OFFSET_FRAG) & IPV6_FRAG_OFFSET_MASK) === 0;
      out.fragment = first ? 'first' : 'non-first';
      extLen = IPV6_FRAG_HEADER_LEN;
      if (!first) {
        out.protocol = buf[p + IPV6_EXT_OFFSET_NEXT_HEADER];
        out.offset = p + extLen;
        return 'ok';
      }
    } else {
      out.protocol = nh;
      out.offset = p;
      return p > end ? 'truncated' : 'ok';
    }
    nh = buf[p + IPV6_EXT_OFFSET_NEXT_HEADER];
    p += extLen;
  }
  return 'bad-extension';
}
