/**
 * test/lab/suite.ts: the end-to-end checks every lab topology runs (lan.test.ts, sites.test.ts,
 * hub.test.ts call gatewaySuite with their topology's hosts). One lab bring-up per file:
 *
 *   before   lab up, configs (IKEv2 with a PSK per peering, the lab's default keying; static SAs
 *            with spec.keying 'static'), snapshot rules/routes/links, switch capture, start
 *            espgate on every protected host, wait for `status` and for every peering's IKE SA
 *            and Child SA at both ends, record the negotiated keys, conntrack baseline, servers
 *   0 .. 11  the sub-tests below, in order (0 checks the leak detector on a capture taken before
 *            espgate starts; the main capture runs through 1..9 and is read in 10; a topology's
 *            own sub-tests, 10a.., run before 11 stops the daemons)
 *   after    stop whatever still runs (by pid), lab down (the run dir is kept when a sub-test
 *            failed, or with EGL_KEEP=1)
 *
 * Traffic "pairs" are [initiator, responder] hosts whose traffic must cross the tunnel: the
 * hosts themselves in host mode, the LAN hosts behind the gateways in gateway mode (gatewayOf
 * names the daemon host that handles a LAN host's traffic). pairs[0] carries the bulk transfers,
 * the ICMP errors and the too-big pings.
 *
 * With IKE keying the capture starts before the daemons, so it holds the IKE exchanges too: IKE
 * (UDP 500/4500) between two peers' tunnel endpoints is the one clear traffic allowed between
 * them; everything else must be ESP, and tshark must decrypt every ESP frame with the keys the
 * daemons negotiated (`espgate keys`, read after establishment and again before the capture
 * stops, so an SA that a rekey retired in between is still in keys.uat).
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { after, before, describe, test } from 'node:test';
import type { Capture, LabRun } from '../../lab/harness.js';
import { labConfigs, labUnavailable, labUp, startCapture, stopProcess } from '../../lab/harness.js';
import type { Keying } from '../../lab/gen-configs.js';
import { DEFAULT_KEYING, LAB_TUN_NAME, uatPathOf } from '../../lab/gen-configs.js';
import type { AddressFamily, TopologyName } from '../../lab/topology.js';
import { addressOf, findHost, interfaceOn, protectedHosts } from '../../lab/topology.js';
import type { Daemon, DaemonStatusDoc, Frame, Json, ProtectedPair } from './support.js';
import {
  canon, conntrackInvalid, decodeFrames, describeResult, diffLines, espConntrackEntries, frameText, isFake, isLeak, jsonLines,
  parseConntrackLine, pollUntil, protectOf, runIn, sameAddress, snapshotState, startDaemon, startServer, statusOf, tail, tearDownLab,
  toFake, traffic, waitReady,
} from './support.js';
import { IKE_ESTABLISHED, espgateArgv, ikeStatusOf, waitIkeEstablished } from './ike-support.js';
import { configPathOf } from './support.js';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import type { Inbound } from '../../src/netfilter/model.js';

/** TCP_PORT, UDP_PORT and CLOSED_PORT are the traffic servers' ports (CLOSED_PORT has none). */
export const TCP_PORT = 5001;
export const UDP_PORT = 5002;
export const CLOSED_PORT = 5999;

/** BULK_BYTES is the size of each bulk transfer, in each direction. */
export const BULK_BYTES = 20_000_000;

/** IPV4_ICMP_OVERHEAD and IPV6_ICMP_OVERHEAD are the header bytes `ping -s` does not count. */
const IPV4_ICMP_OVERHEAD = 28;
const IPV6_ICMP_OVERHEAD = 48;

/** SUBTEST_TIMEOUT_MS bounds each sub-test; HOOK_TIMEOUT_MS each hook. */
const SUBTEST_TIMEOUT_MS = 150_000;
const HOOK_TIMEOUT_MS = 180_000;

/** Pair is [initiator, responder]. */
export type Pair = readonly [string, string];

/** ExtraStep is a topology's own sub-test; extras run after sub-test 10 (capture) and before 11 (stop). */
export interface ExtraStep {
  readonly name: string;
  /** todo names a known daemon bug: the sub-test runs and reports, but does not fail the file. */
  readonly todo?: string;
  readonly fn: (run: LabRun, t: TestContext) => Promise<void>;
}

/** SuiteSpec describes one topology's run. */
export interface SuiteSpec {
  readonly title: string;
  readonly topology: TopologyName;
  readonly clients?: number;
  /** outer is the tunnel's outer address family (configs --outer). */
  readonly outer?: AddressFamily;
  /** keying: 'ike' (the default, DEFAULT_KEYING) or 'static' SAs. */
  readonly keying?: Keying;
  /** inbound: how the daemons take inbound ESP (configs --inbound); default: the daemon's, NFQUEUE. */
  readonly inbound?: Inbound;
  readonly pairs: readonly Pair[];
  /** clear lists host pairs that talk in the clear (pinged both ways, seen in clear on the capture). */
  readonly clear: readonly Pair[];
  /** many: concurrent short TCP connections from each `from` host to `to`. */
  readonly many: { readonly from: readonly string[]; readonly to: string; readonly perHost: number };
  /** fanIn: every `from` host sends and receives `bytes` over TCP to `to`, all at once. */
  readonly fanIn?: { readonly from: readonly string[]; readonly to: string; readonly bytes: number };
  /** gatewayOf maps a traffic host to the daemon host that handles its traffic (default: itself). */
  readonly gatewayOf?: Readonly<Record<string, string>>;
  /** extra: the topology's own sub-tests (they must leave links, rules and routes as they found them). */
  readonly extra?: readonly ExtraStep[];
}

