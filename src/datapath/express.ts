/**
 * datapath/express.ts: the engine's side of the addons' express paths (packets of flows the engine
 * has already handled, carried without JavaScript): outbound in the TUN addon (src/io/native/express.h, whose comment says why they exist and what they
 * take), inbound in the NFQUEUE addon (express_in.h; ExpressIn below, the same scheme).
 *
 * The engine stays the owner of every decision; the addon only repeats one it has already made:
 *   learn    after the engine itself sealed and sent a packet that came alone in a TUN read, it
 *            teaches the addon that packet's (family, inner source, fake destination), with the
 *            real destination and the peer's outbound SA. Only what the addon reproduces byte
 *            for byte is taught: plain ESP (no UDP encapsulation), no ESN, the sequence-number
 *            IV, no trace running. The same addresses always get the same policy answer and the
 *            same mapping until the tables change, and then the engine calls reset().
 *   budget   each SA's Float64Array says how far the addon may go on its own: up to the reserved
 *            sequence mark and the end of the 32-bit space, and short of the soft and hard
 *            packet and byte limits, so the engine's code settles every reservation and expiry.
 *   fold     what the addon sealed and sent is added to the SA's, the peer's and the engine's
 *            counters (and 'send-error' drops) whenever the engine runs its own path, and before
 *            anyone reads the counters (Engine.syncExpress). Nothing is counted twice: the
 *            array's counters are zeroed as they are folded.
 *   thread   the addons may run their paths on a thread of their own (src/io/native/express_loop.h):
 *            then the engine's own path runs only while the main loop owns the fd (the addon
 *            hands it back for that), and every read or write of a state array here, wherever
 *            it is called from, happens under the addon's lock (ExpressTable.lock).
 * ESPGATE_EXPRESS=0 turns it off; ESPGATE_EXPRESS_THREAD=0 keeps it on the event loop.
 */
import type { DropReason } from '../drops.js';
import type { InboundSa, OutboundSa, SaLifetime, SaStats } from '../esp/sa.js';
import { parseOuterAddress } from '../esp/sadb.js';
import { SEQUENCE_IV } from '../esp/nonce.js';
import type { ExpressNfq, ExpressTun, Family } from '../io/types.js';
import type { PeerRuntime } from './engine.js';

// State array layout (express.h ExpressSt).
export const ST_LAST_SEQ = 0;
export const ST_MAX_SEQ = 1;
export const ST_BYTES_LEFT = 2;
export const ST_SA_PACKETS = 3;
export const ST_SA_BYTES = 4;
export const ST_TX_PACKETS = 5;
export const ST_TX_BYTES = 6;
export const ST_SEND_ERRORS = 7;
export const ST_LAST_MS = 8;
export const ST_TUN_READ = 9;
export const ST_LEN = 10;
/** EXPRESS_SAS is the addon's SA slots (express.h kExpressSas). */
export const EXPRESS_SAS = 32;
/** AES_GCM_SALT_LEN: key material is key || 4-byte salt (aead.ts). */
const SALT_LEN = 4;

/** defaultExpress reads ESPGATE_EXPRESS (on unless '0'). */
export function defaultExpress(): boolean {
  return process.env['ESPGATE_EXPRESS'] !== '0';
}

/**
 * defaultExpressThread reads ESPGATE_EXPRESS_THREAD (on unless '0'): the express paths run on
 * their own thread (src/io/native/express_loop.h) instead of the main event loop.
 */
export function defaultExpressThread(): boolean {
  return process.env['ESPGATE_EXPRESS_THREAD'] !== '0';
}

/** ExpressTotals are the engine counters the fold adds to. */
export interface ExpressTotals { tunRead: number; espSent: number }

interface Entry {
  readonly sa: OutboundSa;
  readonly peer: PeerRuntime;
  readonly st: Float64Array;
}

/** endpointBytes is a peer endpoint's 4 or 16 address bytes (undefined if it does not parse). */
function endpointBytes(text: string, family: Family): Uint8Array | undefined {
  try {
    const b = parseOuterAddress(text);
    return b.length === (family === 4 ? 4 : 16) ? b : undefined;
  } catch {
    return undefined;
  }
}

/** The SA fields a budget is computed from (OutboundSa and InboundSa both have them). */
interface Budgeted {
  readonly softExpired: boolean;
  readonly lifetime: Required<SaLifetime>;
  readonly stats: SaStats;
}

/**
 * packetsLeft and bytesLeft are what an SA may still carry on an express path: one short of
 * its soft limit (until that has passed) and of its hard limit, so that the packet which reaches
 * a limit goes through sealEsp or openEsp, which set the flag (soft: rekey; hard: stop).
 */
