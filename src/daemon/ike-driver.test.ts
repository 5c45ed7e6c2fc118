/**
 * ike-driver.test.ts: two IkeDrivers back to back over an in-memory UDP path, with a clock and
 * timers the test moves, and fake SADBs: negotiation, both sides initiating, a peer restart
 * (INITIAL_CONTACT), DPD on a silent peer with fail-closed removal and re-initiation; NAT
 * traversal through a NAT that rewrites one side's address and ports; Child SA and IKE SA
 * rekeys (by time, by bytes, simultaneous, with and without PFS) and IKE SA rekeys (alone,
 * simultaneous by RFC 7296 §2.8.2) checked for zero loss at every step; hard expiry.
 *
 *   alice 192.0.2.1 (protects 198.18.1.0/24) <--UDP 500/4500--> bob 192.0.2.2 (protects 198.18.2.0/24)
 *
 *   with a NAT in front of one side (the "natted" side's private address 198.51.100.10):
 *
 *     natted 198.51.100.10:500  --> [NAT 203.0.113.5] :500 -> :1500, :4500 -> :31000 --> other side
 *     (the other side knows the natted one by 203.0.113.5, its public address)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { seededRandom } from '../ike/sa/ike-link.js';
import type { ChildSa } from '../ike/sa/session.js';
import { COOKIE_THRESHOLD, DPD_DEFAULT_MS, IKE_PORT, INIT_BURST, IkeDriver, NAT_T_PORT, REKEY_LINGER_MS } from './ike-driver.js';
import type { IkeDriverPeer, IkeSaSink, IkeTimers } from './ike-driver.js';

const PSK = Uint8Array.from(Buffer.from('espgate driver test key, not a secret'));
const ALICE = '192.0.2.1';
const BOB = '192.0.2.2';
const PRIVATE = '198.51.100.10';
const PUBLIC = '203.0.113.5';
const EXCHANGE_CREATE_CHILD_SA = 36;

/** Clock is a shared fake clock with timers. */
class Clock implements IkeTimers {
  now = 1_000_000;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #id = 0;
  set(fn: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clear(h: unknown): void {
    this.#timers.delete(h as number);
  }
  /** advance moves the clock to now+ms, firing due timers in order (bounded), delivering after each. */
  advance(ms: number, net: Net): void {
    const end = this.now + ms;
    for (let i = 0; i < 10_000; i++) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const t of this.#timers) if (t[1].at <= end && (next === undefined || t[1].at < next[1].at)) next = t;
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.now = Math.max(this.now, next[1].at);
      next[1].fn();
      net.step();
      net.run();
    }
    this.now = end;
  }
  /** walk advances in steps of stepMs up to ms, so checks run at every step. */
  walk(ms: number, stepMs: number, net: Net): void {
    for (let t = 0; t < ms; t += stepMs) this.advance(stepMs, net);
  }
}

/** FakeSadb records what a driver installed; usage is what the test says the SAs carried. */
class FakeSadb implements IkeSaSink {
  readonly inbound = new Map<number, ChildSa>();
  readonly outbound = new Map<string, ChildSa>();
  readonly outboundHistory: number[] = [];
  readonly used = new Map<number, { packets: number; bytes: number }>();
  spiInUse(spi: number): boolean { return this.inbound.has(spi); }
  addInbound(_peer: string, _endpoint: string, child: ChildSa): void {
    assert.ok(!this.inbound.has(child.inbound.spi), 'inbound SPI installed twice');
    this.inbound.set(child.inbound.spi, child);
  }
  removeInbound(spi: number): void { this.inbound.delete(spi); }
  setOutbound(peer: string, child: ChildSa | undefined): void {
    if (child === undefined) this.outbound.delete(peer);
    else {
      this.outbound.set(peer, child);
      if (this.outboundHistory[this.outboundHistory.length - 1] !== child.outbound.spi) this.outboundHistory.push(child.outbound.spi);
    }
  }
  usage(inboundSpi: number): { readonly packets: number; readonly bytes: number } | undefined {
    return this.inbound.has(inboundSpi) ? this.used.get(inboundSpi) ?? { packets: 0, bytes: 0 } : undefined;
  }
}

/** Datagram is one UDP datagram on the wire, with both ends as they are at that point of the path. */
interface Datagram { src: string; srcPort: number; dst: string; dstPort: number; bytes: Uint8Array }

/** Nat maps one inside address to a public one, port by port (fixed mappings; `map` may change: a rebinding). */
interface Nat { inside: string; public: string; map: Map<number, number> }

/**
 * Net carries datagrams between the drivers at their addresses and ports, through an optional
 * NAT; `cut` loses everything to an address, `filter` loses what it returns false for; `check`
 * runs after every delivery and timer (the zero-loss invariant).
 */
