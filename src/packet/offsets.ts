/**
 * packet/offsets.ts: every header offset, size, flag and protocol number the packet layer and the
 * steering rewrite use, written once, next to a picture of the header it describes.
 */

/** IpFamily is the IP version of an address or packet. Same shape as io/types.ts Family. */
export type IpFamily = 4 | 6;

// IPv4 header (RFC 791 §3.1)
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  0 |Version|  IHL  |Type of Service|          Total Length         |
//  4 |         Identification        |Flags|      Fragment Offset    |
//  8 |  Time to Live |    Protocol   |         Header Checksum       |
// 12 |                       Source Address                          |
// 16 |                    Destination Address                        |
// 20 |                    Options (IHL > 5)                          |

/** IPV4_HEADER_MIN_LEN is the size of an IPv4 header without options (IHL = 5). */
export const IPV4_HEADER_MIN_LEN = 20;
/** IPV4_HEADER_MAX_LEN is the size of an IPv4 header with 40 bytes of options (IHL = 15). */
export const IPV4_HEADER_MAX_LEN = 60;
/** IPV4_MAX_PACKET_LEN is the largest value the total-length field can hold. */
export const IPV4_MAX_PACKET_LEN = 65535;
export const IPV4_OFFSET_VERSION_IHL = 0;
export const IPV4_OFFSET_TOS = 1;
export const IPV4_OFFSET_TOTAL_LEN = 2;
export const IPV4_OFFSET_ID = 4;
/** IPV4_OFFSET_FRAG holds the 3 flag bits and the 13-bit fragment offset (in 8-byte units). */
export const IPV4_OFFSET_FRAG = 6;
export const IPV4_OFFSET_TTL = 8;
export const IPV4_OFFSET_PROTO = 9;
export const IPV4_OFFSET_CSUM = 10;
export const IPV4_OFFSET_SRC = 12;
export const IPV4_OFFSET_DST = 16;
export const IPV4_OFFSET_OPTIONS = 20;
/** IPV4_ADDR_LEN is the size of an IPv4 address in bytes. */
export const IPV4_ADDR_LEN = 4;
/** IPV4_FLAG_RESERVED is the reserved (evil) bit of the flags/fragment word. */
export const IPV4_FLAG_RESERVED = 0x8000;
/** IPV4_FLAG_DF is Don't Fragment in the flags/fragment word. */
export const IPV4_FLAG_DF = 0x4000;
/** IPV4_FLAG_MF is More Fragments in the flags/fragment word. */
export const IPV4_FLAG_MF = 0x2000;
/** IPV4_FRAG_OFFSET_MASK selects the fragment offset (8-byte units) from the flags/fragment word. */
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;
/** IPV4_FRAG_UNIT_BYTES is the unit of the fragment offset field. */
export const IPV4_FRAG_UNIT_BYTES = 8;

// IPv6 header (RFC 8200 §3)
//
//  0 |Version| Traffic Class |           Flow Label                  |
//  4 |         Payload Length        |  Next Header  |   Hop Limit   |
//  8 |                 Source Address (16 bytes)                     |
// 24 |              Destination Address (16 bytes)                   |

/** IPV6_HEADER_LEN is the size of the fixed IPv6 header. */
export const IPV6_HEADER_LEN = 40;
export const IPV6_OFFSET_VERSION_CLASS_FLOW = 0;
export const IPV6_OFFSET_PAYLOAD_LEN = 4;
export const IPV6_OFFSET_NEXT_HEADER = 6;
export const IPV6_OFFSET_HOP_LIMIT = 7;
export const IPV6_OFFSET_SRC = 8;
export const IPV6_OFFSET_DST = 24;
/** IPV6_ADDR_LEN is the size of an IPv6 address in bytes. */
export const IPV6_ADDR_LEN = 16;
/** IPV6_MAX_PAYLOAD_LEN is the largest value the payload-length field can hold (no jumbograms). */
export const IPV6_MAX_PAYLOAD_LEN = 65535;

// IPv6 extension headers (RFC 8200 §4). Hop-by-hop, routing and destination options share the
// first two bytes (next header, length in 8-byte units not counting the first 8 bytes); the
// fragment header is always 8 bytes; AH counts its length in 4-byte units minus 2 (RFC 4302).
//
// Fragment header:  0 | Next Header |   Reserved  |   Fragment Offset (13)  |Res|M|
//                   4 |                     Identification                      |
// Routing header:   0 | Next Header | Hdr Ext Len | Routing Type | Segments Left |

