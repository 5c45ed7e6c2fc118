import assert from 'node:assert/strict';
import { test } from 'node:test';

import { defaultSendBatch, openNativeEspSender, perPacketOnly } from './raw-native.js';
import type { RawAddon } from './raw-native.js';
import type { Family } from './types.js';

/** fakeAddon records sends; packets whose first byte is in `fail` get that errno. */
function fakeAddon(fail: Map<number, number>): RawAddon & { sent: Array<{ fd: number; dst: string; bytes: string }>; closed: number[] } {
  const sent: Array<{ fd: number; dst: string; bytes: string }> = [];
  const closed: number[] = [];
  return {
    sent,
    closed,
    RAW_BATCH_MAX: 256,
    open: (family: Family) => (family === 4 ? 10 : 11),
    send: (fd, _f, dst, buf, off, len) => {
      const e = fail.get(buf[off] ?? -1);
      if (e !== undefined) return -e;
      sent.push({ fd, dst, bytes: buf.subarray(off, off + len).toString('hex') });
      return 0;
    },
    sendBatch: (fd, _f, dsts, bufs, offsets, lengths, count, errnos) => {
      let n = 0;
      for (let i = 0; i < count; i++) {
        const buf = bufs[i] ?? Buffer.alloc(0);
        const off = offsets[i] ?? 0;
        const e = fail.get(buf[off] ?? -1);
        errnos[i] = e === undefined ? 0 : -e;
        if (e !== undefined) continue;
        sent.push({ fd, dst: dsts[i] ?? '', bytes: buf.subarray(off, off + (lengths[i] ?? 0)).toString('hex') });
        n++;
      }
      return n;
    },
    close: (fd) => {
      closed.push(fd);
      return 0;
    },
  };
}

test('1: sendBatch sends each packet at its offset and counts failures (EAGAIN, ENOBUFS, EINVAL)', () => {
  const addon = fakeAddon(new Map([[0xee, 11], [0xef, 105], [0xea, 22]]));
  const s = openNativeEspSender({}, addon);
  const backing = Buffer.from('00a1a2a300eeee00b1b200efef00eaea00c1', 'hex');
  const bufs = [backing, backing, backing, backing, backing];
  const offsets = Uint32Array.from([1, 5, 8, 11, 14]);
  const lengths = Uint32Array.from([3, 2, 2, 2, 1]);
  const failed = new Uint8Array(5);
  const n = s.sendBatch(4, ['198.18.0.2', '198.18.0.3', '198.18.0.4', '198.18.0.5', '198.18.0.6'], bufs, offsets, lengths, 5, failed);
  assert.equal(n, 2);
  assert.deepEqual([...failed], [0, 1, 0, 1, 1]);
  assert.deepEqual(addon.sent, [
    { fd: 10, dst: '198.18.0.2', bytes: 'a1a2a3' },
    { fd: 10, dst: '198.18.0.4', bytes: 'b1b2' },
  ]);
  // EAGAIN and ENOBUFS are kernel failures; EINVAL (bad address/range) is a refusal.
  assert.deepEqual([s.stats.sent, s.stats.failed, s.stats.refused], [2, 2, 1]);
});

test('2: send counts sent, failed and refused; close closes both sockets once', () => {
  const addon = fakeAddon(new Map([[0xee, 105], [0xea, 22]]));
  const s = openNativeEspSender({}, addon);
  const buf = Buffer.from('aaeeea', 'hex');
  assert.equal(s.send(6, '2001:db8::2', buf, 0, 1), true);
  assert.equal(s.send(6, '2001:db8::2', buf, 1, 1), false);
  assert.equal(s.send(6, '2001:db8::2', buf, 2, 1), false);
  assert.deepEqual([s.stats.sent, s.stats.failed, s.stats.refused], [1, 1, 1]);
  assert.equal(addon.sent[0]?.fd, 11);
  s.close();
  s.close();
  assert.deepEqual(addon.closed, [10, 11]);
});

test('3: a family without a socket refuses the whole batch', () => {
  const addon = fakeAddon(new Map());
  const s = openNativeEspSender({ families: [4] }, addon);
  const failed = new Uint8Array(2);
  const buf = Buffer.from('0102', 'hex');
  assert.equal(s.sendBatch(6, ['2001:db8::2', '2001:db8::3'], [buf, buf], Uint32Array.from([0, 1]), Uint32Array.from([1, 1]), 2, failed), 0);
  assert.deepEqual([...failed], [1, 1]);
  assert.equal(s.stats.refused, 2);
  assert.equal(addon.sent.length, 0);
});

test('4: perPacketOnly hides sendBatch (ESPGATE_SEND_BATCH=0), keeps send and close', () => {
  const addon = fakeAddon(new Map());
  const s = perPacketOnly(openNativeEspSender({}, addon));
  assert.equal('sendBatch' in s, false, 'the engine then sends one packet per call');
  assert.equal(s.send(4, '198.18.0.2', Buffer.from('01', 'hex'), 0, 1), true);
  assert.equal(addon.sent.length, 1);
  s.close();
  assert.deepEqual(addon.closed, [10, 11]);
  const saved = process.env['ESPGATE_SEND_BATCH'];
  try {
    // [case, env value, batching on]
    const cases: [string | undefined, boolean][] = [/* 1 */ [undefined, true], /* 2 */ ['0', false], /* 3 */ ['1', true], /* 4 */ ['no', true]];
    for (const [i, [v, want]] of cases.entries()) {
      if (v === undefined) delete process.env['ESPGATE_SEND_BATCH'];
      else process.env['ESPGATE_SEND_BATCH'] = v;
      assert.equal(defaultSendBatch(), want, `case ${i + 1}`);
    }
  } finally {
    if (saved === undefined) delete process.env['ESPGATE_SEND_BATCH'];
    else process.env['ESPGATE_SEND_BATCH'] = saved;
  }
});
