/**
 * sa.ts: the state of one security association, per direction (RFC 4301 §4.4.2.1).
 *
 *   OutboundSa: SPI, AEAD, ESN flag, the sequence counter (never wraps, reserved ahead on
 *               disk through a SeqReserver), IV generator, lifetime, stats, drop counters,
 *               and the UDP encapsulation (RFC 3948) when the SA runs over NAT traversal.
 *   InboundSa:  SPI, AEAD, ESN flag, the replay window, the expected outer source, lifetime,
 *               stats, drop counters.
 *
 * The wire work is in codec.ts; this module only holds state and the rules about it. An SA
 * is used by one caller at a time (the data path is sequential per SA; STYLE principle 5).
 *
 * Outbound sequence numbers (RFC 4303 §3.3.3): the first packet carries 1 (or `initialSeq`),
 * each next one +1. The counter never cycles: the last number sent is 2^32 - 1 (2^64 - 1 with
 * ESN), as in Linux (xfrm_replay_overflow) and strongSwan (esp_context next_seqno); the send
 * after it returns 'seq-exhausted' and so does every later one. IKE must rekey before then.
 *
 * Reservations: before the SA uses a sequence number above its reserved mark it calls
 * SeqReserver.reserve(spi, mark) synchronously, with the mark `reserveBlock` (default 2^16)
 * numbers ahead. A reserver that persists marks (FileSeqReserver, seq-store.ts) lets a
 * restarted daemon resume above every number it may have used, so a (key, IV) pair is never
 * reused even with static keys. If reserve() throws, the packet is dropped as
 * 'seq-store' (nothing may be sent without a durable reservation) and the next packet
 * tries again; the error is kept in `lastReserveError` for the control plane.
 */
import { DropCounters } from '../drops.js';
import { GatewayError } from '../errors.js';
import { createAead } from './aead.js';
import type { Aead, AeadImpl, AeadName } from './aead.js';
import { SEQUENCE_IV } from './nonce.js';
import type { IvGenerator } from './nonce.js';
import { REPLAY_WINDOW_DEFAULT, ReplayWindow } from './replay.js';
import { U32_MAX, compareU64, u64FromBigInt, u64FromNumber, u64ToNumberCeil } from './u64.js';

/** SPI_MIN is the lowest SPI an SA may use: 0 is reserved and 1..255 are reserved by IANA (RFC 4303 §2.1). */
export const SPI_MIN = 256;
/** SEQ_RESERVE_BLOCK_DEFAULT is how far ahead sequence numbers are reserved. */
export const SEQ_RESERVE_BLOCK_DEFAULT = 1 << 16;

/**
 * A SeqReserver persists outbound sequence reservations. reserve() is called synchronously
 * on the data path once per `reserveBlock` packets and must be durable when it returns; it
 * throws (GatewayError ERR_SEQ_STORE) when it cannot be.
 */
export interface SeqReserver {
  /**
   * reserve records that `spi` may use sequence numbers up to and including `upTo`. Marks above
   * 2^53 arrive rounded up to the next representable number (u64ToNumberCeil), which is safe.
   */
  reserve(spi: number, upTo: number): void;
  /** load returns the highest mark ever reserved for `spi`, 0 if none. Called once at SA creation. */
  load?(spi: number): number;
}

/** SaLifetime: hard and soft limits on what an SA may carry (RFC 4301 §4.4.2.1). Unset = no limit. */
export interface SaLifetime {
  readonly softPackets?: number;
  readonly hardPackets?: number;
  readonly softBytes?: number;
  readonly hardBytes?: number;
}

/** SaStats counts what an SA carried successfully (inner packet bytes). */
export interface SaStats {
  packets: number;
  bytes: number;
  /** lastUsedMs is the clock reading at the last successful packet, 0 if never used. */
  lastUsedMs: number;
  /** dummyPackets counts authenticated TFC dummy packets (next header 59), inbound only. */
  dummyPackets: number;
}

/** SaCommonOptions are shared by both directions. */
export interface SaCommonOptions {
  readonly spi: number;
  readonly algorithm: AeadName;
  /** keyMaterial is key || salt (aead.ts). */
  readonly keyMaterial: Uint8Array;
  /** esn enables 64-bit extended sequence numbers (RFC 4303 §2.2.1). Default false. */
  /** aeadImpl picks the AEAD implementation (default 'auto': the native addon when built; aead.ts). */
  readonly aeadImpl?: AeadImpl;
  readonly esn?: boolean;
  readonly lifetime?: SaLifetime;
  /** now is the clock for lastUsedMs. Default Date.now. */
  readonly now?: () => number;
}