interface SuiteState {
  run?: LabRun;
  readonly daemons: Map<string, Daemon>;
  readonly stateBefore: Map<string, Map<string, string>>;
  readonly invalidBefore: Map<string, number>;
  capture?: Capture;
  /** keys: every esp_sa line the daemons reported (`espgate keys`), for tshark (IKE keying). */
  readonly keys: Set<string>;
  readonly tcpLogs: Map<string, string>;
  readonly udpLogs: Map<string, string>;
  /** controlFrames: the capture of a <-> b pings before espgate started (the leak detector's control). */
  controlFrames?: Frame[];
  /** bulk results: conn1 is pairs[0] a->b over IPv4, conn2 is b->a over IPv6. */
  conn1?: Json | undefined;
  conn2?: Json | undefined;
  failed: boolean;
}

const pingCounts = (out: string): { sent: number; received: number } => {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  return { sent: Number(m?.[1] ?? -1), received: Number(m?.[2] ?? -1) };
};

/** protectedPairs returns the protected prefixes of both ends of every peering in the run. */
function protectedPairs(run: LabRun): ProtectedPair[] {
  return run.topology.peerings.map((p) => [protectOf(run, p.a), protectOf(run, p.b)] as const);
}

/** IKE_PORTS are IKE's UDP ports (RFC 7296 §2.23: 500, and 4500 after NAT-T floating). */
const IKE_PORTS: readonly number[] = [500, 4500];

/** IKE_WAIT_TRIES x IKE_WAIT_INTERVAL_MS bounds the wait for one end's IKE SA and Child SA (60 s). */
const IKE_WAIT_TRIES = 120;
const IKE_WAIT_INTERVAL_MS = 500;

/** Endpoints are one peering's tunnel endpoints (canonical text). */
interface Endpoints {
  readonly ea: string;
  readonly eb: string;
}

/**
 * isIke tells whether a frame is IKE between two peers' tunnel endpoints: UDP with port 500 or
 * 4500 at either end, or an ICMP unreachable about such a datagram. (No topology of this suite has a NAT, so there is no ESP in UDP 4500 to
 * tell apart; ike.test.ts covers that case.)
 */
function isIke(f: Frame, ends: readonly Endpoints[]): boolean {
  // An ICMP "unreachable" quoting an IKE datagram counts too: a peer whose daemon has not yet
  // opened UDP 500 answers the first IKE_SA_INIT so, in the clear, as any host does (seen once
  // in a lan run: carol port-unreachable to bob). It carries nothing but that IKE header.
  const unreachable = (f.proto === 1 && f.icmpType === 3) || (f.proto === 58 && f.icmp6Type === 1);
  if ((f.proto !== 17 && !unreachable) || !(IKE_PORTS.includes(f.udpSrc) || IKE_PORTS.includes(f.udpDst))) return false;
  return ends.some(({ ea, eb }) => (f.src === ea && f.dst === eb) || (f.src === eb && f.dst === ea));
}

/** tunnelEndpoints returns every peering's outer addresses in the run's outer family. */
function tunnelEndpoints(run: LabRun, outer: AddressFamily): (Endpoints & { readonly a: string; readonly b: string })[] {
  const topo = run.topology;
  const fam = outer === 4 ? 'v4' : 'v6';
  return topo.peerings.map((p) => ({
    a: p.a,
    b: p.b,
    ea: canon(interfaceOn(findHost(topo, p.a), p.segment)[fam]),
    eb: canon(interfaceOn(findHost(topo, p.b), p.segment)[fam]),
  }));
}

/** childSasAgree tells whether x and y each hold exactly one Child SA for the other, the same one (SPIs crossed). */
async function childSasAgree(run: LabRun, x: string, y: string): Promise<boolean> {
  const [cx, cy] = await Promise.all([ikeStatusOf(run, x, y), ikeStatusOf(run, y, x)]).then((r) => r.map((s) => s?.ike?.children ?? []));
  const [a, b] = [cx?.[0], cy?.[0]];
  return cx?.length === 1 && cy?.length === 1 && a !== undefined && b !== undefined && a.outSpi === b.inSpi && a.inSpi === b.outSpi;
}

/** recordKeys adds every daemon's live esp_sa lines (`espgate keys`) to `keys`. */
async function recordKeys(run: LabRun, hosts: readonly string[], keys: Set<string>): Promise<void> {
  await Promise.all(hosts.map(async (h) => {
    const r = await runIn(run, h, [...espgateArgv(), 'keys', '-c', configPathOf(run, h)], 20_000);
    if (r.status !== 0) throw new Error(`${h}: espgate keys: ${describeResult(r)}`);
    for (const line of r.stdout.split('\n')) if (line.startsWith('"')) keys.add(line);
  }));
}

