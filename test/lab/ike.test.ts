/**
 * test/lab/ike.test.ts: espgate <-> espgate with IKEv2 (PSK) instead of static SAs, in the lab
 * (root only; skips otherwise).
 *
 *   lan  alice 198.18.0.1 ====== br-lan (capture) ====== bob 198.18.0.2
 *        IKE on UDP 500, ESP as IP protocol 50 (no NAT on the path)
 *
 *   nat  inside 198.18.3.10 -- br-home -- router (masquerade) 198.18.0.1 == br-wan (capture) == outside 198.18.0.2
 *        inside's endpoint for outside: 198.18.0.2; outside's endpoint for inside: 198.18.0.1
 *        NAT detected: IKE moves to UDP 4500, ESP in UDP 4500 (RFC 3948); no protocol 50 at all
 *
 * Per topology, one bring-up (configs from lab/gen-configs.ts with keying 'ike': a PSK per
 * peering, ids = the hosts' own addresses, childLifetime 12 s, dpdDelay 5 s):
 *   1  both daemons establish (an outbound SA each); pings both ways, IPv4 and IPv6 inner;
 *      1b: status --json shows the peer's `ike` state established (and NAT-T across the NAT)
 *   2  two Child SA rekeys under traffic: a ping every 50 ms and a paced TCP transfer run across
 *      them: no ping lost, the transfer's SHA-256 matches both ways, three outbound SPIs seen
 *   3  the capture of 1-2: between the two outer addresses only IKE and ESP (in the
 *      encapsulation the topology implies); no plaintext between the protected addresses
 *   4  kill -9 of the second daemon and restart: the SAs come back and pings pass again (60 s)
 *   5  SIGTERM: both exit 0
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { after, before, describe, test } from 'node:test';
import type { LabRun } from '../../lab/harness.js';
import { labUnavailable, labUp, startCapture, stopProcess } from '../../lab/harness.js';
import type { TopologyName } from '../../lab/topology.js';
import { addressOf, outerAddressOf, peeringOf } from '../../lab/topology.js';
import type { Daemon, Frame, LabTestState } from './support.js';
import { decodeFrames, frameText, isLeak, protectOf, sleep, tail, tearDownLab } from './support.js';
import {
  IKE_ESTABLISHED, ikeStatusOf, killHard, outSpiOf, ping, pingUntilAnswered, queueDrops, queueOverflowExplains, startEspgate,
  startTrafficServer, summarizeWire, tcpTransfer, waitIkeEstablished, waitUp, writeIkeConfigs,
} from './ike-support.js';

const HOOK_TIMEOUT_MS = 180_000;
const STEP_TIMEOUT_MS = 180_000;

/** CHILD_LIFETIME_S is the Child SA lifetime of the lab configs: two rekeys fit in REKEY_RUN_S. */
const CHILD_LIFETIME_S = 12;
const DPD_DELAY_S = 5;
const REKEY_RUN_S = 28;
const TCP_PORT = 5011;
/** TCP_BYTES at TCP_RATE bytes/s: the transfer spans the rekeys (about 24 s). */
const TCP_BYTES = 9_600_000;
const TCP_RATE = 400_000;

interface IkeSpec {
  readonly title: string;
  readonly topology: TopologyName;
  readonly a: string;
  readonly b: string;
  /** natT: a NAT sits between a and b (IKE floats to 4500, ESP in UDP). */
  readonly natT: boolean;
}

