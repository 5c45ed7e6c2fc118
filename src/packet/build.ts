/**
 * packet/build.ts: builders for whole packets with correct checksums: TCP, UDP and ICMP/ICMPv6
 * messages, IPv4/IPv6 packets around them, ICMP errors quoting a packet, and fragmentation.
 * For tests, in-memory twins and the rare control path (eg. answering 'too-big' with an ICMP
 * error). They allocate and throw RangeError on impossible specs; never use them per packet.
 */

import { formatIpAddress, parseIpAddress } from './address.js';
import { writeU16, writeU32 } from './bytes.js';
import { internetChecksum, onesSum, pseudoHeaderSum } from './checksum.js';
import { encodeIpv4Header, ipv4HeaderLength, ipv4TotalLength } from './ipv4.js';
import { encodeIpv6Header, findIpv6Transport, Ipv6Transport, ipv6PacketLength } from './ipv6.js';
import { pseudoChecksumOffset } from './l4.js';
import {
  ICMP_HEADER_LEN, ICMP_OFFSET_CODE, ICMP_OFFSET_CSUM, ICMP_OFFSET_REST, ICMP_OFFSET_TYPE, IPV4_ADDR_LEN,
  IPV4_FLAG_MF, IPV4_FRAG_UNIT_BYTES, IPV4_OFFSET_DST, IPV4_OFFSET_FRAG, IPV4_OFFSET_PROTO, IPV4_OFFSET_SRC,
  IPV4_OFFSET_TOTAL_LEN, IPV4_OFFSET_CSUM, IPV6_ADDR_LEN, IPV6_EXT_FRAGMENT, IPV6_FRAG_FLAG_M,
  IPV6_FRAG_HEADER_LEN, IPV6_FRAG_OFFSET_FRAG, IPV6_FRAG_OFFSET_ID, IPV6_FRAG_UNIT_BYTES, IPV6_HEADER_LEN, IPV6_OFFSET_DST,
  IPV6_OFFSET_NEXT_HEADER, IPV6_OFFSET_PAYLOAD_LEN, IPV6_OFFSET_SRC, L4_OFFSET_DST_PORT, L4_OFFSET_SRC_PORT,
  PROTO_DCCP, PROTO_ICMP, PROTO_ICMPV6, PROTO_UDP, PROTO_UDPLITE, TCP_HEADER_MIN_LEN, TCP_OFFSET_ACK,
  TCP_OFFSET_DATA_OFF, TCP_OFFSET_FLAGS, TCP_OFFSET_SEQ, TCP_OFFSET_WINDOW, UDP_HEADER_LEN, UDP_OFFSET_LEN,
} from './offsets.js';
import type { IpFamily } from './offsets.js';

const EMPTY = new Uint8Array(0);

/** TcpSegmentSpec describes a TCP segment without options. */
export interface TcpSegmentSpec {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq?: number;
  readonly ack?: number;
  /** flags is the flags byte (0x02 SYN, 0x10 ACK, 0x18 PSH|ACK ...); default ACK. */
  readonly flags?: number;
  readonly window?: number;
  readonly payload?: Uint8Array;
}

/** tcpSegment returns a TCP header (20 bytes) plus payload with a zero checksum field. */
export function tcpSegment(s: TcpSegmentSpec): Buffer {
  const payload = s.payload ?? EMPTY;
  const b = Buffer.alloc(TCP_HEADER_MIN_LEN + payload.length);
  writeU16(b, L4_OFFSET_SRC_PORT, s.srcPort);
  writeU16(b, L4_OFFSET_DST_PORT, s.dstPort);
  writeU32(b, TCP_OFFSET_SEQ, s.seq ?? 1);
  writeU32(b, TCP_OFFSET_ACK, s.ack ?? 0);
  b[TCP_OFFSET_DATA_OFF] = (TCP_HEADER_MIN_LEN / 4) << 4;
  b[TCP_OFFSET_FLAGS] = s.flags ?? 0x10;
  writeU16(b, TCP_OFFSET_WINDOW, s.window ?? 65535);
  b.set(payload, TCP_HEADER_MIN_LEN);
  return b;
}

