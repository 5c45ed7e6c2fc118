/**
 * bench/ab-bench.ts: before/after of a data-path switch in one window. The shared 2-core machine
 * swings from load 0.5 to 13 within minutes (docs/benchmarks.md), so two `npm run bench` runs
 * minutes apart do not compare; this alternates the variants run by run (A B B A A B ...), each
 * a whole `dist/bench/lab-bench.js` run with REPS=1 and the variant's environment (the daemons
 * inherit it), and prints medians per variant side by side, with the daemons' CPU and the load.
 *
 *   VARIANTS='batch-off:ESPGATE_SEND_BATCH=0;batch-on:ESPGATE_SEND_BATCH=1' ROUNDS=3 \
 *     KINDS=tcp1,udp64,udpbig DUR=10 node dist/bench/ab-bench.js
 *
 * VARIANTS: `name:VAR=value,VAR=value;name:...` (two or more). ROUNDS: runs per variant
 * (default 3). KINDS, DUR, UDP_BIG pass through to lab-bench. "Mbit/s per core" is the inner
 * throughput over the two daemons' CPU (A+B, 1.0 = one core busy): the figure that survives load
 * best. Root; `npx tsc -p tsconfig.json` first. Bounded: each run has a timeout.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { fmt, load1, median, renderTable } from './measure.js';

/** Variant is one named environment for the daemons. */
interface Variant {
  readonly name: string;
  readonly env: Readonly<Record<string, string>>;
}

/** Sample is the part of a lab-bench JSON sample this reads. */
interface Sample {
  readonly kind: string;
  readonly load1: number;
  readonly rttAvgMs?: number;
  readonly iperf?: { readonly gbps: number | null; readonly rxKpps: number | null; readonly rxMbps: number | null };
  readonly cpuPct?: readonly [number, number];
}

const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const DUR = Number(process.env['DUR'] ?? 10);
/** RUN_SLACK_S is what a lab-bench run takes besides its iperf3 tests (lab up/down, daemons, ping). */
const RUN_SLACK_S = 90;

/** parseVariants reads VARIANTS (see the file comment). */
export function parseVariants(text: string): Variant[] {
  return text.split(';').filter((v) => v.trim() !== '').map((v) => {
    const [name, rest = ''] = v.split(':', 2);
    const env: Record<string, string> = {};
    for (const kv of rest.split(',').filter((x) => x !== '')) {
      const eq = kv.indexOf('=');
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return { name: (name ?? '').trim(), env };
  });
}

function runOnce(v: Variant, kinds: number): Sample[] {
  const script = join(import.meta.dirname, 'lab-bench.js');
  const env: Record<string, string | undefined> = { ...process.env, ...v.env, REPS: '1', DUR: String(DUR) };
  delete env['OUT'];
  const r = spawnSync(process.execPath, [script], {
    env,
    encoding: 'utf8',
    timeout: (DUR * kinds + RUN_SLACK_S) * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('JSON '));
  if (line === undefined) {
    console.error(`  ${v.name}: lab-bench gave no result (status ${r.status}): ${r.stderr.slice(-400)}`);
    return [];
  }
  return (JSON.parse(line.slice(5)) as { samples: Sample[] }).samples;
}

function main(): void {
  const variants = parseVariants(process.env['VARIANTS'] ?? 'batch-off:ESPGATE_SEND_BATCH=0;batch-on:ESPGATE_SEND_BATCH=1');
  if (variants.length < 2) throw new Error('VARIANTS needs two or more variants');
  const kinds = (process.env['KINDS'] ?? 'tcp1,tcp4,udp64,udpbig').split(',').filter((k) => k !== '');
  const got = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
  console.log(`ab-bench: ${variants.map((v) => `${v.name} {${Object.entries(v.env).map(([k, x]) => `${k}=${x}`).join(' ')}}`).join(' vs ')}; rounds=${ROUNDS} dur=${DUR}s kinds=${kinds.join(',')}; ${new Date().toISOString()}`);
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) {
      console.error(`  round ${round + 1}/${ROUNDS} ${v.name} (load1 ${fmt(load1(), 2)})`);
      got.get(v.name)?.push(...runOnce(v, kinds.length));
    }
  }
  const rows: string[][] = [['figure', ...variants.flatMap((v) => [`${v.name}: median (each)`, `${v.name}: CPU % A+B`, `${v.name}: Mbit/s per core`, `${v.name}: load1`])]];
  const loads = (xs: readonly Sample[]): string => xs.map((s) => fmt(s.load1, 1)).join(' ');
  const ping = (name: string): Sample[] => (got.get(name) ?? []).filter((s) => s.kind === 'ping');
  rows.push(['ping RTT ms', ...variants.flatMap((v) => {
    const xs = ping(v.name);
    return [`${fmt(median(xs.map((s) => s.rttAvgMs ?? NaN)), 3)} (${xs.map((s) => fmt(s.rttAvgMs ?? NaN, 2)).join(' ')})`, '-', '-', loads(xs)];
  })]);
  for (const kind of kinds) {
    const value = (s: Sample): number => (kind.startsWith('udp') ? (kind === 'udp64' ? s.iperf?.rxKpps : s.iperf?.rxMbps) : (s.iperf?.gbps ?? NaN) * 1000) ?? NaN;
    const unit = kind === 'udp64' ? 'rx kpps' : 'Mbit/s';
    rows.push([`${kind} ${unit}`, ...variants.flatMap((v) => {
      const xs = (got.get(v.name) ?? []).filter((s) => s.kind === kind);
      const cpu = (s: Sample): number => (s.cpuPct?.[0] ?? NaN) + (s.cpuPct?.[1] ?? NaN);
      const mbps = (s: Sample): number => (kind === 'udp64' ? s.iperf?.rxMbps ?? NaN : kind === 'udpbig' ? s.iperf?.rxMbps ?? NaN : (s.iperf?.gbps ?? NaN) * 1000);
      return [
        `${fmt(median(xs.map(value)), 1)} (${xs.map((s) => fmt(value(s), 1)).join(' ')})`,
        fmt(median(xs.map(cpu)), 0),
        fmt(median(xs.map((s) => mbps(s) / (cpu(s) / 100))), 0),
        loads(xs),
      ];
    })]);
  }
  console.log(renderTable(rows));
  console.log(`\nJSON ${JSON.stringify({ bench: 'ab-bench', variants, rounds: ROUNDS, durS: DUR, kinds, samples: Object.fromEntries(got) })}`);
}

main();