/**
 * UdpEncap says an outbound SA's ESP travels in UDP (RFC 3948): from our local port 4500 to the
 * peer's endpoint address at remotePort (4500, or what a NAT in front of the peer maps it to).
 */
export interface UdpEncap {
  readonly remotePort: number;
}

/** OutboundSaOptions adds the sender-side settings. */
export interface OutboundSaOptions extends SaCommonOptions {
  /** encap, when set, sends this SA's ESP in UDP (RFC 3948). Default: plain ESP (IP protocol 50). */
  readonly encap?: UdpEncap;
  /** initialSeq is the sequence number of the first packet. Default 1. */
  readonly initialSeq?: number | bigint;
  readonly reserver?: SeqReserver;
  /** reserveBlock is how many sequence numbers each reservation covers. Default 2^16. */
  readonly reserveBlock?: number;
  /** ivGenerator picks each packet's IV. Default: the sequence number (nonce.ts). */
  readonly ivGenerator?: IvGenerator;
}

/** InboundSaOptions adds the receiver-side settings. */
export interface InboundSaOptions extends SaCommonOptions {
  /** replayWindow is the anti-replay window size in packets. Default 1024. */
  readonly replayWindow?: number;
  /** replayInitialTop starts the window as if this sequence number had been accepted (tests). */
  readonly replayInitialTop?: bigint;
  /**
   * replayStore persists the window's top so that a restarted receiver resumes from it: the SA
   * loads it at creation (every number at or below it counts as seen) and saves it whenever
   * persistReplay() finds that it advanced.
   */
  readonly replayStore?: ReplayStore;
  /** peer names the peer this SA belongs to (for logs and the SADB). */
  readonly peer?: string;
  /**
   * outerSource is the peer's tunnel endpoint address bytes (4 or 16); packets for this SPI
   * from any other source are 'wrong-source'. Unset = not checked.
   */
  readonly outerSource?: Uint8Array;
}

/** SaBase holds what both directions share. */
abstract class SaBase {
  readonly spi: number;
  readonly algorithm: AeadName;
  readonly aead: Aead;
  readonly esn: boolean;
  /** keyMaterial is key || salt, kept for the addons' express paths (datapath/express.ts). */
  readonly keyMaterial: Uint8Array;
  readonly lifetime: Required<SaLifetime>;
  readonly stats: SaStats = { packets: 0, bytes: 0, lastUsedMs: 0, dummyPackets: 0 };
  /** createdMs is the clock reading when the SA was made (its age in status). */
  readonly createdMs: number;
  /** drops counts every packet the codec refused on this SA, by reason. */
  readonly drops = new DropCounters();
  /** softExpired turns true when a soft lifetime limit is reached (time to rekey). */
  softExpired = false;
  /** hardExpired turns true when a hard limit is reached; the codec then refuses the SA. */
  hardExpired = false;
  /** aad is scratch for the AAD (SPI || [seq-high ||] seq-low), reused per packet. */
  readonly aadBuf = new Uint8Array(12);
  /** aad8 and aad12 are fixed views of aadBuf for the 32-bit and ESN layouts. */
  readonly aad8 = this.aadBuf.subarray(0, 8);
  readonly aad12 = this.aadBuf.subarray(0, 12);
  readonly #now: () => number;

  constructor(o: SaCommonOptions) {
    if (!Number.isInteger(o.spi) || o.spi < SPI_MIN || o.spi > U32_MAX) {
      throw new GatewayError('ERR_CONFIG', `SPI must be an integer in ${SPI_MIN}..${U32_MAX}, got ${o.spi}`);
    }
    this.spi = o.spi;
    this.algorithm = o.algorithm;
    this.aead = createAead(o.algorithm, o.keyMaterial, o.aeadImpl);
    this.esn = o.esn ?? false;
    this.keyMaterial = o.keyMaterial;
    const l = o.lifetime ?? {};
    this.lifetime = {
      softPackets: l.softPackets ?? Infinity, hardPackets: l.hardPackets ?? Infinity,
      softBytes: l.softBytes ?? Infinity, hardBytes: l.hardBytes ?? Infinity,
    };
    this.#now = o.now ?? Date.now;
    this.createdMs = this.#now();
  }

  /** countPacket records one packet of `bytes` inner bytes and updates the expiry flags. */
  countPacket(bytes: number): void {
    const s = this.stats;
    s.packets++;
    s.bytes += bytes;
    s.lastUsedMs = this.#now();
    const l = this.lifetime;
    if (s.packets >= l.softPackets || s.bytes >= l.softBytes) this.softExpired = true;
    if (s.packets >= l.hardPackets || s.bytes >= l.hardBytes) this.hardExpired = true;
  }
}

