/**
 * io/vnet.ts: the virtio_net_hdr of a TUN opened with IFF_VNET_HDR, and what the data path does
 * with it: complete a partial checksum, split a TCP super-packet (TSO) into MTU-sized segments.
 * Pure functions over Buffers; no I/O. wireguard-go does the same since 2023
 * (tun/offload_linux.go gsoSplit); the segment rules are the kernel's (net/ipv4/tcp_offload.c
 * tcp_gso_segment, net/ipv4/af_inet.c inet_gso_segment).
 *
 * With TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) the kernel may hand the TUN reader:
 *   - a packet whose transport checksum is only partial (VNET_F_NEEDS_CSUM): the field at
 *     csumStart + csumOffset holds the pseudo-header sum; the reader must finish it
 *     (completeChecksum), because the peer's kernel checks it;
 *   - a TCP "super-packet" of up to 64 KiB (gsoType TCPV4/TCPV6): one IP header, one TCP header,
 *     and payload to cut into gsoSize-byte segments, each with its own IP length, IPv4 id and
 *     header checksum, TCP sequence number, flags and checksum (gsoSplit).
 *
 * Layout (struct virtio_net_hdr, 10 bytes, little-endian on every host espgate runs on; the TUN
 * device is in the host's byte order unless TUNSETVNETBE/LE says otherwise):
 *   u8 flags | u8 gso_type | u16 hdr_len | u16 gso_size | u16 csum_start | u16 csum_offset
 */
import { fold16, onesSum, pseudoHeaderSum } from '../packet/checksum.js';

/** VNET_HDR_LEN is sizeof(struct virtio_net_hdr): what TUNSETVNETHDRSZ defaults to. */
export const VNET_HDR_LEN = 10;
/** VNET_F_NEEDS_CSUM: the checksum at csumStart + csumOffset is partial (pseudo-header only). */
export const VNET_F_NEEDS_CSUM = 1;
/** VNET_F_DATA_VALID: (on write) the checksum need not be verified. espgate never sets it. */
export const VNET_F_DATA_VALID = 2;
/** GSO_NONE .. GSO_UDP_L4 are the gso_type values (linux/virtio_net.h); GSO_ECN is a flag bit. */
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_UDP = 3;
export const GSO_TCPV6 = 4;
export const GSO_UDP_L4 = 5;
export const GSO_ECN = 0x80;

/** TUN_F_CSUM .. TUN_F_USO6 are the TUNSETOFFLOAD bits (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;
/** TUN_OFFLOAD_TSO is what espgate asks for: checksum offload and TSO for both families. */
export const TUN_OFFLOAD_TSO = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

