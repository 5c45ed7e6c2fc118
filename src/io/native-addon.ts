/**
 * io/native-addon.ts: loading espgate's own addons (src/io/native/, built by
 * `npm run build:native`), once each. A missing addon is a value, not an exception: every
 * caller has a fallback (koffi for the TUN, the npm binding for NFQUEUE, node:crypto for
 * AES-GCM, no sd_notify outside systemd) or a clear error of its own.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { findProjectRoot } from './tun-common.js';

/** NATIVE_BUILD_DIR is where node-gyp leaves the addons, from the project root. */
export const NATIVE_BUILD_DIR = 'src/io/native/build/Release';

const cache = new Map<string, { addon?: unknown; error?: unknown }>();

/**
 * loadAddon returns the addon `name` (e.g. 'espgate_nfq') as T, or its load error. The
 * caller states the addon's shape as T (the contract is the .cc file's header comment).
 */
export function loadAddon<T>(name: string): { readonly addon: T; readonly error?: undefined } | { readonly addon?: undefined; readonly error: unknown } {
  let hit = cache.get(name);
  if (hit === undefined) {
    try {
      hit = { addon: createRequire(import.meta.url)(join(findProjectRoot(), NATIVE_BUILD_DIR, `${name}.node`)) };
    } catch (e) {
      hit = { error: e };
    }
    cache.set(name, hit);
  }
  return hit.addon === undefined ? { error: hit.error } : { addon: hit.addon as T };
}
