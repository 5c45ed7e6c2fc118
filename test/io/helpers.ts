/**
 * test/io/helpers.ts: network-namespace plumbing for the I/O edge tests.
 *
 * Each test file creates its own namespaces named egtio<pid><letter>, runs fixture scripts
 * inside them with `ip netns exec` (a child node process, so the test runner itself never
 * changes namespace), and deletes them in after() and, as a trap, on process exit.
 * Fixtures print one JSON object per line on stdout; the last line is the result.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** rootSkipReason is why a namespace test cannot run here, or undefined when it can. */
export function rootSkipReason(tools: readonly string[] = ['ip']): string | undefined {
  if (process.platform !== 'linux') return 'namespace tests need Linux';
  if (process.getuid?.() !== 0) return 'namespace tests need root (network namespaces, TUN, raw sockets, NFQUEUE): run as root';
  for (const t of tools) {
    if (!hasTool(t)) return `namespace tests need ${t}(8) on PATH`;
  }
  return undefined;
}

/** hasTool reports whether an executable is on PATH. */
export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

const created = new Set<string>();
let trapInstalled = false;

/** sh runs a command (argv, no shell) and throws with its stderr when it fails. */
export function sh(argv: readonly string[], timeoutMs = 10_000): string {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('empty command');
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}

/** Netns is a network namespace this test process created. */
export class Netns {
  readonly name: string;
  constructor(suffix: string) {
    this.name = `egtio${process.pid}${suffix}`;
    if (!trapInstalled) {
      trapInstalled = true;
      process.on('exit', () => {
        for (const n of created) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore', timeout: 5000 });
      });
    }
    sh(['ip', 'netns', 'add', this.name]);
    created.add(this.name);
    this.run(['ip', 'link', 'set', 'lo', 'up']);
    // No IPv6 duplicate address detection: addresses are usable at once (no 1-2 s waits).
    this.run(['sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  }

  /** run runs argv inside the namespace. */
  run(argv: readonly string[], timeoutMs = 10_000): string {
    return sh(['ip', 'netns', 'exec', this.name, ...argv], timeoutMs);
  }

  /** del deletes the namespace (and the interfaces in it). Idempotent. */
  del(): void {
    if (!created.has(this.name)) return;
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore', timeout: 5000 });
    created.delete(this.name);
  }
}

/** vethBetween creates a veth pair with one end in each namespace (never in the root one). */
export function vethBetween(a: Netns, aIf: string, b: Netns, bIf: string, mtu = 1500): void {
  sh(['ip', 'link', 'add', aIf, 'netns', a.name, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name, 'mtu', String(mtu)]);
  a.run(['ip', 'link', 'set', aIf, 'up']);
  b.run(['ip', 'link', 'set', bIf, 'up']);
}

/**
 * addressedPair makes namespaces `<tag>a` and `<tag>b` joined by a veth (`egt<tag>a`, `egt<tag>b`)
 * and gives the ends the IPv4 (/24) and IPv6 (/64, no DAD) addresses [a, b].
 */
export function addressedPair(tag: string, v4: readonly [string, string], v6: readonly [string, string]): { a: Netns; b: Netns } {
  const a = new Netns(`${tag}a`);
  const b = new Netns(`${tag}b`);
  vethBetween(a, `egt${tag}a`, b, `egt${tag}b`);
  for (const [ns, i] of [[a, 0], [b, 1]] as const) {
    ns.run(['ip', 'addr', 'add', `${v4[i]}/24`, 'dev', `egt${tag}${i === 0 ? 'a' : 'b'}`]);
    ns.run(['ip', 'addr', 'add', `${v6[i]}/64`, 'dev', `egt${tag}${i === 0 ? 'a' : 'b'}`, 'nodad']);
  }
  return { a, b };
}

/** fixtureCommand returns node argv for a fixture next to the calling test (works from src .ts under tsx and compiled .js). */
export function fixtureCommand(testUrl: string, fixture: string): string[] {
  const isTs = testUrl.endsWith('.ts');
  const path = fileURLToPath(new URL(`./fixtures/${fixture}${isTs ? '.ts' : '.js'}`, testUrl));
  if (!existsSync(path)) throw new Error(`fixture ${path} missing`);
  return isTs ? [process.execPath, '--import', 'tsx', path] : [process.execPath, path];
}

/** FixtureResult is what a fixture printed: every JSON line, and stderr for messages. */
export interface FixtureResult {
  readonly lines: Record<string, unknown>[];
  readonly last: Record<string, unknown>;
  readonly stderr: string;
  readonly status: number | null;
}

function parseLines(out: string): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const l of out.split('\n')) {
    if (!l.startsWith('{')) continue;
    lines.push(JSON.parse(l) as Record<string, unknown>);
  }
  return lines;
}

/** runFixture runs a fixture inside ns to completion (bounded by timeoutMs) and parses its output. */
export function runFixture(ns: Netns, testUrl: string, fixture: string, args: readonly string[] = [], timeoutMs = 30_000): FixtureResult {
  const argv = ['ip', 'netns', 'exec', ns.name, ...fixtureCommand(testUrl, fixture), ...args];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
  const lines = parseLines(r.stdout);
  const last = lines[lines.length - 1] ?? {};
  if (r.status !== 0) throw new Error(`fixture ${fixture} exited ${r.status ?? r.signal}: ${r.stderr}\n${r.stdout}`);
  return { lines, last, stderr: r.stderr, status: r.status };
}

/** BackgroundFixture is a fixture started in a namespace that reports readiness, then a result. */
export class BackgroundFixture {
  readonly #child: ChildProcess;
  #out = '';
  #err = '';
  readonly #exited: Promise<number | null>;

  constructor(ns: Netns, testUrl: string, fixture: string, args: readonly string[] = []) {
    const argv = ['ip', 'netns', 'exec', ns.name, ...fixtureCommand(testUrl, fixture), ...args];
    this.#child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stdout?.setEncoding('utf8').on('data', (d: string) => { this.#out += d; });
    this.#child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.#err += d; });
    this.#exited = new Promise((resolve) => this.#child.on('exit', (code) => resolve(code)));
  }

  /** waitFor resolves with the first JSON line having key, or rejects after timeoutMs. */
  async waitFor(key: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = parseLines(this.#out).find((l) => key in l);
      if (hit !== undefined) return hit;
      if (this.#child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`fixture never printed ${key}: stderr=${this.#err} stdout=${this.#out}`);
  }

  /** finish writes a line to the fixture's stdin (its cue to report and exit) and returns its last line. */
  async finish(timeoutMs = 15_000): Promise<Record<string, unknown>> {
    this.#child.stdin?.end('done\n');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs);
    const code = await this.#exited;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`fixture exited ${code}: ${this.#err}\n${this.#out}`);
    const lines = parseLines(this.#out);
    return lines[lines.length - 1] ?? {};
  }

  /** kill ends the fixture (cleanup). */
  kill(): void {
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL');
  }
}
