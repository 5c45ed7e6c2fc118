/**
 * datapath/engine.ts: the two directions of the data path, wired over the io/ interfaces.
 *
 * Outbound flow (one TUN readiness event → one batch):
 *   1. readTun      TunDevice.readBatch into pooled buffers at HEADROOM (room for ESP header + IV).
 *                   A TUN with offloads (tun.vnetHdr, io/vnet.ts) also gives a virtio_net_hdr per
 *                   packet: a partial checksum is completed in place; a TCP super-packet (TSO, up
 *                   to 64 KiB) is cut into MTU-sized segments in a segment pool, each of which
 *                   then goes through 2-5 like a packet read on its own
 *   2. unmap        rewriteOutbound: inner destination fake → real (ICMP errors: quoted source too)
 *   3. classify     inner source ∈ local.protect (else 'policy': the peer would drop it);
 *                   inner destination → peer (PrefixTable, O(1) per prefix length)
 *   4. seal         sealEsp with the peer's outbound SA (sequence assigned here, in order, never wraps)
 *   5. send         plain ESP: queued per outer family and sent with one EspSender.sendBatch
 *                   (sendmmsg) at the end of the TUN batch, when the sender has sendBatch and no
 *                   trace runs; otherwise EspSender.send per packet (the npm raw-socket path). The
 *                   kernel adds the outer IP header. Counters (sent, peer stats, 'send-error') are
 *                   settled per packet after the batch call, from its per-packet failure flags.
 *                   SA with UDP encapsulation (sa.encap, RFC 3948): EspUdpSender.sendEsp from local
 *                   port 4500 to the endpoint at sa.encap.remotePort (kernel adds IP + UDP headers),
 *                   per packet, at once
 *
 * Inbound flow (one ESP packet from NFQUEUE, outer IP header included; or one from UDP port 4500
 * through handleUdpEsp, SPI onward, with the sender's address beside it):
 *   1. outer        NFQUEUE: validate the outer IPv4/IPv6 header, find the ESP payload (fragments:
 *                   drop); UDP: the kernel did it, the ESP is the datagram
 *   ── from here on both entries share #inboundEsp: same checks, counters and bytes ──
 *   2. lookup       SPI → inbound SA → peer; the outer source must be that peer's endpoint
 *   3. open         replay check (no mutation) → ICV verify + decrypt → replay accept →
 *                   persist the window's top (one pwrite when it advanced)
 *   4. policy       inner is IP of the version next-header says; inner source ∈ peer.protect,
 *                   inner destination ∈ local.protect
 *   5. map          rewriteInbound: inner source real → fake (ICMP errors: quoted destination too)
 *   6. writeTun     TunDevice.write; the kernel routes, conntrack un-NATs. With a TUN that
 *                   coalesces (tun.writeVnet) and a receiver that delivers batches (NFQUEUE addon),
 *                   the packets of one receive batch are held (views into the receiver's slots)
 *                   and written when the batch ends: consecutive TCP segments of a flow as one
 *                   super-packet behind a GSO virtio_net_hdr (io/vnet.ts GroBatch), the rest
 *                   one by one, in order. UDP-encapsulated ESP is written at once.
 *
 * Nothing here throws per packet: every stage returns 'ok' or a DropReason, counted in
 * DropCounters (global) and in the SA's own counters. The engine is single-threaded: it runs on
 * the main event loop; per-SA sequence numbers are assigned in one place.
 */
import type { TunDevice, EspSender, EspReceiver, Family } from '../io/types.js';
import {
  GRO_MAX_BYTES, GSO_NONE, GroBatch, defaultUdpGro, VNET_F_NEEDS_CSUM, VNET_HDR_LEN, completeChecksum, gsoSplit, newVnetHdr, readVnetHdr,
  writeVnetHdr,
} from '../io/vnet.js';
import type { EspUdpHandler, EspUdpSender, KeepaliveTarget } from '../io/udp-encap.js';
import { DropCounters, type DropReason } from '../drops.js';
import { PrefixTable } from './prefix-table.js';
import { rewriteInbound, rewriteOutbound } from '../steer/rewrite.js';
import type { OffsetMap } from '../steer/fake-offset.js';
import { sealEsp, openEsp, parseEspHeader, ESP_HEADROOM, ESP_MAX_TAILROOM, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6 } from '../esp/codec.js';
import type { Sadb } from '../esp/sadb.js';
import type { InboundSa, OutboundSa } from '../esp/sa.js';
import type { Tracer } from './trace.js';
import { ExpressIn, ExpressOut, defaultExpress, defaultExpressThread } from './express.js';
import { addr } from './trace.js';

/** HEADROOM is reserved in front of each TUN read: ESP header + IV, so sealEsp works in place. */
export const HEADROOM = ESP_HEADROOM;
/** BATCH_SIZE is the number of packets read from the TUN per readiness event at most. */
export const BATCH_SIZE = 64;
/** MAX_PACKET is the largest inner packet we handle (TUN MTU is at most 9000). */
const MAX_PACKET = 9216;
/** SLOT_BYTES is one TUN read slot: headroom, the largest inner packet, the ESP tailroom. */
const SLOT_BYTES = HEADROOM + MAX_PACKET + ESP_MAX_TAILROOM;
/** GSO_MAX_BYTES is the largest super-packet a TUN with TSO may hand us: an IPv6 header + 64 KiB. */
const GSO_MAX_BYTES = 40 + 65_535;
/** VNET_SLOT_BYTES is a TUN read slot with offloads: a super-packet fits. */
const VNET_SLOT_BYTES = HEADROOM + GSO_MAX_BYTES + ESP_MAX_TAILROOM;
/** SEG_SLOTS is the segment pool: the segments of ~5 super-packets of 64 KiB at MSS 1,448; more are split in rounds. */
const SEG_SLOTS = 256;
/** SEND_QUEUE_SLOTS is how many sealed packets wait for one sendBatch at most (raw.cc kBatchMax). */
const SEND_QUEUE_SLOTS = 256;
/** GRO_BATCH_PACKETS is how many inbound packets wait for one coalesced write at most (one NFQUEUE batch). */
const GRO_BATCH_PACKETS = 64;

/**
 * SendQueue holds sealed ESP packets of one outer family until one EspSender.sendBatch sends
 * them: preallocated, reused for every batch (no per-packet objects; entries are references to
 * the TUN slots the packets were sealed in, and to their peers for the counters).
 */
