/**
 * daemon/status.ts: the status document (`espgate status --json`). Its shape is part of the
 * public interface: fields are only ever added, never renamed, retyped or removed (schemaVersion
 * bumps otherwise), so scripts written against schemaVersion 1 keep working. docs/status.md
 * documents every field; status.test.ts fails when the document and that page disagree.
 */
import { DROP_REASONS, type DropReason } from '../drops.js';
import type { Daemon } from './daemon.js';
import type { InboundSa, OutboundSa } from '../esp/sa.js';
import type { IkeChildStatus } from './ike-driver.js';
import type { Inbound } from '../netfilter/model.js';

/** SaStatus is one SA in the status document. Times are ms since the epoch, 0 = never. */
export interface SaStatus {
  readonly direction: 'in' | 'out';
  readonly spi: string;
  readonly algorithm: string;
  /** createdMs is when the daemon made this SA (start, reload with a changed key, or rekey). */
  readonly createdMs: number;
  /** ageMs is the document's time minus createdMs. */
  readonly ageMs: number;
  /** lastPacketMs is when the SA last carried a packet successfully; 0 = never. */
  readonly lastPacketMs: number;
  readonly packets: number;
  readonly bytes: number;
  /** dummyPackets: authenticated TFC dummy packets (next header 59) received and discarded by design. */
  readonly dummyPackets: number;
  /** drops counted on this SA by reason (only reasons with a count). */
  readonly drops: Readonly<Partial<Record<DropReason, number>>>;
}

/** ChildSaStatus is one IKE Child SA pair of a peer (IKE peers only): the driver's own record. */
export type ChildSaStatus = IkeChildStatus;

/**
 * PeerIkeStatus is the IKE side of a peer (IKE peers only; absent for static-SA peers). The
 * daemon's IKE driver fills it; times are ms since the epoch, 0 = never.
 */
export interface PeerIkeStatus {
  readonly state: string;
  readonly lastHeardMs: number;
  /** spiI / spiR: the IKE SA's SPIs (16 hex digits; '' without an IKE SA). */
  readonly spiI?: string;
  readonly spiR?: string;
  /** establishedMs: when the IKE SA was established (0: not yet). */
  readonly establishedMs?: number;
  readonly natT?: boolean;
  readonly ikeRekeyAtMs?: number;
  readonly lastDpdMs?: number;
  readonly children?: readonly ChildSaStatus[];
}

/** PeerStatus is one peer. Times are ms since the epoch, 0 = never. */
export interface PeerStatus {
  readonly name: string;
  readonly endpoint: string;
  readonly sas: readonly SaStatus[];
  readonly txPackets: number;
  readonly txBytes: number;
  readonly rxPackets: number;
  readonly rxBytes: number;
  readonly lastTxMs: number;
  readonly lastRxMs: number;
  /** ike: the peer's IKE state (IKE peers only; absent for static-SA peers). */
  readonly ike?: PeerIkeStatus;
}

/** DaemonStatus is the whole document. */
export interface DaemonStatus {
  readonly schemaVersion: 1;
  readonly name: string | null;
  readonly state: string;
  readonly pid: number;
  readonly uptimeMs: number;
  /** tun: the TUN device; up is whether it is administratively up (null: cannot tell). */
  readonly tun: { readonly name: string; readonly mtu: number; readonly up: boolean | null };
  /** gate: whether the rules are installed (checked every 10 s while up) and by whom. */
  readonly gate: { readonly installed: boolean | null; readonly installedBy: 'daemon' | 'operator' | null; readonly checkedMs: number };
  /** totals: data path totals over all peers (packets); espUdp* are the UDP-encapsulated part of esp*. */
  readonly totals: {
    readonly tunRead: number; readonly espSent: number; readonly espReceived: number; readonly tunWritten: number;
    readonly espUdpSent: number; readonly espUdpReceived: number;
  };
  readonly drops: Readonly<Record<DropReason, number>>;
  readonly peers: readonly PeerStatus[];
  /**
   * queue: the kernel's counters of our NFQUEUE: packets waiting, and packets the kernel dropped
   * before the daemon saw them (queue full, socket buffer full); null when unreadable.
   */
  readonly queue: { readonly num: number; readonly waiting: number; readonly queueDropped: number; readonly userDropped: number } | null;
  /**
   * inbound: how ESP reaches the daemon (config `inbound`); with raw sockets, socketDrops counts
   * what the kernel dropped at their full receive buffers (null with the queue: see `queue`).
   */
  readonly inbound: { readonly mode: Inbound; readonly socketDrops: number | null };
  /**
   * udpEncap: our NAT-T socket (UDP 4500, IKE and ESP in UDP): the receive buffer the kernel
   * gave us and the datagrams it dropped there before we read them (null when unreadable); null
   * without IKE peers (no such socket).
   */
  readonly udpEncap: { readonly port: number; readonly rcvbufBytes: number; readonly dropped: number | null } | null;
  /** reloads: successful config reloads (SIGHUP) since start. */
  readonly reloads: number;
  /** dataPath: which fast paths are in use, and the JIT warm-up's state. */
  readonly dataPath: {
    readonly tunOffload: boolean; readonly tcpCoalescing: boolean; readonly udpCoalescing: 'on' | 'off' | 'refused';
    readonly sendBatch: boolean; readonly warmUp: 'running' | 'done' | 'codec-only' | 'off';
    /** batchedReads: TUN reads go many packets per system call (io_uring); false: one read(2) per packet. */
    readonly batchedReads: boolean;
    /**
     * express: the addons' paths for packets of learned flows; flows they have learned since the
     * tables last changed; thread: 'on' when they run on their own thread, 'off', or why it failed.
     */
    readonly express: { readonly on: boolean; readonly flows: number; readonly thread: string };
  };
}

