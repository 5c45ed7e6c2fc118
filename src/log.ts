/**
 * log.ts: structured logs with pino, on stdout.
 *
 *   stdout not a TTY (systemd/journald, a pipe, a file): one JSON object per line, which journald
 *                  keeps as is and jq reads: {"level":30,"time":"…","pid":1,"name":"espgate","msg":"espgate up",…}
 *   stdout a TTY:  one human line per event (our own small formatter: pino-pretty is not a
 *                  dependency):  09:01:46.123Z INFO  espgate up  tun=eg0 mtu=1440 peers=2
 *
 * ESPGATE_LOG_FORMAT=json|human overrides the choice; ESPGATE_LOG_LEVEL picks the level
 * (fatal, error, warn, info (default), debug, trace, silent). Per-packet events are logged only
 * at debug and through a RateLimitedLog (packetLog), so that a flood can neither fill the disk
 * nor cost the data path anything at the default level.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { GatewayError } from './errors.js';

export type { Logger };

/** LOG_LEVELS are the accepted values of ESPGATE_LOG_LEVEL, most severe first. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** LogLevel is one of LOG_LEVELS. */
export type LogLevel = (typeof LOG_LEVELS)[number];
/** LogFormat is how lines are written: JSON objects or human lines. */
export type LogFormat = 'json' | 'human';

/** LogDestination is where lines go (process.stdout by default); isTTY picks the default format. */
export interface LogDestination {
  write(line: string): unknown;
  readonly isTTY?: boolean;
}

/** LoggerOptions override the environment (tests, tools). */
export interface LoggerOptions {
  readonly level?: string;
  readonly format?: string;
  readonly destination?: LogDestination;
  /** color: ANSI colours on level names in the human format. Default: a TTY without NO_COLOR. */
  readonly color?: boolean;
}

/** parseLogLevel checks a level name; GatewayError ERR_CONFIG names the accepted ones. */
export function parseLogLevel(v: string | undefined): LogLevel {
  if (v === undefined || v === '') return 'info';
  const l = v.toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(l)) return l as LogLevel;
  throw new GatewayError('ERR_CONFIG', `ESPGATE_LOG_LEVEL: "${v}" is not a level (${LOG_LEVELS.join(', ')})`);
}

/** logFormatFor picks the format: ESPGATE_LOG_FORMAT when set (json, human or auto), else human on a TTY. */
export function logFormatFor(setting: string | undefined, isTty: boolean): LogFormat {
  if (setting === undefined || setting === '' || setting === 'auto') return isTty ? 'human' : 'json';
  if (setting === 'json' || setting === 'human') return setting;
  throw new GatewayError('ERR_CONFIG', `ESPGATE_LOG_FORMAT: "${setting}" is not json, human or auto`);
}

/** LEVEL_NAMES maps pino's level numbers to the names the human format prints. */
const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLORS: Readonly<Record<number, string>> = { 10: '\x1b[90m', 20: '\x1b[36m', 30: '\x1b[32m', 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[35m' };
/** OMITTED are the fields the human format does not repeat on every line. */
const OMITTED = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);
const LEVEL_ERROR = 50;

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'object' && v !== null) return JSON.stringify(v);
  return String(v);
}

/**
 * formatLogLine turns one pino JSON line into a human line:
 * `HH:MM:SS.mmmZ LEVEL msg  key=value ...`; an error's stack follows, indented, at error and
 * fatal. A line that is not a JSON object is returned unchanged. Pure.
 */
