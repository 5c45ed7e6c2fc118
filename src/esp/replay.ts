/**
 * replay.ts: the inbound anti-replay window (RFC 4303 §3.4.3), kept as an RFC 6479 ring of
 * 32-bit bitmap words, over 64-bit sequence numbers held as (hi, lo) u32 pairs (u64.ts).
 *
 *   sequence space ──────────────────────────────────────────────────────────────────▶
 *
 *        too-old        │◀──────────────── window (size bits) ──────────────▶│  new
 *   ... ─ ─ ─ ─ ─ ─ ─ ─ │ top-size+1                                     top │ top+1 ...
 *                       │ bit set = seen (replay), bit clear = fresh (ok)    │ (ok, slides)
 *
 *   ring of W words (W = next power of two >= size/32 + 1), bit of seq s at index s mod 32W:
 *
 *     word:  [ 0 ][ 1 ][ 2 ] ... [ j ] ... [W-1]
 *                                  ▲ block of top: bits above top are clear
 *
 * When top moves forward by d, only the words between the old and new top's blocks are
 * cleared (all of them if d spans the ring); nothing shifts. Because W is a power of two and
 * 32W divides 2^32, a sequence number's bit depends only on its low 32 bits.
 *
 * Two steps, as strongSwan's esp_context does (verify_seqno / set_authenticated_seqno):
 * check() before the ICV is verified never changes state; accept() after the ICV verified
 * records the number and slides the window. accept() re-checks, so two copies of one packet
 * in one batch cannot both be accepted.
 *
 * With ESN, the high 32 bits are not on the wire; esnHigh() reconstructs them from the
 * window (RFC 4303 Appendix A2.2) before the ICV check, which then covers them.
 *
 * A ReplayWindow is not safe for concurrent use; its SA is used by one caller at a time.
 */
import { GatewayError } from '../errors.js';
import { U32_MAX, U32_RANGE } from './u64.js';

/** REPLAY_WINDOW_DEFAULT is the default window size in packets. */
export const REPLAY_WINDOW_DEFAULT = 1024;
/** REPLAY_WINDOW_MIN is the smallest window accepted (RFC 4303 §3.4.3 asks for at least 32, recommends 64). */
export const REPLAY_WINDOW_MIN = 64;
/** REPLAY_WINDOW_MAX is the largest window accepted. */
export const REPLAY_WINDOW_MAX = 65536;
/** REPLAY_WORD_BITS is the bitmap word size; the window size must be a multiple of it. */
export const REPLAY_WORD_BITS = 32;

/** ReplayReject is why check()/accept() refuse a sequence number. */
export type ReplayReject = 'replay' | 'too-old';

/**
 * ReplayWindowOptions: `initialTop` starts the window as if that number had just been accepted
 * (tests, resync); `resumeFrom` starts it as if every number up to and including it had been
 * accepted (a receiver restarting from its persisted top: nothing at or below it is fresh).
 */
export interface ReplayWindowOptions {
  readonly size?: number;
  readonly initialTop?: bigint;
  readonly resumeFrom?: bigint;
}

/** ReplayWindow is one inbound SA's anti-replay state. */
export class ReplayWindow {
  /** size is the window width in packets. */
  readonly size: number;
  readonly #bits: Uint32Array;
  readonly #wordMask: number; // W - 1
  readonly #bitMask: number; // 32W - 1
  /**
   * #top holds the window's top as [high 32 bits, low 32 bits]. A typed array rather than two
   * fields so that the NFQUEUE addon's express path (datapath/express.ts) checks and moves the
   * same window, with `words`, for the packets it opens itself.
   */
  readonly #top = new Uint32Array(2);

  constructor(options: ReplayWindowOptions = {}) {
    const size = options.size ?? REPLAY_WINDOW_DEFAULT;
    if (!Number.isInteger(size) || size < REPLAY_WINDOW_MIN || size > REPLAY_WINDOW_MAX || size % REPLAY_WORD_BITS !== 0) {
      throw new GatewayError('ERR_CONFIG',
        `replay window must be a multiple of ${REPLAY_WORD_BITS} between ${REPLAY_WINDOW_MIN} and ${REPLAY_WINDOW_MAX}, got ${size}`);
    }
    this.size = size;
    let words = 1;
    while (words < size / REPLAY_WORD_BITS + 1) words *= 2;
    this.#bits = new Uint32Array(words);
    this.#wordMask = words - 1;
    this.#bitMask = words * REPLAY_WORD_BITS - 1;
    if (options.initialTop !== undefined && options.initialTop !== 0n) {
      const t = options.initialTop;
      if (t < 0n || t >= 1n << 64n) throw new GatewayError('ERR_CONFIG', `replay window initial top out of range: ${t}`);
      this.#top[0] = Number(t >> 32n);
      this.#top[1] = Number(t & 0xffffffffn);
      this.#set(this.#top[1]);
    }
    if (options.resumeFrom !== undefined && options.resumeFrom !== 0n) {
      const t = options.resumeFrom;
      if (t < 0n || t >= 1n << 64n) throw new GatewayError('ERR_CONFIG', `replay window resume point out of range: ${t}`);
      this.#top[0] = Number(t >> 32n);
      this.#top[1] = Number(t & 0xffffffffn);
      // Every bit set, except above top in top's own word (the invariant slide() relies on).
      this.#bits.fill(0xffffffff);
      const topBit = this.#top[1] & 31;
      this.#bits[(this.#top[1] & this.#bitMask) >>> 5] = topBit === 31 ? 0xffffffff : ((1 << (topBit + 1)) - 1) >>> 0;
    }
  }

