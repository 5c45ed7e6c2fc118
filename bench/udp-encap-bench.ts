/**
 * udp-encap-bench.ts: the cost of UDP encapsulation through node:dgram (src/io/udp-encap.ts), on
 * loopback (127.0.0.1, ports chosen by the kernel; no namespace, no privileges).
 *
 *   npm run build && node dist/bench/udp-encap-bench.js        (or: node --import tsx bench/udp-encap-bench.ts)
 *
 * Three loops, each run in REPS alternating repetitions, the best kept:
 *   send      sendEsp of a pre-sealed 1436-byte ESP packet (a 1400-byte inner packet sealed with
 *             AES-128-GCM): ring copy + dgram send + the kernel's UDP send and loopback delivery
 *             (the receiving socket overflows and the kernel drops; it is not read)
 *   seal+send Engine.handleOutbound of a 1400-byte inner packet with an encapsulated SA: rewrite,
 *             classify, sealEsp in place, sendEsp
 *   recv+open a second socket receives what the first sends (bursts of BURST, then the event loop
 *             turns until the burst is in, at most 50 turns) and hands it to Engine.handleUdpEsp: dgram receive (a Buffer and an rinfo per
 *             datagram), source parse, SA lookup, replay, decrypt, policy, rewrite, TUN write (a twin)
 *   raw send  (root only, for comparison) the same ESP through the raw protocol-50 socket of the
 *             plain path (src/io/rawsock.ts, sync mode) to 127.0.0.1, where the kernel drops it
 * Rates are packets per second of 1400-byte inner packets; CPU is this process's user+system time
 * per packet. The machine is shared: compare numbers from one run only.
 */
import { performance } from 'node:perf_hooks';
import { Engine, HEADROOM } from '../src/datapath/engine.js';
import type { EngineTables, PeerRuntime } from '../src/datapath/engine.js';
import { PrefixTable } from '../src/datapath/prefix-table.js';
import { ESP_MAX_OVERHEAD, sealEsp } from '../src/esp/codec.js';
import { InboundSa, OutboundSa } from '../src/esp/sa.js';
import { Sadb, parseOuterAddress } from '../src/esp/sadb.js';
import type { EspReceiver, EspSender, TunDevice } from '../src/io/types.js';
import { openEspSender } from '../src/io/rawsock.js';
import { openUdpEncap } from '../src/io/udp-encap.js';
import { buildIpPacket, udpDatagram } from '../src/packet/build.js';
import { OffsetMap } from '../src/steer/fake-offset.js';

const quick = process.argv.includes('--quick');
const N = quick ? 20_000 : 100_000;
const REPS = quick ? 1 : 3;
const BURST = 32;
const LO = '127.0.0.1';
const KEY = new Uint8Array(20).fill(7);

const noRaw: EspSender = { send: () => false, close: () => {} };
const noNfq: EspReceiver = { start: () => {}, close: () => {} };
/** sinkTun counts writes and reads nothing. */
const sinkTun = { written: 0 };
const tun: TunDevice = {
  name: 'bench0', readBatch: () => 0, write: () => { sinkTun.written++; return true; }, onReadable: () => {}, close: () => {},
};

function tables(peerPort: number, replayInitialTop: bigint): EngineTables {
  const local4 = new PrefixTable<true>(4);
  local4.insert(parseOuterAddress('198.18.0.1'), 32, true);
  local4.insert(parseOuterAddress('198.18.0.2'), 32, true);
  const p: PeerRuntime = {
    name: 'peer', endpoint: LO, endpointFamily: 4, protect4: new PrefixTable<true>(4), protect6: new PrefixTable<true>(6),
    stats: { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, lastRxMs: 0, lastTxMs: 0 },
  };
  p.protect4.insert(parseOuterAddress('198.18.0.1'), 32, true);
  p.protect4.insert(parseOuterAddress('198.18.0.2'), 32, true);
  const peerByDst4 = new PrefixTable<PeerRuntime>(4);
  peerByDst4.insert(parseOuterAddress('198.18.0.2'), 32, p);
  const sadb = new Sadb();
  sadb.setOutbound('peer', new OutboundSa({ spi: 0x4500, algorithm: 'aes128gcm16', keyMaterial: KEY }), { remotePort: peerPort });
  sadb.addInbound(new InboundSa({ spi: 0x4500, algorithm: 'aes128gcm16', keyMaterial: KEY, peer: 'peer', outerSource: parseOuterAddress(LO), replayWindow: 4096, replayInitialTop }));
  return {
    offsets: new OffsetMap([{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }]),
    peerByDst4, peerByDst6: new PrefixTable<PeerRuntime>(6), local4, local6: new PrefixTable<true>(6), sadb, peers: new Map([['peer', p]]),
  };
}

