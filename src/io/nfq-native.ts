/**
 * io/nfq-native.ts: EspReceiver over espgate's own batched NFQUEUE addon (src/io/native/nfq.cc).
 *
 * One readiness event drains the queue in batches: one recvmmsg(2) moves up to NFQ_BATCH packets
 * into slots of one preallocated Buffer, and one NFQNL_MSG_VERDICT_BATCH drops them all in the
 * kernel; then each packet is handed to the callback as a view (no copy, no per-packet object
 * besides the view). The callback must not keep the view: the slot is reused by the next batch.
 * Unlike the npm binding (io/nfqueue.ts), close() unbinds the queue and frees the socket.
 * docs/io.md has the measurements that made this the default.
 */
import { GatewayError } from '../errors.js';
import { loadAddon } from './native-addon.js';
import type { EspReceiver } from './types.js';
import type { NfqueueReceiverOptions, NfqueueStats } from './nfqueue.js';
import { NFQUEUE_DEFAULT_RCVBUF, nfqueueBindError } from './nfqueue.js';

/** NFQ_BATCH is the number of packets taken per recvmmsg. */
export const NFQ_BATCH = 64;
/** NFQ_SLOT_BYTES holds one netlink message: headers (< 200 bytes) + the largest queued packet. */
export const NFQ_SLOT_BYTES = 65_536 + 512;
/** NFQ_ROUNDS_PER_EVENT bounds the batches drained per readiness event (then the loop turns). */
export const NFQ_ROUNDS_PER_EVENT = 16;
/** NFQ_DEFAULT_MAXLEN is the kernel queue length we ask for (the kernel default is 1024). */
export const NFQ_DEFAULT_MAXLEN = 4096;

/** The addon's NfqSocket, as nfq.cc defines it. */
interface NativeNfqSocket {
  readonly fd: number;
  readBatch(buf: Buffer, offsets: Int32Array, lengths: Int32Array): number;
  stats(): { received: number; truncated: number; batches: number; enobufs: number; verdictErrors: number; lastVerdictErrno: number };
  poll(cb: (status: number) => void): void;
  unpoll(): void;
  close(): void;
}
interface NfqAddon {
  NfqSocket: new (queueNum: number, rcvbufBytes: number, queueMaxLen: number) => NativeNfqSocket;
}

/** loadNfqAddon returns the addon, or undefined when it is not built (the reason: nfqAddonError). */
export function loadNfqAddon(): NfqAddon | undefined {
  return loadAddon<NfqAddon>('espgate_nfq').addon;
}

/** nfqAddonError says why loadNfqAddon returned undefined. */
export function nfqAddonError(): unknown {
  return loadAddon<NfqAddon>('espgate_nfq').error;
}

/** NativeNfqStats adds the addon's own counters to NfqueueStats. */
export interface NativeNfqStats extends NfqueueStats {
  /** truncated: packets cut by the kernel's copy range (never delivered, dropped). */
  truncated: number;
  batches: number;
  verdictErrors: number;
}

/** NativeNfqueueReceiver delivers inbound ESP from one NFQUEUE in batches. Main thread only. */
export class NativeNfqueueReceiver implements EspReceiver {
  readonly impl = 'native' as const;
  /** batched: onBatchEnd runs after each recvmmsg batch, before its slots are reused. */
  readonly batched = true;
  readonly queueNum: number;
  readonly #rcvbufBytes: number;
  readonly #maxLen: number;
  readonly #buf = Buffer.allocUnsafe(NFQ_BATCH * NFQ_SLOT_BYTES);
  readonly #offsets = new Int32Array(NFQ_BATCH);
  readonly #lengths = new Int32Array(NFQ_BATCH);
  #sock: NativeNfqSocket | undefined;
  #onPacket: ((pkt: Buffer) => void) | undefined;
  #onBatchEnd: (() => void) | undefined;
  #delivered = 0;
  #callbackErrors = 0;
  #lastError = '';

  constructor(opts: NfqueueReceiverOptions & { readonly queueMaxLen?: number }) {
    if (!Number.isInteger(opts.queueNum) || opts.queueNum < 0 || opts.queueNum > 65535) {
      throw new GatewayError('ERR_NFQUEUE', `NFQUEUE number ${opts.queueNum} is not an integer in 0..65535`);
    }
    this.queueNum = opts.queueNum;
    this.#rcvbufBytes = opts.rcvbufBytes ?? NFQUEUE_DEFAULT_RCVBUF;
    this.#maxLen = opts.queueMaxLen ?? NFQ_DEFAULT_MAXLEN;
  }

  get stats(): NativeNfqStats {
    const s = this.#sock?.stats();
    return {
      received: s?.received ?? 0,
      delivered: this.#delivered,
      callbackErrors: this.#callbackErrors,
      lastError: this.#lastError,
      truncated: s?.truncated ?? 0,
      batches: s?.batches ?? 0,
      verdictErrors: s?.verdictErrors ?? 0,
    };
  }

  /** start binds the queue (ERR_NFQUEUE naming the cause when it cannot) and starts delivery. Once only. */
  start(onPacket: (pkt: Buffer) => void, onBatchEnd?: () => void): void {
    if (this.#sock !== undefined) throw new GatewayError('ERR_NFQUEUE', `NFQUEUE ${this.queueNum} already started`);
    const mod = loadNfqAddon();
    if (mod === undefined) throw new GatewayError('ERR_NFQUEUE', "espgate's NFQUEUE addon is not built ('npm run build:native')", { cause: nfqAddonError() });
    let sock: NativeNfqSocket;
    try {
      sock = new mod.NfqSocket(this.queueNum, this.#rcvbufBytes, this.#maxLen);
    } catch (e) {
      throw nfqueueBindError(this.queueNum, e);
    }
    this.#sock = sock;
    this.#onPacket = onPacket;
    this.#onBatchEnd = onBatchEnd;
    sock.poll(() => { this.drain(); });
  }

  /** drain hands every pending packet to the callback (bounded rounds per call). */
  drain(): void {
    const sock = this.#sock;
    if (sock === undefined) return;
    const buf = this.#buf;
    for (let round = 0; round < NFQ_ROUNDS_PER_EVENT; round++) {
      const n = sock.readBatch(buf, this.#offsets, this.#lengths);
      if (n < 0) {
        this.#lastError = `recvmmsg: errno ${-n}`;
        return;
      }
      const cb = this.#onPacket;
      for (let i = 0; i < n; i++) {
        const off = this.#offsets[i] ?? 0;
        const len = this.#lengths[i] ?? 0;
        if (cb === undefined) continue;
        this.#delivered++;
        try {
          cb(buf.subarray(off, off + len));
        } catch (e) {
          this.#callbackErrors++;
          this.#lastError = e instanceof Error ? e.message : String(e);
        }
      }
      if (n > 0 && cb !== undefined && this.#onBatchEnd !== undefined) {
        try {
          this.#onBatchEnd();
        } catch (e) {
          this.#callbackErrors++;
          this.#lastError = e instanceof Error ? e.message : String(e);
        }
      }
      if (n === 0) return;
    }
  }

  /** close unbinds the queue and closes the socket; queued packets are dropped by the kernel. Idempotent. */
  close(): void {
    this.#onPacket = undefined;
    this.#onBatchEnd = undefined;
    this.#sock?.close();
  }
}