export function formatLogLine(line: string, color = false): string {
  let o: unknown;
  try { o = JSON.parse(line); } catch { return line; }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return line;
  const rec = o as Record<string, unknown>;
  const level = typeof rec['level'] === 'number' ? rec['level'] : 30;
  const name = (LEVEL_NAMES[level] ?? String(level)).padEnd(5);
  const time = typeof rec['time'] === 'string' ? rec['time'].slice(11) : typeof rec['time'] === 'number' ? new Date(rec['time']).toISOString().slice(11) : '';
  const msg = typeof rec['msg'] === 'string' ? rec['msg'] : '';
  const fields: string[] = [];
  let stack: string | undefined;
  for (const [k, v] of Object.entries(rec)) {
    if (OMITTED.has(k)) continue;
    const err = v as { message?: unknown; stack?: unknown } | null;
    if (k === 'err' && typeof err === 'object' && err !== null && typeof err.message === 'string') {
      fields.push(`err=${fieldValue(err.message)}`);
      if (typeof err.stack === 'string' && level >= LEVEL_ERROR) stack = err.stack;
      continue;
    }
    fields.push(`${k}=${fieldValue(v)}`);
  }
  const lvl = color ? `${LEVEL_COLORS[level] ?? ''}${name}\x1b[0m` : name;
  let out = `${time} ${lvl} ${msg}${fields.length === 0 ? '' : `  ${fields.join(' ')}`}`;
  if (stack !== undefined) out += `\n${stack.split('\n').map((l) => `    ${l}`).join('\n')}`;
  return out;
}

/** humanStream wraps a destination so that each JSON line pino writes arrives as a human line. */
function humanStream(dest: LogDestination, color: boolean): DestinationStream {
  return {
    write(chunk: string): void {
      for (const line of chunk.split('\n')) if (line !== '') dest.write(`${formatLogLine(line, color)}\n`);
    },
  };
}

/**
 * createLogger makes the process logger: level from ESPGATE_LOG_LEVEL (default info), format
 * from ESPGATE_LOG_FORMAT or whether stdout is a TTY. Throws GatewayError ERR_CONFIG on an
 * unknown level or format. Called once, by the CLI.
 */
export function createLogger(name = 'espgate', o: LoggerOptions = {}): Logger {
  const level = parseLogLevel(o.level ?? process.env['ESPGATE_LOG_LEVEL']);
  const dest: LogDestination = o.destination ?? process.stdout;
  const format = logFormatFor(o.format ?? process.env['ESPGATE_LOG_FORMAT'], dest.isTTY === true);
  const options = { name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'human') {
    const color = o.color ?? (dest.isTTY === true && process.env['NO_COLOR'] === undefined);
    return pino(options, humanStream(dest, color));
  }
  // JSON: pino's own synchronous stdout writer unless a destination was given.
  return o.destination === undefined ? pino(options) : pino(options, { write: (s: string) => { dest.write(s); } });
}

/**
 * RateLimitedLog lets at most `perInterval` lines per key through each interval and then
 * reports how many it suppressed. The clock is injected so that it can be tested without time.
 * `enabled` is asked first on every note: when it says no, note costs one call and logs nothing.
 * Not safe for concurrent use across workers (each worker has its own).
 */
export class RateLimitedLog {
  readonly #log: (key: string, msg: string, suppressed: number) => void;
  readonly #perInterval: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #enabled: () => boolean;
  readonly #state = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(log: (key: string, msg: string, suppressed: number) => void, perInterval = 10, intervalMs = 10_000, now: () => number = Date.now, enabled: () => boolean = () => true) {
    this.#log = log;
    this.#perInterval = perInterval;
    this.#intervalMs = intervalMs;
    this.#now = now;
    this.#enabled = enabled;
  }

  /** note logs msg under key unless the key is over its budget; returns whether it logged. */
  note(key: string, msg: string): boolean {
    if (!this.#enabled()) return false;
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

/**
 * packetLog is the logger for per-packet events (drops, malformed datagrams): debug level only,
 * rate-limited per key (default 10 lines per key per 10 s, then a count of what was
 * suppressed). At the default level (info) note() returns false after one level check.
 */
export function packetLog(log: Logger, perInterval = 10, intervalMs = 10_000, now: () => number = Date.now): RateLimitedLog {
  return new RateLimitedLog(
    (key, msg, suppressed) => { log.debug(suppressed > 0 ? { key, suppressed } : { key }, msg); },
    perInterval, intervalMs, now, () => log.isLevelEnabled('debug'),
  );
}
