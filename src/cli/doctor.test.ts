import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../config/load.js';
import { EXAMPLE } from '../config/reference.js';
import type { CoveringRoute, DoctorProbes, RouteInfo } from './doctor.js';
import { firstAddressOf, formatDoctor, runDoctor } from './doctor.js';

const CFG = parseConfig(EXAMPLE, 'example.yaml');

/** probes: a healthy host, with overrides. */
function probes(o: Partial<{ files: string[]; tools: string[]; route: RouteInfo | undefined; covering: CoveringRoute[]; caps: string[] }> = {}): DoctorProbes {
  const files = o.files ?? ['/dev/net/tun', '/proc/net/netfilter/nfnetlink_queue'];
  const tools = o.tools ?? ['ip', 'ipset', 'iptables', 'iptables-restore', 'iptables-save', 'ip6tables', 'ip6tables-restore', 'ip6tables-save'];
  return {
    exists: (p) => files.includes(p),
    hasTool: (t) => tools.includes(t),
    route: () => Promise.resolve('route' in o ? o.route : { type: 'unicast', dev: 'eth0', mtu: 1500 }),
    covering: () => Promise.resolve(o.covering ?? [{ dst: 'default', dev: 'eth0', type: 'unicast' }]),
    missingCapabilities: () => o.caps ?? [],
  };
}

const levels = async (p: DoctorProbes): Promise<string[]> => (await runDoctor(CFG, p)).filter((r) => r.level !== 'ok').map((r) => `${r.level}: ${r.what}`);

test('doctor: each common mistake is reported with its level (numbered cases)', async () => {
  const cases: [string, DoctorProbes, RegExp[]][] = [
    ['healthy host', probes(), []],
    ['no /dev/net/tun', probes({ files: ['/proc/net/netfilter/nfnetlink_queue'] }), [/^fail: \/dev\/net\/tun is missing/]],
    ['nfnetlink_queue not loaded', probes({ files: ['/dev/net/tun'] }), [/^warn: nfnetlink_queue is not loaded/]],
    ['ipset missing', probes({ tools: ['ip', 'iptables', 'iptables-restore', 'iptables-save', 'ip6tables', 'ip6tables-restore', 'ip6tables-save'] }), [/^fail: missing tools: ipset$/]],
    ['no privileges', probes({ caps: ['CAP_NET_ADMIN'] }), [/^warn: this process lacks CAP_NET_ADMIN/]],
    ['fake prefix used by a real network', probes({ covering: [{ dst: 'default', type: 'unicast' }, { dst: '198.19.0.0/16', dev: 'eth1', type: 'unicast' }] }),
      [/^fail: fake prefix 198\.19\.0\.0\/24 is already routed: 198\.19\.0\.0\/16 dev eth1/, /^fail: fake prefix 2001:db8:0:ff01::\/64 is already routed/]],
    ['our own TUN route and blackhole are fine', probes({ covering: [{ dst: '198.19.0.0/24', dev: 'eg0', type: 'unicast' }, { dst: '198.19.0.0/24', type: 'blackhole' }] }), []],
    ['no route to the peer', probes({ route: undefined }), [/^warn: peer bob: no route to its endpoint 198\.18\.0\.2/]],
    ['MTU too small for inner IPv6', probes({ route: { type: 'unicast', dev: 'tun9', mtu: 1300 } }), [/^fail: peer bob: tunnel MTU 1240 \(link 1300 via tun9\) is below the 1280 bytes IPv6 needs/]],
  ];
  for (const [i, [what, p, want]] of cases.entries()) {
    const got = await levels(p);
    assert.equal(got.length, want.length, `case ${i + 1} (${what}): ${JSON.stringify(got)}`);
    want.forEach((re, k) => assert.match(got[k] ?? '', re, `case ${i + 1} (${what})`));
  }
});

test('doctor: every warning and failure says what to do; the summary counts them', async () => {
  const results = await runDoctor(CFG, probes({ files: [], route: undefined }));
  for (const r of results) if (r.level !== 'ok') assert.ok((r.fix ?? '').length > 10, `${r.what}: has a fix`);
  assert.match(formatDoctor(results), /system: 1 problem\(s\) to fix before espgate up$/);
  assert.match(formatDoctor(await runDoctor(CFG, probes())), /system: ready$/);
});

test('firstAddressOf', () => {
  assert.equal(firstAddressOf('198.19.0.0/24'), '198.19.0.1');
  assert.equal(firstAddressOf('2001:db8:0:ff01::/64'), '2001:db8:0:ff01::1');
});
