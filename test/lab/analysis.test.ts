/**
 * test/lab/analysis.test.ts: the pure parts of the namespace tests' analysis (no root needed):
 * tshark field lines -> frames, the leak rule, conntrack lines, real -> fake mapping and state
 * normalisation. The frame rows are real `lab.sh decode -T fields` output from lab captures
 * (outer IPv4 and IPv6, decrypted ESP with inner IPv4/IPv6, quoted ICMP errors, ND/MLD, ARP).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { streamGenerator } from './fixtures/traffic.js';
import type { Frame, ProtectedPair } from './support.js';
import { TSHARK_FIELDS, canon, isLeak, normalizeState, parseConntrackLine, parseFrameLine, sameAddress, toFake } from './support.js';

type Row = Partial<Record<(typeof TSHARK_FIELDS)[number], string>>;

/** row renders a tshark `-T fields` line in TSHARK_FIELDS order. */
function row(r: Row): string {
  return TSHARK_FIELDS.map((f) => r[f] ?? '').join('\t');
}

/** ADDRESS_KEYS are the Frame fields holding canon() addresses. */
const ADDRESS_KEYS: ReadonlySet<string> = new Set(['src', 'dst', 'innerSrc', 'innerDst']);

const LAN: readonly ProtectedPair[] = [
  [['198.18.0.1/32', '2001:db8:0:1::1/128'], ['198.18.0.2/32', '2001:db8:0:1::2/128']],
];
const SITES: readonly ProtectedPair[] = [
  [['198.18.1.0/24', '2001:db8:0:a::/64'], ['198.18.2.0/24', '2001:db8:0:b::/64']],
];