class Net {
  readonly drivers = new Map<string, IkeDriver>();
  queue: Datagram[] = [];
  /** wire records every datagram as it crossed the public side. */
  readonly wire: Datagram[] = [];
  cut = new Set<string>();
  nat: Nat | undefined;
  filter: ((d: Datagram) => boolean) | undefined;
  check: (() => void) | undefined;
  sent = 0;
  transport(me: string): { send: (b: Uint8Array, a: string, p: number, lp?: number) => void; close: () => void } {
    return {
      send: (bytes, address, port, localPort) => {
        assert.ok(localPort === IKE_PORT || localPort === NAT_T_PORT, `sends from 500 or 4500, not ${String(localPort)}`);
        this.sent++;
        let src = me;
        let srcPort = localPort;
        const nat = this.nat;
        if (nat !== undefined && nat.inside === me) {
          src = nat.public;
          srcPort = nat.map.get(localPort) ?? localPort;
        }
        const d = { src, srcPort, dst: address, dstPort: port, bytes };
        this.wire.push(d);
        this.queue.push(d);
      },
      close: () => {},
    };
  }
  step(): void {
    this.check?.();
  }
  run(): void {
    for (let i = 0; i < 256 && this.queue.length > 0; i++) {
      const d = this.queue.shift();
      if (d === undefined || this.cut.has(d.dst) || (this.filter !== undefined && !this.filter(d))) continue;
      let to = d.dst;
      let toPort = d.dstPort;
      const nat = this.nat;
      if (nat !== undefined && d.dst === nat.public) {
        const inside = [...nat.map].find(([, pub]) => pub === d.dstPort);
        if (inside === undefined) continue; // no mapping: the NAT drops it
        to = nat.inside;
        toPort = inside[0];
      }
      if (toPort !== IKE_PORT && toPort !== NAT_T_PORT) continue; // nobody listens there
      this.drivers.get(to)?.receive(d.bytes, d.src, d.srcPort, toPort);
      this.step();
    }
  }
}

const quiet = process.env.IKE_DRIVER_LOG === undefined ? { info: (): void => {}, warn: (): void => {} } : { info: (o: object, m: string): void => { console.log(m, JSON.stringify(o)); }, warn: (o: object, m: string): void => { console.log(m, JSON.stringify(o)); } };

interface Side { d: IkeDriver; sadb: FakeSadb; peer: string }

/**
 * makeDriver makes the driver at `me` (alice or bob) towards the other. `natted` names the side
 * behind the NAT: it uses PRIVATE as its address and the other side knows it as PUBLIC.
 */
function makeDriver(net: Net, clock: Clock, me: 'alice' | 'bob', seed: string, initiate: boolean,
  o: { natted?: 'alice' | 'bob'; peer?: Partial<IkeDriverPeer>; sadb?: FakeSadb; dpdMs?: number } = {}): Side {
  const alice = me === 'alice';
  const addr = (who: 'alice' | 'bob', asSeenBy: 'self' | 'other'): string =>
    o.natted === who ? (asSeenBy === 'self' ? PRIVATE : PUBLIC) : who === 'alice' ? ALICE : BOB;
  const other = alice ? 'bob' : 'alice';
  const sadb = o.sadb ?? new FakeSadb();
  const peer: IkeDriverPeer = {
    name: other, endpoint: addr(other, 'other'), protect: [alice ? '198.18.2.0/24' : '198.18.1.0/24'], psk: PSK, initiate,
    remoteId: { kind: 'fqdn', name: `${other}.example` }, localId: { kind: 'fqdn', name: `${me}.example` },
    ...o.peer,
  };
  const d = new IkeDriver({
    peers: [peer], localProtect: [alice ? '198.18.1.0/24' : '198.18.2.0/24'], localAddress4: addr(me, 'self'),
    transport: net.transport(addr(me, 'self')), sink: sadb, log: quiet, now: () => clock.now, timers: clock, random: seededRandom(seed),
    ...(o.dpdMs === undefined ? {} : { dpdMs: o.dpdMs }),
  });
  net.drivers.set(addr(me, 'self'), d);
  return { d, sadb, peer: other };
}

/** paired asserts that what `a` sends to `b` is what `b` accepts: same SPI and key, both ways. */
function assertPaired(a: FakeSadb, aPeer: string, b: FakeSadb, bPeer: string, what = ''): void {
  const ao = a.outbound.get(aPeer);
  const bo = b.outbound.get(bPeer);
  assert.ok(ao !== undefined && bo !== undefined, `both sides have an outbound SA ${what}`);
  const bi = b.inbound.get(ao.outbound.spi);
  const ai = a.inbound.get(bo.outbound.spi);
  assert.ok(bi !== undefined && ai !== undefined, `each outbound SPI is installed inbound at the other side ${what}`);
  assert.deepEqual(Buffer.from(bi.inbound.keyMaterial), Buffer.from(ao.outbound.keyMaterial), `keys ${what}`);
  assert.deepEqual(Buffer.from(ai.inbound.keyMaterial), Buffer.from(bo.outbound.keyMaterial), `keys ${what}`);
}

/** pairUp makes alice (initiator) and bob (responder) and establishes them. */
function pairUp(seed: string, o: { alice?: Partial<IkeDriverPeer>; bob?: Partial<IkeDriverPeer>; dpdMs?: number } = {}): { net: Net; clock: Clock; a: Side; b: Side } {
  const net = new Net(); const clock = new Clock();
  const a = makeDriver(net, clock, 'alice', `${seed}a`, true, { ...(o.alice === undefined ? {} : { peer: o.alice }), ...(o.dpdMs === undefined ? {} : { dpdMs: o.dpdMs }) });
  const b = makeDriver(net, clock, 'bob', `${seed}b`, false, { ...(o.bob === undefined ? {} : { peer: o.bob }), ...(o.dpdMs === undefined ? {} : { dpdMs: o.dpdMs }) });
  a.d.start(); b.d.start();
  net.run();
  assertPaired(a.sadb, 'bob', b.sadb, 'alice', 'after establishment');
  return { net, clock, a, b };
}

