import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { loadAddon } from './native-addon.js';
import { NativeEspSender } from './raw-native.js';
import type { RawAddon } from './raw-native.js';
import { openStandInIo } from './stand-in.js';
import { loadNativeAddon, openStandInTun } from './tun-native.js';
import { VNET_HDR_LEN } from './vnet.js';

const raw = loadAddon<RawAddon>('espgate_raw').addon;
const skip = raw === undefined || loadNativeAddon() === undefined ? 'native addons not built (npm run build:native)' : false;

test('stand-in TUN and sender frame packets as the kernel edges do, and close both ends', { skip }, () => {
  for (const [i, vnet] of [true, false].entries()) {
    const tun = openStandInTun('real', vnet, vnet);
    const sink = openStandInTun('real-esp', false, false);
    assert.ok(tun !== undefined && sink !== undefined && raw !== undefined);
    const io = openStandInIo({ tun, sender: new NativeEspSender(raw, sink.fd, sink.fd) });
    assert.ok(io !== undefined, `case ${i + 1}: stand-ins`);
    try {
      // "The kernel" hands the TUN one packet, behind its virtio_net_hdr when vnet.
      const hdr = Uint8Array.from([1, 0, 0, 0, 0, 0, 20, 0, 6, 0]);
      const pkt = Buffer.from('4500001c0000400040110000c0000201c6336402', 'hex');
      assert.equal(io.feedTun(vnet ? hdr : undefined, pkt, 0, pkt.length), true, `case ${i + 1}: fed`);
      const bufs = [Buffer.alloc(200)];
      const sizes = new Int32Array(1);
      const hdrs = new Uint8Array(VNET_HDR_LEN);
      assert.equal(io.tun.readBatch(bufs, sizes, 16, hdrs), 1, `case ${i + 1}: one packet read`);
      assert.equal(sizes[0], pkt.length, `case ${i + 1}: its length, header apart`);
      assert.deepEqual(bufs[0]?.subarray(16, 16 + pkt.length), pkt, `case ${i + 1}: at the offset`);
      if (vnet) assert.deepEqual(hdrs, hdr, `case ${i + 1}: header to hdrs`);
      assert.equal(io.tun.readBatch(bufs, sizes, 16, hdrs), 0, `case ${i + 1}: then nothing`);
      // A write comes out at the far end, behind a zero header when vnet.
      assert.equal(io.tun.write(pkt, 0, pkt.length), true, `case ${i + 1}: written`);
      const got = Buffer.alloc(200);
      const n = io.takeWritten(got);
      assert.equal(n, pkt.length + (vnet ? VNET_HDR_LEN : 0), `case ${i + 1}: one datagram`);
      assert.deepEqual(got.subarray(vnet ? VNET_HDR_LEN : 0, n), pkt, `case ${i + 1}: the packet`);
      if (vnet) assert.deepEqual(got.subarray(0, VNET_HDR_LEN), Buffer.alloc(VNET_HDR_LEN), `case ${i + 1}: zero header`);
      assert.equal(io.takeWritten(got), -1, `case ${i + 1}: nothing more`);
      // The sender's sendmmsg lands in the sink, one datagram per packet, destinations ignored.
      const failed = new Uint8Array(2);
      const sent = io.sender.sendBatch?.(4, ['192.0.2.2', '192.0.2.3'], [Buffer.from('aaaa'), Buffer.from('xbbbb')], Uint32Array.from([0, 1]), Uint32Array.from([4, 4]), 2, failed);
      assert.equal(sent, 2, `case ${i + 1}: both sent`);
      assert.deepEqual([...failed], [0, 0], `case ${i + 1}: none failed`);
      assert.equal(io.takeSent(got), 4, `case ${i + 1}: first`);
      assert.equal(got.subarray(0, 4).toString(), 'aaaa', `case ${i + 1}: first bytes`);
      assert.equal(io.takeSent(got), 4, `case ${i + 1}: second`);
      assert.equal(got.subarray(0, 4).toString(), 'bbbb', `case ${i + 1}: second bytes (from its offset)`);
      assert.equal(io.takeSent(got), -1, `case ${i + 1}: no more`);
    } finally {
      io.close();
      io.close();
      tun.close();
      sink.close();
    }
    assert.equal(io.feedTun(undefined, Buffer.alloc(20), 0, 20), false, `case ${i + 1}: nothing fed after close`);
    assert.equal(io.takeSent(Buffer.alloc(10)), -1, `case ${i + 1}: nothing taken after close`);
  }
});

test('stand-in TUN: a burst is read whole and in order, many packets per system call or one per read(2)', { skip }, () => {
  // io_uring may be refused by the machine (kernel.io_uring_disabled, seccomp): then readv.
  let allowed = true;
  try { allowed = readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim() !== '2'; } catch { /* older kernel: no knob */ }
  const saved = process.env['ESPGATE_TUN_URING'];
  try {
    for (const uring of ['1', '0']) {
      for (const vnet of [true, false]) {
        const what = `uring ${uring}, vnet ${vnet}`;
        process.env['ESPGATE_TUN_URING'] = uring;
        const tun = openStandInTun('burst', vnet, vnet);
        const sink = openStandInTun('burst-esp', false, false);
        assert.ok(tun !== undefined && sink !== undefined && raw !== undefined);
        const io = openStandInIo({ tun, sender: new NativeEspSender(raw, sink.fd, sink.fd) });
        assert.ok(io !== undefined);
        try {
          if (uring === '0' || !allowed) assert.equal(tun.batchedReads, false, `${what}: readv`);
          else assert.equal(tun.batchedReads, true, `${what}: io_uring`);
          // 150 packets of different lengths, each marked with its index; header byte 1 too.
          const count = 150;
          for (let i = 0; i < count; i++) {
            const pkt = Buffer.alloc(20 + (i % 37));
            pkt.writeUInt16BE(i, 0);
            const hdr = new Uint8Array(VNET_HDR_LEN);
            hdr[1] = i & 0xff;
            assert.equal(io.feedTun(vnet ? hdr : undefined, pkt, 0, pkt.length), true, `${what}: fed ${i}`);
          }
          const bufs = Array.from({ length: 64 }, () => Buffer.alloc(200));
          const sizes = new Int32Array(64);
          const hdrs = new Uint8Array(64 * VNET_HDR_LEN);
          const got: number[] = [];
          const counts: number[] = [];
          // Bounded: 150 packets take 3 calls of up to 64; a fourth finds nothing.
          for (let call = 0; call < 10; call++) {
            const n = io.tun.readBatch(bufs, sizes, 16, hdrs);
            counts.push(n);
            if (n <= 0) break;
            for (let k = 0; k < n; k++) {
              const b = bufs[k];
              assert.ok(b !== undefined);
              const i = b.readUInt16BE(16);
              assert.equal(sizes[k], 20 + (i % 37), `${what}: packet ${i}'s length`);
              if (vnet) assert.equal(hdrs[k * VNET_HDR_LEN + 1], i & 0xff, `${what}: packet ${i}'s header`);
              got.push(i);
            }
          }
          assert.deepEqual(got, Array.from({ length: count }, (_, i) => i), `${what}: every packet, in order`);
          assert.deepEqual(counts, [64, 64, 22, 0], `${what}: full batches, then the rest, then nothing`);
        } finally {
          io.close();
          tun.close();
          sink.close();
        }
      }
    }
  } finally {
    if (saved === undefined) delete process.env['ESPGATE_TUN_URING'];
    else process.env['ESPGATE_TUN_URING'] = saved;
  }
});