function nonZero(c: Readonly<Record<DropReason, number>>): Partial<Record<DropReason, number>> {
  return Object.fromEntries(Object.entries(c).filter(([, n]) => n > 0));
}

const hex = (spi: number): string => `0x${spi.toString(16).padStart(8, '0')}`;

/** saStatusOf renders one SA as of `nowMs`. */
export function saStatusOf(direction: 'in' | 'out', sa: InboundSa | OutboundSa, nowMs: number): SaStatus {
  return {
    direction,
    spi: hex(sa.spi),
    algorithm: sa.algorithm,
    createdMs: sa.createdMs,
    ageMs: Math.max(0, nowMs - sa.createdMs),
    lastPacketMs: sa.stats.lastUsedMs,
    packets: sa.stats.packets,
    bytes: sa.stats.bytes,
    dummyPackets: sa.stats.dummyPackets,
    drops: nonZero(sa.drops.counts),
  };
}

/** statusOf reads the daemon's counters into a plain document; `now` is the clock (tests). */
export function statusOf(d: Daemon, now: () => number = Date.now): DaemonStatus {
  const nowMs = now();
  const e = d.engine;
  e?.syncExpress(); // what the express path sent, into the counters read below
  const fast = e?.fastPaths;
  const drops = Object.fromEntries(DROP_REASONS.map((r) => [r, e?.drops.counts[r] ?? 0])) as Record<DropReason, number>;
  const peers: PeerStatus[] = [];
  const q = d.queueStats();
  if (e !== undefined) {
    const t = e.tables;
    // One pass over the inbound SAs, grouped by peer: O(peers + SAs). A scan per peer was
    // O(peers x SAs): 5 s of event-loop stall per `status` at 10,000 peers (bench/scale.ts).
    const inboundByPeer = new Map<string, InboundSa[]>();
    for (const s of t.sadb.inboundSas()) {
      const list = inboundByPeer.get(s.peer);
      if (list === undefined) inboundByPeer.set(s.peer, [s]);
      else list.push(s);
    }
    for (const peer of t.peers.values()) {
      const sas: SaStatus[] = [];
      const out = t.sadb.outbound(peer.name);
      if (out) sas.push(saStatusOf('out', out, nowMs));
      for (const s of inboundByPeer.get(peer.name) ?? []) sas.push(saStatusOf('in', s, nowMs));
      const st = peer.stats;
      // Fields picked one by one: a counter added to the engine must not enter the public
      // document without being documented (docs/status.md; status.test.ts checks both ways).
      const k = d.ikeStatus(peer.name);
      peers.push({
        name: peer.name, endpoint: peer.endpoint, sas,
        txPackets: st.txPackets, txBytes: st.txBytes, rxPackets: st.rxPackets, rxBytes: st.rxBytes,
        lastTxMs: st.lastTxMs, lastRxMs: st.lastRxMs,
        ...(k === undefined ? {} : {
          ike: {
            state: k.state, lastHeardMs: k.lastHeardMs, spiI: k.spiI, spiR: k.spiR, establishedMs: k.establishedMs,
            natT: k.natT, ikeRekeyAtMs: k.ikeRekeyAtMs, lastDpdMs: k.lastDpdMs,
            children: k.children.map((c) => ({ inSpi: c.inSpi, outSpi: c.outSpi, algorithm: c.algorithm, encapPort: c.encapPort, establishedMs: c.establishedMs, rekeyAtMs: c.rekeyAtMs })),
          },
        }),
      });
    }
  }
  return {
    schemaVersion: 1,
    name: d.config.name ?? null,
    state: d.state,
    pid: process.pid,
    uptimeMs: nowMs - d.startedMs,
    tun: { name: d.config.tun.name, mtu: d.tunMtu, up: d.tunUp() },
    gate: { installed: d.gate.installed, installedBy: d.gate.installedBy, checkedMs: d.gate.checkedMs },
    totals: {
      tunRead: e?.totals.tunRead ?? 0, espSent: e?.totals.espSent ?? 0, espReceived: e?.totals.espReceived ?? 0, tunWritten: e?.totals.tunWritten ?? 0,
      espUdpSent: e?.totals.espUdpSent ?? 0, espUdpReceived: e?.totals.espUdpReceived ?? 0,
    },
    drops,
    peers,
    queue: q === undefined ? null : { num: d.config.queue, waiting: q.waiting, queueDropped: q.queueDropped, userDropped: q.userDropped },
    inbound: { mode: d.config.inbound, socketDrops: d.socketDrops() ?? null },
    udpEncap: d.udpEncapStats() ?? null,
    reloads: d.reloads,
    dataPath: {
      tunOffload: fast?.tunOffload ?? false, tcpCoalescing: fast?.tcpCoalescing ?? false, udpCoalescing: fast?.udpCoalescing ?? 'off',
      sendBatch: fast?.sendBatch ?? false, warmUp: d.warmUp, batchedReads: fast?.batchedReads ?? false, express: e?.express ?? { on: false, flows: 0, thread: 'off' },
    },
  };
}
