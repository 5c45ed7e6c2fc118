/**
 * daemon/system.ts: the real System: io/ for TUN, raw sockets and NFQUEUE; netfilter/ for the
 * rules; netdev.ts for links and routes. Netfilter state lives in the config's stateDir, so
 * several daemons (one per network namespace in the lab) never share it.
 */
import type { Config } from '../config/load.js';
import type { System } from './daemon.js';
import { defaultTunGro, defaultTunOffload, openTun } from '../io/tun.js';
import { openStandInIo } from '../io/stand-in.js';
import { openEspSender } from '../io/raw-native.js';
import { readNfqueueProcStats } from '../io/nfqueue.js';
import { udpPortStats } from '../io/proc-udp.js';
import { openEspReceiver } from '../io/receiver.js';
import { buildRulesSpec } from '../netfilter/model.js';
import { install, uninstall, status, dryRunInstall } from '../netfilter/apply.js';
import { nftDryRun, nftInstall, nftStatus, nftUninstall } from '../netfilter/nft-apply.js';
import type { BackendChoice, NftProbe } from '../netfilter/nft-probe.js';
import { chooseBackend, describeBackend, probeNftables } from '../netfilter/nft-probe.js';
import { nftTableName } from '../netfilter/nft-render.js';
import type { Logger } from '../log.js';
import { vforkRunner, type Runner } from '../netfilter/runner.js';
import { rulesInputOf } from './rules-input.js';
import { blackholesInProc, configureTun, installBlackholes, removeBlackholes, hasBlackholes, linkMtuTowards, localAddresses } from './netdev.js';
import { GateWatch } from './gate-watch.js';
import { flushUnsteered } from './conntrack.js';
import { loadAddon } from '../io/native-addon.js';
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

/** readProc reads a /proc file of our network namespace; undefined when it is not there. */
function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** nftGeneration is the nf_tables generation id of our network namespace (-1: unknown). */
function nftGeneration(): number {
  const g = loadAddon<{ nftGeneration(): number }>('espgate_sys').addon?.nftGeneration();
  return typeof g === 'number' && g >= 0 ? g : -1;
}

/** TOOL_LOOKUP_TIMEOUT_MS bounds the `iptables-restore --version` look-up of the backend choice. */
const TOOL_LOOKUP_TIMEOUT_MS = 5_000;

/** hasTool tells whether a tool runs through the runner (it exists in the runner's view of the host). */
async function hasTool(runner: Runner, tool: string): Promise<boolean> {
  const r = await runner.run(tool, ['--version'], undefined, TOOL_LOOKUP_TIMEOUT_MS);
  return !r.missing;
}

/**
 * gateOps are the gate operations, shared by the daemon and `espgate rules`. The backend
 * (config rules.backend; auto probes nft and the kernel once per gateOps) decides whether
 * apply.ts (iptables, ipset) or nft-apply.ts (one nft table) installs the rules. Installing with
 * one backend first removes what the other one left of ours; remove removes both.
 */
