/**
 * daemon/metrics.ts: the Prometheus text endpoint (GET /metrics), off unless the config's
 * `metrics.listen` names a loopback address. prom-client renders the format (docs/dependencies.md
 * says why); the counters are read from the same status document `espgate status --json` shows
 * at scrape time, so the two can never disagree. Two histograms are fed by the data path only
 * while the endpoint is on: processing time per TUN batch (out) and per ESP packet (in), and
 * packets per TUN batch.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { GatewayError } from '../errors.js';
import type { DaemonStatus } from './status.js';

/** LATENCY_BUCKETS_S are the processing-time histogram buckets (seconds). */
const LATENCY_BUCKETS_S = [5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3];
/** BATCH_BUCKETS are the packets-per-TUN-batch histogram buckets. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64];

/** MetricsSource is what the endpoint reads: the status document and a timing hook. */
export interface MetricsSource {
  status(): DaemonStatus;
}

/** DataPathTimings receives the data path's measurements (Engine.timing). */
export interface DataPathTimings {
  /** batch records one processed unit: a TUN batch of n packets (out) or one ESP packet (in). */
  batch(direction: 'in' | 'out', packets: number, seconds: number): void;
}

/** MetricsEndpoint is a running endpoint. */
export interface MetricsEndpoint {
  readonly address: string;
  /** port is the bound port (useful when listen asked for port 0, as tests do). */
  readonly port: number;
  readonly timings: DataPathTimings;
  render(): Promise<string>;
  close(): Promise<void>;
}

/** buildRegistry makes the registry and the timing sink over a source. */
export function buildRegistry(src: MetricsSource): { registry: Registry; timings: DataPathTimings } {
  const registry = new Registry();
  const fromStatus = <T>(fn: (st: DaemonStatus) => T): (() => T) => () => fn(src.status());
  new Gauge({
    name: 'espgate_up', help: '1 when the daemon is up (gate, TUN, sockets and queue in place)', registers: [registry],
    collect: function collect(this: Gauge) { this.set(fromStatus((st) => (st.state === 'up' ? 1 : 0))()); },
  });
  new Counter({
    name: 'espgate_packets_total', help: 'Inner packets through the tunnel per peer and direction', labelNames: ['peer', 'direction'], registers: [registry],
    collect: function collect(this: Counter) {
      this.reset();
      for (const p of src.status().peers) {
        this.inc({ peer: p.name, direction: 'out' }, p.txPackets);
        this.inc({ peer: p.name, direction: 'in' }, p.rxPackets);
      }
    },
  });
  new Counter({
    name: 'espgate_bytes_total', help: 'Inner bytes through the tunnel per peer and direction', labelNames: ['peer', 'direction'], registers: [registry],
    collect: function collect(this: Counter) {
      this.reset();
      for (const p of src.status().peers) {
        this.inc({ peer: p.name, direction: 'out' }, p.txBytes);
        this.inc({ peer: p.name, direction: 'in' }, p.rxBytes);
      }
    },
  });
  new Counter({
    name: 'espgate_sa_packets_total', help: 'Packets per SA', labelNames: ['peer', 'direction', 'spi'], registers: [registry],
    collect: function collect(this: Counter) {
      this.reset();
      for (const p of src.status().peers) for (const s of p.sas) this.inc({ peer: p.name, direction: s.direction, spi: s.spi }, s.packets);
    },
  });
  new Counter({
    name: 'espgate_drops_total', help: 'Packets dropped by the data path, by reason (src/drops.ts)', labelNames: ['reason'], registers: [registry],
    collect: function collect(this: Counter) {
      this.reset();
      for (const [reason, n] of Object.entries(src.status().drops)) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'espgate_nfqueue_kernel_drops_total', help: 'Inbound ESP the kernel dropped before espgate saw it (queue full, socket full)', labelNames: ['kind'], registers: [registry],
    collect: function collect(this: Counter) {
      this.reset();
      const q = src.status().queue;
      if (q === null) return;
      this.inc({ kind: 'queue_full' }, q.queueDropped);
      this.inc({ kind: 'socket_full' }, q.userDropped);
    },
  });
  new Counter({
    name: 'espgate_inbound_socket_kernel_drops_total', help: 'Inbound ESP the kernel dropped at the raw ESP sockets\' full receive buffers before espgate read it (inbound: socket)', registers: [registry],
    collect: function collect(this: Counter) {
      this.reset();
      const ib = src.status().inbound;
      if (ib.socketDrops !== null) this.inc(ib.socketDrops);
    },
  });
  new Counter({
    name: 'espgate_udp_encap_kernel_drops_total', help: 'Datagrams on the NAT-T port (UDP 4500: ESP in UDP, IKE) the kernel dropped before espgate read them (receive buffer full)', registers: [registry],
    collect: function collect(this: Counter) {
      this.reset();
      const u = src.status().udpEncap;
      if (u !== null && u !== undefined && u.dropped !== null) this.inc(u.dropped);
    },
  });
  new Gauge({
    name: 'espgate_nfqueue_waiting', help: 'Inbound ESP packets queued in the kernel, not yet read (queue depth)', registers: [registry],
    collect: function collect(this: Gauge) { this.set(src.status().queue?.waiting ?? 0); },
  });
  new Counter({
    name: 'espgate_reloads_total', help: 'Config reloads (SIGHUP) that took effect', registers: [registry],
    collect: function collect(this: Counter) { this.reset(); this.inc(src.status().reloads); },
  });
  const latency = new Histogram({
    name: 'espgate_datapath_seconds', help: 'Processing time of one TUN batch (out) or one ESP packet (in)', labelNames: ['direction'],
    buckets: LATENCY_BUCKETS_S, registers: [registry],
  });
  const batch = new Histogram({
    name: 'espgate_tun_batch_packets', help: 'Packets per TUN read batch', buckets: BATCH_BUCKETS, registers: [registry],
  });
  const timings: DataPathTimings = {
    batch(direction, packets, seconds) {
      latency.observe({ direction }, seconds);
      if (direction === 'out') batch.observe(packets);
    },
  };
  return { registry, timings };
}

/** parseListen splits "127.0.0.1:9469" / "[::1]:9469" / "localhost:9469". */
export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(i + 1)) };
}

/** startMetrics serves GET /metrics on a loopback address; rejects with ERR_CONFIG if it cannot listen. */
export async function startMetrics(listen: string, src: MetricsSource): Promise<MetricsEndpoint> {
  const { registry, timings } = buildRegistry(src);
  const { host, port } = parseListen(listen);
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('espgate: only GET /metrics here\n');
      return;
    }
    registry.metrics().then(
      (text) => { res.writeHead(200, { 'content-type': registry.contentType }).end(text); },
      (e: unknown) => { res.writeHead(500, { 'content-type': 'text/plain' }).end(`espgate: ${e instanceof Error ? e.message : String(e)}\n`); },
    );
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => { reject(new GatewayError('ERR_CONFIG', `metrics.listen ${listen}: ${e.message}`, { cause: e })); });
    server.listen(port, host, () => { resolve(); });
  });
  const bound = server.address();
  return {
    address: listen,
    port: typeof bound === 'object' && bound !== null ? bound.port : port,
    timings,
    render: () => registry.metrics(),
    close: () => new Promise<void>((resolve) => { server.close(() => { resolve(); }); server.closeAllConnections(); }),
  };
}
