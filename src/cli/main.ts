#!/usr/bin/env node
/**
 * cli/main.ts: the espgate command. The only module that sets exit codes:
 *   0 ok · 1 runtime failure · 2 usage or config error · 3 already running · 4 daemon unreachable
 */
import { Command, CommanderError } from 'commander';
import { GatewayError, type ErrorCode } from '../errors.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../log.js';
import { requestControl } from '../daemon/control.js';
import { join } from 'node:path';
import { runUp } from './up.js';
import { rulesCommand } from './rules.js';
import { formatStatus } from './format.js';
import { espSaLines } from './keys.js';
import { formatDoctor, runDoctor } from './doctor.js';
import { linuxProbes } from './doctor-probes.js';
import { missingCapabilities } from '../daemon/system.js';
import { parseHostArg, parsePrefixArg, renderInitConfigs, writeInitConfigs } from './init.js';
import type { DaemonStatus } from '../daemon/status.js';
import { formatTraceEvent, type TraceEvent } from '../datapath/trace.js';

const EXIT: Partial<Record<ErrorCode, number>> = {
  ERR_CONFIG: 2, ERR_PREFIX: 2, ERR_ESP_KEY: 2, ERR_ALREADY_RUNNING: 3, ERR_CONTROL: 4,
};

/**
 * exitWhenDone is set by `up`: the nfqueue binding has no close(), so its netlink socket keeps
 * the event loop alive after the daemon has removed everything it added; the CLI then ends
 * the process itself with the exit code it chose.
 */
let exitWhenDone = false;

