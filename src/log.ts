/**
 * log.ts: structured logs (pino: JSON lines to stdout, which journald and jq read as is).
 * Per-packet events go through RateLimitedLog so that a flood cannot fill the disk.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** createLogger makes the process logger; level from ESPGATE_LOG_LEVEL (default info). */
export function createLogger(name = 'espgate'): Logger {
  return pino({
    name,
    level: process.env['ESPGATE_LOG_LEVEL'] ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/**
 * RateLimitedLog lets at most `perInterval` lines per key through each interval and then
 * reports how many it suppressed. The clock is injected so that it can be tested without time.
 * Not safe for concurrent use across workers (each worker has its own).
 */
export class RateLimitedLog {
  readonly #log: (key: string, msg: string, suppressed: number) => void;
  readonly #perInterval: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #state = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(log: (key: string, msg: string, suppressed: number) => void, perInterval = 10, intervalMs = 10_000, now: () => number = Date.now) {
    this.#log = log;
    this.#perInterval = perInterval;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** note logs msg under key unless the key is over its budget; returns whether it logged. */
  note(key: string, msg: string): boolean {
    const t = this.#now();
    let s = this.#state.get(key);
    if (s === undefined || t - s.start >= this.#intervalMs) {
      const suppressed = s?.suppressed ?? 0;
      if (s === undefined && this.#state.size >= 1024) this.#state.clear(); // bounded key space
      s = { start: t, count: 0, suppressed: 0 };
      this.#state.set(key, s);
      if (suppressed > 0) this.#log(key, `${suppressed} similar messages suppressed`, suppressed);
    }
    if (s.count < this.#perInterval) {
      s.count++;
      this.#log(key, msg, 0);
      return true;
    }
    s.suppressed++;
    return false;
  }
}