  /** topHi is the high half of the highest accepted sequence number (0 before any). */
  /** words is the bitmap (bit i of the sequence numbers, modulo its size) and top the [high, low] top, shared with the express path. */
  get words(): Uint32Array {
    return this.#bits;
  }

  get top(): Uint32Array {
    return this.#top;
  }

  get topHi(): number {
    return this.#top[0];
  }

  /** topLo is the low half of the highest accepted sequence number (0 before any). */
  get topLo(): number {
    return this.#top[1];
  }

  /**
   * check reports whether (hi, lo) would be accepted now: null if fresh, 'replay' if already
   * seen inside the window, 'too-old' if left of the window. Sequence number 0 is never valid
   * (RFC 4303 §3.3.3: the first packet is 1) and is 'too-old'. Never changes state.
   */
  check(hi: number, lo: number): ReplayReject | null {
    if (hi === 0 && lo === 0) return 'too-old';
    // Exact while |d| < 2^53; beyond that rounded, but the sign stays right and |d| stays huge.
    const d = (hi - this.#top[0]) * U32_RANGE + (lo - this.#top[1]);
    if (d > 0) return null;
    if (-d >= this.size) return 'too-old';
    const idx = lo & this.#bitMask;
    return (this.#bits[idx >>> 5] & (1 << (idx & 31))) !== 0 ? 'replay' : null;
  }

  /**
   * accept records (hi, lo) as received, sliding the window if it is new on the right. Call
   * it only after the packet's ICV verified. Returns what check() would, and records nothing
   * unless that is null.
   */
  accept(hi: number, lo: number): ReplayReject | null {
    const r = this.check(hi, lo);
    if (r !== null) return r;
    const d = (hi - this.#top[0]) * U32_RANGE + (lo - this.#top[1]);
    if (d > 0) {
      const words = this.#wordMask + 1;
      if (d >= words * REPLAY_WORD_BITS) {
        this.#bits.fill(0);
      } else {
        // d < 2^32 here, so the block distance is exact modulo 2^27 (blocks of 32 in a u32).
        const oldBlock = this.#top[1] >>> 5;
        const blocks = ((lo >>> 5) - oldBlock) & 0x7ffffff;
        if (blocks >= words) {
          this.#bits.fill(0);
        } else {
          for (let i = 1; i <= blocks; i++) this.#bits[(oldBlock + i) & this.#wordMask] = 0;
        }
      }
      this.#top[0] = hi;
      this.#top[1] = lo;
    }
    this.#set(lo);
    return null;
  }

  /**
   * esnHigh reconstructs the high 32 bits of an ESN sequence number from its low half, as
   * RFC 4303 Appendix A2.2 does (W = size, T = top):
   *
   *   Case A, Tl >= W - 1 (window inside one 2^32 block):
   *     Seql >= Tl - W + 1  ->  Seqh = Th        (in or right of the window)
   *     else                ->  Seqh = Th + 1    (low half wrapped: next block)
   *   Case B, Tl < W - 1 (window spans the block boundary):
   *     Seql >= Tl - W + 1 (mod 2^32)  ->  Seqh = Th - 1   (left part, previous block)
   *     else                           ->  Seqh = Th
   *
   * Returns -1 when the answer falls outside the 64-bit space (Th - 1 < 0 or Th + 1 > 2^32-1);
   * such a packet cannot be legitimate. The optional resynchronisation of Appendix A3 (trying
   * Th + 1 after an ICV failure) is not done.
   */
  esnHigh(lo: number): number {
    const w = this.size;
    const th = this.#top[0];
    const tl = this.#top[1];
    if (tl >= w - 1) {
      if (lo >= tl - w + 1) return th;
      return th === U32_MAX ? -1 : th + 1;
    }
    if (lo >= ((tl - w + 1) >>> 0)) return th === 0 ? -1 : th - 1;
    return th;
  }

  #set(lo: number): void {
    const idx = lo & this.#bitMask;
    this.#bits[idx >>> 5] |= 1 << (idx & 31);
  }
}
