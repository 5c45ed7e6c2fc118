/**
 * daemon/system.ts: the real System: io/ for TUN, raw sockets and NFQUEUE; netfilter/ for the
 * rules; netdev.ts for links and routes. Netfilter state lives in the config's stateDir, so
 * several daemons (one per network namespace in the lab) never share it.
 */
import type { Config } from '../config/load.js';
import type { System } from './daemon.js';
import { openTun } from '../io/tun.js';
import { openEspSender } from '../io/rawsock.js';
import { readNfqueueProcStats } from '../io/nfqueue.js';
import { openEspReceiver } from '../io/receiver.js';
import { buildRulesSpec } from '../netfilter/model.js';
import { install, uninstall, status, dryRunInstall } from '../netfilter/apply.js';
import { spawnRunner, type Runner } from '../netfilter/runner.js';
import { rulesInputOf } from './rules-input.js';
import { configureTun, installBlackholes, removeBlackholes, hasBlackholes, linkMtuTowards, localAddresses } from './netdev.js';
import { markGateOwner } from './daemon.js';
import { lockNetns } from './control.js';
import { readFileSync } from 'node:fs';
import { GatewayError } from '../errors.js';

/** CAP_NET_ADMIN and CAP_NET_RAW (linux/capability.h): all espgate needs, and what the unit grants. */
const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;

/**
 * missingCapabilities reads CapEff from /proc/self/status (or the given text) and names what is
 * missing of CAP_NET_ADMIN (rules, routes, TUN, NFQUEUE) and CAP_NET_RAW (the ESP socket).
 */
export function missingCapabilities(statusText?: string): string[] {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return []; // no /proc: let the kernel say no later
    }
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  if (m?.[1] === undefined) return [];
  const eff = BigInt(`0x${m[1]}`);
  const out: string[] = [];
  if ((eff & (1n << BigInt(CAP_NET_ADMIN))) === 0n) out.push('CAP_NET_ADMIN');
  if ((eff & (1n << BigInt(CAP_NET_RAW))) === 0n) out.push('CAP_NET_RAW');
  return out;
}

/** checkPrivileges throws ERR_PRIVILEGE naming the missing capabilities and the fix. */
export function checkPrivileges(statusText?: string): void {
  const missing = missingCapabilities(statusText);
  if (missing.length === 0) return;
  throw new GatewayError('ERR_PRIVILEGE', `this process lacks ${missing.join(' and ')}: run espgate as root, or grant `
    + 'CAP_NET_ADMIN and CAP_NET_RAW (systemd: CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW, see docs/systemd.md); nothing was changed');
}

const fakes = (cfg: Config): string[] => cfg.prefixes.map((p) => p.fake);

/** gateOps are the gate operations, shared by the daemon and `espgate rules`. */
export function gateOps(runner: Runner = spawnRunner()) {
  const opts = (cfg: Config) => ({ runner, stateDir: cfg.stateDir });
  return {
    async installed(cfg: Config): Promise<boolean> {
      const spec = buildRulesSpec(rulesInputOf(cfg));
      const st = await status(spec.tag, { ...opts(cfg), spec });
      return st.installed && (await hasBlackholes(runner, fakes(cfg)));
    },
    /** install is the operator's `rules install`: the gate then belongs to the operator. */
    async install(cfg: Config): Promise<readonly string[]> {
      markGateOwner(cfg.stateDir, false);
      await installBlackholes(runner, fakes(cfg));
      const r = await install(buildRulesSpec(rulesInputOf(cfg)), opts(cfg));
      return r.notes;
    },
    async remove(cfg: Config): Promise<boolean> {
      const spec = buildRulesSpec(rulesInputOf(cfg));
      const r = await uninstall(spec.tag, opts(cfg));
      await removeBlackholes(runner, fakes(cfg));
      markGateOwner(cfg.stateDir, false);
      return r.removed;
    },
    async show(cfg: Config): Promise<string> {
      const r = await dryRunInstall(buildRulesSpec(rulesInputOf(cfg)), opts(cfg));
      const routes = fakes(cfg).map((p) => `ip route replace blackhole ${p} metric 4242`).join('\n');
      return `${r.formatted}\n# routes (fail closed)\n${routes}\n`;
    },
  };
}

/** linuxSystem is the System of a real Linux host. */
export function linuxSystem(runner: Runner = spawnRunner()): System {
  const gate = gateOps(runner);
  return {
    preflight: () => { checkPrivileges(); },
    lock: () => lockNetns(),
    openTun: (name) => openTun(name),
    configureTun: (name, mtu, prefixes, src) => configureTun(runner, name, mtu, prefixes, src),
    localAddresses: () => localAddresses(runner),
    linkMtuTowards: (addr) => linkMtuTowards(runner, addr),
    openSender: () => openEspSender(),
    openReceiver: (queue) => openEspReceiver({ queueNum: queue }),
    gateInstalled: (cfg) => gate.installed(cfg),
    installGate: async (cfg) => {
      await installBlackholes(runner, fakes(cfg));
      await install(buildRulesSpec(rulesInputOf(cfg)), { runner, stateDir: cfg.stateDir });
    },
    removeGate: async (cfg) => { await gate.remove(cfg); },
    queueStats: (queue) => {
      const st = readNfqueueProcStats(queue);
      return st === undefined ? undefined : { waiting: st.queueTotal, queueDropped: st.queueDropped, userDropped: st.userDropped };
    },
  };
}
