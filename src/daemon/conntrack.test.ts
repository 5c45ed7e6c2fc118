import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { RulesSpec } from '../netfilter/model.js';
import type { RunResult, Runner } from '../netfilter/runner.js';
import { flushUnsteered, unsteeredPeerAddresses } from './conntrack.js';

// `conntrack -L` lines as a lab namespace prints them: steered flows have the fake address
// (198.19.0.x) in the reply tuple; flows from before the gate do not.
const LISTING = `tcp      6 119 TIME_WAIT src=198.18.0.1 dst=198.18.0.2 sport=41506 dport=5201 src=198.19.0.2 dst=198.18.0.1 sport=5201 dport=41506 [ASSURED] mark=0 use=1
udp      17 18 src=198.18.0.1 dst=198.18.0.2 sport=43727 dport=5201 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5201 dport=43727 mark=0 use=1
tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.18.0.3 sport=40000 dport=22 src=198.18.0.3 dst=198.18.0.1 sport=22 dport=40000 [ASSURED] mark=0 use=1
unknown  50 599 src=198.18.0.1 dst=198.18.0.2 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 mark=0 use=1
udp      17 25 src=198.18.0.1 dst=198.18.0.2 sport=500 dport=500 src=198.18.0.2 dst=198.18.0.1 sport=500 dport=500 mark=0 use=1
udp      17 25 src=198.18.0.1 dst=198.18.0.3 sport=4500 dport=31234 src=198.18.0.3 dst=198.18.0.1 sport=31234 dport=4500 mark=0 use=1
udp      17 25 src=198.18.0.1 dst=198.18.0.9 sport=5353 dport=53 src=198.18.0.9 dst=198.18.0.1 sport=53 dport=5353 mark=0 use=1
icmp     1 29 src=198.18.0.1 dst=198.18.0.2 type=8 code=0 id=7 src=198.18.0.2 dst=198.18.0.1 type=0 code=0 id=7 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 8 flow entries have been shown.
`;

test('unsteeredPeerAddresses: flows to peers without the steering binding, once per address and protocol; ESP, IKE, steered and non-peer flows left alone', () => {
  const peers = new Set(['198.18.0.2', '198.18.0.3']);
  const endpoints = (a: string): boolean => peers.has(a);
  assert.deepEqual(unsteeredPeerAddresses(LISTING, (a) => peers.has(a), endpoints), [
    { addr: '198.18.0.2', proto: '17' },
    { addr: '198.18.0.3', proto: '6' },
    { addr: '198.18.0.2', proto: '1' },
  ]);
  // IKE and NAT-T are exempt only from our ports 500/4500 to an endpoint, as the rules have it:
  // without IKE (no exemption) they are flows like any other; to a non-endpoint too.
  assert.deepEqual(unsteeredPeerAddresses(LISTING, (a) => peers.has(a)), [
    { addr: '198.18.0.2', proto: '17' },
    { addr: '198.18.0.3', proto: '6' },
    { addr: '198.18.0.3', proto: '17' },
    { addr: '198.18.0.2', proto: '1' },
  ], 'no IKE exemption');
  assert.deepEqual(unsteeredPeerAddresses(LISTING, (a) => peers.has(a), (a) => a === '198.18.0.2'), [
    { addr: '198.18.0.2', proto: '17' },
    { addr: '198.18.0.3', proto: '6' },
    { addr: '198.18.0.3', proto: '17' },
    { addr: '198.18.0.2', proto: '1' },
  ], '198.18.0.3 is no endpoint: its 4500 flow is steered by the rules, so it is moved');
  const toIkePort = 'udp      17 20 src=198.18.0.1 dst=198.18.0.2 sport=40000 dport=500 src=198.18.0.2 dst=198.18.0.1 sport=500 dport=40000 mark=0 use=1\n';
  assert.deepEqual(unsteeredPeerAddresses(toIkePort, () => true, () => true), [{ addr: '198.18.0.2', proto: '17' }], 'an application flow to port 500 is steered by the rules: moved');
  assert.deepEqual(unsteeredPeerAddresses(LISTING, (a) => a === '198.18.0.9'), [{ addr: '198.18.0.9', proto: '17' }]);
  assert.deepEqual(unsteeredPeerAddresses(LISTING + LISTING, (a) => a === '198.18.0.9'), [{ addr: '198.18.0.9', proto: '17' }], 'once each');
  assert.deepEqual(unsteeredPeerAddresses(LISTING, () => false), []);
  assert.deepEqual(unsteeredPeerAddresses('', () => true), []);
  const steeredOnly = LISTING.split('\n').filter((l) => l.startsWith('tcp      6 119')).join('\n');
  assert.deepEqual(unsteeredPeerAddresses(steeredOnly, () => true), [], 'a steered flow stays');
});

