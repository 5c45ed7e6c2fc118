/**
 * io/tun-common.ts: what the two TUN implementations (tun-native.ts over the addon in
 * src/io/native/, tun-koffi.ts over koffi) share: options, the extended device type, name
 * checks and the mapping of open-time errno values to GatewayError('ERR_TUN') messages that
 * tell the operator the fix.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { GatewayError } from '../errors.js';
import type { TunDevice } from './types.js';

/** TUN_DEVICE_PATH is the clone device every TUN is opened through. */
export const TUN_DEVICE_PATH = '/dev/net/tun';

/** IFNAMSIZ_MAX_LEN is the longest interface name the kernel takes (IFNAMSIZ 16 minus NUL). */
export const IFNAMSIZ_MAX_LEN = 15;

/** TUN_DEFAULT_BATCH is the batch size the benches and the data path default to. */
export const TUN_DEFAULT_BATCH = 64;

/** TunImpl names an implementation of TunDevice. */
export type TunImpl = 'native' | 'koffi';

/**
 * TunMode says what to do about an existing interface of the same name:
 * - 'any' (default): attach to it if it is a TUN, create it otherwise;
 * - 'create': fail with ERR_TUN if it exists (IFF_TUN_EXCL);
 * - 'attach': fail with ERR_TUN unless it exists (a persistent TUN left by an earlier run).
 */
export type TunMode = 'any' | 'create' | 'attach';

/** TunOptions tune openTun. All fields are optional. */
export interface TunOptions {
  readonly mode?: TunMode;
  /** persist sets TUNSETPERSIST: the interface (and its routes) outlive the fd and the process. */
  readonly persist?: boolean;
  /** multiQueue opens with IFF_MULTI_QUEUE; every queue of one interface must agree. */
  readonly multiQueue?: boolean;
  /** impl picks an implementation; 'auto' (default) takes the faster one that loads (docs/io.md). */
  readonly impl?: TunImpl | 'auto';
  /** devicePath replaces /dev/net/tun (tests). */
  readonly devicePath?: string;
  /**
   * offload opens with IFF_VNET_HDR and asks for TUN_OFFLOAD_TSO (io/vnet.ts): one read may then
   * return a TCP super-packet. Native implementation only; koffi ignores it (the device it
   * returns has no vnetHdr). Without it the native device clears any offload a persistent
   * interface kept from an earlier run.
   */
  readonly offload?: boolean;
  /**
   * gro (with offload; default: as offload) offers writeVnet, so the data path coalesces the TCP
   * segments of an inbound batch into super-packets (io/vnet.ts GroBatch).
   */
  readonly gro?: boolean;
}

/**
 * TunDeviceExt is what openTun returns: a TunDevice plus the extras both implementations have.
 * Not safe for concurrent use; call everything from the main thread.
 */
export interface TunDeviceExt extends TunDevice {
  /** impl says which implementation backs this device. */
  readonly impl: TunImpl;
  /** fd is the file descriptor (-1 once closed). */
  readonly fd: number;
  /** batchedReads says whether readBatch reads many packets per system call (io_uring), or one per read(2). */
  readonly batchedReads: boolean;
  /**
   * writeBatch writes packet i from bufs[i] at offset, sizes[i] bytes, for i < count, and
   * returns how many the kernel took; the rest are 'tun-write' drops. Throws when the device
   * is gone, like write.
   */
  writeBatch(bufs: Buffer[], offset: number, sizes: Int32Array, count: number): number;
  /** setPersist turns TUNSETPERSIST on or off (off + close deletes the interface). */
  setPersist(on: boolean): void;
}

/** validateTunName throws ERR_TUN unless name is a usable interface name. */
export function validateTunName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > IFNAMSIZ_MAX_LEN || /[\s/:]/.test(name) || name === '.' || name === '..') {
    throw new GatewayError('ERR_TUN', `invalid TUN name ${JSON.stringify(name)}: 1 to ${IFNAMSIZ_MAX_LEN} bytes, no whitespace, '/' or ':'`);
  }
}

/** tunExists reports whether an interface called name exists in this network namespace. */
export function tunExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** isTunInterface reports whether the interface is a TUN (it has tun_flags) and not a TAP. */
export function isTunInterface(name: string): boolean {
  const flagsFile = `/sys/class/net/${name}/tun_flags`;
  if (!existsSync(flagsFile)) return false;
  const flags = Number.parseInt(readFileSync(flagsFile, 'utf8').trim(), 16);
  return (flags & IFF_TUN) !== 0;
}