function packetsLeft(sa: Budgeted): number {
  const l = sa.lifetime;
  return (sa.softExpired ? l.hardPackets : Math.min(l.softPackets, l.hardPackets)) - sa.stats.packets - 1;
}

function bytesLeft(sa: Budgeted): number {
  const l = sa.lifetime;
  return (sa.softExpired ? l.hardBytes : Math.min(l.softBytes, l.hardBytes)) - sa.stats.bytes - 1;
}

/**
 * ExpressTable is what both directions keep per addon: SA slots (0..EXPRESS_SAS-1, each with its
 * state array), the count of learned flows, and the budget step.
 */
abstract class ExpressTable<S extends object, E extends { readonly sa: S; readonly st: Float64Array }, T> {
  protected entries: E[] = [];
  readonly #bySa = new Map<S, number>();
  /** flows is how many flows the addon has learned since the last reset. */
  flows = 0;
  /** refused counts SAs the addon would not take (a bug or a resource limit; the engine's path carries them). */
  refused = 0;

  /**
   * slotFor is sa's slot, registering it first through `register` (which makes its entry around
   * a fresh state array and hands both to the addon; undefined or a throw: not registered).
   */
  protected slotFor(sa: S, stLen: number, register: (slot: number, st: Float64Array) => E | undefined): number | undefined {
    const known = this.#bySa.get(sa);
    if (known !== undefined) return known;
    if (this.entries.length >= EXPRESS_SAS) return undefined;
    const slot = this.entries.length;
    let e: E | undefined;
    try {
      e = register(slot, new Float64Array(stLen));
    } catch {
      this.refused++;
      return undefined;
    }
    if (e === undefined) return undefined;
    this.entries.push(e);
    this.#bySa.set(sa, slot);
    this.lock();
    try {
      this.arm(e);
    } finally {
      this.unlock();
    }
    return slot;
  }

  /**
   * empty: no SA is registered with the addon, so its express path (on the thread or not) touches
   * no state of ours. Only the main thread registers SAs, so the answer holds until it does.
   */
  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** counted notes a flow the addon says it learned. */
  protected counted(added: boolean): boolean {
    if (added) this.flows++;
    return added;
  }

  /** rearm hands every SA a fresh budget (after the engine's own path used it). */
  rearm(): void {
    const entries = this.entries;
    if (entries.length === 0) return;
    this.lock();
    try {
      for (let i = 0; i < entries.length; i++) this.arm(entries[i]);
    } finally {
      this.unlock();
    }
  }

  protected abstract arm(e: E): void;

  /**
   * fold adds what the addon counted to the SAs, peers, totals and drops and zeroes the addon's
   * counters, under the lock. Call it before the engine's own path touches an SA and before
   * counters are read.
   */
  fold(totals: T, drop: (reason: DropReason, count: number) => void): void {
    const entries = this.entries;
    if (entries.length === 0) return;
    this.lock();
    try {
      this.foldEntries(entries, totals, drop);
    } finally {
      this.unlock();
    }
  }

  /** foldEntries is fold's work for one direction, with the lock held. */
  protected abstract foldEntries(entries: readonly E[], totals: T, drop: (reason: DropReason, count: number) => void): void;

  /**
   * lock and unlock are the addon's express lock: the express thread (src/io/native/express_loop.h)
   * holds it while it seals or opens, so every read and write of the state arrays here happens
   * under it. Recursive.
   */
  abstract lock(): void;
  abstract unlock(): void;

  /** forget drops every slot and flow on this side (the addon's clear() is the caller's). */
  protected forget(): void {
    this.entries = [];
    this.#bySa.clear();
    this.flows = 0;
  }
}

/**
 * ExpressOut drives one TUN's express path for one engine. Called on the main thread; the state
 * arrays are shared with the express thread when it runs (engine #offload), so they are read and
 * written under the addon's lock.
 */
export class ExpressOut extends ExpressTable<OutboundSa, Entry, ExpressTotals> {
  readonly #tun: ExpressTun;
  readonly #fd: (family: Family) => number;

  constructor(tun: ExpressTun, fd: (family: Family) => number, slots: readonly Buffer[], hdrs: Uint8Array | null) {
    super();
    this.#tun = tun;
    this.#fd = fd;
    tun.slot(slots, hdrs);
  }