export const IPV6_EXT_HOP_BY_HOP = 0;
export const IPV6_EXT_ROUTING = 43;
export const IPV6_EXT_FRAGMENT = 44;
export const IPV6_EXT_DEST_OPTS = 60;
/** IPV6_NO_NEXT_HEADER says nothing follows (RFC 8200 §4.7). */
export const IPV6_NO_NEXT_HEADER = 59;
export const IPV6_EXT_OFFSET_NEXT_HEADER = 0;
export const IPV6_EXT_OFFSET_LEN = 1;
/** IPV6_EXT_LEN_UNIT_BYTES is the unit of Hdr Ext Len for hop-by-hop, routing and dest options. */
export const IPV6_EXT_LEN_UNIT_BYTES = 8;
export const IPV6_ROUTING_OFFSET_SEGMENTS_LEFT = 3;
export const IPV6_FRAG_HEADER_LEN = 8;
/** IPV6_FRAG_OFFSET_FRAG is the offset of the 16-bit offset/flags word in the fragment header. */
export const IPV6_FRAG_OFFSET_FRAG = 2;
export const IPV6_FRAG_OFFSET_ID = 4;
/** IPV6_FRAG_OFFSET_MASK selects the fragment offset, already in bytes, from the offset/flags word. */
export const IPV6_FRAG_OFFSET_MASK = 0xfff8;
/** IPV6_FRAG_UNIT_BYTES: every fragment but the last carries a multiple of 8 bytes. */
export const IPV6_FRAG_UNIT_BYTES = 8;
/** IPV6_FRAG_FLAG_M is the More Fragments bit of the offset/flags word. */
export const IPV6_FRAG_FLAG_M = 0x0001;
/** IPV6_MAX_EXT_HEADERS bounds the extension-header walk; a longer chain is treated as bad. */
export const IPV6_MAX_EXT_HEADERS = 8;

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"); IPv6 next-header values share them.

export const PROTO_ICMP = 1;
/** PROTO_IPIP is IPv4 in IP; it is also the ESP next header for a tunnelled IPv4 packet. */
export const PROTO_IPIP = 4;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_DCCP = 33;
/** PROTO_IPV6 is IPv6 in IP; it is also the ESP next header for a tunnelled IPv6 packet. */
export const PROTO_IPV6 = 41;
export const PROTO_ESP = 50;
export const PROTO_AH = 51;
export const PROTO_ICMPV6 = 58;
export const PROTO_SCTP = 132;
export const PROTO_UDPLITE = 136;
/** AH_LEN_UNIT_BYTES is the unit of the AH payload-length field (RFC 4302 §2.2: length in 4-byte words minus 2). */
export const AH_LEN_UNIT_BYTES = 4;

// Transport headers: only what the rewrite and the builders touch.

export const L4_OFFSET_SRC_PORT = 0;
export const L4_OFFSET_DST_PORT = 2;
export const TCP_HEADER_MIN_LEN = 20;
export const TCP_OFFSET_SEQ = 4;
export const TCP_OFFSET_ACK = 8;
/** TCP_OFFSET_DATA_OFF holds the header length in 4-byte words in its upper nibble. */
export const TCP_OFFSET_DATA_OFF = 12;
export const TCP_OFFSET_FLAGS = 13;
export const TCP_OFFSET_WINDOW = 14;
export const TCP_OFFSET_CSUM = 16;
export const UDP_HEADER_LEN = 8;
export const UDP_OFFSET_LEN = 4;
/** UDP_OFFSET_CSUM: a zero checksum means "none" over IPv4 (RFC 768); a computed zero is sent as 0xFFFF. */
export const UDP_OFFSET_CSUM = 6;
export const UDPLITE_OFFSET_CSUM = 6;
export const DCCP_OFFSET_CSUM = 6;

// ICMP (RFC 792) and ICMPv6 (RFC 4443) share the first 8 bytes' layout:
//
//  0 |     Type      |     Code      |          Checksum             |
//  4 |   rest of header (id/seq, unused, next-hop MTU, pointer ...)  |
//  8 |   body: for errors, as much of the offending packet as fits   |

/** ICMP_HEADER_LEN is the size of the ICMP and ICMPv6 header before the body. */
export const ICMP_HEADER_LEN = 8;
export const ICMP_OFFSET_TYPE = 0;
export const ICMP_OFFSET_CODE = 1;
export const ICMP_OFFSET_CSUM = 2;
/** ICMP_OFFSET_REST is the second 32-bit word (echo id/seq, next-hop MTU, pointer). */
export const ICMP_OFFSET_REST = 4;
/** ICMP_OFFSET_BODY is where an error message quotes the offending packet. */
export const ICMP_OFFSET_BODY = 8;

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_SOURCE_QUENCH = 4;
export const ICMP_REDIRECT = 5;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAM_PROBLEM = 12;
export const ICMP_CODE_PORT_UNREACH = 3;
/** ICMP_CODE_FRAG_NEEDED is "fragmentation needed and DF set"; the next-hop MTU is in bytes 6-7 (RFC 1191). */
export const ICMP_CODE_FRAG_NEEDED = 4;

export const ICMPV6_DEST_UNREACH = 1;
/** ICMPV6_PACKET_TOO_BIG carries the MTU in bytes 4-7. */
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAM_PROBLEM = 4;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_CODE_PORT_UNREACH = 4;
