/**
 * io/tun-koffi.ts: TunDevice over koffi (libc through FFI), no compiled code of our own.
 *
 * open(2) and close(2) go through node:fs; ioctl(TUNSETIFF / TUNSETPERSIST), read(2) and
 * write(2) through koffi (`fs.readSync` would throw an exception object on every EAGAIN, that is
 * once per batch: see docs/io.md for the numbers). Readiness has three modes, measured by
 * bench/tun-bench.ts:
 *
 * - 'uv-poll' (default): koffi.node.poll, a libuv uv_poll_t like the native addon's. koffi marks
 *   this API as not yet documented ("might change"): if a koffi upgrade drops it, the other modes
 *   still work.
 * - 'threadpool': poll(2) on [tun fd, eventfd] called through koffi's async call on a worker
 *   thread; it returns when the TUN is readable (or close() writes the eventfd), then the main
 *   thread drains the fd and re-arms. Keeps one worker thread busy for the device's lifetime.
 * - 'timer': setInterval every timerMs (1 ms) calls the callback whether or not anything is
 *   pending. Costs wake-ups when idle and up to timerMs of latency.
 */
import { closeSync, constants as fsc, openSync } from 'node:fs';

import koffi from 'koffi';

/** The handle koffi.node.poll returns. */
type KoffiPollHandle = ReturnType<typeof koffi.node.poll>;

import {
  TUN_DEVICE_PATH,
  applyPersist,
  checkAttachable,
  tunGoneError,
  tunOpenError,
  validateTunName,
} from './tun-common.js';
import type { TunDeviceExt, TunOptions } from './tun-common.js';

/** KoffiReadiness picks how the koffi device learns that packets are pending. */
export type KoffiReadiness = 'uv-poll' | 'threadpool' | 'timer';

/** KoffiTunOptions extends TunOptions with the koffi-only knobs. */
export interface KoffiTunOptions extends TunOptions {
  readonly readiness?: KoffiReadiness;
  /** timerMs is the period of the 'timer' readiness mode (default 1). */
  readonly timerMs?: number;
}

// <linux/if_tun.h>, <linux/if.h>, <poll.h>, <sys/eventfd.h> on Linux (x86_64 and arm64 agree).
const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
/** TUNSETOFFLOAD is _IOW('T', 208, unsigned int): cleared at open (no IFF_VNET_HDR here). */
const TUNSETOFFLOAD = 0x400454d0;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_TUN_EXCL = 0x8000;
const IFREQ_LEN = 40;
const IFREQ_OFFSET_FLAGS = 16;
const IFNAMSIZ = 16;
const POLLIN = 0x0001;
const POLLFD_LEN = 8;
const POLLFD_OFFSET_EVENTS = 4;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
/** POLL_TIMEOUT_MS bounds one threadpool poll(2) so a lost eventfd wake-up cannot hang close. */
const POLL_TIMEOUT_MS = 1000;

interface Libc {
  ioctlPtr(fd: number, req: number, arg: Buffer): number;
  ioctlInt(fd: number, req: number, arg: number): number;
  read(fd: number, buf: Uint8Array, count: number): number;
  write(fd: number, buf: Uint8Array, count: number): number;
  eventfd(init: number, flags: number): number;
  pollAsync(fds: Buffer, nfds: number, timeoutMs: number, cb: (err: unknown, res: number) => void): void;
}

type KoffiFn = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };

let libc: Libc | undefined;
let errnoNames: Map<number, string> | undefined;

/** loadLibc binds the few libc functions once. */
function loadLibc(): Libc {
  if (libc !== undefined) return libc;
  const lib = koffi.load('libc.so.6');
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, ...)') as KoffiFn;
  const read = lib.func('long read(int fd, void *buf, unsigned long count)') as KoffiFn;
  const write = lib.func('long write(int fd, const void *buf, unsigned long count)') as KoffiFn;
  const eventfd = lib.func('int eventfd(unsigned int initval, int flags)') as KoffiFn;
  const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)') as KoffiFn;
  libc = {
    ioctlPtr: (fd, req, arg) => ioctl(fd, req, 'void *', arg) as number,
    ioctlInt: (fd, req, arg) => ioctl(fd, req, 'unsigned long', arg) as number,
    read: (fd, buf, count) => read(fd, buf, count) as number,
    write: (fd, buf, count) => write(fd, buf, count) as number,
    eventfd: (init, flags) => eventfd(init, flags) as number,
    pollAsync: (fds, nfds, timeoutMs, cb) => poll.async(fds, nfds, timeoutMs, cb),
  };
  return libc;
}