/** gatewaySuite defines the describe block with the hooks and sub-tests 1..11 for one topology. */
export function gatewaySuite(spec: SuiteSpec): void {
  const skip = labUnavailable();
  const st: SuiteState = {
    daemons: new Map(), stateBefore: new Map(), invalidBefore: new Map(), keys: new Set(), tcpLogs: new Map(), udpLogs: new Map(), failed: false,
  };
  const gw = (h: string): string => spec.gatewayOf?.[h] ?? h;
  const keying = spec.keying ?? DEFAULT_KEYING;
  const [a, b] = spec.pairs[0] ?? ['', ''];
  const runOf = (): LabRun => {
    if (st.run === undefined) throw new Error('the lab is not up (see the before hook)');
    return st.run;
  };
  const addr = (h: string, fam: AddressFamily): string => addressOf(runOf().topology, h, fam);
  const daemonHosts = (): string[] => protectedHosts(runOf().topology).map((h) => h.name);

  /** step defines a sub-test and remembers a failure (the run dir is then kept). */
  const step = (name: string, fn: (t: TestContext) => Promise<void> | void, options: { todo?: string } = {}): void => {
    test(name, { timeout: SUBTEST_TIMEOUT_MS, ...options }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        if (options.todo === undefined) st.failed = true;
        throw e;
      }
    });
  };

  const mtuOf = async (host: string): Promise<number> => {
    const s = await statusOf(runOf(), gw(host));
    assert.ok(s !== undefined, `${gw(host)}: status --json answers`);
    return s.tun.mtu;
  };

  describe(spec.title, { skip: skip ?? false }, () => {
    const bringUp = async (): Promise<void> => {
      const run = labUp(spec.topology, spec.clients === undefined ? {} : { clients: spec.clients });
      st.run = run;
      labConfigs(run, spec.outer ?? 4, keying, spec.inbound);
      const hosts = daemonHosts();
      await Promise.all(hosts.map(async (h) => st.stateBefore.set(h, await snapshotState(run, h))));
      // Control for sub-test 10: before espgate runs, a and b ping each other in the clear.
      const control = await startCapture(run, 'control.pcap', { maxSeconds: 60 });
      for (const fam of [4, 6] as const) await runIn(run, a, ['ping', `-${fam}`, '-n', '-c', '2', '-i', '0.2', '-W', '3', addr(b, fam)], 20_000);
      st.controlFrames = await decodeFrames(run, await control.stop());
      // The main capture starts before the daemons: it holds the IKE exchanges (sub-test 10).
      st.capture = await startCapture(run, 'e2e.pcap', { maxSeconds: 900 });
      const daemons = hosts.map((h) => startDaemon(run, h));
      for (const d of daemons) st.daemons.set(d.host, d);
      const ready = await Promise.all(daemons.map(async (d) => [d, await waitReady(run, d)] as const));
      for (const [d, ok] of ready) {
        if (!ok) throw new Error(`${d.host}: espgate did not answer status (log ${d.log}):\n${tail(d.log)}`);
      }
      if (keying === 'ike') {
        // Traffic waits for the tunnels: until a Child SA exists, a peer's packets are dropped
        // (fail closed), and sub-test 1 counts every echo reply.
        const ends = run.topology.peerings.flatMap((p) => [[p.a, p.b], [p.b, p.a]] as const);
        const missing = (await Promise.all(ends.map(async ([x, y]) =>
          ((await waitIkeEstablished(run, x, y, IKE_WAIT_TRIES, IKE_WAIT_INTERVAL_MS)) === undefined ? `${x} -> ${y}` : undefined))))
          .filter((m) => m !== undefined);
        if (missing.length > 0) {
          throw new Error(`no IKE SA with an outbound Child SA within ${IKE_WAIT_TRIES * IKE_WAIT_INTERVAL_MS / 1000} s: ${missing.join(', ')}\n` +
            missing.map((m) => tail(st.daemons.get(m.split(' ')[0] ?? '')?.log ?? '', 8)).join('\n'));
        }
        // ...and until both ends agree on one Child SA: when both initiated at once, one IKE SA
        // of the two is dropped a moment after both were established.
        const unsettled = (await Promise.all(run.topology.peerings.map(async (p) =>
          ((await pollUntil(() => childSasAgree(run, p.a, p.b), IKE_WAIT_TRIES, IKE_WAIT_INTERVAL_MS)) ? undefined : `${p.a} <-> ${p.b}`))))
          .filter((m) => m !== undefined);
        if (unsettled.length > 0) throw new Error(`the ends never agreed on one Child SA: ${unsettled.join(', ')}`);
        await recordKeys(run, hosts, st.keys);
      }
      for (const h of hosts) st.invalidBefore.set(h, await conntrackInvalid(run, h));
      const servers = new Set<string>([...spec.pairs.map((p) => p[1]), a, spec.many.to, ...(spec.fanIn === undefined ? [] : [spec.fanIn.to])]);
      for (const h of servers) {
        st.tcpLogs.set(h, await startServer(run, h, 'tcp-server', TCP_PORT));
        st.udpLogs.set(h, await startServer(run, h, 'udp-echo-server', UDP_PORT));
      }
    };

    before(async () => {
      try {
        await bringUp();
      } catch (e) {
        st.failed = true; // keep the run dir (daemon logs) for a look
        throw e;
      }
    }, { timeout: HOOK_TIMEOUT_MS });

    after(async () => {
      await tearDownLab(st, spec.title);
    }, { timeout: HOOK_TIMEOUT_MS });

    step(`0. control: before espgate starts, ${a} <-> ${b} pings cross the switch in the clear and count as leaks`, () => {
      const run = runOf();
      const leaks = (st.controlFrames ?? []).filter((f) => isLeak(f, protectedPairs(run)));
      const v4 = leaks.filter((f) => f.outer === 4 && (f.icmpType === 8 || f.icmpType === 0)).length;
      const v6 = leaks.filter((f) => f.outer === 6 && (f.icmp6Type === 128 || f.icmp6Type === 129)).length;
      assert.ok(v4 >= 4 && v6 >= 4, `the leak detector sees the plaintext echo requests and replies (IPv4 ${v4}, IPv6 ${v6}, want >= 4 each)`);
    });

    step('1. ping both ways, IPv4 and IPv6, through the tunnel and in the clear where expected', async (t) => {
      const run = runOf();
      const jobs: Promise<string | undefined>[] = [];
      for (const [x, y] of [...spec.pairs, ...spec.clear]) {
        jobs.push((async (): Promise<string | undefined> => {
          const problems: string[] = [];
          for (const fam of [4, 6] as const) {
            for (const [from, to] of [[x, y], [y, x]] as const) {
              const r = await runIn(run, from, ['ping', `-${fam}`, '-n', '-c', '3', '-i', '0.2', '-W', '3', addr(to, fam)], 20_000);
              const c = pingCounts(r.stdout);
              if (r.status !== 0 || c.received !== 3) problems.push(`${from} -> ${to} IPv${fam}: ${c.received}/3 replies; ${describeResult(r)}`);
            }
          }
          return problems.length === 0 ? undefined : problems.join('\n');
        })());
      }
      const problems = (await Promise.all(jobs)).filter((p): p is string => p !== undefined);
      t.diagnostic(`${jobs.length * 4} pings of 3 echo requests each`);
      assert.deepEqual(problems, [], 'every ping gets all its replies');
    });

    step(`2. TCP: ${BULK_BYTES / 1e6} MB each way with matching SHA-256, opened from each side (IPv4 ${a} -> ${b}, IPv6 ${b} -> ${a})`, async (t) => {
      const run = runOf();
      const [one, two] = await Promise.all([
        traffic(run, a, ['tcp-client', '--host', addr(b, 4), '--port', String(TCP_PORT), '--bytes', String(BULK_BYTES)], 120_000),
        traffic(run, b, ['tcp-client', '--host', addr(a, 6), '--port', String(TCP_PORT), '--bytes', String(BULK_BYTES)], 120_000),
      ]);
      assert.ok(one.ok, one.detail);
      assert.ok(two.ok, two.detail);
      st.conn1 = one.result;
      st.conn2 = two.result;
      for (const o of [one, two]) {
        assert.equal(o.result?.received, BULK_BYTES);
        assert.match(String(o.result?.sha256), /^[0-9a-f]{64}$/);
        t.diagnostic(`${String(o.result?.local)}:${String(o.result?.localPort)} -> ${String(o.result?.remote)}: ${BULK_BYTES} bytes each way in ${String(o.result?.ms)} ms, sha256 ${String(o.result?.sha256).slice(0, 16)}...`);
      }
      // the servers computed the same digests of what they received
      const srvB = jsonLines(st.tcpLogs.get(b) ?? '').find((e) => e.event === 'bulk' && e.port === one.result?.localPort);
      const srvA = jsonLines(st.tcpLogs.get(a) ?? '').find((e) => e.event === 'bulk' && e.port === two.result?.localPort);
      assert.equal(srvB?.sha256, one.result?.sha256, `${b}'s server hashed the same ${BULK_BYTES} bytes`);
      assert.equal(srvA?.sha256, two.result?.sha256, `${a}'s server hashed the same ${BULK_BYTES} bytes`);
    });

    if (spec.fanIn !== undefined) {
      const fan = spec.fanIn;
      step(`2b. TCP fan-in: ${fan.from.length} hosts transfer ${fan.bytes / 1e6} MB each way to ${fan.to} at the same time`, async (t) => {
        const run = runOf();
        const results = await Promise.all(fan.from.map((h, i) =>
          traffic(run, h, ['tcp-client', '--host', addr(fan.to, i % 2 === 0 ? 4 : 6), '--port', String(TCP_PORT), '--bytes', String(fan.bytes)], 120_000)));
        const failed = results.filter((o) => !o.ok).map((o) => o.detail);
        assert.deepEqual(failed, [], 'every concurrent transfer completes with matching digests');
        t.diagnostic(`slowest: ${Math.max(...results.map((o) => Number(o.result?.ms ?? 0)))} ms`);
      });
    }

    step('3. UDP request/response, IPv4 and IPv6', async () => {
      const run = runOf();
      const jobs: Promise<string | undefined>[] = [];
      const flows: [string, string, AddressFamily][] = [];
      for (const [x, y] of spec.pairs) for (const fam of [4, 6] as const) flows.push([x, y, fam]);
      for (const fam of [4, 6] as const) flows.push([b, a, fam]);
      for (const [from, to, fam] of flows) {
        jobs.push(traffic(run, from, ['udp-client', '--host', addr(to, fam), '--port', String(UDP_PORT), '--count', '3'], 30_000)
          .then((o) => (o.ok ? undefined : o.detail)));
      }
      assert.deepEqual((await Promise.all(jobs)).filter((p) => p !== undefined), [], 'every UDP request is answered');
    });

    step('3b. a burst of equal UDP datagrams (coalesced into GSO_UDP_L4 writes on the receiving TUN) comes back byte for byte, IPv4 and IPv6', async (t) => {
      const run = runOf();
      // Each side's TUN counts one received packet per write: fewer writes than datagrams shows
      // the coalescing happened (a diagnostic: how many datagrams share an NFQUEUE batch depends on timing).
      // (In gateway topologies the end host has no TUN: then no count.)
      const tunRx = async (h: string): Promise<number> => {
        const r = await runIn(run, h, ['cat', `/sys/class/net/${LAB_TUN_NAME}/statistics/rx_packets`]);
        return r.status === 0 ? Number(r.stdout.trim()) : NaN;
      };
      const count = 48;
      for (const fam of [4, 6] as const) {
        const before = await tunRx(b);
        const o = await traffic(run, a, ['udp-burst', '--host', addr(b, fam), '--port', String(UDP_PORT), '--count', String(count), '--size', '200'], 30_000);
        assert.ok(o.ok, o.detail);
        const writes = (await tunRx(b)) - before;
        const tunNote = Number.isNaN(writes) ? '' : `; ${b}'s TUN took ${writes} write(s) for them and the echo requests`;
        t.diagnostic(`${a} -> ${b} IPv${fam}: ${count} datagrams echoed intact in ${String(o.result?.rounds)} round(s), ${String(o.result?.sends)} sends${tunNote}`);
      }
    });

    step('4. an ICMP port unreachable travels back through the tunnel (ECONNREFUSED), IPv4 and IPv6', async (t) => {
      const run = runOf();
      for (const [from, to] of [[a, b], [b, a]] as const) {
        for (const fam of [4, 6] as const) {
          const o = await traffic(run, from, ['udp-refused', '--host', addr(to, fam), '--port', String(CLOSED_PORT)], 20_000);
          assert.ok(o.ok, o.detail);
          assert.equal(o.result?.code, 'ECONNREFUSED', o.detail);
          t.diagnostic(`${from} -> ${to} IPv${fam}: ECONNREFUSED after ${String(o.result?.sends)} datagram(s) (${String(o.result?.syscall)})`);
        }
      }
    });

    step('5. too big: DF ping above the TUN MTU gets frag-needed / packet-too-big, exactly at the MTU it passes', async (t) => {
      const run = runOf();
      for (const [from, to] of [[a, b], [b, a]] as const) {
        const mtu = await mtuOf(from);
        for (const fam of [4, 6] as const) {
          const fit = mtu - (fam === 4 ? IPV4_ICMP_OVERHEAD : IPV6_ICMP_OVERHEAD);
          const big = await runIn(run, from, ['ping', `-${fam}`, '-n', '-M', 'do', '-s', String(fit + 1), '-c', '2', '-i', '0.3', '-W', '2', addr(to, fam)], 20_000);
          const text = big.stdout + big.stderr;
          assert.notEqual(big.status, 0, `${from} -> ${to} IPv${fam} -s ${fit + 1}: no reply expected; ${describeResult(big)}`);
          assert.equal(pingCounts(big.stdout).received, 0, `${from} -> ${to} IPv${fam}: nothing above the MTU gets through`);
          assert.match(text, /message too long|frag needed|packet too big/i, `${from} -> ${to} IPv${fam}: the sender learns the packet is too big`);
          const reported = [...text.matchAll(/mtu\s*[=:]\s*(\d+)/gi)].map((m) => Number(m[1]));
          assert.ok(reported.length > 0 && reported.every((m) => m === mtu), `${from} -> ${to} IPv${fam}: reported MTU ${reported.join(',')} is the TUN MTU ${mtu}`);
          const ok = await runIn(run, from, ['ping', `-${fam}`, '-n', '-M', 'do', '-s', String(fit), '-c', '2', '-i', '0.3', '-W', '3', addr(to, fam)], 20_000);
          assert.equal(pingCounts(ok.stdout).received, 2, `${from} -> ${to} IPv${fam} -M do -s ${fit} (exactly the TUN MTU ${mtu}) gets through; ${describeResult(ok)}`);
          t.diagnostic(`${from} -> ${to} IPv${fam}: TUN MTU ${mtu}: -s ${fit + 1} refused (${reported.length} MTU report(s)), -s ${fit} answered`);
        }
      }
    });

    step(`6. ${spec.many.from.length * spec.many.perHost} concurrent TCP connections all succeed`, async (t) => {
      const run = runOf();
      const m = spec.many;
      const results = await Promise.all(m.from.map((h) =>
        traffic(run, h, ['tcp-many', '--host', addr(m.to, 4), '--port', String(TCP_PORT), '--conns', String(m.perHost)], 60_000)));
      const failed = results.filter((o) => !o.ok || o.result?.succeeded !== m.perHost).map((o) => o.detail);
      assert.deepEqual(failed, [], 'every connection echoes its bytes');
      t.diagnostic(`${m.from.length} x ${m.perHost} connections, slowest batch ${Math.max(...results.map((o) => Number(o.result?.ms ?? 0)))} ms`);
    });

    step('7. the servers log the real client addresses, never fake ones', () => {
      const run = runOf();
      const real = new Set(run.topology.hosts.flatMap((h) => h.interfaces.flatMap((i) => [i.v4, i.v6])));
      const problems: string[] = [];
      for (const [h, log] of [...st.tcpLogs, ...st.udpLogs]) {
        for (const e of jsonLines(log)) {
          if (e.event !== 'conn' && e.event !== 'udp') continue;
          const peer = String(e.peer);
          if (isFake(peer) || ![...real].some((r) => sameAddress(r, peer))) problems.push(`${h}: ${JSON.stringify(e)}`);
        }
      }
      assert.deepEqual(problems.slice(0, 10), [], 'every logged peer is a real lab address');
      const conn = (server: string, peer: string, port: unknown): boolean =>
        jsonLines(st.tcpLogs.get(server) ?? '').some((e) => e.event === 'conn' && sameAddress(String(e.peer), peer) && e.port === port);
      assert.ok(conn(b, addr(a, 4), st.conn1?.localPort), `${b} logged ${a}'s real IPv4 address and port for the bulk connection`);
      assert.ok(conn(a, addr(b, 6), st.conn2?.localPort), `${a} logged ${b}'s real IPv6 address and port for the bulk connection`);
      const udpFrom = (server: string, peer: string): boolean =>
        jsonLines(st.udpLogs.get(server) ?? '').some((e) => e.event === 'udp' && sameAddress(String(e.peer), peer));
      for (const [x, y] of spec.pairs) {
        for (const fam of [4, 6] as const) assert.ok(udpFrom(y, addr(x, fam)), `${y}'s UDP server saw ${x}'s real IPv${fam} address`);
      }
      const manyLog = jsonLines(st.tcpLogs.get(spec.many.to) ?? '');
      for (const h of spec.many.from) {
        const n = manyLog.filter((e) => e.event === 'echo' && sameAddress(String(e.peer), addr(h, 4))).length;
        assert.ok(n >= spec.many.perHost, `${spec.many.to} echoed ${n} connections from ${h}'s real address (want >= ${spec.many.perHost})`);
      }
    });

    step('8. conntrack: no new invalid entries; no entry for our own ESP (rules.espNotrack); the TCP flows are ASSURED with the fake peer address in the reply tuple', async (t) => {
      const run = runOf();
      for (const h of daemonHosts()) {
        const now = await conntrackInvalid(run, h);
        assert.equal(now, st.invalidBefore.get(h), `${h}: conntrack -S invalid stays at ${st.invalidBefore.get(h)}`);
        for (const fam of ['ipv4', 'ipv6'] as const) assert.deepEqual(await espConntrackEntries(run, h, fam), [], `${h}: no ${fam} conntrack entry for ESP`);
      }
      const flows: [string, string, string, AddressFamily, Json | undefined][] = [[gw(a), a, b, 4, st.conn1], [gw(b), b, a, 6, st.conn2]];
      for (const [host, from, to, fam, conn] of flows) {
        assert.ok(conn !== undefined, 'the bulk transfer ran (sub-test 5)');
        const r = await runIn(run, host, ['conntrack', '-L', '-f', fam === 4 ? 'ipv4' : 'ipv6', '-p', 'tcp'], 15_000);
        assert.equal(r.status, 0, describeResult(r));
        const entries = r.stdout.split('\n').map(parseConntrackLine).filter((e) => e !== undefined);
        const e = entries.find((x) => x.orig.sport === conn.localPort && x.orig.dport === TCP_PORT && sameAddress(x.orig.src, addr(from, fam)));
        assert.ok(e !== undefined, `${host}: conntrack has the ${from} -> ${to} flow from port ${String(conn.localPort)}`);
        const prefixes = findHost(run.topology, host).espgate?.prefixes ?? [];
        const fake = toFake(addr(to, fam), prefixes);
        assert.ok(fake !== undefined);
        assert.ok(sameAddress(e.orig.dst, addr(to, fam)), `${host}: original dst is ${to}'s real address: ${e.line}`);
        assert.ok(sameAddress(e.reply.src, fake), `${host}: reply src is ${to}'s fake address ${fake}: ${e.line}`);
        assert.ok(sameAddress(e.reply.dst, addr(from, fam)), `${host}: reply dst is ${from}'s real address: ${e.line}`);
        assert.ok(e.assured, `${host}: entry is ASSURED: ${e.line}`);
        t.diagnostic(`${host}: ${e.line.trim()}`);
      }
    });

    step('9. status --json: packets both ways for every peer; drops reported and explained', async (t) => {
      const run = runOf();
      for (const h of daemonHosts()) {
        const s: DaemonStatusDoc | undefined = await statusOf(run, h);
        assert.ok(s !== undefined, `${h}: status --json answers`);
        assert.equal(s.state, 'up');
        // Every fast path on in the lab (kernel 6.2+; io_uring allowed), UDP coalescing not refused by the burst of step 3b.
        // The express paths on their own thread (express_loop.h), not the event loop.
        assert.deepEqual({ ...s.dataPath, warmUp: s.dataPath?.warmUp === 'running' ? 'done' : s.dataPath?.warmUp, express: s.dataPath?.express?.on, expressThread: s.dataPath?.express?.thread },
          { tunOffload: true, tcpCoalescing: true, udpCoalescing: 'on', sendBatch: true, warmUp: 'done', batchedReads: true, express: true, expressThread: 'on' }, `${h}: status dataPath`);
        t.diagnostic(`${h}: express path: ${s.dataPath?.express?.flows ?? 0} flow(s) learned`);
        // The express thread carries its own name (top -H, ps -L, perf): exactly one in the daemon.
        // (A thread that ends between the listing and the read is skipped, not an error.)
        const comm = (tid: string): string => {
          try {
            return readFileSync(`/proc/${s.pid}/task/${tid}/comm`, 'utf8').trim();
          } catch {
            return '';
          }
        };
        const names = readdirSync(`/proc/${s.pid}/task`).map(comm);
        assert.equal(names.filter((n) => n === 'espgate-express').length, 1, `${h}: threads of pid ${s.pid}: ${names.join(' ')}`);
        if ((spec.inbound ?? 'queue') === 'queue') {
          // Every queued packet got its verdict (the express path sends it after its TUN write).
          assert.equal(s.inbound?.mode, 'queue', `${h}: status inbound.mode`);
          assert.equal(s.queue?.waiting, 0, `${h}: NFQUEUE: nothing waiting for a verdict`);
          t.diagnostic(`${h}: NFQUEUE kernel drops: queue full ${s.queue.queueDropped}, socket buffer ${s.queue.userDropped}`);
        } else {
          // Raw ESP sockets: no queue bound, and the kernel dropped nothing at their buffers.
          assert.deepEqual(s.inbound, { mode: 'socket', socketDrops: 0 }, `${h}: status inbound`);
          assert.equal(s.queue, null, `${h}: no NFQUEUE bound`);
        }
        const expectedPeers = run.topology.peerings.filter((p) => p.a === h || p.b === h).length;
        assert.equal(s.peers.length, expectedPeers, `${h}: one status entry per peer`);
        for (const p of s.peers) {
          if (keying === 'ike') {
            const ike = (await ikeStatusOf(run, h, p.name))?.ike;
            assert.equal(ike?.state, IKE_ESTABLISHED, `${h}: peer ${p.name}: IKE SA state`);
            assert.ok((ike?.children ?? []).length >= 1, `${h}: peer ${p.name}: at least one Child SA`);
          }
          assert.ok(p.txPackets > 0 && p.rxPackets > 0, `${h}: peer ${p.name}: tx ${p.txPackets} rx ${p.rxPackets} packets`);
          const out = p.sas.find((x) => x.direction === 'out');
          const inb = p.sas.find((x) => x.direction === 'in');
          assert.ok(out !== undefined && out.packets > 0, `${h}: peer ${p.name}: outbound SA carried packets`);
          assert.ok(inb !== undefined && inb.packets > 0, `${h}: peer ${p.name}: inbound SA carried packets`);
        }
        // The only drops a correct gateway has here: the kernel's own IPv6 multicast on the TUN
        // (MLD reports when IPv6 forwarding joins ff02::2 on a gateway), which no peer can take:
        // counted as 'unmapped', and exactly as many as the TUN's Ip6OutMcastPkts.
        const snmp = await runIn(run, h, ['cat', `/proc/net/dev_snmp6/${s.tun.name}`], 10_000);
        assert.equal(snmp.status, 0, describeResult(snmp));
        const counter = (name: string): number => Number(new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(snmp.stdout)?.[1] ?? -1);
        const mcast = counter('Ip6OutMcastPkts');
        const drops = Object.fromEntries(Object.entries(s.drops).filter(([, n]) => n > 0));
        t.diagnostic(`${h}: totals ${JSON.stringify(s.totals)}; drops ${JSON.stringify(drops)}; TUN ${s.tun.name}: Ip6OutMcastPkts ${mcast}, Icmp6OutMLDv2Reports ${counter('Icmp6OutMLDv2Reports')}`);
        const { unmapped = 0, ...others } = drops;
        assert.deepEqual(others, {}, `${h}: no drops other than 'unmapped' (each would need an explanation)`);
        assert.equal(unmapped, mcast, `${h}: every 'unmapped' drop is one of the kernel's multicast packets on ${s.tun.name}`);
      }
    });

    step('10. capture: only ESP between protected peers; clear traffic seen in clear; tshark decrypts the inner flows', async (t) => {
      const run = runOf();
      assert.ok(st.capture !== undefined);
      const ends = tunnelEndpoints(run, spec.outer ?? 4);
      if (keying === 'ike') {
        // the keys of every Child SA: those recorded at establishment plus the live ones now
        await recordKeys(run, daemonHosts(), st.keys);
        appendFileSync(uatPathOf(run.dir), [...st.keys].map((l) => `${l}\n`).join(''));
        t.diagnostic(`keys.uat: ${st.keys.size} SAs reported by the daemons (espgate keys)`);
      }
      const pcap = await st.capture.stop();
      const frames = await decodeFrames(run, pcap);
      const ike = frames.filter((f) => isIke(f, ends));
      const leaks = frames.filter((f) => !isIke(f, ends) && isLeak(f, protectedPairs(run)));
      const esp = frames.filter((f) => f.outer !== 0 && f.proto === 50);
      t.diagnostic(`${frames.length} frames captured, ${esp.length} ESP, ${ike.length} IKE, ${leaks.length} plaintext between protected peers`);
      assert.deepEqual(leaks.slice(0, 10).map(frameText), [], 'no plaintext between protected peers (IKE between tunnel endpoints aside)');
      assert.equal(leaks.length, 0);
      if (keying === 'ike') {
        for (const { a: x, b: y, ea, eb } of ends) {
          const n = ike.filter((f) => (f.src === ea && f.dst === eb) || (f.src === eb && f.dst === ea)).length;
          assert.ok(n >= 4, `IKE_SA_INIT and IKE_AUTH between ${x} and ${y} on the capture (${n} IKE frames)`);
        }
      } else {
        assert.deepEqual(ike.slice(0, 10).map(frameText), [], 'static keying: no IKE at all');
      }

      const strayEsp = esp.filter((f) => !ends.some(({ ea, eb }) => (f.src === ea && f.dst === eb) || (f.src === eb && f.dst === ea)));
      assert.deepEqual(strayEsp.slice(0, 10).map(frameText), [], 'ESP flows only between the peers\' tunnel endpoints');
      for (const { a: x, b: y, ea, eb } of ends) {
        const ab = esp.filter((f) => f.src === ea && f.dst === eb).length;
        const ba = esp.filter((f) => f.src === eb && f.dst === ea).length;
        assert.ok(ab > 0 && ba > 0, `ESP both ways between ${x} and ${y} (${ab} / ${ba} frames)`);
      }
      const undecrypted = esp.filter((f) => f.inner === 0);
      assert.deepEqual(undecrypted.slice(0, 10).map(frameText), [], 'tshark decrypts every ESP frame with the run\'s keys');
      const fragmented = frames.filter((f) => f.fragment && (f.proto === 50 || ends.some(({ ea, eb }) => f.src === ea || f.src === eb)));
      assert.deepEqual(fragmented.slice(0, 10).map(frameText), [], 'no fragmented ESP on the wire');

      const innerCount = (pred: (f: Frame) => boolean): number => esp.filter(pred).length;
      const a4 = canon(addr(a, 4)), b4 = canon(addr(b, 4)), a6 = canon(addr(a, 6)), b6 = canon(addr(b, 6));
      const inner = (f: Frame, fam: AddressFamily, src: string, dst: string): boolean => f.inner === fam && f.innerSrc === src && f.innerDst === dst;
      const expectations: [string, number][] = [
        [`inner ICMP echo request ${a} -> ${b} (IPv4)`, innerCount((f) => inner(f, 4, a4, b4) && f.icmpType === 8)],
        [`inner ICMP echo reply ${b} -> ${a} (IPv4)`, innerCount((f) => inner(f, 4, b4, a4) && f.icmpType === 0)],
        [`inner ICMPv6 echo request ${a} -> ${b}`, innerCount((f) => inner(f, 6, a6, b6) && f.icmp6Type === 128)],
        [`inner ICMPv6 echo reply ${b} -> ${a}`, innerCount((f) => inner(f, 6, b6, a6) && f.icmp6Type === 129)],
        [`inner ICMP port unreachable ${b} -> ${a} (IPv4)`, innerCount((f) => inner(f, 4, b4, a4) && f.icmpType === 3 && f.icmpCode === 3)],
        [`inner ICMPv6 port unreachable ${b} -> ${a}`, innerCount((f) => inner(f, 6, b6, a6) && f.icmp6Type === 1 && f.icmp6Code === 4)],
        [`inner TCP ${a}:${String(st.conn1?.localPort)} -> ${b}:${TCP_PORT} (IPv4)`, innerCount((f) => inner(f, 4, a4, b4) && f.tcpSrc === st.conn1?.localPort && f.tcpDst === TCP_PORT)],
        [`inner TCP ${b}:${String(st.conn2?.localPort)} -> ${a}:${TCP_PORT} (IPv6)`, innerCount((f) => inner(f, 6, b6, a6) && f.tcpSrc === st.conn2?.localPort && f.tcpDst === TCP_PORT)],
        [`inner UDP ${a} -> ${b}:${UDP_PORT} (IPv4)`, innerCount((f) => inner(f, 4, a4, b4) && f.udpDst === UDP_PORT)],
      ];
      for (const [what, n] of expectations) t.diagnostic(`${what}: ${n} frame(s)`);
      assert.deepEqual(expectations.filter(([, n]) => n === 0).map(([w]) => w), [], 'tshark finds every inner flow in the decrypted ESP');
      assert.ok(esp.every((f) => f.inner === 0 || !isFake(f.innerSrc)) && esp.every((f) => f.inner === 0 || !isFake(f.innerDst)), 'inner headers carry real addresses only');

      for (const [x, y] of spec.clear) {
        for (const fam of [4, 6] as const) {
          const req = frames.filter((f) => f.outer === fam && f.proto === (fam === 4 ? 1 : 58) && f.src === canon(addr(x, fam)) && f.dst === canon(addr(y, fam)) && (fam === 4 ? f.icmpType === 8 : f.icmp6Type === 128)).length;
          const rep = frames.filter((f) => f.outer === fam && f.proto === (fam === 4 ? 1 : 58) && f.src === canon(addr(y, fam)) && f.dst === canon(addr(x, fam)) && (fam === 4 ? f.icmpType === 0 : f.icmp6Type === 129)).length;
          assert.ok(req >= 3 && rep >= 3, `${x} <-> ${y} IPv${fam} ping seen in the clear (${req} requests, ${rep} replies)`);
        }
      }
    });

    for (const x of spec.extra ?? []) step(x.name, (t) => x.fn(runOf(), t), x.todo === undefined ? {} : { todo: x.todo });

    step('11. SIGTERM: every daemon exits 0 and leaves rules, routes and links as they were', async (t) => {
      const run = runOf();
      const codes = await Promise.all([...st.daemons.values()].map(async (d) => [d.host, await stopProcess(d.child, 10_000)] as const));
      for (const [h, code] of codes) assert.equal(code, 0, `${h}: espgate exit status after SIGTERM:\n${tail(st.daemons.get(h)?.log ?? '')}`);
      for (const h of daemonHosts()) {
        const before = st.stateBefore.get(h);
        assert.ok(before !== undefined);
        const now = await snapshotState(run, h);
        for (const [cmd, text] of before) {
          assert.equal(now.get(cmd), text, `${h}: \`${cmd}\` differs after stop:\n${diffLines(text, now.get(cmd) ?? '')}`);
        }
      }
      t.diagnostic(`compared ${[...st.stateBefore.values()][0]?.size ?? 0} commands on ${st.stateBefore.size} hosts`);
    });
  });
}
