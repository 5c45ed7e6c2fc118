/**
 * cli/doctor-probes.ts: the real DoctorProbes (read-only): the filesystem, PATH, `ip -j route`,
 * /proc/self/status and `nft -c` (check mode: the kernel validates, nothing is committed). Every command is bounded by the runner's timeout.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

import { missingCapabilities } from '../daemon/system.js';
import { probeNftables } from '../netfilter/nft-probe.js';
import type { Runner } from '../netfilter/runner.js';
import { spawnRunner } from '../netfilter/runner.js';
import type { CoveringRoute, DoctorProbes, RouteInfo } from './doctor.js';

const IP_TIMEOUT_MS = 5_000;

function onPath(name: string): boolean {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

async function ipJson(runner: Runner, args: readonly string[]): Promise<unknown[]> {
  const r = await runner.run('ip', ['-j', ...args], undefined, IP_TIMEOUT_MS);
  if (r.code !== 0) return [];
  try {
    const v: unknown = JSON.parse(r.stdout);
    return Array.isArray(v) ? (v as unknown[]) : [];
  } catch {
    return [];
  }
}

/** linuxProbes answers DoctorProbes on this host (or through runner's prefix, e.g. a namespace). */
export function linuxProbes(runner: Runner = spawnRunner()): DoctorProbes {
  const fam = (a: string): string => (a.includes(':') ? '-6' : '-4');
  return {
    exists: (path) => existsSync(path),
    hasTool: (name) => onPath(name),
    missingCapabilities: () => missingCapabilities(),
    rmemMax: () => {
      try {
        const n = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim());
        return Number.isSafeInteger(n) ? n : undefined;
      } catch {
        return undefined;
      }
    },
    nftables: () => probeNftables(runner, onPath('iptables-restore')),
    async route(address): Promise<RouteInfo | undefined> {
      const [r] = (await ipJson(runner, [fam(address), 'route', 'get', address])) as { type?: string; dev?: string }[];
      if (r === undefined) return undefined;
      let mtu = 1500;
      if (r.dev !== undefined) {
        const [l] = (await ipJson(runner, ['link', 'show', 'dev', r.dev])) as { mtu?: number }[];
        mtu = l?.mtu ?? 1500;
      }
      return { type: r.type ?? 'unicast', ...(r.dev === undefined ? {} : { dev: r.dev }), mtu };
    },
    async covering(address): Promise<CoveringRoute[]> {
      const rows = (await ipJson(runner, [fam(address), 'route', 'show', 'match', address])) as { dst?: string; dev?: string; type?: string }[];
      return rows.map((r) => ({ dst: r.dst ?? '?', type: r.type ?? 'unicast', ...(r.dev === undefined ? {} : { dev: r.dev }) }));
    },
  };
}
