/**
 * test/lab/swan.test.ts: interoperability with strongSwan (charon 5.9.8, kernel-libipsec) in
 * the lab (root only; skips otherwise, or when strongSwan is not installed).
 *
 *   alice 198.18.0.1 ====== br-lan (capture) ====== bob 198.18.0.2          (lan)
 *   inside 198.18.3.10 -- router (masquerade) .0.1 == br-wan == outside .0.2  (nat)
 *
 * 1. The harness alone: charon on alice and on bob, talking to each other. This checks
 *    swan-support.ts independently of espgate (and shows what strongSwan puts on the wire):
 *    establishment, ping, a capture with only IKE and ESP-in-UDP, a Child SA rekey every 8 s
 *    under a ping flood with no loss, and kill -9 / restart of the responder, recovered by the
 *    initiator's DPD.
 * 2. espgate <-> strongSwan: espgate as initiator and as
 *    responder, ping and a TCP transfer with matching SHA-256, Child SA rekeys under traffic,
 *    DPD after charon is killed (espgate removes the SAs and nothing leaks in the clear), and
 *    reconnection after charon restarts; then the same across the NAT topology.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { after, before, describe, test } from 'node:test';
import type { LabRun } from '../../lab/harness.js';
import { labUnavailable, labUp, startCapture, stopProcess } from '../../lab/harness.js';
import type { TopologyName } from '../../lab/topology.js';
import { addressOf, outerAddressOf, peeringOf } from '../../lab/topology.js';
import type { Daemon, Frame, LabTestState, ProtectedPair } from './support.js';
import { decodeFrames, frameText, isLeak, pollUntil, protectOf, sleep, statusOf, tail, tearDownLab } from './support.js';
import {
  ikeStatusOf, outSpiOf, ping, pingUntilAnswered, queueDrops, queueOverflowExplains, startEspgate, startTrafficServer, summarizeWire, tcpTransfer,
  udpRcvbufErrors, waitIkeEstablished, waitUp, writeIkeConfigs,
} from './ike-support.js';
import type { Swan } from './swan-support.js';
import { initiate, installedChildren, killSwan, listSas, restartSwan, startSwan, stopSwan, swanConnFor, swanLogTail, swanUnavailable, waitEstablished } from './swan-support.js';

const HOOK_TIMEOUT_MS = 120_000;
const STEP_TIMEOUT_MS = 150_000;

/** CHARON_CHILD_REKEY_S is the Child SA rekey time of the charon <-> charon case (short, to see two rekeys in one ping run). */
const CHARON_CHILD_REKEY_S = 8;

const skip = labUnavailable() ?? swanUnavailable();

/**
 * The harness case checks swan-support.ts itself (no espgate in it): run it with
 * ESPGATE_SWAN_HARNESS=1 when an interop case fails, to tell a harness problem from an espgate one.
 * It is left out of the default run to keep the suite's time down.
 */
const harnessSkip = skip ?? (process.env['ESPGATE_SWAN_HARNESS'] === '1' ? undefined : 'the charon <-> charon harness check runs with ESPGATE_SWAN_HARNESS=1');