interface Result { kpps: number; cpuUsPerPkt: number; packets: number }

function measure(n: number, body: () => void): Result {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  body();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { kpps: n / ms, cpuUsPerPkt: (c.user + c.system) / n, packets: n };
}

async function main(): Promise<void> {
  const tx = await openUdpEncap(new Set([4]), { port: 0, bind: { v4: LO } });
  const rx = await openUdpEncap(new Set([4]), { port: 0, bind: { v4: LO } });
  const sink = await openUdpEncap(new Set([4]), { port: 0, bind: { v4: LO } }); // never read: the kernel drops
  sink.onEsp = () => {};
  const inner = buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(40000, 5000, Buffer.alloc(1372, 0x61)) });
  const sealed = Buffer.alloc(HEADROOM + inner.length + ESP_MAX_OVERHEAD);
  const n0 = sealEsp(new OutboundSa({ spi: 0x4500, algorithm: 'aes128gcm16', keyMaterial: KEY }), inner, 0, inner.length, sealed, 0);
  if (typeof n0 !== 'number') throw new Error(String(n0));
  const best: Record<string, Result> = {};
  const keep = (k: string, r: Result): void => { if (best[k] === undefined || r.kpps > (best[k]?.kpps ?? 0)) best[k] = r; };

  const raw = process.getuid?.() === 0 ? openEspSender({ families: [4] }) : undefined;
  for (let rep = 0; rep < REPS; rep++) {
    if (raw !== undefined) {
      let failed = 0;
      keep('raw send (plain ESP, for comparison)', measure(N, () => {
        for (let i = 0; i < N; i++) if (!raw.send(4, LO, sealed, 0, n0)) failed++;
      }));
      if (failed > 0) console.error(`raw send: ${failed} refused`);
    }

    // 1. send only
    let refused = 0;
    keep('send', measure(N, () => {
      for (let i = 0; i < N; i++) if (!tx.sendEsp(4, LO, sink.port, sealed, 0, n0)) refused++;
    }));
    if (refused > 0) console.error(`send: ${refused} refused (queue backed up)`);

    // 2. seal + send through the engine
    const out = new Engine(tables(sink.port, 0n), tun, noRaw, noNfq);
    out.setUdpSender(tx);
    const buf = Buffer.alloc(HEADROOM + 9216 + 64);
    keep('seal+send', measure(N, () => {
      for (let i = 0; i < N; i++) {
        inner.copy(buf, HEADROOM);
        const r = out.handleOutbound(buf, HEADROOM, inner.length);
        if (r !== 'ok') throw new Error(r);
      }
    }));

    // 3. receive + open: bursts through loopback into rx, handled by a second engine
    const eng = new Engine(tables(rx.port, 0n), tun, noRaw, noNfq);
    eng.setUdpSender(tx);
    rx.onEsp = eng.handleUdpEsp;
    const before = sinkTun.written;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const sender = new Engine(tables(rx.port, 0n), tun, noRaw, noNfq);
    sender.setUdpSender(tx);
    for (let sent = 0; sent < N; sent += BURST) {
      for (let i = 0; i < BURST; i++) {
        inner.copy(buf, HEADROOM);
        sender.handleOutbound(buf, HEADROOM, inner.length);
      }
      const want = Math.min(sent + BURST, N);
      for (let i = 0; i < 50 && sinkTun.written - before < want; i++) await new Promise((r) => setImmediate(r));
    }
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const got = sinkTun.written - before;
    keep('seal+send+recv+open (one process)', { kpps: got / ms, cpuUsPerPkt: (c.user + c.system) / got, packets: got });
    console.error(`rep ${rep + 1}: recv ${got}/${N}, drops ${JSON.stringify(Object.fromEntries(Object.entries(eng.drops.counts).filter(([, v]) => v > 0)))}`);
  }
  tx.close(); rx.close(); sink.close(); raw?.close();
  console.log(`udp-encap bench: ${N} packets of 1400 bytes inner (${n0} bytes ESP), best of ${REPS}, Node ${process.version}`);
  console.log('| loop | kpps | CPU µs/pkt | packets |');
  console.log('|---|---|---|---|');
  for (const [k, r] of Object.entries(best)) console.log(`| ${k} | ${r.kpps.toFixed(0)} | ${r.cpuUsPerPkt.toFixed(2)} | ${r.packets} |`);
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