/** zeroLoss arms the invariant: at every step both sides send on an SA the other has installed inbound. */
function zeroLoss(net: Net, a: Side, b: Side): { steps: number } {
  const counter = { steps: 0 };
  net.check = (): void => {
    counter.steps++;
    assertPaired(a.sadb, a.peer, b.sadb, b.peer, `at check ${counter.steps}`);
  };
  return counter;
}

describe('IkeDriver', () => {
  test('case 1: one side initiates: both install a matching Child SA; status says established', () => {
    const { a, b } = pairUp('c1');
    assert.equal(a.sadb.inbound.size, 1);
    assert.equal(b.sadb.inbound.size, 1);
    const sa = a.d.status('bob');
    assert.equal(sa?.state, 'established');
    assert.equal(b.d.status('alice')?.state, 'established');
    assert.equal(a.d.status('nobody'), undefined);
    assert.equal(sa?.natT, false);
    assert.equal(sa?.spiI, b.d.status('alice')?.spiI);
    assert.match(sa?.spiI ?? '', /^[0-9a-f]{16}$/);
    const out = a.sadb.outbound.get('bob');
    assert.deepEqual(sa?.children.map((c) => [c.inSpi, c.outSpi, c.algorithm, c.encapPort]),
      [[`0x${out?.inbound.spi.toString(16).padStart(8, '0')}`, `0x${out?.outbound.spi.toString(16).padStart(8, '0')}`, 'aes256gcm16', null]]);
    assert.ok((sa?.ikeRekeyAtMs ?? 0) > (sa?.establishedMs ?? Infinity), 'an IKE rekey time after establishment');
    a.d.stop(); b.d.stop();
  });

  test('case 2: both sides initiate at once: they settle on one IKE SA and matching SAs', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, 'alice', 'c2a', true);
    const b = makeDriver(net, clock, 'bob', 'c2b', true);
    a.d.start(); b.d.start();
    net.run();
    // Settled, but the dropped duplicate's inbound half stays REKEY_LINGER_MS for packets the
    // peer sent on it before it settled too (they were lost as unknown-spi before).
    const lingering = a.sadb.inbound.size + b.sadb.inbound.size;
    clock.advance(5_000, net);
    assert.ok(lingering > 2, `the dropped duplicates' inbound halves linger (${lingering} inbound SAs right after settling)`);
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    assert.equal(a.sadb.inbound.size, 1, 'alice keeps one Child SA');
    assert.equal(b.sadb.inbound.size, 1, 'bob keeps one Child SA');
    a.d.stop(); b.d.stop();
  });

  test('case 2b: staggered start (the lab case): the late initiator sends no INITIAL_CONTACT, so no SA is torn down twice', () => {
    const net = new Net(); const clock = new Clock();
    // bob starts first: its IKE_SA_INIT finds nobody listening (alice is not up yet).
    const b = makeDriver(net, clock, 'bob', 'c2bb', true);
    const bobDriver = b.d;
    net.drivers.delete(ALICE);
    b.d.start();
    net.run();
    const a = makeDriver(net, clock, 'alice', 'c2ba', true);
    a.d.start();
    net.run(); // alice <-> bob established (bob as responder) before bob's retransmission
    assert.equal(a.d.status('bob')?.state, 'established', 'alice established first');
    clock.advance(10_000, net); // bob's retransmitted IKE_SA_INIT now reaches alice
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    assert.equal(a.sadb.inbound.size, 1, 'alice keeps one Child SA');
    assert.equal(b.sadb.inbound.size, 1, 'bob keeps one Child SA');
    // Before the fix, INITIAL_CONTACT from bob's second IKE SA made alice drop the first while the
    // tie-break dropped the second: both gone, a third negotiated (three distinct outbound SAs).
    assert.ok(new Set(a.sadb.outboundHistory).size <= 2, `alice used ${new Set(a.sadb.outboundHistory).size} distinct outbound SAs`);
    assert.ok(new Set(b.sadb.outboundHistory).size <= 2, `bob used ${new Set(b.sadb.outboundHistory).size} distinct outbound SAs`);
    assert.equal(a.d.status('bob')?.spiI, b.d.status('alice')?.spiI, 'both keep the same IKE SA');
    a.d.stop(); bobDriver.stop();
  });

  test('case 2c: a flood of IKE_SA_INIT spoofing the peer: cookies once half-open SAs pile up, a rate limit, and the real peer still gets in', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, 'alice', 'c2ca', false);
    const b = makeDriver(net, clock, 'bob', 'c2cb', true);
    b.d.start();
    const real = net.queue.shift();
    assert.ok(real !== undefined && real.dst === ALICE, 'bob sent its IKE_SA_INIT');
    net.queue = [];
    const spoof = (i: number): Uint8Array => {
      const m = Uint8Array.from(real.bytes);
      m.set([0x5f, 0x00, 0x00, 0x00, (i >> 24) & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff], 0); // a new SPIi each
      return m;
    };
    for (let i = 1; i <= 30; i++) a.d.receive(spoof(i), BOB, IKE_PORT, IKE_PORT);
    net.queue = []; // the answers go to the spoofed address: the attacker never sees them
    assert.equal(a.d.sessionCount, COOKIE_THRESHOLD, '1: half-open SAs stop at the cookie threshold; later requests get a stateless COOKIE');
    const before = a.d.rateLimited;
    for (let i = 100; i < 100 + 2 * INIT_BURST; i++) a.d.receive(spoof(i), BOB, IKE_PORT, IKE_PORT);
    net.queue = [];
    assert.ok(a.d.rateLimited - before >= INIT_BURST - 30, `2: the token bucket refused the burst beyond INIT_BURST (${a.d.rateLimited - before})`);
    assert.equal(a.d.sessionCount, COOKIE_THRESHOLD, '3: still no state for spoofed requests');
    clock.advance(10_000, net); // tokens refill; bob retransmits, gets the COOKIE, resends with it
    net.run();
    assertPaired(a.sadb, 'bob', b.sadb, 'alice', 'the real peer got through');
    assert.equal(a.d.status('bob')?.state, 'established', '4');
    a.d.stop(); b.d.stop();
  });

  test('case 3: the peer restarts (state lost): the new IKE SA replaces the old one on both sides', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, 'alice', 'c3a', true);
    const b1 = makeDriver(net, clock, 'bob', 'c3b1', true);
    a.d.start(); b1.d.start();
    net.run();
    assertPaired(a.sadb, 'bob', b1.sadb, 'alice');
    const oldOut = a.sadb.outbound.get('bob')?.outbound.spi;
    clock.advance(1_000, net);
    // kill -9: bob's driver and SADB vanish without a Delete; a new one starts.
    const b2 = makeDriver(net, clock, 'bob', 'c3b2', true);
    b2.d.start();
    net.run();
    clock.advance(2_000, net);
    assertPaired(a.sadb, 'bob', b2.sadb, 'alice');
    assert.notEqual(a.sadb.outbound.get('bob')?.outbound.spi, oldOut);
    assert.equal(a.sadb.inbound.size, 1, 'the old inbound SA is gone');
    a.d.stop(); b2.d.stop();
  });

  test('case 4: a silent peer: DPD closes the IKE SA, its SAs are removed (fail closed), and it comes back after', () => {
    const { net, clock, a, b } = pairUp('c4');
    net.cut.add(BOB);
    clock.advance(DPD_DEFAULT_MS + 60_000, net);
    assert.equal(a.sadb.outbound.get('bob'), undefined, 'no outbound SA towards a dead peer');
    assert.equal(a.sadb.inbound.size, 0);
    assert.notEqual(a.d.status('bob')?.state, 'established');
    net.cut.delete(BOB);
    net.queue = [];
    clock.advance(130_000, net);
    assert.equal(a.d.status('bob')?.state, 'established', 'alice re-initiated after the backoff');
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    a.d.stop(); b.d.stop();
  });

  test('case 5: IKE from an address that is no peer endpoint is dropped without a session', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, 'alice', 'c5a', false);
    const b = makeDriver(net, clock, 'bob', 'c5b', true);
    b.d.start();
    const first = net.queue.shift();
    assert.ok(first !== undefined);
    a.d.receive(first.bytes, '192.0.2.99', IKE_PORT);
    assert.equal(a.d.dropped, 1);
    assert.equal(net.queue.length, 0, 'nothing answered');
    assert.equal(a.d.status('bob')?.state, 'none');
    a.d.receive(first.bytes.subarray(0, 10), BOB, IKE_PORT);
    assert.equal(a.d.dropped, 2, 'a truncated header is dropped');
    a.d.stop(); b.d.stop();
  });

  test('case 6: stop deletes the IKE SA: the peer removes its SAs too', () => {
    const { net, a, b } = pairUp('c6');
    a.d.stop();
    assert.equal(a.sadb.inbound.size, 0);
    assert.equal(a.sadb.outbound.size, 0);
    net.run();
    assert.equal(b.sadb.inbound.size, 0, 'bob acted on the Delete');
    assert.equal(b.sadb.outbound.size, 0);
    b.d.stop();
  });
});

