/**
 * io/tun-native.ts: TunDevice over the node-addon-api addon in src/io/native/ (tun.cc).
 *
 * Readiness is a libuv uv_poll_t inside the addon: when the fd turns readable the addon calls
 * our callback on the main thread, and the data path drains the fd with synchronous readBatch
 * calls (one JS -> C++ transition per batch, one read(2) per packet).
 */
import { GatewayError } from '../errors.js';
import {
  TUN_DEVICE_PATH,
  applyPersist,
  checkAttachable,
  errnoCode,
  tunGoneError,
  tunOpenError,
  validateTunName,
} from './tun-common.js';
import type { TunDeviceExt, TunOptions } from './tun-common.js';
import type { ExpressLoopHandle, ExpressTun } from './types.js';
import { NATIVE_BUILD_DIR, loadAddon } from './native-addon.js';
import { TUN_F_CSUM, TUN_OFFLOAD_TSO } from './vnet.js';

/** The addon's TunQueue, as tun.cc defines it. */
interface NativeTunQueue {
  readonly name: string;
  readonly fd: number;
  /** peerFd is a stand-in queue's other socket end (-1 for a real queue). */
  readonly peerFd: number;
  readonly vnetHdr: boolean;
  readonly batchedReads: boolean;
  readBatch(bufs: Buffer[], sizes: Int32Array, offset: number, hdrs?: Uint8Array): number;
  setOffload(flags: number): number;
  write(buf: Buffer, offset: number, length: number): number;
  writeVnet(hdr: Uint8Array, buf: Buffer, offset: number, length: number): number;
  writeBatch(bufs: Buffer[], offset: number, sizes: Int32Array, count: number): number;
  setPersist(on: boolean): void;
  poll(cb: (status: number) => void): void;
  unpoll(): void;
  close(): void;
  expressSlot(bufs: readonly Buffer[], hdrs: Uint8Array | null): void;
  expressSa(slot: number, state: Float64Array, spi: number, key: Uint8Array, salt: Uint8Array, fd: number, family: number, endpoint: Uint8Array): void;
  expressFlow(family: number, src: Uint8Array, fake: Uint8Array, real: Uint8Array, slot: number): number;
  expressClear(): void;
  offload(loop: object): void;
  lock(): void;
  unlock(): void;
  readonly offloaded: boolean;
}

/** The addon's ExpressLoop (express_loop.h): the express paths' thread; api is the token the queues attach with. */
interface NativeExpressLoop {
  readonly api: object;
  close(): void;
}

interface NativeAddon {
  TunQueue: new (path: string, name: string, flags: number) => NativeTunQueue;
  ExpressLoop: new () => NativeExpressLoop;
}

const OPEN_MULTI_QUEUE = 1;
const OPEN_EXCLUSIVE = 2;
const OPEN_VNET_HDR = 4;
const OPEN_STAND_IN = 8;

/**
 * loadNativeAddon returns the addon, or undefined (with the reason kept for
 * nativeAddonError) when it has not been built. The result is cached.
 */
export function loadNativeAddon(): NativeAddon | undefined {
  return loadAddon<NativeAddon>('espgate_tun').addon;
}

/** nativeAddonError says why loadNativeAddon returned undefined. */
export function nativeAddonError(): unknown {
  return loadAddon<NativeAddon>('espgate_tun').error;
}

/**
 * NativeTun is a TunDevice over one addon TunQueue. Main thread only. Created by
 * openNativeTun.
 */
class NativeTun implements TunDeviceExt {
  readonly impl = 'native' as const;
  readonly name: string;
  readonly vnetHdr: boolean;
  /** offloadFlags are the TUN_F_* bits the kernel accepted (0: none). */
  readonly offloadFlags: number;
  readonly writeVnet: ((hdr: Uint8Array, buf: Buffer, offset: number, length: number) => boolean) | undefined;
  readonly #q: NativeTunQueue;
  #closed = false;
  /** #loop is the express thread this queue started (express.loop()), closed with the queue. */
  #loop: NativeExpressLoop | undefined;
  /** express is the addon's path for outbound packets of learned flows (datapath/express.ts drives it). */
  readonly express: ExpressTun;