/** errnoError builds an Error shaped like Node's system errors (code = errno name). */
function errnoError(errno: number, syscall: string, what: string): Error & { code: string; errno: number; syscall: string } {
  if (errnoNames === undefined) {
    errnoNames = new Map(Object.entries(koffi.os.errno).map(([k, v]) => [v, k]));
  }
  const code = errnoNames.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`${what}: ${code}`), { code, errno, syscall });
}

const EAGAIN = 11;
const EINTR = 4;
/** WRITE_REFUSED lists the errno values for which write() means "this packet was refused". */
const WRITE_REFUSED = new Set([EAGAIN, 105 /* ENOBUFS */, 12 /* ENOMEM */, 22 /* EINVAL */, 90 /* EMSGSIZE */, 14 /* EFAULT */]);

/**
 * KoffiTun is a TunDevice whose syscalls go through koffi. Main thread only. Created by
 * openKoffiTun.
 */
class KoffiTun implements TunDeviceExt {
  readonly impl = 'koffi' as const;
  readonly name: string;
  #fd: number;
  readonly #libc: Libc;
  readonly #readiness: KoffiReadiness;
  readonly #timerMs: number;
  #cb: (() => void) | undefined;
  #uvPoll: KoffiPollHandle | undefined;
  #timer: NodeJS.Timeout | undefined;
  #eventFd = -1;
  #pollFds: Buffer | undefined;
  #pollInFlight = false;

  constructor(fd: number, name: string, lib: Libc, readiness: KoffiReadiness, timerMs: number) {
    this.#fd = fd;
    this.name = name;
    this.#libc = lib;
    this.#readiness = readiness;
    this.#timerMs = timerMs;
  }

  get fd(): number {
    return this.#fd;
  }

  /** batchedReads: never here (one read(2) per packet through koffi). */
  get batchedReads(): boolean {
    return false;
  }

