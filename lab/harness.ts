/**
 * harness.ts: helpers for namespace tests (test/lab/) that drive lab/lab.sh from TypeScript.
 * Addresses and peers come from topology.ts (`run.topology`), never from parsing shell output.
 *
 *     const reason = labUnavailable();            // pass as { skip: reason } to node:test
 *     const run = labUp('lan');                   // owner = this process; unique run id
 *     try {
 *       labConfigs(run);
 *       const d = labSpawn(run, 'alice', ['node', cliPath(), 'up', '-c', configPath(run.dir, 'alice')]);
 *       ...
 *       assert.equal(labExec(run, 'alice', ['ping', '-c1', '-W2', addressOf(run.topology, 'bob', 4)]).status, 0);
 *     } finally {
 *       await stopProcess(d);                     // by pid: SIGTERM, bounded wait, SIGKILL
 *       labDown(run);
 *     }
 *
 * Every call is bounded in time. Runs are owned by this process (EGL_OWNER_PID), so a run left
 * behind by a crashed test is removed by `lab/lab.sh down --all-stale`.
 */

import type { ChildProcess, SpawnSyncReturns } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressFamily, Topology, TopologyName } from './topology.js';
import { buildTopology, namespaceName } from './topology.js';
import type { Keying } from './gen-configs.js';
import { DEFAULT_KEYING } from './gen-configs.js';
import type { Inbound } from '../src/netfilter/model.js';

/** DEFAULT_TIMEOUT_MS bounds every synchronous lab.sh call. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** STOP_WAIT_MS is how long stopProcess waits after SIGTERM before SIGKILL. */
export const STOP_WAIT_MS = 5_000;

/** LabRun is one running topology. */
export interface LabRun {
  readonly run: string;
  readonly dir: string;
  readonly topology: Topology;
}

/** projectRoot returns the directory holding package.json above this file (works from lab/ and dist/lab/). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error('package.json not found above lab/harness');
}

/** labScript returns the path of lab/lab.sh. */
export function labScript(): string {
  return join(projectRoot(), 'lab', 'lab.sh');
}

/** cliPath returns the path of the built espgate CLI (dist/src/cli/main.js). */
export function cliPath(): string {
  return join(projectRoot(), 'dist', 'src', 'cli', 'main.js');
}

const REQUIRED_TOOLS = ['ip', 'tcpdump', 'iptables', 'ping'];

/** labUnavailable returns why namespace tests cannot run here (not root, a missing tool), or undefined when they can. */
export function labUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  for (const tool of REQUIRED_TOOLS) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore', timeout: 5_000 });
    if (r.status !== 0) return `missing tool ${tool} (run lab/setup.sh)`;
  }
  return undefined;
}

let runCounter = 0;

/** newRunId returns a run id unique to this process: "t" + pid (base 36) + a counter. */
export function newRunId(): string {
  runCounter++;
  return `t${process.pid.toString(36)}${runCounter.toString(36)}`.slice(0, 12);
}

function labEnv(): NodeJS.ProcessEnv {
  return { ...process.env, EGL_OWNER_PID: String(process.pid) };
}

