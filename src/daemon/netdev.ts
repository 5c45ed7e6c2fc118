/**
 * daemon/netdev.ts: the TUN's link settings and the routes of the fake prefixes, applied with
 * one `ip -batch -` call per step (never one process per route). Through the installer's
 * Runner (src/netfilter/runner.ts), so that the daemon can be tested with a fake.
 *
 * What is set up, per fake prefix P (IPv4 or IPv6):
 *   ip link set dev TUN mtu M addrgenmode none multicast off
 *                                               (no IPv6 link-local, no MLD: nothing but steered traffic)
 *   ip link set dev TUN up
 *   ip route replace P dev TUN src S            (steered traffic enters the TUN; S, our address inside
 *                                                local.protect, is the source of ICMP errors this host
 *                                                itself sends into the tunnel, so the peer's policy
 *                                                check accepts them)
 *   ip route replace blackhole P metric 4242    (fail closed: if the TUN disappears, the
 *                                                fake destinations go nowhere, never out a NIC)
 */
import { GatewayError } from '../errors.js';
import { parseCidr } from '../netfilter/cidr.js';
import type { Runner, RunResult } from '../netfilter/runner.js';

/** IP_TIMEOUT_MS bounds every ip(8) call. */
const IP_TIMEOUT_MS = 10_000;

/** Exec is a Runner bound to ip(8) with a time limit. */
type Exec = (args: readonly string[], stdin?: string) => Promise<RunResult>;

function ipOf(runner: Runner): Exec {
  return (args, stdin) => runner.run('ip', args, stdin, IP_TIMEOUT_MS);
}

/** BLACKHOLE_METRIC is the metric of the fail-closed blackhole routes (above the TUN route's 0). */
export const BLACKHOLE_METRIC = 4242;

function familyFlag(prefix: string): '-4' | '-6' {
  return prefix.includes(':') ? '-6' : '-4';
}

async function ipBatch(runner: Runner, lines: readonly string[], what: string): Promise<void> {
  if (lines.length === 0) return;
  const r = await ipOf(runner)(['-batch', '-'], lines.join('\n') + '\n');
  if (r.missing) throw new GatewayError('ERR_MISSING_TOOL', 'ip(8) not found: install iproute2');
  if (r.code !== 0) throw new GatewayError('ERR_NETLINK', `${what} failed: ${r.stderr.trim() || `ip exited ${String(r.code)}`}`);
}

/**
 * configureTun sets MTU, disables address autoconfiguration and multicast, brings the TUN up and
 * routes the fake prefixes into it, with `src` of the prefix's family when one is given.
 */
export async function configureTun(runner: Runner, tun: string, mtuBytes: number, fakePrefixes: readonly string[],
  src: Readonly<{ v4?: string; v6?: string }> = {}): Promise<void> {
  const srcOf = (p: string): string => {
    const s = p.includes(':') ? src.v6 : src.v4;
    return s === undefined ? '' : ` src ${s}`;
  };
  await ipBatch(runner, [
    `link set dev ${tun} mtu ${mtuBytes} addrgenmode none multicast off`,
    `link set dev ${tun} up`,
    ...fakePrefixes.map((p) => `route replace ${p} dev ${tun}${srcOf(p)}`),
  ], `configuring ${tun}`);
}

/** localAddresses lists the addresses configured on this host (all families, all links). */
export async function localAddresses(runner: Runner): Promise<string[]> {
  const r = await ipOf(runner)(['-j', 'addr', 'show']);
  if (r.code !== 0) return [];
  try {
    const links = JSON.parse(r.stdout) as { addr_info?: { local?: string; scope?: string }[] }[];
    return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.scope === 'global' && a.local !== undefined).map((a) => a.local as string));
  } catch {
    return [];
  }
}

/** installBlackholes adds the fail-closed blackhole routes for the fake prefixes. */
export async function installBlackholes(runner: Runner, fakePrefixes: readonly string[]): Promise<void> {
  await ipBatch(runner, fakePrefixes.map((p) => `route replace blackhole ${p} metric ${BLACKHOLE_METRIC}`), 'adding blackhole routes');
}