describe('strongSwan harness: charon <-> charon in the lan lab (kernel-libipsec both ends)', { skip: harnessSkip ?? false }, () => {
  const st: LabTestState & { alice?: Swan; bob?: Swan } = { daemons: new Map(), failed: false };
  const runOf = (): LabRun => {
    if (st.run === undefined) throw new Error('the lab is not up (see the before hook)');
    return st.run;
  };
  const swans = (): [Swan, Swan] => {
    if (st.alice === undefined || st.bob === undefined) throw new Error('charon is not running (see the before hook)');
    return [st.alice, st.bob];
  };
  const step = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    test(name, { timeout: STEP_TIMEOUT_MS }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        st.failed = true;
        const logs = [st.alice, st.bob].filter((s) => s !== undefined).map((s) => `--- ${s.conn.host}\n${swanLogTail(s, 15)}`).join('\n');
        t.diagnostic(logs);
        throw e;
      }
    });
  };

  before(async () => {
    const run = labUp('lan');
    st.run = run;
    const set = writeIkeConfigs(run, { pairs: [['alice', 'bob']] });
    const psk = set.psks[0];
    assert.ok(psk !== undefined);
    st.capture = await startCapture(run, 'swan-harness.pcap', { maxSeconds: 300 });
    // Only alice rekeys: with equal rekey times (and no jitter) both ends start CREATE_CHILD_SA
    // at once, and charon 5.9.8's collision handling then lost the Child SA now and then (the
    // IKE SA came back only through DPD, with ~30 % of the pings lost). So bob's timer is 4x.
    const timing = { dpdDelay: 2, dpdAction: 'restart', retransmitTries: 2 } as const;
    st.alice = await startSwan(run, swanConnFor(run, psk, 'alice', { ...timing, childRekey: CHARON_CHILD_REKEY_S, childLife: CHARON_CHILD_REKEY_S * 12 }));
    st.bob = await startSwan(run, swanConnFor(run, psk, 'bob', { ...timing, childRekey: CHARON_CHILD_REKEY_S * 4, childLife: CHARON_CHILD_REKEY_S * 12 }));
  }, { timeout: HOOK_TIMEOUT_MS });

  after(async () => {
    await Promise.all([st.alice, st.bob].filter((s) => s !== undefined).map((s) => stopSwan(s)));
    await tearDownLab(st, 'swan harness');
  }, { timeout: HOOK_TIMEOUT_MS });

  step('1. alice initiates; both see ESTABLISHED with an INSTALLED Child SA, AES-GCM-256, X25519, ESP in UDP 4500; ping passes', async (t) => {
    const run = runOf();
    const [alice, bob] = swans();
    const r = await initiate(alice);
    assert.equal(r.status, 0, `swanctl --initiate: ${r.stdout.slice(-1500)} ${r.stderr}`);
    for (const s of [alice, bob]) {
      const sas = await waitEstablished(s, 20, 250);
      assert.ok(sas !== undefined, `${s.conn.host}: an established IKE SA with an installed Child SA`);
      const ike = sas.find((x) => x.state === 'ESTABLISHED');
      const child = installedChildren(sas)[0];
      assert.ok(ike !== undefined && child !== undefined);
      assert.equal(ike.initiator, s === alice);
      assert.deepEqual([ike.localPort, ike.remotePort], [4500, 4500], `${s.conn.host}: IKE floated to 4500`);
      assert.equal(ike.encrAlg, 'AES_GCM_16');
      assert.equal(ike.dhGroup, 'CURVE_25519');
      assert.equal(child.encap, true, `${s.conn.host}: Child SA is UDP-encapsulated (libipsec always is)`);
      assert.deepEqual([child.encrAlg, child.encrKeysize], ['AES_GCM_16', 256]);
      assert.deepEqual(child.localTs, s.conn.localTs);
      assert.deepEqual(child.remoteTs, s.conn.remoteTs);
      t.diagnostic(`${s.conn.host}: IKE ${ike.localHost}:${ike.localPort} <-> ${ike.remoteHost}:${ike.remotePort}; nat-local ${ike.natLocal} nat-remote ${ike.natRemote}; Child SA in ${child.spiIn} out ${child.spiOut}`);
    }
    const p = await ping(run, 'alice', addressOf(run.topology, 'bob', 4), 5);
    assert.equal(p.received, 5, `alice -> bob through charon: ${p.text}`);
    const q = await ping(run, 'bob', addressOf(run.topology, 'alice', 4), 5);
    assert.equal(q.received, 5, `bob -> alice through charon: ${q.text}`);
  });

  step(`2. Child SA rekeys every ${CHARON_CHILD_REKEY_S} s: a ping every 50 ms across at least two rekeys loses nothing`, async (t) => {
    const run = runOf();
    const [alice] = swans();
    const seconds = CHARON_CHILD_REKEY_S * 2 + 6;
    const count = seconds * 20;
    const spis = new Set<string>();
    const pinging = ping(run, 'alice', addressOf(run.topology, 'bob', 4), count, 0.05);
    let done = false;
    void pinging.then(() => {
      done = true;
    });
    for (let i = 0; i < seconds + 10 && !done; i++) {
      for (const c of installedChildren(await listSas(alice))) spis.add(c.spiIn);
      await sleep(1000);
    }
    const p = await pinging;
    t.diagnostic(`${p.sent} pings, ${p.received} answered; inbound SPIs seen at alice: ${[...spis].join(' ')}`);
    assert.ok(spis.size >= 3, `at least two rekeys (three inbound SPIs) during the run, saw ${spis.size}`);
    assert.equal(p.sent, count);
    assert.equal(p.received, p.sent, `no ping lost across the rekeys: ${p.text}`);
  });

  step('3. capture of 1-2: between alice and bob only IKE (UDP 500, then 4500) and ESP in UDP 4500; no raw ESP, nothing in the clear', async (t) => {
    const run = runOf();
    assert.ok(st.capture !== undefined);
    const frames = await decodeFrames(run, await st.capture.stop());
    delete st.capture;
    const w = summarizeWire(frames, addressOf(run.topology, 'alice', 4), addressOf(run.topology, 'bob', 4));
    t.diagnostic(`${frames.length} frames: IKE 500 ${w.ike500}, IKE 4500 ${w.ike4500}, ESP-in-UDP ${w.espUdp}, raw ESP ${w.espRaw}, ICMP errors ${w.icmpErrors}, other ${w.other.length}`);
    assert.deepEqual(w.other.slice(0, 10).map(frameText), [], 'nothing else between the two hosts');
    assert.ok(w.ike500 >= 2, 'IKE_SA_INIT on UDP 500');
    assert.ok(w.ike4500 >= 2, 'IKE_AUTH and later exchanges on UDP 4500');
    assert.ok(w.espUdp >= 200, 'the pings travel as ESP in UDP 4500');
    assert.equal(w.espRaw, 0, 'strongSwan 5.9.8 libipsec never sends raw ESP');
  });
  step('4. kill -9 of bob\'s charon, restart: alice\'s DPD notices and re-initiates; ping passes again (within 60 s)', async (t) => {
    const run = runOf();
    const [alice, bob] = swans();
    const capture = await startCapture(run, 'swan-harness-kill.pcap', { maxSeconds: 120 });
    await killSwan(bob);
    const lost = await ping(run, 'alice', addressOf(run.topology, 'bob', 4), 2);
    assert.equal(lost.received, 0, `with bob's charon dead nothing is answered: ${lost.text}`);
    await restartSwan(bob);
    const waited = await pingUntilAnswered(run, 'alice', addressOf(run.topology, 'bob', 4), 60);
    assert.ok(waited >= 0, 'alice reaches bob again within 60 s of the restart');
    const sas = await waitEstablished(bob, 20, 250);
    assert.ok(sas !== undefined, 'bob has an established IKE SA again');
    t.diagnostic(`ping answered ${waited} s after the restart; alice's IKE SAs: ${(await listSas(alice)).map((s) => `${s.uniqueId}:${s.state}`).join(' ')}`);
    // Not asserted, only reported: charon (start_action none, no trap policy) removes its TUN
    // route with the Child SA, so while the SA is gone pings leave in the clear. espgate keeps
    // the steering and drops instead (fail closed); swan.test.ts's espgate cases assert that.
    const w = summarizeWire(await decodeFrames(run, await capture.stop()), addressOf(run.topology, 'alice', 4), addressOf(run.topology, 'bob', 4));
    t.diagnostic(`while bob's charon was dead and restarting: ${w.other.length} frame(s) in the clear between alice and bob (${w.other.slice(0, 3).map(frameText).join('; ')}), ${w.icmpErrors} ICMP unreachable about IKE/ESP-in-UDP`);
  });

});