export function gateOps(runner: Runner = vforkRunner()) {
  const opts = (cfg: Config) => ({ runner, stateDir: cfg.stateDir });
  let probe: Promise<NftProbe> | undefined;
  const choice = async (cfg: Config): Promise<BackendChoice> => {
    if (cfg.rules.backend === 'iptables') return chooseBackend('iptables', { version: undefined, rest: { result: 'ok' }, queue: { result: 'ok' }, iptables: true });
    probe ??= hasTool(runner, 'iptables-restore').then((ipt) => probeNftables(runner, ipt));
    return chooseBackend(cfg.rules.backend, await probe, cfg.inbound);
  };
  /** installRules installs the rules with the chosen backend; returns the notes, the backend line first. */
  const installRules = async (cfg: Config): Promise<string[]> => {
    const spec = buildRulesSpec(rulesInputOf(cfg));
    const c = await choice(cfg);
    const notes = [describeBackend(c, nftTableName(spec.tag))];
    if (c.backend === 'nftables') {
      if ((await status(spec.tag, opts(cfg))).present) {
        await uninstall(spec.tag, opts(cfg));
        notes.push('removed the rules and sets the iptables backend had installed');
      }
      notes.push(...(await nftInstall(spec, { ...opts(cfg), nativeQueue: c.nativeQueue })).notes);
    } else {
      if ((await nftUninstall(spec.tag, opts(cfg))).removed) notes.push(`removed table inet ${nftTableName(spec.tag)} that the nftables backend had installed`);
      notes.push(...(await install(spec, opts(cfg))).notes);
    }
    return notes;
  };
  /**
   * gateIn installs the blackhole routes and the rules, then moves flows that began before the
   * gate into the tunnel (daemon/conntrack.ts): the daemon's install and the operator's alike.
   */
  const gateIn = async (cfg: Config): Promise<readonly string[]> => {
    await installBlackholes(runner, fakes(cfg));
    const notes = await installRules(cfg);
    return [...notes, ...(await flushUnsteered(runner, buildRulesSpec(rulesInputOf(cfg))))];
  };
  let watched: { cfg: Config; watch: GateWatch } | undefined;
  /** rulesInNfTables: the nft backend, or iptables whose tools say "(nf_tables)" for both families. */
  const rulesInNfTables = async (cfg: Config): Promise<boolean> => {
    if ((await choice(cfg)).backend === 'nftables') return true;
    for (const tool of ['iptables', 'ip6tables']) {
      const r = await runner.run(tool, ['--version'], undefined, TOOL_LOOKUP_TIMEOUT_MS);
      if (r.missing) continue; // no tool: no rules of that family
      if (r.code !== 0 || !`${r.stdout}${r.stderr}`.includes('nf_tables')) return false;
    }
    return true;
  };
  return {
    /** backend returns the backend the config selects here, and why. */
    backend: choice,
    async installed(cfg: Config): Promise<boolean> {
      const spec = buildRulesSpec(rulesInputOf(cfg));
      const c = await choice(cfg);
      const ok = c.backend === 'nftables'
        ? (await nftStatus(spec, { ...opts(cfg), nativeQueue: c.nativeQueue })).installed
        : (await status(spec.tag, { ...opts(cfg), spec })).installed;
      return ok && (await hasBlackholes(runner, fakes(cfg)));
    },
    /**
     * watch returns the daemon's periodic check for cfg (daemon/gate-watch.ts): the full
     * listing only when the nf_tables generation moved, else the blackhole routes from /proc.
     * One per config (a reload installs the rules again and gets a new one).
     */
    watch(cfg: Config): GateWatch {
      if (watched?.cfg === cfg) return watched.watch;
      let nf: Promise<boolean> | undefined;
      const watch = new GateWatch({
        generation: () => nftGeneration(),
        inNfTables: () => (nf ??= rulesInNfTables(cfg)),
        full: () => this.installed(cfg),
        routes: async () => blackholesInProc(fakes(cfg), readProc('/proc/net/route'), readProc('/proc/net/ipv6_route')) ?? hasBlackholes(runner, fakes(cfg)),
      });
      watched = { cfg, watch };
      return watch;
    },
    /** installRules installs rules and blackhole routes for the daemon (which owns the gate then). */
    installGate(cfg: Config): Promise<readonly string[]> {
      return gateIn(cfg);
    },
    /** install is the operator's `rules install`: the gate then belongs to the operator. */
    install(cfg: Config): Promise<readonly string[]> {
      markGateOwner(cfg.stateDir, false);
      return gateIn(cfg);
    },
    /** remove removes what either backend installed of ours, and the blackhole routes. */
    async remove(cfg: Config): Promise<boolean> {
      const spec = buildRulesSpec(rulesInputOf(cfg));
      const n = await nftUninstall(spec.tag, opts(cfg));
      const r = await uninstall(spec.tag, opts(cfg));
      await removeBlackholes(runner, fakes(cfg));
      markGateOwner(cfg.stateDir, false);
      return n.removed || r.removed;
    },
    async show(cfg: Config): Promise<string> {
      const spec = buildRulesSpec(rulesInputOf(cfg));
      const c = await choice(cfg);
      const formatted = c.backend === 'nftables'
        ? (await nftDryRun(spec, { ...opts(cfg), nativeQueue: c.nativeQueue })).formatted
        : (await dryRunInstall(spec, opts(cfg))).formatted;
      const routes = fakes(cfg).map((p) => `ip route replace blackhole ${p} metric 4242`).join('\n');
      return `# ${describeBackend(c, nftTableName(spec.tag))}\n${formatted}\n# routes (fail closed)\n${routes}\n`;
    },
  };
}

/**
 * linuxSystem is the System of a real Linux host. With `log`, installGate logs the rules
 * backend line (which backend, why, and the queue fallback) and the installer's notes.
 */
/** IFF_UP is the interface flag "administratively up" (<linux/if.h>). */
const IFF_UP = 0x1;

/** linkUp reads /sys/class/net/<name>/flags; undefined when the interface does not exist. */
export function linkUp(name: string): boolean | undefined {
  try {
    return (Number.parseInt(readFileSync(`/sys/class/net/${name}/flags`, 'utf8').trim(), 16) & IFF_UP) !== 0;
  } catch {
    return undefined;
  }
}

export function linuxSystem(runner: Runner = vforkRunner(), log?: Pick<Logger, 'info'>): System {
  const gate = gateOps(runner);
  return {
    preflight: () => { checkPrivileges(); },
    lock: () => lockNetns(),
    openTun: (name) => openTun(name, { offload: defaultTunOffload(), gro: defaultTunGro() }),
    configureTun: (name, mtu, prefixes, src) => configureTun(runner, name, mtu, prefixes, src),
    localAddresses: () => localAddresses(runner),
    linkMtuTowards: (addr) => linkMtuTowards(runner, addr),
    openSender: () => openEspSender(),
    openReceiver: (queue, inbound, sender) => openEspReceiver({
      queueNum: queue, socket: inbound === 'socket',
      shareFds: { v4: sender?.expressFd?.(4) ?? -1, v6: sender?.expressFd?.(6) ?? -1 },
    }),
    openStandIn: (tun, sender) => openStandInIo({ tun, sender }),
    gateInstalled: (cfg) => gate.watch(cfg).check(),
    installGate: async (cfg) => {
      const [line, ...notes] = await gate.installGate(cfg);
      log?.info({ notes }, line ?? 'rules installed');
    },
    removeGate: async (cfg) => { await gate.remove(cfg); },
    linkUp: (name) => linkUp(name),
    queueStats: (queue) => {
      const st = readNfqueueProcStats(queue);
      return st === undefined ? undefined : { waiting: st.queueTotal, queueDropped: st.queueDropped, userDropped: st.userDropped };
    },
    udpPortStats: (port) => udpPortStats(port),
  };
}
