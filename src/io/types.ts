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
   * vnetHdr, when true, says the device was opened with IFF_VNET_HDR and offloads (io/vnet.ts):
   * readBatch then needs `hdrs` and may return TCP super-packets of up to 64 KiB, and packets
   * whose transport checksum is partial; the reader splits and completes them. Absent or false:
   * plain packets of at most the MTU.
   */
  readonly vnetHdr?: boolean;
  /** batchedReads, when true, says readBatch reads many packets per system call (io_uring); absent or false: one read(2) each. */
  readonly batchedReads?: boolean;
  /**
   * readBatch reads up to bufs.length packets without blocking. Packet i lands in bufs[i]
   * starting at `offset` (headroom for the ESP header + IV), and its length is put in sizes[i].
   * Returns the number of packets read (0 when nothing is pending). Each buffer must have room
   * for offset + MTU bytes (offset + 65535 with vnetHdr); longer packets are truncated by the
   * kernel and must be dropped. With vnetHdr, packet i's virtio_net_hdr goes to
   * hdrs[VNET_HDR_LEN * i] (hdrs bounds the batch too); without, hdrs is ignored.
   */
  readBatch(bufs: Buffer[], sizes: Int32Array, offset: number, hdrs?: Uint8Array): number;
  /**
   * write writes one packet (with vnetHdr, behind a zero virtio_net_hdr the device adds itself).
   * Returns false if the kernel refused it (queue full: EAGAIN/ENOBUFS);
   * the caller counts a 'tun-write' drop. Throws only when the device is gone.
   */
  write(buf: Buffer, offset: number, length: number): boolean;
  /**
   * writeVnet, present on a device with vnetHdr that coalesces on write (TunOptions.gro), writes
   * one packet behind the given virtio_net_hdr (hdr[0, VNET_HDR_LEN)): a TCP super-packet built
   * by io/vnet.ts GroBatch. Returns and throws like write.
   */
  readonly writeVnet?: ((hdr: Uint8Array, buf: Buffer, offset: number, length: number) => boolean) | undefined;
  /** onReadable registers the one callback run (on the main loop) when packets may be pending. */
  onReadable(cb: () => void): void;
  /** close stops polling and closes the fd. Idempotent. */
  close(): void;
  /** express, on the native TUN, is its path for lone outbound packets (datapath/express.ts). */
  readonly express?: ExpressTun;
}

/**
 * ExpressTun is the TUN addon's express path (src/io/native/express.h): on a readable event it
 * reads a packet itself and, when it belongs to a learned flow, rewrites, seals and sends it
 * without entering JavaScript; anything else is left for the next readBatch, unchanged.
 */
export interface ExpressTun {
  /** slot gives the buffers the path reads into (readBatch's bufs, up to 64) and their headers (readBatch's hdrs). */
  slot(bufs: readonly Buffer[], hdrs: Uint8Array | null): void;
  /** sa registers an outbound SA in slot (0..31) with its state array (express.ts ST_*). Throws on bad arguments. */
  sa(slot: number, state: Float64Array, spi: number, key: Uint8Array, salt: Uint8Array, fd: number, family: Family, endpoint: Uint8Array): void;
  /** flow learns (family, src, fake destination) -> real destination, SA slot: 1 learned, 0 known or full. */
  flow(family: Family, src: Uint8Array, fake: Uint8Array, real: Uint8Array, slot: number): number;
  /** clear forgets every flow and SA. */
  clear(): void;
  /** tunFd is the TUN's descriptor (the NFQUEUE addon's express path writes inner packets to it), -1 once closed. */
  tunFd(): number;
  /** lock and unlock bracket the engine's reads and writes of the SA state arrays (the express thread seals under the same lock). */
  lock(): void;
  unlock(): void;
  /**
   * loop starts the express paths' own thread (src/io/native/express_loop.h), once, and hands it
   * this TUN; the handle lets the receiver join it. Undefined when there is none (closed, not built).
   */
  loop?(): ExpressLoopHandle | undefined;
}

/** ExpressLoopHandle is the express thread of a TUN, for ExpressNfq.offload: opaque. */
export interface ExpressLoopHandle {
  readonly token: object;
}

/**
 * ExpressNfq is the NFQUEUE addon's express path (src/io/native/express_in.h): a lone ESP packet
 * of a learned flow is opened, checked and written to the TUN without entering JavaScript.
 */
export interface ExpressNfq {
  /** sa registers an inbound SA in slot (0..31): state (express.ts IN_*), the replay window's words and top, its file. Throws on bad arguments. */
  sa(slot: number, state: Float64Array, spi: number, key: Uint8Array, salt: Uint8Array, outer: Uint8Array, words: Uint32Array, top: Uint32Array, window: number, replayFd: number, tunFd: number, vnet: boolean): void;
  /** flow learns (SA slot, inner source, inner destination) -> fake source: 1 learned, 0 known or full. */
  flow(slot: number, family: Family, src: Uint8Array, dst: Uint8Array, fake: Uint8Array): number;
  /** clear forgets every flow and SA. */
  clear(): void;
  /** lock and unlock bracket the engine's reads and writes of the inbound state arrays and of the replay windows the express thread shares. */
  lock(): void;
  unlock(): void;
  /** offload hands the queue's express path to the TUN's express thread (ExpressTun.loop). */
  offload?(loop: ExpressLoopHandle): void;
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
  /** expressFd, on the native sender, is its socket of a family (-1: none) for the TUN's express path. */
  expressFd?(family: Family): number;
  close(): void;
}

/**
 * EspReceiver delivers inbound ESP as whole IP packets, outer header included (NFQUEUE copy
 * mode). The packet has already been consumed (verdict DROP) from the kernel's point of view
 * when the callback runs: nothing reaches the stack unless the data path writes it to the TUN.
 * The buffer is only valid during the callback (or, with `batched`, until onBatchEnd returns).
 */
export interface EspReceiver {
  /**
   * start begins delivery. A receiver with `batched` calls onBatchEnd after each batch it
   * delivered (each packet of the batch stays valid until then); others never call it.
   */
  start(onPacket: (pkt: Buffer) => void, onBatchEnd?: () => void): void;
  /** batched says the receiver calls onBatchEnd, so packets may be held until the batch ends. */
  readonly batched?: boolean;
  /** express, on the native NFQUEUE receiver, is its path for lone inbound packets (datapath/express.ts). */
  readonly express?: ExpressNfq;
  /** socketDrops, on the raw-socket receiver: packets the kernel dropped at its full receive buffers (SO_MEMINFO). */
  socketDrops?(): number;
  close(): void;
}
