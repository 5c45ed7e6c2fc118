/**
 * ike-driver.test.ts: two IkeDrivers back to back over an in-memory UDP path, with a clock and
 * timers the test moves, and fake SADBs: negotiation, both sides initiating, a peer restart
 * (INITIAL_CONTACT), DPD on a silent peer with fail-closed removal and re-initiation.
 *
 *   alice 192.0.2.1 (protects 198.18.1.0/24) <--UDP 500--> bob 192.0.2.2 (protects 198.18.2.0/24)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { seededRandom } from '../ike/sa/ike-link.js';
import type { ChildSa } from '../ike/sa/session.js';
import { DPD_DEFAULT_MS, IKE_PORT, IkeDriver } from './ike-driver.js';
import type { IkeDriverPeer, IkeSaSink, IkeTimers } from './ike-driver.js';

const PSK = Uint8Array.from(Buffer.from('espgate driver test key, not a secret'));
const ALICE = '192.0.2.1';
const BOB = '192.0.2.2';

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
  /** advance moves the clock to now+ms, firing due timers in order (bounded). */
  advance(ms: number, net: Net): void {
    const end = this.now + ms;
    for (let i = 0; i < 10_000; i++) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const t of this.#timers) if (t[1].at <= end && (next === undefined || t[1].at < next[1].at)) next = t;
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.now = Math.max(this.now, next[1].at);
      next[1].fn();
      net.run();
    }
    this.now = end;
  }
}

/** FakeSadb records what a driver installed. */
class FakeSadb implements IkeSaSink {
  readonly inbound = new Map<number, ChildSa>();
  readonly outbound = new Map<string, ChildSa>();
  spiInUse(spi: number): boolean { return this.inbound.has(spi); }
  addInbound(_peer: string, _endpoint: string, child: ChildSa): void {
    assert.ok(!this.inbound.has(child.inbound.spi), 'inbound SPI installed twice');
    this.inbound.set(child.inbound.spi, child);
  }
  removeInbound(spi: number): void { this.inbound.delete(spi); }
  setOutbound(peer: string, child: ChildSa | undefined): void {
    if (child === undefined) this.outbound.delete(peer);
    else this.outbound.set(peer, child);
  }
}

/** Net carries datagrams between the drivers at the two addresses; `cut` loses everything to an address. */
class Net {
  readonly drivers = new Map<string, IkeDriver>();
  queue: { from: string; to: string; bytes: Uint8Array }[] = [];
  cut = new Set<string>();
  sent = 0;
  transport(from: string): { send: (b: Uint8Array, a: string, p: number) => void; close: () => void } {
    return {
      send: (bytes, address, port) => { assert.equal(port, IKE_PORT); this.sent++; this.queue.push({ from, to: address, bytes }); },
      close: () => {},
    };
  }
  run(): void {
    for (let i = 0; i < 256 && this.queue.length > 0; i++) {
      const d = this.queue.shift();
      if (d === undefined || this.cut.has(d.to)) continue;
      this.drivers.get(d.to)?.receive(d.bytes, d.from, IKE_PORT);
    }
  }
}

const quiet = { info: (): void => {}, warn: (): void => {} };

function makeDriver(net: Net, clock: Clock, me: string, seed: string, initiate: boolean, sadb = new FakeSadb()): { d: IkeDriver; sadb: FakeSadb } {
  const alice = me === ALICE;
  const peer: IkeDriverPeer = {
    name: alice ? 'bob' : 'alice', endpoint: alice ? BOB : ALICE, protect: [alice ? '198.18.2.0/24' : '198.18.1.0/24'], psk: PSK, initiate,
  };
  const d = new IkeDriver({
    peers: [peer], localProtect: [alice ? '198.18.1.0/24' : '198.18.2.0/24'], localAddress4: me,
    transport: net.transport(me), sink: sadb, log: quiet, now: () => clock.now, timers: clock, random: seededRandom(seed),
  });
  net.drivers.set(me, d);
  return { d, sadb };
}

