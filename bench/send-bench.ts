/**
 * bench/send-bench.ts: raw ESP send cost, per packet, of
 *   (a) npm raw-socket sendto per packet   (src/io/rawsock.ts, mode 'sync')
 *   (b) native send per packet              (src/io/raw-native.ts send)
 *   (c) native sendBatch of 64              (src/io/raw-native.ts sendBatch: one sendmmsg)
 * with 1400-byte ESP payloads over IPv4 to a peer in a namespace pair (root):
 *
 *   ┌ egtp<pid>a ──────────┐  veth  ┌ egtp<pid>b ──────────┐
 *   │ egtpa 198.18.0.1/24  ├────────┤ egtpb 198.18.0.2/24  │   (packets are dropped there)
 *   └──────────────────────┘        └──────────────────────┘
 *
 *   node --import tsx bench/send-bench.ts [packets=200000]
 * Prints kpps (wall) and CPU µs/packet (user+sys of this process) per case.
 */
import { spawnSync } from 'node:child_process';

import { openNativeEspSender } from '../src/io/raw-native.js';
import { openEspSender as openNpmEspSender } from '../src/io/rawsock.js';
import type { EspSender } from '../src/io/types.js';

const SIZE = 1400;
const BATCH = 64;
const DST = '198.18.0.2';

function sh(argv: readonly string[]): void {
  const r = spawnSync(argv[0] ?? '', argv.slice(1), { stdio: 'inherit', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed`);
}

interface Row { readonly name: string; readonly kpps: number; readonly cpuUsPerPkt: number; readonly failed: number }

function measure(name: string, packets: number, run: (n: number) => number): Row {
  run(Math.min(packets, 10_000)); // warm-up
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const failed = run(packets);
  const ns = Number(process.hrtime.bigint() - t0);
  const c = process.cpuUsage(c0);
  return { name, kpps: packets / (ns / 1e6), cpuUsPerPkt: (c.user + c.system) / packets, failed };
}

function inner(packets: number): void {
  const buf = Buffer.alloc(SIZE * BATCH, 0x5a);
  for (let i = 0; i < BATCH; i++) buf.writeUInt32BE(0x0a0b0c0d, i * SIZE);
  const perPacket = (s: EspSender) => (n: number): number => {
    let failed = 0;
    for (let i = 0; i < n; i++) if (!s.send(4, DST, buf, (i % BATCH) * SIZE, SIZE)) failed++;
    return failed;
  };
  const npm = openNpmEspSender({ families: [4] });
  const native = openNativeEspSender({ families: [4] });
  const dsts = new Array<string>(BATCH).fill(DST);
  const bufs = new Array<Buffer>(BATCH).fill(buf);
  const offsets = Uint32Array.from({ length: BATCH }, (_, i) => i * SIZE);
  const lengths = new Uint32Array(BATCH).fill(SIZE);
  const fails = new Uint8Array(BATCH);
  const rows = [
    measure('npm raw-socket sendto', packets, perPacket(npm)),
    measure('native send', packets, perPacket(native)),
    measure(`native sendBatch ${BATCH}`, packets, (n) => {
      let failed = 0;
      for (let i = 0; i < n; i += BATCH) failed += BATCH - native.sendBatch(4, dsts, bufs, offsets, lengths, BATCH, fails);
      return failed;
    }),
  ];
  npm.close();
  native.close();
  console.log(JSON.stringify({ rows }));
}

function outer(packets: number): void {
  const a = `egtp${process.pid}a`;
  const b = `egtp${process.pid}b`;
  const cleanup = (): void => {
    for (const n of [a, b]) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore', timeout: 5000 });
  };
  process.on('exit', cleanup);
  sh(['ip', 'netns', 'add', a]);
  sh(['ip', 'netns', 'add', b]);
  sh(['ip', 'link', 'add', 'egtpa', 'netns', a, 'type', 'veth', 'peer', 'name', 'egtpb', 'netns', b]);
  sh(['ip', '-n', a, 'addr', 'add', '198.18.0.1/24', 'dev', 'egtpa']);
  sh(['ip', '-n', b, 'addr', 'add', '198.18.0.2/24', 'dev', 'egtpb']);
  for (const [n, d] of [[a, 'egtpa'], [b, 'egtpb'], [a, 'lo'], [b, 'lo']] as const) sh(['ip', '-n', n, 'link', 'set', d, 'up']);
  sh(['ip', 'netns', 'exec', a, 'ping', '-c1', '-W2', DST]);
  const r = spawnSync('ip', ['netns', 'exec', a, process.execPath, ...process.execArgv, process.argv[1] ?? '', '--inner', String(packets)], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`inner run failed: ${r.stderr}`);
  const { rows } = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { rows: Row[] };
  console.log(`date ${new Date().toISOString()}  loadavg ${spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).stdout.trim()}`);
  console.log('case                       kpps   CPU µs/pkt  failed');
  for (const row of rows) console.log(`${row.name.padEnd(24)} ${row.kpps.toFixed(0).padStart(6)}   ${row.cpuUsPerPkt.toFixed(2).padStart(9)}  ${row.failed}`);
}

const args = process.argv.slice(2);
if (args[0] === '--inner') inner(Number(args[1] ?? '200000'));
else outer(Number(args[0] ?? '200000'));
