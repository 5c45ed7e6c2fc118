/**
 * gateway.test.ts (root): gateway mode with real packets, including the forwarded way back.
 *
 *   L (LAN host)            GA (espgate rules, gateway mode)            D (stands in for the daemon
 *   vl 198.18.1.10/24 ----- gl 198.18.1.1/24                               and the far side)
 *                           eg0 (veth, mtu 1400) ---------------------- dt 198.19.2.5/32
 *                           gw 203.0.113.1/24 ----- W: ww 203.0.113.2/24 (WAN; must see no plaintext)
 *
 * GA protects 198.18.2.0/24 (real), mapped to 198.19.2.0/24 (fake), routed to eg0. eg0 is a
 * veth rather than a TUN so that a second namespace can stand in for what the daemons do:
 * outbound, the packet leaves eg0 with the fake destination 198.19.2.5; inbound, the daemon
 * writes the far side's packets into eg0 with the fake source 198.19.2.5. D owns that address,
 * so it answers exactly as the daemon-reinjected far side would. rp_filter=1 on GA.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { install, status, uninstall } from '../../src/netfilter/apply.js';
import type { ApplyOptions } from '../../src/netfilter/apply.js';
import { buildRulesSpec } from '../../src/netfilter/model.js';
import { Capture, Netns, rootSkipReason } from './netns.js';

const skip = rootSkipReason(['iptables', 'ip6tables', 'ipset', 'nft', 'tcpdump', 'conntrack', 'ping', 'bash', 'sysctl']);

const SPEC = buildRulesSpec({
  tun: 'eg0', queueNum: 9, mode: 'gateway', mssClamp: true, guard: true,
  families: { v4: { pairs: [{ real: '198.18.2.0/24', fake: '198.19.2.0/24' }], peerAddrs: ['198.18.2.0/24'], endpoints: ['203.0.113.2'] } },
});

function counter(ns: Netns, table: string, chain: string, needle: RegExp): number {
  const rows = ns.sh(`iptables -t ${table} -L ${chain} -v -x -n`).split('\n').slice(2).filter((l) => needle.test(l));
  assert.equal(rows.length, 1, `${table} ${chain}: expected one rule matching ${String(needle)}`);
  return Number((rows[0] ?? '').trim().split(/\s+/)[0]);
}

describe('gateway mode with real packets', { skip }, () => {
  let l: Netns;
  let ga: Netns;
  let d: Netns;
  let w: Netns;
  let stateDir: string;
  let opts: ApplyOptions;

  before(async () => {
    l = new Netns('gl');
    ga = new Netns('gg');
    d = new Netns('gd');
    w = new Netns('gw');
    stateDir = await mkdtemp(join(tmpdir(), 'espgate-nf-gw-'));
    opts = { runner: ga.runner(), stateDir };
    ga.sh(`ip link add gl type veth peer name vl netns ${l.name}`);
    ga.sh(`ip link add eg0 type veth peer name dt netns ${d.name}`);
    ga.sh(`ip link add gw type veth peer name ww netns ${w.name}`);
    ga.sh('sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1');
    ga.sh('ip addr add 198.18.1.1/24 dev gl && ip addr add 203.0.113.1/24 dev gw');
    ga.sh('ip link set gl up && ip link set gw up && ip link set eg0 mtu 1400 up');
    ga.sh('ip route add 198.19.2.0/24 dev eg0 && ip route add default via 203.0.113.2');
    l.sh('ip addr add 198.18.1.10/24 dev vl && ip link set vl up && ip route add default via 198.18.1.1');
    d.sh('ip addr add 198.19.2.5/32 dev dt && ip link set dt mtu 1400 up && ip route add default via 198.18.1.1 dev dt onlink');
    w.sh('ip addr add 203.0.113.2/24 dev ww && ip link set ww up');
    await install(SPEC, opts);
    assert.equal((await status('ESPGATE', { ...opts, spec: SPEC })).installed, true);
  });
  after(async () => {
    for (const n of [l, ga, d, w]) n.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  test('case 1: LAN -> protected peer: steered into eg0, and the reply finds its way back', async () => {
    const cap = await Capture.start(d, 'dt', 'icmp');
    const natBefore = counter(ga, 'nat', 'ESPGATE-PRE', /NETMAP/);
    l.sh('ping -c 1 -W 2 198.18.2.5'); // throws unless the reply arrived
    assert.equal(counter(ga, 'nat', 'ESPGATE-PRE', /NETMAP/) - natBefore, 1);
    assert.match(ga.sh('conntrack -L -p icmp 2>/dev/null'), /src=198\.18\.1\.10 dst=198\.18\.2\.5 .*src=198\.19\.2\.5 dst=198\.18\.1\.10/);
    const lines = await cap.stop(() => { d.trySh('ping -c 1 -W 1 -I 198.19.2.5 198.18.1.1'); }, /198\.19\.2\.5 > 198\.18\.1\.1: ICMP echo request/);
    // The far side saw the LAN host's real source and the fake destination (the daemon restores the real one).
    assert.ok(lines.some((x) => /198\.18\.1\.10 > 198\.19\.2\.5: ICMP echo request/.test(x)), lines.join('\n'));
  });

  test('case 2: protected peer -> LAN host: the LAN host sees the real source, and its reply goes back into eg0', async () => {
    const cap = await Capture.start(l, 'vl', 'icmp');
    const natBefore = counter(ga, 'nat', 'ESPGATE-POST', /NETMAP/);
    d.sh('ping -c 1 -W 2 -I 198.19.2.5 198.18.1.10');
    assert.equal(counter(ga, 'nat', 'ESPGATE-POST', /NETMAP/) - natBefore, 1);
    const lines = await cap.stop(() => { l.trySh('ping -c 1 -W 1 198.18.1.1'); }, /198\.18\.1\.10 > 198\.18\.1\.1: ICMP echo request/);
    assert.ok(lines.some((x) => /198\.18\.2\.5 > 198\.18\.1\.10: ICMP echo request/.test(x)), lines.join('\n'));
    assert.ok(lines.some((x) => /198\.18\.1\.10 > 198\.18\.2\.5: ICMP echo reply/.test(x)), lines.join('\n'));
    assert.ok(!lines.some((x) => /198\.19\./.test(x)), `a fake address reached the LAN:\n${lines.join('\n')}`);
  });

  test('case 3: the gateway itself, both ways (nat OUTPUT and nat INPUT)', () => {
    ga.sh('ping -c 1 -W 2 198.18.2.5');
    const natIn = counter(ga, 'nat', 'ESPGATE-IN', /NETMAP/);
    d.sh('ping -c 1 -W 2 -I 198.19.2.5 198.18.1.1');
    assert.equal(counter(ga, 'nat', 'ESPGATE-IN', /NETMAP/) - natIn, 1);
  });

  test('case 4: a forwarded SYN into eg0 has its MSS clamped to the eg0 MTU', async () => {
    const cap = await Capture.start(d, 'dt', 'tcp port 9 or icmp');
    l.trySh('timeout 2 bash -c "exec 3<>/dev/tcp/198.18.2.5/9"');
    const lines = await cap.stop(() => { d.trySh('ping -c 1 -W 1 -I 198.19.2.5 198.18.1.1'); }, /ICMP echo request/);
    const syn = lines.find((x) => /198\.18\.1\.10\.\d+ > 198\.19\.2\.5\.9: Flags \[S\]/.test(x));
    assert.ok(syn !== undefined, lines.join('\n'));
    assert.match(syn, /mss 1360[,>]/);
  });

  test('case 5: guard: forwarded plaintext towards a peer that escaped the NAT never reaches the WAN', async () => {
    ga.sh('iptables -t raw -A PREROUTING -s 198.18.1.10 -p udp --dport 9999 -j CT --notrack');
    const cap = await Capture.start(w, 'ww', 'not arp');
    const drops = counter(ga, 'filter', 'ESPGATE-FWD', /DROP .*match-set ESPGATE-PEER4 dst/);
    l.trySh('echo x > /dev/udp/198.18.2.5/9999');
    assert.equal(counter(ga, 'filter', 'ESPGATE-FWD', /DROP .*match-set ESPGATE-PEER4 dst/) - drops, 1);
    const lines = await cap.stop(() => { w.trySh('echo m > /dev/udp/203.0.113.1/9998'); }, /203\.0\.113\.2\.\d+ > 203\.0\.113\.1\.9998/);
    assert.ok(!lines.some((x) => /198\.18\.|198\.19\./.test(x)), `leaked to the WAN:\n${lines.join('\n')}`);
    ga.sh('iptables -t raw -D PREROUTING -s 198.18.1.10 -p udp --dport 9999 -j CT --notrack');
  });

  test('case 6: uninstall: the gateway forwards to the real address in the clear again (the rules were the only steering)', async () => {
    await uninstall('ESPGATE', opts);
    const cap = await Capture.start(w, 'ww', 'icmp');
    l.trySh('ping -c 1 -W 1 198.18.2.5');
    const lines = await cap.stop(() => { w.trySh('ping -c 1 -W 1 203.0.113.1'); }, /203\.0\.113\.2 > 203\.0\.113\.1: ICMP echo request/);
    assert.ok(lines.some((x) => /198\.18\.1\.10 > 198\.18\.2\.5: ICMP echo request/.test(x)), lines.join('\n'));
  });
});