/** lab runs lab/lab.sh synchronously and throws Error (with its stderr) when it fails. */
export function lab(args: readonly string[], timeoutMs = DEFAULT_TIMEOUT_MS): string {
  const r = spawnSync('bash', [labScript(), ...args], { encoding: 'utf8', timeout: timeoutMs, env: labEnv() });
  if (r.status !== 0) {
    throw new Error(`lab.sh ${args.join(' ')} failed (status ${r.status ?? r.signal ?? '?'}): ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** labUp brings a topology up under a fresh (or given) run id and returns it. */
export function labUp(name: TopologyName, options: { run?: string; clients?: number } = {}): LabRun {
  const run = options.run ?? newRunId();
  const args = ['up', name, '--run', run, '--owner', String(process.pid)];
  if (options.clients !== undefined) args.push('--clients', String(options.clients));
  lab(args);
  const dir = lab(['dir', '--run', run]).trim();
  const topology = buildTopology(name, options.clients === undefined ? {} : { clients: options.clients });
  return { run, dir, topology };
}

/**
 * labConfigs writes configs/<host>.yaml and keys.uat for the run: IKEv2 peers by default
 * (DEFAULT_KEYING; keys.uat then has no records), static SAs when asked for (tests that need
 * known keys or no key exchange, benchmarks of the data path alone).
 */
export function labConfigs(run: LabRun, outer: AddressFamily = 4, keying: Keying = DEFAULT_KEYING, inbound?: Inbound): void {
  lab(['configs', '--run', run.run, '--outer', String(outer), keying === 'ike' ? '--ike' : '--static', ...(inbound === undefined ? [] : ['--inbound', inbound])]);
}

/** labDown stops everything in the run's namespaces and deletes them (and, with purge, the run dir). Never throws. */
export function labDown(run: LabRun, purge = true): void {
  const r = spawnSync('bash', [labScript(), 'down', '--run', run.run, ...(purge ? ['--purge'] : [])], {
    encoding: 'utf8',
    timeout: DEFAULT_TIMEOUT_MS,
    env: labEnv(),
  });
  if (r.status !== 0) process.stderr.write(`lab.sh down --run ${run.run}: ${r.stderr}`);
}

/** namespaceOf returns a host's namespace name in the run. */
export function namespaceOf(run: LabRun, host: string): string {
  return namespaceName(run.run, host);
}

/** labExec runs a command in a host's namespace synchronously (bounded); the caller checks status. */
export function labExec(
  run: LabRun,
  host: string,
  argv: readonly string[],
  options: { timeoutMs?: number; input?: string } = {},
): SpawnSyncReturns<string> {
  return spawnSync('ip', ['netns', 'exec', namespaceOf(run, host), ...argv], {
    encoding: 'utf8',
    timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    ...(options.input === undefined ? {} : { input: options.input }),
  });
}

/**
 * labSpawn starts a long-running command in a host's namespace (a daemon, a server). Output goes
 * to `logFile` when given (e.g. join(run.dir, 'logs', 'alice.log')), else is ignored. The
 * returned process's pid is the command's own (ip netns exec execs it).
 */
export function labSpawn(run: LabRun, host: string, argv: readonly string[], logFile?: string): ChildProcess {
  let fd: number | undefined;
  if (logFile !== undefined) fd = openSync(logFile, 'a');
  try {
    return spawn('ip', ['netns', 'exec', namespaceOf(run, host), ...argv], {
      stdio: ['ignore', fd ?? 'ignore', fd ?? 'ignore'],
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** stopProcess sends SIGTERM, waits up to waitMs for exit, then SIGKILL; resolves with the exit code or signal. */
export function stopProcess(child: ChildProcess, waitMs = STOP_WAIT_MS): Promise<number | NodeJS.Signals | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), waitMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
    child.kill('SIGTERM');
  });
}

/** waitFor polls `probe` every intervalMs until it returns true or `tries` run out; resolves with the outcome. */
export async function waitFor(probe: () => boolean, tries = 50, intervalMs = 200): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (probe()) return true;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return false;
}

/** Capture is a running switch capture. */
export interface Capture {
  readonly file: string;
  /** stop ends the capture (SIGTERM, bounded) and resolves with the pcap path. */
  stop(): Promise<string>;
}

/**
 * startCapture starts `lab.sh capture` on a segment's bridge (default: the topology's capture
 * segment) and resolves once tcpdump listens. The capture ends by itself after maxSeconds.
 */
export async function startCapture(run: LabRun, fileName: string, options: { segment?: string; maxSeconds?: number } = {}): Promise<Capture> {
  const args = [labScript(), 'capture', '--run', run.run];
  if (options.segment !== undefined) args.push('--segment', options.segment);
  args.push(fileName, String(options.maxSeconds ?? 120));
  const child = spawn('bash', args, { stdio: ['ignore', 'ignore', 'pipe'], env: labEnv() });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr += d;
  });
  const listening = await waitFor(() => stderr.includes('listening on') || child.exitCode !== null, 50, 100);
  if (!listening || child.exitCode !== null) {
    child.kill('SIGKILL');
    throw new Error(`capture did not start: ${stderr.trim()}`);
  }
  const file = fileName.includes('/') ? fileName : join(run.dir, 'pcap', fileName);
  return {
    file,
    stop: async () => {
      await stopProcess(child);
      return file;
    },
  };
}

/** decode runs `lab.sh decode` (tshark with the run's keys.uat) and returns its stdout. */
export function decode(run: LabRun, pcap: string, tsharkArgs: readonly string[] = []): string {
  return lab(['decode', '--run', run.run, pcap, '--', ...tsharkArgs], 60_000);
}

/** inject sends ESP sealed by lab/esp-probe.ts from host to peer (see `lab.sh inject`). */
export function inject(run: LabRun, host: string, peer: string, probeArgs: readonly string[] = []): void {
  lab(['inject', '--run', run.run, host, peer, '--', ...probeArgs]);
}
