/**
 * Two gateways, alice and bob, joined by in-memory twins of the TUN and the ESP link: the whole
 * data path (unmap → classify → seal → wire → open → policy → map) without root.
 *
 *   alice kernel ──FakeTun── Engine(alice) ══ESP══ Engine(bob) ──FakeTun── bob kernel
 *   198.18.0.1                                                           198.18.0.2
 *   fake prefix 198.19.0.0/24, 2001:db8:0:ff01::/64
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { buildTables } from '../src/daemon/tables.js';
import { staticSaFactory } from '../src/daemon/sa-factory.js';
import { Engine } from '../src/datapath/engine.js';
import { buildIpPacket, udpDatagram, tcpSegment, transportChecksum } from '../src/packet/build.js';
import { formatIpAddress } from '../src/packet/address.js';
import { internetChecksum } from '../src/packet/checksum.js';
import { FakeTun, EspLink } from './support/fakes.js';
import { sealEsp } from '../src/esp/codec.js';

const K_AB = '0x' + '11'.repeat(16) + 'a1a2a3a4';
const K_BA = '0x' + '22'.repeat(16) + 'b1b2b3b4';

function cfgText(me: string, peer: string, meV6: string, peerV6: string, outSpi: string, inSpi: string, outKey: string, inKey: string, dir: string): string {
  return `
name: ${me}
stateDir: ${dir}
local: { protect: [198.18.0.${me === 'alice' ? 1 : 2}/32, "${meV6}/128"] }
prefixes:
  - { real: 198.18.0.0/24, fake: 198.19.0.0/24 }
  - { real: "2001:db8:0:1::/64", fake: "2001:db8:0:ff01::/64" }
peers:
  - name: ${peer}
    endpoint: 198.18.0.${me === 'alice' ? 2 : 1}
    protect: [198.18.0.${me === 'alice' ? 2 : 1}/32, "${peerV6}/128"]
    sa:
      out: { spi: "${outSpi}", key: "${outKey}" }
      in: { spi: "${inSpi}", key: "${inKey}" }
`;
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'eg2gw-'));
  const ca = parseConfig(cfgText('alice', 'bob', '2001:db8:0:1::1', '2001:db8:0:1::2', '0x1002', '0x2001', K_AB, K_BA, join(dir, 'a')));
  const cb = parseConfig(cfgText('bob', 'alice', '2001:db8:0:1::2', '2001:db8:0:1::1', '0x2001', '0x1002', K_BA, K_AB, join(dir, 'b')));
  const link = new EspLink();
  const outer = (src: string, dst: string, esp: Buffer): Buffer => buildIpPacket({ src, dst, protocol: 50, payload: esp });
  const ea = link.endpoint('198.18.0.1', outer);
  const eb = link.endpoint('198.18.0.2', outer);
  const tunA = new FakeTun();
  const tunB = new FakeTun();
  const A = new Engine(buildTables(ca, staticSaFactory(ca.stateDir)), tunA, ea.sender, ea.receiver);
  const B = new Engine(buildTables(cb, staticSaFactory(cb.stateDir)), tunB, eb.sender, eb.receiver);
  A.start();
  B.start();
  return { dir, link, tunA, tunB, A, B, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const addrs = (p: Buffer): [string, string] => {
  const v = p[0] >> 4;
  return v === 4 ? [formatIpAddress(p, 12, 4), formatIpAddress(p, 16, 4)] : [formatIpAddress(p, 8, 6), formatIpAddress(p, 24, 6)];
};

/** checksumsOk verifies the IPv4 header checksum and the transport checksum by recomputation. */
function checksumsOk(p: Buffer): boolean {
  if (p[0] >> 4 === 4 && internetChecksum(p, 0, 20) !== 0) return false;
  const v4 = p[0] >> 4 === 4;
  const l4 = v4 ? 20 : 40;
  const proto = v4 ? p[9] : p[6];
  const stored = p.readUInt16BE(l4 + (proto === 6 ? 16 : proto === 17 ? 6 : 2));
  return transportChecksum(p, 0, p.length) === stored;
}

