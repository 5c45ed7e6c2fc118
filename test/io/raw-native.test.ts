/**
 * test/io/raw-native.test.ts: the native raw ESP sender's sendBatch against the kernel (root).
 *
 *   ┌ A (sender) ─────────────┐         ┌ B (peer, tcpdump) ──────┐
 *   │ egtpa 198.18.0.1/24     ├─────────┤ egtpb 198.18.0.2/24     │
 *   │ 2001:db8:5::1/64        │  veth   │ 2001:db8:5::2/64        │
 *   └─────────────────────────┘         └─────────────────────────┘
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { addressedPair, hasTool, rootSkipReason, runFixture } from './helpers.js';
import type { Netns } from './helpers.js';

const skip = rootSkipReason(['ip', 'tcpdump']) ?? (hasTool('tcpdump') ? undefined : 'no tcpdump');
const COUNT = 8;

/** readPcap returns the link-layer frames of a classic little-endian pcap file. */
function readPcap(file: string): Buffer[] {
  const b = readFileSync(file);
  const frames: Buffer[] = [];
  for (let off = 24; off + 16 <= b.length && frames.length < 1000;) {
    const incl = b.readUInt32LE(off + 8);
    frames.push(b.subarray(off + 16, off + 16 + incl));
    off += 16 + incl;
  }
  return frames;
}

describe('native raw ESP sender', { skip: skip ?? false }, () => {
  let a: Netns;
  let b: Netns;
  const dir = mkdtempSync(join(tmpdir(), 'egtp'));

  before(() => {
    ({ a, b } = addressedPair('p', ['198.18.0.1', '198.18.0.2'], ['2001:db8:5::1', '2001:db8:5::2']));
  });

  after(() => {
    a.del();
    b.del();
    rmSync(dir, { recursive: true, force: true });
  });

  test('1: one sendBatch per family arrives byte for byte, right addresses, DF on IPv4', async () => {
    const pcap = join(dir, 'esp.pcap');
    const dump = spawn('ip', ['netns', 'exec', b.name, 'tcpdump', '-U', '-n', '-i', 'egtpb', '-c', String(2 * COUNT), '-w', pcap, 'esp'], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => dump.on('exit', () => resolve()));
    await new Promise((r) => setTimeout(r, 1000)); // tcpdump attaches
    // Resolve neighbours first so no packet waits in ARP/ND queues.
    a.run(['ping', '-c1', '-W2', '198.18.0.2']);
    a.run(['ping', '-6', '-c1', '-W2', '2001:db8:5::2']);
    const res = runFixture(a, import.meta.url, 'raw-native-batch', ['198.18.0.2', '2001:db8:5::2', String(COUNT)]).last.result as { sent4: number; sent6: number };
    assert.equal(res.sent4, COUNT);
    assert.equal(res.sent6, COUNT);
    const timer = setTimeout(() => dump.kill(), 10_000);
    await exited;
    clearTimeout(timer);
    const frames = readPcap(pcap);
    const v4 = frames.filter((f) => f.readUInt16BE(12) === 0x0800).map((f) => f.subarray(14));
    const v6 = frames.filter((f) => f.readUInt16BE(12) === 0x86dd).map((f) => f.subarray(14));
    assert.equal(v4.length, COUNT);
    assert.equal(v6.length, COUNT);
    for (let i = 0; i < COUNT; i++) {
      const want = Buffer.alloc(100 + i, i);
      want.writeUInt32BE(0x0a0b0c0d, 0);
      want.writeUInt32BE(i + 1, 4);
      const p4 = v4[i] ?? Buffer.alloc(20);
      assert.equal(p4[9], 50, `case ${i}: IPv4 protocol ESP`);
      assert.equal(p4.readUInt16BE(6) & 0x4000, 0x4000, `case ${i}: DF set`);
      assert.equal(p4.subarray(12, 16).join('.'), '198.18.0.1');
      assert.equal(p4.subarray(16, 20).join('.'), '198.18.0.2');
      assert.deepEqual(p4.subarray(20), want, `case ${i}: IPv4 payload byte for byte`);
      const p6 = v6[i] ?? Buffer.alloc(40);
      assert.equal(p6[6], 50, `case ${i}: IPv6 next header ESP`);
      assert.equal(p6.subarray(24, 40).toString('hex'), '20010db8000500000000000000000002');
      assert.deepEqual(p6.subarray(40), want, `case ${i}: IPv6 payload byte for byte`);
    }
  });
});
