/**
 * udp-encap.test.ts: the port-4500 socket. Demultiplexing (RFC 3948 §2.2) as a table; sendEsp's
 * copy and its refusal when the kernel queue backs up, with a twin DatagramPort; keepalives on a
 * fake clock; and one pass over real loopback sockets (port 0, no privileges).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { Family } from './types.js';
import {
  NAT_KEEPALIVE_INTERVAL_MS, RING_SLOTS, UDP_ENCAP_OVERHEAD, UDP_ENCAP_PORT, UDP_ENCAP_RCVBUF, UdpEncapSocket,
  classifyUdpEncap, openUdpEncap,
} from './udp-encap.js';
import type { DatagramPort, KeepaliveTimers } from './udp-encap.js';

/** TwinPort records what would have been sent; `backlog` plays the kernel queue. */
class TwinPort implements DatagramPort {
  readonly sent: { bytes: Buffer; port: number; address: string; view: Buffer }[] = [];
  backlog = 0;
  closed = false;
  send(buf: Buffer, offset: number, length: number, port: number, address: string): void {
    if (port < 1 || port > 65535) throw new RangeError('port');
    const view = buf.subarray(offset, offset + length);
    this.sent.push({ bytes: Buffer.from(view), port, address, view });
  }
  queued(): number { return this.backlog; }
  localPort(): number { return 4500; }
  close(): void { this.closed = true; }
}

/** sub returns bytes as a subarray with a non-zero byteOffset (STYLE: codec inputs). */
function sub(bytes: number[]): Buffer {
  const b = Buffer.alloc(bytes.length + 7, 0xee);
  b.set(bytes, 7);
  return b.subarray(7);
}

