/**
 * io/types.ts: the narrow interfaces behind which every kernel I/O edge sits. The data path
 * (src/datapath/) only sees these; test/support/ has in-memory twins of each.
 *
 * All packets are raw IP packets (no link header, no tun_pi). Buffers are owned by the caller
 * unless a method says otherwise.
 */

/** TunDevice is an open TUN interface (IFF_TUN | IFF_NO_PI), non-blocking. */
export interface TunDevice {
  /** name is the kernel's interface name (eg. "eg0"). */
  readonly name: string;
  /**
   * readBatch reads up to bufs.length packets without blocking. Packet i lands in bufs[i]
   * starting at `offset` (headroom for the ESP header + IV), and its length is put in sizes[i].
   * Returns the number of packets read (0 when nothing is pending). Each buffer must have room
   * for offset + MTU bytes; longer packets are truncated by the kernel and must be dropped.
   */
  readBatch(bufs: Buffer[], sizes: Int32Array, offset: number): number;
  /**
   * write writes one packet. Returns false if the kernel refused it (queue full: EAGAIN/ENOBUFS);
   * the caller counts a 'tun-write' drop. Throws only when the device is gone.
   */
  write(buf: Buffer, offset: number, length: number): boolean;
  /** onReadable registers the one callback run (on the main loop) when packets may be pending. */
  onReadable(cb: () => void): void;
  /** close stops polling and closes the fd. Idempotent. */
  close(): void;
}

/** AddressFamily of an outer (tunnel) address. */
export type Family = 4 | 6;

/**
 * EspSender sends ESP payloads (SPI onward) to a peer's tunnel endpoint; the kernel builds the
 * outer IP header (raw socket, protocol 50, no IP_HDRINCL). PMTU discovery is set to PROBE so
 * the cached PMTU of the peer's address never fragments our outer packets (DESIGN-NOTES).
 */
export interface EspSender {
  /** send returns false when the kernel refused the packet (counted as 'send-error'). */
  send(family: Family, dst: string, buf: Buffer, offset: number, length: number): boolean;
  /**
   * sendBatch, when present, sends packets [0, count) of one family in one system call
   * (sendmmsg): packet i is bufs[i][offsets[i], offsets[i] + lengths[i]) to dsts[i]. The kernel
   * has copied every payload when it returns, so the buffers may be reused at once. It returns
   * the number of packets the kernel took; failed[i] is set to 1 for each packet it refused
   * (counted as 'send-error'), 0 otherwise. Senders without it get one send() per packet.
   */
  sendBatch?(family: Family, dsts: readonly string[], bufs: readonly Buffer[], offsets: Uint32Array, lengths: Uint32Array, count: number, failed: Uint8Array): number;
  close(): void;
}

/**
 * EspReceiver delivers inbound ESP as whole IP packets, outer header included (NFQUEUE copy
 * mode). The packet has already been consumed (verdict DROP) from the kernel's point of view
 * when the callback runs: nothing reaches the stack unless the data path writes it to the TUN.
 * The buffer is only valid during the callback.
 */
export interface EspReceiver {
  start(onPacket: (pkt: Buffer) => void): void;
  close(): void;
}