/** OutboundSa is the sending half of an SA. Create one per (peer, SPI); never reuse an SPI with the same key. */
export class OutboundSa extends SaBase {
  readonly ivGenerator: IvGenerator;
  /**
   * encap is the UDP encapsulation of this SA's ESP (RFC 3948), null for plain ESP. Set at
   * creation, or by the installer (ike-edges.ts sadbSink) before the SA goes into the SADB;
   * the data path reads it for every packet it sends.
   */
  encap: UdpEncap | null;
  /** seqHi/seqLo hold the sequence number assigned by the last successful takeSeq(). */
  seqHi = 0;
  seqLo = 0;
  /** exhausted is true once the sequence space is used up; it never turns back. */
  exhausted = false;
  /** lastReserveError is the last error thrown by the reserver (cleared by a successful reserve). */
  lastReserveError: unknown = undefined;
  readonly #reserver: SeqReserver | undefined;
  readonly #block: number;
  #reservedHi: number;
  #reservedLo: number;

  constructor(o: OutboundSaOptions) {
    super(o);
    this.ivGenerator = o.ivGenerator ?? SEQUENCE_IV;
    this.encap = o.encap === undefined ? null : checkEncap(o.encap);
    this.#reserver = o.reserver;
    this.#block = o.reserveBlock ?? SEQ_RESERVE_BLOCK_DEFAULT;
    if (!Number.isInteger(this.#block) || this.#block < 1) {
      throw new GatewayError('ERR_CONFIG', `reserveBlock must be a positive integer, got ${this.#block}`);
    }
    const maxHi = this.esn ? U32_MAX : 0;
    const first = typeof o.initialSeq === 'number' ? BigInt(o.initialSeq) : (o.initialSeq ?? 1n);
    if (first < 1n || first > (this.esn ? (1n << 64n) - 1n : BigInt(U32_MAX))) {
      throw new GatewayError('ERR_ESP_SEQ_EXHAUSTED',
        `initial sequence number ${first} is outside 1..${this.esn ? '2^64-1' : '2^32-1'}`);
    }
    let [hi, lo] = u64FromBigInt(first);
    if (this.#reserver === undefined) {
      this.#reservedHi = maxHi;
      this.#reservedLo = U32_MAX;
    } else {
      const stored = this.#reserver.load?.(o.spi) ?? 0;
      const [sh, sl] = u64FromNumber(stored);
      this.#reservedHi = sh;
      this.#reservedLo = sl;
      // Resume above everything that may have been used before a restart.
      if (compareU64(hi, lo, sh, sl) <= 0) {
        lo = (sl + 1) >>> 0;
        hi = lo === 0 ? sh + 1 : sh;
        if (hi > maxHi) {
          throw new GatewayError('ERR_ESP_SEQ_EXHAUSTED',
            `SPI 0x${o.spi.toString(16)}: stored sequence reservation ${stored} leaves no sequence numbers`);
        }
      }
    }
    // The counter holds the last number used: one below the first to send.
    this.seqLo = (lo - 1) >>> 0;
    this.seqHi = lo === 0 ? hi - 1 : hi;
  }

  /**
   * takeSeq assigns the next sequence number into seqHi/seqLo, reserving ahead first when it
   * crosses the reserved mark. Returns 'seq-exhausted' (and changes nothing) when the space is
   * used up, 'seq-store' when the reservation could not be made durable.
   */
  takeSeq(): 'seq-exhausted' | 'seq-store' | null {
    if (this.exhausted) return 'seq-exhausted';
    const lo = (this.seqLo + 1) >>> 0;
    let hi = this.seqHi;
    if (lo === 0) {
      hi++;
      if (!this.esn || hi > U32_MAX) {
        this.exhausted = true;
        return 'seq-exhausted';
      }
    }
    if (hi > this.#reservedHi || (hi === this.#reservedHi && lo > this.#reservedLo)) {
      if (!this.#reserveFrom(hi, lo)) return 'seq-store';
    }
    this.seqHi = hi;
    this.seqLo = lo;
    return null;
  }

  /** reservedMark is the current reservation high-water mark, as passed to the reserver. */
  get reservedMark(): bigint {
    return (BigInt(this.#reservedHi) << 32n) | BigInt(this.#reservedLo);
  }

  /**
   * reservedLow is the mark's low 32 bits when its high half is 0 (every non-ESN SA), else
   * U32_MAX: what the express path may use, without a BigInt per batch (datapath/express.ts).
   */
  get reservedLow(): number {
    return this.#reservedHi === 0 ? this.#reservedLo : U32_MAX;
  }

  #reserveFrom(hi: number, lo: number): boolean {
    const reserver = this.#reserver;
    if (reserver === undefined) return true; // unreachable: the mark is the end of the space
    // mark = min(seq + block - 1, end of space), in u64 arithmetic.
    let mHi = hi;
    let mLo = lo + this.#block - 1;
    if (mLo > U32_MAX) {
      mHi += Math.floor(mLo / 4294967296);
      mLo = mLo % 4294967296;
    }
    const maxHi = this.esn ? U32_MAX : 0;
    if (mHi > maxHi) {
      mHi = maxHi;
      mLo = U32_MAX;
    }
    const mark = u64ToNumberCeil(mHi, mLo);
    try {
      reserver.reserve(this.spi, mark);
    } catch (err) {
      this.lastReserveError = err;
      return false;
    }
    this.lastReserveError = undefined;
    const [rh, rl] = u64FromNumber(mark);
    this.#reservedHi = rh;
    this.#reservedLo = rl;
    return true;
  }
}

/** checkEncap validates a UdpEncap (port 1..65535) and returns a frozen copy. Throws GatewayError ERR_CONFIG. */
export function checkEncap(e: UdpEncap): UdpEncap {
  if (!Number.isInteger(e.remotePort) || e.remotePort < 1 || e.remotePort > 65535) {
    throw new GatewayError('ERR_CONFIG', `UDP encapsulation port must be an integer in 1..65535, got ${e.remotePort}`);
  }
  return Object.freeze({ remotePort: e.remotePort });
}

/**
 * A ReplayStore persists an inbound SA's highest accepted sequence number. save() is called on
 * the data path each time the top advances and must be cheap (one pwrite); it must survive the
 * process being killed. load() returns 0n when nothing was saved.
 */
export interface ReplayStore {
  load(spi: number): bigint;
  save(spi: number, hi: number, lo: number): void;
  /**
   * fdOf, on a store that keeps one file per SPI written at offset 0 as save() writes it (8 bytes,
   * high then low, big-endian), is that file's descriptor: the express path writes the top there.
   */
  fdOf?(spi: number): number;
}

/** InboundSa is the receiving half of an SA. */
export class InboundSa extends SaBase {
  readonly replay: ReplayWindow;
  readonly peer: string;
  readonly outerSource: Uint8Array | null;
  /** lastReplayError is the last error thrown by the replay store (the packet was still delivered). */
  lastReplayError: unknown = undefined;
  readonly #replayStore: ReplayStore | undefined;
  #savedHi = 0;
  #savedLo = 0;

  constructor(o: InboundSaOptions) {
    super(o);
    const resume = o.replayStore?.load(o.spi) ?? 0n;
    this.replay = new ReplayWindow({
      size: o.replayWindow ?? REPLAY_WINDOW_DEFAULT,
      ...(o.replayInitialTop === undefined ? {} : { initialTop: o.replayInitialTop }),
      ...(resume === 0n ? {} : { resumeFrom: resume }),
    });
    this.#replayStore = o.replayStore;
    this.#savedHi = this.replay.topHi;
    this.#savedLo = this.replay.topLo;
    this.peer = o.peer ?? '';
    if (o.outerSource !== undefined && o.outerSource.length !== 4 && o.outerSource.length !== 16) {
      throw new GatewayError('ERR_CONFIG', `outer source must be 4 or 16 bytes, got ${o.outerSource.length}`);
    }
    this.outerSource = o.outerSource === undefined ? null : Uint8Array.from(o.outerSource);
  }

  /**
   * persistReplay saves the window's top when it moved since the last save. The data path calls
   * it after each packet openEsp accepted; without a store it does nothing.
   */
  persistReplay(): void {
    const store = this.#replayStore;
    if (store === undefined) return;
    const hi = this.replay.topHi;
    const lo = this.replay.topLo;
    if (hi === this.#savedHi && lo === this.#savedLo) return;
    try {
      store.save(this.spi, hi, lo);
      this.#savedHi = hi;
      this.#savedLo = lo;
      this.lastReplayError = undefined;
    } catch (e) {
      this.lastReplayError = e;
    }
  }

  /**
   * replayFd is the file the replay store writes this SA's top to (for the NFQUEUE addon's express
   * path, which writes it the same way): -1 without a store, undefined when the store has no file.
   */
  replayFd(): number | undefined {
    const store = this.#replayStore;
    if (store === undefined) return -1;
    return store.fdOf?.(this.spi);
  }

  /**
   * sourceMatches reports whether the outer source address at buf[off, off+len) is this SA's
   * peer endpoint (always true when none is set).
   */
  sourceMatches(buf: Uint8Array, off: number, len: number): boolean {
    const want = this.outerSource;
    if (want === null) return true;
    if (len !== want.length || off < 0 || off + len > buf.length) return false;
    for (let i = 0; i < len; i++) if (buf[off + i] !== want[i]) return false;
    return true;
  }
}