test('parseFrameLine and isLeak: numbered cases from real captures', () => {
  const cases: [number, string, Row, readonly ProtectedPair[], Partial<Frame>, boolean][] = [
    [1, 'ARP', { 'frame.number': '8', 'eth.type': '0x0806' }, LAN, { outer: 0 }, false],
    [2, 'plaintext ICMP echo alice -> bob', { 'frame.number': '10', 'eth.type': '0x0800', 'ip.src': '198.18.0.1', 'ip.dst': '198.18.0.2', 'ip.proto': '1', 'ip.flags.mf': '0', 'ip.frag_offset': '0', 'icmp.type': '8', 'icmp.code': '0' },
      LAN, { outer: 4, proto: 1, icmpType: 8, inner: 0, fragment: false }, true],
    [3, 'plaintext echo reply bob -> alice', { 'eth.type': '0x0800', 'ip.src': '198.18.0.2', 'ip.dst': '198.18.0.1', 'ip.proto': '1', 'icmp.type': '0', 'icmp.code': '0' }, LAN, { icmpType: 0 }, true],
    [4, 'neighbour advertisement bob -> alice (link chatter)', { 'eth.type': '0x86dd', 'ipv6.src': '2001:db8:0:1::2', 'ipv6.dst': '2001:db8:0:1::1', 'ipv6.nxt': '58', 'icmpv6.type': '136', 'icmpv6.code': '0' },
      LAN, { outer: 6, icmp6Type: 136 }, false],
    [5, 'plaintext ICMPv6 echo alice -> bob', { 'eth.type': '0x86dd', 'ipv6.src': '2001:db8:0:1::1', 'ipv6.dst': '2001:db8:0:1::2', 'ipv6.nxt': '58', 'icmpv6.type': '128', 'icmpv6.code': '0' },
      LAN, { outer: 6, proto: 58, icmp6Type: 128 }, true],
    [6, 'MLD report from a link-local address', { 'eth.type': '0x86dd', 'ipv6.src': 'fe80::18a3:bbff:feb4:f78e', 'ipv6.dst': 'ff02::16', 'ipv6.nxt': '0', 'icmpv6.type': '143', 'icmpv6.code': '0' },
      LAN, { outer: 6, proto: 0 }, false],
    [7, 'dave -> alice in the clear (no peering)', { 'eth.type': '0x86dd', 'ipv6.src': '2001:db8:0:1::4', 'ipv6.dst': '2001:db8:0:1::1', 'ipv6.nxt': '58', 'icmpv6.type': '128' }, LAN, { src: '2001:db8:0:1::4' }, false],
    [8, 'IPv6 outer, decrypted inner IPv4 echo', { 'eth.type': '0x86dd', 'ip.src': '198.18.0.1', 'ip.dst': '198.18.0.2', 'ip.proto': '1', 'ip.flags.mf': '0', 'ip.frag_offset': '0', 'ipv6.src': '2001:db8:0:1::1', 'ipv6.dst': '2001:db8:0:1::2', 'ipv6.nxt': '50', 'esp.spi': '0x00001002', 'esp.protocol': '0x04', 'icmp.type': '8', 'icmp.code': '0' },
      LAN, { outer: 6, proto: 50, spi: '0x00001002', inner: 4, innerSrc: '198.18.0.1', innerDst: '198.18.0.2', innerProto: 1, icmpType: 8, fragment: false }, false],
    [9, 'IPv6 outer, decrypted inner ICMPv6 echo reply', { 'eth.type': '0x86dd', 'ipv6.src': '2001:db8:0:1::2,2001:db8:0:1::2', 'ipv6.dst': '2001:db8:0:1::1,2001:db8:0:1::1', 'ipv6.nxt': '50,58', 'esp.spi': '0x00002001', 'esp.protocol': '0x29', 'icmpv6.type': '129', 'icmpv6.code': '0' },
      LAN, { inner: 6, innerSrc: '2001:db8:0:1::2', innerDst: '2001:db8:0:1::1', innerProto: 58, icmp6Type: 129 }, false],
    [10, 'IPv4 outer, inner ICMP port unreachable quoting UDP', { 'eth.type': '0x0800', 'ip.src': '198.18.0.2,198.18.0.2,198.18.0.1', 'ip.dst': '198.18.0.1,198.18.0.1,198.18.0.2', 'ip.proto': '50,1,17', 'ip.flags.mf': '0,0,0', 'ip.frag_offset': '0,0,0', 'esp.spi': '0x00002001', 'esp.protocol': '0x04', 'icmp.type': '3', 'icmp.code': '3', 'udp.dstport': '5999' },
      LAN, { outer: 4, inner: 4, innerSrc: '198.18.0.2', innerDst: '198.18.0.1', innerProto: 1, icmpType: 3, icmpCode: 3, udpDst: 5999 }, false],
    [11, 'IPv6 outer, inner ICMPv6 port unreachable quoting UDP', { 'eth.type': '0x86dd', 'ipv6.src': '2001:db8:0:1::2,2001:db8:0:1::2,2001:db8:0:1::1', 'ipv6.dst': '2001:db8:0:1::1,2001:db8:0:1::1,2001:db8:0:1::2', 'ipv6.nxt': '50,58,17', 'esp.spi': '0x00002001', 'esp.protocol': '0x29', 'icmpv6.type': '1', 'icmpv6.code': '4', 'udp.srcport': '57620', 'udp.dstport': '5999' },
      LAN, { inner: 6, innerSrc: '2001:db8:0:1::2', innerDst: '2001:db8:0:1::1', icmp6Type: 1, icmp6Code: 4, udpSrc: 57620 }, false],
    [12, 'IPv4 outer, inner IPv6 TCP', { 'eth.type': '0x0800', 'ip.src': '198.18.0.1', 'ip.dst': '198.18.0.2', 'ip.proto': '50', 'ip.flags.mf': '0', 'ip.frag_offset': '0', 'ipv6.src': '2001:db8:0:1::1', 'ipv6.dst': '2001:db8:0:1::2', 'ipv6.nxt': '6', 'esp.spi': '0x00001002', 'esp.protocol': '0x29', 'tcp.srcport': '44262', 'tcp.dstport': '5001' },
      LAN, { outer: 4, inner: 6, innerSrc: '2001:db8:0:1::1', innerProto: 6, tcpSrc: 44262, tcpDst: 5001 }, false],
    [13, 'ESP tshark could not decrypt', { 'eth.type': '0x0800', 'ip.src': '198.18.0.1', 'ip.dst': '198.18.0.2', 'ip.proto': '50', 'esp.spi': '0x0000dead' }, LAN, { proto: 50, inner: 0 }, false],
    [14, 'a fragment of ESP', { 'eth.type': '0x0800', 'ip.src': '198.18.0.1', 'ip.dst': '198.18.0.2', 'ip.proto': '50', 'ip.flags.mf': '1', 'ip.frag_offset': '0' }, LAN, { fragment: true }, false],
    [15, 'an IPv6 fragment header between peers (not ESP: a leak)', { 'eth.type': '0x86dd', 'ipv6.src': '2001:db8:0:1::1', 'ipv6.dst': '2001:db8:0:1::2', 'ipv6.nxt': '44' }, LAN, { fragment: true }, true],
    [19, 'decrypted, but tshark left esp.protocol out (seen once in 80000 frames)', { 'frame.number': '24256', 'eth.type': '0x0800', 'ip.src': '198.18.0.1,198.18.1.10', 'ip.dst': '198.18.0.2,198.18.2.10', 'ip.proto': '50,6', 'ip.flags.mf': '0,0', 'ip.frag_offset': '0,0', 'esp.spi': '0x00002003', 'tcp.srcport': '51496', 'tcp.dstport': '5001' },
      SITES, { outer: 4, proto: 50, inner: 4, innerSrc: '198.18.1.10', innerDst: '198.18.2.10', innerProto: 6, tcpSrc: 51496 }, false],
    [20, 'IPv6 outer, not decrypted', { 'eth.type': '0x86dd', 'ipv6.src': '2001:db8:0:1::1', 'ipv6.dst': '2001:db8:0:1::2', 'ipv6.nxt': '50', 'esp.spi': '0x0000dead' }, LAN, { outer: 6, proto: 50, inner: 0 }, false],
    [16, 'sites: LAN-to-LAN plaintext on the WAN', { 'eth.type': '0x0800', 'ip.src': '198.18.1.10', 'ip.dst': '198.18.2.10', 'ip.proto': '6', 'tcp.srcport': '40000', 'tcp.dstport': '5001' }, SITES, { tcpSrc: 40000 }, true],
    [17, 'sites: gateway WAN addresses in the clear', { 'eth.type': '0x0800', 'ip.src': '198.18.0.1', 'ip.dst': '198.18.0.2', 'ip.proto': '1', 'icmp.type': '8' }, SITES, {}, false],
    [18, 'sites: a LAN host to the other gateway\'s WAN address (not LAN-to-LAN)', { 'eth.type': '0x0800', 'ip.src': '198.18.1.10', 'ip.dst': '198.18.0.2', 'ip.proto': '1' }, SITES, {}, false],
  ];
  for (const [n, what, r, pairs, want, leak] of cases) {
    const f = parseFrameLine(row(r));
    assert.ok(f !== undefined, `case ${n}: ${what}: parses`);
    for (const [k, v] of Object.entries(want)) {
      const expected = ADDRESS_KEYS.has(k) ? canon(String(v)) : v;
      assert.deepEqual(f[k as keyof Frame], expected, `case ${n}: ${what}: ${k}`);
    }
    assert.equal(isLeak(f, pairs), leak, `case ${n}: ${what}: leak`);
  }
  assert.equal(parseFrameLine('1\t0x0800'), undefined, 'a short line is no frame');
});