class SendQueue {
  readonly family: Family;
  count = 0;
  readonly dsts: string[];
  readonly bufs: Buffer[];
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly failed: Uint8Array;
  /** peers[k], innerLens[k]: whom packet k is for and its inner size (peer stats after the send). */
  readonly peers: (PeerRuntime | undefined)[];
  readonly innerLens: Uint32Array;

  constructor(family: Family, capacity: number, filler: Buffer) {
    this.family = family;
    this.dsts = new Array<string>(capacity).fill('');
    this.bufs = new Array<Buffer>(capacity).fill(filler);
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.failed = new Uint8Array(capacity);
    this.peers = new Array<PeerRuntime | undefined>(capacity).fill(undefined);
    this.innerLens = new Uint32Array(capacity);
  }

  get full(): boolean {
    return this.count === this.dsts.length;
  }

  push(dst: string, buf: Buffer, off: number, len: number, peer: PeerRuntime, innerLen: number): void {
    const k = this.count++;
    this.dsts[k] = dst;
    this.bufs[k] = buf;
    this.offsets[k] = off;
    this.lengths[k] = len;
    this.peers[k] = peer;
    this.innerLens[k] = innerLen;
  }
}

/**
 * natKeepaliveTargets lists the peers whose outbound SA is UDP-encapsulated, as NAT keepalive
 * targets (UdpEncapSocket.startKeepalives asks for it every 20 s). Allocates: control plane.
 */
export function natKeepaliveTargets(tables: EngineTables): KeepaliveTarget[] {
  const out: KeepaliveTarget[] = [];
  for (const [name, sa] of tables.sadb.outboundSas()) {
    const peer = tables.peers.get(name);
    if (sa.encap === null || peer === undefined) continue;
    out.push({ family: peer.endpointFamily, address: peer.endpoint, port: sa.encap.remotePort });
  }
  return out;
}

/** PeerRuntime is one peer as the data path sees it. */
export interface PeerRuntime {
  readonly name: string;
  readonly endpoint: string;
  readonly endpointFamily: Family;
  /** protect4/protect6 hold the peer's protected prefixes, for the inbound source check. */
  readonly protect4: PrefixTable<true>;
  readonly protect6: PrefixTable<true>;
  /** stats for `espgate status` */
  readonly stats: PeerStats;
}

/** PeerStats are one peer's counters (PeerRuntime.stats). */
export interface PeerStats { txPackets: number; txBytes: number; rxPackets: number; rxBytes: number; lastRxMs: number; lastTxMs: number }

/**
 * newPeerRuntime makes a peer's record with empty protect tables (fresh counters unless
 * `stats` carries them over). Every PeerRuntime comes from here, the config's and the
 * warm-up's alike, so V8 sees one object shape on the data path (datapath/warmup.ts).
 */
export function newPeerRuntime(name: string, endpoint: string, endpointFamily: Family, stats?: PeerStats): PeerRuntime {
  return {
    name,
    endpoint,
    endpointFamily,
    protect4: new PrefixTable<true>(4),
    protect6: new PrefixTable<true>(6),
    stats: stats ?? { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, lastRxMs: 0, lastTxMs: 0 },
  };
}

/** EngineTables are what the control plane builds from the config (and later IKE) for the data path. */
export interface EngineTables {
  readonly offsets: OffsetMap;
  /** peerByDst4/6: inner real destination → peer (outbound classify). */
  readonly peerByDst4: PrefixTable<PeerRuntime>;
  readonly peerByDst6: PrefixTable<PeerRuntime>;
  /** local4/6: our protected addresses (inbound destination check). */
  readonly local4: PrefixTable<true>;
  readonly local6: PrefixTable<true>;
  /** sadb: inbound SAs by SPI (with their peer's outer source), outbound SAs by peer name. */
  readonly sadb: Sadb;
  /** peers by name (an inbound SA names its peer). */
  readonly peers: ReadonlyMap<string, PeerRuntime>;
}

const IPV4_SRC = 12;
const IPV4_DST = 16;
const IPV6_SRC = 8;
const IPV6_DST = 24;
const PROTO_ESP = 50;

/** Engine runs both directions. Create it, then start(); stop() detaches from the I/O. */
export class Engine {
  readonly drops = new DropCounters();
  /** totals: espSent/espReceived count both kinds of ESP; espUdpSent/espUdpReceived the UDP-encapsulated part. */
  readonly totals = { tunRead: 0, espSent: 0, espReceived: 0, tunWritten: 0, espUdpSent: 0, espUdpReceived: 0 };
  /** onDrop is called for every drop (rate-limited logging is the caller's job). */
  onDrop: (reason: DropReason, dir: 'in' | 'out', detail: string) => void = () => {};
  /**
   * onTiming, when set (the metrics endpoint is on), gets the processing time of each TUN batch
   * (out) and each ESP packet (in). Unset, the data path takes no timestamps for it.
   */
  onTiming: ((dir: 'in' | 'out', packets: number, seconds: number) => void) | undefined;
  /** #trace: see the trace accessor. */
  #trace: Tracer | undefined;
  /** #innerOff is where handleInbound found the inner packet (-1 before decryption): for traces. */
  #innerOff = -1;

