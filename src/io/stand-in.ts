/**
 * io/stand-in.ts: the data path's TUN and ESP sender without the kernel's interfaces, for the
 * data-path warm-up (datapath/warmup.ts).
 *
 * Why: V8 optimises a function for the object shapes it has seen. A warm-up through test fakes
 * would teach the engine's call sites the fakes' classes, and the first real packet would throw
 * that optimised code away ("wrong map"). So the stand-ins are the daemon's own classes: the
 * native TUN (tun-native.ts, over one end of a SOCK_SEQPACKET socketpair, which frames packets
 * as a TUN fd does) and the native raw sender (raw-native.ts, whose sendmmsg goes into a second
 * socketpair: an AF_UNIX seqpacket socket ignores the IP destination). Nothing is sent on any
 * network and no interface exists; the other ends of both pairs are read and written here.
 *
 * openStandInIo returns undefined unless the real edges are exactly those classes (the koffi
 * TUN or the npm sender would not match, and a mismatched warm-up does more harm than none).
 */
import { readSync, writevSync } from 'node:fs';

import { loadAddon } from './native-addon.js';
import { NativeEspSender } from './raw-native.js';
import type { RawAddon } from './raw-native.js';
import { openStandInTun } from './tun-native.js';
import type { EspSender, TunDevice } from './types.js';

/** StandInIo is a stand-in TUN and sender, with the ends the kernel would hold. */
export interface StandInIo {
  readonly tun: TunDevice;
  /**
   * sender writes into the socket that close() closes: never close the sender itself (its fd
   * would then be closed twice).
   */
  readonly sender: EspSender;
  /**
   * feedTun queues one packet as the kernel hands it to the TUN: pkt[off, off+len), behind
   * `hdr` (VNET_HDR_LEN bytes) when the TUN has vnetHdr. False when the socket buffer is full.
   */
  feedTun(hdr: Uint8Array | undefined, pkt: Uint8Array, off: number, len: number): boolean;
  /** takeSent reads the next sent ESP payload (SPI onward) into buf: its length, or -1 when none. */
  takeSent(buf: Buffer): number;
  /** takeWritten reads the next packet written to the TUN (behind its header with vnetHdr): its length, or -1. */
  takeWritten(buf: Buffer): number;
  /** close closes every socket. Idempotent. */
  close(): void;
}

/** readOne reads one datagram without blocking: its length, or -1 when none is queued. */
export function readOne(fd: number, buf: Buffer): number {
  if (fd < 0) return -1;
  try {
    return readSync(fd, buf, 0, buf.length, null);
  } catch {
    return -1; // EAGAIN: nothing queued (or the end was closed)
  }
}

/**
 * openStandInIo builds stand-ins matching the daemon's real `tun` and `sender` (same classes,
 * same vnetHdr and coalescing settings), or returns undefined when they are other classes or
 * the addons are not built.
 */
export function openStandInIo(real: { readonly tun: TunDevice; readonly sender: EspSender }): StandInIo | undefined {
  if (!('impl' in real.tun) || real.tun.impl !== 'native' || !(real.sender instanceof NativeEspSender)) return undefined;
  const raw = loadAddon<RawAddon>('espgate_raw').addon;
  if (raw === undefined) return undefined;
  const vnet = real.tun.vnetHdr === true;
  const tun = openStandInTun('warmup', vnet, real.tun.writeVnet !== undefined);
  if (tun === undefined) return undefined;
  // The second pair only carries what the sender sends; a stand-in queue is the way to get one.
  const sink = openStandInTun('warmup-esp', false, false);
  if (sink === undefined) {
    tun.close();
    return undefined;
  }
  const sender = new NativeEspSender(raw, sink.fd, sink.fd);
  const tunPeer = tun.peerFd;
  const sinkPeer = sink.peerFd;
  let closed = false;
  return {
    tun,
    sender,
    feedTun(hdr, pkt, off, len) {
      if (closed) return false;
      const body = pkt.subarray(off, off + len);
      try {
        writevSync(tunPeer, hdr === undefined ? [body] : [hdr, body]);
        return true;
      } catch {
        return false; // EAGAIN: the socket buffer is full
      }
    },
    takeSent: (buf) => (closed ? -1 : readOne(sinkPeer, buf)),
    takeWritten: (buf) => (closed ? -1 : readOne(tunPeer, buf)),
    close() {
      if (closed) return;
      closed = true;
      tun.close();
      sink.close();
    },
  };
}