/** udpDatagram returns a UDP header plus payload with the length set and a zero checksum field. */
export function udpDatagram(srcPort: number, dstPort: number, payload: Uint8Array = EMPTY): Buffer {
  const b = Buffer.alloc(UDP_HEADER_LEN + payload.length);
  writeU16(b, L4_OFFSET_SRC_PORT, srcPort);
  writeU16(b, L4_OFFSET_DST_PORT, dstPort);
  writeU16(b, UDP_OFFSET_LEN, b.length);
  b.set(payload, UDP_HEADER_LEN);
  return b;
}

/**
 * icmpMessage returns an ICMP or ICMPv6 message (type, code, the 32-bit "rest of header" word and
 * a body) with a zero checksum field. For echo, rest = (id << 16) | seq; for frag-needed, the MTU
 * in the low 16 bits; for ICMPv6 packet-too-big, the MTU.
 */
export function icmpMessage(type: number, code: number, rest: number, body: Uint8Array = EMPTY): Buffer {
  const b = Buffer.alloc(ICMP_HEADER_LEN + body.length);
  b[ICMP_OFFSET_TYPE] = type;
  b[ICMP_OFFSET_CODE] = code;
  writeU32(b, ICMP_OFFSET_REST, rest);
  b.set(body, ICMP_HEADER_LEN);
  return b;
}

/** IpPacketSpec describes an IP packet around a transport payload; the family follows the addresses. */
export interface IpPacketSpec {
  readonly src: string;
  readonly dst: string;
  readonly protocol: number;
  /** payload is the transport header and data; its checksum is filled in (see fillTransportChecksum). */
  readonly payload: Uint8Array;
  /** ttl is the IPv4 TTL or IPv6 hop limit (default 64). */
  readonly ttl?: number;
  readonly tos?: number;
  readonly identification?: number;
  readonly dontFragment?: boolean;
  /** udpZeroChecksum leaves a UDP checksum at 0 ("no checksum", IPv4 only). */
  readonly udpZeroChecksum?: boolean;
}

/** buildIpPacket returns a complete IPv4 or IPv6 packet with every checksum computed from scratch. */
export function buildIpPacket(spec: IpPacketSpec): Buffer {
  const src = parseIpAddress(spec.src);
  const dst = parseIpAddress(spec.dst);
  if (src === undefined || dst === undefined || src.family !== dst.family) throw new RangeError(`bad addresses ${spec.src} -> ${spec.dst}`);
  let b: Buffer;
  let l4: number;
  if (src.family === 4) {
    l4 = 20;
    b = Buffer.alloc(l4 + spec.payload.length);
    encodeIpv4Header({
      tos: spec.tos ?? 0, totalLength: b.length, identification: spec.identification ?? 0x1234,
      dontFragment: spec.dontFragment ?? true, moreFragments: false, fragmentOffset: 0, ttl: spec.ttl ?? 64,
      protocol: spec.protocol, src: src.bytes, dst: dst.bytes, options: EMPTY,
    }, b, 0);
  } else {
    l4 = IPV6_HEADER_LEN;
    b = Buffer.alloc(l4 + spec.payload.length);
    encodeIpv6Header({
      trafficClass: spec.tos ?? 0, flowLabel: 0, payloadLength: spec.payload.length, nextHeader: spec.protocol,
      hopLimit: spec.ttl ?? 64, src: src.bytes, dst: dst.bytes,
    }, b, 0);
  }
  b.set(spec.payload, l4);
  if (!(spec.udpZeroChecksum === true && spec.protocol === PROTO_UDP)) fillTransportChecksum(b, 0, b.length);
  return b;
}

const scratch = new Ipv6Transport();

