/**
 * test/io/nfqueue.test.ts: the NFQUEUE ESP receiver against the kernel (root only).
 *
 *   ┌ A (esp-flood) ─────┐        ┌ B (nfqueue-recv) ──────────────────────────────────────┐
 *   │ egtqa 192.0.2.1/24 ├────────┤ egtqb 192.0.2.2/24, 2001:db8::2/64                     │
 *   │ 2001:db8::1/64     │  1500  │ raw PREROUTING -p esp -j NFQUEUE --queue-num 7 (v4+v6) │
 *   └────────────────────┘        │ filter INPUT -m conntrack (enables defrag, as NAT does)│
 *                                 └────────────────────────────────────────────────────────┘
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { NFQUEUE_MAX_PACKET_BYTES } from '../../src/io/nfqueue.js';
import { BackgroundFixture, addressedPair, rootSkipReason, runFixture } from './helpers.js';
import type { Netns } from './helpers.js';

const skip = rootSkipReason(['ip', 'iptables', 'ip6tables']);
const QUEUE = 7;

describe('NFQUEUE ESP receiver', { skip: skip ?? false }, () => {
  let a: Netns;
  let b: Netns;
  const bg: BackgroundFixture[] = [];

  before(() => {
    ({ a, b } = addressedPair('q', ['192.0.2.1', '192.0.2.2'], ['2001:db8::1', '2001:db8::2']));
    for (const t of ['iptables', 'ip6tables']) {
      b.run([t, '-w', '5', '-t', 'raw', '-A', 'PREROUTING', '-p', 'esp', '-j', 'NFQUEUE', '--queue-num', String(QUEUE)]);
      b.run([t, '-w', '5', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']);
    }
  });

  after(() => {
    for (const f of bg) f.kill();
    a.del();
    b.del();
  });

  for (const [k, impl] of (['native', 'npm'] as const).entries()) {
  test(`${k + 1}: ${impl}: IPv4 and IPv6 ESP of every size up to the limit is delivered whole, then dropped`, async () => {
    const rx = new BackgroundFixture(b, import.meta.url, 'nfqueue-recv', [String(QUEUE), impl]);
    bg.push(rx);
    const ready = await rx.waitFor('ready');
    assert.match(String(ready.second), /^ERR_NFQUEUE: cannot bind NFQUEUE 7 .*already bound by netlink port \d+/, 'a second bind names the holder');

    // ESP payload sizes: small, one MTU, fragmented jumbo, and the largest the receiver answers.
    const sizes = [16, 1400, 9000, NFQUEUE_MAX_PACKET_BYTES - 40];
    const flood = runFixture(a, import.meta.url, 'esp-flood', ['192.0.2.2', '2001:db8::2', '3', sizes.join(','), 'sync', 'noprobe'], 30_000).last.result as { ok: Record<string, number> };
    assert.equal(flood.ok['4'], 3 * sizes.length);
    assert.equal(flood.ok['6'], 3 * sizes.length);

    // Bounded wait for the last packets to be handled, then collect.
    await new Promise((r) => setTimeout(r, 300));
    const res = (await rx.finish()).result as {
      stats: { received: number; delivered: number; callbackErrors: number };
      proc: { queueTotal: number; copyRange: number; queueDropped: number; userDropped: number };
      seen: { version: number; length: number; spi: number; seq: number }[];
      badContent: number;
      rawSocketBytesOrDrops: number;
      boundAfterClose: boolean;
    };
    const want = 2 * 3 * sizes.length;
    assert.equal(res.stats.received, want);
    assert.equal(res.stats.delivered, want);
    assert.equal(res.stats.callbackErrors, 0);
    assert.equal(res.badContent, 0, 'outer header and ESP bytes intact');
    for (const [n, size] of sizes.entries()) {
      for (const v of [4, 6]) {
        const total = size + (v === 4 ? 20 : 40);
        const hits = res.seen.filter((s) => s.version === v && s.length === total && s.spi === 0x0a0b0c0d);
        assert.deepEqual(hits.map((s) => s.seq).sort(), [0, 1, 2], `case ${n + 1}: IPv${v} ${total} bytes, rounds 0..2`);
      }
    }
    assert.equal(res.proc.queueTotal, 0, 'every packet got its verdict');
    assert.equal(res.proc.queueDropped + res.proc.userDropped, 0, 'no queue overflow');
    assert.equal(res.proc.copyRange, 65531, 'the kernel clamps the 0xffff copy range to 65531');
    assert.equal(res.rawSocketBytesOrDrops, 0, 'NF_DROP: no ESP reached the stack (a raw ESP socket saw nothing)');
    assert.equal(res.boundAfterClose, impl === 'npm', impl === 'native' ? 'close() unbinds the queue' : 'the npm binding cannot unbind (documented)');
  });
  }

  test('3: native: a burst of 20,000 packets: every one delivered or counted by the kernel, none left queued', async () => {
    const rx = new BackgroundFixture(b, import.meta.url, 'nfqueue-recv', [String(QUEUE), 'native', 'count-only']);
    bg.push(rx);
    await rx.waitFor('ready');
    const rounds = 10_000;
    const flood = runFixture(a, import.meta.url, 'esp-flood', ['192.0.2.2', '2001:db8::2', String(rounds), '64', 'sync', 'noprobe'], 60_000).last.result as { ok: Record<string, number> };
    const sent = (flood.ok['4'] ?? 0) + (flood.ok['6'] ?? 0);
    assert.equal(sent, 2 * rounds, 'the flood sent every packet');
    await new Promise((r) => setTimeout(r, 500));
    const res = (await rx.finish()).result as {
      stats: { received: number; delivered: number; truncated: number; verdictErrors: number; batches: number };
      proc: { queueTotal: number; queueDropped: number; userDropped: number };
      seenCount: number;
    };
    const kernelDropped = res.proc.queueDropped + res.proc.userDropped;
    assert.equal(res.stats.received + kernelDropped, sent, `every packet accounted: ${res.stats.received} received + ${kernelDropped} dropped by the kernel`);
    assert.equal(res.stats.delivered, res.stats.received, 'all received packets delivered');
    assert.equal(res.seenCount, res.stats.delivered);
    assert.equal(res.stats.truncated + res.stats.verdictErrors, 0);
    assert.equal(res.proc.queueTotal, 0, 'batch verdicts left nothing queued');
    assert.ok(res.stats.batches < res.stats.received, `batched: ${res.stats.batches} reads for ${res.stats.received} packets`);
  });
});
