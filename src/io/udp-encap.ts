/**
 * io/udp-encap.ts: UDP port 4500, shared by UDP-encapsulated ESP and IKE after NAT traversal
 * (RFC 3948, RFC 7296 §2.23). One socket per address family in use.
 *
 * What arrives on port 4500 is told apart by its first octets (RFC 3948 §2.2):
 *
 *    0                   1                   2                   3
 *   +-------------------------------+-------------------------------+
 *   | UDP header (8): src port | dst port 4500 | length | checksum  |  (kernel)
 *   +---------------------------------------------------------------+
 *   | 0x00000000 non-ESP marker | IKE header ...                     |  -> onIke (marker stripped)
 *   | 0xFF                                                            |  -> NAT keepalive: counted, dropped
 *   | SPI (non-zero) | sequence number | IV | ... ESP as RFC 4303     |  -> onEsp (SPI onward)
 *   +---------------------------------------------------------------+
 *
 * Sending: sendEsp (engine, per packet) copies the ESP into a slot of a preallocated ring and
 * hands the slot to dgram; sendIke prepends the marker; sendKeepalive sends the one 0xFF octet.
 *
 * Why the copy: dgram's send is synchronous only while the kernel takes the datagram at once
 * (uv_udp_try_send). When the socket buffer is full, libuv queues the request and sends it
 * later from the event loop, still pointing at the caller's bytes; the engine reuses its batch
 * buffers (and a reused buffer may hold a plaintext inner packet), so a queued send must never
 * point into them. libuv sends the queue in order and sends nothing directly while it is not
 * empty, so the queued datagrams are always the last `queued()` ones: a ring of RING_SLOTS
 * slots is safe as long as fewer than RING_SLOTS - 1 are queued, and sendEsp refuses (returns
 * false: a 'send-error' drop) beyond that. DNS is bypassed with a synchronous `lookup` (the
 * addresses are literals), so a send never waits for a next tick either.
 *
 * Per-packet cost: dgram allocates per send (a SendWrap, a one-element list, a subarray) and
 * per receive (a Buffer and an rinfo object); see docs/esp.md "UDP encapsulation" for the
 * measured rate. Kernel errors of a send (EMSGSIZE, unreachable) are not visible without a
 * per-packet callback, so sendEsp reports only what it refused itself.
 *
 * A UdpEncapSocket is used from the main event loop only.
 */
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { parseIpAddress } from '../packet/address.js';
import type { Family } from './types.js';

/** UDP_ENCAP_PORT is the NAT traversal port (RFC 3948 §2.1, RFC 7296 §2.23); equals ike-driver.ts NAT_T_PORT. */
export const UDP_ENCAP_PORT = 4500;

/**
 * UDP_ENCAP_RCVBUF is the receive buffer we ask for on port 4500 (bytes; the kernel doubles it
 * for bookkeeping and caps the request at net.core.rmem_max). The default (rmem_default,
 * 208 KiB) holds about 90 full-size datagrams: a burst from the peer's TCP, or a few ms in
 * which the event loop is busy (an IKE exchange, a GC pause), overflowed it in the lab, and the
 * kernel dropped ESP before we saw it (test/lab/swan-rekey-soak.ts counted hundreds per 28 s
 * under a paced TCP transfer). 4 MiB (8 MiB as the kernel counts) holds ~3,600, and costs
 * memory only while datagrams wait in it.
 */
export const UDP_ENCAP_RCVBUF = 4 * 1024 * 1024;
/** UDP_HEADER_LEN is the size of a UDP header. */
export const UDP_HEADER_LEN = 8;
/**
 * UDP_ENCAP_OVERHEAD is what UDP encapsulation adds to an ESP packet on the wire (the UDP
 * header): subtract it, with the outer IP header and ESP_MAX_OVERHEAD, from the link MTU to
 * size the TUN MTU of a tunnel that may run over NAT traversal.
 */