test('parseConntrackLine reads both tuples and ASSURED', () => {
  const cases: [number, string, { origSrc: string; replySrc: string; sport: number; assured: boolean } | undefined][] = [
    [1, 'tcp      6 102 TIME_WAIT src=198.18.0.1 dst=198.18.0.2 sport=47224 dport=5001 src=198.19.0.2 dst=198.18.0.1 sport=5001 dport=47224 [ASSURED] mark=0 use=1',
      { origSrc: '198.18.0.1', replySrc: '198.19.0.2', sport: 47224, assured: true }],
    [2, 'tcp      6 101 TIME_WAIT src=2001:db8:0:1::2 dst=2001:db8:0:1::1 sport=33728 dport=5001 src=2001:db8:0:ff01::1 dst=2001:db8:0:1::2 sport=5001 dport=33728 [ASSURED] mark=0 use=1',
      { origSrc: '2001:db8:0:1::2', replySrc: '2001:db8:0:ff01::1', sport: 33728, assured: true }],
    [3, 'tcp      6 119 SYN_SENT src=198.18.0.1 dst=198.18.0.2 sport=1 dport=2 [UNREPLIED] src=198.19.0.2 dst=198.18.0.1 sport=2 dport=1 mark=0 use=1',
      { origSrc: '198.18.0.1', replySrc: '198.19.0.2', sport: 1, assured: false }],
    [4, 'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.', undefined],
  ];
  for (const [n, line, want] of cases) {
    const e = parseConntrackLine(line);
    if (want === undefined) {
      assert.equal(e, undefined, `case ${n}`);
      continue;
    }
    assert.ok(e !== undefined, `case ${n}`);
    assert.equal(e.orig.src, want.origSrc, `case ${n}: orig src`);
    assert.equal(e.reply.src, want.replySrc, `case ${n}: reply src`);
    assert.equal(e.orig.sport, want.sport, `case ${n}: sport`);
    assert.equal(e.assured, want.assured, `case ${n}: assured`);
  }
});