  /** eligible says whether the addon reproduces what sealEsp + send do for this SA. */
  static eligible(sa: OutboundSa): boolean {
    return sa.encap === null && !sa.esn && sa.ivGenerator === SEQUENCE_IV && !sa.hardExpired && !sa.exhausted &&
      sa.keyMaterial.length === sa.aead.keyMaterialLength && sa.aead.keyMaterialLength > SALT_LEN;
  }

  /**
   * learn teaches the addon a flow the engine has just sealed and sent itself: src and fake are
   * the inner source and (fake) destination as read from the TUN, real the destination the
   * engine sent it to. Returns true when the flow is new to the addon.
   */
  learn(family: Family, src: Uint8Array, fake: Uint8Array, real: Uint8Array, peer: PeerRuntime, sa: OutboundSa): boolean {
    if (!ExpressOut.eligible(sa)) return false;
    const slot = this.slotFor(sa, ST_LEN, (n, st) => {
      const fd = this.#fd(peer.endpointFamily);
      const ep = endpointBytes(peer.endpoint, peer.endpointFamily);
      if (fd < 0 || ep === undefined) return undefined;
      const km = sa.keyMaterial;
      this.#tun.sa(n, st, sa.spi, km.subarray(0, km.length - SALT_LEN), km.subarray(km.length - SALT_LEN), fd, peer.endpointFamily, ep);
      return { sa, peer, st };
    });
    return slot !== undefined && this.counted(this.#tun.flow(family, src, fake, real, slot) === 1);
  }

  /** foldEntries: the SAs', peers' and engine's counters, and the sequence numbers the addon used, into the SAs. */
  protected foldEntries(entries: readonly Entry[], totals: ExpressTotals, drop: (reason: DropReason, count: number) => void): void {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      const st = e.st;
      const sealed = st[ST_SA_PACKETS];
      const tunRead = st[ST_TUN_READ];
      if (sealed === 0 && tunRead === 0) continue;
      const sa = e.sa;
      sa.seqLo = st[ST_LAST_SEQ];
      const s = sa.stats;
      s.packets += sealed;
      s.bytes += st[ST_SA_BYTES];
      const last = st[ST_LAST_MS];
      if (last > s.lastUsedMs) s.lastUsedMs = last;
      const tx = st[ST_TX_PACKETS];
      const ps = e.peer.stats;
      ps.txPackets += tx;
      ps.txBytes += st[ST_TX_BYTES];
      if (tx > 0 && last > ps.lastTxMs) ps.lastTxMs = last;
      totals.tunRead += tunRead;
      totals.espSent += tx;
      const errors = st[ST_SEND_ERRORS];
      if (errors > 0) drop('send-error', errors);
      st[ST_SA_PACKETS] = 0;
      st[ST_SA_BYTES] = 0;
      st[ST_TX_PACKETS] = 0;
      st[ST_TX_BYTES] = 0;
      st[ST_SEND_ERRORS] = 0;
      st[ST_TUN_READ] = 0;
    }
  }

  protected arm(e: Entry): void {
    const sa = e.sa;
    const st = e.st;
    st[ST_LAST_SEQ] = sa.seqLo;
    if (!ExpressOut.eligible(sa) || sa.seqHi !== 0) {
      st[ST_MAX_SEQ] = -1;
      st[ST_BYTES_LEFT] = -1;
      return;
    }
    st[ST_MAX_SEQ] = Math.min(sa.reservedLow, sa.seqLo + packetsLeft(sa));
    st[ST_BYTES_LEFT] = bytesLeft(sa);
  }

  /**
   * reset forgets every flow and SA: the tables changed or a trace starts. Fold first, and hold
   * lock() across the fold and the reset (Engine #expressReset), or the express thread may seal
   * in between with sequence numbers the fold did not take.
   */
  reset(): void {
    this.#tun.clear();
    this.forget();
  }

  lock(): void {
    this.#tun.lock();
  }

  unlock(): void {
    this.#tun.unlock();
  }
}

// Inbound state array layout (express_in.h ExpressInSt).
export const IN_PKTS_LEFT = 0;
export const IN_BYTES_LEFT = 1;
export const IN_SA_PACKETS = 2;
export const IN_SA_BYTES = 3;
export const IN_RX_PACKETS = 4;
export const IN_RX_BYTES = 5;
export const IN_LAST_MS = 6;
export const IN_ESP_RECEIVED = 7;
export const IN_TUN_ERRORS = 8;
export const IN_PERSIST_ERRORS = 9;
export const IN_LEN = 10;

/** ExpressInTotals are the engine counters the inbound fold adds to. */
export interface ExpressInTotals { espReceived: number; tunWritten: number }

