/**
 * test/io/esp-socket.test.ts: the raw-socket ESP receiver (`inbound: socket`) against the kernel
 * (root only). The same slots as the queue's: IPv4 with its header as the kernel hands it, IPv6
 * with the header the socket took off written back from the packet's addresses; every packet
 * either delivered or counted in socketDrops (SO_MEMINFO).
 *
 *   ┌ A (esp-flood) ─────┐        ┌ B (nfqueue-recv socket) ─────────────────────┐
 *   │ egtsa 192.0.2.1/24 ├────────┤ egtsb 192.0.2.2/24, 2001:db8::2/64           │
 *   │ 2001:db8::1/64     │  1500  │ no rules: ESP reaches the raw ESP sockets    │
 *   └────────────────────┘        └──────────────────────────────────────────────┘
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { BackgroundFixture, addressedPair, rootSkipReason, runFixture } from './helpers.js';
import type { Netns } from './helpers.js';

const skip = rootSkipReason(['ip']);

interface SocketResult {
  stats: { received: number; delivered: number; callbackErrors: number; truncated: number; batches: number };
  seen: { version: number; length: number; spi: number; seq: number; src: string; dst: string }[];
  seenCount: number;
  badContent: number;
  socketDrops: number;
  proc: unknown;
}

describe('raw-socket ESP receiver (inbound: socket)', { skip: skip ?? false }, () => {
  let a: Netns;
  let b: Netns;
  const bg: BackgroundFixture[] = [];

  before(() => {
    ({ a, b } = addressedPair('s', ['192.0.2.1', '192.0.2.2'], ['2001:db8::1', '2001:db8::2']));
  });

  after(() => {
    for (const f of bg) f.kill();
    a.del();
    b.del();
  });

  test('1: IPv4 and IPv6 ESP of every size is delivered whole, with the outer addresses (IPv6: header written back)', async () => {
    const rx = new BackgroundFixture(b, import.meta.url, 'nfqueue-recv', ['0', 'socket']);
    bg.push(rx);
    await rx.waitFor('ready');
    // ESP payload sizes: small, one MTU, fragmented jumbo (reassembled before local delivery),
    // and the largest an IPv6 payload can be without a jumbogram.
    const sizes = [16, 1400, 9000, 65_000];
    const flood = runFixture(a, import.meta.url, 'esp-flood', ['192.0.2.2', '2001:db8::2', '3', sizes.join(','), 'sync', 'noprobe'], 30_000).last.result as { ok: Record<string, number> };
    assert.equal(flood.ok['4'], 3 * sizes.length);
    assert.equal(flood.ok['6'], 3 * sizes.length);
    await new Promise((r) => setTimeout(r, 300));
    const res = (await rx.finish()).result as SocketResult;
    const want = 2 * 3 * sizes.length;
    assert.equal(res.stats.received, want);
    assert.equal(res.stats.delivered, want);
    assert.equal(res.stats.callbackErrors + res.stats.truncated, 0);
    assert.equal(res.badContent, 0, 'declared length, protocol 50 and the ESP bytes intact');
    assert.equal(res.socketDrops, 0);
    for (const [n, size] of sizes.entries()) {
      for (const v of [4, 6]) {
        const total = size + (v === 4 ? 20 : 40);
        const hits = res.seen.filter((s) => s.version === v && s.length === total && s.spi === 0x0a0b0c0d);
        assert.deepEqual(hits.map((s) => s.seq).sort(), [0, 1, 2], `case ${n + 1}: IPv${v} ${total} bytes, rounds 0..2`);
        const src = v === 4 ? '192.0.2.1' : '2001:db8:0:0:0:0:0:1';
        const dst = v === 4 ? '192.0.2.2' : '2001:db8:0:0:0:0:0:2';
        for (const h of hits) assert.deepEqual([h.src, h.dst], [src, dst], `case ${n + 1}: IPv${v} outer addresses`);
      }
    }
  });

  test('2: a burst of 20,000 packets: every one delivered or counted in socketDrops', async () => {
    const rx = new BackgroundFixture(b, import.meta.url, 'nfqueue-recv', ['0', 'socket', 'count-only']);
    bg.push(rx);
    await rx.waitFor('ready');
    const rounds = 10_000;
    const flood = runFixture(a, import.meta.url, 'esp-flood', ['192.0.2.2', '2001:db8::2', String(rounds), '64', 'sync', 'noprobe'], 60_000).last.result as { ok: Record<string, number> };
    const sent = (flood.ok['4'] ?? 0) + (flood.ok['6'] ?? 0);
    assert.equal(sent, 2 * rounds, 'the flood sent every packet');
    await new Promise((r) => setTimeout(r, 500));
    const res = (await rx.finish()).result as SocketResult;
    assert.equal(res.stats.received + res.socketDrops, sent, `every packet accounted: ${res.stats.received} received + ${res.socketDrops} dropped at the sockets`);
    assert.equal(res.stats.delivered, res.stats.received);
    assert.equal(res.seenCount, res.stats.delivered);
    assert.ok(res.stats.batches < res.stats.received, `batched: ${res.stats.batches} reads for ${res.stats.received} packets`);
  });

  test('3: with the smallest receive buffer the burst overflows it, and the kernel\'s count of what it dropped closes the books', async () => {
    const rx = new BackgroundFixture(b, import.meta.url, 'nfqueue-recv', ['0', 'socket', 'count-only', 'tiny-buffer']);
    bg.push(rx);
    await rx.waitFor('ready');
    const flood = runFixture(a, import.meta.url, 'esp-flood', ['192.0.2.2', '2001:db8::2', '5000', '64', 'sync', 'noprobe'], 60_000).last.result as { ok: Record<string, number> };
    const sent = (flood.ok['4'] ?? 0) + (flood.ok['6'] ?? 0);
    await new Promise((r) => setTimeout(r, 500));
    const res = (await rx.finish()).result as SocketResult;
    assert.ok(res.socketDrops > 0, `the kernel dropped some (received ${res.stats.received} of ${sent})`);
    assert.equal(res.stats.received + res.socketDrops, sent);
  });
});