describe('IkeDriver NAT traversal (RFC 7296 §2.23)', () => {
  const cases: [string, 'alice' | 'bob' | undefined, boolean, number, number][] = [
    // [name, side behind the NAT, NAT expected, alice's encap port (bob's 4500 path), bob's encap port (alice's)]
    ['1 no NAT: IKE stays on 500, plain ESP', undefined, false, 0, 0],
    ['2 the initiator behind a NAT: both float to 4500, the responder answers the mapped port', 'alice', true, NAT_T_PORT, 31_000],
    ['3 the responder behind a NAT (500 and 4500 forwarded): the initiator floats', 'bob', true, NAT_T_PORT, NAT_T_PORT],
  ];
  for (const [name, natted, nat, aliceEncap, bobEncap] of cases) {
    test(name, () => {
      const net = new Net(); const clock = new Clock();
      if (natted !== undefined) net.nat = { inside: PRIVATE, public: PUBLIC, map: new Map([[500, 1500], [4500, 31_000]]) };
      if (natted === 'bob') net.nat = { inside: PRIVATE, public: PUBLIC, map: new Map([[500, 500], [4500, 4500]]) };
      const a = makeDriver(net, clock, 'alice', `n${name}a`, true, natted === undefined ? {} : { natted });
      const b = makeDriver(net, clock, 'bob', `n${name}b`, false, natted === undefined ? {} : { natted });
      a.d.start(); b.d.start();
      net.run();
      assertPaired(a.sadb, 'bob', b.sadb, 'alice', name);
      assert.equal(a.d.status('bob')?.natT, nat, `${name}: alice natT`);
      assert.equal(b.d.status('alice')?.natT, nat, `${name}: bob natT`);
      // The first two datagrams (IKE_SA_INIT) on 500; everything after on the 4500 path iff a NAT.
      const ports = net.wire.map((d) => [d.srcPort, d.dstPort]);
      assert.ok(ports.length >= 4, name);
      const published = natted === 'bob' ? [500, 500] : natted === 'alice' ? [[1500, 500], [500, 1500]] : [[500, 500], [500, 500]];
      if (natted !== 'bob') assert.deepEqual(ports.slice(0, 2), published, `${name}: IKE_SA_INIT ports`);
      for (const d of net.wire.slice(2)) {
        const onNatPath = [d.srcPort, d.dstPort].every((p) => p === NAT_T_PORT || p === 31_000);
        assert.ok(onNatPath || [d.srcPort, d.dstPort].every((p) => p === IKE_PORT || p === 1500), `${name}: ${d.srcPort} -> ${d.dstPort}`);
        assert.equal(onNatPath, nat, `${name}: ${d.srcPort} -> ${d.dstPort} after IKE_SA_INIT`);
      }
      const ac = a.sadb.outbound.get('bob');
      const bc = b.sadb.outbound.get('alice');
      assert.equal(ac?.encap?.remotePort, nat ? aliceEncap : undefined, `${name}: alice's Child SA encap`);
      assert.equal(bc?.encap?.remotePort, nat ? bobEncap : undefined, `${name}: bob's Child SA encap`);
      assert.deepEqual(a.d.status('bob')?.children.map((c) => c.encapPort), [nat ? aliceEncap : null], name);
      // DPD and Delete keep working on that path.
      clock.advance(DPD_DEFAULT_MS + 1_000, net);
      assert.equal(a.d.status('bob')?.state, 'established', `${name}: alive after DPD`);
      a.d.stop(); net.run();
      assert.equal(b.sadb.inbound.size, 0, `${name}: the Delete reached bob on the same path`);
      b.d.stop();
    });
  }

  test('5 an IKE_SA_INIT arriving on local port 4500 is answered from 4500, and the IKE SA stays there', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, 'alice', 'n5a', true);
    const b = makeDriver(net, clock, 'bob', 'n5b', false);
    a.d.start();
    const init = net.queue.shift();
    assert.ok(init !== undefined);
    b.d.receive(init.bytes, ALICE, NAT_T_PORT, NAT_T_PORT); // as a peer configured to start on 4500 sends it
    const answer = net.queue[0];
    assert.deepEqual([answer?.srcPort, answer?.dst, answer?.dstPort], [NAT_T_PORT, ALICE, NAT_T_PORT]);
    net.run();
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    assert.ok(net.wire.slice(1).every((d) => d.srcPort === NAT_T_PORT && d.dstPort === NAT_T_PORT), 'all on 4500');
    a.d.stop(); b.d.stop();
  });

  test('4 the NAT rebinds (new public port): the responder follows the authenticated message and moves the encap port', () => {
    const net = new Net(); const clock = new Clock();
    net.nat = { inside: PRIVATE, public: PUBLIC, map: new Map([[500, 1500], [4500, 31_000]]) };
    const a = makeDriver(net, clock, 'alice', 'n4a', true, { natted: 'alice', dpdMs: 10_000 });
    const b = makeDriver(net, clock, 'bob', 'n4b', false, { natted: 'alice', dpdMs: 60_000 });
    a.d.start(); b.d.start();
    net.run();
    assert.equal(b.sadb.outbound.get('alice')?.encap?.remotePort, 31_000);
    net.nat.map.set(4500, 32_000);
    clock.advance(11_000, net); // alice's DPD goes out through the new mapping
    assert.equal(b.sadb.outbound.get('alice')?.encap?.remotePort, 32_000, 'bob sends ESP to the new port');
    assert.equal(b.d.status('alice')?.children[0]?.encapPort, 32_000);
    assert.equal(a.d.status('bob')?.state, 'established', 'the DPD answer reached alice at the new port');
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    a.d.stop(); b.d.stop();
  });
});

