/**
 * io/tun.ts: openTun, the one way the daemon opens its TUN interface.
 *
 * Two implementations sit behind it (docs/io.md has the measurements and the decision):
 * - 'native' (tun-native.ts): the node-addon-api addon in src/io/native/ — the default;
 * - 'koffi' (tun-koffi.ts): libc through koffi — the fallback when the addon is not built.
 *
 * Persistent TUNs: `persist: true` sets TUNSETPERSIST so the interface, its addresses and its
 * routes outlive the daemon (a fail-closed design keeps the fake prefix routed into a TUN nobody
 * reads, so steered traffic is dropped rather than leaked while the daemon restarts); a later run
 * re-attaches with `mode: 'attach'` (or the default 'any'). removePersistentTun deletes one.
 */
import { GatewayError } from '../errors.js';
import { openKoffiTun } from './tun-koffi.js';
import { loadNativeAddon, nativeAddonError, openNativeTun } from './tun-native.js';
import type { TunDeviceExt, TunImpl, TunOptions } from './tun-common.js';

export { TUN_DEFAULT_BATCH, TUN_DEVICE_PATH } from './tun-common.js';
export type { TunDeviceExt, TunImpl, TunMode, TunOptions } from './tun-common.js';

/**
 * defaultTunOffload says whether the daemon opens its TUN with offloads (IFF_VNET_HDR + TSO,
 * io/vnet.ts): on, unless $ESPGATE_TUN_OFFLOAD=0 (docs/io.md has the measurements behind the
 * default: TCP 3x). Only the native implementation has them; koffi opens a plain TUN.
 */
export function defaultTunOffload(): boolean {
  return process.env['ESPGATE_TUN_OFFLOAD'] !== '0';
}

/**
 * defaultTunGro says whether a TUN with offloads also coalesces on write: on, unless
 * $ESPGATE_TUN_GRO=0 (for measurements).
 */
export function defaultTunGro(): boolean {
  return process.env['ESPGATE_TUN_GRO'] !== '0';
}

/** defaultTunImpl says which implementation openTun picks with impl 'auto'. */
export function defaultTunImpl(): TunImpl {
  return loadNativeAddon() !== undefined ? 'native' : 'koffi';
}

/**
 * openTun opens the TUN interface `name` (IFF_TUN | IFF_NO_PI, non-blocking), creating it or
 * attaching to an existing one as opts.mode says. Throws GatewayError('ERR_TUN') whose message
 * names the fix (missing /dev/net/tun: modprobe tun; EPERM: CAP_NET_ADMIN; EBUSY: another
 * process holds it). Control plane: call from the main thread at start-up.
 */
export function openTun(name: string, opts: TunOptions = {}): TunDeviceExt {
  const impl = opts.impl ?? 'auto';
  if (impl === 'koffi') return openKoffiTun(name, opts);
  if (impl === 'native') return openNativeTun(name, opts);
  if (loadNativeAddon() !== undefined) return openNativeTun(name, opts);
  try {
    return openKoffiTun(name, opts);
  } catch (e) {
    if (GatewayError.isGatewayError(e)) throw e;
    throw new GatewayError('ERR_TUN', `no TUN implementation usable: the native addon is not built and koffi failed`, { cause: [nativeAddonError(), e] });
  }
}

/**
 * removePersistentTun deletes a persistent TUN left by an earlier run: it attaches, clears
 * TUNSETPERSIST and closes. Returns false when there was no such TUN. Throws ERR_TUN otherwise.
 */
export function removePersistentTun(name: string, opts: Pick<TunOptions, 'impl' | 'multiQueue' | 'devicePath'> = {}): boolean {
  let dev: TunDeviceExt;
  try {
    dev = openTun(name, { ...opts, mode: 'attach' });
  } catch (e) {
    if (GatewayError.isGatewayError(e) && e.message.startsWith('no interface')) return false;
    throw e;
  }
  try {
    dev.setPersist(false);
  } finally {
    dev.close();
  }
  return true;
}