/**
 * transportChecksum computes from scratch the checksum that belongs in the transport header of
 * the complete, unfragmented packet at pkt[off, off + len) (IPv6 extension headers are skipped):
 * TCP, UDP (a computed 0 becomes 0xFFFF), ICMP and ICMPv6. Returns -1 for other protocols or
 * when the transport header is incomplete. The stored checksum field is ignored.
 */
export function transportChecksum(pkt: Uint8Array, off: number, len: number): number {
  const loc = locateTransport(pkt, off, len);
  if (loc === undefined) return -1;
  const { family, protocol, l4, end } = loc;
  const csumAt = transportCsumOffset(protocol, family);
  if (csumAt < 0 || end - l4 < csumAt + 2) return -1;
  let initial = 0;
  if (protocol !== PROTO_ICMP) {
    initial = family === 4
      ? pseudoHeaderSum(pkt, off + IPV4_OFFSET_SRC, off + IPV4_OFFSET_DST, IPV4_ADDR_LEN, protocol, end - l4)
      : pseudoHeaderSum(pkt, off + IPV6_OFFSET_SRC, off + IPV6_OFFSET_DST, IPV6_ADDR_LEN, protocol, end - l4);
  }
  // Sum around the checksum field so the packet is not modified.
  const before = onesSum(pkt, l4, csumAt, initial);
  const c = internetChecksum(pkt, l4 + csumAt + 2, end - l4 - csumAt - 2, before);
  return protocol === PROTO_UDP && c === 0 ? 0xffff : c;
}

/** fillTransportChecksum stores transportChecksum in place; returns false when there is none to fill. */
export function fillTransportChecksum(pkt: Uint8Array, off: number, len: number): boolean {
  const loc = locateTransport(pkt, off, len);
  const c = transportChecksum(pkt, off, len);
  if (loc === undefined || c < 0) return false;
  writeU16(pkt, loc.l4 + transportCsumOffset(loc.protocol, loc.family), c);
  return true;
}

function transportCsumOffset(protocol: number, family: IpFamily): number {
  if (protocol === PROTO_ICMP) return family === 4 ? ICMP_OFFSET_CSUM : -1;
  // Only checksums over the whole segment: UDP-Lite and DCCP may cover part of it.
  if (protocol === PROTO_UDPLITE || protocol === PROTO_DCCP) return -1;
  return pseudoChecksumOffset(protocol, family);
}

function locateTransport(pkt: Uint8Array, off: number, len: number): { family: IpFamily; protocol: number; l4: number; end: number } | undefined {
  if (len < 1) return undefined;
  const version = pkt[off] >> 4;
  if (version === 4) {
    const end = off + Math.min(len, ipv4TotalLength(pkt, off));
    return { family: 4, protocol: pkt[off + IPV4_OFFSET_PROTO], l4: off + ipv4HeaderLength(pkt, off), end };
  }
  if (version === 6 && len >= IPV6_HEADER_LEN) {
    const end = off + Math.min(len, ipv6PacketLength(pkt, off));
    if (findIpv6Transport(pkt, off, end, scratch) !== 'ok' || scratch.fragment === 'non-first') return undefined;
    return { family: 6, protocol: scratch.protocol, l4: scratch.offset, end };
  }
  return undefined;
}

/** IcmpErrorSpec describes an ICMP error about a packet: who sends it, and its type/code/rest word. */
export interface IcmpErrorSpec {
  /** from is the source of the error (a router or the destination); it goes back to the packet's source. */
  readonly from: string;
  readonly type: number;
  readonly code: number;
  readonly rest?: number;
  /** quoteLen is how many bytes of the packet to quote (default: all of it). */
  readonly quoteLen?: number;
}

/**
 * icmpErrorFor builds the ICMP (IPv4) or ICMPv6 error that `from` would send to the source of
 * `original` (a whole IP packet), quoting the first quoteLen bytes of it.
 */
