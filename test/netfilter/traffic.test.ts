/**
 * traffic.test.ts (root): the installed rules steer and guard real packets.
 *
 *   netns A (espgate rules)                      netns B (no rules, the "peer")
 *   +-------------------------------+            +---------------------------+
 *   | eg0: TUN, no reader, mtu 1400 |            |                           |
 *   |   198.19.0.0/24, 2001:db8:ff01::/64         |                           |
 *   | va 198.18.0.1/24 -------------+--- veth ---+ vb 198.18.0.2/24          |
 *   |    2001:db8:1::1/64           |            |    2001:db8:1::2/64       |
 *   +-------------------------------+            +---------------------------+
 *
 * A protects its traffic to B: real 198.18.0.0/24 <-> fake 198.19.0.0/24 (and the v6 pair).
 * Nothing reads eg0, so steered packets die there; we look at counters, conntrack and a
 * tcpdump on vb (in B), which must never see A's plaintext to B.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { install, uninstall } from '../../src/netfilter/apply.js';
import type { ApplyOptions } from '../../src/netfilter/apply.js';
import { buildRulesSpec } from '../../src/netfilter/model.js';
import type { RulesInput } from '../../src/netfilter/model.js';
import { Capture, Netns, rootSkipReason } from './netns.js';

const skip = rootSkipReason(['iptables', 'ip6tables', 'ipset', 'nft', 'tcpdump', 'conntrack', 'ping', 'bash']);

const INPUT: RulesInput = {
  tun: 'eg0', queueNum: 9, mode: 'host', mssClamp: true, guard: true,
  families: {
    v4: { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.2/32'], endpoints: ['198.18.0.2'] },
    v6: { pairs: [{ real: '2001:db8:1::/64', fake: '2001:db8:ff01::/64' }], peerAddrs: ['2001:db8:1::2/128'], endpoints: ['2001:db8:1::2'] },
  },
};
const SPEC = buildRulesSpec(INPUT);

/** RAW_SOCKET is the raw-socket package's directory, for a sender run inside a namespace. */
const RAW_SOCKET = dirname(createRequire(import.meta.url).resolve('raw-socket/package.json'));

/** sendEsp sends one ESP packet (SPI 0x100, sequence 1, 24 bytes of zeros) from `ns` to `dst` over a raw socket, as the daemon does. */
function sendEsp(ns: Netns, dst: string): void {
  const v6 = dst.includes(':');
  const js = [
    `const raw = require(${JSON.stringify(RAW_SOCKET)});`,
    `const s = raw.createSocket({ protocol: 50${v6 ? ', addressFamily: raw.AddressFamily.IPv6' : ''} });`,
    'const b = Buffer.alloc(32); b.writeUInt32BE(0x100, 0); b.writeUInt32BE(1, 4);',
    `s.send(b, 0, b.length, ${JSON.stringify(dst)}, (e) => { if (e) { console.error(e.message); process.exit(1); } s.close(); });`,
  ].join(' ');
  ns.sh(`${process.execPath} -e '${js}'`);
}

/** espEntries lists conntrack's entries for protocol 50 (ESP) in `ns`, one family. */
function espEntries(ns: Netns, family: 'ipv4' | 'ipv6'): string[] {
  return ns.sh(`conntrack -L -f ${family} -p 50 2>/dev/null || true`).split('\n').filter((l) => /\b50\b/.test(l));
}

/** counter returns the packet counter of the rule in `chain` whose text contains `needle` (iptables -L -v -x). */
function counter(ns: Netns, tool: 'iptables' | 'ip6tables', table: string, chain: string, needle: RegExp): number {
  const rows = ns.sh(`${tool} -t ${table} -L ${chain} -v -x -n`).split('\n').slice(2).filter((l) => needle.test(l));
  assert.equal(rows.length, 1, `${tool} ${table} ${chain}: expected one rule matching ${String(needle)}`);
  return Number((rows[0] ?? '').trim().split(/\s+/)[0]);
}

