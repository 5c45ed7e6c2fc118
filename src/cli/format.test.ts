import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatAgo, formatBytes, formatDuration, formatIn, formatStatus, peerState } from './format.js';
import { DROP_REASONS, type DropReason } from '../drops.js';
import type { DaemonStatus, PeerStatus } from '../daemon/status.js';

const NOW = 1_800_000_000_000; // a fixed clock reading: nothing here depends on time

const noDrops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;

function peer(over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    name: 'bob', endpoint: '198.18.0.2', sas: [], txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, lastTxMs: 0, lastRxMs: 0, ...over,
  };
}

function doc(peers: PeerStatus[], over: Partial<DaemonStatus> = {}): DaemonStatus {
  return {
    schemaVersion: 1, name: 'alice', state: 'up', pid: 4242, uptimeMs: 3_723_000,
    tun: { name: 'eg0', mtu: 1440, up: true }, gate: { installed: true, installedBy: 'daemon', checkedMs: 0 }, totals: { tunRead: 0, espSent: 0, espReceived: 0, tunWritten: 0, espUdpSent: 0, espUdpReceived: 0 },
    drops: noDrops, peers, queue: { num: 0, waiting: 0, queueDropped: 0, userDropped: 0 }, inbound: { mode: 'queue', socketDrops: null }, udpEncap: null, reloads: 0,
    dataPath: { tunOffload: true, tcpCoalescing: true, udpCoalescing: 'on', sendBatch: true, warmUp: 'done', batchedReads: true, express: { on: true, flows: 1, thread: 'on' } }, ...over,
  };
}

test('formatDuration / formatAgo / formatIn / formatBytes (numbered cases)', () => {
  const cases: [number, string, string][] = [
    // [n, got, want]
    [1, formatDuration(0), '0s'],
    [2, formatDuration(999), '0s'],
    [3, formatDuration(59_999), '59s'],
    [4, formatDuration(60_000), '1m 0s'],
    [5, formatDuration(3_599_000), '59m 59s'],
    [6, formatDuration(3_600_000), '1h 0m'],
    [7, formatDuration(86_399_000), '23h 59m'],
    [8, formatDuration(90_000_000), '1d 1h'],
    [9, formatDuration(-5), '0s'],
    [10, formatDuration(Number.NaN), '?'],
    [11, formatAgo(0, NOW), 'never'],
    [12, formatAgo(NOW - 3_000, NOW), '3s ago'],
    [13, formatAgo(NOW + 5_000, NOW), '0s ago'], // clock step back: never negative
    [14, formatIn(NOW + 300_000, NOW), 'in 5m 0s'],
    [15, formatIn(NOW - 1, NOW), 'due'],
    [16, formatBytes(0), '0 B'],
    [17, formatBytes(1023), '1023 B'],
    [18, formatBytes(1024), '1.00 KiB'],
    [19, formatBytes(1536), '1.50 KiB'],
    [20, formatBytes(3 * 1024 * 1024), '3.00 MiB'],
    [21, formatBytes(5 * 1024 ** 3), '5.00 GiB'],
  ];
  for (const [n, got, want] of cases) assert.equal(got, want, `case ${n}`);
});

test('peerState: silent before the first packet, active within 180 s, idle after', () => {
  assert.equal(peerState(peer(), NOW), 'silent');
  assert.equal(peerState(peer({ lastRxMs: NOW - 180_000 }), NOW), 'active');
  assert.equal(peerState(peer({ lastRxMs: NOW - 180_001 }), NOW), 'idle');
  assert.equal(peerState(peer({ lastTxMs: NOW }), NOW), 'silent', 'sending alone does not make a peer active');
});

