/**
 * io/raw-native.ts: EspSender over espgate's own addon (src/io/native/raw.cc): one SOCK_RAW
 * IPPROTO_ESP socket per family with the same recipe as rawsock.ts (no IP_HDRINCL,
 * *_PMTUDISC_PROBE, SO_RCVBUF minimal, receive shut down and never read), plus sendBatch(),
 * which sends many packets with one sendmmsg(2). The npm raw-socket path (rawsock.ts) stays as
 * the fallback and the reference; openEspSender picks one (docs/io.md has the numbers).
 */
import { GatewayError } from '../errors.js';
import { loadAddon } from './native-addon.js';
import { openEspSender as openNpmEspSender } from './rawsock.js';
import type { RawSendStats } from './rawsock.js';
import type { EspSender, Family } from './types.js';

/** RawAddon is the shape of espgate_raw.node (the contract is raw.cc's header comment). */
export interface RawAddon {
  open(family: Family, pmtuProbe: boolean): number;
  send(fd: number, family: Family, dst: string, buf: Buffer, offset: number, length: number): number;
  sendBatch(fd: number, family: Family, dsts: readonly string[], bufs: readonly Buffer[], offsets: Uint32Array, lengths: Uint32Array, count: number, errnos: Int32Array): number;
  close(fd: number): number;
  readonly RAW_BATCH_MAX: number;
}

/** RAW_BATCH_MAX is the most packets one sendBatch call takes (raw.cc kBatchMax). */
export const RAW_BATCH_MAX = 256;

const EINVAL = 22;
const EPERM = 1;
const EAFNOSUPPORT = 97;

/** RawNativeOptions tune openNativeEspSender. */
export interface RawNativeOptions {
  /** families lists the outer address families to open sockets for (default [4, 6]). */
  readonly families?: readonly Family[];
  /** pmtuProbe sets *_PMTUDISC_PROBE (default true). */
  readonly pmtuProbe?: boolean;
}

function openError(family: Family, errno: number): GatewayError {
  let hint = '';
  if (errno === EPERM) hint = ': raw sockets need CAP_NET_RAW (run as root or grant cap_net_raw)';
  else if (errno === EAFNOSUPPORT && family === 6) hint = ': IPv6 is disabled in this kernel/namespace; configure families [4]';
  return new GatewayError('ERR_RAWSOCK', `raw ESP socket (IPv${family}) failed: errno ${errno}${hint}`);
}

/**
 * NativeEspSender sends ESP payloads through raw.cc. Main thread only; not safe for concurrent
 * use. Created by openNativeEspSender (or openEspSender).
 */
export class NativeEspSender implements EspSender {
  readonly impl = 'native';
  readonly stats: RawSendStats = { sent: 0, failed: 0, refused: 0, lastError: '' };
  readonly #addon: RawAddon;
  #v4: number;
  #v6: number;
  readonly #errnos = new Int32Array(RAW_BATCH_MAX);

  constructor(addon: RawAddon, v4Fd: number, v6Fd: number) {
    this.#addon = addon;
    this.#v4 = v4Fd;
    this.#v6 = v6Fd;
  }

  expressFd(family: Family): number {
    return family === 4 ? this.#v4 : this.#v6;
  }

  send(family: Family, dst: string, buf: Buffer, offset: number, length: number): boolean {
    const fd = family === 4 ? this.#v4 : this.#v6;
    if (fd < 0) return this.#refuse(`no IPv${family} socket`);
    const r = this.#addon.send(fd, family, dst, buf, offset, length);
    if (r === 0) {
      this.stats.sent++;
      return true;
    }
    if (r === -EINVAL) return this.#refuse('bad address or offset/length');
    this.stats.failed++;
    this.stats.lastError = `errno ${-r}`;
    return false;
  }

