/**
 * daemon/status.ts: the status document (`espgate status --json`). Its shape is part of the
 * public interface: fields are only ever added, never renamed (schemaVersion bumps otherwise).
 */
import { DROP_REASONS, type DropReason } from '../drops.js';
import type { Daemon } from './daemon.js';
import type { InboundSa } from '../esp/sa.js';

/** SaStatus is one SA in the status document. */
export interface SaStatus {
  readonly direction: 'in' | 'out';
  readonly spi: string;
  readonly algorithm: string;
  readonly packets: number;
  readonly bytes: number;
  /** dummyPackets: authenticated TFC dummy packets (next header 59) received and discarded by design. */
  readonly dummyPackets: number;
  /** drops counted on this SA by reason (only reasons with a count). */
  readonly drops: Readonly<Partial<Record<DropReason, number>>>;
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
}

/** DaemonStatus is the whole document. */
export interface DaemonStatus {
  readonly schemaVersion: 1;
  readonly name: string | null;
  readonly state: string;
  readonly pid: number;
  readonly uptimeMs: number;
  readonly tun: { readonly name: string; readonly mtu: number };
  readonly totals: Readonly<Record<string, number>>;
  readonly drops: Readonly<Record<DropReason, number>>;
  readonly peers: readonly PeerStatus[];
  /**
   * queue: the kernel's counters of our NFQUEUE: packets waiting, and packets the kernel dropped
   * before the daemon saw them (queue full, socket buffer full); null when unreadable.
   */
  readonly queue: { readonly num: number; readonly waiting: number; readonly queueDropped: number; readonly userDropped: number } | null;
  /** reloads: successful config reloads (SIGHUP) since start. */
  readonly reloads: number;
}

function nonZero(c: Readonly<Record<DropReason, number>>): Partial<Record<DropReason, number>> {
  return Object.fromEntries(Object.entries(c).filter(([, n]) => n > 0));
}

const hex = (spi: number): string => `0x${spi.toString(16).padStart(8, '0')}`;

/** statusOf reads the daemon's counters into a plain document. */
export function statusOf(d: Daemon): DaemonStatus {
  const e = d.engine;
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
      if (out) sas.push({ direction: 'out', spi: hex(out.spi), algorithm: out.algorithm, packets: out.stats.packets, bytes: out.stats.bytes, dummyPackets: out.stats.dummyPackets, drops: nonZero(out.drops.counts) });
      for (const s of inboundByPeer.get(peer.name) ?? []) {
        sas.push({ direction: 'in', spi: hex(s.spi), algorithm: s.algorithm, packets: s.stats.packets, bytes: s.stats.bytes, dummyPackets: s.stats.dummyPackets, drops: nonZero(s.drops.counts) });
      }
      peers.push({ name: peer.name, endpoint: peer.endpoint, sas, ...peer.stats });
    }
  }
  return {
    schemaVersion: 1,
    name: d.config.name ?? null,
    state: d.state,
    pid: process.pid,
    uptimeMs: Date.now() - d.startedMs,
    tun: { name: d.config.tun.name, mtu: d.tunMtu },
    totals: { ...(e?.totals ?? {}) },
    drops,
    peers,
    queue: q === undefined ? null : { num: d.config.queue, waiting: q.waiting, queueDropped: q.queueDropped, userDropped: q.userDropped },
    reloads: d.reloads,
  };
}
