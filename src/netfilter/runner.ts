/**
 * runner.ts: the one place the installer starts programs. A Runner spawns a tool (no shell),
 * writes its stdin, and collects exit code and output within a bounded time. Tests pass a fake.
 */
import { spawn } from 'node:child_process';

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