/** VnetHdr is one decoded virtio_net_hdr; readVnetHdr fills a caller-owned one (no allocation). */
export interface VnetHdr {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** newVnetHdr returns a zeroed VnetHdr to reuse with readVnetHdr. */
export function newVnetHdr(): VnetHdr {
  return { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
}

/** readVnetHdr decodes the header at b[off, off + VNET_HDR_LEN) into h. */
export function readVnetHdr(b: Uint8Array, off: number, h: VnetHdr): VnetHdr {
  h.flags = b[off];
  h.gsoType = b[off + 1];
  h.hdrLen = b[off + 2] | (b[off + 3] << 8);
  h.gsoSize = b[off + 4] | (b[off + 5] << 8);
  h.csumStart = b[off + 6] | (b[off + 7] << 8);
  h.csumOffset = b[off + 8] | (b[off + 9] << 8);
  return h;
}

/** writeVnetHdr encodes h at b[off, off + VNET_HDR_LEN) (tests and GSO writes). */
export function writeVnetHdr(h: VnetHdr, b: Uint8Array, off: number): void {
  b[off] = h.flags;
  b[off + 1] = h.gsoType;
  b[off + 2] = h.hdrLen & 0xff;
  b[off + 3] = h.hdrLen >>> 8;
  b[off + 4] = h.gsoSize & 0xff;
  b[off + 5] = h.gsoSize >>> 8;
  b[off + 6] = h.csumStart & 0xff;
  b[off + 7] = h.csumStart >>> 8;
  b[off + 8] = h.csumOffset & 0xff;
  b[off + 9] = h.csumOffset >>> 8;
}

/**
 * completeChecksum finishes the partial checksum of pkt[off, off+len) as VNET_F_NEEDS_CSUM asks:
 * the one's complement of the sum from csumStart to the end, where the field at csumStart +
 * csumOffset already holds the pseudo-header sum. Returns false (drop the packet) when the
 * offsets do not fit in the packet.
 */
export function completeChecksum(pkt: Uint8Array, off: number, len: number, csumStart: number, csumOffset: number): boolean {
  if (csumStart + csumOffset + 2 > len || (csumOffset & 1) !== 0) return false;
  const field = off + csumStart + csumOffset;
  const sum = onesSum(pkt, off + csumStart, len - csumStart);
  const c = ~sum & 0xffff;
  pkt[field] = c >>> 8;
  pkt[field + 1] = c & 0xff;
  return true;
}

/** GsoError says why gsoSplit refused a super-packet (the data path counts it as 'bad-inner'). */
export type GsoError = 'gso-type' | 'gso-headers' | 'gso-length' | 'gso-room';

const TCP_FLAG_FIN = 0x01;
const TCP_FLAG_PSH = 0x08;
const TCP_FLAG_CWR = 0x80;
const PROTO_TCP = 6;
const PROTO_UDP = 17;

/**
 * setIpLength sets the length of the IP packet at b[off, ...) with an l4-byte IP header to
 * `total`: IPv4 total length, identification (when id >= 0) and header checksum; IPv6 payload
 * length (no extension headers: l4 is 40).
 */
function setIpLength(b: Uint8Array, off: number, l4: number, v4: boolean, total: number, id = -1): void {
  if (!v4) {
    const pl = total - 40;
    b[off + 4] = pl >>> 8;
    b[off + 5] = pl & 0xff;
    return;
  }
  b[off + 2] = total >>> 8;
  b[off + 3] = total & 0xff;
  if (id >= 0) {
    b[off + 4] = id >>> 8;
    b[off + 5] = id & 0xff;
  }
  b[off + 10] = 0;
  b[off + 11] = 0;
  const hc = ~onesSum(b, off, l4) & 0xffff;
  b[off + 10] = hc >>> 8;
  b[off + 11] = hc & 0xff;
}

/**
 * gsoSegments returns how many segments gsoSplit will make of a super-packet of `len` bytes
 * whose headers take hdrLen bytes (0 when it is not one).
 */
export function gsoSegments(len: number, hdrLen: number, gsoSize: number): number {
  if (gsoSize <= 0 || len <= hdrLen) return 0;
  return Math.ceil((len - hdrLen) / gsoSize);
}

/**
 * gsoSplit cuts the TCP super-packet pkt[off, off+len) described by h (gsoType TCPV4 or TCPV6,
 * optionally with GSO_ECN) into segments of h.gsoSize payload bytes: segment k goes to
 * outs[first + k] at outOff, its length to sizes[first + k]. Every segment is a complete packet
 * with correct IP lengths, IPv4 id (the first one's + k) and header checksum, TCP sequence number
 * (+ k * gsoSize), flags (FIN and PSH on the last segment only, CWR on the first only) and a full
 * TCP checksum. h.hdrLen is not trusted: the headers' length comes from csumStart and the TCP
 * data offset. `from` and `max` make segments [from, from + max) only (a caller with fewer free
 * slots than segments splits in rounds: 0 made means done). Returns the number of segments
 * made, or why the packet is refused (nothing useful was written then). Allocation-free.
 */
export function gsoSplit(h: VnetHdr, pkt: Uint8Array, off: number, len: number,
  outs: readonly Uint8Array[], outOff: number, sizes: Int32Array, first: number,
  from = 0, max = Number.MAX_SAFE_INTEGER): number | GsoError {
  const type = h.gsoType & ~GSO_ECN;
  if (type !== GSO_TCPV4 && type !== GSO_TCPV6) return 'gso-type';
  if (len < 1) return 'gso-headers';
  const version = pkt[off] >>> 4;
  const l4 = h.csumStart;
  if (type === GSO_TCPV4) {
    if (version !== 4 || len < 20) return 'gso-headers';
    if (l4 !== (pkt[off] & 0x0f) * 4 || l4 < 20 || pkt[off + 9] !== PROTO_TCP) return 'gso-headers';
    const total = (pkt[off + 2] << 8) | pkt[off + 3];
    if (total !== 0 && total !== len) return 'gso-length';
  } else {
    // Extension headers are not supported (the kernel's TSO does not produce them for TCP here).
    if (version !== 6 || len < 40 || l4 !== 40 || pkt[off + 6] !== PROTO_TCP) return 'gso-headers';
    const payload = (pkt[off + 4] << 8) | pkt[off + 5];
    if (payload + 40 !== len) return 'gso-length';
  }
  if (l4 + 20 > len) return 'gso-headers';
  const tcpHdrLen = (pkt[off + l4 + 12] >>> 4) * 4;
  const hdrLen = l4 + tcpHdrLen;
  if (tcpHdrLen < 20 || hdrLen > len) return 'gso-headers';
  const mss = h.gsoSize;
  const n = gsoSegments(len, hdrLen, mss);
  if (n === 0) return 'gso-length';
  const end = Math.min(n, from + max);
  if (from >= end) return 0;
  if (first + end - from > outs.length || first + end - from > sizes.length) return 'gso-room';
  for (let k = from; k < end; k++) {
    const o = outs[first + k - from];
    if (outOff + hdrLen + Math.min(mss, len - hdrLen - k * mss) > o.length) return 'gso-room';
  }

  const v4 = type === GSO_TCPV4;
  const id = v4 ? (pkt[off + 4] << 8) | pkt[off + 5] : 0;
  const seq = ((pkt[off + l4 + 4] << 24) | (pkt[off + l4 + 5] << 16) | (pkt[off + l4 + 6] << 8) | pkt[off + l4 + 7]) >>> 0;
  const flags = pkt[off + l4 + 13];
  const srcOff = v4 ? 12 : 8;
  const addrLen = v4 ? 4 : 16;
  for (let k = from; k < end; k++) {
    const o = outs[first + k - from];
    const dataOff = off + hdrLen + k * mss;
    const dataLen = Math.min(mss, off + len - dataOff);
    const segLen = hdrLen + dataLen;
    o.set(pkt.subarray(off, off + hdrLen), outOff);
    o.set(pkt.subarray(dataOff, dataOff + dataLen), outOff + hdrLen);
    // IP: lengths, and for IPv4 the id and the header checksum.
    setIpLength(o, outOff, l4, v4, segLen, (id + k) & 0xffff);
    // TCP: sequence number, flags, checksum.
    const t = outOff + l4;
    const s = (seq + k * mss) >>> 0;
    o[t + 4] = s >>> 24;
    o[t + 5] = (s >>> 16) & 0xff;
    o[t + 6] = (s >>> 8) & 0xff;
    o[t + 7] = s & 0xff;
    let f = flags;
    if (k !== n - 1) f &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH);
    if (k !== 0) f &= ~TCP_FLAG_CWR;
    o[t + 13] = f;
    o[t + 16] = 0;
    o[t + 17] = 0;
    const tcpLen = segLen - l4;
    const ph = pseudoHeaderSum(o, outOff + srcOff, outOff + srcOff + addrLen, addrLen, PROTO_TCP, tcpLen);
    const c = ~fold16(onesSum(o, t, tcpLen, ph)) & 0xffff;
    o[t + 16] = c >>> 8;
    o[t + 17] = c & 0xff;
    sizes[first + k - from] = segLen;
  }
  return end - from;
}

/** GRO_MAX_BYTES is the largest packet GroBatch builds (an IPv4 total length). */
export const GRO_MAX_BYTES = 65_535;
/** GRO_SCAN_ITEMS bounds how far back add() looks for the packet's flow (older items stay as they are). */
const GRO_SCAN_ITEMS = 8;
const TCP_FLAG_ACK = 0x10;
/**
 * GRO_UDP_MAX_SEGMENTS is the most datagrams one UDP super-packet holds: the kernel refuses a
 * GSO_UDP_L4 write of more (UDP_MAX_SEGMENTS, 64 before Linux 6.9).
 */
export const GRO_UDP_MAX_SEGMENTS = 64;
const UDP_HDR = 8;

/**
 * defaultUdpGro says whether GroBatch coalesces UDP too (ESPGATE_UDP_GRO=0 turns it off, for
 * A/B runs or a kernel older than 6.2 that refuses GSO_UDP_L4 writes; the engine also turns
 * it off by itself after the first refused write).
 */
export function defaultUdpGro(): boolean {
  return process.env['ESPGATE_UDP_GRO'] !== '0';
}

/**
 * plainL4 returns where the transport header of buf[off, off+len) starts when the packet is one
 * GroBatch may coalesce: IPv4 without options and not a fragment (20), or IPv6 without
 * extension headers (40), its IP length equal to len; -1 otherwise. The protocol is then at
 * buf[off + 9] (IPv4) or buf[off + 6] (IPv6).
 */
function plainL4(buf: Uint8Array, off: number, len: number): number {
  if (len < 20) return -1;
  const b0 = buf[off];
  if (b0 === 0x45) {
    return (((buf[off + 6] << 8) | buf[off + 7]) & 0x3fff) === 0 && ((buf[off + 2] << 8) | buf[off + 3]) === len ? 20 : -1;
  }
  return b0 >>> 4 === 6 && len >= 40 && ((buf[off + 4] << 8) | buf[off + 5]) + 40 === len ? 40 : -1;
}

/**
 * GroBatch coalesces the TCP segments (and UDP datagrams) of one inbound batch into
 * super-packets for a TUN with IFF_VNET_HDR (the reverse of gsoSplit; wireguard-go
 * tun/offload_linux.go handleGRO, kernel tcp_gro_receive and udp_gro_receive_segment): the
 * receiving stack then runs once per super-packet instead of once per segment. add() each packet of the batch in order (views: the bytes must stay put until the
 * batch is written), then for each item k in order: itemCount(k) === 1 → write packet
 * itemPacket(k) as it is; more → build(k) and write that with its header.
 *
 * A packet joins the newest item of its flow (same addresses and ports, looked up among the
 * last GRO_SCAN_ITEMS items) when: IPv4 without options and not a fragment / IPv6 without
 * extension headers; TCP flags ACK or ACK|PSH; payload > 0; sequence number right after the
 * item's; TOS/TTL (traffic class, flow label, hop limit), DF, ack number, window, TCP header
 * length and options equal to the item's first packet; payload no longer than the first's
 * (segment size); the result at most GRO_MAX_BYTES. PSH or a short segment ends an item. Any
 * other packet is an item of its own, so order within a flow never changes.
 *
 * UDP (when `udp`): a datagram joins the newest item of its flow (addresses and ports) when
 * both are IPv4 without options and not fragments / IPv6 without extension headers, the UDP
 * length matches, the payload is not empty and no longer than the item's first (segment size),
 * TOS/TTL/DF (traffic class, flow label, hop limit) are equal, the item holds fewer than
 * GRO_UDP_MAX_SEGMENTS and the result stays within GRO_MAX_BYTES. A shorter datagram ends an
 * item. The kernel splits the GSO_UDP_L4 super-packet back into the same datagrams (payloads
 * and ports unchanged; IPv4 IDs renumbered from the first's, UDP checksums recomputed).
 *
 * Checksums: a super-packet goes out as VNET_F_NEEDS_CSUM, so the kernel computes fresh
 * transport checksums and does not verify the ones the peer sent; the ESP ICV has already
 * authenticated every byte of each packet as the peer sealed it. Not safe for concurrent use;
 * allocation-free after construction.
 */
export class GroBatch<B extends Uint8Array = Uint8Array> {
  readonly capacity: number;
  /** udp: coalesce UDP datagrams too (settable: the engine turns it off if the kernel refuses them). */
  udp: boolean;
  #n = 0;
  #items = 0;
  readonly #bufs: (B | undefined)[];
  readonly #offs: Int32Array;
  readonly #lens: Int32Array;
  /** per packet: the next packet of its item (-1: last). */
  readonly #next: Int32Array;
  /** per item: first packet, last packet, count, payload bytes, segment size, next sequence number. */
  readonly #first: Int32Array;
  readonly #last: Int32Array;
  readonly #count: Int32Array;
  readonly #payload: Int32Array;
  readonly #gso: Int32Array;
  readonly #nextSeq: Float64Array;
  /** per item: 0 closed, 1 open (may take more), and the L4 offset and TCP/UDP header length (-1: neither). */
  readonly #open: Uint8Array;
  /** per item: 1 for UDP, 0 for TCP (or not coalescable). */
  readonly #isUdp: Uint8Array;
  readonly #l4: Int32Array;
  readonly #th: Int32Array;

