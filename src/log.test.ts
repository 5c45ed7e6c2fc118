import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GatewayError } from './errors.js';
import { RateLimitedLog, createLogger, formatLogLine, logFormatFor, packetLog, parseLogLevel, type LogDestination } from './log.js';

/** capture is a LogDestination that keeps what it is given; isTTY as asked. */
function capture(isTTY: boolean): LogDestination & { readonly lines: () => string[] } {
  const chunks: string[] = [];
  return { isTTY, write: (s: string) => chunks.push(s), lines: () => chunks.join('').split('\n').filter((l) => l !== '') };
}

const isConfigError = (e: unknown): boolean => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG';

test('RateLimitedLog: lets perInterval lines through, then counts the rest and reports them', () => {
  let now = 0;
  const lines: { key: string; msg: string; suppressed: number }[] = [];
  const rl = new RateLimitedLog((key, msg, suppressed) => lines.push({ key, msg, suppressed }), 3, 1000, () => now);
  const logged = Array.from({ length: 10 }, () => rl.note('auth', 'bad ICV'));
  assert.deepEqual(logged, [true, true, true, false, false, false, false, false, false, false]);
  assert.equal(lines.length, 3);
  assert.equal(rl.note('replay', 'replayed'), true, 'keys have separate budgets');
  now = 1000;
  assert.equal(rl.note('auth', 'bad ICV'), true);
  assert.deepEqual(lines.at(-2), { key: 'auth', msg: '7 similar messages suppressed', suppressed: 7 });
});

test('logFormatFor and parseLogLevel (numbered cases)', () => {
  const formats: [number, string | undefined, boolean, string][] = [
    [1, undefined, false, 'json'],
    [2, undefined, true, 'human'],
    [3, '', true, 'human'],
    [4, 'auto', false, 'json'],
    [5, 'json', true, 'json'],
    [6, 'human', false, 'human'],
  ];
  for (const [n, setting, tty, want] of formats) assert.equal(logFormatFor(setting, tty), want, `case ${n}`);
  assert.throws(() => logFormatFor('pretty', true), isConfigError, 'case 7: an unknown format is a config error');
  assert.equal(parseLogLevel(undefined), 'info', 'case 8: default info');
  assert.equal(parseLogLevel('DEBUG'), 'debug', 'case 9: case-insensitive');
  assert.throws(() => parseLogLevel('verbose'), isConfigError, 'case 10: an unknown level is a config error');
  assert.throws(() => createLogger('x', { level: 'loud', destination: capture(false) }), isConfigError, 'case 11: createLogger refuses it too');
});