  sendBatch(family: Family, dsts: readonly string[], bufs: readonly Buffer[], offsets: Uint32Array, lengths: Uint32Array, count: number, failed: Uint8Array): number {
    const fd = family === 4 ? this.#v4 : this.#v6;
    let sent = 0;
    for (let start = 0; start < count; start += RAW_BATCH_MAX) {
      const n = Math.min(RAW_BATCH_MAX, count - start);
      if (fd < 0) {
        for (let i = 0; i < n; i++) failed[start + i] = 1;
        this.stats.refused += n;
        this.stats.lastError = `no IPv${family} socket`;
        continue;
      }
      const d = start === 0 ? dsts : dsts.slice(start, start + n);
      const b = start === 0 ? bufs : bufs.slice(start, start + n);
      sent += this.#addon.sendBatch(fd, family, d, b, offsets.subarray(start), lengths.subarray(start), n, this.#errnos);
      for (let i = 0; i < n; i++) {
        const e = this.#errnos[i] ?? 0;
        failed[start + i] = e === 0 ? 0 : 1;
        if (e === -EINVAL) {
          this.stats.refused++;
          this.stats.lastError = 'bad address or offset/length';
        } else if (e !== 0) {
          this.stats.failed++;
          this.stats.lastError = `errno ${-e}`;
        }
      }
    }
    this.stats.sent += sent;
    return sent;
  }

  #refuse(why: string): false {
    this.stats.refused++;
    this.stats.lastError = why;
    return false;
  }

  /** close closes both sockets. Idempotent. */
  close(): void {
    if (this.#v4 >= 0) this.#addon.close(this.#v4);
    if (this.#v6 >= 0) this.#addon.close(this.#v6);
    this.#v4 = -1;
    this.#v6 = -1;
  }
}

/**
 * openNativeEspSender opens the raw ESP sockets through `addon` (default: espgate_raw.node).
 * Throws GatewayError('ERR_RAWSOCK') when the addon is missing or socket() fails. Control plane.
 */
export function openNativeEspSender(opts: RawNativeOptions = {}, addon?: RawAddon): NativeEspSender {
  let a = addon;
  if (a === undefined) {
    const loaded = loadAddon<RawAddon>('espgate_raw');
    if (loaded.addon === undefined) throw new GatewayError('ERR_RAWSOCK', "the espgate_raw addon is not built ('npm run build:native')", { cause: loaded.error });
    a = loaded.addon;
  }
  const families = opts.families ?? [4, 6];
  const probe = opts.pmtuProbe !== false;
  const v4 = families.includes(4) ? a.open(4, probe) : -1;
  if (families.includes(4) && v4 < 0) throw openError(4, -v4);
  const v6 = families.includes(6) ? a.open(6, probe) : -1;
  if (families.includes(6) && v6 < 0) {
    if (v4 >= 0) a.close(v4);
    throw openError(6, -v6);
  }
  return new NativeEspSender(a, v4, v6);
}

/** EspSenderImpl names an EspSender implementation; 'auto' prefers 'native' when built. */
export type EspSenderImpl = 'auto' | 'native' | 'npm';

/** defaultEspSenderImpl says what 'auto' picks: $ESPGATE_RAWSOCK (npm|native), else native when built. */
export function defaultEspSenderImpl(): 'native' | 'npm' {
  const env = process.env['ESPGATE_RAWSOCK'];
  if (env === 'npm' || env === 'native') return env;
  return loadAddon<RawAddon>('espgate_raw').addon === undefined ? 'npm' : 'native';
}

/**
 * defaultSendBatch says whether the native sender offers sendBatch to the data path:
 * $ESPGATE_SEND_BATCH=0 turns it off (one sendto per packet, for measurements and as a way
 * out), anything else or unset leaves it on.
 */
export function defaultSendBatch(): boolean {
  return process.env['ESPGATE_SEND_BATCH'] !== '0';
}

/**
 * perPacketOnly hides a sender's sendBatch: the engine then sends one packet per call. The
 * returned sender closes the one it wraps.
 */
export function perPacketOnly(s: EspSender): EspSender {
  return {
    send: (family, dst, buf, offset, length) => s.send(family, dst, buf, offset, length),
    close: () => { s.close(); },
  };
}

/**
 * openEspSender opens the daemon's ESP sender: native (sendmmsg batches) or the npm raw-socket
 * binding, per `impl` (default 'auto', see defaultEspSenderImpl); `batch` (default
 * defaultSendBatch()) false hides the native sendBatch. Control plane: start-up.
 */
export function openEspSender(impl: EspSenderImpl = 'auto', batch: boolean = defaultSendBatch()): EspSender {
  const which = impl === 'auto' ? defaultEspSenderImpl() : impl;
  if (which !== 'native') return openNpmEspSender();
  const s = openNativeEspSender();
  return batch ? s : perPacketOnly(s);
}