interface InEntry {
  readonly sa: InboundSa;
  readonly peer: PeerRuntime;
  readonly st: Float64Array;
}

/**
 * ExpressIn drives the NFQUEUE addon's express path for inbound batches (express_in.h),
 * the twin of ExpressOut: the engine teaches it the (SA, inner source, inner destination) of a
 * packet it opened, checked and delivered itself from a batch of one; the addon then opens the
 * next ones of that flow, sharing the SA's replay window (the same typed arrays) and writing its
 * top to the same file before it writes the batch to the TUN.
 */
export class ExpressIn extends ExpressTable<InboundSa, InEntry, ExpressInTotals> {
  readonly #nfq: ExpressNfq;
  readonly #tunFd: () => number;
  readonly #vnet: boolean;

  constructor(nfq: ExpressNfq, tunFd: () => number, vnet: boolean) {
    super();
    this.#nfq = nfq;
    this.#tunFd = tunFd;
    this.#vnet = vnet;
  }

  /** eligible says whether the addon reproduces openEsp and the replay store's save for this SA. */
  static eligible(sa: InboundSa): boolean {
    return !sa.esn && !sa.hardExpired && sa.replay.topHi === 0 && sa.replayFd() !== undefined &&
      sa.keyMaterial.length === sa.aead.keyMaterialLength && sa.aead.keyMaterialLength > SALT_LEN;
  }

  /** learn teaches the addon a flow the engine has just delivered: src/dst as the peer sent them, fake the source it became. */
  learn(family: Family, src: Uint8Array, dst: Uint8Array, fake: Uint8Array, peer: PeerRuntime, sa: InboundSa): boolean {
    if (!ExpressIn.eligible(sa)) return false;
    const slot = this.slotFor(sa, IN_LEN, (n, st) => {
      const tunFd = this.#tunFd();
      const replayFd = sa.replayFd();
      if (tunFd < 0 || replayFd === undefined) return undefined;
      const km = sa.keyMaterial;
      const w = sa.replay;
      this.#nfq.sa(n, st, sa.spi, km.subarray(0, km.length - SALT_LEN), km.subarray(km.length - SALT_LEN),
        sa.outerSource ?? new Uint8Array(0), w.words, w.top, w.size, replayFd, tunFd, this.#vnet);
      return { sa, peer, st };
    });
    return slot !== undefined && this.counted(this.#nfq.flow(slot, family, src, dst, fake) === 1);
  }

  /** foldEntries: the counters, and each moved replay top saved again for the store's flush. */
  protected foldEntries(entries: readonly InEntry[], totals: ExpressInTotals, drop: (reason: DropReason, count: number) => void): void {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      const st = e.st;
      const esp = st[IN_ESP_RECEIVED];
      if (esp === 0) continue;
      const sa = e.sa;
      const s = sa.stats;
      s.packets += st[IN_SA_PACKETS];
      s.bytes += st[IN_SA_BYTES];
      const last = st[IN_LAST_MS];
      if (last > s.lastUsedMs) s.lastUsedMs = last;
      const rx = st[IN_RX_PACKETS];
      const ps = e.peer.stats;
      ps.rxPackets += rx;
      ps.rxBytes += st[IN_RX_BYTES];
      if (rx > 0 && last > ps.lastRxMs) ps.lastRxMs = last;
      totals.espReceived += esp;
      totals.tunWritten += rx;
      const errors = st[IN_TUN_ERRORS];
      if (errors > 0) drop('tun-write', errors);
      // The addon wrote the top itself; saving it through the store marks it for the next
      // fdatasync (and retries it, with the error recorded, when the addon's write failed).
      sa.persistReplay();
      for (const k of [IN_SA_PACKETS, IN_SA_BYTES, IN_RX_PACKETS, IN_RX_BYTES, IN_ESP_RECEIVED, IN_TUN_ERRORS, IN_PERSIST_ERRORS]) st[k] = 0;
    }
  }

  protected arm(e: InEntry): void {
    const sa = e.sa;
    const st = e.st;
    if (!ExpressIn.eligible(sa)) {
      st[IN_PKTS_LEFT] = 0;
      st[IN_BYTES_LEFT] = -1;
      return;
    }
    st[IN_PKTS_LEFT] = packetsLeft(sa);
    st[IN_BYTES_LEFT] = bytesLeft(sa);
  }

  reset(): void {
    this.#nfq.clear();
    this.forget();
  }

  lock(): void {
    this.#nfq.lock();
  }

  unlock(): void {
    this.#nfq.unlock();
  }
}