test('createLogger: JSON lines when the destination is not a TTY, with level, time, name and pid', () => {
  const dest = capture(false);
  const log = createLogger('espgate', { level: 'info', destination: dest });
  log.info({ tun: 'eg0', mtu: 1440 }, 'espgate up');
  log.debug('not at info');
  log.warn({ err: new Error('boom') }, 'something failed');
  const lines = dest.lines();
  assert.equal(lines.length, 2, 'debug is filtered out at level info');
  const first = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
  assert.equal(first['level'], 30);
  assert.equal(first['msg'], 'espgate up');
  assert.equal(first['name'], 'espgate');
  assert.equal(first['pid'], process.pid);
  assert.equal(first['mtu'], 1440);
  assert.match(String(first['time']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ISO time');
  const second = JSON.parse(lines[1] ?? '') as { level: number; err: { message: string } };
  assert.equal(second.level, 40);
  assert.equal(second.err.message, 'boom', 'errors are serialized with their message');
});

test('createLogger: human lines on a TTY (and when asked), levels filtered', () => {
  const tty = capture(true);
  const log = createLogger('espgate', { level: 'debug', destination: tty, color: false });
  log.info({ tun: 'eg0', mtu: 1440, mode: 'host' }, 'espgate up');
  log.debug({ key: 'in:replay' }, 'drop inbound: replay');
  log.trace('not at debug');
  const lines = tty.lines();
  assert.equal(lines.length, 2);
  assert.match(lines[0] ?? '', /^\d\d:\d\d:\d\d\.\d{3}Z INFO {2}espgate up {2}tun=eg0 mtu=1440 mode=host$/);
  assert.match(lines[1] ?? '', /^\d\d:\d\d:\d\d\.\d{3}Z DEBUG drop inbound: replay {2}key=in:replay$/);
  const forced = capture(false);
  createLogger('espgate', { format: 'human', destination: forced, color: false }).warn('careful');
  assert.match(forced.lines()[0] ?? '', /^\d\d:\d\d:\d\d\.\d{3}Z WARN {2}careful$/, 'ESPGATE_LOG_FORMAT=human on a pipe');
  const json = capture(true);
  createLogger('espgate', { format: 'json', destination: json }).info('x');
  assert.equal((JSON.parse(json.lines()[0] ?? '') as { msg: string }).msg, 'x', 'ESPGATE_LOG_FORMAT=json on a TTY');
});

test('formatLogLine (numbered cases)', () => {
  const t = '2026-11-22T09:01:46.123Z';
  const cases: [number, string, string][] = [
    [1, JSON.stringify({ level: 30, time: t, pid: 1, name: 'espgate', msg: 'hello' }), '09:01:46.123Z INFO  hello'],
    [2, JSON.stringify({ level: 40, time: t, msg: 'm', peer: 'bob', n: 3, ok: true }), '09:01:46.123Z WARN  m  peer=bob n=3 ok=true'],
    [3, JSON.stringify({ level: 20, time: t, msg: 'm', why: 'two words', list: ['a'] }), '09:01:46.123Z DEBUG m  why="two words" list=["a"]'],
    [4, JSON.stringify({ level: 40, time: t, msg: 'm', err: { type: 'Error', message: 'no', stack: 'Error: no\n    at x' } }), '09:01:46.123Z WARN  m  err=no'],
    [5, JSON.stringify({ level: 50, time: t, msg: 'm', err: { type: 'Error', message: 'no', stack: 'Error: no\n    at x' } }), '09:01:46.123Z ERROR m  err=no\n    Error: no\n        at x'],
    [6, 'not json at all', 'not json at all'],
    [7, '[1,2]', '[1,2]'],
    [8, JSON.stringify({ level: 60, time: 0, msg: 'x' }), '00:00:00.000Z FATAL x'],
  ];
  for (const [n, line, want] of cases) assert.equal(formatLogLine(line), want, `case ${n}`);
  assert.equal(formatLogLine(JSON.stringify({ level: 50, time: t, msg: 'm' }), true), '09:01:46.123Z \x1b[31mERROR\x1b[0m m', 'case 9: colour');
});

test('packetLog: per-packet events only at debug, rate-limited per key', () => {
  let now = 0;
  const atInfo = capture(false);
  const quiet = packetLog(createLogger('espgate', { level: 'info', destination: atInfo }), 3, 1000, () => now);
  assert.equal(quiet.note('in:auth', 'drop inbound: auth'), false, '1: nothing at the default level');
  assert.deepEqual(atInfo.lines(), [], '1b: and nothing written');

  const atDebug = capture(false);
  const pl = packetLog(createLogger('espgate', { level: 'debug', destination: atDebug }), 3, 1000, () => now);
  for (let i = 0; i < 10; i++) pl.note('in:auth', 'drop inbound: auth');
  now = 1000;
  pl.note('in:auth', 'drop inbound: auth');
  const lines = atDebug.lines().map((l) => JSON.parse(l) as { level: number; msg: string; key: string; suppressed?: number });
  assert.equal(lines.length, 5, '2: 3 lines, the suppression note, then the next interval\'s first line');
  assert.ok(lines.every((l) => l.level === 20 && l.key === 'in:auth'), '3: all at debug (20), with their key');
  assert.deepEqual([lines[3]?.msg, lines[3]?.suppressed], ['7 similar messages suppressed', 7], '4: suppressed count reported');
});

test('createLogger: JSON to stdout (not stderr) when stdout is a pipe', () => {
  // A child process, so that the real process.stdout is used: compiled (dist/*.js) or under tsx.
  const self = fileURLToPath(import.meta.url);
  const underTsx = self.endsWith('.ts');
  const mod = new URL(underTsx ? './log.ts' : './log.js', import.meta.url).href;
  const script = `const { createLogger } = await import(${JSON.stringify(mod)}); createLogger().info({ a: 1 }, 'to stdout'); createLogger().debug('hidden');`;
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['ESPGATE_LOG_LEVEL'];
  delete env['ESPGATE_LOG_FORMAT'];
  const r = spawnSync(process.execPath, [...(underTsx ? ['--import', 'tsx'] : []), '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, env });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'nothing on stderr');
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, 'one line: debug is off by default');
  const o = JSON.parse(lines[0] ?? '') as { level: number; msg: string; a: number };
  assert.deepEqual([o.level, o.msg, o.a], [30, 'to stdout', 1]);
});
