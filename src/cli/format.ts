/**
 * cli/format.ts: the human form of `espgate status`, in the spirit of `wg show`:
 *
 *   espgate alice: up, pid 4242, up 11s
 *     tun: eg0 mtu 1440
 *
 *   peer: bob  (active)
 *     endpoint: 198.18.0.2
 *     transfer: 252 B received (3 pkts), 252 B sent (3 pkts)
 *     last packet: in 7s ago, out 7s ago
 *     sa out  spi 0x00001002  aes128gcm16  age 11s  3 pkts, 252 B  last 7s ago  drops: none
 *
 *   drops: none
 *   queue 0: 0 waiting, no kernel drops               (inbound: queue; with sockets: `inbound: raw ESP sockets, ...`)
 *
 * Pure: the document and the clock reading come in, text goes out (docs/status.md).
 */
import type { DaemonStatus, PeerIkeStatus, PeerStatus, SaStatus } from '../daemon/status.js';

/** PEER_ACTIVE_MS: a peer heard from within this long is `active`, otherwise `idle` (WireGuard's 180 s). */
export const PEER_ACTIVE_MS = 180_000;

const MINUTE_S = 60;
const HOUR_S = 60 * MINUTE_S;
const DAY_S = 24 * HOUR_S;

/**
 * formatDuration renders a duration in the two largest units: "42s", "3m 5s", "2h 0m", "1d 4h".
 * A missing value (a daemon older than the CLI, without that field) is "?".
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < MINUTE_S) return `${s}s`;
  if (s < HOUR_S) return `${Math.floor(s / MINUTE_S)}m ${s % MINUTE_S}s`;
  if (s < DAY_S) return `${Math.floor(s / HOUR_S)}h ${Math.floor((s % HOUR_S) / MINUTE_S)}m`;
  return `${Math.floor(s / DAY_S)}d ${Math.floor((s % DAY_S) / HOUR_S)}h`;
}

/** formatAgo renders a past time (ms since the epoch) relative to nowMs: "3s ago"; 0 is "never". */
export function formatAgo(atMs: number, nowMs: number): string {
  if (atMs === 0) return 'never';
  return Number.isFinite(atMs) ? `${formatDuration(nowMs - atMs)} ago` : '?';
}

/** formatIn renders a future time relative to nowMs: "in 5m 0s"; a time already past is "due". */
export function formatIn(atMs: number, nowMs: number): string {
  return atMs <= nowMs ? 'due' : `in ${formatDuration(atMs - nowMs)}`;
}

/** formatBytes renders a byte count in binary units: "512 B", "1.50 KiB", "2.00 MiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(2)} ${units[i]}`;
}

/** peerState names a peer's state from its last received packet: active, idle or silent. */
export function peerState(p: PeerStatus, nowMs: number): 'active' | 'idle' | 'silent' {
  if (p.lastRxMs === 0) return 'silent';
  return nowMs - p.lastRxMs <= PEER_ACTIVE_MS ? 'active' : 'idle';
}

function dropList(drops: Readonly<Partial<Record<string, number>>>): string {
  const d = Object.entries(drops).filter((e): e is [string, number] => (e[1] ?? 0) > 0);
  return d.length === 0 ? 'none' : d.map(([r, n]) => `${r}=${n}`).join(' ');
}

function saLine(s: SaStatus, nowMs: number): string {
  const dummy = s.dummyPackets > 0 ? ` (+${s.dummyPackets} dummy)` : '';
  return `  sa ${s.direction.padEnd(3)}  spi ${s.spi}  ${s.algorithm}  age ${formatDuration(s.ageMs)}  `
    + `${s.packets} pkts${dummy}, ${formatBytes(s.bytes)}  last ${formatAgo(s.lastPacketMs, nowMs)}  drops: ${dropList(s.drops)}`;
}

function ikeLines(ike: PeerIkeStatus, nowMs: number): string[] {
  const parts = [ike.state];
  if (ike.natT !== undefined) parts.push(ike.natT ? 'NAT-T (ESP in UDP)' : 'no NAT');
  parts.push(`last heard ${formatAgo(ike.lastHeardMs, nowMs)}`);
  if (ike.ikeRekeyAtMs !== undefined) parts.push(`IKE rekey ${formatIn(ike.ikeRekeyAtMs, nowMs)}`);
  if (ike.lastDpdMs !== undefined) parts.push(`last DPD ${formatAgo(ike.lastDpdMs, nowMs)}`);
  const out = [`  ike: ${parts.join(', ')}`];
  for (const c of ike.children ?? []) {
    out.push(`  child in ${c.inSpi} out ${c.outSpi}  ${c.algorithm}  ${c.encapPort === null ? 'ESP' : `ESP in UDP (peer port ${c.encapPort})`}  `
      + `established ${formatAgo(c.establishedMs, nowMs)}  rekey ${formatIn(c.rekeyAtMs, nowMs)}`);
  }
  return out;
}

