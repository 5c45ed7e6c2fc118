/**
 * daemon/sd-notify.ts: systemd's readiness and watchdog protocol (sd_notify(3)) for `espgate up`
 * under a `Type=notify` unit (docs/systemd.md).
 *
 *   READY=1      once the gate, TUN, sockets and queue are all in place (state 'up')
 *   RELOADING=1  / READY=1 around a SIGHUP reload
 *   STOPPING=1   when shutdown starts
 *   WATCHDOG=1   every WATCHDOG_USEC / 2 from the event loop, when the unit sets WatchdogSec=:
 *                a hung event loop stops the pings and systemd restarts the daemon (the gate
 *                keeps traffic blocked meanwhile: fail closed)
 *   STATUS=...   a one-line summary
 *
 * Nothing happens when NOTIFY_SOCKET is unset (not under systemd) or the addon is not built.
 */
import { loadAddon } from '../io/native-addon.js';

interface SysAddon {
  sdNotify(socketPath: string, message: string): number;
}

/** Notifier sends sd_notify messages; a no-op when not under systemd. */
export interface Notifier {
  /** enabled: NOTIFY_SOCKET is set and the addon loaded. */
  readonly enabled: boolean;
  /** send returns 0, or -errno (the caller may log it; systemd gone is not fatal). */
  send(message: string): number;
  /** startWatchdog pings every WATCHDOG_USEC/2 when the unit asks for it; returns the interval in ms or 0. */
  startWatchdog(): number;
  stop(): void;
}

/** createNotifier reads NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID from env. */
export function createNotifier(env: NodeJS.ProcessEnv = process.env): Notifier {
  const socket = env.NOTIFY_SOCKET;
  const addon = socket !== undefined && socket !== '' ? loadAddon<SysAddon>('espgate_sys').addon : undefined;
  let timer: NodeJS.Timeout | undefined;
  const send = (message: string): number => (addon === undefined || socket === undefined ? 0 : addon.sdNotify(socket, message));
  return {
    enabled: addon !== undefined,
    send,
    startWatchdog(): number {
      const usec = Number(env.WATCHDOG_USEC ?? '');
      const forPid = env.WATCHDOG_PID === undefined || env.WATCHDOG_PID === String(process.pid);
      if (addon === undefined || !Number.isFinite(usec) || usec <= 0 || !forPid) return 0;
      const ms = Math.max(50, Math.floor(usec / 2000));
      timer = setInterval(() => { send('WATCHDOG=1'); }, ms);
      timer.unref();
      return ms;
    },
    stop(): void {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
