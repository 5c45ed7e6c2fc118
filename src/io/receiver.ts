/**
 * io/receiver.ts: openEspReceiver, the one way the daemon opens its inbound ESP queue.
 *
 * Two implementations sit behind it (docs/io.md has the measurements and the decision):
 * - 'native' (nfq-native.ts): espgate's batched NFQUEUE addon (recvmmsg + one batch verdict) —
 *   the default;
 * - 'npm' (nfqueue.ts): the `nfqueue` package (one recv, one JS call, one verdict per packet) —
 *   the reference, and the fallback when the addon is not built.
 * Both bind the queue without fail-open: while nobody reads, ESP waits or is dropped.
 */
import type { NfqueueReceiverOptions } from './nfqueue.js';
import { NfqueueEspReceiver } from './nfqueue.js';
import { NativeNfqueueReceiver, loadNfqAddon } from './nfq-native.js';
import type { SharedFds } from './nfq-native.js';

/** ReceiverImpl names an EspReceiver implementation; 'auto' prefers 'native'. */
export type ReceiverImpl = 'auto' | 'native' | 'npm';

/** EspQueueReceiver is either implementation (both have queueNum, stats, impl). */
export type EspQueueReceiver = NativeNfqueueReceiver | NfqueueEspReceiver;

/** defaultReceiverImpl says which implementation 'auto' picks. */
export function defaultReceiverImpl(): 'native' | 'npm' {
  return loadNfqAddon() !== undefined ? 'native' : 'npm';
}

/** openEspReceiver makes a receiver for opts.queueNum (or, with opts.socket, over raw ESP sockets); start() binds it. */
export function openEspReceiver(opts: NfqueueReceiverOptions & { readonly impl?: ReceiverImpl; readonly socket?: boolean; readonly shareFds?: SharedFds }): EspQueueReceiver {
  // Raw ESP sockets (opts.socket) exist only in the native addon: without it, start() says so.
  if (opts.socket === true) return new NativeNfqueueReceiver(opts);
  const impl = opts.impl === undefined || opts.impl === 'auto' ? defaultReceiverImpl() : opts.impl;
  return impl === 'native' ? new NativeNfqueueReceiver(opts) : new NfqueueEspReceiver(opts);
}
