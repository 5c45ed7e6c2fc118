import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DROP_REASONS, type DropReason } from '../drops.js';
import { parseConfig } from '../config/load.js';
import { EXAMPLE } from '../config/reference.js';
import { GatewayError } from '../errors.js';
import { buildRegistry, parseListen, startMetrics } from './metrics.js';
import type { DaemonStatus } from './status.js';

function fakeStatus(): DaemonStatus {
  const drops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  drops.replay = 7;
  return {
    schemaVersion: 1, name: 'alice', state: 'up', pid: 1, uptimeMs: 5, tun: { name: 'eg0', mtu: 1440, up: true }, gate: { installed: true, installedBy: 'daemon', checkedMs: 1 },
    totals: { tunRead: 3, espSent: 0, espReceived: 0, tunWritten: 0, espUdpSent: 0, espUdpReceived: 0 }, drops,
    peers: [{
      name: 'bob', endpoint: '198.18.0.2', txPackets: 11, txBytes: 1100, rxPackets: 12, rxBytes: 1200, lastTxMs: 0, lastRxMs: 0,
      sas: [{ direction: 'out', spi: '0x00001002', algorithm: 'aes128gcm16', createdMs: 0, ageMs: 5, lastPacketMs: 0, packets: 11, bytes: 1100, dummyPackets: 0, drops: {} }],
    }],
    queue: { num: 0, waiting: 2, queueDropped: 5, userDropped: 1 },
    inbound: { mode: 'socket', socketDrops: 7 },
    udpEncap: { port: 4500, rcvbufBytes: 8_388_608, dropped: 9 },
    reloads: 1,
    dataPath: { tunOffload: true, tcpCoalescing: true, udpCoalescing: 'on', sendBatch: true, warmUp: 'done', batchedReads: true, express: { on: true, flows: 1, thread: 'on' } },
  };
}

test('metrics: the text format carries the status counters (numbered lines)', async () => {
  const { registry, timings } = buildRegistry({ status: fakeStatus });
  timings.batch('out', 4, 20e-6);
  timings.batch('in', 1, 8e-6);
  const text = await registry.metrics();
  const want = [
    'espgate_up 1',
    'espgate_packets_total{peer="bob",direction="out"} 11',
    'espgate_packets_total{peer="bob",direction="in"} 12',
    'espgate_bytes_total{peer="bob",direction="in"} 1200',
    'espgate_sa_packets_total{peer="bob",direction="out",spi="0x00001002"} 11',
    'espgate_drops_total{reason="replay"} 7',
    'espgate_drops_total{reason="auth"} 0',
    'espgate_nfqueue_kernel_drops_total{kind="queue_full"} 5',
    'espgate_nfqueue_kernel_drops_total{kind="socket_full"} 1',
    'espgate_nfqueue_waiting 2',
    'espgate_inbound_socket_kernel_drops_total 7',
    'espgate_udp_encap_kernel_drops_total 9',
    'espgate_reloads_total 1',
    'espgate_datapath_seconds_count{direction="out"} 1',
    'espgate_datapath_seconds_bucket{le="0.000025",direction="out"} 1',
    'espgate_datapath_seconds_bucket{le="0.00001",direction="in"} 1',
    'espgate_tun_batch_packets_bucket{le="4"} 1',
  ];
  for (const [i, line] of want.entries()) assert.ok(text.split('\n').includes(line), `case ${i + 1}: ${line}\n${text}`);
});

test('metrics: served on loopback, GET /metrics only, closes cleanly', async () => {
  const ep = await startMetrics('127.0.0.1:0', { status: fakeStatus });
  try {
    const ok = await fetch(`http://127.0.0.1:${ep.port}/metrics`);
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await ok.text(), /^espgate_up 1$/m);
    const other = await fetch(`http://127.0.0.1:${ep.port}/`);
    assert.equal(other.status, 404);
    await other.text();
  } finally {
    await ep.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${ep.port}/metrics`), 'closed');
});

test('metrics: a port in use is ERR_CONFIG naming metrics.listen', async () => {
  const ep = await startMetrics('127.0.0.1:0', { status: fakeStatus });
  try {
    await assert.rejects(startMetrics(`127.0.0.1:${ep.port}`, { status: fakeStatus }),
      (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG' && /metrics\.listen/.test(e.message));
  } finally {
    await ep.close();
  }
});

test('metrics config: loopback only (numbered cases)', () => {
  const cases: [string, boolean][] = [
    ['127.0.0.1:9469', true], ['[::1]:9469', true], ['localhost:9469', true], ['127.1.2.3:80', true],
    ['0.0.0.0:9469', false], ['198.18.0.1:9469', false], ['[::]:9469', false], ['127.0.0.1', false], ['127.0.0.1:0', false], ['127.0.0.1:70000', false],
  ];
  for (const [i, [listen, ok]] of cases.entries()) {
    const text = `${EXAMPLE}metrics: { listen: "${listen}" }\n`;
    if (ok) assert.equal(parseConfig(text, 'm.yaml').metrics?.listen, listen, `case ${i + 1}`);
    else assert.throws(() => parseConfig(text, 'm.yaml'), (e: unknown) => GatewayError.isGatewayError(e) && /metrics\.listen/.test(e.message), `case ${i + 1}: ${listen}`);
  }
  assert.deepEqual(parseListen('[::1]:9469'), { host: '::1', port: 9469 });
});