export const UDP_ENCAP_OVERHEAD = UDP_HEADER_LEN;
/** NON_ESP_MARKER_LEN is the length of the four zero octets in front of IKE on port 4500 (RFC 3948 §2.2). */
export const NON_ESP_MARKER_LEN = 4;
/** NAT_KEEPALIVE_BYTE is the one octet of a NAT-keepalive packet (RFC 3948 §2.3). */
export const NAT_KEEPALIVE_BYTE = 0xff;
/** NAT_KEEPALIVE_INTERVAL_MS is how often keepalives go to each encapsulated peer (RFC 3948 §4: 20 s). */
export const NAT_KEEPALIVE_INTERVAL_MS = 20_000;
/** MAX_KEEPALIVES_PER_ROUND bounds the keepalives sent in one timer round. */
export const MAX_KEEPALIVES_PER_ROUND = 65_536;
/** RING_SLOTS is the number of send slots per socket; RING_SLOT_BYTES the size of each. */
export const RING_SLOTS = 128;
export const RING_SLOT_BYTES = 16_384;

/** UdpDatagramKind is what a datagram on port 4500 carries. */
export type UdpDatagramKind = 'ike' | 'keepalive' | 'esp';

/**
 * classifyUdpEncap tells what buf[off, off+len) received on port 4500 is (RFC 3948 §2.2): four
 * zero octets = IKE, the single octet 0xFF = keepalive, anything else = ESP (too short ESP is
 * the data path's 'truncated' drop). Pure.
 */
export function classifyUdpEncap(buf: Uint8Array, off: number, len: number): UdpDatagramKind {
  if (len === 1 && buf[off] === NAT_KEEPALIVE_BYTE) return 'keepalive';
  if (len >= NON_ESP_MARKER_LEN && buf[off] === 0 && buf[off + 1] === 0 && buf[off + 2] === 0 && buf[off + 3] === 0) return 'ike';
  return 'esp';
}

/** EspUdpSender sends UDP-encapsulated ESP (SPI onward) from local port 4500. The engine holds one. */
export interface EspUdpSender {
  /**
   * sendEsp sends buf[offset, offset+length) to dst:port. The bytes are copied before it returns,
   * so the caller may reuse buf at once. Returns false when refused (counted as 'send-error').
   */
  sendEsp(family: Family, dst: string, port: number, buf: Uint8Array, offset: number, length: number): boolean;
}

/**
 * EspUdpHandler takes one inbound ESP packet: pkt[off, off+len) is the ESP (SPI onward),
 * src the sender's address bytes (4 or 16, a scratch buffer valid during the call only).
 */
export type EspUdpHandler = (pkt: Buffer, off: number, len: number, family: Family, src: Uint8Array, srcPort: number) => void;

/** IkeUdpHandler takes one IKE message that arrived on port 4500, non-ESP marker stripped. */
export type IkeUdpHandler = (bytes: Uint8Array, address: string, port: number) => void;

/** DatagramPort is one bound UDP socket as UdpEncapSocket uses it (dgram, or a test twin). */
export interface DatagramPort {
  /** send hands buf[offset, offset+length) to the kernel (or queues it: see queued). */
  send(buf: Buffer, offset: number, length: number, port: number, address: string): void;
  /** queued is the number of datagrams accepted but not yet handed to the kernel. */
  queued(): number;
  /** localPort is the bound port. */
  localPort(): number;
  /** rcvbufBytes is the socket's receive buffer as the kernel reports it (SO_RCVBUF; 0 = unknown). */
  rcvbufBytes?(): number;
  close(): void;
}

/** KeepaliveTarget is one peer that gets NAT keepalives. */
export interface KeepaliveTarget {
  readonly family: Family;
  readonly address: string;
  readonly port: number;
}

/** KeepaliveTimers is setInterval/clearInterval, replaceable in tests. */
export interface KeepaliveTimers {
  every(fn: () => void, ms: number): unknown;
  cancel(handle: unknown): void;
}