test('formatStatus: a fixed document at a fixed clock gives exactly this text', () => {
  const bob = peer({
    txPackets: 202, txBytes: 273_011, rxPackets: 136, rxBytes: 7_424, lastTxMs: NOW - 4_000, lastRxMs: NOW - 3_000,
    sas: [
      { direction: 'out', spi: '0x00001002', algorithm: 'aes128gcm16', createdMs: NOW - 11_000, ageMs: 11_000, lastPacketMs: NOW - 4_000, packets: 202, bytes: 273_011, dummyPackets: 0, drops: {} },
      { direction: 'in', spi: '0x00002001', algorithm: 'aes128gcm16', createdMs: NOW - 11_000, ageMs: 11_000, lastPacketMs: NOW - 3_000, packets: 136, bytes: 7_424, dummyPackets: 2, drops: { replay: 3, auth: 1 } },
    ],
  });
  const carol = peer({
    name: 'carol', endpoint: '198.18.0.3', txPackets: 1, txBytes: 84, lastTxMs: NOW - 7_200_000,
    sas: [{ direction: 'out', spi: '0x00001003', algorithm: 'aes256gcm16', createdMs: NOW - 90_000_000, ageMs: 90_000_000, lastPacketMs: 0, packets: 0, bytes: 0, dummyPackets: 0, drops: {} }],
  });
  const st = doc([bob, carol], { drops: { ...noDrops, replay: 3, auth: 1, 'no-peer': 2 }, queue: { num: 3, waiting: 1, queueDropped: 5, userDropped: 2 }, udpEncap: { port: 4500, rcvbufBytes: 8_388_608, dropped: 4 }, reloads: 1 });
  assert.equal(formatStatus(st, NOW), [
    'espgate alice: up, pid 4242, up 1h 2m',
    '  tun: eg0 mtu 1440 up',
    '  gate: installed by the daemon (removed on stop)',
    '',
    'peer: bob  (active)',
    '  endpoint: 198.18.0.2',
    '  transfer: 7.25 KiB received (136 pkts), 266.61 KiB sent (202 pkts)',
    '  last packet: in 3s ago, out 4s ago',
    '  sa out  spi 0x00001002  aes128gcm16  age 11s  202 pkts, 266.61 KiB  last 4s ago  drops: none',
    '  sa in   spi 0x00002001  aes128gcm16  age 11s  136 pkts (+2 dummy), 7.25 KiB  last 3s ago  drops: replay=3 auth=1',
    '',
    'peer: carol  (silent)',
    '  endpoint: 198.18.0.3',
    '  transfer: 0 B received (0 pkts), 84 B sent (1 pkts)',
    '  last packet: in never, out 2h 0m ago',
    '  sa out  spi 0x00001003  aes256gcm16  age 1d 1h  0 pkts, 0 B  last never  drops: none',
    '',
    'drops: replay=3 auth=1 no-peer=2',
    'queue 3: 1 waiting, kernel dropped 7 before espgate saw them (queue full 5, socket full 2)',
    'udp 4500: receive buffer 8.00 MiB, kernel dropped 4 before espgate saw them (receive buffer full)',
    'reloads: 1',
  ].join('\n'));
});

test('formatStatus: an IKE peer gets an ike line and one line per Child SA', () => {
  const p = peer({
    lastRxMs: NOW - 1_000,
    ike: {
      state: 'established', lastHeardMs: NOW - 20_000, natT: true, ikeRekeyAtMs: NOW + 3_600_000, lastDpdMs: NOW - 20_000,
      children: [{ inSpi: '0xc0000001', outSpi: '0xd0000001', algorithm: 'aes256gcm16', encapPort: 4500, establishedMs: NOW - 300_000, rekeyAtMs: NOW + 3_000_000 }],
    },
  });
  const lines = formatStatus(doc([p]), NOW).split('\n');
  assert.ok(lines.includes('  ike: established, NAT-T (ESP in UDP), last heard 20s ago, IKE rekey in 1h 0m, last DPD 20s ago'), lines.join('\n'));
  assert.ok(lines.includes('  child in 0xc0000001 out 0xd0000001  aes256gcm16  ESP in UDP (peer port 4500)  established 5m 0s ago  rekey in 50m 0s'), lines.join('\n'));
  assert.ok(lines.includes('  no SAs'));
  const bare = formatStatus(doc([peer({ ike: { state: 'connecting', lastHeardMs: 0 } })]), NOW).split('\n');
  assert.ok(bare.includes('  ike: connecting, last heard never'), 'optional IKE fields are left out when absent');
});