/** formatStatus renders the status document for a terminal; nowMs is the clock reading (tests fix it). */
export function formatStatus(st: DaemonStatus, nowMs: number = Date.now()): string {
  const out: string[] = [];
  out.push(`espgate${st.name === null ? '' : ` ${st.name}`}: ${st.state}, pid ${st.pid}, up ${formatDuration(st.uptimeMs)}`);
  // Fields from an older daemon may be missing: say "?" rather than guess.
  const tunUp = (st.tun as { up?: boolean | null }).up;
  out.push(`  tun: ${st.tun.name} mtu ${st.tun.mtu}${tunUp === true ? ' up' : tunUp === false ? ' DOWN' : ''}`);
  const g = (st as { gate?: DaemonStatus['gate'] }).gate;
  if (g !== undefined) {
    const by = g.installedBy === 'operator' ? 'by `espgate rules install` (stays after stop)' : g.installedBy === 'daemon' ? 'by the daemon (removed on stop)' : '';
    out.push(`  gate: ${g.installed === true ? `installed ${by}` : g.installed === false ? 'NOT INSTALLED: traffic to peers is not protected; `espgate rules install` or restart' : '?'}${g.checkedMs > 0 ? `, checked ${formatAgo(g.checkedMs, nowMs)}` : ''}`);
  }
  for (const p of st.peers) {
    out.push('');
    out.push(`peer: ${p.name}  (${peerState(p, nowMs)})`);
    out.push(`  endpoint: ${p.endpoint}`);
    out.push(`  transfer: ${formatBytes(p.rxBytes)} received (${p.rxPackets} pkts), ${formatBytes(p.txBytes)} sent (${p.txPackets} pkts)`);
    out.push(`  last packet: in ${formatAgo(p.lastRxMs, nowMs)}, out ${formatAgo(p.lastTxMs, nowMs)}`);
    if (p.ike !== undefined) out.push(...ikeLines(p.ike, nowMs));
    for (const s of p.sas) out.push(saLine(s, nowMs));
    if (p.sas.length === 0) out.push('  no SAs');
  }
  out.push('');
  out.push(`drops: ${dropList(st.drops)}`);
  const q = st.queue;
  if (q !== null) {
    const lost = q.queueDropped + q.userDropped;
    out.push(`queue ${q.num}: ${q.waiting} waiting, ${lost === 0 ? 'no kernel drops' : `kernel dropped ${lost} before espgate saw them (queue full ${q.queueDropped}, socket full ${q.userDropped})`}`);
  }
  // A daemon older than the CLI has no inbound field (it read the queue).
  const ib = (st as { inbound?: DaemonStatus['inbound'] }).inbound;
  if (ib !== undefined && ib.mode === 'socket') {
    const d = ib.socketDrops ?? 0;
    out.push(`inbound: raw ESP sockets, ${d === 0 ? 'no kernel drops' : `kernel dropped ${d} at full receive buffers before espgate read them`}`);
  }
  // A daemon older than the CLI has no udpEncap field.
  const u = (st as { udpEncap?: DaemonStatus['udpEncap'] }).udpEncap;
  if (u !== undefined && u !== null) {
    const dropped = u.dropped === null ? 'kernel drops unknown' : u.dropped === 0 ? 'no kernel drops' : `kernel dropped ${u.dropped} before espgate saw them (receive buffer full)`;
    out.push(`udp ${u.port}: receive buffer ${formatBytes(u.rcvbufBytes)}, ${dropped}`);
  }
  if (st.reloads > 0) out.push(`reloads: ${st.reloads}`);
  // The data path's fast paths are worth a line only when one is not what it should be.
  const dp = (st as { dataPath?: DaemonStatus['dataPath'] }).dataPath;
  if (dp?.udpCoalescing === 'refused') out.push('data path: the kernel refused a coalesced UDP write (Linux < 6.2?): UDP goes datagram by datagram (slower; nothing lost)');
  if (dp?.batchedReads === false && dp.tunOffload) out.push('data path: TUN reads one packet per system call (io_uring refused here: kernel.io_uring_disabled or a seccomp filter?): slower for small packets, nothing lost');
  if (dp?.warmUp === 'running') out.push('data path: warming up (the first packets may be slower for a second)');
  return out.join('\n');
}