const realTimers: KeepaliveTimers = {
  every: (fn, ms) => { const t = setInterval(fn, ms); t.unref(); return t; },
  cancel: (h) => { clearInterval(h as NodeJS.Timeout); },
};

/** UdpEncapStats counts what went through port 4500. */
export interface UdpEncapStats {
  espIn: number;
  ikeIn: number;
  keepalivesIn: number;
  espOut: number;
  ikeOut: number;
  keepalivesOut: number;
  /** refused counts sends sendEsp/sendIke did not make: no socket of that family, ring full, too big. */
  refused: number;
}

interface Ring {
  readonly port: DatagramPort;
  readonly slab: Buffer;
  next: number;
}

const KEEPALIVE = Buffer.from([NAT_KEEPALIVE_BYTE]);
const V6_CACHE_MAX = 4096;

/** UdpEncapSocket is port 4500 of every address family in use. Make one with openUdpEncap. */
export class UdpEncapSocket implements EspUdpSender {
  /** onEsp gets inbound ESP; until set, ESP is counted and dropped. */
  onEsp: EspUdpHandler = () => {};
  /** onIke gets inbound IKE (marker stripped); until set, IKE is counted and dropped. */
  onIke: IkeUdpHandler = () => {};
  readonly stats: UdpEncapStats = { espIn: 0, ikeIn: 0, keepalivesIn: 0, espOut: 0, ikeOut: 0, keepalivesOut: 0, refused: 0 };
  readonly #rings = new Map<Family, Ring>();
  readonly #src4 = new Uint8Array(4);
  readonly #v6 = new Map<string, Uint8Array>();
  #keepalive: { readonly handle: unknown; readonly timers: KeepaliveTimers } | undefined;
  #closed = false;

  /** constructor takes the bound ports by family (openUdpEncap, or test twins). */
  constructor(ports: ReadonlyMap<Family, DatagramPort>) {
    for (const [fam, port] of ports) this.#rings.set(fam, { port, slab: Buffer.alloc(RING_SLOTS * RING_SLOT_BYTES), next: 0 });
  }

  /** port is the bound local port (UDP_ENCAP_PORT unless a test bound port 0). */
  get port(): number {
    const first = this.#rings.values().next().value;
    return first === undefined ? UDP_ENCAP_PORT : first.port.localPort();
  }

  /** rcvbufBytes is the smallest receive buffer of our sockets as the kernel reports it (0 = unknown). */
  get rcvbufBytes(): number {
    let min = 0;
    for (const r of this.#rings.values()) {
      const b = r.port.rcvbufBytes?.() ?? 0;
      if (b > 0 && (min === 0 || b < min)) min = b;
    }
    return min;
  }

