/**
 * test/io/rawsock.test.ts: the raw ESP sender against the kernel (root only).
 *
 *   ┌ A (sender) ───────┐        ┌ R (router) ─────────────────┐        ┌ B (peer) ─────────┐
 *   │ egta 192.0.2.1/24 ├────────┤ egtra 192.0.2.254           │        │                   │
 *   │ 2001:db8:1::1/64  │  1500  │ 2001:db8:1::fe              │  1400  │ egtb              │
 *   │ default via R     │        │ egtrb 198.51.100.254 ───────┼────────┤ 198.51.100.2/24   │
 *   └───────────────────┘        │ 2001:db8:2::fe              │        │ 2001:db8:2::2/64  │
 *                                └─────────────────────────────┘        └───────────────────┘
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { BackgroundFixture, Netns, hasTool, rootSkipReason, runFixture, vethBetween } from './helpers.js';

const skip = rootSkipReason(['ip', 'sysctl']);

describe('raw ESP sender', { skip: skip ?? false }, () => {
  let a: Netns;
  let r: Netns;
  let b: Netns;
  const bg: BackgroundFixture[] = [];

  before(() => {
    a = new Netns('a');
    r = new Netns('r');
    b = new Netns('b');
    vethBetween(a, 'egta', r, 'egtra');
    vethBetween(r, 'egtrb', b, 'egtb', 1400);
    a.run(['ip', 'addr', 'add', '192.0.2.1/24', 'dev', 'egta']);
    a.run(['ip', 'addr', 'add', '2001:db8:1::1/64', 'dev', 'egta']);
    r.run(['ip', 'addr', 'add', '192.0.2.254/24', 'dev', 'egtra']);
    r.run(['ip', 'addr', 'add', '2001:db8:1::fe/64', 'dev', 'egtra']);
    r.run(['ip', 'addr', 'add', '198.51.100.254/24', 'dev', 'egtrb']);
    r.run(['ip', 'addr', 'add', '2001:db8:2::fe/64', 'dev', 'egtrb']);
    b.run(['ip', 'addr', 'add', '198.51.100.2/24', 'dev', 'egtb']);
    b.run(['ip', 'addr', 'add', '2001:db8:2::2/64', 'dev', 'egtb']);
    a.run(['ip', 'route', 'add', 'default', 'via', '192.0.2.254']);
    a.run(['ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:1::fe']);
    b.run(['ip', 'route', 'add', 'default', 'via', '198.51.100.254']);
    b.run(['ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:2::fe']);
    r.run(['sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  });

  after(() => {
    for (const f of bg) f.kill();
    for (const ns of [a, r, b]) ns.del();
  });

  test('1: with a poisoned PMTU cache (mtu 1400) our 1450-byte ESP still leaves whole', () => {
    const withDump = hasTool('tcpdump');
    const res = runFixture(a, import.meta.url, 'rawsock-pmtu', withDump ? ['tcpdump'] : [], 60_000).last.result as Record<string, unknown>;
    assert.match(String(res.routeGet4), /mtu 1400/, 'IPv4 PMTU of the peer is poisoned');
    assert.match(String(res.routeGet6), /mtu 1400/, 'IPv6 PMTU of the peer is poisoned');
    for (let i = 0; i < 3; i++) {
      assert.equal(res[`probeSend4.${i}`], true);
      assert.equal(res[`probeSend6.${i}`], true);
    }
    assert.equal(res.probeFragCreates4, 0, 'EspSender: no IPv4 fragments created');
    assert.equal(res.probeFragCreates6, 0, 'EspSender: no IPv6 fragments created');
    assert.ok(Number(res.legacyFragCreates4) >= 2, 'control: a socket without PROBE fragments (IPv4)');
    assert.ok(Number(res.legacyFragCreates6) >= 2, 'control: a socket without PROBE fragments (IPv6)');
    if (!withDump) return;
    const wire = res.wire as string[];
    const ours = wire.filter((l) => l.includes('spi=0x11111111'));
    const ours4 = ours.filter((l) => l.includes('IP ('));
    const ours6 = ours.filter((l) => l.includes('IP6 ('));
    assert.equal(ours4.length, 3, 'three whole IPv4 ESP packets on the wire');
    assert.equal(ours6.length, 3, 'three whole IPv6 ESP packets on the wire');
    for (const l of ours4) assert.match(l, /flags \[DF\], proto ESP \(50\), length 1470\)/);
    for (const l of ours6) assert.match(l, /next-header ESP \(50\) payload length: 1450\)/);
    const legacy = wire.filter((l) => l.includes('0x22222222') || l.includes('ip-proto-50') || /frag \(/.test(l));
    assert.ok(legacy.some((l) => l.includes('flags [+]')), 'control: IPv4 fragments on the wire');
    assert.ok(legacy.some((l) => l.includes('next-header Fragment (44)')), 'control: IPv6 fragments on the wire');
  });

  test('2: inbound ESP copies are never read: the kernel drops them at the socket', async () => {
    const probe = new BackgroundFixture(b, import.meta.url, 'esp-rx-probe');
    bg.push(probe);
    await probe.waitFor('ready');
    const flood = runFixture(a, import.meta.url, 'esp-flood', ['198.51.100.2', '2001:db8:2::2', '200', '1000'], 30_000).last.result as { ok: Record<string, number> };
    assert.equal(flood.ok['4'], 200);
    assert.equal(flood.ok['6'], 200);
    const res = (await probe.finish()).result as { raw4: { rxQueue: number; drops: number }[]; raw6: { rxQueue: number; drops: number }[] };
    for (const [fam, socks] of [['IPv4', res.raw4], ['IPv6', res.raw6]] as const) {
      assert.equal(socks.length, 1, `${fam}: one protocol-50 raw socket`);
      const s = socks[0];
      assert.ok(s.rxQueue > 0, `${fam}: copies queued and left unread`);
      assert.ok(s.rxQueue <= 16384, `${fam}: the queue stays at the minimum receive buffer (${s.rxQueue} bytes)`);
      assert.ok(s.drops >= 150, `${fam}: the kernel dropped the rest (${s.drops} drops)`);
    }
  });
});
