import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileReplayStore } from './replay-store.js';
import { InboundSa, OutboundSa } from './sa.js';
import { sealEsp, openEsp } from './codec.js';
import { ReplayWindow } from './replay.js';

const KEY = new Uint8Array(20).fill(7);
const inner = (): Buffer => {
  const p = Buffer.alloc(28);
  p[0] = 0x45; p.writeUInt16BE(28, 2); p[9] = 17;
  return p;
};

test('ReplayWindow resumeFrom: everything at or below the resume point is seen, above is fresh (numbered cases)', () => {
  const w = new ReplayWindow({ size: 64, resumeFrom: 1000n });
  const cases: [number, number, string | null][] = [[1, 1000, 'replay'], [2, 999, 'replay'], [3, 937, 'replay'], [4, 936, 'too-old'], [5, 1001, null], [6, 1100, null]];
  for (const [n, seq, want] of cases) assert.equal(w.check(0, seq), want, `case ${n}: seq ${seq}`);
  assert.equal(w.accept(0, 1002), null);
  assert.equal(w.check(0, 1001), null, 'case 7: a gap above the resume point stays fresh after sliding');
  const edge = new ReplayWindow({ size: 64, resumeFrom: 31n });
  assert.equal(edge.check(0, 31), 'replay', 'case 8: resume at the last bit of a word');
  assert.equal(edge.accept(0, 32), null, 'case 9: next word');
  assert.equal(edge.check(0, 30), 'replay', 'case 10');
});

test('FileReplayStore: a restarted receiver refuses every packet it accepted before (kill -9 model)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egrs-'));
  try {
    const out = new OutboundSa({ spi: 0x300, algorithm: 'aes128gcm16', keyMaterial: KEY });
    const pkts: Buffer[] = [];
    for (let i = 0; i < 50; i++) {
      const b = Buffer.alloc(128);
      const n = sealEsp(out, inner(), 0, 28, b, 0);
      assert.equal(typeof n, 'number');
      pkts.push(b.subarray(0, n as number));
    }
    const store1 = new FileReplayStore(dir);
    const rx1 = new InboundSa({ spi: 0x300, algorithm: 'aes128gcm16', keyMaterial: KEY, replayStore: store1 });
    for (const p of pkts.slice(0, 40)) {
      assert.equal(typeof openEsp(rx1, Buffer.from(p), 0, p.length), 'object');
      rx1.persistReplay();
    }
    // No close, no flush: the process "dies"; a new one opens the same directory.
    const store2 = new FileReplayStore(dir);
    assert.equal(store2.load(0x300), 40n);
    const rx2 = new InboundSa({ spi: 0x300, algorithm: 'aes128gcm16', keyMaterial: KEY, replayStore: store2 });
    for (const p of pkts.slice(0, 40)) {
      const r = openEsp(rx2, Buffer.from(p), 0, p.length);
      assert.ok(r === 'replay' || r === 'too-old', `an accepted packet is refused after the restart (got ${JSON.stringify(r)})`);
    }
    for (const p of pkts.slice(40)) assert.equal(typeof openEsp(rx2, Buffer.from(p), 0, p.length), 'object', 'newer packets pass');
    rx2.persistReplay();
    assert.equal(new FileReplayStore(dir).load(0x300), 50n);
    assert.deepEqual(store2.flush(), []);
    store1.close(); store2.close();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('FileReplayStore: missing or half-written state loads as 0 (a fresh window)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egrs-'));
  try {
    const s = new FileReplayStore(dir);
    assert.equal(s.load(0x400), 0n);
    writeFileSync(s.pathOf(0x401), Buffer.from([0, 0, 0]));
    assert.equal(new FileReplayStore(dir).load(0x401), 0n);
    s.save(0x402, 1, 2);
    assert.equal(new FileReplayStore(dir).load(0x402), (1n << 32n) | 2n);
    s.close();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('FileReplayStore: flush syncs only what was saved since the last flush', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egrs-dirty-'));
  try {
    const store = new FileReplayStore(dir);
    for (const spi of [0x1001, 0x1002, 0x1003]) store.load(spi);
    assert.equal(store.dirtyCount, 0, '1: opening files makes nothing dirty');
    store.save(0x1002, 0, 7);
    store.save(0x1002, 0, 8);
    store.save(0x1003, 0, 1);
    assert.equal(store.dirtyCount, 2, '2: two SPIs saved');
    assert.deepEqual(store.flush(), [], '3: flushed without errors');
    assert.equal(store.dirtyCount, 0, '4: clean after the flush');
    assert.equal(store.load(0x1002), 8n, '5: the last top is what is stored');
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('FileReplayStore.flushAsync: syncs what was dirty off the event loop; saves during it stay dirty; one at a time', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'espgate-replay-async-'));
  const store = new FileReplayStore(dir);
  try {
    store.save(0x1001, 0, 5);
    store.save(0x1002, 0, 9);
    assert.equal(store.dirtyCount, 2);
    const first = store.flushAsync();
    assert.equal(store.dirtyCount, 0, 'taken off the dirty set at once');
    assert.deepEqual(await store.flushAsync(), [], 'a second call while one runs does nothing');
    store.save(0x1001, 0, 6); // lands while the first sync may still run
    assert.deepEqual(await first, []);
    assert.equal(store.dirtyCount, 1, 'the save made during the flush waits for the next one');
    assert.deepEqual(await store.flushAsync(), []);
    assert.equal(store.dirtyCount, 0);
    assert.equal(store.load(0x1001), 6n, 'the record is the last save');
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