function ikeSuite(spec: IkeSpec): void {
  const skip = labUnavailable();
  const st: LabTestState = { daemons: new Map(), failed: false };
  const { a, b } = spec;
  const runOf = (): LabRun => {
    if (st.run === undefined) throw new Error('the lab is not up (see the before hook)');
    return st.run;
  };
  const addr = (h: string, fam: 4 | 6): string => addressOf(runOf().topology, h, fam);
  const daemon = (h: string): Daemon => {
    const d = st.daemons.get(h);
    if (d === undefined) throw new Error(`no daemon on ${h}`);
    return d;
  };
  const step = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    test(name, { timeout: STEP_TIMEOUT_MS }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        st.failed = true;
        for (const d of st.daemons.values()) t.diagnostic(`--- ${d.host} (${d.log})\n${tail(d.log, 12)}`);
        throw e;
      }
    });
  };
  const start = async (h: string): Promise<void> => {
    const d = startEspgate(runOf(), h);
    st.daemons.set(h, d);
    if (!(await waitUp(runOf(), d))) throw new Error(`${h}: espgate did not come up (log ${d.log}):\n${tail(d.log)}`);
  };

  describe(spec.title, { skip: skip ?? false }, () => {
    before(async () => {
      try {
        const run = labUp(spec.topology);
        st.run = run;
        writeIkeConfigs(run, { pairs: [[a, b]], ike: { childLifetime: CHILD_LIFETIME_S, dpdDelay: DPD_DELAY_S } });
        st.capture = await startCapture(run, 'ike.pcap', { maxSeconds: 600 });
        await Promise.all([start(a), start(b)]);
        await startTrafficServer(run, a, TCP_PORT);
      } catch (e) {
        st.failed = true;
        throw e;
      }
    }, { timeout: HOOK_TIMEOUT_MS });

    after(async () => {
      await tearDownLab(st, spec.title);
    }, { timeout: HOOK_TIMEOUT_MS });

    step('1. IKE establishes (an outbound SA at each end within 30 s); ping both ways, IPv4 and IPv6', async (t) => {
      const run = runOf();
      for (const [x, y] of [[a, b], [b, a]] as const) {
        const s = await waitIkeEstablished(run, x, y, 60, 500);
        assert.ok(s !== undefined, `${x}: an outbound SA for ${y} within 30 s:\n${tail(daemon(x).log)}`);
        t.diagnostic(`${x}: peer ${y} endpoint ${s.endpoint}: out SPI ${outSpiOf(s) ?? '-'}`);
      }
      for (const fam of [4, 6] as const) {
        for (const [x, y] of [[a, b], [b, a]] as const) {
          const p = await ping(run, x, addr(y, fam), 5);
          assert.equal(p.received, 5, `${x} -> ${y} IPv${fam}: ${p.text}`);
        }
      }
    });

    step(`1b. status --json: each end shows the other's ike state ${IKE_ESTABLISHED}${spec.natT ? ', with NAT-T' : ''}`, async (t) => {
      const run = runOf();
      for (const [x, y] of [[a, b], [b, a]] as const) {
        const s = await ikeStatusOf(run, x, y);
        assert.ok(s !== undefined, `${x}: status --json answers with peer ${y}`);
        t.diagnostic(`${x}: peers[${y}].ike = ${JSON.stringify(s.ike)}`);
        assert.equal(s.ike?.state, IKE_ESTABLISHED, `${x}: status --json peers[${y}].ike.state`);
        assert.ok((s.ike.children ?? []).length >= 1, `${x}: peers[${y}].ike.children lists the Child SA`);
        assert.equal(s.ike.natT === true, spec.natT, `${x}: peers[${y}].ike.natT`);
      }
    });

    step(`2. two Child SA rekeys (lifetime ${CHILD_LIFETIME_S} s) under traffic: no ping lost, TCP SHA-256 matches, three outbound SPIs`, async (t) => {
      const run = runOf();
      const spis = new Set<string>();
      const first = outSpiOf(await ikeStatusOf(run, b, a));
      if (first !== undefined) spis.add(first);
      const dropsBefore = (await queueDrops(run, a)) + (await queueDrops(run, b));
      const count = REKEY_RUN_S * 20;
      const pinging = ping(run, b, addr(a, 4), count, 0.05);
      const transfer = tcpTransfer(run, b, addr(a, 4), TCP_PORT, TCP_BYTES, TCP_RATE, (REKEY_RUN_S + 60) * 1000);
      let done = false;
      void Promise.all([pinging, transfer]).then(() => {
        done = true;
      });
      for (let i = 0; i < REKEY_RUN_S + 30 && !done; i++) {
        const spi = outSpiOf(await ikeStatusOf(run, b, a));
        if (spi !== undefined) spis.add(spi);
        await sleep(1000);
      }
      const [p, x] = await Promise.all([pinging, transfer]);
      t.diagnostic(`${p.sent} pings, ${p.received} answered; TCP ${String(x.result?.ms)} ms; ${b}'s outbound SPIs for ${a}: ${[...spis].join(' ')}`);
      assert.ok(x.ok, x.detail);
      assert.equal(x.result?.received, TCP_BYTES);
      assert.ok(spis.size >= 3, `at least two rekeys during the run (three outbound SPIs), saw ${spis.size}`);
      assert.equal(p.sent, count);
      const queueDropped = (await queueDrops(run, a)) + (await queueDrops(run, b)) - dropsBefore;
      const excuse = queueOverflowExplains(p, queueDropped);
      if (excuse !== undefined) t.diagnostic(excuse);
      assert.ok(p.received === p.sent || excuse !== undefined, `no ping lost across the rekeys: ${p.text}; NFQUEUE drops on ${a} and ${b}: ${queueDropped}`);
    });

    step(`3. capture of 1-2: only IKE and ${spec.natT ? 'ESP in UDP 4500' : 'ESP (protocol 50)'} between the outer addresses; no plaintext`, async (t) => {
      const run = runOf();
      assert.ok(st.capture !== undefined);
      const frames = await decodeFrames(run, await st.capture.stop());
      delete st.capture;
      const peering = peeringOf(run.topology, a, b);
      assert.ok(peering !== undefined);
      const ea = outerAddressOf(run.topology, peering, a, 4);
      const eb = outerAddressOf(run.topology, peering, b, 4);
      const w = summarizeWire(frames, ea, eb);
      // In host mode the outer addresses are protected ones too: IKE between them is no leak,
      // nor an ICMP unreachable quoting IKE (a daemon not listening yet).
      const ike = (f: Frame): boolean => ([500, 4500].includes(f.udpSrc) || [500, 4500].includes(f.udpDst)) && (f.proto === 17 || f.icmpType === 3);
      const leaks = frames.filter((f) => !ike(f) && isLeak(f, [[protectOf(run, a), protectOf(run, b)]]));
      t.diagnostic(`${frames.length} frames ${ea} <-> ${eb}: IKE 500 ${w.ike500}, IKE 4500 ${w.ike4500}, ESP-in-UDP ${w.espUdp}, raw ESP ${w.espRaw}, ICMP errors ${w.icmpErrors}, other ${w.other.length}; leaks ${leaks.length}`);
      assert.deepEqual(w.other.slice(0, 10).map(frameText), [], 'nothing but IKE and ESP between the outer addresses');
      assert.deepEqual(leaks.slice(0, 10).map(frameText), [], 'no plaintext between the protected addresses');
      assert.ok(w.ike500 >= 2, 'IKE_SA_INIT on UDP 500');
      if (spec.natT) {
        assert.ok(w.ike4500 >= 2, 'IKE moved to UDP 4500 after NAT detection');
        assert.ok(w.espUdp >= 1000, `ESP in UDP 4500 carried the traffic (${w.espUdp} frames)`);
        assert.equal(w.espRaw, 0, 'no raw ESP across the NAT');
      } else {
        assert.ok(w.espRaw >= 1000, `raw ESP carried the traffic (${w.espRaw} frames)`);
        assert.equal(w.espUdp + w.ike4500, 0, 'no NAT, so no UDP 4500');
      }
    });

    step(`4. kill -9 ${b}, restart it: IKE SAs come back and pings pass again within 60 s`, async (t) => {
      const run = runOf();
      await killHard(daemon(b));
      const lost = await ping(run, a, addr(b, 4), 2);
      assert.equal(lost.received, 0, `${b} is dead: ${lost.text}`);
      const t0 = Date.now();
      await start(b);
      const waited = await pingUntilAnswered(run, a, addr(b, 4), 60);
      assert.ok(waited >= 0, `${a} reaches ${b} again within 60 s of the restart:\n${tail(daemon(a).log)}\n---\n${tail(daemon(b).log)}`);
      for (const [x, y] of [[a, b], [b, a]] as const) {
        const s = await waitIkeEstablished(run, x, y, 20, 500);
        assert.ok(s !== undefined, `${x}: established with ${y} again`);
      }
      const back = await ping(run, b, addr(a, 6), 5);
      assert.equal(back.received, 5, `${b} -> ${a} IPv6 after the restart: ${back.text}`);
      t.diagnostic(`pings answered ${waited} s after the ping started, ${Math.round((Date.now() - t0) / 1000)} s after the restart began`);
    });

    step('5. SIGTERM: both daemons exit 0', async () => {
      for (const h of [a, b]) {
        const code = await stopProcess(daemon(h).child, 15_000);
        assert.equal(code, 0, `${h}: exit status after SIGTERM:\n${tail(daemon(h).log)}`);
      }
    });
  });
}

ikeSuite({
  title: 'ike: espgate <-> espgate with IKEv2 in the lan lab (alice, bob)',
  topology: 'lan',
  a: 'alice',
  b: 'bob',
  natT: false,
});

ikeSuite({
  title: 'ike: espgate <-> espgate with IKEv2 across a masquerading router (nat lab: inside, outside)',
  topology: 'nat',
  a: 'inside',
  b: 'outside',
  natT: true,
});
