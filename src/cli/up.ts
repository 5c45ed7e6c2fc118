/**
 * cli/up.ts: `espgate up -c FILE`: the daemon in the foreground, systemd style.
 *   SIGTERM, SIGINT: remove what this daemon added, exit 0
 *   SIGHUP:          re-read the config; peers and SAs change, untouched peers keep their state
 */
import type { Logger } from '../log.js';
import { loadConfig } from '../config/load.js';
import { Daemon } from '../daemon/daemon.js';
import { linuxSystem } from '../daemon/system.js';
import { staticSaFactory } from '../daemon/sa-factory.js';
import { GatewayError } from '../errors.js';
import { createNotifier } from '../daemon/sd-notify.js';

/** runUp starts the daemon and resolves when it has stopped. Rejects if start-up fails. */
export async function runUp(file: string, log: Logger): Promise<void> {
  const cfg = loadConfig(file);
  const daemon = new Daemon(cfg, linuxSystem(undefined, log), log, staticSaFactory(cfg.stateDir));
  const sd = createNotifier();
  let stopping: Promise<void> | undefined;
  let starting: Promise<void> = Promise.resolve();
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => { resolveDone = r; });
  const stop = (sig: string): void => {
    if (stopping) return;
    log.info({ signal: sig }, 'stopping');
    sd.stop();
    sd.send('STOPPING=1');
    // A signal during start-up waits for start() to settle, so that teardown sees everything it added.
    stopping = starting.catch(() => {}).then(() => daemon.stop())
      .then(resolveDone, (e: unknown) => { log.error({ err: e }, 'stop failed'); resolveDone(); });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const refused = (e: unknown): void => {
    log.error({ err: GatewayError.isGatewayError(e) ? e.message : e }, 'reload refused; still running on the previous config');
  };
  process.on('SIGHUP', () => {
    if (stopping) return;
    log.info({ file }, 'SIGHUP: reloading the config');
    sd.send('RELOADING=1');
    const ready = (): void => { sd.send(`READY=1\nSTATUS=up, ${daemon.config.peers.length} peer(s), ${daemon.reloads} reload(s)`); };
    try {
      daemon.reload(loadConfig(file)).then(ready, (e: unknown) => { refused(e); ready(); });
    } catch (e) {
      refused(e);
      ready();
    }
  });
  starting = daemon.start();
  await starting;
  if (sd.enabled && !stopping) {
    const rc = sd.send(`READY=1\nSTATUS=up, ${cfg.peers.length} peer(s)\nMAINPID=${process.pid}`);
    if (rc !== 0) log.warn({ errno: -rc }, 'sd_notify READY=1 failed');
    const ms = sd.startWatchdog();
    log.info({ watchdogMs: ms }, 'told systemd we are ready');
  }
  await done;
}