test('toFake maps through prefix pairs; sameAddress compares any IPv6 spelling', () => {
  const prefixes = [
    { real: '198.18.2.0/24', fake: '198.19.2.0/24' },
    { real: '2001:db8:0:b::/64', fake: '2001:db8:0:ff0b::/64' },
  ];
  const cases: [number, string, string | undefined][] = [
    [1, '198.18.2.10', '198.19.2.10'],
    [2, '2001:db8:0:b::10', '2001:db8:0:ff0b::10'],
    [3, '198.18.1.10', undefined],
  ];
  for (const [n, real, fake] of cases) {
    const got = toFake(real, prefixes);
    if (fake === undefined) assert.equal(got, undefined, `case ${n}`);
    else assert.ok(got !== undefined && sameAddress(got, fake), `case ${n}: ${real} -> ${got ?? '?'} (want ${fake})`);
  }
  assert.ok(!sameAddress('198.18.0.1', '2001:db8::1'));
});

test('normalizeState drops comments and counters only', () => {
  const a = '# Generated by iptables-save v1.8.9 on Sun\n*nat\n:PREROUTING ACCEPT [12:3456]\n-A X -j Y\nCOMMIT\n# Completed on Sun\n';
  const b = '# Generated by iptables-save v1.8.9 on Mon\n*nat\n:PREROUTING ACCEPT [0:0]\n-A X -j Y\nCOMMIT\n';
  assert.equal(normalizeState(a), normalizeState(b));
  assert.notEqual(normalizeState(a), normalizeState(b.replace('-A X -j Y', '-A X -j Z')));
});

test('traffic stream: deterministic per length, different across lengths, chunking does not matter', () => {
  const whole = streamGenerator(1000)(1000);
  const parts = streamGenerator(1000);
  const chunked = Buffer.concat([parts(1), parts(499), parts(500)]);
  assert.ok(whole.equals(chunked));
  assert.ok(!streamGenerator(1001)(1000).equals(whole));
});