/** removeBlackholes deletes them again; missing routes are not an error. */
export async function removeBlackholes(runner: Runner, fakePrefixes: readonly string[]): Promise<void> {
  const exec = ipOf(runner);
  for (const p of fakePrefixes) {
    await exec([familyFlag(p), 'route', 'del', 'blackhole', p, 'metric', String(BLACKHOLE_METRIC)]);
  }
}

/** hasBlackholes reports whether every fake prefix has its blackhole route. */
export async function hasBlackholes(runner: Runner, fakePrefixes: readonly string[]): Promise<boolean> {
  const exec = ipOf(runner);
  for (const p of fakePrefixes) {
    const r = await exec([familyFlag(p), 'route', 'show', 'type', 'blackhole', p]);
    if (r.code !== 0 || !r.stdout.includes(`metric ${BLACKHOLE_METRIC}`)) return false;
  }
  return true;
}

/**
 * blackholesInProc is hasBlackholes without a program: it reads the routing tables the kernel
 * prints in /proc/net/route (IPv4, main table: a blackhole has no device, "*") and
 * /proc/net/ipv6_route (RTF_REJECT set), texts given. true: every fake prefix has its blackhole
 * with our metric; false: one is missing; undefined: a text needed is missing (no /proc: ask
 * ip(8)). Both texts are those of the caller's network namespace.
 */
export function blackholesInProc(fakePrefixes: readonly string[], route4: string | undefined, route6: string | undefined): boolean | undefined {
  for (const p of fakePrefixes) {
    const c = parseCidr(p);
    if (!c.ok) return false;
    const { family, addr, prefixLen } = c.cidr;
    if (family === 'v4') {
      if (route4 === undefined) return undefined;
      // Destination and Mask are the 32-bit words as the host (little endian) prints them.
      const le = (b: Uint8Array): string => Buffer.from(b).reverse().toString('hex').toUpperCase();
      const mask = new Uint8Array(4);
      for (let i = 0; i < prefixLen; i++) mask[i >> 3] = (mask[i >> 3] ?? 0) | (0x80 >> (i & 7));
      const dst = le(addr);
      const m = le(mask);
      const found = route4.split('\n').some((line) => {
        const f = line.trim().split(/\s+/);
        return f[0] === '*' && f[1]?.toUpperCase() === dst && f[6] === String(BLACKHOLE_METRIC) && f[7]?.toUpperCase() === m;
      });
      if (!found) return false;
    } else {
      if (route6 === undefined) return undefined;
      const dst = Buffer.from(addr).toString('hex');
      const plen = prefixLen.toString(16).padStart(2, '0');
      const metric = BLACKHOLE_METRIC.toString(16).padStart(8, '0');
      const found = route6.split('\n').some((line) => {
        const f = line.trim().split(/\s+/);
        return f[0] === dst && f[1] === plen && f[5] === metric && (Number.parseInt(f[8] ?? '0', 16) & RTF_REJECT) !== 0;
      });
      if (!found) return false;
    }
  }
  return true;
}

/** RTF_REJECT is linux/route.h's flag of reject routes (blackhole, unreachable, prohibit) in /proc/net/ipv6_route. */
const RTF_REJECT = 0x0200;

/** linkMtuTowards returns the MTU of the interface the kernel uses to reach `addr` (default 1500 if unknown). */
export async function linkMtuTowards(runner: Runner, addr: string): Promise<number> {
  const exec = ipOf(runner);
  const r = await exec(['-j', familyFlag(addr), 'route', 'get', addr]);
  if (r.code !== 0) return 1500;
  try {
    const routes = JSON.parse(r.stdout) as { dev?: string; mtu?: number }[];
    const dev = routes[0]?.dev;
    if (dev === undefined) return 1500;
    const l = await exec(['-j', 'link', 'show', 'dev', dev]);
    const links = JSON.parse(l.stdout) as { mtu?: number }[];
    return links[0]?.mtu ?? 1500;
  } catch {
    return 1500;
  }
}