  constructor(capacity: number, udp = true) {
    this.capacity = capacity;
    this.udp = udp;
    this.#bufs = new Array<B | undefined>(capacity).fill(undefined);
    this.#offs = new Int32Array(capacity);
    this.#lens = new Int32Array(capacity);
    this.#next = new Int32Array(capacity);
    this.#first = new Int32Array(capacity);
    this.#last = new Int32Array(capacity);
    this.#count = new Int32Array(capacity);
    this.#payload = new Int32Array(capacity);
    this.#gso = new Int32Array(capacity);
    this.#nextSeq = new Float64Array(capacity);
    this.#open = new Uint8Array(capacity);
    this.#isUdp = new Uint8Array(capacity);
    this.#l4 = new Int32Array(capacity);
    this.#th = new Int32Array(capacity);
  }

  /** packets is how many packets were added since reset(). */
  get packets(): number {
    return this.#n;
  }

  /** items is how many writes the batch takes. */
  get items(): number {
    return this.#items;
  }

  /** full says add() would refuse: write the batch first. */
  get full(): boolean {
    return this.#n === this.capacity;
  }

  /** reset forgets every packet (and drops the references to their buffers). */
  reset(): void {
    for (let i = 0; i < this.#n; i++) this.#bufs[i] = undefined;
    this.#n = 0;
    this.#items = 0;
  }

  /** itemCount is how many packets item k holds. */
  itemCount(k: number): number {
    return this.#count[k];
  }

  /** itemPacket is the index of item k's first packet (for packetBuf, packetOff, packetLen). */
  itemPacket(k: number): number {
    return this.#first[k];
  }

  /** packetBuf/packetOff/packetLen locate packet i (as given to add). */
  packetBuf(i: number): B | undefined {
    return this.#bufs[i];
  }

  /** nextPacket is the packet after i in its item, or -1 (walk an item from itemPacket(k)). */
  nextPacket(i: number): number {
    return this.#next[i];
  }

  packetOff(i: number): number {
    return this.#offs[i];
  }

  packetLen(i: number): number {
    return this.#lens[i];
  }

  /** itemUdp says whether item k is UDP datagrams (its super-packet is GSO_UDP_L4). */
  itemUdp(k: number): boolean {
    return this.#isUdp[k] === 1;
  }

  /** itemBytes is the length of item k once built (the packet's own length when it holds one). */
  itemBytes(k: number): number {
    const f = this.#first[k];
    if (this.#count[k] === 1) return this.#lens[f];
    return this.#l4[k] + this.#th[k] + this.#payload[k];
  }

  /** add appends the complete IP packet buf[off, off+len). Returns false when the batch is full. */
  add(buf: B, off: number, len: number): boolean {
    if (this.#n === this.capacity) return false;
    const i = this.#n++;
    this.#bufs[i] = buf;
    this.#offs[i] = off;
    this.#lens[i] = len;
    this.#next[i] = -1;
    // Parse once: is it a TCP segment (or UDP datagram) that may join or start an item?
    const plain = plainL4(buf, off, len);
    const proto = plain === 20 ? buf[off + 9] : plain === 40 ? buf[off + 6] : -1;
    if (this.udp && proto === PROTO_UDP && this.#addUdp(i, buf, off, len, plain)) return true;
    let l4 = proto === PROTO_TCP && len >= plain + 20 ? plain : -1;
    let th = 0;
    let payload = 0;
    let flags = 0;
    if (l4 > 0) {
      th = (buf[off + l4 + 12] >>> 4) * 4;
      if (th < 20 || l4 + th > len) l4 = -1;
      else {
        payload = len - l4 - th;
        flags = buf[off + l4 + 13];
      }
    }
    const candidate = l4 > 0 && payload > 0 && (flags & ~(TCP_FLAG_ACK | TCP_FLAG_PSH)) === 0 && (flags & TCP_FLAG_ACK) !== 0;
    const seq = l4 > 0 ? ((buf[off + l4 + 4] << 24) | (buf[off + l4 + 5] << 16) | (buf[off + l4 + 6] << 8) | buf[off + l4 + 7]) >>> 0 : 0;
    if (l4 > 0) {
      for (let k = this.#items - 1; k >= 0 && k >= this.#items - GRO_SCAN_ITEMS; k--) {
        if (this.#isUdp[k] === 1 || this.#l4[k] !== l4 || !this.#sameFlow(k, buf, off, l4)) continue;
        // The newest item of this flow: join it, or start a new one after it.
        if (candidate && this.#open[k] === 1 && this.#canJoin(k, buf, off, l4, th, payload, seq)) {
          this.#join(k, i, payload);
          this.#nextSeq[k] = (seq + payload) >>> 0;
          if (payload < this.#gso[k] || (flags & TCP_FLAG_PSH) !== 0) this.#open[k] = 0;
          return true;
        }
        break;
      }
    }
    this.#startItem(i, payload, (seq + payload) >>> 0, candidate && (flags & TCP_FLAG_PSH) === 0, false, l4, th);
    return true;
  }

  /** #join appends packet i (payload bytes) to item k. */
  #join(k: number, i: number, payload: number): void {
    this.#next[this.#last[k]] = i;
    this.#last[k] = i;
    this.#count[k]++;
    this.#payload[k] += payload;
  }

  /** #startItem makes packet i a new item: its payload sets the segment size. */
  #startItem(i: number, payload: number, nextSeq: number, open: boolean, udp: boolean, l4: number, th: number): void {
    const k = this.#items++;
    this.#first[k] = i;
    this.#last[k] = i;
    this.#count[k] = 1;
    this.#payload[k] = payload;
    this.#gso[k] = payload;
    this.#nextSeq[k] = nextSeq;
    this.#open[k] = open ? 1 : 0;
    this.#isUdp[k] = udp ? 1 : 0;
    this.#l4[k] = l4;
    this.#th[k] = th;
  }

  /**
   * #addUdp takes packet i, a UDP datagram with its header at l4 (plainL4), if it can be
   * coalesced (see the class comment): joins its flow's newest open item or starts one.
   * False: not such a datagram (add goes on as for any other packet).
   */
  #addUdp(i: number, buf: B, off: number, len: number, l4: number): boolean {
    if (len <= l4 + UDP_HDR || ((buf[off + l4 + 4] << 8) | buf[off + l4 + 5]) !== len - l4) return false;
    const payload = len - l4 - UDP_HDR;
    for (let k = this.#items - 1; k >= 0 && k >= this.#items - GRO_SCAN_ITEMS; k--) {
      if (this.#isUdp[k] !== 1 || this.#l4[k] !== l4 || !this.#sameFlow(k, buf, off, l4)) continue;
      if (this.#open[k] === 1 && this.#canJoinUdp(k, buf, off, l4, payload)) {
        this.#join(k, i, payload);
        if (payload < this.#gso[k] || this.#count[k] === GRO_UDP_MAX_SEGMENTS) this.#open[k] = 0;
        return true;
      }
      break;
    }
    this.#startItem(i, payload, 0, true, true, l4, UDP_HDR);
    return true;
  }

  /** #canJoinUdp checks a datagram against UDP item k (the flow already matched). */
  #canJoinUdp(k: number, buf: Uint8Array, off: number, l4: number, payload: number): boolean {
    if (payload > this.#gso[k] || l4 + UDP_HDR + this.#payload[k] + payload > GRO_MAX_BYTES) return false;
    const f = this.#first[k];
    const h = this.#bufs[f];
    if (h === undefined) return false;
    const ho = this.#offs[f];
    if (l4 === 20) return h[ho + 1] === buf[off + 1] && (h[ho + 6] & 0x40) === (buf[off + 6] & 0x40) && h[ho + 8] === buf[off + 8];
    for (let j = 0; j < 4; j++) if (h[ho + j] !== buf[off + j]) return false;
    return h[ho + 7] === buf[off + 7];
  }

  /** #sameFlow compares addresses and ports with item k's first packet. */
  #sameFlow(k: number, buf: Uint8Array, off: number, l4: number): boolean {
    const f = this.#first[k];
    const h = this.#bufs[f];
    if (h === undefined) return false;
    const ho = this.#offs[f];
    const a = l4 === 20 ? 12 : 8;
    for (let j = a; j < l4; j++) if (h[ho + j] !== buf[off + j]) return false;
    for (let j = l4; j < l4 + 4; j++) if (h[ho + j] !== buf[off + j]) return false;
    return true;
  }

  /** #canJoin checks everything but the flow (see the class comment). */
  #canJoin(k: number, buf: Uint8Array, off: number, l4: number, th: number, payload: number, seq: number): boolean {
    if (th !== this.#th[k] || seq !== this.#nextSeq[k] || payload > this.#gso[k]) return false;
    if (l4 + th + this.#payload[k] + payload > GRO_MAX_BYTES) return false;
    const f = this.#first[k];
    const h = this.#bufs[f];
    if (h === undefined) return false;
    const ho = this.#offs[f];
    if (l4 === 20) {
      // TOS, DF, TTL
      if (h[ho + 1] !== buf[off + 1] || (h[ho + 6] & 0x40) !== (buf[off + 6] & 0x40) || h[ho + 8] !== buf[off + 8]) return false;
    } else {
      // version, traffic class, flow label; hop limit
      for (let j = 0; j < 4; j++) if (h[ho + j] !== buf[off + j]) return false;
      if (h[ho + 7] !== buf[off + 7]) return false;
    }
    // ack number; data offset; window; options
    const t = ho + l4;
    const u = off + l4;
    for (let j = 8; j < 12; j++) if (h[t + j] !== buf[u + j]) return false;
    if (h[t + 12] !== buf[u + 12] || h[t + 14] !== buf[u + 14] || h[t + 15] !== buf[u + 15]) return false;
    for (let j = 20; j < th; j++) if (h[t + j] !== buf[u + j]) return false;
    return true;
  }

  /**
   * build writes item k (two or more packets) as one super-packet at out[outOff, ...) and its
   * virtio_net_hdr into hdr: the first packet's headers with the lengths, the IPv4 header
   * checksum, PSH from the last packet, and the TCP checksum field holding the pseudo-header
   * sum (VNET_F_NEEDS_CSUM, as the kernel's own GRO leaves it). Returns the length, or -1 when
   * out is too short or the item is a single packet.
   */
  build(k: number, out: Uint8Array, outOff: number, hdr: VnetHdr): number {
    if (this.#count[k] < 2) return -1;
    const l4 = this.#l4[k];
    const hdrLen = l4 + this.#th[k];
    const total = hdrLen + this.#payload[k];
    if (outOff + total > out.length) return -1;
    let i = this.#first[k];
    const h = this.#bufs[i];
    if (h === undefined) return -1;
    const ho = this.#offs[i];
    out.set(h.subarray(ho, ho + hdrLen), outOff);
    let at = outOff + hdrLen;
    let lastFlags = 0;
    const udp = this.#isUdp[k] === 1;
    while (i >= 0) {
      const b = this.#bufs[i];
      if (b === undefined) return -1;
      const o = this.#offs[i];
      out.set(b.subarray(o + hdrLen, o + this.#lens[i]), at);
      at += this.#lens[i] - hdrLen;
      if (!udp) lastFlags = b[o + l4 + 13];
      i = this.#next[i];
    }
    const v4 = l4 === 20;
    setIpLength(out, outOff, l4, v4, total);
    const t = outOff + l4;
    const proto = udp ? PROTO_UDP : PROTO_TCP;
    // The checksum field holds the pseudo-header sum over the whole transport length; the
    // kernel adjusts it per segment (as its own GRO leaves it).
    const ph = v4 ? pseudoHeaderSum(out, outOff + 12, outOff + 16, 4, proto, total - l4)
      : pseudoHeaderSum(out, outOff + 8, outOff + 24, 16, proto, total - l4);
    const csumOffset = udp ? 6 : 16;
    if (udp) {
      out[t + 4] = (total - l4) >>> 8;
      out[t + 5] = (total - l4) & 0xff;
    } else out[t + 13] |= lastFlags & TCP_FLAG_PSH;
    out[t + csumOffset] = ph >>> 8;
    out[t + csumOffset + 1] = ph & 0xff;
    hdr.flags = VNET_F_NEEDS_CSUM;
    hdr.gsoType = udp ? GSO_UDP_L4 : v4 ? GSO_TCPV4 : GSO_TCPV6;
    hdr.hdrLen = hdrLen;
    hdr.gsoSize = this.#gso[k];
    hdr.csumStart = l4;
    hdr.csumOffset = csumOffset;
    return total;
  }
}
