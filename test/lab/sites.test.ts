/**
 * test/lab/sites.test.ts: espgate end to end in gateway mode, the `sites` lab (root only).
 *
 *   a1 198.18.1.10 ── br-lana ── gwa ══ br-wan (capture) ══ gwb ── br-lanb ── b1 198.18.2.10
 *   2001:db8:0:a::10            .1/::1  198.18.0.1  .2      .1/::1          2001:db8:0:b::10
 *
 * gwa and gwb run espgate in gateway mode and protect LAN-to-LAN traffic; a1 and b1 run no
 * espgate and only route through their gateway. On the WAN, a1 <-> b1 traffic may only appear
 * as ESP between the gateways; the gateways' own WAN traffic stays in the clear (by design,
 * docs/lab.md). Conntrack, status and the rules/routes comparison are checked on the gateways.
 *
 * Sub-tests 10a and 10b cover ICMP errors that the far gateway itself originates for tunnelled
 * traffic (a smaller MTU on its LAN, a hop limit that runs out there). Regression: they were
 * sourced from gwb's WAN address (eg0 had none) and gwa dropped them as 'policy', a PMTU black
 * hole; the fake-prefix routes now carry `src` = the gateway's address inside local.protect.
 */
import assert from 'node:assert/strict';
import type { LabRun } from '../../lab/harness.js';
import { addressOf } from '../../lab/topology.js';
import { describeResult, runIn } from './support.js';
import type { ExtraStep } from './suite.js';
import { gatewaySuite } from './suite.js';

/** FAR_LAN_MTU is the MTU sub-test 12 gives LAN B (gwb eth1, b1 eth0): below the TUN MTU. */
const FAR_LAN_MTU = 1300;

/** LAB_LINK_MTU is the lab's link MTU, restored afterwards. */
const LAB_LINK_MTU = 1500;

const FAR_LAN_LINKS: readonly (readonly [string, string])[] = [['gwb', 'eth1'], ['b1', 'eth0']];

async function setFarLanMtu(run: LabRun, mtu: number): Promise<void> {
  for (const [host, dev] of FAR_LAN_LINKS) {
    const r = await runIn(run, host, ['ip', 'link', 'set', 'dev', dev, 'mtu', String(mtu)], 10_000);
    assert.equal(r.status, 0, describeResult(r));
  }
}

const farGatewayTooBig: ExtraStep = {
  name: `10a. gateway mode: the far gateway's frag-needed / packet-too-big (LAN B MTU ${FAR_LAN_MTU}) reaches a1, IPv4 and IPv6`,
  fn: async (run, t) => {
    await setFarLanMtu(run, FAR_LAN_MTU);
    try {
      for (const fam of [4, 6] as const) {
        const fit = FAR_LAN_MTU - (fam === 4 ? 28 : 48);
        const dst = addressOf(run.topology, 'b1', fam);
        const big = await runIn(run, 'a1', ['ping', `-${fam}`, '-n', '-M', 'do', '-s', String(fit + 1), '-c', '2', '-i', '0.3', '-W', '2', dst], 20_000);
        const text = big.stdout + big.stderr;
        t.diagnostic(`a1 -> b1 IPv${fam} -M do -s ${fit + 1}: ${text.replace(/\s+/g, ' ').slice(0, 300)}`);
        assert.match(text, /frag needed|message too long|packet too big/i, `a1 learns that IPv${fam} packets above ${FAR_LAN_MTU} bytes do not fit LAN B`);
        const reported = [...text.matchAll(/mtu\s*[=:]\s*(\d+)/gi)].map((m) => Number(m[1]));
        assert.ok(reported.includes(FAR_LAN_MTU), `the reported MTU is ${FAR_LAN_MTU} (got ${reported.join(',')})`);
        const ok = await runIn(run, 'a1', ['ping', `-${fam}`, '-n', '-M', 'do', '-s', String(fit), '-c', '2', '-i', '0.3', '-W', '3', dst], 20_000);
        assert.equal(ok.status, 0, `a1 -> b1 IPv${fam} at exactly ${FAR_LAN_MTU} bytes: ${describeResult(ok)}`);
      }
    } finally {
      await setFarLanMtu(run, LAB_LINK_MTU);
    }
  },
};

const farGatewayTimeExceeded: ExtraStep = {
  name: '10b. gateway mode: a hop limit that runs out at the far gateway gets its time-exceeded back to a1, IPv4 and IPv6',
  fn: async (run, t) => {
    // a1 -> gwa uses one hop, the tunnel none: TTL 2 runs out when gwb forwards to LAN B.
    for (const fam of [4, 6] as const) {
      const r = await runIn(run, 'a1', ['ping', `-${fam}`, '-n', '-t', '2', '-c', '2', '-i', '0.3', '-W', '2', addressOf(run.topology, 'b1', fam)], 20_000);
      const text = r.stdout + r.stderr;
      t.diagnostic(`a1 -> b1 IPv${fam} ttl 2: ${text.replace(/\s+/g, ' ').slice(0, 300)}`);
      assert.match(text, /time to live exceeded|time exceeded/i, `a1 hears that the IPv${fam} hop limit ran out`);
    }
  },
};

gatewaySuite({
  title: 'sites: two LANs joined by gateways in gateway mode',
  topology: 'sites',
  pairs: [['a1', 'b1']],
  clear: [['gwa', 'gwb']],
  many: { from: ['a1'], to: 'b1', perHost: 100 },
  gatewayOf: { a1: 'gwa', b1: 'gwb' },
  extra: [farGatewayTooBig, farGatewayTimeExceeded],
});