test('two gateways: UDP over IPv4 and TCP over IPv6, both directions, real addresses on the wire', () => {
  const g = setup();
  try {
    // 1. alice → bob, IPv4 UDP, as the kernel hands it to the TUN after the OUTPUT NETMAP
    g.tunA.inject(buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(40000, 53, Buffer.from('hello bob')) }));
    assert.equal(g.link.wire.length, 1);
    const wire = g.link.wire[0];
    assert.equal(wire[9], 50, 'only ESP on the wire');
    assert.deepEqual(addrs(wire), ['198.18.0.1', '198.18.0.2']);
    assert.equal(wire.indexOf('hello bob'), -1, 'payload not visible on the wire');
    assert.equal(g.tunB.fromDaemon.length, 1);
    const got = g.tunB.fromDaemon[0];
    assert.deepEqual(addrs(got), ['198.19.0.1', '198.18.0.2'], 'bob sees alice in the fake prefix (routes back into the tunnel)');
    assert.ok(checksumsOk(got), 'checksums valid after rewrite');
    assert.ok(got.includes('hello bob'));

    // 2. bob's reply after conntrack de-NAT: dst is alice's fake address
    g.tunB.inject(buildIpPacket({ src: '198.18.0.2', dst: '198.19.0.1', protocol: 17, payload: udpDatagram(53, 40000, Buffer.from('hi alice')) }));
    const back = g.tunA.fromDaemon[0];
    assert.deepEqual(addrs(back), ['198.19.0.2', '198.18.0.1']);
    assert.ok(checksumsOk(back));

    // 3. IPv6 TCP SYN alice → bob over the IPv4 outer
    g.tunA.inject(buildIpPacket({ src: '2001:db8:0:1::1', dst: '2001:db8:0:ff01::2', protocol: 6, payload: tcpSegment({ srcPort: 41000, dstPort: 22, seq: 1, ack: 0, flags: 0x02, window: 65535 }) }));
    const syn = g.tunB.fromDaemon[1];
    assert.deepEqual(addrs(syn), ['2001:db8:0:ff01::1', '2001:db8:0:1::2']);
    assert.ok(checksumsOk(syn));

    assert.equal(g.A.drops.total() + g.B.drops.total(), 0);
    assert.equal(g.A.totals.espSent, 2);
    assert.equal(g.B.totals.tunWritten, 2);
  } finally { g.cleanup(); }
});

test('two gateways: hostile input is dropped and counted by reason, nothing reaches the TUN', () => {
  const g = setup();
  try {
    g.tunA.inject(buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2, Buffer.from('x')) }));
    const good = g.link.wire[0];
    g.link.deliver = false; // seq 2: sealed but not yet delivered
    g.tunA.inject(buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2, Buffer.from('y')) }));
    g.link.deliver = true;
    const fresh = g.link.wire[1];
    const before = g.tunB.fromDaemon.length;
    const cases: [number, string, Buffer, string][] = [];
    const replay = Buffer.from(good);
    cases.push([1, 'replay of an accepted packet', replay, 'replay']);
    const flipped = Buffer.from(fresh); flipped[flipped.length - 1] ^= 1;
    cases.push([2, 'ICV bit flip on an unseen sequence number', flipped, 'auth']);
    const spi = Buffer.from(good); spi.writeUInt32BE(0xdead, 20);
    cases.push([3, 'unknown SPI', spi, 'unknown-spi']);
    const trunc = Buffer.from(good.subarray(0, 30)); trunc.writeUInt16BE(30, 2);
    cases.push([4, 'truncated ESP', trunc, 'truncated']);
    const wrongSrc = buildIpPacket({ src: '198.18.0.4', dst: '198.18.0.2', protocol: 50, payload: good.subarray(20) });
    cases.push([5, 'right SPI from a wrong source', wrongSrc, 'wrong-source']);
    const frag = Buffer.from(good); frag.writeUInt16BE(0x2000, 6);
    cases.push([6, 'ESP fragment', frag, 'bad-outer']);
    for (const [n, what, pkt, reason] of cases) {
      const c0 = g.B.drops.counts[reason as keyof typeof g.B.drops.counts];
      g.link.inject('198.18.0.2', pkt);
      assert.equal(g.B.drops.counts[reason as keyof typeof g.B.drops.counts], c0 + 1, `case ${n}: ${what} counted as ${reason}`);
    }
    assert.equal(g.tunB.fromDaemon.length, before);
    g.link.inject('198.18.0.2', Buffer.from(fresh));
    assert.equal(g.tunB.fromDaemon.length, before + 1, 'the forged copy did not move the replay window: the genuine seq 2 still passes');

    // 7. an inner packet whose source is not alice's: alice refuses to seal it (bob would drop it)
    g.tunA.inject(buildIpPacket({ src: '198.18.0.4', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2) }));
    assert.equal(g.A.drops.counts.policy, 1, 'case 7a: alice does not seal a foreign inner source');
    // 7b. the same packet sealed with alice's SA anyway (a compromised or buggy peer): bob drops it
    const spoofed = buildIpPacket({ src: '198.18.0.4', dst: '198.18.0.2', protocol: 17, payload: udpDatagram(1, 2) });
    const esp = Buffer.alloc(spoofed.length + 64);
    const n = sealEsp(g.A.tables.sadb.outbound('bob')!, spoofed, 0, spoofed.length, esp, 0);
    assert.equal(typeof n, 'number');
    g.link.inject('198.18.0.2', buildIpPacket({ src: '198.18.0.1', dst: '198.18.0.2', protocol: 50, payload: esp.subarray(0, n as number) }));
    assert.equal(g.B.drops.counts.policy, 1, 'case 7b: spoofed inner source is a policy drop at bob');
    // 8. a packet to an address that is no peer of alice
    g.tunA.inject(buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.9', protocol: 17, payload: udpDatagram(1, 2) }));
    assert.equal(g.A.drops.counts['no-peer'], 1, 'case 8: no peer for 198.18.0.9');
    // 9. TUN write failure is counted, not thrown
    g.tunB.failWrites = true;
    g.tunA.inject(buildIpPacket({ src: '198.18.0.1', dst: '198.19.0.2', protocol: 17, payload: udpDatagram(1, 2) }));
    assert.equal(g.B.drops.counts['tun-write'], 1, 'case 9');
  } finally { g.cleanup(); }
});