  #tables: EngineTables;
  readonly #tun: TunDevice;
  readonly #sender: EspSender;
  readonly #receiver: EspReceiver;
  #udp: EspUdpSender | undefined;
  readonly #bufs: Buffer[];
  readonly #sizes = new Int32Array(BATCH_SIZE);
  /** #q4/#q6: sealed plain-ESP packets of the current TUN batch, per outer family (batched send). */
  readonly #q4: SendQueue;
  readonly #q6: SendQueue;
  /** #vnet: the TUN has offloads; #hdrs gets the batch's virtio_net_hdrs, #vh decodes one. */
  readonly #vnet: boolean;
  readonly #hdrs: Uint8Array;
  readonly #vh = newVnetHdr();
  /** #segBufs/#segSizes: the segment pool for split super-packets; #segUsed slots hold queued segments. */
  readonly #segBufs: Buffer[];
  readonly #segSizes: Int32Array;
  #segUsed = 0;
  /** #gro holds the inner packets of the current receive batch (coalescing on); #groBuf/#groHdr build one write. */
  readonly #gro: GroBatch<Buffer> | undefined;
  readonly #groBuf: Buffer;
  readonly #groHdr = newVnetHdr();
  readonly #groHdrBytes = new Uint8Array(VNET_HDR_LEN);
  /** #holding is true while a batched receiver delivers: #inboundEsp then holds instead of writing. */
  #holding = false;
  /**
   * #replayDirty: the inbound SAs whose replay window moved since the held packets began; their
   * tops are persisted once per batch, before any held packet is written (as for one packet).
   */
  readonly #replayDirty = new Set<InboundSa>();
  /** #groPeers[i]: the peer of held packet i, for its counters when the write fails. */
  readonly #groPeers: (PeerRuntime | undefined)[];
  #running = false;
  /** #express drives the TUN addon's outbound path for learned flows (datapath/express.ts); undefined when off. */
  readonly #express: ExpressOut | undefined;
  /** #exSrc/#exFake/#exReal: a lone packet's inner source and fake destination, kept to teach the express path. */
  readonly #exSrc = new Uint8Array(16);
  readonly #exFake = new Uint8Array(16);
  readonly #exReal = new Uint8Array(16);
  /** #expressIn drives the NFQUEUE addon's inbound path for learned flows; undefined when off. */
  readonly #expressIn: ExpressIn | undefined;
  /** #inBatch counts the packets of the receive batch under way; #inWritten is tunWritten when it began. */
  #inBatch = 0;
  #inWritten = 0;
  /** A lone inbound packet's flow, kept to teach the express path at the batch's end (#inFamily 0: none). */
  #inFamily: 0 | 4 | 6 = 0;
  readonly #inSrc = new Uint8Array(16);
  readonly #inDst = new Uint8Array(16);
  readonly #inFake = new Uint8Array(16);
  #inSa: InboundSa | undefined;
  #inPeer: PeerRuntime | undefined;
  /** udpGroRefused: the kernel refused a coalesced UDP write, so UDP is written datagram by datagram. */
  udpGroRefused = false;

  /** #expressThread: start() hands the express paths to their own thread (express_loop.h). */
  readonly #expressThread: boolean;
  /** #threadState says what start() did about the express thread (status). */
  #threadState = 'off';

  /**
   * opts.express (default: on unless ESPGATE_EXPRESS=0) lets packets of learned flows go through
   * the addons' express paths when the TUN, the sender and the receiver offer them;
   * opts.expressThread (default: on unless ESPGATE_EXPRESS_THREAD=0) runs those paths on a
   * thread of their own, off the event loop.
   */
  constructor(tables: EngineTables, tun: TunDevice, sender: EspSender, receiver: EspReceiver,
    opts: { readonly express?: boolean; readonly expressThread?: boolean } = {}) {
    this.#expressThread = opts.expressThread ?? defaultExpressThread();
    this.#tables = tables;
    this.#tun = tun;
    this.#sender = sender;
    this.#receiver = receiver;
    this.#vnet = tun.vnetHdr === true;
    // One arena, one view per slot: the slots are contiguous and allocated once.
    const slot = this.#vnet ? VNET_SLOT_BYTES : SLOT_BYTES;
    const arena = Buffer.alloc(BATCH_SIZE * slot);
    this.#bufs = Array.from({ length: BATCH_SIZE }, (_, i) => arena.subarray(i * slot, (i + 1) * slot));
    this.#hdrs = new Uint8Array(this.#vnet ? BATCH_SIZE * VNET_HDR_LEN : 0);
    const segs = this.#vnet ? SEG_SLOTS : 0;
    const segArena = Buffer.alloc(segs * SLOT_BYTES);
    this.#segBufs = Array.from({ length: segs }, (_, i) => segArena.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES));
    this.#segSizes = new Int32Array(segs);
    this.#q4 = new SendQueue(4, SEND_QUEUE_SLOTS, arena);
    this.#q6 = new SendQueue(6, SEND_QUEUE_SLOTS, arena);
    const gro = tun.writeVnet !== undefined && receiver.batched === true;
    this.#gro = gro ? new GroBatch<Buffer>(GRO_BATCH_PACKETS, defaultUdpGro()) : undefined;
    this.#groBuf = Buffer.alloc(gro ? GRO_MAX_BYTES : 0);
    this.#groPeers = new Array<PeerRuntime | undefined>(gro ? GRO_BATCH_PACKETS : 0).fill(undefined);
    this.#watchSadb(tables);
    const ex = tun.express;
    const fd = sender.expressFd?.bind(sender);
    this.#express = (opts.express ?? defaultExpress()) && ex !== undefined && fd !== undefined
      ? new ExpressOut(ex, fd, this.#bufs, this.#vnet ? this.#hdrs : null)
      : undefined;
    const nfq = receiver.express;
    this.#expressIn = (opts.express ?? defaultExpress()) && ex !== undefined && nfq !== undefined && gro
      ? new ExpressIn(nfq, () => ex.tunFd(), this.#vnet)
      : undefined;
  }

  /** trace, when set (`espgate trace`), records matching packets' stages; cleared when done. Setting one stops the express path's flows (a trace sees every packet). */
  get trace(): Tracer | undefined {
    return this.#trace;
  }

  set trace(t: Tracer | undefined) {
    if (t !== undefined) this.#expressReset();
    this.#trace = t;
  }

  /**
   * syncExpress adds what the express path counted to the SAs, peers, totals and drops. The
   * engine does it whenever its own path runs; readers of counters (status, metrics, timers)
   * call it first.
   */
  syncExpress(): void {
    this.#express?.fold(this.totals, this.#dropN);
    this.#expressIn?.fold(this.totals, this.#dropInN);
  }

  /**
   * express says whether the express paths are on, how many flows they have learned (both
   * directions), and whether they run on their own thread ('on', 'off', or why it failed).
   */
  get express(): { readonly on: boolean; readonly flows: number; readonly thread: string } {
    return {
      on: this.#express !== undefined || this.#expressIn !== undefined,
      flows: (this.#express?.flows ?? 0) + (this.#expressIn?.flows ?? 0),
      thread: this.#threadState,
    };
  }

  readonly #dropN = (reason: DropReason, count: number): void => {
    this.drops.add(reason, count);
    for (let i = 0; i < count; i++) this.onDrop(reason, 'out', 'express path: the socket refused the packet');
  };

  readonly #dropInN = (reason: DropReason, count: number): void => {
    this.drops.add(reason, count);
    for (let i = 0; i < count; i++) this.onDrop(reason, 'in', 'express path: the TUN refused the packet');
  };

  /** #onSadbChange: an SA was installed or removed in place (IKE): learned flows may name a stale SA. */
  readonly #onSadbChange = (): void => { this.#expressReset(); };

  #watchSadb(tables: EngineTables): void {
    tables.sadb.onChange = this.#onSadbChange;
  }