/** paired asserts that what `a` sends to `b` is what `b` accepts: same SPI and key, both ways. */
function assertPaired(a: FakeSadb, aPeer: string, b: FakeSadb, bPeer: string): void {
  const ao = a.outbound.get(aPeer);
  const bo = b.outbound.get(bPeer);
  assert.ok(ao !== undefined && bo !== undefined, 'both sides have an outbound SA');
  const bi = b.inbound.get(ao.outbound.spi);
  const ai = a.inbound.get(bo.outbound.spi);
  assert.ok(bi !== undefined && ai !== undefined, 'each outbound SPI is installed inbound at the other side');
  assert.deepEqual(Buffer.from(bi.inbound.keyMaterial), Buffer.from(ao.outbound.keyMaterial));
  assert.deepEqual(Buffer.from(ai.inbound.keyMaterial), Buffer.from(bo.outbound.keyMaterial));
}

describe('IkeDriver', () => {
  test('case 1: one side initiates: both install a matching Child SA; status says established', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, ALICE, 'c1a', true);
    const b = makeDriver(net, clock, BOB, 'c1b', false);
    a.d.start(); b.d.start();
    net.run();
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    assert.equal(a.sadb.inbound.size, 1);
    assert.equal(b.sadb.inbound.size, 1);
    assert.equal(a.d.status('bob')?.state, 'established');
    assert.equal(b.d.status('alice')?.state, 'established');
    assert.equal(a.d.status('nobody'), undefined);
    a.d.stop(); b.d.stop();
  });

  test('case 2: both sides initiate at once: they settle on one IKE SA and matching SAs', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, ALICE, 'c2a', true);
    const b = makeDriver(net, clock, BOB, 'c2b', true);
    a.d.start(); b.d.start();
    net.run();
    clock.advance(5_000, net);
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    assert.equal(a.sadb.inbound.size, 1, 'alice keeps one Child SA');
    assert.equal(b.sadb.inbound.size, 1, 'bob keeps one Child SA');
    a.d.stop(); b.d.stop();
  });

  test('case 3: the peer restarts (state lost): the new IKE SA replaces the old one on both sides', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, ALICE, 'c3a', true);
    const b1 = makeDriver(net, clock, BOB, 'c3b1', true);
    a.d.start(); b1.d.start();
    net.run();
    assertPaired(a.sadb, 'bob', b1.sadb, 'alice');
    const oldOut = a.sadb.outbound.get('bob')?.outbound.spi;
    clock.advance(1_000, net);
    // kill -9: bob's driver and SADB vanish without a Delete; a new one starts.
    const b2 = makeDriver(net, clock, BOB, 'c3b2', true);
    b2.d.start();
    net.run();
    clock.advance(2_000, net);
    assertPaired(a.sadb, 'bob', b2.sadb, 'alice');
    assert.notEqual(a.sadb.outbound.get('bob')?.outbound.spi, oldOut);
    assert.equal(a.sadb.inbound.size, 1, 'the old inbound SA is gone');
    a.d.stop(); b2.d.stop();
  });

  test('case 4: a silent peer: DPD closes the IKE SA, its SAs are removed (fail closed), and it comes back after', () => {
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, ALICE, 'c4a', true);
    const b = makeDriver(net, clock, BOB, 'c4b', false);
    a.d.start(); b.d.start();
    net.run();
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
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
    const a = makeDriver(net, clock, ALICE, 'c5a', false);
    const b = makeDriver(net, clock, BOB, 'c5b', true);
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
    const net = new Net(); const clock = new Clock();
    const a = makeDriver(net, clock, ALICE, 'c6a', true);
    const b = makeDriver(net, clock, BOB, 'c6b', false);
    a.d.start(); b.d.start();
    net.run();
    assertPaired(a.sadb, 'bob', b.sadb, 'alice');
    a.d.stop();
    assert.equal(a.sadb.inbound.size, 0);
    assert.equal(a.sadb.outbound.size, 0);
    net.run();
    assert.equal(b.sadb.inbound.size, 0, 'bob acted on the Delete');
    assert.equal(b.sadb.outbound.size, 0);
    b.d.stop();
  });
});