describe('IkeDriver rekeying', () => {
  test('1 Child SA rekey by time with traffic: zero loss at every step, each side ends with one SA, old ones removed after the linger', () => {
    const { net, clock, a, b } = pairUp('r1', { alice: { childLifetimeMs: 60_000 }, bob: { childLifetimeMs: 60_000 } });
    const first = a.sadb.outbound.get('bob')?.outbound.spi;
    const counter = zeroLoss(net, a, b);
    let maxInbound = 0;
    for (let t = 0; t < 200_000; t += 250) {
      clock.advance(250, net);
      net.step();
      maxInbound = Math.max(maxInbound, a.sadb.inbound.size, b.sadb.inbound.size);
    }
    assert.ok(counter.steps > 800, `checked at ${counter.steps} steps`);
    assert.ok(a.sadb.outboundHistory.length >= 4, `alice rekeyed at least 3 times: ${a.sadb.outboundHistory.length} outbound SAs`);
    assert.notEqual(a.sadb.outbound.get('bob')?.outbound.spi, first);
    assert.ok(maxInbound <= 2, `at most two inbound SAs at once (${maxInbound})`);
    clock.advance(REKEY_LINGER_MS + 1, net);
    assert.equal(a.sadb.inbound.size, 1, 'alice: only the current inbound SA is left');
    assert.equal(b.sadb.inbound.size, 1, 'bob: only the current inbound SA is left');
    assert.equal(a.d.status('bob')?.children.length, 1);
    a.d.stop(); b.d.stop();
  });

  test('2 responder side: keeps sending on the old SA until the Delete, then switches; the initiator switches on the response', () => {
    const { net, clock, a, b } = pairUp('r2');
    zeroLoss(net, a, b);
    const oldA = a.sadb.outbound.get('bob');
    const oldB = b.sadb.outbound.get('alice');
    assert.ok(a.d.rekeyNow('bob', 'child'));
    const req = net.queue.shift(); // the CREATE_CHILD_SA request
    assert.ok(req !== undefined);
    assert.equal(req.bytes[18], EXCHANGE_CREATE_CHILD_SA);
    assert.equal(a.sadb.inbound.size, 1, 'alice installs nothing before the response: nobody could send on it yet');
    b.d.receive(req.bytes, req.src, req.srcPort, req.dstPort);
    assert.equal(b.sadb.inbound.size, 2, 'bob installed the new inbound SA before answering');
    assert.equal(b.sadb.outbound.get('alice'), oldB, 'bob still sends on the old SA');
    const resp = net.queue.shift();
    assert.ok(resp !== undefined);
    a.d.receive(resp.bytes, resp.src, resp.srcPort, resp.dstPort);
    assert.equal(a.sadb.inbound.size, 2, 'alice installed the new inbound SA before sending the Delete that lets bob use it');
    assert.equal(net.queue.length, 1, 'the Delete of the old SA is on its way');
    assert.notEqual(a.sadb.outbound.get('bob')?.outbound.spi, oldA?.outbound.spi, 'alice sends on the new SA');
    assert.ok(a.sadb.inbound.has(oldA?.inbound.spi ?? -1), 'alice still accepts the old SA');
    net.run(); // Delete(old) and its answer
    assert.notEqual(b.sadb.outbound.get('alice')?.outbound.spi, oldB?.outbound.spi, 'bob switched after the Delete');
    assert.ok(b.sadb.inbound.has(oldB?.inbound.spi ?? -1), 'bob lingers the old inbound SA');
    clock.advance(REKEY_LINGER_MS + 1, net);
    assert.ok(!b.sadb.inbound.has(oldB?.inbound.spi ?? -1) && !a.sadb.inbound.has(oldA?.inbound.spi ?? -1), 'old inbound SAs removed after the linger');
    a.d.stop(); b.d.stop();
  });

  test('3 simultaneous Child SA rekeys: exactly one new SA per direction survives, zero loss throughout', () => {
    for (const seed of ['s1', 's2', 's3', 's4']) {
      const { net, clock, a, b } = pairUp(seed);
      zeroLoss(net, a, b);
      const old = [a.sadb.outbound.get('bob')?.outbound.spi, b.sadb.outbound.get('alice')?.outbound.spi];
      assert.ok(a.d.rekeyNow('bob', 'child'));
      assert.ok(b.d.rekeyNow('alice', 'child'));
      net.run();
      clock.advance(REKEY_LINGER_MS + 1_000, net);
      assert.equal(a.sadb.inbound.size, 1, `${seed}: alice keeps one inbound SA`);
      assert.equal(b.sadb.inbound.size, 1, `${seed}: bob keeps one inbound SA`);
      assertPaired(a.sadb, 'bob', b.sadb, 'alice', seed);
      assert.ok(!old.includes(a.sadb.outbound.get('bob')?.outbound.spi) && !old.includes(b.sadb.outbound.get('alice')?.outbound.spi), `${seed}: both directions are new`);
      assert.deepEqual([a.d.status('bob')?.children.length, b.d.status('alice')?.children.length], [1, 1], seed);
      a.d.stop(); b.d.stop();
    }
  });

  test('4 IKE SA rekey by time: new SPIs, the Child SAs stay (same SPIs), DPD works on the new IKE SA', () => {
    const { net, clock, a, b } = pairUp('r4', { alice: { ikeLifetimeMs: 100_000 }, bob: { ikeLifetimeMs: 100_000 }, dpdMs: 20_000 });
    zeroLoss(net, a, b);
    const before = a.d.status('bob');
    const childSpis = [...a.sadb.inbound.keys()];
    clock.walk(100_000, 1_000, net);
    const after = a.d.status('bob');
    assert.equal(after?.state, 'established');
    assert.notEqual(after?.spiI, before?.spiI, 'a new IKE SA');
    assert.equal(after?.spiI, b.d.status('alice')?.spiI, 'the same new IKE SA at both ends');
    assert.deepEqual([...a.sadb.inbound.keys()], childSpis, 'the Child SA is the same one');
    assert.deepEqual(after?.children.map((c) => c.inSpi), before?.children.map((c) => c.inSpi), 'the Child SA moved to the new IKE SA');
    assert.ok((after?.lastDpdMs ?? 0) > (after?.establishedMs ?? Infinity) || (after?.lastHeardMs ?? 0) > 0, 'DPD ran on the new SA');
    // DPD on the new IKE SA still finds a dead peer and fails closed.
    net.check = undefined;
    net.cut.add(BOB); // bob hears alice's DPD no more; alice hears bob's until bob gives up, then checks herself
    clock.advance(90_000, net);
    assert.equal(a.sadb.inbound.size, 0, 'the Child SA went with the new IKE SA');
    assert.equal(a.sadb.outbound.get('bob'), undefined);
    a.d.stop(); b.d.stop();
  });

  test('5 Child SA rekey by bytes through sink.usage, then hard expiry by bytes removes the SA (fail closed)', () => {
    const { net, clock, a, b } = pairUp('r5', { alice: { childLifetimeBytes: 1_000_000 } });
    zeroLoss(net, a, b);
    const first = a.sadb.outbound.get('bob');
    assert.ok(first !== undefined);
    clock.advance(5_000, net);
    assert.equal(a.sadb.outbound.get('bob'), first, 'no rekey below the soft limit');
    a.sadb.used.set(first.inbound.spi, { packets: 1_000, bytes: 960_000 });
    clock.advance(1_500, net);
    const second = a.sadb.outbound.get('bob');
    assert.ok(second !== undefined && second.outbound.spi !== first.outbound.spi, 'rekeyed past 95% of the bytes');
    clock.advance(REKEY_LINGER_MS + 1, net);
    assert.equal(a.sadb.inbound.size, 1);
    net.check = undefined;
    a.sadb.used.set(second.inbound.spi, { packets: 2_000, bytes: 1_000_000 });
    clock.advance(1_500, net);
    assert.equal(a.sadb.inbound.has(second.inbound.spi), false, 'hard limit: the inbound SA is gone');
    assert.equal(a.sadb.outbound.get('bob'), undefined, 'and nothing is sent (fail closed)');
    assert.equal(b.sadb.inbound.size, 0, 'bob acted on the Delete');
    a.d.stop(); b.d.stop();
  });

  test('6 hard expiry by time when the rekey cannot complete: the Child SA is removed while the IKE SA lives', () => {
    const { net, clock, a, b } = pairUp('r6', { alice: { childLifetimeMs: 60_000 }, bob: { childLifetimeMs: 600_000 } });
    net.filter = (d) => d.bytes[18] !== EXCHANGE_CREATE_CHILD_SA; // the rekey is lost, the rest goes through
    clock.walk(59_000, 1_000, net);
    assert.ok(net.wire.some((d) => d.src === ALICE && d.bytes[18] === EXCHANGE_CREATE_CHILD_SA), 'the rekey started (and went unanswered)');
    assert.equal(a.sadb.inbound.size, 1);
    assert.ok(a.sadb.outbound.get('bob') !== undefined, 'still sending before the hard lifetime');
    clock.advance(1_001, net);
    assert.equal(a.sadb.outbound.get('bob'), undefined, 'at 100% the SA is gone: nothing sent');
    assert.equal(a.d.status('bob')?.state, 'established', 'the IKE SA itself lives on');
    a.d.stop(); b.d.stop();
  });

  test('7 with and without PFS: the rekey completes either way; with PFS the request carries KE and a DH transform', () => {
    const sizes: number[] = [];
    for (const pfs of [true, false]) {
      const { net, clock, a, b } = pairUp(`r7${String(pfs)}`, { alice: { pfs }, bob: { pfs } });
      zeroLoss(net, a, b);
      const old = a.sadb.outbound.get('bob')?.outbound.spi;
      assert.ok(a.d.rekeyNow('bob', 'child'));
      const req = net.queue[0];
      assert.ok(req !== undefined && req.bytes[18] === EXCHANGE_CREATE_CHILD_SA);
      sizes.push(req.bytes.length);
      net.run();
      clock.advance(REKEY_LINGER_MS + 1, net);
      assert.notEqual(a.sadb.outbound.get('bob')?.outbound.spi, old, `pfs ${String(pfs)}: rekeyed`);
      assert.deepEqual([a.sadb.inbound.size, b.sadb.inbound.size], [1, 1]);
      a.d.stop(); b.d.stop();
    }
    // KE payload: 4 (generic header) + 4 (group, reserved) + 32 (X25519); two DH transforms (31, 19): 16.
    assert.equal((sizes[0] ?? 0) - (sizes[1] ?? 0), 56, 'the PFS request is larger by KE + DH transforms');
  });

  test('9 an IKE SA rekey whose Delete of the old SA is lost: the old entry is forgotten after a while, the Child SA kept', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, 'alice', 'r9a', true);
    const b = makeDriver(net, clock, 'bob', 'r9b', false);
    a.d.start(); b.d.start();
    net.run();
    // bob rekeys, and every INFORMATIONAL bob sends on the old IKE SA is lost.
    const oldSpi = a.d.status('bob')?.spiI;
    assert.ok(b.d.rekeyNow('alice', 'ike'));
    net.filter = (d) => !(d.src === BOB && d.bytes[18] === 37 && Buffer.from(d.bytes.subarray(0, 8)).toString('hex') === oldSpi);
    net.run();
    assert.notEqual(a.d.status('bob')?.spiI, oldSpi, 'alice uses the new IKE SA');
    assert.equal(a.d.sessionCount, 2, 'alice keeps the old IKE SA, waiting for its Delete');
    zeroLoss(net, a, b);
    clock.walk(50_000, 1_000, net);
    assert.equal(a.d.sessionCount, 2);
    assert.equal(b.d.sessionCount, 1, 'bob gave up on the Delete (retransmissions)');
    clock.walk(20_000, 1_000, net);
    assert.equal(a.d.sessionCount, 1, 'after SUPERSEDED_WAIT_MS alice forgets it');
    assert.deepEqual([a.d.status('bob')?.state, b.d.status('alice')?.state], ['established', 'established']);
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    assert.equal(a.sadb.inbound.size, 1);
    a.d.stop(); b.d.stop();
  });

  test('10 simultaneous IKE SA rekeys (RFC 7296 §2.8.2): one new IKE SA at both ends with the Child SA, the redundant one deleted, zero loss', () => {
    const spisOf = (x: Side): string[] => [x.d.status(x.peer)?.spiI ?? '', x.d.status(x.peer)?.spiR ?? ''];
    for (const [seed, lose] of [['i1', 'none'], ['i2', 'none'], ['i3', 'none'], ['i4', 'none'], ['i5', 'first answer to alice'], ['i6', 'first answer to bob']] as const) {
      const { net, clock, a, b } = pairUp(seed, { dpdMs: 20_000 });
      const counter = zeroLoss(net, a, b);
      const before = spisOf(a);
      const inbound = [[...a.sadb.inbound.keys()], [...b.sadb.inbound.keys()]];
      const history = [a.sadb.outboundHistory.length, b.sadb.outboundHistory.length];
      let lost = false;
      if (lose !== 'none') {
        const to = lose === 'first answer to alice' ? ALICE : BOB;
        net.filter = (d) => {
          const answer = d.bytes[18] === EXCHANGE_CREATE_CHILD_SA && ((d.bytes[19] ?? 0) & 0x20) !== 0;
          if (!lost && answer && d.dst === to) { lost = true; return false; }
          return true;
        };
      }
      assert.ok(a.d.rekeyNow('bob', 'ike'), `${seed}: alice starts`);
      assert.ok(b.d.rekeyNow('alice', 'ike'), `${seed}: bob starts too, before either request arrived`);
      assert.equal(net.queue.filter((d) => d.bytes[18] === EXCHANGE_CREATE_CHILD_SA).length, 2, `${seed}: both requests are in flight`);
      net.run();
      clock.walk(70_000, 500, net); // retransmissions, and a redundant SA whose Delete never comes is forgotten (60 s)
      assert.equal(lost, lose !== 'none', seed);
      const after = spisOf(a);
      assert.deepEqual(spisOf(b), after, `${seed}: both ends use the same IKE SA`);
      assert.notDeepEqual(after, before, `${seed}: a new one`);
      assert.deepEqual([a.d.status('bob')?.state, b.d.status('alice')?.state], ['established', 'established'], seed);
      assert.deepEqual([a.d.sessionCount, b.d.sessionCount], [1, 1], `${seed}: exactly one IKE SA per peer at each end`);
      assert.deepEqual([[...a.sadb.inbound.keys()], [...b.sadb.inbound.keys()]], inbound, `${seed}: the same Child SA, never reinstalled`);
      assert.deepEqual([a.sadb.outboundHistory.length, b.sadb.outboundHistory.length], history, `${seed}: the outbound SA never changed`);
      assert.deepEqual([a.d.status('bob')?.children.length, b.d.status('alice')?.children.length], [1, 1], `${seed}: the Child SA is on the new IKE SA`);
      assert.ok(counter.steps >= 10, `${seed}: checked after every datagram and timer (${counter.steps})`);
      // The survivor works: a Child SA rekey on it, still with zero loss.
      assert.ok(b.d.rekeyNow('alice', 'child'), seed);
      net.run();
      clock.advance(REKEY_LINGER_MS + 1, net);
      assert.deepEqual([a.sadb.inbound.size, b.sadb.inbound.size], [1, 1], seed);
      assert.notDeepEqual([...a.sadb.inbound.keys()], inbound[0], `${seed}: rekeyed`);
      assert.deepEqual([a.d.sessionCount, b.d.sessionCount], [1, 1], seed);
      a.d.stop(); b.d.stop();
    }
  });

  test('8 IKE SA rekey through a NAT: the new IKE SA keeps the 4500 path and the Child SA its encap', () => {
    const net = new Net(); const clock = new Clock();
    net.nat = { inside: PRIVATE, public: PUBLIC, map: new Map([[500, 1500], [4500, 31_000]]) };
    const a = makeDriver(net, clock, 'alice', 'r8a', true, { natted: 'alice' });
    const b = makeDriver(net, clock, 'bob', 'r8b', false, { natted: 'alice' });
    a.d.start(); b.d.start();
    net.run();
    const spi = a.d.status('bob')?.spiI;
    assert.ok(b.d.rekeyNow('alice', 'ike'), 'the responder rekeys the IKE SA');
    net.run();
    assert.notEqual(b.d.status('alice')?.spiI, spi);
    assert.equal(b.d.status('alice')?.natT, true);
    const last = net.wire[net.wire.length - 1];
    assert.ok(last !== undefined && last.srcPort === 31_000 && last.dstPort === NAT_T_PORT, 'the Delete answer went the 4500 path');
    assert.ok(b.d.rekeyNow('alice', 'child'), 'a Child SA rekey on the new IKE SA');
    net.run();
    clock.advance(REKEY_LINGER_MS + 1, net);
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    assert.equal(b.sadb.outbound.get('alice')?.encap?.remotePort, 31_000);
    assert.equal(a.sadb.outbound.get('bob')?.encap?.remotePort, NAT_T_PORT);
    a.d.stop(); b.d.stop();
  });
});