// ---------------------------------------------------------------------------------------------
// espgate <-> strongSwan

/** INTEROP_REKEY_RUN_S is how long traffic runs across the forced rekeys. */
const INTEROP_REKEY_RUN_S = 28;
/** ESPGATE_CHILD_LIFETIME_S / SWAN_CHILD_REKEY_S: the short lifetime on the side that must rekey. */
const ESPGATE_CHILD_LIFETIME_S = 12;
const SWAN_CHILD_REKEY_S = 9;
const INTEROP_DPD_S = 5;
const INTEROP_TCP_PORT = 5021;
/**
 * INTEROP_PACED_PORT serves step 3's transfer with its reply paced too: unpaced, the reply
 * (7.2 MB at once) filled charon's port 4500 socket buffer (208 KiB, and the lab cannot raise
 * net.core.rmem_max inside a namespace), the kernel dropped hundreds of datagrams per run, and
 * now and then a ping among them (test/lab/swan-rekey-soak.ts, docs/testing.md). Congestion
 * loss is not what step 3 is about: both directions run at INTEROP_PACED_RATE.
 */
const INTEROP_PACED_PORT = 5022;
const INTEROP_PACED_RATE = 300_000;
const INTEROP_PACED_BYTES = 4_200_000;
const INTEROP_TCP_BYTES = 4_000_000;

