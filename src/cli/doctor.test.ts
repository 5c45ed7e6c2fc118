import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../config/load.js';
import { EXAMPLE, EXAMPLE_IKE } from '../config/reference.js';
import type { NftProbe } from '../netfilter/nft-probe.js';
import type { CoveringRoute, DoctorProbes, RouteInfo } from './doctor.js';
import { firstAddressOf, formatDoctor, runDoctor } from './doctor.js';

const CFG = parseConfig(EXAMPLE, 'example.yaml');

/** probes: a healthy host, with overrides. */
/** NO_NFT: nft is not installed (auto then means iptables, as before the nftables backend). */
const NO_NFT: NftProbe = { version: undefined, rest: { result: 'refused', error: 'nft is not installed' }, queue: { result: 'refused', error: 'nft is not installed' }, iptables: true };
/** NFT_NO_QUEUE: this lab kernel: nft works, the queue statement does not. */
const NFT_NO_QUEUE: NftProbe = { version: '1.0.6', rest: { result: 'ok' }, queue: { result: 'refused', error: 'Could not process rule: No such file or directory' }, iptables: true };

function probes(o: Partial<{ noConntrack: boolean; files: string[]; tools: string[]; route: RouteInfo | undefined; covering: CoveringRoute[]; caps: string[]; nft: NftProbe }> = {}): DoctorProbes {
  const files = o.files ?? ['/dev/net/tun', '/proc/net/netfilter/nfnetlink_queue'];
  const tools = [...(o.tools ?? ['ip', 'ipset', 'iptables', 'iptables-restore', 'iptables-save', 'ip6tables', 'ip6tables-restore', 'ip6tables-save']), ...(o.noConntrack === true ? [] : ['conntrack'])];
  return {
    exists: (p) => files.includes(p),
    hasTool: (t) => tools.includes(t),
    route: () => Promise.resolve('route' in o ? o.route : { type: 'unicast', dev: 'eth0', mtu: 1500 }),
    covering: () => Promise.resolve(o.covering ?? [{ dst: 'default', dev: 'eth0', type: 'unicast' }]),
    missingCapabilities: () => o.caps ?? [],
    nftables: () => Promise.resolve(o.nft ?? NO_NFT),
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
    ['conntrack(8) missing', probes({ noConntrack: true }), [/^warn: conntrack\(8\) is not installed: a flow to a peer that began before the gate stays blocked/]],
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

test('doctor: net.core.rmem_max against the NAT-T socket\'s buffer, asked only with IKE peers (numbered cases)', async () => {
  const ike = parseConfig(EXAMPLE_IKE, 'example-ike.yaml');
  let asked = 0;
  const withRmem = (v: number | undefined): DoctorProbes => ({ ...probes(), rmemMax: () => { asked++; return v; } });
  const rmemLines = async (cfg: typeof CFG, v: number | undefined): Promise<string[]> =>
    (await runDoctor(cfg, withRmem(v))).filter((r) => r.what.includes('rmem_max')).map((r) => `${r.level}: ${r.what} | ${r.fix ?? ''}`);
  const cases: [number, typeof CFG, number | undefined, RegExp | undefined][] = [
    [1, ike, 212_992, /^warn: net\.core\.rmem_max is 212992: the NAT-T socket \(UDP 4500\) gets 212992 bytes of receive buffer instead of 4194304.*\| sysctl -w net\.core\.rmem_max=4194304/],
    [2, ike, 4_194_304, /^ok: net\.core\.rmem_max 4194304: the NAT-T socket \(UDP 4500\) gets its 4 MiB receive buffer/],
    [3, ike, undefined, undefined],
    [4, CFG, 212_992, undefined],
  ];
  for (const [n, cfg, v, want] of cases) {
    const got = await rmemLines(cfg, v);
    if (want === undefined) assert.deepEqual(got, [], `case ${n}`);
    else {
      assert.equal(got.length, 1, `case ${n}: ${JSON.stringify(got)}`);
      assert.match(got[0] ?? '', want, `case ${n}`);
    }
  }
  assert.equal(asked, 3, 'a config without IKE peers does not ask (case 4)');
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

test('doctor: the rules backend line and the tools it needs (numbered cases)', async () => {
  const withBackend = (backend: 'auto' | 'iptables' | 'nftables') => ({ ...CFG, rules: { ...CFG.rules, backend } });
  const nftTools = ['ip', 'nft', 'iptables-restore', 'iptables-save', 'ip6tables-restore', 'ip6tables-save'];
  const cases: [string, 'auto' | 'iptables' | 'nftables', DoctorProbes, RegExp, string[]][] = [
    ['auto without nft: iptables', 'auto', probes(), /^ok: rules backend: iptables \(auto: nft is not installed\)$/, []],
    ['auto with nft, no nft queue: the whole gate stays in iptables', 'auto', probes({ nft: NFT_NO_QUEUE, tools: [...nftTools, 'ipset', 'iptables', 'ip6tables'] }),
      /^ok: rules backend: iptables \(auto: the kernel has no nft queue .*stays in iptables/, []],
    ['nftables configured, no nft queue: nftables + iptables fallback', 'nftables', probes({ nft: NFT_NO_QUEUE, tools: nftTools }),
      /^ok: rules backend: nftables, table inet espgate \(rules\.backend: nftables: nft 1\.0\.6 .*no nft queue.*NFQUEUE rule .* goes through iptables/, []],
    ['nftables with a queue-capable kernel needs neither ipset nor iptables', 'nftables', probes({ nft: { ...NFT_NO_QUEUE, queue: { result: 'ok' } }, tools: ['ip', 'nft'] }),
      /^ok: rules backend: nftables, table inet espgate \(rules\.backend: nftables: .*nft queue included\)$/, []],
    ['nftables configured, nft missing: fail', 'nftables', probes(), /^fail: rules\.backend is nftables but nft is not installed/, []],
    ['nftables fallback without the iptables tools: missing tools', 'nftables', probes({ nft: NFT_NO_QUEUE, tools: ['ip', 'nft'] }), /^ok: rules backend: nftables/,
      ['fail: missing tools: iptables-restore iptables-save ip6tables-restore ip6tables-save']],
    ['iptables configured: nft is not asked', 'iptables', { ...probes(), nftables: () => Promise.reject(new Error('must not probe')) }, /^ok: rules backend: iptables \(rules\.backend: iptables\)$/, []],
    ['auto, no privileges to probe: warn', 'auto', probes({ nft: { ...NFT_NO_QUEUE, rest: { result: 'unknown', error: 'Operation not permitted' } } }), /^warn: rules backend: iptables \(auto: could not probe/, []],
  ];
  for (const [i, [what, backend, p, line, others]] of cases.entries()) {
    const results = await runDoctor(withBackend(backend), p);
    const all = results.map((r) => `${r.level}: ${r.what}`);
    const b = all.find((l) => /rules backend|rules\.backend/.test(l)) ?? '';
    assert.match(b, line, `case ${i + 1} (${what}): ${b}`);
    const rest = all.filter((l) => l !== b && !l.startsWith('ok'));
    assert.deepEqual(rest, others, `case ${i + 1} (${what})`);
  }
});

test('doctor: inbound: queue (the default) asks for nfnetlink_queue, and for iptables where nft has no queue; sockets need neither', async () => {
  const queued = CFG;
  const sockets = parseConfig(`${EXAMPLE.trimEnd()}\ninbound: socket\n`, 'example.yaml');
  const warn = async (cfg: typeof CFG, p: DoctorProbes): Promise<string[]> => (await runDoctor(cfg, p)).filter((r) => r.level !== 'ok').map((r) => `${r.level}: ${r.what}`);
  assert.deepEqual(await warn(queued, probes({ files: ['/dev/net/tun'] })), ['warn: nfnetlink_queue is not loaded yet']);
  assert.deepEqual(await warn(sockets, probes({ files: ['/dev/net/tun'] })), []);
  const nftCfg = (text: string): typeof CFG => parseConfig(`${text.trimEnd()}\nrules:\n  backend: nftables\n`, 'example.yaml');
  const nftOnly = probes({ nft: NFT_NO_QUEUE, tools: ['ip', 'nft'] });
  assert.deepEqual(await warn(nftCfg(`${EXAMPLE.trimEnd()}\ninbound: socket`), nftOnly), [], 'sockets: nft alone is enough');
  const q = await warn(nftCfg(EXAMPLE), nftOnly);
  assert.equal(q.length, 1, JSON.stringify(q));
  assert.match(q[0] ?? '', /^fail: missing tools: iptables-restore iptables-save ip6tables-restore ip6tables-save$/);
});