  readBatch(bufs: Buffer[], sizes: Int32Array, offset: number): number {
    if (this.#fd < 0) throw tunGoneError(this.name, 9);
    const limit = Math.min(bufs.length, sizes.length);
    let n = 0;
    while (n < limit) {
      const buf = bufs[n];
      if (buf === undefined || buf.length <= offset) throw new RangeError('bufs[i] must be a Buffer longer than offset');
      // subarray: koffi passes the view's own start, so the read lands at `offset`.
      const r = this.#libc.read(this.#fd, offset === 0 ? buf : buf.subarray(offset), buf.length - offset);
      if (r < 0) {
        const err = koffi.errno();
        if (err === EINTR) continue;
        if (err === EAGAIN) break;
        if (n === 0) this.#gone(err);
        break;
      }
      sizes[n] = r;
      n++;
    }
    return n;
  }

  write(buf: Buffer, offset: number, length: number): boolean {
    if (this.#fd < 0) throw tunGoneError(this.name, 9);
    if (offset + length > buf.length) throw new RangeError('offset + length beyond the buffer');
    return this.#writeOne(offset === 0 ? buf : buf.subarray(offset), length);
  }

  writeBatch(bufs: Buffer[], offset: number, sizes: Int32Array, count: number): number {
    if (this.#fd < 0) throw tunGoneError(this.name, 9);
    let sent = 0;
    for (let i = 0; i < count; i++) {
      const buf = bufs[i];
      const len = sizes[i];
      if (buf === undefined || len === undefined || offset + len > buf.length) throw new RangeError('bufs[i] shorter than offset + sizes[i]');
      if (this.#writeOne(offset === 0 ? buf : buf.subarray(offset), len)) sent++;
    }
    return sent;
  }

  #writeOne(view: Uint8Array, length: number): boolean {
    for (let tries = 0; tries < 8; tries++) {
      if (this.#libc.write(this.#fd, view, length) >= 0) return true;
      const err = koffi.errno();
      if (err === EINTR) continue;
      if (WRITE_REFUSED.has(err)) return false;
      this.#gone(err);
    }
    return false;
  }

  setPersist(on: boolean): void {
    if (this.#libc.ioctlInt(this.#fd, TUNSETPERSIST, on ? 1 : 0) < 0) {
      throw tunOpenError(errnoError(koffi.errno(), 'ioctl', `TUNSETPERSIST ${this.name}`), 'persist', this.name, TUN_DEVICE_PATH);
    }
  }

  onReadable(cb: () => void): void {
    if (this.#fd < 0) throw tunGoneError(this.name, 9);
    const first = this.#cb === undefined;
    this.#cb = cb;
    if (!first) return;
    switch (this.#readiness) {
      case 'uv-poll':
        this.#uvPoll = koffi.node.poll(this.#fd, { readable: true }, () => this.#cb?.());
        break;
      case 'timer':
        this.#timer = setInterval(() => this.#cb?.(), this.#timerMs);
        break;
      case 'threadpool':
        this.#startThreadpoll();
        break;
    }
  }

  /** #startThreadpoll arms one poll(2) on a worker thread; its callback re-arms after draining. */
  #startThreadpoll(): void {
    if (this.#eventFd < 0) {
      this.#eventFd = this.#libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (this.#eventFd < 0) throw errnoError(koffi.errno(), 'eventfd', 'eventfd');
      this.#pollFds = Buffer.alloc(2 * POLLFD_LEN);
      this.#pollFds.writeInt32LE(this.#fd, 0);
      this.#pollFds.writeInt16LE(POLLIN, POLLFD_OFFSET_EVENTS);
      this.#pollFds.writeInt32LE(this.#eventFd, POLLFD_LEN);
      this.#pollFds.writeInt16LE(POLLIN, POLLFD_LEN + POLLFD_OFFSET_EVENTS);
    }
    const fds = this.#pollFds;
    if (fds === undefined || this.#pollInFlight) return;
    this.#pollInFlight = true;
    this.#libc.pollAsync(fds, 2, POLL_TIMEOUT_MS, (_err, res) => {
      this.#pollInFlight = false;
      if (this.#fd < 0) {
        // close() ran while poll(2) slept: the eventfd can go now that no thread uses it.
        if (this.#eventFd >= 0) closeSync(this.#eventFd);
        this.#eventFd = -1;
        return;
      }
      if (res > 0) this.#cb?.();
      if (this.#fd >= 0) this.#startThreadpoll();
    });
  }

  close(): void {
    if (this.#fd < 0) return;
    this.#uvPoll?.close();
    this.#uvPoll = undefined;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#cb = undefined;
    const fd = this.#fd;
    this.#fd = -1;
    if (this.#eventFd >= 0) {
      if (this.#pollInFlight) {
        // Wake the worker's poll(2); its callback closes the eventfd.
        this.#libc.write(this.#eventFd, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), 8);
      } else {
        closeSync(this.#eventFd);
        this.#eventFd = -1;
      }
    }
    // A poll(2) still in flight holds its own reference to the file until it wakes (microseconds
    // after the eventfd write), so the interface may linger that long after close().
    closeSync(fd);
  }

  #gone(errno: number): never {
    this.close();
    throw tunGoneError(this.name, errno);
  }
}

/**
 * openKoffiTun opens (creating or attaching to) the TUN interface `name` through koffi.
 * Throws GatewayError('ERR_TUN') with the fix in the message when it cannot.
 */
export function openKoffiTun(name: string, opts: KoffiTunOptions = {}): TunDeviceExt {
  validateTunName(name);
  const mode = opts.mode ?? 'any';
  checkAttachable(name, mode);
  const path = opts.devicePath ?? TUN_DEVICE_PATH;
  const lib = loadLibc();
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK | 0o2000000 /* O_CLOEXEC */);
  } catch (e) {
    throw tunOpenError(e, 'open', name, path);
  }
  const ifr = Buffer.alloc(IFREQ_LEN);
  ifr.write(name, 0, IFNAMSIZ - 1, 'utf8');
  let flags = IFF_TUN | IFF_NO_PI;
  if (opts.multiQueue === true) flags |= IFF_MULTI_QUEUE;
  if (mode === 'create') flags |= IFF_TUN_EXCL;
  ifr.writeUInt16LE(flags, IFREQ_OFFSET_FLAGS);
  if (lib.ioctlPtr(fd, TUNSETIFF, ifr) < 0) {
    const err = errnoError(koffi.errno(), 'ioctl', `TUNSETIFF ${name}`);
    closeSync(fd);
    throw tunOpenError(err, 'setiff', name, path);
  }
  // A persistent interface may keep TSO from a native run with offloads: without a
  // virtio_net_hdr this fd could then be handed 64 KiB super-packets. Clear it (best effort).
  lib.ioctlInt(fd, TUNSETOFFLOAD, 0);
  const end = ifr.indexOf(0);
  const kernelName = ifr.toString('utf8', 0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end);
  return applyPersist(new KoffiTun(fd, kernelName, lib, opts.readiness ?? 'uv-poll', opts.timerMs ?? 1), opts);
}
