import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProcNetUdp, udpPortStats } from './proc-udp.js';

// The kernel's layout (net/ipv4/udp.c udp4_format_sock, net/ipv6/datagram.c __ip6_dgram_sock_seq_show).
const UDP4 = [
  '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            ',
  '  117: 00000000:1194 00000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 40711 2 ffff8f0b4c2a1c00 313         ',
  '  237: 00000000:01F4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40710 2 ffff8f0b4c2a1800 0           ',
  '  890: 0100007F:D431 0100007F:0035 01 00000000:00000000 00:00000000 00000000   100        0 51234 2 ffff8f0b4c2a2000 0           ',
].join('\n');
const UDP6 = [
  '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops',
  '  117: 00000000000000000000000000000000:1194 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40712 2 ffff8f0b4c2a2400 5',
].join('\n');

test('parseProcNetUdp: port and receive queue from hex, inode and drops in decimal; the header is skipped', () => {
  assert.deepEqual(parseProcNetUdp(UDP4), [
    { localPort: 4500, rxQueue: 0x900, inode: 40711, drops: 313 },
    { localPort: 500, rxQueue: 0, inode: 40710, drops: 0 },
    { localPort: 0xd431, rxQueue: 0, inode: 51234, drops: 0 },
  ]);
  assert.deepEqual(parseProcNetUdp(UDP6), [{ localPort: 4500, rxQueue: 0, inode: 40712, drops: 5 }]);
});

test('parseProcNetUdp: truncated or garbled lines are skipped, not guessed', () => {
  const cases: [number, string][] = [
    [1, ''],
    [2, '  117: 00000000:1194 00000000:0000 07 00000000:00000000'],
    [3, '  117: 00000000:ZZZZ 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 ffff 0'],
    [4, '  117: 00000000:1194 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 ffff many'],
    [5, 'sl: 00000000:1194 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 ffff 0'],
  ];
  for (const [n, text] of cases) assert.deepEqual(parseProcNetUdp(text), [], `case ${n}`);
});

test('udpPortStats: sums both families for one port; undefined only when neither file is readable', () => {
  const files = new Map([['/proc/net/udp', UDP4], ['/proc/net/udp6', UDP6]]);
  const read = (p: string): string => {
    const t = files.get(p);
    if (t === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    return t;
  };
  assert.deepEqual(udpPortStats(4500, read), { sockets: 2, dropped: 318, rxQueue: 0x900 });
  assert.deepEqual(udpPortStats(500, read), { sockets: 1, dropped: 0, rxQueue: 0 });
  assert.deepEqual(udpPortStats(4501, read), { sockets: 0, dropped: 0, rxQueue: 0 });
  files.delete('/proc/net/udp6');
  assert.deepEqual(udpPortStats(4500, read), { sockets: 1, dropped: 313, rxQueue: 0x900 }, 'a kernel without IPv6');
  files.clear();
  assert.equal(udpPortStats(4500, read), undefined);
});

test('udpPortStats: this process\'s own bound socket is found in the real /proc/net/udp', async () => {
  const { createSocket } = await import('node:dgram');
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  try {
    const st = udpPortStats(s.address().port);
    assert.ok(st !== undefined, '/proc/net/udp is readable');
    assert.equal(st.sockets, 1);
    assert.equal(st.dropped, 0);
  } finally {
    s.close();
  }
});