function program(): Command {
  const p = new Command('espgate')
    .description('IPsec ESP tunnel-mode gateway: fake-offset steering, AES-GCM ESP, conntrack-consistent reinjection')
    .exitOverride()
    .showHelpAfterError();

  p.command('up')
    .description('run the daemon in the foreground (installs rules/TUN/routes if absent; SIGTERM/SIGINT removes what it added)')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .action(async (o: { config: string }) => { exitWhenDone = true; await runUp(o.config, createLogger()); });

  p.command('init')
    .description('write a commented config for both ends of a two-host setup: IKEv2 with a fresh pre-shared key (or --static SAs)')
    .requiredOption('--local <name=address>', 'this host, e.g. alice=198.18.0.1')
    .requiredOption('--peer <name=address>', 'the other host, e.g. bob=198.18.0.2')
    .requiredOption('--prefix <real=fake>', 'a real prefix holding both addresses and its fake twin (repeat for IPv4 and IPv6)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--static', 'static SAs (fresh keys and SPIs) instead of IKEv2 with a fresh pre-shared key: for tests and debugging')
    .option('--aes <bits>', 'AES key size of static SAs: 128 or 256', '256')
    .option('--state-dir <dir>', 'stateDir in the configs', '/var/lib/espgate')
    .option('-o, --out <dir>', 'write <dir>/<name>.yaml for both hosts (mode 0600); without it, print both')
    .option('--force', 'overwrite existing files')
    .action((o: { local: string; peer: string; prefix: string[]; static?: boolean; aes: string; stateDir: string; out?: string; force?: boolean }) => {
      if (o.aes !== '128' && o.aes !== '256') throw new GatewayError('ERR_CONFIG', `--aes must be 128 or 256, got "${o.aes}"`);
      const opts = { local: parseHostArg('local', o.local), peer: parseHostArg('peer', o.peer), prefixes: o.prefix.map(parsePrefixArg), aesBits: o.aes === '128' ? 128 as const : 256 as const, stateDir: o.stateDir, keying: o.static === true ? 'static' as const : 'ike' as const };
      const texts = renderInitConfigs(opts);
      if (o.out === undefined) {
        console.log(`${texts[0]}\n# ---- 8< ---- ${opts.peer.name}.yaml ----\n\n${texts[1]}`);
        return;
      }
      const files = writeInitConfigs(o.out, opts, texts, o.force === true);
      console.log(`wrote ${files.join(' and ')} (mode 0600: they hold keys)`);
      console.log(`next: copy ${files[1] ?? ''} to ${opts.peer.name}; on each host: espgate check -c <file>, then espgate up -c <file>`);
    });

  p.command('check')
    .description('validate a config and print what would be installed; changes nothing')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .option('--no-system', 'only validate the config; skip the system checks and the rules preview')
    .action(async (o: { config: string; system: boolean }) => {
      const cfg = loadConfig(o.config);
      console.log(`config ${o.config}: ok (${cfg.peers.length} peer(s), mode ${cfg.mode}, tun ${cfg.tun.name})`);
      if (!o.system) return;
      const results = await runDoctor(cfg, linuxProbes());
      console.log(formatDoctor(results));
      if (results.some((r) => r.level === 'fail')) {
        process.exitCode = 1;
        return;
      }
      if (missingCapabilities().length === 0) await rulesCommand('show', cfg);
    });

  const rules = p.command('rules').description('the gate: steering and guard rules (iptables+ipset, or an nftables table: rules.backend) and blackhole routes');
  for (const action of ['install', 'remove', 'show'] as const) {
    rules.command(action)
      .description({ install: 'install the gate atomically (idempotent); it stays until `rules remove`',
        remove: 'remove the gate: the only way to let cleartext to protected peers through again',
        show: 'print what install would apply (dry run)' }[action])
      .requiredOption('-c, --config <file>', 'config file (YAML)')
      .action(async (o: { config: string }) => { await rulesCommand(action, loadConfig(o.config)); });
  }

  p.command('status')
    .description('show peers, SAs and counters of the running daemon')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .option('--json', 'machine-readable output')
    .action(async (o: { config: string; json?: boolean }) => {
      const cfg = loadConfig(o.config);
      const st = (await requestControl(join(cfg.stateDir, 'espgate.sock'), { cmd: 'status' })) as DaemonStatus;
      console.log(o.json === true ? JSON.stringify(st, null, 2) : formatStatus(st));
    });

  p.command('trace')
    .description('follow packets of one host or peer through the data path (steered, sealed, sent / received, opened, reinjected, or the drop reason)')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .option('--host <address>', 'follow packets to or from this address (inner, either form, or an endpoint)')
    .option('--peer <name>', 'follow packets of this peer')
    .option('--count <n>', 'stop after n packets (at most 10000)', '20')
    .option('--seconds <s>', 'stop after s seconds (at most 600)', '10')
    .option('--json', 'one JSON object per packet')
    .action(async (o: { config: string; host?: string; peer?: string; count: string; seconds: string; json?: boolean }) => {
      const cfg = loadConfig(o.config);
      const sock = join(cfg.stateDir, 'espgate.sock');
      const count = Number(o.count);
      const seconds = Number(o.seconds);
      if (!Number.isFinite(count) || count < 1 || !Number.isFinite(seconds) || seconds <= 0) throw new GatewayError('ERR_CONFIG', '--count and --seconds must be positive numbers');
      const started = (await requestControl(sock, { cmd: 'trace-start', host: o.host, peer: o.peer, count, seconds })) as { error?: string };
      if (started.error !== undefined) throw new GatewayError('ERR_CONFIG', started.error);
      if (o.json !== true) console.log(`tracing ${o.host ?? ''}${o.peer === undefined ? '' : ` peer ${o.peer}`}${o.host === undefined && o.peer === undefined ? 'everything' : ''}: up to ${count} packets or ${seconds} s`);
      let since = 0;
      const deadline = Date.now() + seconds * 1000 + 5000;
      for (let i = 0; Date.now() < deadline && i < 10_000; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const r = (await requestControl(sock, { cmd: 'trace-read', since })) as { events?: TraceEvent[]; done?: boolean; lost?: number; error?: string };
        if (r.error !== undefined) throw new GatewayError('ERR_CONTROL', r.error);
        for (const e of r.events ?? []) {
          console.log(o.json === true ? JSON.stringify(e) : formatTraceEvent(e));
          since = e.n;
        }
        if (r.done === true) {
          if ((r.lost ?? 0) > 0) console.error(`espgate: ${r.lost} trace events were lost (the reader was too slow)`);
          return;
        }
      }
    });

  p.command('keys')
    .description("print the SAs as Wireshark esp_sa UAT lines (save as ~/.config/wireshark/esp_sa, or pass with tshark -o 'uat:esp_sa:...')")
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .option('--local <addr>', 'this host\'s outer address (default: guessed from the route to each peer)')
    .action(async (o: { config: string; local?: string }) => {
      const cfg = loadConfig(o.config);
      for (const l of await espSaLines(cfg, o.local)) console.log(l);
      if (cfg.peers.some((p) => p.ike !== undefined)) {
        // IKE's Child SAs live only in the daemon: ask it (root-only control socket).
        const r = (await requestControl(join(cfg.stateDir, 'espgate.sock'), { cmd: 'keys' })) as { lines?: string[] };
        for (const l of r.lines ?? []) console.log(l);
      }
    });
  return p;
}

async function main(): Promise<void> {
  try {
    await program().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    if (GatewayError.isGatewayError(e)) {
      console.error(`espgate: ${e.message}`);
      process.exitCode = EXIT[e.code] ?? 1;
      return;
    }
    console.error(`espgate: unexpected error: ${(e as Error).stack ?? String(e)}`);
    process.exitCode = 1;
  }
}

await main();
if (exitWhenDone) {
  // eslint-disable-next-line no-restricted-syntax -- see exitWhenDone: a native handle without close()
  process.exit();
}