  /** receive demultiplexes one datagram that arrived from address:port (the socket's message event). */
  receive(msg: Buffer, family: Family, address: string, port: number): void {
    if (this.#closed) return;
    switch (classifyUdpEncap(msg, 0, msg.length)) {
      case 'keepalive':
        this.stats.keepalivesIn++;
        return;
      case 'ike':
        this.stats.ikeIn++;
        this.onIke(msg.subarray(NON_ESP_MARKER_LEN), address, port);
        return;
      case 'esp': {
        const src = family === 4 ? this.#parse4(address) : this.#parse6(address);
        if (src === undefined) return; // the kernel gave an address we cannot read: impossible in practice
        this.stats.espIn++;
        this.onEsp(msg, 0, msg.length, family, src, port);
        return;
      }
    }
  }

  sendEsp(family: Family, dst: string, port: number, buf: Uint8Array, offset: number, length: number): boolean {
    const ring = this.#rings.get(family);
    if (ring === undefined || this.#closed || ring.port.queued() >= RING_SLOTS - 1) {
      this.stats.refused++;
      return false;
    }
    let out: Buffer;
    let off: number;
    if (length <= RING_SLOT_BYTES) {
      off = ring.next * RING_SLOT_BYTES;
      ring.next = (ring.next + 1) % RING_SLOTS;
      if (Buffer.isBuffer(buf)) buf.copy(ring.slab, off, offset, offset + length); // no view allocated
      else ring.slab.set(buf.subarray(offset, offset + length), off);
      out = ring.slab;
    } else {
      out = Buffer.from(buf.subarray(offset, offset + length)); // jumbo: a one-off copy
      off = 0;
    }
    try {
      ring.port.send(out, off, length, port, dst);
    } catch {
      this.stats.refused++; // bad address or port: dgram validates synchronously
      return false;
    }
    this.stats.espOut++;
    return true;
  }

  /** sendIke sends an IKE message from port 4500 with the non-ESP marker in front. Returns false when refused. */
  sendIke(bytes: Uint8Array, address: string, port: number): boolean {
    const ring = this.#rings.get(isIP(address) === 6 ? 6 : 4);
    if (ring === undefined || this.#closed) {
      this.stats.refused++;
      return false;
    }
    const msg = Buffer.alloc(NON_ESP_MARKER_LEN + bytes.length);
    msg.set(bytes, NON_ESP_MARKER_LEN);
    try {
      ring.port.send(msg, 0, msg.length, port, address);
    } catch {
      this.stats.refused++;
      return false;
    }
    this.stats.ikeOut++;
    return true;
  }

  /** sendKeepalive sends one NAT keepalive (the octet 0xFF) to address:port. */
  sendKeepalive(family: Family, address: string, port: number): boolean {
    const ring = this.#rings.get(family);
    if (ring === undefined || this.#closed) return false;
    try {
      ring.port.send(KEEPALIVE, 0, 1, port, address);
    } catch {
      return false;
    }
    this.stats.keepalivesOut++;
    return true;
  }

  /**
   * startKeepalives sends a keepalive to every target every intervalMs (default 20 s) until
   * stopKeepalives or close; targets() is asked each round (the encapsulated peers then). The
   * timer is unref'd: it never keeps the process alive. Calling it again replaces the timer.
   */
  startKeepalives(targets: () => Iterable<KeepaliveTarget>, intervalMs = NAT_KEEPALIVE_INTERVAL_MS, timers: KeepaliveTimers = realTimers): void {
    this.stopKeepalives();
    if (this.#closed) return;
    const handle = timers.every(() => {
      let n = 0;
      for (const t of targets()) {
        if (n++ >= MAX_KEEPALIVES_PER_ROUND) break;
        this.sendKeepalive(t.family, t.address, t.port);
      }
    }, intervalMs);
    this.#keepalive = { handle, timers };
  }

  /** stopKeepalives cancels the keepalive timer, if any. */
  stopKeepalives(): void {
    const k = this.#keepalive;
    if (k === undefined) return;
    k.timers.cancel(k.handle);
    this.#keepalive = undefined;
  }

  /** close stops the keepalives and closes the sockets. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.stopKeepalives();
    this.#closed = true;
    for (const r of this.#rings.values()) r.port.close();
    this.#rings.clear();
  }

  /** #parse4 reads dotted-quad text into the scratch #src4 without allocating. */
  #parse4(text: string): Uint8Array | undefined {
    const out = this.#src4;
    let part = 0;
    let v = 0;
    let digits = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 46) { // '.'
        if (digits === 0 || part === 3) return undefined;
        out[part++] = v;
        v = 0;
        digits = 0;
      } else if (c >= 48 && c <= 57) {
        v = v * 10 + c - 48;
        if (++digits > 3 || v > 255) return undefined;
      } else return undefined;
    }
    if (digits === 0 || part !== 3) return undefined;
    out[3] = v;
    return out;
  }

