/**
 * netns.ts: helpers for root tests in network namespaces of their own.
 *
 * Every namespace is named egtnf<pid><suffix> and deleted when the test process exits (the
 * equivalent of a shell `trap cleanup EXIT`), so a failed test leaves nothing behind. Nothing
 * here touches the root namespace's routes, addresses, sysctls or rules.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { normalizeSave } from '../../src/netfilter/inspect.js';
import { spawnRunner } from '../../src/netfilter/runner.js';
import type { Runner } from '../../src/netfilter/runner.js';

const CMD_TIMEOUT_MS = 20_000;
const created = new Set<string>();
process.on('exit', () => {
  for (const n of created) spawnSync('ip', ['netns', 'del', n], { timeout: CMD_TIMEOUT_MS });
});

function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

/** rootSkipReason returns why namespace tests cannot run here, or undefined when they can. */
export function rootSkipReason(tools: readonly string[]): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (run the suite as root)';
  for (const t of ['ip', ...tools]) if (!have(t)) return `${t} is not installed`;
  const probe = `egtnf${process.pid}probe`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS });
  if (r.status !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe], { timeout: CMD_TIMEOUT_MS });
  return undefined;
}

/** A ShResult is the outcome of a command that may fail. */
export interface ShResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A Netns is one network namespace created for a test. */
export class Netns {
  readonly name: string;

  constructor(suffix: string) {
    this.name = `egtnf${process.pid}${suffix}`;
    execFileSync('ip', ['netns', 'add', this.name], { timeout: CMD_TIMEOUT_MS });
    created.add(this.name);
    this.sh('ip link set lo up');
  }

  /** sh runs a shell command inside the namespace and returns stdout; it throws on failure. */
  sh(cmd: string): string {
    const r = this.trySh(cmd);
    if (r.code !== 0) throw new Error(`[${this.name}] ${cmd}: exit ${String(r.code)}: ${r.stderr}`);
    return r.stdout;
  }

  /** trySh runs a shell command inside the namespace and returns whatever happened. */
  trySh(cmd: string): ShResult {
    const r = spawnSync('ip', ['netns', 'exec', this.name, 'bash', '-c', cmd], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** runner returns a Runner whose tools run inside the namespace. */
  runner(): Runner {
    return spawnRunner({ prefix: ['ip', 'netns', 'exec', this.name] });
  }

  /** spawn starts a long-running process inside the namespace. */
  spawn(cmd: string, args: readonly string[]): ChildProcessWithoutNullStreams {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /** close deletes the namespace (and with it its veths and TUNs). */
  close(): void {
    spawnSync('ip', ['netns', 'del', this.name], { timeout: CMD_TIMEOUT_MS });
    created.delete(this.name);
  }

  /**
   * snapshot returns the namespace's whole netfilter state as text: iptables-save and
   * ip6tables-save (comments and counters removed), `nft list ruleset` (counters zeroed) and
   * `ipset save` (random initval removed, lines sorted). Equal snapshots: equal states.
   */
  snapshot(): string {
    const nft = this.sh('nft list ruleset 2>/dev/null').replace(/packets \d+ bytes \d+/g, 'packets 0 bytes 0');
    const ipset = this.sh('ipset save').split('\n').map((l) => l.replace(/ initval 0x[0-9a-f]+/, '')).sort().join('\n');
    return [
      `## iptables-save\n${normalizeSave(this.sh('iptables-save'))}`,
      `## ip6tables-save\n${normalizeSave(this.sh('ip6tables-save'))}`,
      `## nft list ruleset\n${nft}`,
      `## ipset save\n${ipset}`,
    ].join('\n');
  }
}

/** sleep pauses a bounded loop. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A Capture is tcpdump running in a namespace, printing one line per packet. stop() sends a
 * marker packet (through `sendMarker`), waits until the marker shows up, so that every packet
 * sent before it has been seen too, then stops tcpdump and returns the lines.
 */
export class Capture {
  private readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private err = '';
  private exited = false;

  private constructor(ns: Netns, iface: string, filter: string) {
    this.child = ns.spawn('tcpdump', ['-l', '-n', '-i', iface, filter]);
    this.child.stdout.on('data', (b: Buffer) => { this.out += b.toString('utf8'); });
    this.child.stderr.on('data', (b: Buffer) => { this.err += b.toString('utf8'); });
    this.child.on('exit', () => { this.exited = true; });
  }

  /** start starts tcpdump and waits (at most 10 s) until it listens. */
  static async start(ns: Netns, iface: string, filter: string): Promise<Capture> {
    const c = new Capture(ns, iface, filter);
    for (let i = 0; i < 200 && !c.err.includes('listening on'); i++) {
      if (c.exited) throw new Error(`tcpdump exited: ${c.err}`);
      await sleep(50);
    }
    if (!c.err.includes('listening on')) {
      c.kill();
      throw new Error(`tcpdump did not start: ${c.err}`);
    }
    return c;
  }

  /** stop sends the marker, waits (at most 10 s) to see it, stops tcpdump and returns the packet lines. */
  async stop(sendMarker: () => void, marker: RegExp): Promise<string[]> {
    for (let i = 0; i < 20 && !marker.test(this.out); i++) {
      sendMarker();
      for (let j = 0; j < 10 && !marker.test(this.out); j++) await sleep(50);
    }
    this.kill();
    for (let i = 0; i < 100 && !this.exited; i++) await sleep(50);
    if (!marker.test(this.out)) throw new Error(`capture never saw the marker: ${this.out}`);
    return this.out.split('\n').filter((l) => l.trim() !== '');
  }

  private kill(): void {
    if (!this.exited && this.child.pid !== undefined) process.kill(this.child.pid, 'SIGTERM');
  }
}