describe('steering and guard with real packets', { skip }, () => {
  let a: Netns;
  let b: Netns;
  let stateDir: string;
  let opts: ApplyOptions;
  // B's marker: a datagram B sends to A, captured on vb after anything A sent before it.
  const marker = (): void => { b.trySh('echo m > /dev/udp/198.18.0.1/9998'); };
  const MARK = /198\.18\.0\.2\.\d+ > 198\.18\.0\.1\.9998/;

  before(async () => {
    a = new Netns('ta');
    b = new Netns('tb');
    stateDir = await mkdtemp(join(tmpdir(), 'espgate-nf-traffic-'));
    opts = { runner: a.runner(), stateDir };
    a.sh(`ip link add va type veth peer name vb netns ${b.name}`);
    a.sh('ip addr add 198.18.0.1/24 dev va && ip addr add 2001:db8:1::1/64 dev va nodad && ip link set va up');
    b.sh('ip addr add 198.18.0.2/24 dev vb && ip addr add 2001:db8:1::2/64 dev vb nodad && ip link set vb up');
    a.sh('ip tuntap add dev eg0 mode tun && ip link set eg0 mtu 1400 up');
    a.sh('ip route add 198.19.0.0/24 dev eg0 && ip -6 route add 2001:db8:ff01::/64 dev eg0');
    // Make sure A and B reach each other before any rule exists (also fills the neighbour caches).
    a.sh('ping -c 1 -W 2 198.18.0.2');
  });
  after(async () => {
    a.close();
    b.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  test('case 1: control, before install: plaintext from A to B shows up on vb', async () => {
    const cap = await Capture.start(b, 'vb', 'udp and (port 9999 or port 9998)');
    a.sh('echo x > /dev/udp/198.18.0.2/9999');
    const lines = await cap.stop(marker, MARK);
    assert.ok(lines.some((l) => / 198\.18\.0\.1\.\d+ > 198\.18\.0\.2\.9999:/.test(l)), lines.join('\n'));
  });

  test('case 2: a ping to the real address is DNATed to the fake one and routed into eg0', async () => {
    await install(SPEC, opts);
    const cap = await Capture.start(b, 'vb', 'icmp or (udp and port 9998)');
    const natBefore = counter(a, 'iptables', 'nat', 'ESPGATE-OUT', /NETMAP/);
    const r = a.trySh('ping -c 1 -W 1 198.18.0.2');
    assert.notEqual(r.code, 0, 'nobody reads eg0: the ping cannot be answered');
    assert.equal(counter(a, 'iptables', 'nat', 'ESPGATE-OUT', /NETMAP/) - natBefore, 1);
    const ct = a.sh('conntrack -L -p icmp 2>/dev/null');
    assert.match(ct, /src=198\.18\.0\.1 dst=198\.18\.0\.2 .*src=198\.19\.0\.2 dst=198\.18\.0\.1/, ct);
    assert.match(a.sh('ip route get 198.19.0.2'), /dev eg0/);
    // The TUN driver got it (and dropped it: no reader).
    const txDropped = (): number => Number(a.sh('cat /sys/class/net/eg0/statistics/tx_dropped'));
    const tx = txDropped();
    a.trySh('ping -c 1 -W 1 198.18.0.2');
    assert.equal(txDropped() - tx, 1);
    const lines = await cap.stop(marker, MARK);
    assert.ok(!lines.some((l) => /ICMP echo request/.test(l)), `plaintext echo request on the wire:\n${lines.join('\n')}`);
  });

  test('case 3: a TCP SYN to B goes out eg0 through the MSS clamp', () => {
    const before = counter(a, 'iptables', 'mangle', 'ESPGATE-POST', /TCPMSS/);
    a.trySh('timeout 2 bash -c "exec 3<>/dev/tcp/198.18.0.2/9"');
    assert.ok(counter(a, 'iptables', 'mangle', 'ESPGATE-POST', /TCPMSS/) - before >= 1, 'the SYN left through eg0');
    const before6 = counter(a, 'ip6tables', 'mangle', 'ESPGATE-POST', /TCPMSS/);
    a.trySh('timeout 2 bash -c "exec 3<>/dev/tcp/2001:db8:1::2/9"');
    assert.ok(counter(a, 'ip6tables', 'mangle', 'ESPGATE-POST', /TCPMSS/) - before6 >= 1, 'the v6 SYN left through eg0');
  });

  test('case 4: guard: plaintext to B that escaped the NAT is dropped before the wire', async () => {
    // Untracked packets skip the nat table: the kind of packet the guard exists for.
    a.sh('iptables -t raw -A OUTPUT -d 198.18.0.2 -p udp --dport 9999 -j CT --notrack');
    const cap = await Capture.start(b, 'vb', 'udp and (port 9999 or port 9998)');
    const drops = counter(a, 'iptables', 'filter', 'ESPGATE-OUT', /DROP .*match-set ESPGATE-PEER4 dst/);
    a.trySh('echo x > /dev/udp/198.18.0.2/9999');
    assert.equal(counter(a, 'iptables', 'filter', 'ESPGATE-OUT', /DROP .*match-set ESPGATE-PEER4 dst/) - drops, 1);
    const lines = await cap.stop(marker, MARK);
    assert.ok(!lines.some((l) => /> 198\.18\.0\.2\.9999:/.test(l)), `leaked:\n${lines.join('\n')}`);
    a.sh('iptables -t raw -D OUTPUT -d 198.18.0.2 -p udp --dport 9999 -j CT --notrack');
  });

  test('case 5: guard: with the TUN gone, steered packets to the fake prefix do not leave in the clear', async () => {
    a.sh('ip link set eg0 down && ip route add default via 198.18.0.2 dev va');
    try {
      const cap = await Capture.start(b, 'vb', 'icmp or (udp and port 9998)');
      const drops = counter(a, 'iptables', 'mangle', 'ESPGATE-POST', /DROP .*198\.19\.0\.0\/24/);
      a.trySh('ping -c 1 -W 1 198.18.0.2');
      assert.equal(counter(a, 'iptables', 'mangle', 'ESPGATE-POST', /DROP .*198\.19\.0\.0\/24/) - drops, 1);
      const lines = await cap.stop(marker, MARK);
      assert.ok(!lines.some((l) => /ICMP echo request/.test(l)), `leaked:\n${lines.join('\n')}`);
    } finally {
      a.sh('ip route del default via 198.18.0.2 dev va && ip link set eg0 up');
      a.sh('ip route replace 198.19.0.0/24 dev eg0 && ip -6 route replace 2001:db8:ff01::/64 dev eg0');
    }
  });

  test('case 6: guard: plaintext from B is dropped on input', () => {
    const drops = counter(a, 'iptables', 'filter', 'ESPGATE-IN', /DROP .*match-set ESPGATE-PEER4 src/);
    b.trySh('echo x > /dev/udp/198.18.0.1/9997');
    assert.equal(counter(a, 'iptables', 'filter', 'ESPGATE-IN', /DROP .*match-set ESPGATE-PEER4 src/) - drops, 1);
  });

  test('case 7: IPv6 neighbour discovery between the peers keeps working under the guard', () => {
    // B has never talked to A over v6: its ping starts with a neighbour solicitation from its
    // global address (a protected peer) to A, and A answers with an advertisement to it.
    b.sh('ip -6 neigh flush dev vb');
    const drops = counter(a, 'ip6tables', 'filter', 'ESPGATE-IN', /DROP .*match-set ESPGATE-PEER6 src/);
    const r = b.trySh('ping -6 -c 1 -W 1 2001:db8:1::1');
    assert.notEqual(r.code, 0, 'the echo request itself is plaintext from a peer: dropped');
    assert.equal(counter(a, 'ip6tables', 'filter', 'ESPGATE-IN', /DROP .*match-set ESPGATE-PEER6 src/) - drops, 1);
    const neigh = b.sh('ip -6 neigh show 2001:db8:1::1 dev vb');
    assert.match(neigh, /lladdr [0-9a-f:]+ (REACHABLE|STALE|DELAY|PROBE)/, `B never learnt A's link address: ${neigh}`);
  });

  test('case 8: a re-install with another peer list takes effect at once (ipset swap under live rules)', async () => {
    const other = buildRulesSpec({
      ...SPEC, families: { v4: { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.3/32'], endpoints: ['198.18.0.3'] } },
    });
    await install(other, opts);
    const nat = counter(a, 'iptables', 'nat', 'ESPGATE-OUT', /NETMAP/);
    a.sh('ping -c 1 -W 2 198.18.0.2'); // B is no peer any more: plain IP, answered
    assert.equal(counter(a, 'iptables', 'nat', 'ESPGATE-OUT', /NETMAP/), nat);
    await install(SPEC, opts);
    assert.notEqual(a.trySh('ping -c 1 -W 1 198.18.0.2').code, 0, 'B is a peer again: steered into eg0');
    assert.equal(counter(a, 'iptables', 'nat', 'ESPGATE-OUT', /NETMAP/) - nat, 1);
  });

  test('case 9: our own ESP to B is tracked without notrack (control) and untracked with it; it leaves either way', async () => {
    a.sh('conntrack -D -p 50 >/dev/null 2>&1 || true');
    const cap = await Capture.start(b, 'vb', 'esp or ip6 proto 50 or (udp and port 9998)');
    sendEsp(a, '198.18.0.2');
    sendEsp(a, '2001:db8:1::2');
    assert.equal(espEntries(a, 'ipv4').length, 1, 'control: without the rule conntrack keeps an entry for our ESP (so the check below can fail)');
    assert.equal(espEntries(a, 'ipv6').length, 1, 'control, IPv6');
    a.sh('conntrack -D -p 50 >/dev/null 2>&1 || true');
    await install(buildRulesSpec({ ...INPUT, notrack: true }), opts);
    const hits = counter(a, 'iptables', 'raw', 'ESPGATE-OUT', /CT notrack/);
    const hits6 = counter(a, 'ip6tables', 'raw', 'ESPGATE-OUT', /CT notrack/);
    sendEsp(a, '198.18.0.2');
    sendEsp(a, '2001:db8:1::2');
    assert.equal(counter(a, 'iptables', 'raw', 'ESPGATE-OUT', /CT notrack/) - hits, 1);
    assert.equal(counter(a, 'ip6tables', 'raw', 'ESPGATE-OUT', /CT notrack/) - hits6, 1);
    assert.deepEqual(espEntries(a, 'ipv4'), [], 'no conntrack entry for our IPv4 ESP');
    assert.deepEqual(espEntries(a, 'ipv6'), [], 'no conntrack entry for our IPv6 ESP');
    const lines = await cap.stop(marker, MARK);
    assert.equal(lines.filter((l) => /198\.18\.0\.1 > 198\.18\.0\.2: ESP\(spi=0x00000100/.test(l)).length, 2, lines.join('\n'));
    assert.equal(lines.filter((l) => /2001:db8:1::1 > 2001:db8:1::2: ESP\(spi=0x00000100/.test(l)).length, 2, lines.join('\n'));
  });

  test('case 10: inbound: socket: a peer\'s ESP is accepted under a default-drop INPUT, untracked, and with no socket open A says nothing back', async () => {
    // Control first, without our rules: ESP that nobody takes is answered with ICMP "protocol
    // unreachable" (so the silence checked below can fail).
    await uninstall('ESPGATE', opts);
    a.sh('conntrack -D -p 50 >/dev/null 2>&1 || true');
    let cap = await Capture.start(b, 'vb', 'icmp or icmp6 or (udp and port 9998)');
    sendEsp(b, '198.18.0.1');
    sendEsp(b, '2001:db8:1::1');
    let lines = await cap.stop(marker, MARK);
    assert.ok(lines.some((l) => /198\.18\.0\.1 > 198\.18\.0\.2: ICMP 198\.18\.0\.1 protocol 50 unreachable/.test(l)), `control: the kernel answers unclaimed ESP\n${lines.join('\n')}`);
    assert.ok(lines.some((l) => /2001:db8:1::1 > 2001:db8:1::2: ICMP6, parameter problem/.test(l)), `control, IPv6\n${lines.join('\n')}`);
    // Control for the tracking (conntrack runs in A only while some rule of ours needs it):
    // socket mode with rules.espNotrack off tracks inbound ESP.
    await install(buildRulesSpec({ ...INPUT, notrack: false, inbound: 'socket' }), opts);
    a.sh('conntrack -D -p 50 >/dev/null 2>&1 || true');
    sendEsp(b, '198.18.0.1');
    assert.equal(espEntries(a, 'ipv4').length, 1, 'control: inbound ESP is tracked without the notrack rule');
    a.sh('conntrack -D -p 50 >/dev/null 2>&1 || true');

    await install(buildRulesSpec({ ...INPUT, notrack: true, inbound: 'socket' }), opts);
    a.sh('iptables -P INPUT DROP && ip6tables -P INPUT DROP');
    try {
      // No socket open (the daemon is stopped): silence, and no conntrack entry.
      cap = await Capture.start(b, 'vb', 'icmp or icmp6 or (udp and port 9998)');
      const unknown = (): number => Number(/IpInUnknownProtos\s+(\d+)/.exec(a.sh('nstat -az IpInUnknownProtos'))?.[1] ?? -1);
      const before = unknown();
      sendEsp(b, '198.18.0.1');
      sendEsp(b, '2001:db8:1::1');
      lines = await cap.stop(marker, MARK);
      assert.ok(!lines.some((l) => /unreachable|parameter problem/.test(l)), `A answered ESP while no socket was open:\n${lines.join('\n')}`);
      assert.equal(unknown() - before, 1, 'the IPv4 packet passed the default-drop INPUT (our ACCEPT) and reached the protocol layer');
      assert.deepEqual(espEntries(a, 'ipv4'), [], 'inbound IPv4 ESP is not tracked');
      assert.deepEqual(espEntries(a, 'ipv6'), [], 'inbound IPv6 ESP is not tracked');
      assert.equal(counter(a, 'iptables', 'filter', 'ESPGATE-IN', /ESPGATE-ENDP4 src/) >= 1, true, 'accepted by our INPUT rule');
      assert.equal(counter(a, 'ip6tables', 'filter', 'ESPGATE-IN', /ESPGATE-ENDP6 src/) >= 1, true, 'accepted by our INPUT rule, IPv6');
    } finally {
      a.sh('iptables -P INPUT ACCEPT && ip6tables -P INPUT ACCEPT');
    }
  });

  test('case 11: uninstall leaves no trace of ours', async () => {
    await uninstall('ESPGATE', opts);
    assert.doesNotMatch(a.sh('iptables-save; ip6tables-save; ipset list -n'), /ESPGATE/);
  });
});
