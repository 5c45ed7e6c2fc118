/**
 * io/nfqueue.ts: EspReceiver over the npm `nfqueue` package (libnetfilter_queue): the reference
 * receiver and the fallback when espgate's own batched addon (io/nfq-native.ts) is not built.
 *
 * The rules (src/netfilter/) send inbound ESP to queue N from the raw table's PREROUTING chain:
 *
 *     iptables  -t raw -A PREROUTING -p esp -j NFQUEUE --queue-num N
 *     ip6tables -t raw -A PREROUTING -p esp -j NFQUEUE --queue-num N
 *
 * Every queued packet arrives here whole, outer IP header included (copy mode, copy range
 * 0xffff, which the kernel clamps to 65531 bytes), is handed to the callback, and then gets
 * verdict NF_DROP: we consume ESP, nothing reaches the stack (nor a raw ESP socket) unless the
 * data path writes the decrypted inner packet to the TUN.
 *
 * What the binding does and does not do (nfqueue 0.3.2, src/node_nfqueue.cpp):
 * - It calls nfq_bind_pf(AF_INET) only. Since Linux 3.8 the PF_BIND/PF_UNBIND commands are
 *   no-ops and a queue takes every family, so IPv6 packets queued by ip6tables are delivered too
 *   (test/io/nfqueue.test.ts checks both).
 * - One recv(2) and one JS call per packet, plus a 12-property info object with four interface
 *   name lookups, and a copied payload Buffer; setVerdict is one more sendto(2). docs/io.md has
 *   the measured rate.
 * - Its receive buffer is 65535 bytes, so a netlink message for a packet longer than about
 *   65,400 bytes is truncated and never gets a verdict: that packet holds a queue slot forever.
 *   The rules should drop ESP longer than NFQUEUE_MAX_PACKET_BYTES before the NFQUEUE rule.
 * - It has no close: the netlink socket and its libuv poll live until the process exits, which
 *   keeps the event loop alive. close() here stops delivery; later packets still get NF_DROP.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { GatewayError } from '../errors.js';
import type { EspReceiver } from './types.js';

/** NF_DROP is the netfilter verdict that discards the packet (linux/netfilter.h). */
export const NF_DROP = 0;

/** NFQUEUE_COPY_RANGE is the copy range the binding sets (NFQNL_COPY_PACKET, 0xffff). */
export const NFQUEUE_COPY_RANGE = 0xffff;

/**
 * NFQUEUE_MAX_PACKET_BYTES is the largest packet this receiver gets whole and answers: the kernel
 * clamps the copy range to 0xffff - 4 (NFQNL_MAX_COPY_RANGE) and the binding's 65535-byte recv
 * buffer must also hold the netlink and nfqueue attribute headers (measured in
 * test/io/nfqueue.test.ts). Rules should drop longer ESP before queueing it.
 */
export const NFQUEUE_MAX_PACKET_BYTES = 65000;

/** NFQUEUE_DEFAULT_RCVBUF is the netlink socket receive buffer we ask for (bytes). */
export const NFQUEUE_DEFAULT_RCVBUF = 8 * 1024 * 1024;

const PROC_NFQUEUE = '/proc/net/netfilter/nfnetlink_queue';
const CAP_NET_ADMIN = 12;

interface NfqPacket {
  readonly payload: Buffer;
  setVerdict(verdict: number): void;
}
interface NfqueueModule {
  createQueueHandler(num: number, bufsize: number, cb: (pkt: NfqPacket) => void): unknown;
}

/** NfqueueReceiverOptions configure openEspReceiver. */
export interface NfqueueReceiverOptions {
  /** queueNum is the NFQUEUE number the rules use (0..65535). */
  readonly queueNum: number;
  /** rcvbufBytes sizes the netlink socket buffer (default NFQUEUE_DEFAULT_RCVBUF). */
  readonly rcvbufBytes?: number;
}

/** NfqueueStats counts packets seen by the receiver. */
export interface NfqueueStats {
  /** received: packets the queue delivered (all of them got NF_DROP). */
  received: number;
  /** delivered: packets handed to the callback. */
  delivered: number;
  /** callbackErrors: callbacks that threw (the packet was still dropped). */
  callbackErrors: number;
  lastError: string;
}

/** NfqueueProcStats is one line of /proc/net/netfilter/nfnetlink_queue. */
export interface NfqueueProcStats {
  queueNum: number;
  portId: number;
  queueTotal: number;
  copyMode: number;
  copyRange: number;
  queueDropped: number;
  userDropped: number;
  idSequence: number;
}

