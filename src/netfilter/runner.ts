/**
 * runner.ts: the one place the installer starts programs. A Runner spawns a tool (no shell),
 * writes its stdin, and collects exit code and output within a bounded time. Tests pass a fake.
 *
 * Two implementations with one behaviour (runner.test.ts runs the same cases on both):
 * spawnRunner (child_process.spawn) and vforkRunner (posix_spawnp in espgate's sys addon). The
 * daemon uses the second: its periodic gate check starts nine programs every 10 s, and each
 * fork(2) of a ~100 MB Node process stopped the event loop for 1-2 ms and left copy-on-write
 * faults behind, which showed up as multi-millisecond ping outliers through the tunnel.
 */
import { spawn } from 'node:child_process';
import { Socket } from 'node:net';

import { loadAddon } from '../io/native-addon.js';

/** A RunResult is what a finished (or killed, or never started) tool produced. */
export interface RunResult {
  /** code is the exit code; null when killed by a signal or never started. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** missing is true when the binary does not exist (spawn ENOENT). */
  readonly missing: boolean;
  /** timedOut is true when the tool was killed because it exceeded its time limit. */
  readonly timedOut: boolean;
}

/** A Runner runs `file args...` with optional stdin. It never rejects: failures are in the result. */
export interface Runner {
  run(file: string, args: readonly string[], stdin: string | undefined, timeoutMs: number): Promise<RunResult>;
}

/** SpawnRunnerOptions: `prefix` is prepended to every command (tests use ["ip", "netns", "exec", NS]). */
export interface SpawnRunnerOptions {
  readonly prefix?: readonly string[];
  /** maxOutputBytes caps stdout and stderr each; output past it is dropped. Default 64 MiB. */
  readonly maxOutputBytes?: number;
}

const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024;

/**
 * spawnRunner returns a Runner over child_process.spawn. Tools run with LC_ALL=C so that
 * their messages are stable. A tool that outlives its timeout is killed with SIGKILL.
 */
export function spawnRunner(opts: SpawnRunnerOptions = {}): Runner {
  const prefix = opts.prefix ?? [];
  const max = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  return {
    run(file, args, stdin, timeoutMs) {
      const [cmd, ...rest] = [...prefix, file, ...args];
      return new Promise<RunResult>((resolve) => {
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let outLen = 0;
        let errLen = 0;
        let timedOut = false;
        let settled = false;
        const child = spawn(cmd ?? file, rest, {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: { ...process.env, LC_ALL: 'C' },
        });
        const timer = setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, timeoutMs);
        const finish = (r: RunResult): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(r);
        };
        child.stdout.on('data', (b: Buffer) => {
          if (outLen < max) { out.push(b); outLen += b.length; }
        });
        child.stderr.on('data', (b: Buffer) => {
          if (errLen < max) { err.push(b); errLen += b.length; }
        });
        // EPIPE when the tool exits before reading all of stdin: its exit status tells the story.
        child.stdin.on('error', () => undefined);
        child.on('error', (e: NodeJS.ErrnoException) => {
          finish({ code: null, stdout: '', stderr: e.message, missing: e.code === 'ENOENT', timedOut: false });
        });
        child.on('close', (code) => {
          finish({
            code,
            stdout: Buffer.concat(out).toString('utf8'),
            stderr: Buffer.concat(err).toString('utf8'),
            missing: false,
            timedOut,
          });
        });
        child.stdin.end(stdin ?? '');
      });
    },
  };
}

/** The sys addon's spawn and waitpid (src/io/native/sys.cc). */
interface SpawnAddon {
  spawn(file: string, args: readonly string[], env: readonly string[]): number | [number, number, number, number];
  waitpid(pid: number): number;
}

const WAIT_RUNNING = -1;
/** REAP_POLL_MS: how often a child whose output has ended is checked for its exit status. */
const REAP_POLL_MS = 1;

/**
 * vforkRunner returns a Runner whose programs start through posix_spawnp (glibc: clone with
 * CLONE_VM | CLONE_VFORK, no page-table copy), or spawnRunner(opts) when the addon is not built.
 * Same contract: LC_ALL=C, no shell, SIGKILL past the time limit, output capped, never rejects.
 */
export function vforkRunner(opts: SpawnRunnerOptions = {}): Runner {
  const addon = loadAddon<SpawnAddon>('espgate_sys').addon;
  if (addon === undefined || typeof addon.spawn !== 'function') return spawnRunner(opts);
  const prefix = opts.prefix ?? [];
  const max = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  return {
    run(file, args, stdin, timeoutMs) {
      const [cmd, ...rest] = [...prefix, file, ...args];
      const env = Object.entries({ ...process.env, LC_ALL: 'C' }).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
      const started = addon.spawn(cmd ?? file, rest, env);
      if (typeof started === 'number') {
        const missing = started === -2; // ENOENT
        return Promise.resolve({ code: null, stdout: '', stderr: `spawn ${cmd ?? file}: errno ${-started}`, missing, timedOut: false });
      }
      const [pid, inFd, outFd, errFd] = started;
      return new Promise<RunResult>((resolve) => {
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let outLen = 0;
        let errLen = 0;
        let open = 2;
        let timedOut = false;
        let code: number | null | undefined;
        const deadline = Date.now() + timeoutMs;
        const kill = (): void => {
          try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
        };
        const timer = setTimeout(() => { timedOut = true; kill(); }, timeoutMs);
        const reap = (): void => {
          const w = addon.waitpid(pid);
          if (w === WAIT_RUNNING) {
            // Output ended but the program has not exited yet: bounded by its time limit (+1 s to reap after SIGKILL).
            if (Date.now() > deadline + 1000) code = null;
            else {
              setTimeout(reap, REAP_POLL_MS);
              return;
            }
          } else code = w >= 0 && w < 256 ? w : null;
          clearTimeout(timer);
          resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), missing: false, timedOut });
        };
        const ended = (): void => {
          open--;
          if (open === 0) reap();
        };
        const so = new Socket({ fd: outFd, readable: true, writable: false });
        const se = new Socket({ fd: errFd, readable: true, writable: false });
        so.on('data', (b: Buffer) => { if (outLen < max) { out.push(b); outLen += b.length; } });
        se.on('data', (b: Buffer) => { if (errLen < max) { err.push(b); errLen += b.length; } });
        so.on('error', () => undefined);
        se.on('error', () => undefined);
        so.on('close', ended);
        se.on('close', ended);
        const si = new Socket({ fd: inFd, readable: false, writable: true });
        // EPIPE when the tool exits before reading all of stdin: its exit status tells the story.
        si.on('error', () => undefined);
        si.end(stdin ?? '');
      });
    },
  };
}