const IFF_TUN = 0x0001;

/** checkAttachable throws ERR_TUN when mode 'attach' cannot find a TUN called name. */
export function checkAttachable(name: string, mode: TunMode): void {
  if (mode !== 'attach') return;
  if (!tunExists(name)) {
    throw new GatewayError('ERR_TUN', `no interface ${name} to attach to: mode 'attach' expects a persistent TUN left by an earlier run (open it once with persist: true)`);
  }
  if (!isTunInterface(name)) {
    throw new GatewayError('ERR_TUN', `interface ${name} exists but is not a TUN: pick another name or delete it (ip link del ${name})`);
  }
}

/** errnoCode reads the errno name ("EPERM") from an Error thrown by the addon, fs or koffi code. */
export function errnoCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = e.code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/**
 * tunOpenError turns an open-time failure into GatewayError('ERR_TUN') whose message names the
 * likely fix. step is 'open' (the clone device), 'setiff' (TUNSETIFF) or 'persist'.
 */
export function tunOpenError(e: unknown, step: 'open' | 'setiff' | 'persist', name: string, devicePath: string): GatewayError {
  const code = errnoCode(e) ?? 'EUNKNOWN';
  let msg: string;
  if (step === 'open') {
    switch (code) {
      case 'ENOENT':
      case 'ENODEV':
      case 'ENXIO':
        msg = `${devicePath} is missing (${code}): load the TUN driver with 'modprobe tun' (CONFIG_TUN), or in a container pass the device in (e.g. --device /dev/net/tun)`;
        break;
      case 'EACCES':
      case 'EPERM':
        msg = `permission denied opening ${devicePath} (${code}): run as root or with CAP_NET_ADMIN, and check the device node is mode 0666 (crw-rw-rw- 10,200)`;
        break;
      default:
        msg = `cannot open ${devicePath}: ${code}`;
    }
  } else if (step === 'setiff') {
    switch (code) {
      case 'EPERM':
      case 'EACCES':
        msg = `TUNSETIFF ${name} refused (${code}): creating or attaching a TUN needs CAP_NET_ADMIN (run as root, or grant it: setcap cap_net_admin+ep, systemd AmbientCapabilities=CAP_NET_ADMIN); a persistent TUN owned by another user refuses too`;
        break;
      case 'EBUSY':
        msg = `TUN ${name} is busy (EBUSY): another process (another espgate?) holds it, or it already exists and mode is 'create'`;
        break;
      case 'EINVAL':
        msg = `interface ${name} exists but is not a TUN with these flags (EINVAL): a TAP or other device of that name, or an IFF_MULTI_QUEUE mismatch with the existing TUN`;
        break;
      default:
        msg = `TUNSETIFF ${name} failed: ${code}`;
    }
  } else {
    msg = `TUNSETPERSIST ${name} failed (${code}): needs CAP_NET_ADMIN`;
  }
  return new GatewayError('ERR_TUN', msg, { cause: e });
}

/** tunGoneError is the error write/readBatch throw once the device is gone (fatal). */
export function tunGoneError(name: string, errno: number): GatewayError {
  return new GatewayError('ERR_TUN', `TUN ${name} is gone (errno ${errno}): the interface was deleted or the fd closed`);
}

/**
 * findProjectRoot walks up from this module (src/io/ under tsx, dist/src/io/ once compiled) to
 * the directory whose package.json is espgate's, so native build outputs are found either way.
 */
export function findProjectRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (let i = 0; i < 10; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const parsed = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown };
        if (parsed.name === 'espgate') return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new GatewayError('ERR_TUN', `cannot find the espgate project root above ${from}`);
}

/**
 * applyPersist sets TUNSETPERSIST on a freshly opened device when opts.persist asks for it,
 * closing the device if that fails. Both implementations call it last in their open function.
 */
export function applyPersist<T extends TunDeviceExt>(dev: T, opts: TunOptions): T {
  if (opts.persist !== true) return dev;
  try {
    dev.setPersist(true);
  } catch (e) {
    dev.close();
    throw e;
  }
  return dev;
}