  /** #parse6 parses IPv6 text through a bounded cache (peers repeat; a full cache starts over). */
  #parse6(text: string): Uint8Array | undefined {
    const hit = this.#v6.get(text);
    if (hit !== undefined) return hit;
    const a = parseIpAddress(text);
    if (a === undefined || a.bytes.length !== 16) return undefined;
    if (this.#v6.size >= V6_CACHE_MAX) this.#v6.clear();
    this.#v6.set(text, a.bytes);
    return a.bytes;
  }
}

/** dgramPort wraps a bound dgram socket as a DatagramPort. */
function dgramPort(s: Socket): DatagramPort {
  return {
    send: (buf, offset, length, port, address) => { s.send(buf, offset, length, port, address); },
    queued: () => s.getSendQueueCount(),
    localPort: () => s.address().port,
    rcvbufBytes: () => {
      try {
        return s.getRecvBufferSize();
      } catch {
        return 0; // closed
      }
    },
    close: () => { s.close(); },
  };
}

/**
 * growReceiveBuffer asks for `bytes` of receive buffer on a bound socket. The kernel caps it at
 * net.core.rmem_max without an error; dgram throws only on a closed socket or a refused
 * setsockopt, and then the default stays: a smaller buffer is a risk of drops under bursts,
 * not a reason to refuse to start (status shows the size we got: udpEncap.rcvbufBytes).
 */
function growReceiveBuffer(s: Socket, bytes: number): void {
  try {
    if (s.getRecvBufferSize() < bytes) s.setRecvBufferSize(bytes);
  } catch {
    // the default stays
  }
}

/**
 * literalLookup is dgram's `lookup` for address literals: synchronous, so sends are too. dgram
 * calls it as (address, 4 | 6, callback); the declared type says options, hence the check.
 */
function literalLookup(address: string, family: unknown, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  cb(null, address, typeof family === 'number' ? family : address.includes(':') ? 6 : 4);
}

/** UdpEncapOptions configure openUdpEncap. */
export interface UdpEncapOptions {
  /** port to bind (default UDP_ENCAP_PORT; 0 in tests). */
  readonly port?: number;
  /** bind addresses per family (default the wildcard). */
  readonly bind?: { readonly v4?: string; readonly v6?: string };
  /** rcvbufBytes is the receive buffer to ask for (default UDP_ENCAP_RCVBUF). */
  readonly rcvbufBytes?: number;
}

/**
 * openUdpEncap binds UDP port 4500 for each family in `families` and returns the socket pair.
 * Set onEsp (the engine's handleUdpEsp) and onIke (the IKE transport) before traffic is
 * expected. Rejects with the bind error (EADDRINUSE: another IKE daemon holds port 4500).
 */
export async function openUdpEncap(families: ReadonlySet<Family>, o: UdpEncapOptions = {}): Promise<UdpEncapSocket> {
  const sockets = new Map<Family, Socket>();
  const ports = new Map<Family, DatagramPort>();
  // Sockets deliver to the UdpEncapSocket made once all are bound (nothing arrives before: no peer knows us yet).
  const made: { target?: UdpEncapSocket } = {};
  try {
    for (const fam of families) {
      const s = createSocket({ type: fam === 6 ? 'udp6' : 'udp4', ipv6Only: fam === 6, lookup: literalLookup });
      sockets.set(fam, s);
      s.on('message', (msg: Buffer, rinfo: RemoteInfo) => { made.target?.receive(msg, fam, rinfo.address, rinfo.port); });
      s.on('error', () => { /* a receive error loses a datagram: ESP is lossy, IKE retransmits */ });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(o.port ?? UDP_ENCAP_PORT, fam === 6 ? (o.bind?.v6 ?? '::') : (o.bind?.v4 ?? '0.0.0.0'), () => { s.off('error', reject); resolve(); });
      });
      growReceiveBuffer(s, o.rcvbufBytes ?? UDP_ENCAP_RCVBUF);
      ports.set(fam, dgramPort(s));
    }
  } catch (e) {
    for (const s of sockets.values()) s.close();
    throw e;
  }
  const target = new UdpEncapSocket(ports);
  made.target = target;
  return target;
}