interface InteropSpec {
  readonly title: string;
  readonly topology: TopologyName;
  /** espgate and swan are the hosts running espgate and charon. */
  readonly espgate: string;
  readonly swan: string;
  /** espgateInitiates: espgate starts the IKE SA (charon answers), else charon does (start_action start, espgate initiate: false). */
  readonly espgateInitiates: boolean;
}

function interopSuite(spec: InteropSpec): void {
  const skipReason = labUnavailable() ?? swanUnavailable();
  const st: LabTestState & { swan?: Swan; espgate?: Daemon } = { daemons: new Map(), failed: false };
  const e = spec.espgate;
  const w = spec.swan;
  // The initiator's side carries the short lifetime, so the rekeys are that side's CREATE_CHILD_SA.
  const espgateRekeys = spec.espgateInitiates;
  const runOf = (): LabRun => {
    if (st.run === undefined) throw new Error('the lab is not up (see the before hook)');
    return st.run;
  };
  const swanOf = (): Swan => {
    if (st.swan === undefined) throw new Error('charon is not running (see the before hook)');
    return st.swan;
  };
  const daemonOf = (): Daemon => {
    if (st.espgate === undefined) throw new Error('espgate is not running (see the before hook)');
    return st.espgate;
  };
  const addr = (h: string, fam: 4 | 6): string => addressOf(runOf().topology, h, fam);
  const outer = (h: string): string => {
    const p = peeringOf(runOf().topology, e, w);
    if (p === undefined) throw new Error(`no peering ${e}-${w}`);
    return outerAddressOf(runOf().topology, p, h, 4);
  };
  const step = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    test(name, { timeout: STEP_TIMEOUT_MS }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        st.failed = true;
        if (st.espgate !== undefined) t.diagnostic(`--- espgate on ${e}\n${tail(st.espgate.log, 12)}`);
        if (st.swan !== undefined) t.diagnostic(`--- charon on ${w}\n${swanLogTail(st.swan, 12)}`);
        throw err;
      }
    });
  };
  /** cleartext: frames between the two protected hosts that are neither IKE nor ESP nor an ICMP error. */
  const cleartext = (frames: readonly Frame[]): Frame[] => {
    const run = runOf();
    const pair: ProtectedPair = [protectOf(run, e), protectOf(run, w)];
    const ike = (f: Frame): boolean => f.proto === 17 && ([500, 4500].includes(f.udpSrc) || [500, 4500].includes(f.udpDst));
    const outerPair = summarizeWire(frames, outer(e), outer(w)).other.filter((f) => f.icmpType !== 3);
    return [...frames.filter((f) => !ike(f) && f.icmpType !== 3 && isLeak(f, [pair])), ...outerPair.filter((f) => !isLeak(f, [pair]))];
  };

  describe(spec.title, { skip: skipReason ?? false }, () => {
    before(async () => {
      try {
        const run = labUp(spec.topology);
        st.run = run;
        const set = writeIkeConfigs(run, {
          pairs: [[e, w]],
          ike: { dpdDelay: INTEROP_DPD_S, childLifetime: espgateRekeys ? ESPGATE_CHILD_LIFETIME_S : 3600 },
          ikeFor: spec.espgateInitiates ? {} : { [e]: { [w]: { initiate: false } } },
        });
        const psk = set.psks[0];
        assert.ok(psk !== undefined);
        st.capture = await startCapture(run, 'interop.pcap', { maxSeconds: 900 });
        // The responder first, so that the initiator's first IKE_SA_INIT finds it listening.
        const startCharon = async (): Promise<void> => {
          st.swan = await startSwan(run, swanConnFor(run, psk, w, {
            dpdDelay: INTEROP_DPD_S,
            dpdAction: 'restart',
            childRekey: espgateRekeys ? 600 : SWAN_CHILD_REKEY_S,
            childLife: 900,
            startAction: spec.espgateInitiates ? 'none' : 'start',
            retransmitTries: 4,
          }, [4, 6]));
        };
        if (spec.espgateInitiates) await startCharon();
        const d = startEspgate(run, e);
        st.espgate = d;
        st.daemons.set(e, d);
        if (!(await waitUp(run, d))) throw new Error(`${e}: espgate did not come up:\n${tail(d.log)}`);
        if (!spec.espgateInitiates) await startCharon();
        await startTrafficServer(run, e, INTEROP_TCP_PORT);
        await startTrafficServer(run, e, INTEROP_PACED_PORT, INTEROP_PACED_RATE);
      } catch (err) {
        st.failed = true;
        throw err;
      }
    }, { timeout: HOOK_TIMEOUT_MS });

    after(async () => {
      if (st.swan !== undefined) await stopSwan(st.swan);
      await tearDownLab(st, spec.title);
    }, { timeout: HOOK_TIMEOUT_MS });

    step(`1. ${spec.espgateInitiates ? 'espgate' : 'charon'} initiates: both sides establish, ESP in UDP 4500; ping both ways, IPv4 and IPv6`, async (t) => {
      const run = runOf();
      const s = await waitIkeEstablished(run, e, w, 60, 500);
      assert.ok(s !== undefined, `espgate on ${e}: an outbound SA for ${w} within 30 s`);
      const sas = await waitEstablished(swanOf(), 40, 500);
      assert.ok(sas !== undefined, `charon on ${w}: established with an installed Child SA`);
      const ike = sas.find((x) => x.state === 'ESTABLISHED');
      const child = installedChildren(sas)[0];
      assert.ok(ike !== undefined && child !== undefined);
      assert.equal(ike.initiator, !spec.espgateInitiates, 'charon\'s role');
      assert.equal(ike.remotePort, 4500, 'IKE floated to 4500');
      assert.equal(child.encap, true);
      t.diagnostic(`charon: IKE ${ike.localHost}:${ike.localPort} <-> ${ike.remoteHost}:${ike.remotePort} ${ike.encrAlg}/${ike.dhGroup}; Child SA ${child.encrAlg}-${child.encrKeysize} in ${child.spiIn} out ${child.spiOut} TS ${child.localTs.join(',')} === ${child.remoteTs.join(',')}; espgate: ${JSON.stringify(s.ike ?? {})} out ${outSpiOf(s) ?? '-'}`);
      assert.equal(`0x${child.spiIn}`.toLowerCase(), (outSpiOf(s) ?? '').toLowerCase(), 'espgate sends with the SPI charon receives on');
      for (const fam of [4, 6] as const) {
        for (const [x, y] of [[e, w], [w, e]] as const) {
          const p = await ping(run, x, addr(y, fam), 5);
          assert.equal(p.received, 5, `${x} -> ${y} IPv${fam}: ${p.text}`);
        }
      }
    });

    step(`2. TCP: ${INTEROP_TCP_BYTES / 1e6} MB each way, ${w} (charon) -> ${e} (espgate), matching SHA-256`, async (t) => {
      const x = await tcpTransfer(runOf(), w, addr(e, 4), INTEROP_TCP_PORT, INTEROP_TCP_BYTES, 0, 90_000);
      assert.ok(x.ok, x.detail);
      assert.equal(x.result?.received, INTEROP_TCP_BYTES);
      t.diagnostic(`${INTEROP_TCP_BYTES} bytes each way in ${String(x.result?.ms)} ms, sha256 ${String(x.result?.sha256).slice(0, 16)}...`);
    });

    step(`3. rekeys started by ${espgateRekeys ? `espgate (childLifetime ${ESPGATE_CHILD_LIFETIME_S} s)` : `charon (rekey_time ${SWAN_CHILD_REKEY_S} s)`} under traffic: no ping lost, TCP matches, three SPIs`, async (t) => {
      const run = runOf();
      const spis = new Set<string>();
      const dropsBefore = await queueDrops(run, e);
      const udpBefore = [await udpRcvbufErrors(run, e), await udpRcvbufErrors(run, w)];
      const count = INTEROP_REKEY_RUN_S * 20;
      const pinging = ping(run, w, addr(e, 4), count, 0.05);
      const transfer = tcpTransfer(run, w, addr(e, 4), INTEROP_PACED_PORT, INTEROP_PACED_BYTES, INTEROP_PACED_RATE, (INTEROP_REKEY_RUN_S + 60) * 1000);
      let done = false;
      void Promise.all([pinging, transfer]).then(() => {
        done = true;
      });
      for (let i = 0; i < INTEROP_REKEY_RUN_S + 30 && !done; i++) {
        for (const c of installedChildren(await listSas(swanOf()))) spis.add(c.spiIn);
        await sleep(1000);
      }
      const [p, x] = await Promise.all([pinging, transfer]);
      t.diagnostic(`${p.sent} pings, ${p.received} answered; TCP ${String(x.result?.ms)} ms; charon's inbound SPIs: ${[...spis].join(' ')}`);
      assert.ok(x.ok, x.detail);
      assert.ok(spis.size >= 3, `at least two rekeys (three inbound SPIs at charon), saw ${spis.size}`);
      const queueDropped = (await queueDrops(run, e)) - dropsBefore;
      // Where a lost ping could have gone without anyone counting it as an IPsec drop: the
      // kernel's UDP receive-buffer drops on each side (espgate's and charon's port 4500 sockets).
      const sock = (await statusOf(run, e))?.udpEncap;
      assert.ok(sock !== undefined && sock !== null && sock.dropped !== null, `espgate's status shows its port 4500 socket and the kernel's drops there: ${JSON.stringify(sock)}`);
      const udpDropped = `UDP receive-buffer drops on ${e}: ${(await udpRcvbufErrors(run, e)) - (udpBefore[0] ?? 0)} (espgate's socket: ${sock.dropped} since it opened, buffer ${sock.rcvbufBytes} bytes), on ${w}: ${(await udpRcvbufErrors(run, w)) - (udpBefore[1] ?? 0)}`;
      t.diagnostic(udpDropped);
      const excuse = queueOverflowExplains(p, queueDropped);
      if (excuse !== undefined) t.diagnostic(excuse);
      assert.ok(p.received === p.sent || excuse !== undefined, `no ping lost across the rekeys: ${p.text}; NFQUEUE drops on ${e}: ${queueDropped}; ${udpDropped}`);
      assert.equal(p.sent, count);
    });

    step('4. capture of 1-3: between the outer addresses only IKE and ESP in UDP 4500; no raw ESP; no plaintext', async (t) => {
      const run = runOf();
      assert.ok(st.capture !== undefined);
      const frames = await decodeFrames(run, await st.capture.stop());
      delete st.capture;
      const wire = summarizeWire(frames, outer(e), outer(w));
      t.diagnostic(`${frames.length} frames ${outer(e)} <-> ${outer(w)}: IKE 500 ${wire.ike500}, IKE 4500 ${wire.ike4500}, ESP-in-UDP ${wire.espUdp}, raw ESP ${wire.espRaw}, ICMP errors ${wire.icmpErrors}, other ${wire.other.length}`);
      assert.deepEqual(cleartext(frames).slice(0, 10).map(frameText), [], 'no plaintext between the two hosts');
      assert.deepEqual(wire.other.slice(0, 10).map(frameText), [], 'nothing but IKE and ESP-in-UDP between the outer addresses');
      assert.equal(wire.espRaw, 0);
      assert.ok(wire.ike500 >= 2 && wire.ike4500 >= 2 && wire.espUdp >= 900, 'IKE_SA_INIT on 500, the rest on 4500, the traffic as ESP in UDP');
    });

    step(`5. kill -9 charon: espgate's DPD (${INTEROP_DPD_S} s) removes the SAs; ${e}'s traffic to ${w} stays blocked, nothing in the clear`, async (t) => {
      const run = runOf();
      const capture = await startCapture(run, 'interop-dead.pcap', { maxSeconds: 180 });
      await killSwan(swanOf());
      const t0 = Date.now();
      const gone = await pollUntil(async () => outSpiOf(await ikeStatusOf(run, e, w)) === undefined, 60, 1000);
      const seconds = Math.round((Date.now() - t0) / 1000);
      assert.ok(gone, `espgate on ${e} removes its outbound SA for ${w} within 60 s of charon's death`);
      const blocked = await ping(run, e, addr(w, 4), 3);
      assert.equal(blocked.received, 0, `nothing answers: ${blocked.text}`);
      const blocked6 = await ping(run, e, addr(w, 6), 3);
      assert.equal(blocked6.received, 0, `nothing answers over IPv6: ${blocked6.text}`);
      const frames = await decodeFrames(run, await capture.stop());
      assert.deepEqual(cleartext(frames).slice(0, 10).map(frameText), [], 'the pings are dropped, not sent in the clear');
      t.diagnostic(`SAs removed ${seconds} s after the kill; ${frames.length} frames while dead, none in the clear`);
    });

    step(`6. charon restarts: ${spec.espgateInitiates ? 'espgate re-initiates' : 'charon initiates again'}, pings pass again (within 90 s)`, async (t) => {
      const run = runOf();
      const t0 = Date.now();
      await restartSwan(swanOf());
      const waited = await pingUntilAnswered(run, e, addr(w, 4), 90);
      assert.ok(waited >= 0, `${e} reaches ${w} again within 90 s`);
      const sas = await waitEstablished(swanOf(), 20, 500);
      assert.ok(sas !== undefined, 'charon is established again');
      const back = await ping(run, w, addr(e, 6), 5);
      assert.equal(back.received, 5, `${w} -> ${e} IPv6: ${back.text}`);
      t.diagnostic(`pings pass ${Math.round((Date.now() - t0) / 1000)} s after the restart`);
    });

    step('7. SIGTERM: espgate exits 0', async () => {
      const code = await stopProcess(daemonOf().child, 15_000);
      assert.equal(code, 0, `espgate exit status:\n${tail(daemonOf().log)}`);
    });
  });
}

interopSuite({ title: 'espgate (alice, initiator) <-> strongSwan (bob, responder) in the lan lab', topology: 'lan', espgate: 'alice', swan: 'bob', espgateInitiates: true });
interopSuite({ title: 'strongSwan (bob, initiator) <-> espgate (alice, responder) in the lan lab', topology: 'lan', espgate: 'alice', swan: 'bob', espgateInitiates: false });
interopSuite({ title: 'espgate (inside, initiator, behind the NAT) <-> strongSwan (outside) in the nat lab', topology: 'nat', espgate: 'inside', swan: 'outside', espgateInitiates: true });
interopSuite({ title: 'strongSwan (inside, initiator, behind the NAT) <-> espgate (outside, responder) in the nat lab', topology: 'nat', espgate: 'outside', swan: 'inside', espgateInitiates: false });