test('formatStatus: no queue counters, no reloads, no name', () => {
  const text = formatStatus(doc([], { name: null, queue: null, state: 'down', uptimeMs: 500, tun: { name: 'eg0', mtu: 1440, up: null }, gate: { installed: null, installedBy: null, checkedMs: 0 } }), NOW);
  assert.equal(text, ['espgate: down, pid 4242, up 0s', '  tun: eg0 mtu 1440', '  gate: ?', '', 'drops: none'].join('\n'));
});

test('formatStatus: the inbound line: raw sockets with and without kernel drops, none with the queue or from an older daemon', () => {
  const line = (ib: DaemonStatus['inbound']): string | undefined => formatStatus(doc([], { queue: null, inbound: ib }), NOW).split('\n').find((l) => l.startsWith('inbound'));
  assert.equal(line({ mode: 'socket', socketDrops: 0 }), 'inbound: raw ESP sockets, no kernel drops');
  assert.equal(line({ mode: 'socket', socketDrops: 12 }), 'inbound: raw ESP sockets, kernel dropped 12 at full receive buffers before espgate read them');
  assert.equal(line({ mode: 'queue', socketDrops: null }), undefined);
  const older: Partial<DaemonStatus> = { ...doc([]) };
  Reflect.deleteProperty(older, 'inbound');
  assert.equal(formatStatus(older as DaemonStatus, NOW).split('\n').find((l) => l.startsWith('inbound')), undefined);
});

test('formatStatus: the NAT-T socket line: no drops, drops unknown, absent in an older daemon', () => {
  const line = (u: DaemonStatus['udpEncap']): string | undefined => formatStatus(doc([], { udpEncap: u }), NOW).split('\n').find((l) => l.startsWith('udp '));
  assert.equal(line({ port: 4500, rcvbufBytes: 425_984, dropped: 0 }), 'udp 4500: receive buffer 416.00 KiB, no kernel drops');
  assert.equal(line({ port: 4500, rcvbufBytes: 212_992, dropped: null }), 'udp 4500: receive buffer 208.00 KiB, kernel drops unknown');
  assert.equal(line(null), undefined);
  const older: Partial<DaemonStatus> = { ...doc([]) };
  Reflect.deleteProperty(older, 'udpEncap');
  assert.ok(!('udpEncap' in older));
  assert.equal(formatStatus(older as DaemonStatus, NOW).split('\n').find((l) => l.startsWith('udp ')), undefined);
});

test('formatStatus: a TUN that is down and a gate that vanished are said loudly', () => {
  const lines = formatStatus(doc([], { tun: { name: 'eg0', mtu: 1440, up: false }, gate: { installed: false, installedBy: 'operator', checkedMs: NOW - 3000 } }), NOW).split('\n');
  assert.ok(lines.includes('  tun: eg0 mtu 1440 DOWN'), lines.join('\n'));
  assert.ok(lines.includes('  gate: NOT INSTALLED: traffic to peers is not protected; `espgate rules install` or restart, checked 3s ago'), lines.join('\n'));
});

test('formatStatus: a data-path line only when a fast path is refused or the warm-up still runs', () => {
  const base = doc([peer()]);
  const cases: [number, DaemonStatus, string | undefined][] = [
    [1, base, undefined],
    [2, doc([peer()], { dataPath: { ...base.dataPath, udpCoalescing: 'refused' } }), 'data path: the kernel refused a coalesced UDP write (Linux < 6.2?): UDP goes datagram by datagram (slower; nothing lost)'],
    [3, doc([peer()], { dataPath: { ...base.dataPath, warmUp: 'running' } }), 'data path: warming up (the first packets may be slower for a second)'],
    [4, doc([peer()], { dataPath: { ...base.dataPath, udpCoalescing: 'off', warmUp: 'off' } }), undefined],
    [5, doc([peer()], { dataPath: { ...base.dataPath, batchedReads: false } }), 'data path: TUN reads one packet per system call (io_uring refused here: kernel.io_uring_disabled or a seccomp filter?): slower for small packets, nothing lost'],
    [6, doc([peer()], { dataPath: { ...base.dataPath, batchedReads: false, tunOffload: false } }), undefined],
  ];
  for (const [n, st, want] of cases) {
    const lines = formatStatus(st, NOW).split('\n').filter((l) => l.startsWith('data path:'));
    assert.deepEqual(lines, want === undefined ? [] : [want], `case ${n}`);
  }
});
