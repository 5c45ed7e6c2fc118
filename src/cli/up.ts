/**
 * cli/up.ts: `espgate up -c FILE`: the daemon in the foreground, systemd style.
 *   SIGTERM, SIGINT: remove what this daemon added, exit 0
 *   SIGHUP:          re-read the config; peers and SAs change, untouched peers keep their state
 *                    (a SIGHUP during start-up is applied once the daemon is up, not dropped)
 */
import type { Logger } from '../log.js';
import type { Config } from '../config/load.js';
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
  const onHup = hupHandler({
    file, log, daemon, notify: (m) => sd.send(m), load: loadConfig,
    starting: () => starting, stopping: () => stopping !== undefined,
  });
  process.on('SIGHUP', () => { void onHup(); });
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

/** HupDeps is what the SIGHUP handler needs: the daemon's reload, the config loader, sd_notify. */
export interface HupDeps {
  readonly file: string;
  readonly log: Logger;
  readonly daemon: { reload(next: Config): Promise<void>; readonly config: Config; readonly reloads: number; readonly state: string };
  readonly notify: (message: string) => number;
  readonly load: (file: string) => Config;
  /** starting returns the daemon's start() promise (resolved when there is none). */
  readonly starting: () => Promise<void>;
  readonly stopping: () => boolean;
}

/**
 * hupHandler returns the SIGHUP action: re-read the config and reload the daemon, bracketed by
 * RELOADING=1 and READY=1 for systemd. A SIGHUP that arrives while the daemon is starting is not
 * dropped: it waits for start() to settle (the daemon can only reload once up) and then reads
 * the file, so the config applied is the one on disk at that moment. Nothing is done once a stop
 * has begun, or when start-up failed (the process is exiting). The returned promise settles when
 * the reload has been applied or refused; it never rejects.
 */
export function hupHandler(d: HupDeps): () => Promise<void> {
  const refused = (e: unknown): void => {
    d.log.error({ err: GatewayError.isGatewayError(e) ? e.message : e }, 'reload refused; still running on the previous config');
  };
  return async (): Promise<void> => {
    if (d.stopping()) return;
    if (d.daemon.state === 'up') d.log.info({ file: d.file }, 'SIGHUP: reloading the config');
    else d.log.info({ file: d.file, state: d.daemon.state }, 'SIGHUP during start-up: the config is reloaded once the daemon is up');
    try {
      await d.starting();
    } catch {
      return; // start-up failed: runUp rejects and the process exits
    }
    if (d.stopping()) return;
    d.notify('RELOADING=1');
    try {
      await d.daemon.reload(d.load(d.file));
    } catch (e) {
      refused(e);
    }
    d.notify(`READY=1\nSTATUS=up, ${d.daemon.config.peers.length} peer(s), ${d.daemon.reloads} reload(s)`);
  };
}
