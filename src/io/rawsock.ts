/**
 * io/rawsock.ts: EspSender over the npm `raw-socket` package: one SOCK_RAW socket per family,
 * protocol 50 (ESP), no IP_HDRINCL — the kernel builds the outer IPv4/IPv6 header; we hand it
 * the ESP header onward. The destination "port" is unused (raw-socket passes 0).
 *
 * PMTU (DESIGN-NOTES, "PMTU poisoning"): the peer's real address is also the destination of the
 * steered inner traffic, so its cached path MTU can be lowered by ICMP "fragmentation needed"
 * errors about inner packets. With IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = *_PMTUDISC_PROBE the
 * raw socket ignores the cached PMTU: an outer packet up to the link MTU leaves whole (IPv4 with
 * DF set) instead of being fragmented locally. The data path bounds the outer size by the link
 * MTU itself (tunnel MTU).
 *
 * Inbound copies: a raw protocol-50 socket gets a clone of every ESP packet delivered locally.
 * We never read it: recv polling is paused at creation (raw-socket starts it in the
 * constructor) and SO_RCVBUF is set to the kernel's minimum, so once ~2 KiB is queued the kernel
 * drops further clones at the socket (cheap, counted in /proc/net/raw "drops") and userspace
 * does no work. In the espgate design the NFQUEUE rule in raw PREROUTING consumes inbound ESP
 * before local delivery, so the socket normally sees none at all. raw-socket exposes neither
 * shutdown(SHUT_RD) nor a way to build SO_ATTACH_FILTER's sock_fprog (it holds a pointer).
 *
 * Send modes (docs/io.md has the numbers):
 * - 'sync' (default): the binding's own synchronous sendto (socket.wrap.send), the path
 *   raw-socket's queue ends in. The kernel has copied the bytes before it returns, so the
 *   caller may reuse its buffer at once and send() reports EAGAIN/ENOBUFS as false.
 * - 'copy' / 'pool': raw-socket's public send(), which queues the request and sends it from a
 *   libuv writable event, one packet per event-loop turn. The caller's buffer may be reused
 *   before that, so the payload is copied first: into a fresh Buffer ('copy') or into a slot of
 *   a fixed pool released by the after-callback ('pool'; pool exhausted = refused). send()
 *   returns true when queued; failures reported later are counted in stats.failed.
 */
import { createRequire } from 'node:module';
import { isIPv4, isIPv6 } from 'node:net';

import { GatewayError } from '../errors.js';
import type { EspSender, Family } from './types.js';

/** IPPROTO_ESP is the IP protocol number of ESP (RFC 4303). */
export const IPPROTO_ESP = 50;

// <linux/in.h>, <linux/in6.h>: socket option levels, options and values.
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_SNDBUF = 7;
const IPPROTO_IP = 0;
const IP_MTU_DISCOVER = 10;
const IP_PMTUDISC_PROBE = 3;
const IPPROTO_IPV6 = 41;
const IPV6_MTU_DISCOVER = 23;
const IPV6_PMTUDISC_PROBE = 3;
/** RCVBUF_MIN asks for the smallest receive buffer; the kernel rounds it up to SOCK_MIN_RCVBUF. */
const RCVBUF_MIN = 1;

/** RAW_SEND_MAX_BYTES bounds one ESP payload (an IPv4 datagram minus its 20-byte header). */
export const RAW_SEND_MAX_BYTES = 65515;

/** The part of raw-socket's Socket we use (the package ships no types). */
interface RawSocketWrap {
  send(buf: Buffer, offset: number, length: number, address: string, cb: (bytes: number) => void): unknown;
}
interface RawSocket {
  readonly wrap?: RawSocketWrap;
  send(buf: Buffer, offset: number, length: number, address: string, before: (() => void) | null, after: (err: Error | null, bytes: number) => void): unknown;
  setOption(level: number, option: number, value: number): void;
  pauseRecv(): unknown;
  pauseSend(): unknown;
  close(): unknown;
  on(event: 'error', cb: (e: Error) => void): unknown;
}
interface RawSocketModule {
  createSocket(opts: { protocol: number; addressFamily: number }): RawSocket;
  AddressFamily: { IPv4: number; IPv6: number };
}

/** RawSendMode selects how send() hands packets to raw-socket (see the file comment). */
export type RawSendMode = 'sync' | 'copy' | 'pool';

