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
import type { EspReceiver, ExpressNfq } from './types.js';
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
  readonly peerFd: number;
  readBatch(buf: Buffer, offsets: Int32Array, lengths: Int32Array): number;
  stats(): { received: number; truncated: number; batches: number; enobufs: number; verdictErrors: number; lastVerdictErrno: number; expressTaken: number; replayMapped: number; socketDrops: number };
  poll(cb: (status: number) => void): void;
  unpoll(): void;
  close(): void;
  expressSlots(buf: Buffer, offsets: Int32Array, lengths: Int32Array): void;
  expressSa(slot: number, state: Float64Array, spi: number, key: Uint8Array, salt: Uint8Array, outer: Uint8Array, words: Uint32Array, top: Uint32Array, window: number, replayFd: number, tunFd: number, vnet: boolean): void;
  expressFlow(slot: number, family: number, src: Uint8Array, dst: Uint8Array, fake: Uint8Array): number;
  expressClear(): void;
  offload(loop: object): void;
  lock(): void;
  unlock(): void;
  readonly offloaded: boolean;
}
interface NfqAddon {
  NfqSocket: new (queueNum: number, rcvbufBytes: number, queueMaxLen: number, standIn?: boolean, socketMode?: boolean, shareFd4?: number, shareFd6?: number) => NativeNfqSocket;
}

/** loadNfqAddon returns the addon, or undefined when it is not built (the reason: nfqAddonError). */
export function loadNfqAddon(): NfqAddon | undefined {
  return loadAddon<NfqAddon>('espgate_nfq').addon;
}

/** nfqAddonError says why loadNfqAddon returned undefined. */
export function nfqAddonError(): unknown {
  return loadAddon<NfqAddon>('espgate_nfq').error;
}

/** SharedFds are the sender's raw ESP sockets per family (-1: none) that socket mode reads through dup()s. */
export interface SharedFds { readonly v4: number; readonly v6: number }

/** NativeNfqStats adds the addon's own counters to NfqueueStats. */
export interface NativeNfqStats extends NfqueueStats {
  /** truncated: packets cut by the kernel's copy range (never delivered, dropped). */
  truncated: number;
  batches: number;
  verdictErrors: number;
  /** expressTaken: packets the addon's express path opened and delivered itself (not in `delivered`). */
  expressTaken: number;
  /** replayMapped: express SAs whose replay top goes through a shared mapping of its file (the rest: pwrite). */
  replayMapped: number;
  /** socketDrops (socket mode): ESP the kernel dropped at our raw sockets' full receive buffers (SO_MEMINFO). */
  socketDrops: number;
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
  /** express is the addon's path for inbound batches of learned flows (datapath/express.ts drives it); inert before start(). */
  readonly express: ExpressNfq = {
    sa: (slot, state, spi, key, salt, outer, words, top, window, replayFd, tunFd, vnet) => {
      if (this.#sock === undefined) throw new GatewayError('ERR_NFQUEUE', 'express path: the queue is not started');
      this.#sock.expressSa(slot, state, spi, key, salt, outer, words, top, window, replayFd, tunFd, vnet);
    },
    flow: (slot, family, src, dst, fake) => this.#sock?.expressFlow(slot, family, src, dst, fake) ?? 0,
    clear: () => { this.#sock?.expressClear(); },
    lock: () => { this.#sock?.lock(); },
    unlock: () => { this.#sock?.unlock(); },
    offload: (loop) => {
      if (this.#sock === undefined) throw new GatewayError('ERR_NFQUEUE', 'express path: the queue is not started');
      this.#sock.offload(loop.token);
    },
  };

  socketDrops(): number {
    return this.#sock?.stats().socketDrops ?? 0;
  }

  /** offloaded says whether the express thread reads the queue right now (tests, status). */
  get offloaded(): boolean {
    return this.#sock?.offloaded ?? false;
  }
  #callbackErrors = 0;
  #lastError = '';

  readonly #standIn: boolean;

  /**
   * opts.standIn (tests): the socket is one end of a socketpair instead of a bound queue; feed it
   * NFQUEUE packet messages through peerFd (test/support: nfqPacketMessage). No root needed.
   */
  /** socket: inbound ESP from raw ESP sockets instead of the queue (`inbound: socket`; nfq.cc "Socket mode"). */
  readonly socket: boolean;

  readonly #share: SharedFds;

  /**
   * opts.shareFds (socket mode): the sender's raw ESP sockets (EspSender.expressFd; -1: none),
   * which the receiver reads through a dup() of its own instead of opening second sockets (one
   * kernel clone per inbound packet instead of two). The sender keeps its fds.
   */
  constructor(opts: NfqueueReceiverOptions & { readonly queueMaxLen?: number; readonly standIn?: boolean; readonly socket?: boolean; readonly shareFds?: SharedFds }) {
    this.#standIn = opts.standIn === true;
    this.socket = opts.socket === true && !this.#standIn;
    this.#share = opts.shareFds ?? { v4: -1, v6: -1 };
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
      expressTaken: s?.expressTaken ?? 0,
      replayMapped: s?.replayMapped ?? 0,
      socketDrops: s?.socketDrops ?? 0,
    };
  }

  /** start binds the queue (ERR_NFQUEUE naming the cause when it cannot) and starts delivery. Once only. */
  start(onPacket: (pkt: Buffer) => void, onBatchEnd?: () => void): void {
    if (this.#sock !== undefined) throw new GatewayError('ERR_NFQUEUE', this.socket ? 'the raw ESP sockets are already open' : `NFQUEUE ${this.queueNum} already started`);
    const mod = loadNfqAddon();
    if (mod === undefined) throw new GatewayError('ERR_NFQUEUE', "espgate's NFQUEUE addon is not built ('npm run build:native')", { cause: nfqAddonError() });
    let sock: NativeNfqSocket;
    try {
      sock = new mod.NfqSocket(this.queueNum, this.#rcvbufBytes, this.#maxLen, this.#standIn, this.socket, this.#share.v4, this.#share.v6);
    } catch (e) {
      if (this.socket) {
        const what = e instanceof Error ? e.message : String(e);
        throw new GatewayError('ERR_NFQUEUE', `cannot open the raw ESP sockets for inbound ESP (${what}): this needs CAP_NET_RAW (run as root); or set inbound: queue`, { cause: e });
      }
      throw nfqueueBindError(this.queueNum, e);
    }
    this.#sock = sock;
    this.#onPacket = onPacket;
    this.#onBatchEnd = onBatchEnd;
    sock.expressSlots(this.#buf, this.#offsets, this.#lengths);
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

  /** peerFd is a stand-in's other socket end (-1 for a real queue or before start). */
  get peerFd(): number {
    return this.#sock?.peerFd ?? -1;
  }

  /** close unbinds the queue and closes the socket; queued packets are dropped by the kernel. Idempotent. */
  close(): void {
    this.#onPacket = undefined;
    this.#onBatchEnd = undefined;
    this.#sock?.close();
  }
}
