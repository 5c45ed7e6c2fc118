/**
 * daemon/system.ts: the real System: io/ for TUN, raw sockets and NFQUEUE; netfilter/ for the
 * rules; netdev.ts for links and routes. Netfilter state lives in the config's stateDir, so
 * several daemons (one per network namespace in the lab) never share it.
 */
import type { Config } from '../config/load.js';
import type { System } from './daemon.js';
import { openTun } from '../io/tun.js';
import { openEspSender } from '../io/rawsock.js';
import { openEspReceiver, readNfqueueProcStats } from '../io/nfqueue.js';
import { buildRulesSpec } from '../netfilter/model.js';
import { install, uninstall, status, dryRunInstall } from '../netfilter/apply.js';
import { spawnRunner, type Runner } from '../netfilter/runner.js';
import { rulesInputOf } from './rules-input.js';
import { configureTun, installBlackholes, removeBlackholes, hasBlackholes, linkMtuTowards, localAddresses } from './netdev.js';
import { markGateOwner } from './daemon.js';

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