/** RawEspSenderOptions tune openEspSender. */
export interface RawEspSenderOptions {
  /** families lists the outer address families to open sockets for (default [4, 6]). */
  readonly families?: readonly Family[];
  readonly mode?: RawSendMode;
  /** poolSize is the number of in-flight copies in 'pool' mode, and the queue bound in 'copy'. */
  readonly poolSize?: number;
  /** slotBytes is the size of one pool slot (largest outer payload; default 2048). */
  readonly slotBytes?: number;
  /** sndbufBytes sets SO_SNDBUF when given. */
  readonly sndbufBytes?: number;
  /** pmtuProbe sets *_PMTUDISC_PROBE (default true). false exists only so tests can show the trap. */
  readonly pmtuProbe?: boolean;
}

/** RawSendStats counts what send() did. sent counts packets the kernel took. */
export interface RawSendStats {
  sent: number;
  /** failed: the kernel refused (EAGAIN, ENOBUFS, EMSGSIZE, no route ...) — 'send-error' drops. */
  failed: number;
  /** refused: never handed to the kernel (pool/queue full, bad address, no socket for family). */
  refused: number;
  /** lastError is the message of the most recent failure, for status output. */
  lastError: string;
}

const DEFAULT_POOL = 256;
const DEFAULT_SLOT = 2048;

let rawModule: RawSocketModule | undefined;

function loadRawSocket(): RawSocketModule {
  if (rawModule !== undefined) return rawModule;
  try {
    rawModule = createRequire(import.meta.url)('raw-socket') as RawSocketModule;
  } catch (e) {
    throw new GatewayError('ERR_RAWSOCK', "the raw-socket package did not load (is it installed and built? 'npm rebuild raw-socket')", { cause: e });
  }
  return rawModule;
}

/** rawSocketError maps a socket()/setsockopt() failure to ERR_RAWSOCK with the likely fix. */
function rawSocketError(e: unknown, family: Family, step: string): GatewayError {
  const msg = e instanceof Error ? e.message : String(e);
  let hint = '';
  if (/not permitted|permission denied/i.test(msg)) hint = ': raw sockets need CAP_NET_RAW (run as root or grant cap_net_raw)';
  else if (/address family not supported/i.test(msg)) hint = family === 6 ? ': IPv6 is disabled in this kernel/namespace; configure families [4]' : '';
  return new GatewayError('ERR_RAWSOCK', `raw ESP socket (IPv${family}) ${step} failed: ${msg}${hint}`, { cause: e });
}

/**
 * RawEspSender sends ESP payloads over raw protocol-50 sockets. Main thread only; not safe for
 * concurrent use. Created by openEspSender.
 */
