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
import type { DaemonStatus } from '../daemon/status.js';

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

  p.command('check')
    .description('validate a config and print what would be installed; changes nothing')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .action(async (o: { config: string }) => {
      const cfg = loadConfig(o.config);
      console.log(`config ${o.config}: ok (${cfg.peers.length} peer(s), mode ${cfg.mode}, tun ${cfg.tun.name})`);
      await rulesCommand('show', cfg);
    });

  const rules = p.command('rules').description('the iptables/ip6tables/ipset rules and blackhole routes (the gate)');
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

  p.command('keys')
    .description("print the SAs as Wireshark esp_sa UAT lines (save as ~/.config/wireshark/esp_sa, or pass with tshark -o 'uat:esp_sa:...')")
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .option('--local <addr>', 'this host\'s outer address (default: guessed from the route to each peer)')
    .action(async (o: { config: string; local?: string }) => {
      for (const l of await espSaLines(loadConfig(o.config), o.local)) console.log(l);
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
