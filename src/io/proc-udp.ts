/**
 * io/proc-udp.ts: the kernel's per-socket UDP counters from /proc/net/udp and /proc/net/udp6
 * (the namespace's sockets). espgate reads its port 4500 sockets there: `drops` counts the
 * datagrams the kernel dropped for that socket before we read them (receive buffer full,
 * checksum), the loss that no counter of ours can see.
 *
 * One line per socket (udp6 has 32-hex-digit addresses, otherwise the same):
 *
 *    sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 *   123: 00000000:1194 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4711 2 ffff8f... 0
 *
 * Ports and queues are hexadecimal, inode and drops decimal.
 */
import { readFileSync } from 'node:fs';

/** ProcUdpSocket is one socket line. */
export interface ProcUdpSocket {
  readonly localPort: number;
  /** rxQueue: bytes waiting in the receive buffer (the kernel's accounting, truesize). */
  readonly rxQueue: number;
  readonly inode: number;
  /** drops: datagrams the kernel dropped for this socket. */
  readonly drops: number;
}

/** parseProcNetUdp parses /proc/net/udp or udp6; lines it cannot read are skipped. */
export function parseProcNetUdp(text: string): ProcUdpSocket[] {
  const out: ProcUdpSocket[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13 || !/^\d+:$/.test(f[0] ?? '')) continue;
    const local = /:([0-9A-Fa-f]{4})$/.exec(f[1] ?? '');
    const queues = /^[0-9A-Fa-f]{8}:([0-9A-Fa-f]{8})$/.exec(f[4] ?? '');
    const inode = Number(f[9]);
    const drops = Number(f[12]);
    if (local?.[1] === undefined || queues?.[1] === undefined || !Number.isSafeInteger(inode) || !Number.isSafeInteger(drops)) continue;
    out.push({ localPort: parseInt(local[1], 16), rxQueue: parseInt(queues[1], 16), inode, drops });
  }
  return out;
}

/** UdpPortStats sums the sockets bound to one local port. */
export interface UdpPortStats {
  /** sockets: how many sockets (both families) are bound to the port. */
  readonly sockets: number;
  readonly dropped: number;
  readonly rxQueue: number;
}

/**
 * udpPortStats sums /proc/net/udp and udp6 for the sockets on `port` in this process's network
 * namespace; undefined when neither file can be read. espgate's own sockets are the only ones
 * on its NAT-T port (a second bind fails with EADDRINUSE: no SO_REUSEPORT), so the port names them.
 */
export function udpPortStats(port: number, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): UdpPortStats | undefined {
  let sockets = 0;
  let dropped = 0;
  let rxQueue = 0;
  let readable = false;
  for (const path of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = read(path);
    } catch {
      continue; // no IPv6 in this kernel, or no /proc
    }
    readable = true;
    for (const s of parseProcNetUdp(text)) {
      if (s.localPort !== port) continue;
      sockets++;
      dropped += s.drops;
      rxQueue += s.rxQueue;
    }
  }
  return readable ? { sockets, dropped, rxQueue } : undefined;
}