  #expressReset(): void {
    // Fold and forget under both locks, held throughout: between a fold and the clear, the
    // express thread could seal with sequence numbers the fold did not see (and the engine would
    // use them again: GCM nonce reuse), or count packets nobody folds. The locks are recursive,
    // and the thread never holds one while it waits for the other.
    const out = this.#express;
    const inb = this.#expressIn;
    out?.lock();
    inb?.lock();
    try {
      this.syncExpress();
      out?.reset();
      inb?.reset();
    } finally {
      inb?.unlock();
      out?.unlock();
    }
    this.#inFamily = 0;
    this.#inSa = undefined;
    this.#inPeer = undefined;
  }

  /** #inboundBatchStart runs before the first packet of a receive batch: the express path's counts first. */
  #inboundBatchStart(): void {
    this.#expressIn?.fold(this.totals, this.#dropInN);
    this.#inWritten = this.totals.tunWritten;
    this.#inFamily = 0;
  }

  /**
   * #inboundBatchEnd runs after a receive batch was written: a batch of one packet delivered by
   * our own path teaches its flow to the express path; every SA gets a fresh budget.
   */
  #inboundBatchEnd(): void {
    const n = this.#inBatch;
    this.#inBatch = 0;
    const ex = this.#expressIn;
    if (ex === undefined) return;
    const sa = this.#inSa;
    const peer = this.#inPeer;
    const fam = this.#inFamily;
    this.#inSa = undefined;
    this.#inPeer = undefined;
    this.#inFamily = 0;
    if (n === 1 && fam !== 0 && sa !== undefined && peer !== undefined && this.#trace === undefined &&
        this.totals.tunWritten === this.#inWritten + 1) {
      ex.learn(fam, this.#inSrc, this.#inDst, this.#inFake, peer, sa);
    }
    ex.rearm();
  }

  /** tables are replaced atomically on reload (SIGHUP) or when SAs change; safe between events. */
  setTables(tables: EngineTables): void {
    // Learned flows hold the old tables' answers (and SAs): forget them.
    this.#expressReset();
    if (this.#tables.sadb !== tables.sadb && this.#tables.sadb.onChange === this.#onSadbChange) this.#tables.sadb.onChange = undefined;
    this.#tables = tables;
    this.#watchSadb(tables);
  }

  get tables(): EngineTables {
    return this.#tables;
  }

  /**
   * setUdpSender gives the engine the UDP port 4500 sender (io/udp-encap.ts) for SAs with
   * encapsulation; without one their packets are 'send-error' drops. Call between events.
   */
  setUdpSender(udp: EspUdpSender | undefined): void {
    this.#udp = udp;
  }

  start(): void {
    this.#running = true;
    this.#tun.onReadable(() => this.drainTun());
    if (this.#gro === undefined) {
      this.#receiver.start((pkt) => this.handleEsp(pkt));
      this.#offload();
      return;
    }
    this.#receiver.start((pkt) => {
      if (this.#inBatch++ === 0) this.#inboundBatchStart();
      this.#holding = true;
      try {
        this.handleEsp(pkt);
      } finally {
        this.#holding = false;
      }
    }, () => {
      this.flushInbound();
      this.#inboundBatchEnd();
    });
    this.#offload();
  }

  /**
   * #offload hands the express paths to their own thread (src/io/native/express_loop.h): the TUN
   * first, then the receiver joins it. From then on the engine's reads and writes of their state
   * arrays go through the addons' lock (datapath/express.ts), and drainTun and the receive
   * callbacks run only while the main loop owns the fd (the addons hand it back for them). A
   * failure leaves the paths on the event loop, as before, and says why in `express.thread`.
   */
  #offload(): void {
    if (!this.#expressThread || this.#express === undefined) return;
    try {
      const loop = this.#tun.express?.loop?.();
      if (loop === undefined) return;
      if (this.#expressIn !== undefined) this.#receiver.express?.offload?.(loop);
      this.#threadState = 'on';
    } catch (e) {
      this.#threadState = `failed: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  /**
   * flushInbound writes the inner packets held since the receive batch began (coalescing on):
   * each GroBatch item as one write, a super-packet behind its GSO header or a packet alone.
   * A refused write is one 'tun-write' drop per packet in it. The batched receiver calls it
   * at the end of every batch; harmless when nothing is held.
   */
  flushInbound(): void {
    const g = this.#gro;
    const tun = this.#tun;
    // A restarted receiver must not accept any of these again: persist before delivering.
    if (this.#replayDirty.size > 0) {
      for (const sa of this.#replayDirty) sa.persistReplay();
      this.#replayDirty.clear();
    }
    if (g === undefined || g.packets === 0) return;
    const writeVnet = tun.writeVnet;
    const items = g.items;
    for (let k = 0; k < items; k++) {
      const count = g.itemCount(k);
      const first = g.itemPacket(k);
      let ok = false;
      if (count === 1) {
        const b = g.packetBuf(first);
        ok = b !== undefined && tun.write(b, g.packetOff(first), g.packetLen(first));
      } else if (writeVnet !== undefined) {
        const n = g.build(k, this.#groBuf, 0, this.#groHdr);
        if (n > 0) {
          writeVnetHdr(this.#groHdr, this.#groHdrBytes, 0);
          ok = writeVnet(this.#groHdrBytes, this.#groBuf, 0, n);
        }
        if (!ok && g.itemUdp(k)) {
          // A kernel that refuses GSO_UDP_L4 writes (before 6.2): these datagrams one by one,
          // and no more UDP coalescing from now on.
          g.udp = false;
          this.udpGroRefused = true;
          this.#writeEach(g, first);
          continue;
        }
      }
      if (ok) {
        this.totals.tunWritten += count;
        continue;
      }
      this.drops.add('tun-write', count);
      for (let j = 0; j < count; j++) this.onDrop('tun-write', 'in', '');
      // The packets were counted as received when held: take them back out of the peers' rx.
      for (let i = first; i >= 0; i = g.nextPacket(i)) this.#unreceive(i, g.packetLen(i));
    }
    for (let i = 0; i < g.packets; i++) this.#groPeers[i] = undefined;
    g.reset();
  }

  /** #writeEach writes the packets of a held item one by one, from packet `first`; a refused one is a 'tun-write' drop. */
  #writeEach(g: GroBatch<Buffer>, first: number): void {
    for (let i = first; i >= 0; i = g.nextPacket(i)) {
      const b = g.packetBuf(i);
      if (b !== undefined && this.#tun.write(b, g.packetOff(i), g.packetLen(i))) {
        this.totals.tunWritten++;
        continue;
      }
      this.drops.add('tun-write');
      this.onDrop('tun-write', 'in', '');
      this.#unreceive(i, g.packetLen(i));
    }
  }

  /** #unreceive takes held packet i back out of its peer's rx counters (it was counted when held). */
  #unreceive(i: number, len: number): void {
    const p = this.#groPeers[i];
    if (p === undefined) return;
    p.stats.rxPackets--;
    p.stats.rxBytes -= len;
  }

  stop(): void {
    this.#running = false;
    // The addons' express paths would go on forwarding learned flows on their own: stop them too.
    this.#expressReset();
  }

  /**
   * batchedSend tells whether drainTun sends plain ESP with one sendBatch per TUN batch and
   * family (the sender has sendBatch) rather than one send per packet.
   */
  get batchedSend(): boolean {
    return this.#sender.sendBatch !== undefined;
  }

  /**
   * fastPaths says which batching and offload paths are in use: TUN offloads (TSO super-packets
   * on reads), coalescing of TCP and of UDP on TUN writes ('refused': the kernel refused a
   * coalesced UDP write, so UDP goes datagram by datagram), batched sends, batched TUN reads
   * (io_uring: many packets per system call).
   */
  get fastPaths(): { readonly tunOffload: boolean; readonly tcpCoalescing: boolean; readonly udpCoalescing: 'on' | 'off' | 'refused'; readonly sendBatch: boolean; readonly batchedReads: boolean } {
    const g = this.#gro;
    const udp = this.udpGroRefused ? 'refused' : g?.udp === true ? 'on' : 'off';
    return { tunOffload: this.#vnet, tcpCoalescing: g !== undefined, udpCoalescing: udp, sendBatch: this.batchedSend, batchedReads: this.#tun.batchedReads === true };
  }

  /** drainTun reads and processes batches until the TUN is empty (bounded per event). */
  drainTun(): void {
    const ex = this.#express;
    if (ex === undefined) {
      this.#drainTun();
      return;
    }
    // The express path's sequence numbers and counters first; a fresh budget after our own seals.
    ex.fold(this.totals, this.#dropN);
    try {
      this.#drainTun();
    } finally {
      ex.rearm();
    }
  }

  #drainTun(): void {
    for (let round = 0; round < 16 && this.#running; round++) {
      const t0 = this.onTiming === undefined ? 0 : performance.now();
      const vnet = this.#vnet;
      const n = vnet ? this.#tun.readBatch(this.#bufs, this.#sizes, HEADROOM, this.#hdrs) : this.#tun.readBatch(this.#bufs, this.#sizes, HEADROOM);
      if (n === 0) return;
      // A trace needs each packet's outcome at once: per-packet sends while one runs.
      const batch = this.#sender.sendBatch !== undefined && this.trace === undefined;
      for (let i = 0; i < n; i++) {
        this.totals.tunRead++;
        const buf = this.#bufs[i];
        const len = this.#sizes[i];
        if (vnet) {
          const h = readVnetHdr(this.#hdrs, i * VNET_HDR_LEN, this.#vh);
          if (h.gsoType !== GSO_NONE) {
            this.#outboundGso(buf, len, batch);
            continue;
          }
          if ((h.flags & VNET_F_NEEDS_CSUM) !== 0 && !completeChecksum(buf, HEADROOM, len, h.csumStart, h.csumOffset)) {
            this.#drop('bad-inner', 'out', buf, HEADROOM);
            continue;
          }
        }
        if (n === 1 && this.#express !== undefined && this.trace === undefined) {
          this.#outboundLone(buf, len, batch);
          continue;
        }
        this.#outboundOne(buf, len, batch);
      }
      this.#flushAll();
      this.onTiming?.('out', n, (performance.now() - t0) / 1000);
      if (n < this.#bufs.length) return;
    }
  }

  /**
   * #outboundLone is #outboundOne for a packet that came alone in its TUN read: when it was
   * sealed and sent, its flow is taught to the express path, which then sends the next ones
   * itself (datapath/express.ts).
   */
  #outboundLone(buf: Buffer, len: number, batch: boolean): void {
    const v = len >= 20 ? buf[HEADROOM] >> 4 : 0;
    if (v !== 4 && v !== 6) {
      this.#outboundOne(buf, len, batch);
      return;
    }
    const alen = v === 4 ? 4 : 16;
    const srcAt = HEADROOM + (v === 4 ? IPV4_SRC : IPV6_SRC);
    const dstAt = HEADROOM + (v === 4 ? IPV4_DST : IPV6_DST);
    buf.copy(this.#exSrc, 0, srcAt, srcAt + alen);
    buf.copy(this.#exFake, 0, dstAt, dstAt + alen);
    const sent = this.totals.espSent;
    this.#outboundOne(buf, len, batch);
    this.#flushAll();
    if (this.totals.espSent !== sent + 1) return;
    const t = this.#tables;
    const real = this.#exReal;
    real.set(this.#exFake.subarray(0, alen));
    if (!t.offsets.toReal(real, 0, v)) return;
    const peer = (v === 4 ? t.peerByDst4 : t.peerByDst6).lookup(real, 0);
    const sa: OutboundSa | undefined = peer === undefined ? undefined : t.sadb.outbound(peer.name);
    if (peer === undefined || sa === undefined) return;
    this.#express?.learn(v, this.#exSrc, this.#exFake, real, peer, sa);
  }

  /** #outboundOne runs one inner packet at buf[HEADROOM, +len) through stages 2-5 (and the trace). */
  #outboundOne(buf: Buffer, len: number, batch: boolean): void {
    const pre = this.trace === undefined ? undefined : this.#traceOutBefore(buf, HEADROOM, len);
    const r = this.#outbound(buf, HEADROOM, len, batch);
    if (r === 'queued') return;
    if (r !== 'ok') this.#drop(r, 'out', buf, HEADROOM);
    if (pre !== undefined) this.#traceOutAfter(pre, buf, r);
  }

  /**
   * #outboundGso splits the TCP super-packet at buf[HEADROOM, +len) described by #vh into the
   * segment pool and runs each segment through #outboundOne. Queued segments stay in the pool
   * until #flushAll; a full pool is flushed and the split goes on (in rounds, so any MSS works).
   * A packet gsoSplit refuses is one 'bad-inner' drop.
   */
  #outboundGso(buf: Buffer, len: number, batch: boolean): void {
    const h = this.#vh;
    const pool = this.#segBufs.length;
    let done = 0;
    // Bounded: every round makes at least one segment, and a super-packet has at most
    // GSO_MAX_BYTES of them (MSS 1).
    for (let round = 0; round <= GSO_MAX_BYTES / SEG_SLOTS + 1; round++) {
      if (this.#segUsed === pool) this.#flushAll();
      const first = this.#segUsed;
      const k = gsoSplit(h, buf, HEADROOM, len, this.#segBufs, HEADROOM, this.#segSizes, first, done, pool - first);
      if (typeof k === 'string') {
        if (done === 0) this.#drop('bad-inner', 'out', buf, HEADROOM);
        return;
      }
      if (k === 0) return;
      this.#segUsed = first + k;
      done += k;
      for (let j = first; j < first + k; j++) this.#outboundOne(this.#segBufs[j], this.#segSizes[j], batch);
    }
  }

  /** #flushAll sends both queues; the segment pool is free again afterwards. */
  #flushAll(): void {
    this.#flush(this.#q4);
    this.#flush(this.#q6);
    this.#segUsed = 0;
  }

  /**
   * handleOutbound processes one inner packet read from the TUN at buf[off, off+len), with
   * off >= HEADROOM and ESP_MAX_TAILROOM bytes free after it: ESP is sealed in place from
   * buf[off - HEADROOM] and sent at once (one send per packet).
   */
  handleOutbound(buf: Buffer, off: number, len: number): DropReason | 'ok' {
    const r = this.#outbound(buf, off, len, false);
    return r === 'queued' ? 'ok' : r;
  }

  /**
   * #outbound is handleOutbound; with `queue`, plain ESP is only queued ('queued': its counters
   * and a possible 'send-error' are settled by #flush) and the caller must flush before it
   * reuses buf.
   */
  #outbound(buf: Buffer, off: number, len: number, queue: boolean): DropReason | 'ok' | 'queued' {
    const t = this.#tables;
    if (len < 1) return 'truncated';
    const version = buf[off] >> 4;
    const rw = rewriteOutbound(buf, off, len, t.offsets);
    if (rw !== 'ok') return rw;
    let peer: PeerRuntime | undefined;
    // The peer accepts only inner sources inside our local.protect: do not seal what it would drop.
    if (version === 4) {
      if (t.local4.lookup(buf, off + IPV4_SRC) === undefined) return 'policy';
      peer = t.peerByDst4.lookup(buf, off + IPV4_DST);
    } else if (version === 6) {
      if (t.local6.lookup(buf, off + IPV6_SRC) === undefined) return 'policy';
      peer = t.peerByDst6.lookup(buf, off + IPV6_DST);
    } else return 'bad-inner';
    if (peer === undefined) return 'no-peer';
    const sa = t.sadb.outbound(peer.name);
    if (sa === undefined) return 'no-sa';
    const espOff = off - HEADROOM;
    const n = sealEsp(sa, buf, off, len, buf, espOff);
    if (typeof n !== 'number') return n;
    const encap = sa.encap;
    if (encap === null && queue) {
      const q = peer.endpointFamily === 4 ? this.#q4 : this.#q6;
      q.push(peer.endpoint, buf, espOff, n, peer, len);
      if (q.full) this.#flush(q);
      return 'queued';
    }
    if (encap === null) {
      if (!this.#sender.send(peer.endpointFamily, peer.endpoint, buf, espOff, n)) return 'send-error';
    } else {
      const udp = this.#udp;
      if (udp === undefined || !udp.sendEsp(peer.endpointFamily, peer.endpoint, encap.remotePort, buf, espOff, n)) return 'send-error';
      this.totals.espUdpSent++;
    }
    this.totals.espSent++;
    peer.stats.txPackets++;
    peer.stats.txBytes += len;
    peer.stats.lastTxMs = Date.now();
    return 'ok';
  }

  /**
   * #flush sends the queued packets of one family with one sendBatch (a lone packet with send)
   * and settles each packet's
   * counters: sent ones like handleOutbound's, refused ones as 'send-error' drops. A sender that
   * throws (a programming error) costs the batch, counted as 'send-error', never the daemon.
   */
  #flush(q: SendQueue): void {
    const count = q.count;
    if (count === 0) return;
    q.count = 0;
    const sender = this.#sender;
    let detail = '';
    q.failed.fill(0, 0, count);
    try {
      if (count === 1) {
        // One packet (a ping, an ACK): sendto is the shorter way to the same place.
        q.failed[0] = sender.send(q.family, q.dsts[0], q.bufs[0], q.offsets[0], q.lengths[0]) ? 0 : 1;
      } else {
        if (sender.sendBatch === undefined) throw new Error('the sender has no sendBatch');
        sender.sendBatch(q.family, q.dsts, q.bufs, q.offsets, q.lengths, count, q.failed);
      }
    } catch (e) {
      q.failed.fill(1, 0, count);
      detail = `sendBatch threw: ${e instanceof Error ? e.message : String(e)}`;
    }
    const now = Date.now();
    for (let k = 0; k < count; k++) {
      const peer = q.peers[k];
      q.peers[k] = undefined; // do not keep peers of replaced tables alive
      if (q.failed[k] !== 0 || peer === undefined) {
        this.drops.add('send-error');
        this.onDrop('send-error', 'out', detail);
        continue;
      }
      this.totals.espSent++;
      peer.stats.txPackets++;
      peer.stats.txBytes += q.innerLens[k];
      peer.stats.lastTxMs = now;
    }
  }

  /** handleEsp processes one inbound ESP packet, outer IP header included. */
  handleEsp(pkt: Buffer): void {
    this.totals.espReceived++;
    const timing = this.onTiming;
    const t0 = timing === undefined ? 0 : performance.now();
    const r = this.handleInbound(pkt);
    if (r !== 'ok') this.#drop(r, 'in', pkt, 0);
    timing?.('in', 1, (performance.now() - t0) / 1000);
    if (this.trace !== undefined) this.#traceInRaw(pkt, r);
  }

  /**
   * handleUdpEsp processes one ESP packet that arrived in UDP on port 4500: pkt[off, off+len)
   * is the ESP (SPI onward), src the sender's address bytes (4 or 16). An arrow property, so it
   * can be handed to UdpEncapSocket.onEsp as it is.
   */
  readonly handleUdpEsp: EspUdpHandler = (pkt, off, len, family, src, srcPort) => {
    this.totals.espReceived++;
    this.totals.espUdpReceived++;
    const timing = this.onTiming;
    const t0 = timing === undefined ? 0 : performance.now();
    // The SA may be one the express thread opens ESP for too (the peer moved to UDP): its replay
    // window is shared, so it is checked and moved under the addon's lock. With no SA on the
    // inbound express path (UDP-encapsulated SAs are never on it) there is nothing to share.
    const ex = this.#expressIn;
    let r: DropReason | 'ok';
    if (ex === undefined || ex.empty) r = this.handleInboundUdp(pkt, off, len, src);
    else {
      ex.lock();
      try {
        r = this.handleInboundUdp(pkt, off, len, src);
      } finally {
        ex.unlock();
      }
    }
    if (r !== 'ok') this.#drop(r, 'in', pkt, off);
    timing?.('in', 1, (performance.now() - t0) / 1000);
    if (this.trace !== undefined) this.#traceIn(pkt, off, len, len, addr(src, 0, family), ` port ${srcPort} (UDP)`, r);
  };

  /** #traceOutBefore notes what a TUN packet looks like before it is unmapped and sealed. */
  #traceOutBefore(buf: Buffer, off: number, len: number): { stages: string[]; addrs: string[]; fam: 4 | 6 } | undefined {
    const v = len > 0 ? buf[off] >> 4 : 0;
    if (v !== 4 && v !== 6) return { stages: [`TUN ${len} bytes, not IP`], addrs: [], fam: 4 };
    const src = addr(buf, off + (v === 4 ? IPV4_SRC : IPV6_SRC), v);
    const dst = addr(buf, off + (v === 4 ? IPV4_DST : IPV6_DST), v);
    const proto = v === 4 ? buf[off + 9] : buf[off + 6];
    let real = dst;
    try { real = this.#tables.offsets.unmapFromFake(dst); } catch { /* not a fake address: 'unmapped' follows */ }
    return { stages: [`TUN ${src} > ${dst} proto ${proto} ${len} bytes`, `unmapped to ${real}`], addrs: [src, dst, real], fam: v };
  }

  #traceOutAfter(pre: { stages: string[]; addrs: string[]; fam: 4 | 6 }, buf: Buffer, r: DropReason | 'ok'): void {
    const tr = this.trace;
    if (tr === undefined) return;
    const t = this.#tables;
    const real = pre.addrs[2];
    let peer: PeerRuntime | undefined;
    for (const p of t.peers.values()) {
      const table = pre.fam === 4 ? p.protect4 : p.protect6;
      if (real !== undefined && table.lookupText(real) !== undefined) peer = p;
    }
    if (!tr.matches([...pre.addrs, ...(peer === undefined ? [] : [peer.endpoint])], peer?.name ?? null)) return;
    const stages = [...pre.stages];
    if (peer !== undefined) stages.push(`peer ${peer.name}`);
    if (r === 'ok' || r === 'send-error') {
      stages.push(`sealed spi 0x${buf.readUInt32BE(0).toString(16).padStart(8, '0')} seq ${buf.readUInt32BE(4)}`);
      if (r === 'ok' && peer !== undefined) stages.push(`sent to ${peer.endpoint}`);
    }
    tr.record('out', peer?.name ?? null, stages, r);
    if (tr.done()) this.#trace = undefined;
  }

  /** #traceInRaw traces an NFQUEUE packet: the outer header gives the source and where the ESP starts. */
  #traceInRaw(pkt: Buffer, r: DropReason | 'ok'): void {
    if (pkt.length < 20) return;
    const v = pkt[0] >> 4;
    if (v !== 4 && v !== 6) return;
    const hl = v === 4 ? (pkt[0] & 0x0f) * 4 : 40;
    this.#traceIn(pkt, hl, pkt.length - hl, pkt.length, addr(pkt, v === 4 ? IPV4_SRC : IPV6_SRC, v), '', r);
  }

  /** #traceIn records an inbound packet's stages from its ESP header and, once opened, the inner packet. */
  #traceIn(pkt: Buffer, espOff: number, espLen: number, bytes: number, outerSrc: string, via: string, r: DropReason | 'ok'): void {
    const tr = this.trace;
    if (tr === undefined) return;
    const spi = espLen >= 8 ? pkt.readUInt32BE(espOff) : 0;
    const seq = espLen >= 8 ? pkt.readUInt32BE(espOff + 4) : 0;
    const sa = this.#tables.sadb.inbound(spi);
    const peer = sa?.peer ?? null;
    const addrs = [outerSrc];
    const stages = [`ESP from ${outerSrc}${via} spi 0x${spi.toString(16).padStart(8, '0')} seq ${seq} ${bytes} bytes`];
    const io = this.#innerOff;
    if (io >= 0 && io + 20 <= pkt.length) {
      const iv = pkt[io] >> 4;
      if (iv === 4 || iv === 6) {
        const src = addr(pkt, io + (iv === 4 ? IPV4_SRC : IPV6_SRC), iv);
        const dst = addr(pkt, io + (iv === 4 ? IPV4_DST : IPV6_DST), iv);
        addrs.push(src, dst);
        stages.push(`opened: inner ${r === 'ok' ? '(source now fake) ' : ''}${src} > ${dst}`);
        if (r === 'ok') stages.push('policy ok', 'reinjected into the TUN');
      }
    }
    if (!tr.matches(addrs, peer)) return;
    tr.record('in', peer, stages, r);
    if (tr.done()) this.#trace = undefined;
  }

  /** handleInbound returns 'ok' when the inner packet (outer IP header included) was written to the TUN. */
  handleInbound(pkt: Buffer): DropReason | 'ok' {
    this.#innerOff = -1;
    if (pkt.length < 20) return 'truncated';
    const version = pkt[0] >> 4;
    let espOff: number;
    let espEnd: number;
    let srcOff: number;
    let srcLen: number;
    if (version === 4) {
      const ihl = (pkt[0] & 0x0f) * 4;
      const total = pkt.readUInt16BE(2);
      if (ihl < 20 || total < ihl || total > pkt.length) return 'bad-outer';
      if ((pkt.readUInt16BE(6) & 0x3fff) !== 0) return 'bad-outer'; // MF set or fragment offset: ESP fragment
      if (pkt[9] !== PROTO_ESP) return 'bad-outer';
      espOff = ihl;
      espEnd = total;
      srcOff = IPV4_SRC;
      srcLen = 4;
    } else if (version === 6) {
      if (pkt.length < 40) return 'truncated';
      const payload = pkt.readUInt16BE(4);
      if (40 + payload > pkt.length) return 'bad-outer';
      if (pkt[6] !== PROTO_ESP) return 'bad-outer'; // extension headers (incl. fragments) before ESP: not accepted
      espOff = 40;
      espEnd = 40 + payload;
      srcOff = IPV6_SRC;
      srcLen = 16;
    } else return 'bad-outer';
    return this.#inboundEsp(pkt, espOff, espEnd - espOff, pkt, srcOff, srcLen);
  }

  /**
   * handleInboundUdp is handleInbound for ESP that came in UDP: pkt[off, off+len) is the ESP,
   * src the outer source address (4 or 16 bytes). Returns 'ok' when the inner packet was written
   * to the TUN.
   */
  handleInboundUdp(pkt: Buffer, off: number, len: number, src: Uint8Array): DropReason | 'ok' {
    this.#innerOff = -1;
    if (off < 0 || len < 0 || off + len > pkt.length) return 'truncated';
    return this.#inboundEsp(pkt, off, len, src, 0, src.length);
  }

  /**
   * #inboundEsp is everything after the outer header, shared by both entries: ESP at
   * pkt[espOff, espOff+espLen), outer source address at srcBuf[srcOff, +srcLen).
   */
  #inboundEsp(pkt: Buffer, espOff: number, espLen: number, srcBuf: Uint8Array, srcOff: number, srcLen: number): DropReason | 'ok' {
    const t = this.#tables;
    const hdr = parseEspHeader(pkt, espOff, espLen);
    if (typeof hdr === 'string') return hdr;
    const sa = t.sadb.lookupInbound(hdr.spi, srcBuf, srcOff, srcLen);
    if (typeof sa === 'string') return sa;
    const peer = t.peers.get(sa.peer);
    if (peer === undefined) return 'unknown-spi';
    const opened = openEsp(sa, pkt, espOff, espLen);
    if (opened === 'dummy') return 'ok'; // authenticated TFC dummy packet: discarded by design, counted on the SA
    if (typeof opened === 'string') return opened;
    const { innerOff, innerLen, nextHeader } = opened;
    const inner = pkt;
    this.#innerOff = innerOff;

    const iv = inner[innerOff] >> 4;
    if ((iv === 4 && nextHeader !== NEXT_HEADER_IPV4) || (iv === 6 && nextHeader !== NEXT_HEADER_IPV6)) return 'bad-inner';
    if (iv === 4) {
      if (innerLen < 20 || inner.readUInt16BE(innerOff + 2) !== innerLen) return 'bad-inner';
      if (peer.protect4.lookup(inner, innerOff + IPV4_SRC) === undefined) return 'policy';
      if (t.local4.lookup(inner, innerOff + IPV4_DST) === undefined) return 'policy';
    } else if (iv === 6) {
      if (innerLen < 40 || inner.readUInt16BE(innerOff + 4) + 40 !== innerLen) return 'bad-inner';
      if (peer.protect6.lookup(inner, innerOff + IPV6_SRC) === undefined) return 'policy';
      if (t.local6.lookup(inner, innerOff + IPV6_DST) === undefined) return 'policy';
    } else return 'bad-inner';

    const learn = this.#inBatch === 1 && this.#holding && this.#expressIn !== undefined;
    if (learn) {
      const alen = iv === 4 ? 4 : 16;
      const s = innerOff + (iv === 4 ? IPV4_SRC : IPV6_SRC);
      const d = innerOff + (iv === 4 ? IPV4_DST : IPV6_DST);
      this.#inSrc.set(inner.subarray(s, s + alen));
      this.#inDst.set(inner.subarray(d, d + alen));
    }
    const rw = rewriteInbound(inner, innerOff, innerLen, t.offsets);
    if (learn && rw === 'ok') {
      const s = innerOff + (iv === 4 ? IPV4_SRC : IPV6_SRC);
      this.#inFake.set(inner.subarray(s, s + (iv === 4 ? 4 : 16)));
      this.#inFamily = iv === 4 ? 4 : 6;
      this.#inSa = sa;
      this.#inPeer = peer;
    }
    const gro = this.#gro;
    if (gro !== undefined && this.#holding) {
      // The window moved: its top is persisted once per batch, before the batch is written
      // (flushInbound); one pwrite per packet was a quarter of the receiver's CPU under TCP.
      this.#replayDirty.add(sa);
      if (rw !== 'ok') return rw;
      if (gro.full) this.flushInbound();
      this.#groPeers[gro.packets] = peer;
      gro.add(inner, innerOff, innerLen);
      peer.stats.rxPackets++;
      peer.stats.rxBytes += innerLen;
      peer.stats.lastRxMs = Date.now();
      return 'ok';
    }
    sa.persistReplay(); // the window moved: a restarted receiver must not accept this again
    if (rw !== 'ok') return rw;
    if (!this.#tun.write(inner, innerOff, innerLen)) return 'tun-write';
    this.totals.tunWritten++;
    peer.stats.rxPackets++;
    peer.stats.rxBytes += innerLen;
    peer.stats.lastRxMs = Date.now();
    return 'ok';
  }

  #drop(reason: DropReason, dir: 'in' | 'out', _buf: Buffer, _off: number): void {
    this.drops.add(reason);
    this.onDrop(reason, dir, '');
  }
}
