/**
 * test/support/fakes.ts: in-memory twins of the io/ interfaces, so that two whole gateways can
 * talk to each other in a unit test.
 *
 *   host A stack ──FakeTun A── Engine A ──EspLink──► Engine B ──FakeTun B── host B stack
 *   (test code injects/reads packets at the "kernel side" of each FakeTun)
 */
import type { TunDevice, EspSender, EspReceiver, Family } from '../../src/io/types.js';
import type { EspUdpHandler, EspUdpSender } from '../../src/io/udp-encap.js';
import { parseIpAddress } from '../../src/packet/address.js';

/** FakeTun is a TunDevice whose kernel side is two arrays. */
export class FakeTun implements TunDevice {
  readonly name: string;
  /** toDaemon: packets the "kernel" routed into the TUN, waiting for readBatch. */
  readonly toDaemon: Buffer[] = [];
  /** fromDaemon: packets the daemon wrote (reinjected into the "kernel"). */
  readonly fromDaemon: Buffer[] = [];
  #cb: (() => void) | undefined;
  closed = false;
  /** failWrites makes write() report a full queue. */
  failWrites = false;

  constructor(name = 'eg0') { this.name = name; }

  /** inject queues a packet on the kernel side and signals readiness. */
  inject(pkt: Uint8Array): void {
    this.toDaemon.push(Buffer.from(pkt));
    this.#cb?.();
  }

  readBatch(bufs: Buffer[], sizes: Int32Array, offset: number): number {
    let n = 0;
    while (n < bufs.length && this.toDaemon.length > 0) {
      const p = this.toDaemon.shift()!;
      const b = bufs[n];
      const len = Math.min(p.length, b.length - offset);
      p.copy(b, offset, 0, len);
      sizes[n] = len;
      n++;
    }
    return n;
  }

  write(buf: Buffer, offset: number, length: number): boolean {
    if (this.failWrites) return false;
    this.fromDaemon.push(Buffer.from(buf.subarray(offset, offset + length)));
    return true;
  }

  onReadable(cb: () => void): void { this.#cb = cb; }
  close(): void { this.closed = true; this.#cb = undefined; }
}

/**
 * EspLink joins senders and receivers by outer address: a packet sent to `dst` gets an outer
 * IP header with the sender's own address as source and is delivered to the receiver bound to
 * `dst`. `tap` sees every outer packet (the "wire"), for assertions and replay tests.
 */
export class EspLink {
  readonly #receivers = new Map<string, (pkt: Buffer) => void>();
  readonly wire: Buffer[] = [];
  /** deliver can be set to false to only record packets. */
  deliver = true;

  endpoint(addr: string, build: (src: string, dst: string, esp: Buffer) => Buffer): { sender: EspSender; receiver: EspReceiver } {
    const sender: EspSender = {
      send: (_family: Family, dst: string, buf: Buffer, offset: number, length: number): boolean => {
        const pkt = build(addr, dst, Buffer.from(buf.subarray(offset, offset + length)));
        this.wire.push(Buffer.from(pkt)); // a copy: the receiver decrypts in place
        if (this.deliver) this.#receivers.get(dst)?.(pkt);
        return true;
      },
      close: () => {},
    };
    const receiver: EspReceiver = {
      start: (onPacket) => { this.#receivers.set(addr, onPacket); },
      close: () => { this.#receivers.delete(addr); },
    };
    return { sender, receiver };
  }

  /** inject delivers a raw outer packet to the receiver bound to `dst` (replay, garbage). */
  inject(dst: string, pkt: Buffer): void {
    this.#receivers.get(dst)?.(pkt);
  }
}

/** UdpWireEntry is one datagram that crossed a UdpEspLink. */
export interface UdpWireEntry {
  readonly src: string;
  readonly dst: string;
  readonly port: number;
  readonly esp: Buffer;
}

/**
 * UdpEspLink is the twin of port 4500 (io/udp-encap.ts) for ESP: a datagram sent to `dst` is
 * delivered to the handler bound to `dst`, with the sender's address as bytes and port 4500.
 * `wire` records every datagram (a copy, before the receiver decrypts in place).
 */
export class UdpEspLink {
  readonly #handlers = new Map<string, EspUdpHandler>();
  readonly wire: UdpWireEntry[] = [];
  /** deliver can be set to false to only record datagrams. */
  deliver = true;

  /** endpoint returns the sender of `addr` and a function that binds its receiving handler. */
  endpoint(addr: string, family: Family): { sender: EspUdpSender; bind: (h: EspUdpHandler) => void } {
    const src = parseIpAddress(addr)?.bytes ?? new Uint8Array(family === 4 ? 4 : 16);
    const sender: EspUdpSender = {
      sendEsp: (_family: Family, dst: string, port: number, buf: Uint8Array, offset: number, length: number): boolean => {
        const esp = Buffer.from(buf.subarray(offset, offset + length));
        this.wire.push({ src: addr, dst, port, esp: Buffer.from(esp) });
        if (this.deliver) this.#handlers.get(dst)?.(esp, 0, esp.length, family, src, 4500);
        return true;
      },
    };
    return { sender, bind: (h) => { this.#handlers.set(addr, h); } };
  }
}