  constructor(q: NativeTunQueue, offloadFlags: number, gro: boolean) {
    this.#q = q;
    this.name = q.name;
    this.vnetHdr = q.vnetHdr;
    this.offloadFlags = offloadFlags;
    this.writeVnet = gro && q.vnetHdr ? (hdr, buf, offset, length) => this.#writeVnet(hdr, buf, offset, length) : undefined;
    this.express = {
      slot: (bufs, hdrs) => q.expressSlot(bufs, hdrs),
      sa: (slot, state, spi, key, salt, fd, family, endpoint) => q.expressSa(slot, state, spi, key, salt, fd, family, endpoint),
      flow: (family, src, fake, real, slot) => (this.#closed ? 0 : q.expressFlow(family, src, fake, real, slot)),
      clear: () => q.expressClear(),
      tunFd: () => this.fd,
      lock: () => q.lock(),
      unlock: () => q.unlock(),
      loop: () => this.#expressLoop(),
    };
  }

  /** offloaded says whether the express thread reads the TUN right now (tests, status). */
  get offloaded(): boolean {
    return !this.#closed && this.#q.offloaded;
  }

  #expressLoop(): ExpressLoopHandle | undefined {
    if (this.#closed) return undefined;
    if (this.#loop === undefined) {
      const mod = loadNativeAddon();
      if (mod === undefined) return undefined;
      const loop = new mod.ExpressLoop();
      try {
        this.#q.offload(loop.api);
      } catch (e) {
        loop.close();
        throw e;
      }
      this.#loop = loop;
    }
    return { token: this.#loop.api };
  }

  #writeVnet(hdr: Uint8Array, buf: Buffer, offset: number, length: number): boolean {
    const r = this.#q.writeVnet(hdr, buf, offset, length);
    if (r < 0) this.#gone(-r);
    return r === 1;
  }

  get fd(): number {
    return this.#closed ? -1 : this.#q.fd;
  }

  get batchedReads(): boolean {
    return !this.#closed && this.#q.batchedReads;
  }

  /** peerFd is a stand-in's other socket end (openStandInTun), -1 for a real device or once closed. */
  get peerFd(): number {
    return this.#closed ? -1 : this.#q.peerFd;
  }

  readBatch(bufs: Buffer[], sizes: Int32Array, offset: number, hdrs?: Uint8Array): number {
    const n = this.#q.readBatch(bufs, sizes, offset, hdrs);
    if (n < 0) this.#gone(-n);
    return n;
  }

  write(buf: Buffer, offset: number, length: number): boolean {
    const r = this.#q.write(buf, offset, length);
    if (r < 0) this.#gone(-r);
    return r === 1;
  }

  writeBatch(bufs: Buffer[], offset: number, sizes: Int32Array, count: number): number {
    const r = this.#q.writeBatch(bufs, offset, sizes, count);
    if (r < 0) this.#gone(-r);
    return r;
  }

  setPersist(on: boolean): void {
    try {
      this.#q.setPersist(on);
    } catch (e) {
      throw tunOpenError(e, 'persist', this.name, TUN_DEVICE_PATH);
    }
  }

  onReadable(cb: () => void): void {
    if (this.#closed) throw tunGoneError(this.name, 9 /* EBADF */);
    this.#q.poll(() => cb());
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#q.close();
    this.#loop?.close();
    this.#loop = undefined;
  }

  /** #gone closes the device and throws: a fatal read/write error (style: it closes the device). */
  #gone(errno: number): never {
    this.close();
    throw tunGoneError(this.name, errno);
  }
}

/**
 * openNativeTun opens (creating or attaching to) the TUN interface `name` through the addon.
 * Throws GatewayError('ERR_TUN') with the fix in the message when it cannot.
 */
export function openNativeTun(name: string, opts: TunOptions = {}): TunDeviceExt {
  validateTunName(name);
  const mod = loadNativeAddon();
  if (mod === undefined) {
    throw new GatewayError('ERR_TUN', `the native TUN addon is not built (${NATIVE_BUILD_DIR}/espgate_tun.node): run 'npm run build:native'`, { cause: nativeAddonError() });
  }
  const mode = opts.mode ?? 'any';
  checkAttachable(name, mode);
  const path = opts.devicePath ?? TUN_DEVICE_PATH;
  const offload = opts.offload === true;
  const flags = (opts.multiQueue === true ? OPEN_MULTI_QUEUE : 0) | (mode === 'create' ? OPEN_EXCLUSIVE : 0) | (offload ? OPEN_VNET_HDR : 0);
  let q: NativeTunQueue;
  try {
    q = new mod.TunQueue(path, name, flags);
  } catch (e) {
    const syscall = typeof e === 'object' && e !== null && 'syscall' in e ? e.syscall : undefined;
    if (errnoCode(e) === undefined) throw e; // a programming error (TypeError), not the kernel
    throw tunOpenError(e, syscall === 'open' ? 'open' : 'setiff', name, path);
  }
  // With offload: TSO and checksum offload, or (an older kernel refusing a bit) checksum only,
  // or none; the virtio_net_hdr stays either way. Without: clear what a persistent interface
  // may have kept, so the kernel never hands this fd a super-packet.
  let accepted = 0;
  if (offload) {
    for (const want of [TUN_OFFLOAD_TSO, TUN_F_CSUM]) {
      if (q.setOffload(want) === 0) {
        accepted = want;
        break;
      }
    }
  } else {
    q.setOffload(0);
  }
  return applyPersist(new NativeTun(q, accepted, offload && (opts.gro ?? true)), opts);
}

/**
 * openStandInTun returns a TunDevice of the same class as openNativeTun's, over one end of an
 * AF_UNIX SOCK_SEQPACKET socketpair instead of a kernel interface (tun.cc kOpenStandIn): one
 * packet per read and write, behind a virtio_net_hdr when `vnet`. The caller feeds packets
 * "from the kernel" into, and takes written packets out of, the other end (`peerFd`); close()
 * closes both ends. No root, no interface: for the data-path warm-up (datapath/warmup.ts), so
 * that V8 optimises the real classes, and for tests. Undefined when the addon is not built.
 */
export function openStandInTun(name: string, vnet: boolean, gro: boolean): (TunDeviceExt & { readonly peerFd: number }) | undefined {
  const mod = loadNativeAddon();
  if (mod === undefined) return undefined;
  const q = new mod.TunQueue('', name, OPEN_STAND_IN | (vnet ? OPEN_VNET_HDR : 0));
  return new NativeTun(q, 0, vnet && gro);
}