export class RawEspSender implements EspSender {
  readonly stats: RawSendStats = { sent: 0, failed: 0, refused: 0, lastError: '' };
  readonly mode: RawSendMode;
  readonly #v4: RawSocket | undefined;
  readonly #v6: RawSocket | undefined;
  readonly #poolSize: number;
  readonly #slotBytes: number;
  readonly #free: Buffer[] = [];
  #inFlight = 0;
  #closed = false;
  readonly #afterSync = (_bytes: number): void => {
    this.stats.sent++;
  };
  readonly #afterCopy = (err: Error | null): void => {
    this.#inFlight--;
    this.#count(err);
  };

  constructor(v4: RawSocket | undefined, v6: RawSocket | undefined, mode: RawSendMode, poolSize: number, slotBytes: number) {
    this.#v4 = v4;
    this.#v6 = v6;
    this.mode = mode;
    this.#poolSize = poolSize;
    this.#slotBytes = slotBytes;
    if (mode === 'pool') {
      for (let i = 0; i < poolSize; i++) this.#free.push(Buffer.allocUnsafeSlow(slotBytes));
    }
  }

  /** inFlight is the number of queued, not yet sent packets ('copy'/'pool' modes). */
  get inFlight(): number {
    return this.#inFlight;
  }

  send(family: Family, dst: string, buf: Buffer, offset: number, length: number): boolean {
    const sock = family === 4 ? this.#v4 : this.#v6;
    if (sock === undefined || this.#closed) return this.#refuse(`no IPv${family} socket`);
    if (!(family === 4 ? isIPv4(dst) : isIPv6(dst))) return this.#refuse(`bad IPv${family} address ${dst}`);
    if (offset < 0 || length <= 0 || offset + length > buf.length || length > RAW_SEND_MAX_BYTES) return this.#refuse('bad offset/length');
    switch (this.mode) {
      case 'sync':
        return this.#sendSync(sock, dst, buf, offset, length);
      case 'copy': {
        if (this.#inFlight >= this.#poolSize) return this.#refuse('send queue full');
        const copy = Buffer.allocUnsafe(length);
        buf.copy(copy, 0, offset, offset + length);
        this.#inFlight++;
        sock.send(copy, 0, length, dst, null, this.#afterCopy);
        return true;
      }
      case 'pool': {
        if (length > this.#slotBytes) return this.#refuse('packet larger than a pool slot');
        const slot = this.#free.pop();
        if (slot === undefined) return this.#refuse('send pool exhausted');
        buf.copy(slot, 0, offset, offset + length);
        this.#inFlight++;
        sock.send(slot, 0, length, dst, null, (err) => {
          this.#inFlight--;
          this.#free.push(slot);
          this.#count(err);
        });
        return true;
      }
    }
  }

  #sendSync(sock: RawSocket, dst: string, buf: Buffer, offset: number, length: number): boolean {
    const wrap = sock.wrap;
    if (wrap === undefined) return this.#refuse('raw-socket has no synchronous send');
    try {
      // sendto(2) on the non-blocking socket; the callback runs synchronously on success.
      wrap.send(buf, offset, length, dst, this.#afterSync);
      return true;
    } catch (e) {
      this.stats.failed++;
      this.stats.lastError = e instanceof Error ? e.message : String(e);
      return false;
    }
  }

  #count(err: Error | null): void {
    if (err === null) {
      this.stats.sent++;
    } else {
      this.stats.failed++;
      this.stats.lastError = err.message;
    }
  }

  #refuse(why: string): false {
    this.stats.refused++;
    this.stats.lastError = why;
    return false;
  }

  /** close closes both sockets. Queued sends in 'copy'/'pool' mode are abandoned. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#v4?.close();
    this.#v6?.close();
  }
}

/** openRawEspSocket opens one raw ESP socket with receive off and PMTU probing set. */
function openRawEspSocket(mod: RawSocketModule, family: Family, opts: RawEspSenderOptions): RawSocket {
  let sock: RawSocket;
  try {
    sock = mod.createSocket({ protocol: IPPROTO_ESP, addressFamily: family === 4 ? mod.AddressFamily.IPv4 : mod.AddressFamily.IPv6 });
  } catch (e) {
    throw rawSocketError(e, family, 'socket()');
  }
  // Before the event loop runs again: raw-socket started recv polling in its constructor.
  sock.pauseRecv();
  // raw-socket emits 'error' for poll errors and then closes the socket; count, do not crash.
  sock.on('error', () => undefined);
  try {
    sock.setOption(SOL_SOCKET, SO_RCVBUF, RCVBUF_MIN);
    if (opts.sndbufBytes !== undefined) sock.setOption(SOL_SOCKET, SO_SNDBUF, opts.sndbufBytes);
    if (opts.pmtuProbe !== false) {
      if (family === 4) sock.setOption(IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE);
      else sock.setOption(IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE);
    }
  } catch (e) {
    sock.close();
    throw rawSocketError(e, family, 'setsockopt()');
  }
  return sock;
}

/**
 * openEspSender opens the raw ESP sockets (IPv4 and IPv6 unless opts.families says otherwise).
 * Throws GatewayError('ERR_RAWSOCK') naming the fix (CAP_NET_RAW, IPv6 disabled). Control
 * plane: call at start-up.
 */
export function openEspSender(opts: RawEspSenderOptions = {}): RawEspSender {
  const mod = loadRawSocket();
  const families = opts.families ?? [4, 6];
  const v4 = families.includes(4) ? openRawEspSocket(mod, 4, opts) : undefined;
  let v6: RawSocket | undefined;
  try {
    v6 = families.includes(6) ? openRawEspSocket(mod, 6, opts) : undefined;
  } catch (e) {
    v4?.close();
    throw e;
  }
  const mode = opts.mode ?? 'sync';
  if (mode === 'sync' && [v4, v6].some((s) => s !== undefined && typeof s.wrap?.send !== 'function')) {
    v4?.close();
    v6?.close();
    throw new GatewayError('ERR_RAWSOCK', "this raw-socket version has no synchronous send (socket.wrap.send): use mode 'pool'");
  }
  return new RawEspSender(v4, v6, mode, opts.poolSize ?? DEFAULT_POOL, opts.slotBytes ?? DEFAULT_SLOT);
}