export function icmpErrorFor(original: Uint8Array, spec: IcmpErrorSpec): Buffer {
  const v4 = original[0] >> 4 === 4;
  const srcOff = v4 ? IPV4_OFFSET_SRC : IPV6_OFFSET_SRC;
  const to = parseIpAddress(spec.from);
  if (to === undefined) throw new RangeError(`bad address ${spec.from}`);
  const dst = formatIpAddress(original, srcOff, v4 ? 4 : 6);
  const quote = original.subarray(0, Math.min(original.length, spec.quoteLen ?? original.length));
  return buildIpPacket({
    src: spec.from, dst, protocol: v4 ? PROTO_ICMP : PROTO_ICMPV6,
    payload: icmpMessage(spec.type, spec.code, spec.rest ?? 0, quote), dontFragment: false,
  });
}

/**
 * fragmentIpv4 splits the IPv4 packet (no options needed, any are copied into every fragment)
 * into fragments carrying at most dataLen bytes each (dataLen a multiple of 8), header
 * checksums recomputed. The transport checksum is left as it was: it covers the whole datagram.
 */
export function fragmentIpv4(pkt: Uint8Array, dataLen: number): Buffer[] {
  if (dataLen <= 0 || dataLen % IPV4_FRAG_UNIT_BYTES !== 0) throw new RangeError(`fragment data length ${dataLen} is not a positive multiple of 8`);
  const hl = ipv4HeaderLength(pkt, 0);
  const total = ipv4TotalLength(pkt, 0);
  const out: Buffer[] = [];
  for (let at = hl; at < total; at += dataLen) {
    const n = Math.min(dataLen, total - at);
    const f = Buffer.alloc(hl + n);
    f.set(pkt.subarray(0, hl), 0);
    f.set(pkt.subarray(at, at + n), hl);
    writeU16(f, IPV4_OFFSET_TOTAL_LEN, hl + n);
    const more = at + n < total ? IPV4_FLAG_MF : 0;
    writeU16(f, IPV4_OFFSET_FRAG, more | ((at - hl) / IPV4_FRAG_UNIT_BYTES));
    writeU16(f, IPV4_OFFSET_CSUM, 0);
    writeU16(f, IPV4_OFFSET_CSUM, internetChecksum(f, 0, hl));
    out.push(f);
  }
  return out;
}

/**
 * fragmentIpv6 splits an IPv6 packet without extension headers into fragments with a fragment
 * header (identification id) carrying at most dataLen bytes each (a multiple of 8).
 */
export function fragmentIpv6(pkt: Uint8Array, dataLen: number, id: number): Buffer[] {
  if (dataLen <= 0 || dataLen % IPV6_FRAG_UNIT_BYTES !== 0) throw new RangeError(`fragment data length ${dataLen} is not a positive multiple of 8`);
  const total = ipv6PacketLength(pkt, 0);
  const nh = pkt[IPV6_OFFSET_NEXT_HEADER];
  const out: Buffer[] = [];
  for (let at = IPV6_HEADER_LEN; at < total; at += dataLen) {
    const n = Math.min(dataLen, total - at);
    const f = Buffer.alloc(IPV6_HEADER_LEN + IPV6_FRAG_HEADER_LEN + n);
    f.set(pkt.subarray(0, IPV6_HEADER_LEN), 0);
    f[IPV6_OFFSET_NEXT_HEADER] = IPV6_EXT_FRAGMENT;
    writeU16(f, IPV6_OFFSET_PAYLOAD_LEN, IPV6_FRAG_HEADER_LEN + n);
    const fh = IPV6_HEADER_LEN;
    f[fh] = nh;
    const more = at + n < total ? IPV6_FRAG_FLAG_M : 0;
    writeU16(f, fh + IPV6_FRAG_OFFSET_FRAG, (at - IPV6_HEADER_LEN) | more);
    writeU32(f, fh + IPV6_FRAG_OFFSET_ID, id);
    f.set(pkt.subarray(at, at + n), fh + IPV6_FRAG_HEADER_LEN);
    out.push(f);
  }
  return out;
}
