/**
 * cli/format.ts: the human form of `espgate status`, in the spirit of `wg show`.
 */
import type { DaemonStatus } from '../daemon/status.js';

function ago(ms: number): string {
  if (ms === 0) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return `${s}s ago`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(2)} ${units[i]}`;
}

/** formatStatus renders the status document for a terminal. */
export function formatStatus(st: DaemonStatus): string {
  const out: string[] = [];
  out.push(`espgate${st.name === null ? '' : ` ${st.name}`}: ${st.state}, pid ${st.pid}, up ${Math.round(st.uptimeMs / 1000)}s`);
  out.push(`  tun: ${st.tun.name} mtu ${st.tun.mtu}`);
  for (const p of st.peers) {
    out.push('');
    out.push(`peer: ${p.name}`);
    out.push(`  endpoint: ${p.endpoint}`);
    out.push(`  transfer: ${bytes(p.rxBytes)} received (${p.rxPackets} pkts), ${bytes(p.txBytes)} sent (${p.txPackets} pkts)`);
    out.push(`  last packet: in ${ago(p.lastRxMs)}, out ${ago(p.lastTxMs)}`);
    for (const s of p.sas) out.push(`  sa ${s.direction.padEnd(3)} spi ${s.spi} ${s.algorithm}: ${s.packets} pkts, ${bytes(s.bytes)}`);
  }
  const drops = Object.entries(st.drops).filter(([, n]) => n > 0);
  out.push('');
  out.push(drops.length === 0 ? 'drops: none' : `drops: ${drops.map(([r, n]) => `${r}=${n}`).join(' ')}`);
  const q = st.queue;
  if (q !== null) {
    const lost = q.queueDropped + q.userDropped;
    out.push(`queue ${q.num}: ${q.waiting} waiting, ${lost === 0 ? 'no kernel drops' : `kernel dropped ${lost} before espgate saw them (queue full ${q.queueDropped}, socket full ${q.userDropped})`}`);
  }
  return out.join('\n');
}
