/**
 * datapath/warmup.ts: gets V8 to optimise the data path at start-up, before real packets need it.
 *
 * Why: at low packet rates (a ping a second, an interactive session) the data path's functions
 * would run for minutes in V8's interpreter and baseline tiers. Measured in the lan lab: ping
 * RTT (100 x 10 ms) 0.64-1.01 ms with no warm-up, 0.53-0.77 ms after a TCP transfer had
 * optimised the path, 0.33-0.49 ms after this warm-up (docs/performance.md).
 *
 * Two parts:
 * - warmUpCodec seals and opens packets on throwaway SAs, every configured algorithm.
 * - PathWarmUp runs the whole path both ways (TUN read, NETMAP, seal, batched and lone sends;
 *   receive, open, replay window, coalescing, TUN write) through a second Engine over stand-ins
 *   of the daemon's own TUN and sender classes (io/stand-in.ts). It must take the branches real
 *   packets take, with the same object shapes: V8 throws optimised code away at the first
 *   branch it has no feedback for ("insufficient type feedback") or the first unseen class
 *   ("wrong map"), and then needs thousands of packets to optimise it again. Hence the daemon
 *   gives it SAs made like real ones (same reserver and replay store classes), lone packets
 *   as a ping sends them, out-of-order and far-ahead sequence numbers. `node --trace-deopt`
 *   on a daemon shows no deopt on the first real packets (checked in the lan lab).
 *
 * Nothing here touches the real SAs or the network: the throwaway SAs have their own keys
 * (and, from the daemon, their own files under stateDir/warmup, removed after), the stand-ins
 * are socketpairs.
 */
import { randomBytes } from 'node:crypto';