describe('udp-encap', () => {
  test('constants: port 4500 (ike-edges.test.ts checks it equals NAT_T_PORT), the overhead is one UDP header', () => {
    assert.equal(UDP_ENCAP_PORT, 4500);
    assert.equal(UDP_ENCAP_OVERHEAD, 8);
    assert.equal(NAT_KEEPALIVE_INTERVAL_MS, 20_000);
  });

  test('classifyUdpEncap (RFC 3948 §2.2), table', () => {
    const cases: [number[], string][] = [
      /* 1 */ [[0xff], 'keepalive'],
      /* 2 */ [[0, 0, 0, 0], 'ike'],
      /* 3 */ [[0, 0, 0, 0, 0x11, 0x22], 'ike'],
      /* 4 */ [[0, 0, 0, 1, 0, 0, 0, 1], 'esp'],
      /* 5 */ [[0xc0, 0xde, 1, 1, 0, 0, 0, 1], 'esp'],
      /* 6 */ [[0xff, 0xff], 'esp'], // two octets are not a keepalive: ESP, then 'truncated'
      /* 7 */ [[0, 0, 0], 'esp'], // too short for a marker
      /* 8 */ [[], 'esp'],
      /* 9 */ [[0xfe], 'esp'],
    ];
    for (const [i, [bytes, want]] of cases.entries()) {
      const b = sub(bytes);
      assert.equal(classifyUdpEncap(b, 0, b.length), want, `case ${i + 1}`);
    }
    // The classification reads within [off, off+len) only.
    const big = sub([9, 9, 0, 0, 0, 0, 7]);
    assert.equal(classifyUdpEncap(big, 2, 4), 'ike', 'case 10: marker at an offset');
    assert.equal(classifyUdpEncap(big, 1, 1), 'esp', 'case 11');
  });

  test('receive: IKE loses its marker, keepalives are counted, ESP goes on with the source bytes', () => {
    const u = new UdpEncapSocket(new Map<Family, DatagramPort>([[4, new TwinPort()], [6, new TwinPort()]]));
    const ike: [number[], string, number][] = [];
    const esp: [number[], Family, number[], number][] = [];
    u.onIke = (bytes, address, port) => { ike.push([[...bytes], address, port]); };
    u.onEsp = (pkt, off, len, family, src, port) => { esp.push([[...pkt.subarray(off, off + len)], family, [...src], port]); };
    u.receive(sub([0, 0, 0, 0, 0xaa, 0xbb]), 4, '198.18.0.2', 4500);
    u.receive(sub([0xff]), 4, '198.18.0.2', 4500);
    u.receive(sub([0, 0, 1, 0, 0, 0, 0, 9, 1, 2]), 4, '198.18.0.2', 31000);
    u.receive(sub([0, 0, 1, 0, 0, 0, 0, 9]), 6, '2001:db8::2', 4500);
    u.receive(sub([0, 0, 1, 0, 0, 0, 0, 10]), 6, '2001:db8::2', 4500); // second time: the cache
    u.receive(sub([0, 0, 1, 0]), 4, '198.18.0.255', 1);
    assert.deepEqual(ike, [[[0xaa, 0xbb], '198.18.0.2', 4500]], 'case 1: IKE, marker stripped');
    assert.deepEqual(esp, [
      [[0, 0, 1, 0, 0, 0, 0, 9, 1, 2], 4, [198, 18, 0, 2], 31000],
      [[0, 0, 1, 0, 0, 0, 0, 9], 6, [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 4500],
      [[0, 0, 1, 0, 0, 0, 0, 10], 6, [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 4500],
      [[0, 0, 1, 0], 4, [198, 18, 0, 255], 1],
    ], 'case 2: ESP with its sender');
    assert.deepEqual({ ...u.stats }, { espIn: 4, ikeIn: 1, keepalivesIn: 1, espOut: 0, ikeOut: 0, keepalivesOut: 0, refused: 0 }, 'case 3: counters');
  });

  test('sendEsp copies into its ring (the caller may reuse its buffer), refuses when the queue backs up', () => {
    const p4 = new TwinPort();
    const u = new UdpEncapSocket(new Map<Family, DatagramPort>([[4, p4]]));
    const buf = sub([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(u.sendEsp(4, '198.18.0.2', 4500, buf, 1, 6), true, 'case 1');
    buf.fill(0); // the engine reuses its buffer at once
    assert.deepEqual([...p4.sent[0].bytes], [2, 3, 4, 5, 6, 7], 'case 2: the bytes sent');
    assert.deepEqual([...p4.sent[0].view], [2, 3, 4, 5, 6, 7], 'case 3: what a queued send would still read');
    assert.equal(p4.sent[0].port, 4500);
    assert.equal(p4.sent[0].address, '198.18.0.2');
    assert.equal(u.sendEsp(6, '2001:db8::2', 4500, buf, 0, 4), false, 'case 4: no IPv6 socket');
    p4.backlog = RING_SLOTS - 2;
    assert.equal(u.sendEsp(4, '198.18.0.2', 4500, buf, 0, 4), true, 'case 5: below the limit');
    p4.backlog = RING_SLOTS - 1;
    assert.equal(u.sendEsp(4, '198.18.0.2', 4500, buf, 0, 4), false, 'case 6: the ring would wrap onto a queued slot');
    p4.backlog = 0;
    assert.equal(u.sendEsp(4, '198.18.0.2', 0, buf, 0, 4), false, 'case 7: a send that throws is refused');
    const jumbo = Buffer.alloc(20_000, 0x5a);
    assert.equal(u.sendEsp(4, '198.18.0.2', 4500, jumbo, 0, jumbo.length), true, 'case 8: larger than a slot');
    assert.equal(p4.sent[p4.sent.length - 1].bytes.length, 20_000);
    assert.deepEqual({ espOut: u.stats.espOut, refused: u.stats.refused }, { espOut: 3, refused: 3 }, 'case 9: counters');
    // A full turn of the ring lands every packet in its own slot, in order.
    for (let i = 0; i < RING_SLOTS + 3; i++) u.sendEsp(4, '198.18.0.2', 4500, Buffer.from([i & 0xff, 0xab]), 0, 2);
    const last = p4.sent.slice(-(RING_SLOTS + 3));
    assert.deepEqual(last.map((s) => s.bytes[0]), Array.from({ length: RING_SLOTS + 3 }, (_, i) => i & 0xff), 'case 10');
    assert.equal(u.sendEsp(4, '198.18.0.2', 4500, Uint8Array.from([9, 8, 7]), 1, 2), true, 'case 11: a plain Uint8Array');
    assert.deepEqual([...p4.sent[p4.sent.length - 1].bytes], [8, 7]);
  });

  test('sendIke prepends the non-ESP marker; sendKeepalive sends the octet 0xFF', () => {
    const p4 = new TwinPort();
    const p6 = new TwinPort();
    const u = new UdpEncapSocket(new Map<Family, DatagramPort>([[4, p4], [6, p6]]));
    assert.equal(u.sendIke(Uint8Array.from([0x21, 0x22]), '198.18.0.2', 31000), true);
    assert.equal(u.sendIke(Uint8Array.from([0x23]), '2001:db8::2', 4500), true);
    assert.equal(u.sendKeepalive(4, '198.18.0.2', 31000), true);
    assert.deepEqual(p4.sent.map((s) => [[...s.bytes], s.port]), [[[0, 0, 0, 0, 0x21, 0x22], 31000], [[0xff], 31000]]);
    assert.deepEqual(p6.sent.map((s) => [[...s.bytes], s.address]), [[[0, 0, 0, 0, 0x23], '2001:db8::2']]);
    u.close();
    assert.equal(p4.closed && p6.closed, true, 'close closes every socket');
    assert.equal(u.sendIke(Uint8Array.from([1]), '198.18.0.2', 4500), false, 'nothing after close');
    assert.equal(u.sendEsp(4, '198.18.0.2', 4500, Buffer.alloc(8), 0, 8), false);
  });

  test('keepalives: one 0xFF per target per interval on a fake clock; stopped by close', () => {
    const p4 = new TwinPort();
    const u = new UdpEncapSocket(new Map<Family, DatagramPort>([[4, p4]]));
    const timers: { fn: () => void; ms: number; cancelled: boolean }[] = [];
    const fake: KeepaliveTimers = {
      every: (fn, ms) => { const t = { fn, ms, cancelled: false }; timers.push(t); return t; },
      cancel: (h) => { (h as { cancelled: boolean }).cancelled = true; },
    };
    let targets = [{ family: 4 as const, address: '198.18.0.2', port: 4500 }, { family: 4 as const, address: '198.18.0.3', port: 31000 }];
    u.startKeepalives(() => targets, undefined, fake);
    assert.equal(timers.length, 1);
    assert.equal(timers[0].ms, 20_000, 'case 1: RFC 3948 interval by default');
    assert.equal(p4.sent.length, 0, 'case 2: nothing before the first tick');
    timers[0].fn();
    assert.deepEqual(p4.sent.map((s) => [[...s.bytes], s.address, s.port]), [[[0xff], '198.18.0.2', 4500], [[0xff], '198.18.0.3', 31000]], 'case 3');
    targets = [];
    timers[0].fn();
    assert.equal(p4.sent.length, 2, 'case 4: targets are asked each round');
    u.startKeepalives(() => targets, 1000, fake);
    assert.equal(timers[0].cancelled, true, 'case 5: a restart replaces the timer');
    u.close();
    assert.equal(timers[1].cancelled, true, 'case 6: close stops the timer');
    assert.equal(u.stats.keepalivesOut, 2);
  });

  test('real sockets on loopback: ESP, IKE with marker and a keepalive cross, each demultiplexed', async () => {
    const rx = await openUdpEncap(new Set([4]), { port: 0, bind: { v4: '127.0.0.1' } });
    const tx = await openUdpEncap(new Set([4]), { port: 0, bind: { v4: '127.0.0.1' } });
    try {
      assert.notEqual(rx.port, 0);
      const got: string[] = [];
      let resolveDone: () => void = () => {};
      const done = new Promise<void>((r) => { resolveDone = r; });
      const check = (): void => { if (got.length === 2 && rx.stats.keepalivesIn === 1) resolveDone(); };
      rx.onEsp = (pkt, off, len, family, src, port) => {
        got.push(`esp ${pkt.subarray(off, off + len).toString('hex')} ${family} ${[...src].join('.')} ${port === tx.port}`);
        check();
      };
      rx.onIke = (bytes, address, port) => { got.push(`ike ${Buffer.from(bytes).toString('hex')} ${address} ${port === tx.port}`); check(); };
      const esp = Buffer.from('00001001000000016162', 'hex');
      // Keepalive first, then IKE, then ESP: UDP on loopback keeps the order.
      assert.equal(tx.sendKeepalive(4, '127.0.0.1', rx.port), true);
      assert.equal(tx.sendIke(Buffer.from('2122', 'hex'), '127.0.0.1', rx.port), true);
      assert.equal(tx.sendEsp(4, '127.0.0.1', rx.port, esp, 0, esp.length), true);
      esp.fill(0); // reused at once: the datagram must still carry the ESP
      const timeout = setTimeout(() => { resolveDone(); }, 5000);
      await done;
      clearTimeout(timeout);
      assert.deepEqual(got.sort(), ['esp 00001001000000016162 4 127.0.0.1 true', 'ike 2122 127.0.0.1 true']);
      assert.equal(rx.stats.keepalivesIn, 1);
    } finally {
      rx.close();
      tx.close();
    }
  });

  test('real sockets: the receive buffer is grown to UDP_ENCAP_RCVBUF, as far as net.core.rmem_max lets it', async () => {
    let rmemMax = Number.NaN;
    try {
      rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim());
    } catch {
      // no /proc: only the lower bound below is checked
    }
    const u = await openUdpEncap(new Set([4]), { port: 0, bind: { v4: '127.0.0.1' } });
    const small = await openUdpEncap(new Set([4]), { port: 0, bind: { v4: '127.0.0.1' }, rcvbufBytes: 4096 });
    try {
      // The kernel doubles the request (bookkeeping) and caps it at rmem_max first (root may exceed it only with SO_RCVBUFFORCE).
      if (Number.isFinite(rmemMax)) assert.equal(u.rcvbufBytes, 2 * Math.min(UDP_ENCAP_RCVBUF, rmemMax));
      assert.ok(u.rcvbufBytes > small.rcvbufBytes || rmemMax * 2 <= small.rcvbufBytes, `grown: ${u.rcvbufBytes} vs the default ${small.rcvbufBytes}`);
      assert.ok(small.rcvbufBytes > 0, 'a smaller request leaves the default, never shrinks it');
    } finally {
      u.close();
      small.close();
    }
    assert.equal(u.rcvbufBytes, 0, 'closed: unknown');
  });
});
