import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FakeTun } from '../../test/support/fakes.js';
import { loadAddon } from '../io/native-addon.js';
import { NativeEspSender } from '../io/raw-native.js';
import type { RawAddon } from '../io/raw-native.js';
import { openStandInIo } from '../io/stand-in.js';
import { loadNativeAddon, openStandInTun } from '../io/tun-native.js';
import type { EspSender } from '../io/types.js';
import { PathWarmUp } from './warmup.js';

const raw = loadAddon<RawAddon>('espgate_raw').addon;
const skip = raw === undefined || loadNativeAddon() === undefined ? 'native addons not built (npm run build:native)' : false;

/** daemonLike returns edges of the daemon's classes (over stand-ins, so no root is needed) and a closer. */
function daemonLike(vnet: boolean, gro: boolean): { tun: NonNullable<ReturnType<typeof openStandInTun>>; sender: EspSender; close: () => void } {
  const tun = openStandInTun('real', vnet, gro);
  const sink = openStandInTun('real-esp', false, false);
  assert.ok(tun !== undefined && sink !== undefined && raw !== undefined);
  return { tun, sender: new NativeEspSender(raw, sink.fd, sink.fd), close: () => { tun.close(); sink.close(); } };
}

test('path warm-up: every packet goes out as ESP and every inbound one is written, with no drop, for each TUN mode', { skip }, () => {
  const modes: [string, boolean, boolean][] = [['offloads + coalescing (the default)', true, true], ['offloads, no coalescing', true, false], ['plain TUN', false, false]];
  for (const [i, [what, vnet, gro]] of modes.entries()) {
    const real = daemonLike(vnet, gro);
    const io = openStandInIo(real);
    assert.ok(io !== undefined, `case ${i + 1}: stand-ins for ${what}`);
    assert.equal(io.tun.vnetHdr, vnet, `case ${i + 1}: same vnetHdr as the real TUN`);
    assert.equal(io.tun.writeVnet !== undefined, vnet && gro, `case ${i + 1}: same coalescing as the real TUN`);
    const w = new PathWarmUp(io, ['aes128gcm16', 'aes256gcm16']);
    try {
      assert.equal(w.run(12), 12, `case ${i + 1}: ran`);
      const r = w.report();
      assert.equal(r.drops, 0, `case ${i + 1}: no drop (${what})`);
      // 12 batches: 9 of a third of the prepared packets (6 per peer and family with offloads, 5 without), 3 of one echo request.
      const perThird = Math.ceil((vnet ? 24 : 20) / 3);
      assert.ok(w.engine.totals.tunRead >= 9 * (perThird - 1) + 3, `case ${i + 1}: packets were fed (${w.engine.totals.tunRead})`);
      assert.equal(r.espSent, r.expectedSent, `case ${i + 1}: one ESP packet per packet or segment`);
      assert.equal(r.sentTaken, r.expectedSent, `case ${i + 1}: each reached the stand-in sender's far end`);
      assert.equal(r.tunWritten, r.expectedWritten, `case ${i + 1}: every inbound packet was written`);
    } finally {
      w.close();
      w.close();
      real.close();
    }
    assert.equal(w.run(1), 0, `case ${i + 1}: nothing runs after close`);
  }
});

test('path warm-up: the super-packets of an offload TUN are split (more ESP packets than TUN reads)', { skip }, () => {
  const real = daemonLike(true, true);
  const io = openStandInIo(real);
  assert.ok(io !== undefined);
  const w = new PathWarmUp(io, ['aes128gcm16']);
  try {
    w.run(3);
    const t = w.engine.totals;
    assert.ok(t.espSent > t.tunRead, `espSent ${t.espSent} > tunRead ${t.tunRead}`);
  } finally {
    w.close();
    real.close();
  }
});

test('openStandInIo: no stand-ins for edges of other classes (a mismatched warm-up would hurt)', { skip }, () => {
  const real = daemonLike(true, true);
  const fakeTun = new FakeTun();
  assert.equal(openStandInIo({ tun: fakeTun, sender: real.sender }), undefined, 'case 1: a TUN of another class');
  const perPacket: EspSender = { send: () => true, close: () => {} };
  assert.equal(openStandInIo({ tun: real.tun, sender: perPacket }), undefined, 'case 2: a sender of another class');
  real.close();
});