/** FakeRunner answers conntrack -L with a listing per family, -D with 0 (or 1 for `gone` addresses), and records every call. */
class FakeRunner implements Runner {
  readonly calls: string[] = [];
  constructor(readonly listings: Record<string, string>, readonly missing = false, readonly gone: readonly string[] = []) {}
  run(file: string, args: readonly string[]): Promise<RunResult> {
    this.calls.push([file, ...args].join(' '));
    const family = args[args.indexOf('-f') + 1] ?? '';
    if (args[0] === '-D') {
      const addr = args[args.indexOf('-d') + 1] ?? '';
      return Promise.resolve({ code: this.gone.includes(addr) ? 1 : 0, stdout: '', stderr: '', missing: this.missing, timedOut: false });
    }
    const stdout = this.listings[family] ?? '';
    return Promise.resolve({ code: stdout === '' ? 1 : 0, stdout, stderr: '', missing: this.missing, timedOut: false });
  }
}

/** specOf is a RulesSpec with these peer prefixes and endpoints (IKE on unless said). */
function specOf(v4: string[], v6: string[] = [], ike = true): RulesSpec {
  return {
    tun: 'eg0', tag: 'ESPGATE', queueNum: 0, mode: 'host', mssClamp: true, guard: true, ike, notrack: true, inbound: 'queue',
    families: [
      ...(v4.length > 0 ? [{ family: 'v4' as const, pairs: [], peerAddrs: v4, endpoints: v4.map((p) => p.split('/')[0] ?? '') }] : []),
      ...(v6.length > 0 ? [{ family: 'v6' as const, pairs: [], peerAddrs: v6, endpoints: v6.map((p) => p.split('/')[0] ?? '') }] : []),
    ],
  };
}

test('flushUnsteered: one listing per family in use, one delete per unsteered peer address; a note; conntrack(8) missing is a note too', async () => {
  const r = new FakeRunner({ ipv4: LISTING, ipv6: 'udp      17 20 src=2001:db8:0:1::1 dst=2001:db8:0:1::2 sport=1 dport=2 src=2001:db8:0:1::2 dst=2001:db8:0:1::1 sport=2 dport=1 mark=0 use=1\n' });
  const notes = await flushUnsteered(r, specOf(['198.18.0.2/32', '198.18.0.3/32'], ['2001:db8:0:1::2/128']));
  assert.deepEqual(r.calls, [
    'conntrack -L -f ipv4',
    'conntrack -D -f ipv4 -p 17 -d 198.18.0.2 -r 198.18.0.2',
    'conntrack -D -f ipv4 -p 6 -d 198.18.0.3 -r 198.18.0.3',
    'conntrack -D -f ipv4 -p 1 -d 198.18.0.2 -r 198.18.0.2',
    'conntrack -L -f ipv6',
    'conntrack -D -f ipv6 -p 17 -d 2001:db8:0:1::2 -r 2001:db8:0:1::2',
  ]);
  assert.equal(notes.length, 1);
  assert.match(notes[0] ?? '', /198\.18\.0\.2, 198\.18\.0\.3, 2001:db8:0:1::2 .*deleted/);
  const v4only = new FakeRunner({ ipv4: '' });
  assert.deepEqual(await flushUnsteered(v4only, specOf(['198.18.0.0/24'])), [], 'nothing tracked: nothing to say');
  assert.deepEqual(v4only.calls, ['conntrack -L -f ipv4'], 'no IPv6 prefix: no IPv6 listing');
  const none = new FakeRunner({}, true);
  const n = await flushUnsteered(none, specOf(['198.18.0.2/32']));
  assert.match(n[0] ?? '', /conntrack\(8\) is not installed/);
  const raced = new FakeRunner({ ipv4: LISTING }, false, ['198.18.0.3']);
  const rn = await flushUnsteered(raced, specOf(['198.18.0.2/32', '198.18.0.3/32']));
  assert.match(rn[0] ?? '', /flows to 198\.18\.0\.2 that/, 'an address whose entries were gone when deleted is not reported as moved');
});