import type { AeadName } from '../esp/aead.js';
import { AEAD_ALGORITHMS } from '../esp/aead.js';
import { ESP_OFFSET_PAYLOAD, ESP_MAX_OVERHEAD, openEsp, parseEspHeader, sealEsp } from '../esp/codec.js';
import { InboundSa, OutboundSa } from '../esp/sa.js';
import { Sadb, parseOuterAddress } from '../esp/sadb.js';
import type { StandInIo } from '../io/stand-in.js';
import type { EspReceiver } from '../io/types.js';
import { GSO_NONE, GSO_TCPV4, GSO_TCPV6, VNET_F_NEEDS_CSUM, VNET_HDR_LEN, writeVnetHdr } from '../io/vnet.js';
import { buildIpPacket, icmpMessage, tcpSegment, udpDatagram } from '../packet/build.js';
import { pseudoHeaderSum } from '../packet/checksum.js';
import { PROTO_ESP, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from '../packet/offsets.js';
import { OffsetMap } from '../steer/fake-offset.js';
import { Engine, newPeerRuntime } from './engine.js';
import type { EngineTables, PeerRuntime } from './engine.js';
import { PrefixTable } from './prefix-table.js';

/** WARMUP_ROUNDS is the default number of seal + open pairs per algorithm (~20-60 ms in all). */
export const WARMUP_ROUNDS = 20_000;
/** WARMUP_SLICE_ROUNDS is how many rounds the daemon runs per event-loop turn (a few ms). */
export const WARMUP_SLICE_ROUNDS = 500;
/** WARMUP_SELF_CHECK_ROUNDS is the short round trip the daemon runs before it says 'up'. */
export const WARMUP_SELF_CHECK_ROUNDS = 20;

/** WARMUP_SPI is the throwaway SAs' SPI (never on the wire). */
const WARMUP_SPI = 0x0000_0100;

/**
 * warmUpCodec seals and opens `rounds` IPv4 and IPv6 packets of mixed sizes with each
 * algorithm. Returns the number of packets that round-tripped (2 x rounds x algorithms when
 * all is well: a smaller number means the codec is broken, and the caller should say so).
 */
export function warmUpCodec(algorithms: Iterable<AeadName>, rounds = WARMUP_ROUNDS): number {
  let ok = 0;
  const sizes = [40, 84, 576, 1400];
  const buf = Buffer.alloc(1500 + ESP_MAX_OVERHEAD);
  for (const algorithm of new Set(algorithms)) {
    const keyMaterial = randomBytes(AEAD_ALGORITHMS[algorithm].keyMaterialLength);
    const out = new OutboundSa({ spi: WARMUP_SPI, algorithm, keyMaterial });
    // A window as wide as the run, so no round trip is refused as too old.
    const inn = new InboundSa({ spi: WARMUP_SPI, algorithm, keyMaterial, replayWindow: 1024 });
    for (let i = 0; i < rounds; i++) {
      for (const version of [4, 6]) {
        const len = Math.max(sizes[i % sizes.length], version === 4 ? 20 : 40);
        buf[ESP_OFFSET_PAYLOAD] = version << 4;
        const n = sealEsp(out, buf, ESP_OFFSET_PAYLOAD, len, buf, 0);
        if (typeof n !== 'number') continue;
        if (typeof parseEspHeader(buf, 0, n) === 'string') continue;
        const r = openEsp(inn, buf, 0, n);
        if (typeof r === 'object' && r.innerLen === len) ok++;
      }
    }
  }
  return ok;
}

/** PATH_WARMUP_BATCHES is how many batches the daemon's path warm-up runs (each way, ~10 packets each). */
export const PATH_WARMUP_BATCHES = 2_000;
/** PATH_WARMUP_SLICE_BATCHES is how many batches the daemon runs per event-loop turn (~1-3 ms). */
export const PATH_WARMUP_SLICE_BATCHES = 10;

// The warm-up's addresses: documentation ranges, never on any wire (the stand-ins are socketpairs).
const W_LOCAL4 = '192.0.2.1';
const W_LOCAL6 = '2001:db8::1';
const W_PREFIXES = [{ real: '192.0.2.0/24', fake: '198.51.100.0/24' }, { real: '2001:db8::/64', fake: '2001:db8:0:1::/64' }];
/** Two peers, one per outer family; each protects one IPv4 and one IPv6 address. */
const W_PEERS = [
  { name: 'warmup-4', endpoint: '192.0.2.2', local: W_LOCAL4, in4: '192.0.2.2', in6: '2001:db8::2', fake4: '198.51.100.2', fake6: '2001:db8:0:1::2', spiOut: 0x0000_0110, spiIn: 0x0000_0111 },
  { name: 'warmup-6', endpoint: '2001:db8::a:2', local: '2001:db8::a:1', in4: '192.0.2.3', in6: '2001:db8::3', fake4: '198.51.100.3', fake6: '2001:db8:0:1::3', spiOut: 0x0000_0120, spiIn: 0x0000_0121 },
] as const;

const TCP_ACK = 0x10;
const TCP_PSH = 0x08;
/** The MSS of the warm-up's TCP super-packets and the size of its coalescable inbound segments. */
const W_MSS = 1200;
const W_GSO_SEGMENTS = 6;

/** WarmPacket is one prepared inner packet, with the virtio_net_hdr the kernel would give it. */
interface WarmPacket {
  readonly pkt: Buffer;
  readonly hdr: Uint8Array;
  /** segments is how many ESP packets it becomes outbound (more than 1 for a super-packet). */
  readonly segments: number;
}

/**
 * WarmSaMaker makes the warm-up's SAs. The daemon passes one built like its real SAs (the same
 * sequence reserver and replay store classes, on files of their own), so that the SA code the
 * warm-up optimises takes the branches real SAs take; the default makes bare SAs (tests).
 */
export interface WarmSaMaker {
  outbound(peer: string, spi: number, keyMaterial: Uint8Array): OutboundSa;
  inbound(peer: string, endpoint: string, spi: number, keyMaterial: Uint8Array): InboundSa;
}

const bareSas: WarmSaMaker = {
  outbound: (_peer, spi, keyMaterial) => new OutboundSa({ spi, algorithm: algorithmFor(keyMaterial), keyMaterial }),
  inbound: (peer, endpoint, spi, keyMaterial) => new InboundSa({ spi, algorithm: algorithmFor(keyMaterial), keyMaterial, peer, outerSource: parseOuterAddress(endpoint) }),
};

/** algorithmFor names the AES-GCM variant by key material length (key + 4-byte salt). */
function algorithmFor(keyMaterial: Uint8Array): AeadName {
  return keyMaterial.length === AEAD_ALGORITHMS.aes256gcm16.keyMaterialLength ? 'aes256gcm16' : 'aes128gcm16';
}

/** PathWarmUpReport counts what the path warm-up did; espSent === expectedSent etc. when all is well. */
export interface PathWarmUpReport {
  readonly batches: number;
  readonly expectedSent: number;
  readonly espSent: number;
  readonly sentTaken: number;
  readonly expectedWritten: number;
  readonly tunWritten: number;
  readonly drops: number;
}

function vnetHdrBytes(flags: number, gsoType: number, hdrLen: number, gsoSize: number, csumStart: number, csumOffset: number): Uint8Array {
  const b = new Uint8Array(VNET_HDR_LEN);
  writeVnetHdr({ flags, gsoType, hdrLen, gsoSize, csumStart, csumOffset }, b, 0);
  return b;
}

function echo(src: string, dst: string, v6: boolean, reply: boolean, seq: number): Buffer {
  const type = v6 ? (reply ? 129 : 128) : (reply ? 0 : 8);
  return buildIpPacket({ src, dst, protocol: v6 ? PROTO_ICMPV6 : PROTO_ICMP, payload: icmpMessage(type, 0, (0x4567 << 16) | seq, Buffer.alloc(56, 0x5a)) });
}

function udp(src: string, dst: string, size: number): Buffer {
  return buildIpPacket({ src, dst, protocol: PROTO_UDP, payload: udpDatagram(40001, 5201, Buffer.alloc(size, 0x33)) });
}

function tcp(src: string, dst: string, seq: number, size: number): Buffer {
  return buildIpPacket({ src, dst, protocol: PROTO_TCP, payload: tcpSegment({ srcPort: 40002, dstPort: 5201, seq, flags: TCP_ACK | TCP_PSH, payload: Buffer.alloc(size, 0x44) }) });
}

/**
 * PathWarmUp runs the whole data path, both directions, on throwaway tables and SAs over
 * stand-in I/O (io/stand-in.ts): TUN read (plain packets, packets with partial checksums and,
 * with offloads, TCP super-packets), NETMAP undo, seal, batched send; then receive, open,
 * replay check, NETMAP, coalescing and TUN write. The engine is a second Engine of the real
 * class with the real TUN and sender classes, so the code V8 optimises here is the code real
 * packets take, with the same object shapes. Its SAs, tables and counters are its own; the
 * stand-ins are socketpairs, so nothing reaches a network or the daemon's state.
 */
export class PathWarmUp {
  readonly #io: StandInIo;
  readonly engine: Engine;
  readonly #out: WarmPacket[] = [];
  /** #lone: the indexes in #out of the echo requests, sent one per batch every fourth batch. */
  readonly #lone: number[] = [];
  /** #peerSide: per warm peer, the peer-side SA that seals what "the peer" sends us. */
  readonly #peerSide: OutboundSa[] = [];
  readonly #peerKeys: Uint8Array[] = [];
  readonly #rx: { onPacket: (pkt: Buffer) => void; onBatchEnd: () => void } = { onPacket: () => {}, onBatchEnd: () => {} };
  readonly #arena = Buffer.alloc(20 * 2048);
  readonly #scratch = Buffer.alloc(70_000);
  readonly #vnet: boolean;
  #batches = 0;
  #expectedSent = 0;
  #expectedWritten = 0;
  #sentTaken = 0;
  #tcpSeq = 1;
  #closed = false;

  constructor(io: StandInIo, algorithms: readonly AeadName[], sas: WarmSaMaker = bareSas) {
    this.#io = io;
    this.#vnet = io.tun.vnetHdr === true;
    const algs = algorithms.length > 0 ? algorithms : (['aes128gcm16'] as const);
    const offsets = new OffsetMap(W_PREFIXES);
    const peerByDst4 = new PrefixTable<PeerRuntime>(4);
    const peerByDst6 = new PrefixTable<PeerRuntime>(6);
    const local4 = new PrefixTable<true>(4);
    const local6 = new PrefixTable<true>(6);
    local4.insert(parseOuterAddress(W_LOCAL4), 32, true);
    local6.insert(parseOuterAddress(W_LOCAL6), 128, true);
    const sadb = new Sadb();
    const peers = new Map<string, PeerRuntime>();
    W_PEERS.forEach((w, i) => {
      const algorithm = algs[i % algs.length] ?? 'aes128gcm16';
      const outKey = randomBytes(AEAD_ALGORITHMS[algorithm].keyMaterialLength);
      const inKey = randomBytes(AEAD_ALGORITHMS[algorithm].keyMaterialLength);
      const peer = newPeerRuntime(w.name, w.endpoint, w.endpoint.includes(':') ? 6 : 4);
      for (const [a, len] of [[w.in4, 32], [w.in6, 128]] as const) {
        const bytes = parseOuterAddress(a);
        (len === 32 ? peer.protect4 : peer.protect6).insert(bytes, len, true);
        (len === 32 ? peerByDst4 : peerByDst6).insert(bytes, len, peer);
      }
      peers.set(w.name, peer);
      sadb.setOutbound(w.name, sas.outbound(w.name, w.spiOut, outKey));
      sadb.addInbound(sas.inbound(w.name, w.endpoint, w.spiIn, inKey));
      // The peer side's SA is bare: it only seals what "the peer" sends us.
      this.#peerSide.push(new OutboundSa({ spi: w.spiIn, algorithm, keyMaterial: inKey }));
      this.#peerKeys.push(inKey);
    });
    const tables: EngineTables = { offsets, peerByDst4, peerByDst6, local4, local6, sadb, peers };
    const rx = this.#rx;
    const receiver: EspReceiver = {
      batched: true,
      start(onPacket, onBatchEnd) {
        rx.onPacket = onPacket;
        if (onBatchEnd !== undefined) rx.onBatchEnd = onBatchEnd;
      },
      close() {},
    };
    // The express path stays off here: the warm-up is for the engine's own code.
    this.engine = new Engine(tables, io.tun, io.sender, receiver, { express: false });
    this.engine.start();
    this.#prepareOutbound();
  }

  /** #prepareOutbound builds the TUN-side packets: what local applications send to the peers' fake addresses. */
  #prepareOutbound(): void {
    const none = new Uint8Array(VNET_HDR_LEN);
    for (const w of W_PEERS) {
      for (const v6 of [false, true]) {
        const src = v6 ? W_LOCAL6 : W_LOCAL4;
        const dst = v6 ? w.fake6 : w.fake4;
        const ip = v6 ? 40 : 20;
        const partialTcp = vnetHdrBytes(VNET_F_NEEDS_CSUM, GSO_NONE, 0, 0, ip, 16);
        const partialUdp = vnetHdrBytes(VNET_F_NEEDS_CSUM, GSO_NONE, 0, 0, ip, 6);
        this.#lone.push(this.#out.length);
        this.#out.push({ pkt: echo(src, dst, v6, false, 1), hdr: none, segments: 1 });
        this.#out.push({ pkt: partial(udp(src, dst, 64), v6, PROTO_UDP), hdr: partialUdp, segments: 1 });
        this.#out.push({ pkt: udp(src, dst, 1372), hdr: none, segments: 1 });
        this.#out.push({ pkt: partial(tcp(src, dst, 1, 0), v6, PROTO_TCP), hdr: partialTcp, segments: 1 });
        this.#out.push({ pkt: partial(tcp(src, dst, 1, W_MSS), v6, PROTO_TCP), hdr: partialTcp, segments: 1 });
        if (this.#vnet) {
          const gso = vnetHdrBytes(VNET_F_NEEDS_CSUM, v6 ? GSO_TCPV6 : GSO_TCPV4, ip + 20, W_MSS, ip, 16);
          this.#out.push({ pkt: tcp(src, dst, 1, W_MSS * W_GSO_SEGMENTS), hdr: gso, segments: W_GSO_SEGMENTS });
        }
      }
    }
  }

  /** run runs up to `batches` more batches each way; returns how many ran (0 once closed). */
  run(batches: number): number {
    let ran = 0;
    for (; ran < batches && !this.#closed; ran++) {
      this.#outboundBatch();
      this.#inboundBatch();
      this.#batches++;
    }
    return ran;
  }

  /**
   * #outboundBatch feeds the TUN a third of the prepared packets, or (every fourth batch) one
   * echo request alone, as a ping makes it; lets the engine drain it; takes the ESP.
   */
  #outboundBatch(): void {
    const io = this.#io;
    const n = this.#out.length;
    const third = Math.ceil(n / 3);
    const phase = this.#batches % 4;
    const lone = this.#lone[(this.#batches >> 2) % this.#lone.length];
    const [from, to] = phase === 3 ? [lone ?? 0, (lone ?? 0) + 1] : [phase * third, Math.min(n, (phase + 1) * third)];
    for (let i = from; i < to; i++) {
      const p = this.#out[i];
      if (p === undefined) continue;
      if (io.feedTun(this.#vnet ? p.hdr : undefined, p.pkt, 0, p.pkt.length)) this.#expectedSent += p.segments;
    }
    this.engine.drainTun();
    while (io.takeSent(this.#scratch) >= 0) this.#sentTaken++;
  }

  /** #inboundBatch seals what the peers send (echo replies, UDP, a run of TCP segments), delivers it as NFQUEUE would, and takes what the engine wrote. */
  #inboundBatch(): void {
    const io = this.#io;
    const k = this.#batches % W_PEERS.length;
    const w = W_PEERS[k];
    const sa = this.#peerSide[k];
    if (w === undefined || sa === undefined) return;
    const v6 = (this.#batches >> 1) % 2 === 1;
    const src = v6 ? w.in6 : w.in4;
    const dst = v6 ? W_LOCAL6 : W_LOCAL4;
    const inner = [echo(src, dst, v6, true, this.#batches & 0xffff)];
    if (this.#batches % 4 !== 3) {
      // Every fourth batch brings the echo reply alone (a ping); the others a mix and a TCP run to coalesce.
      // A run of equal datagrams (coalesced into one UDP super-packet when that is on), then others.
      inner.push(udp(src, dst, 64), udp(src, dst, 64), udp(src, dst, 64), udp(src, dst, 1372), tcp(src, dst, this.#tcpSeq, 0));
      for (let s = 0; s < W_GSO_SEGMENTS; s++) inner.push(tcp(src, dst, this.#tcpSeq + s * W_MSS, W_MSS));
      this.#tcpSeq = (this.#tcpSeq + W_GSO_SEGMENTS * W_MSS) >>> 0;
    }
    const outer6 = w.endpoint.includes(':');
    const outerLen = outer6 ? 40 : 20;
    const srcBytes = parseOuterAddress(w.endpoint);
    const dstBytes = parseOuterAddress(w.local);
    const pkts: Buffer[] = [];
    let at = 0;
    for (const p of inner) {
      const slot = this.#arena.subarray(at, at + 2048);
      at += 2048;
      slot.set(p, outerLen + ESP_OFFSET_PAYLOAD);
      const n = sealEsp(sa, slot, outerLen + ESP_OFFSET_PAYLOAD, p.length, slot, outerLen);
      if (typeof n !== 'number') continue;
      writeOuter(slot, outer6, srcBytes, dstBytes, n);
      pkts.push(slot.subarray(0, outerLen + n));
    }
    // Now and then the receive side's other branches: two packets out of order (a sequence
    // number left of the window's top), and a jump far ahead (the window slides by more than
    // its size), as a restarted or reordering peer brings them.
    if (this.#batches % 8 === 5 && pkts.length > 1) pkts.reverse();
    if (this.#batches % 200 === 100) this.#peerSide[k] = new OutboundSa({ spi: sa.spi, algorithm: sa.algorithm, keyMaterial: this.#peerKeys[k] ?? new Uint8Array(0), initialSeq: sa.seqLo + 5000 });
    for (const p of pkts) this.#rx.onPacket(p);
    this.#rx.onBatchEnd();
    this.#expectedWritten += pkts.length;
    while (io.takeWritten(this.#scratch) >= 0) { /* discard: the warm-up only counts */ }
  }

  report(): PathWarmUpReport {
    const t = this.engine.totals;
    return {
      batches: this.#batches, expectedSent: this.#expectedSent, espSent: t.espSent, sentTaken: this.#sentTaken,
      expectedWritten: this.#expectedWritten, tunWritten: t.tunWritten, drops: this.engine.drops.total(),
    };
  }

  /** close stops the engine and closes the stand-ins. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.engine.stop();
    this.#io.close();
  }
}

/**
 * partial replaces a packet's TCP or UDP checksum with the pseudo-header sum, as the kernel
 * hands a packet marked VNET_F_NEEDS_CSUM (the data path completes it).
 */
function partial(pkt: Buffer, v6: boolean, proto: number): Buffer {
  const ip = v6 ? 40 : 20;
  const at = ip + (proto === PROTO_TCP ? 16 : 6);
  const sum = v6 ? pseudoHeaderSum(pkt, 8, 24, 16, proto, pkt.length - ip) : pseudoHeaderSum(pkt, 12, 16, 4, proto, pkt.length - ip);
  pkt.writeUInt16BE(sum, at);
  return pkt;
}

/** writeOuter puts the outer IPv4 or IPv6 header (protocol ESP) in front of an ESP packet of espLen bytes. */
function writeOuter(b: Buffer, v6: boolean, src: Uint8Array, dst: Uint8Array, espLen: number): void {
  if (v6) {
    b.fill(0, 0, 40);
    b[0] = 0x60;
    b.writeUInt16BE(espLen, 4);
    b[6] = PROTO_ESP;
    b[7] = 64;
    b.set(src, 8);
    b.set(dst, 24);
    return;
  }
  b.fill(0, 0, 20);
  b[0] = 0x45;
  b.writeUInt16BE(20 + espLen, 2);
  b[8] = 64;
  b[9] = PROTO_ESP;
  b.set(src, 12);
  b.set(dst, 16);
}