/** readNfqueueProcStats returns the kernel's counters for queueNum, or undefined when unbound. */
export function readNfqueueProcStats(queueNum: number): NfqueueProcStats | undefined {
  if (!existsSync(PROC_NFQUEUE)) return undefined;
  for (const line of readFileSync(PROC_NFQUEUE, 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length < 8 || f[0] !== queueNum) continue;
    const [q, portId, queueTotal, copyMode, copyRange, queueDropped, userDropped, idSequence] = f as [number, number, number, number, number, number, number, number];
    return { queueNum: q, portId, queueTotal, copyMode, copyRange, queueDropped, userDropped, idSequence };
  }
  return undefined;
}

/** hasCapNetAdmin reads CapEff of this process. */
function hasCapNetAdmin(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m?.[1] === undefined) return true;
    return (BigInt(`0x${m[1]}`) & (1n << BigInt(CAP_NET_ADMIN))) !== 0n;
  } catch {
    return true;
  }
}

/** nfqueueBindError names the likely cause of a failed bind (shared with io/nfq-native.ts). */
export function nfqueueBindError(queueNum: number, e: unknown): GatewayError {
  const what = e instanceof Error ? e.message : String(e);
  let cause: string;
  if (!hasCapNetAdmin()) {
    cause = 'this process lacks CAP_NET_ADMIN (run as root or grant cap_net_admin)';
  } else if (!existsSync(PROC_NFQUEUE)) {
    cause = "nfnetlink_queue is not loaded ('modprobe nfnetlink_queue'; CONFIG_NETFILTER_NETLINK_QUEUE)";
  } else {
    const bound = readNfqueueProcStats(queueNum);
    cause = bound !== undefined
      ? `queue ${queueNum} is already bound by netlink port ${bound.portId} (another espgate, or an IPS such as suricata/snort): stop it or pick another queue number`
      : `likely another process on queue ${queueNum}, missing nfnetlink_queue, or no CAP_NET_ADMIN`;
  }
  return new GatewayError('ERR_NFQUEUE', `cannot bind NFQUEUE ${queueNum} (${what}): ${cause}`, { cause: e });
}

/**
 * NfqueueEspReceiver delivers inbound ESP from one NFQUEUE. Main thread only. Created by
 * openEspReceiver; start() binds the queue.
 */
export class NfqueueEspReceiver implements EspReceiver {
  readonly impl = 'npm' as const;
  readonly queueNum: number;
  readonly stats: NfqueueStats = { received: 0, delivered: 0, callbackErrors: 0, lastError: '' };
  readonly #rcvbufBytes: number;
  #started = false;
  #onPacket: ((pkt: Buffer) => void) | undefined;

  constructor(opts: NfqueueReceiverOptions) {
    if (!Number.isInteger(opts.queueNum) || opts.queueNum < 0 || opts.queueNum > 65535) {
      throw new GatewayError('ERR_NFQUEUE', `NFQUEUE number ${opts.queueNum} is not an integer in 0..65535`);
    }
    this.queueNum = opts.queueNum;
    this.#rcvbufBytes = opts.rcvbufBytes ?? NFQUEUE_DEFAULT_RCVBUF;
  }

  /**
   * start binds the queue and calls onPacket with each packet (outer IP header first), then
   * sets NF_DROP. Throws GatewayError('ERR_NFQUEUE') when the queue cannot be bound. Once only.
   */
  start(onPacket: (pkt: Buffer) => void): void {
    if (this.#started) throw new GatewayError('ERR_NFQUEUE', `NFQUEUE ${this.queueNum} already started`);
    let mod: NfqueueModule;
    try {
      mod = createRequire(import.meta.url)('nfqueue') as NfqueueModule;
    } catch (e) {
      throw new GatewayError('ERR_NFQUEUE', "the nfqueue package did not load (needs libnetfilter_queue; 'npm rebuild nfqueue')", { cause: e });
    }
    this.#onPacket = onPacket;
    try {
      mod.createQueueHandler(this.queueNum, this.#rcvbufBytes, (pkt) => this.#handle(pkt));
    } catch (e) {
      this.#onPacket = undefined;
      throw nfqueueBindError(this.queueNum, e);
    }
    this.#started = true;
  }

  #handle(pkt: NfqPacket): void {
    this.stats.received++;
    const cb = this.#onPacket;
    try {
      if (cb !== undefined) {
        this.stats.delivered++;
        cb(pkt.payload);
      }
    } catch (e) {
      this.stats.callbackErrors++;
      this.stats.lastError = e instanceof Error ? e.message : String(e);
    } finally {
      pkt.setVerdict(NF_DROP);
    }
  }

  /**
   * close stops delivery. The binding cannot unbind: the queue stays bound (and the event loop
   * alive) until the process exits, answering NF_DROP to everything. Idempotent.
   */
  close(): void {
    this.#onPacket = undefined;
  }
}

/** openNpmNfqueueReceiver makes a receiver over the npm binding for opts.queueNum; start() binds it. */
export function openNpmNfqueueReceiver(opts: NfqueueReceiverOptions): NfqueueEspReceiver {
  return new NfqueueEspReceiver(opts);
}
