/**
 * session-ike-collision.test.ts: simultaneous IKE SA rekeys (RFC 7296 §2.8.2) between two
 * sessions on the in-memory link. Both CREATE_CHILD_SA exchanges complete and two new IKE SAs
 * exist: the one whose exchange holds the lowest of the four nonces is deleted by the side that
 * initiated it, the other inherits the Child SAs, and the side that initiated the surviving
 * rekey deletes the old IKE SA. Also the case where only one side notices the collision (the
 * other answers TEMPORARY_FAILURE, then its Delete of the old SA settles it), messages lost,
 * delayed or repeated during the collision, a rekey by one side alone, and the collisions that
 * still get TEMPORARY_FAILURE (§2.25).
 *
 * Nonces are chosen by the test where the outcome must be known (a random source that hands out
 * planned 32-octet draws), else recorded and the expected winner computed from them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXCHANGE, NOTIFY } from '../constants.js';
import { espCarries, established, pair, parsed } from './ike-fixtures.js';
import type { IkeLink, Side, Tamper } from './ike-link.js';
import { seededRandom } from './ike-link.js';
import { NONCE_LEN, compareNonces } from './session.js';
import type { ChildSa, IkeSession } from './session.js';

/** NonceSource is a seeded random source that hands out planned nonces first and records every nonce drawn. */
interface NonceSource {
  readonly random: (n: number) => Uint8Array;
  readonly plan: Uint8Array[];
  readonly drawn: Uint8Array[];
}

function nonceSource(seed: string): NonceSource {
  const base = seededRandom(seed);
  const plan: Uint8Array[] = [];
  const drawn: Uint8Array[] = [];
  const random = (n: number): Uint8Array => {
    const b = (n === NONCE_LEN ? plan.shift() : undefined) ?? base(n);
    if (n === NONCE_LEN) drawn.push(Uint8Array.from(b));
    return b;
  };
  return { random, plan, drawn };
}

/** nonce is a NONCE_LEN nonce starting with `first` (the rest arbitrary). */
function nonce(first: number, tag: string): Uint8Array {
  const b = seededRandom(`nonce-${tag}`)(NONCE_LEN);
  b[0] = first;
  return b;
}

const other = (s: Side): Side => (s === 'initiator' ? 'responder' : 'initiator');
const minOf = (a: Uint8Array, b: Uint8Array): Uint8Array => (compareNonces(a, b) <= 0 ? a : b);

interface Collision {
  readonly link: IkeLink;
  readonly ci: ChildSa;
  readonly cr: ChildSa;
  readonly src: Record<Side, NonceSource>;
  /** old is each side's original IKE SA. */
  readonly old: Record<Side, IkeSession>;
}

/**
 * collision establishes a pair, plans the nonces (each side's first draw is the Ni of its own
 * request, the second the Nr of its answer to the peer's) and has both sides start an IKE SA
 * rekey at the same moment. Nothing is delivered yet.
 */
function collision(seed: string, plan?: Record<Side, Uint8Array[]>): Collision {
  const src = { initiator: nonceSource(`${seed}/i`), responder: nonceSource(`${seed}/r`) };
  const link = pair({ seed, i: { random: src.initiator.random }, r: { random: src.responder.random } });
  const { ci, cr } = established(link);
  for (const side of ['initiator', 'responder'] as const) {
    src[side].drawn.length = 0;
    if (plan !== undefined) src[side].plan.push(...plan[side]);
  }
  link.take('initiator', link.initiator.rekeyIkeSa(link.now));
  link.take('responder', link.responder.rekeyIkeSa(link.now));
  assert.equal(link.inFlight.length, 2, `${seed}: both requests are on their way`);
  return { link, ci, cr, src, old: { initiator: link.initiator, responder: link.responder } };
}

/** loserByNonces is the side whose exchange holds the lowest of the four nonces, from what each side drew. */
function loserByNonces(c: Collision): Side {
  const [niI, nrI] = c.src.initiator.drawn;
  const [niR, nrR] = c.src.responder.drawn;
  assert.ok(niI !== undefined && nrI !== undefined && niR !== undefined && nrR !== undefined, 'each side drew its Ni and an Nr');
  // The initiator's exchange: its Ni and the responder's Nr; the responder's exchange: the other two.
  return compareNonces(minOf(niI, nrR), minOf(niR, nrI)) < 0 ? 'initiator' : 'responder';
}

/** settle delivers everything in flight and moves the clock in 500 ms steps (retransmissions), bounded. */
function settle(link: IkeLink, tamper?: Tamper, ms = 20_000): void {
  for (let t = 0; t <= ms; t += 500) {
    link.run(tamper);
    link.advance(500);
  }
  link.run(tamper);
}

/** requestsOn lists the requests `side` sent under the IKE SA `sa`'s SPIs, as [exchange type, message ID]. */
function requestsOn(link: IkeLink, side: Side, sa: IkeSession): [number, number][] {
  return link.sent[side].map(parsed).filter((m) => !m.header.response && m.header.spiI === sa.spiI && m.header.spiR === sa.spiR)
    .map((m) => [m.header.exchangeType, m.header.messageId]);
}

const DELETE_FIRST: [number, number][] = [[EXCHANGE.INFORMATIONAL, 0]];

function drops(link: IkeLink): number {
  let n = 0;
  for (const side of ['initiator', 'responder'] as const) for (const s of link.sessions[side]) n += s.drops.total();
  return n;
}

/**
 * Redundant says what became of the second new IKE SA: 'deleted' (made at both ends, deleted by
 * the side that initiated it), 'none' (only one rekey made an SA), 'waiting' (the loser never
 * completed its exchange, so only the winner made it; it waits there for a Delete that will
 * not come, and the driver forgets it after a while).
 */
type Redundant = 'deleted' | 'none' | 'waiting';

/**
 * assertSurvivor checks the end state after the collision: one new IKE SA in use at both ends
 * (the same SPIs), initiated by `by`; it holds the original Child SA (same SPIs and keys: ESP
 * still flows, no Child SA was made or deleted); the old IKE SA closed 'rekeyed' at both ends,
 * deleted by `by`; and the redundant new SA as `redundant` says.
 */
function assertSurvivor(c: Collision, by: Side, redundant: Redundant, label: string): void {
  const { link, ci, cr, old } = c;
  const loser = other(by);
  const sI = link.current('initiator');
  const sR = link.current('responder');
  assert.ok(sI !== old.initiator && sR !== old.responder, `${label}: a new IKE SA at both ends`);
  assert.deepEqual([sI.state, sR.state], ['established', 'established'], label);
  assert.deepEqual([sI.spiI, sI.spiR], [sR.spiI, sR.spiR], `${label}: both ends use the same new IKE SA`);
  assert.equal(link.current(by).role, 'initiator', `${label}: the survivor is the rekey started by the ${by} (its original initiator)`);
  assert.deepEqual(sI.children, [{ inbound: ci.inbound.spi, outbound: ci.outbound.spi }], `${label}: the Child SA moved (initiator)`);
  assert.deepEqual(sR.children, [{ inbound: cr.inbound.spi, outbound: cr.outbound.spi }], `${label}: the Child SA moved (responder)`);
  assert.ok(espCarries(ci, cr, 1) && espCarries(cr, ci, 2), `${label}: ESP both ways on the unchanged Child SA`);
  for (const side of ['initiator', 'responder'] as const) {
    assert.deepEqual(link.eventsOf(side, 'child-sa').length, 1, `${label}: no Child SA made at the ${side} (only the first)`);
    assert.deepEqual(link.eventsOf(side, 'child-sa-deleted'), [], `${label}: no Child SA deleted at the ${side}`);
    assert.deepEqual(link.eventsOf(side, 'rekey-failed'), [], `${label}: no failure reported at the ${side}`);
    assert.equal(link.eventsOf(side, 'ike-rekeyed').length, 1, `${label}: the Child SAs moved once at the ${side}`);
    assert.equal(old[side].state, 'closed', `${label}: the old IKE SA closed at the ${side}`);
    assert.deepEqual(old[side].children, [], label);
    const has = redundant === 'deleted' || (redundant === 'waiting' && side === by);
    const reds = link.sessions[side].filter((s) => s.redundant);
    assert.equal(reds.length, has ? 1 : 0, `${label}: redundant SAs at the ${side}`);
    assert.equal(link.eventsOf(side, 'ike-redundant').length, has ? 1 : 0, label);
    assert.deepEqual(link.eventsOf(side, 'closed').map((e) => e.reason).sort(), redundant === 'deleted' ? ['redundant', 'rekeyed'] : ['rekeyed'],
      `${label}: what closed at the ${side}`);
  }
  // The old IKE SA: deleted by the side that initiated the surviving rekey (§2.8.2).
  const oldDeletes = (side: Side): number => requestsOn(link, side, old[side]).filter(([x]) => x === EXCHANGE.INFORMATIONAL).length;
  assert.ok(oldDeletes(by) >= 1, `${label}: the ${by} deleted the old IKE SA`);
  assert.equal(oldDeletes(loser), 0, `${label}: the ${loser} did not`);
  if (redundant === 'waiting') {
    const [red] = link.sessions[by].filter((s) => s.redundant);
    assert.ok(red !== undefined);
    assert.deepEqual([red.state, red.role, red.children], ['established', 'responder', []], `${label}: the loser's SA waits at the ${by}, unused`);
    assert.deepEqual(requestsOn(link, by, red), [], `${label}: the ${by} sent nothing on it`);
    assert.ok(red.rekeyIkeSa(link.now).refused !== undefined && red.rekeyChildSa(link.now).refused !== undefined, `${label}: it cannot be rekeyed`);
  }
  if (redundant !== 'deleted') return;
  const [redI] = link.sessions.initiator.filter((s) => s.redundant);
  const [redR] = link.sessions.responder.filter((s) => s.redundant);
  assert.ok(redI !== undefined && redR !== undefined);
  assert.deepEqual([redI.spiI, redI.spiR], [redR.spiI, redR.spiR], `${label}: the same redundant IKE SA at both ends`);
  assert.deepEqual([redI.state, redR.state, redI.children, redR.children], ['closed', 'closed', [], []], `${label}: deleted, never used`);
  const red = (side: Side): IkeSession => (side === 'initiator' ? redI : redR);
  assert.equal(red(loser).role, 'initiator', `${label}: the redundant SA is the ${loser}'s rekey`);
  // Deleted by the side that created it: its first and only request (retransmissions aside), none from the other.
  assert.deepEqual([...new Map(requestsOn(link, loser, red(loser)).map((r) => [r.join(), r])).values()], DELETE_FIRST,
    `${label}: the ${loser} deleted its redundant SA, as its first request on it`);
  assert.deepEqual(requestsOn(link, by, red(by)), [], `${label}: the ${by} sent nothing on it`);
}

/** assertWorks checks that the survivor carries on: a DPD and a Child SA rekey from either side. */
function assertWorks(c: Collision, label: string): void {
  const { link } = c;
  for (const side of ['initiator', 'responder'] as const) {
    link.take(side, link.current(side).sendDpd(link.now));
    link.run();
    const before = link.current(side).children[0]?.inbound;
    link.take(side, link.current(side).rekeyChildSa(link.now));
    link.run();
    const { nci, ncr } = link.lastChildren();
    assert.ok(nci !== undefined && ncr !== undefined && espCarries(nci, ncr) && espCarries(ncr, nci), `${label}: a Child SA rekey by the ${side} on the survivor`);
    assert.notEqual(link.current(side).children[0]?.inbound, before, label);
    assert.deepEqual([link.current('initiator').children.length, link.current('responder').children.length], [1, 1], label);
  }
  assert.equal(link.eventsOf('initiator', 'peer-alive').length + link.eventsOf('responder', 'peer-alive').length, 2, `${label}: DPD answered both ways`);
}

test('§2.8.2 simultaneous IKE SA rekeys: both complete, the lowest nonce\'s new SA is deleted by its initiator, the other takes the Child SAs', async (t) => {
  // The lowest of the four nonces in each position: the initiator's Ni or the responder's Nr to it
  // (the initiator's exchange: it loses), the responder's Ni or the initiator's Nr to it (the responder loses).
  const HI = 0x80;
  const cases: [string, Record<Side, Uint8Array[]>, Side][] = [
    ['initiator\'s Ni lowest', { initiator: [nonce(0x01, 'a'), nonce(HI, 'b')], responder: [nonce(HI, 'c'), nonce(HI, 'd')] }, 'initiator'],
    ['responder\'s Nr (in the initiator\'s exchange) lowest', { initiator: [nonce(HI, 'a'), nonce(HI, 'b')], responder: [nonce(HI, 'c'), nonce(0x01, 'd')] }, 'initiator'],
    ['responder\'s Ni lowest', { initiator: [nonce(HI, 'a'), nonce(HI, 'b')], responder: [nonce(0x01, 'c'), nonce(HI, 'd')] }, 'responder'],
    ['initiator\'s Nr (in the responder\'s exchange) lowest', { initiator: [nonce(HI, 'a'), nonce(0x01, 'b')], responder: [nonce(HI, 'c'), nonce(HI, 'd')] }, 'responder'],
    // Equal first octets: memcmp goes on; a shorter nonce would be lower only on a common prefix.
    // The two exchanges' lowest nonces share their first octet: octet by octet, the second decides.
    ['a tie on the first octet, decided by the second', {
      initiator: [nonce(0x10, 'a').fill(0x10, 1, 2), nonce(HI, 'b')],
      responder: [nonce(0x10, 'c').fill(0x11, 1, 2), nonce(HI, 'd')],
    }, 'initiator'],
  ];
  for (const [name, plan, loser] of cases) {
    await t.test(name, () => {
      const c = collision(`planned ${name}`, plan);
      c.link.run();
      assert.equal(loserByNonces(c), loser, 'the plan took');
      assertSurvivor(c, other(loser), 'deleted', name);
      assert.equal(drops(c.link), 0, `${name}: nothing dropped`);
      assertWorks(c, name);
      assert.equal(drops(c.link), 0, `${name}: nothing dropped`);
    });
  }
  await t.test('random nonces, eight seeds: the outcome follows the rule whichever side wins', () => {
    const losers = new Set<Side>();
    for (let k = 0; k < 8; k++) {
      const c = collision(`seed ${k}`);
      c.link.run();
      const loser = loserByNonces(c);
      losers.add(loser);
      assertSurvivor(c, other(loser), 'deleted', `seed ${k}`);
      assert.equal(drops(c.link), 0, `seed ${k}: nothing dropped`);
    }
    assert.equal(losers.size, 2, 'both sides lost at least once over the seeds');
  });
});

test('§2.8.2 only one side notices: the other answers TEMPORARY_FAILURE, its Delete of the old SA settles it; no redundant SA', async (t) => {
  for (const order of ['TEMPORARY_FAILURE before the Delete', 'the Delete before TEMPORARY_FAILURE'] as const) {
    await t.test(order, () => {
      // The initiator's request is held back: the responder completes its rekey (it saw no
      // collision) before the initiator's request reaches it.
      const c = collision(`one-sided ${order}`);
      const { link } = c;
      const held = link.inFlight.find((d) => d.to === 'responder');
      assert.ok(held !== undefined);
      link.inFlight = link.inFlight.filter((d) => d !== held);
      link.run(undefined, 2); // the responder's request, the initiator's answer: the responder is done and sends Delete(old)
      assert.equal(link.eventsOf('responder', 'ike-rekeyed').length, 1, 'the responder completed');
      assert.equal(link.eventsOf('initiator', 'ike-rekeyed').length, 0, 'the initiator waits for its own response');
      const del = link.inFlight.find((d) => d.to === 'initiator');
      assert.ok(del !== undefined && link.inFlight.length === 1, 'the Delete of the old IKE SA');
      link.inFlight = [];
      if (order === 'TEMPORARY_FAILURE before the Delete') {
        link.deliver(held);
        const tf = link.inFlight.shift();
        assert.ok(tf !== undefined);
        link.deliver(tf); // the initiator's rekey failed: the responder's new SA is the one
        assert.equal(link.eventsOf('initiator', 'ike-rekeyed').length, 1, 'the Child SAs moved on TEMPORARY_FAILURE');
        assert.equal(c.old.initiator.state, 'established', 'the old SA waits for the peer\'s Delete');
        link.deliver(del);
        link.run();
      } else {
        link.deliver(del); // the initiator learns the responder did not see the collision
        assert.equal(link.eventsOf('initiator', 'ike-rekeyed').length, 1, 'the Child SAs moved on the Delete');
        const answer = link.inFlight.shift();
        assert.ok(answer !== undefined && c.old.initiator.state === 'closed');
        link.deliver(held); // reaches the responder's old SA while its Delete is outstanding
        link.deliver(answer);
        link.run(); // the TEMPORARY_FAILURE reaches a closed SA
      }
      assertSurvivor(c, 'responder', 'none', order);
      assert.deepEqual(link.sessions.initiator.length, 2, 'the initiator made no SA of its own');
      assert.equal(drops(link), order === 'TEMPORARY_FAILURE before the Delete' ? 0 : 1, `${order}: drops (a response to a closed SA)`);
      assertWorks(c, order);
    });
  }
});

test('§2.8.2 with messages lost, late or repeated: retransmissions reach the same end state at both sides', async (t) => {
  const HI = 0x80;
  const LO = 0x01;
  // Planned so that the named side loses (its exchange holds the lowest nonce).
  const plan = (loser: Side): Record<Side, Uint8Array[]> => ({
    initiator: [nonce(loser === 'initiator' ? LO : HI, 'a'), nonce(HI, 'b')],
    responder: [nonce(loser === 'responder' ? LO : HI, 'c'), nonce(HI, 'd')],
  });
  for (const loser of ['initiator', 'responder'] as const) {
    await t.test(`the first answer to the initiator's request is lost; the ${loser} loses the nonce rule`, () => {
      const c = collision(`lost answer ${loser}`, plan(loser));
      let lost = false;
      const tamper: Tamper = (d) => {
        const m = parsed(d.bytes);
        if (!lost && d.to === 'initiator' && m.header.response && m.header.exchangeType === EXCHANGE.CREATE_CHILD_SA) { lost = true; return undefined; }
        return d.bytes;
      };
      settle(c.link, tamper);
      assert.ok(lost);
      // The initiator lost: the responder won and deleted the old SA, which told the initiator
      // (its answer never came) that the responder's new SA is the one; its own was never made,
      // and the responder's copy of it waits for a Delete. The responder lost: it deleted its
      // redundant SA at once, which the initiator knew only once its retransmitted request was
      // answered (the first Deletes met an SA it did not know yet: dropped, retransmitted).
      assertSurvivor(c, other(loser), loser === 'initiator' ? 'waiting' : 'deleted', `lost answer, ${loser} loses`);
      const early = c.link.initiator.drops.counts['wrong-spi'];
      assert.ok(loser === 'initiator' ? early === 0 : early > 0, `Deletes for an SA not known yet: ${early}`);
      assert.equal(drops(c.link), early, 'nothing else dropped');
      assertWorks(c, `lost answer, ${loser} loses`);
    });
  }

  await t.test('the initiator\'s first request is lost: the responder saw no collision, its SA survives whatever the nonces', () => {
    const c = collision('lost request', plan('responder'));
    let lost = false;
    const tamper: Tamper = (d) => {
      if (!lost && d.to === 'responder' && parsed(d.bytes).header.exchangeType === EXCHANGE.CREATE_CHILD_SA) { lost = true; return undefined; }
      return d.bytes;
    };
    settle(c.link, tamper);
    assert.ok(lost);
    assertSurvivor(c, 'responder', 'none', 'lost request');
    assertWorks(c, 'lost request');
  });

  await t.test('the loser\'s Delete of its redundant SA is lost twice: retransmitted until the winner\'s copy closes', () => {
    const c = collision('lost redundant delete', plan('initiator'));
    let lost = 0;
    const tamper: Tamper = (d) => {
      const m = parsed(d.bytes);
      const red = c.link.sessions.initiator.find((s) => s.redundant);
      if (lost < 2 && red !== undefined && d.to === 'responder' && !m.header.response && m.header.spiI === red.spiI) { lost++; return undefined; }
      return d.bytes;
    };
    settle(c.link, tamper);
    assert.equal(lost, 2);
    assertSurvivor(c, 'responder', 'deleted', 'lost redundant delete');
    assert.equal(c.link.sessions.initiator.find((s) => s.redundant)?.stats.retransmits, 2, 'two retransmissions');
    assert.equal(drops(c.link), 0);
  });

  await t.test('every message of the collision delivered twice: the copies get the stored answers, nothing changes', () => {
    const c = collision('duplicates', plan('responder'));
    const seen = new Set<string>();
    for (let i = 0; i < 64 && c.link.inFlight.length > 0; i++) {
      const d = c.link.inFlight.shift();
      if (d === undefined) break;
      c.link.deliver(d);
      const key = Buffer.from(d.bytes).toString('hex');
      if (!seen.has(key)) { seen.add(key); c.link.inFlight.push({ ...d, seq: -1 }); }
    }
    assertSurvivor(c, 'initiator', 'deleted', 'duplicates');
    const replayed = c.link.sessions.initiator.concat(c.link.sessions.responder).reduce((n, s) => n + s.stats.responsesReplayed, 0);
    assert.ok(replayed >= 2, `stored responses sent again (${replayed})`);
    assertWorks(c, 'duplicates');
  });
});

test('an IKE SA rekey by one side alone is unchanged: no redundant SA, the initiator of the rekey deletes the old SA', () => {
  for (const side of ['initiator', 'responder'] as const) {
    const src = { initiator: nonceSource(`alone ${side}/i`), responder: nonceSource(`alone ${side}/r`) };
    const link = pair({ seed: `alone ${side}`, i: { random: src.initiator.random }, r: { random: src.responder.random } });
    const { ci, cr } = established(link);
    link.take(side, link.session(side).rekeyIkeSa(link.now));
    link.run();
    const c: Collision = { link, ci, cr, src, old: { initiator: link.initiator, responder: link.responder } };
    assertSurvivor(c, side, 'none', `${side} alone`);
    assert.equal(drops(link), 0);
  }
});

test('other collisions with an IKE SA rekey still get TEMPORARY_FAILURE (§2.25): a Child SA rekey, an IKE SA being deleted', () => {
  {
    // An IKE SA rekey crossing a Child SA rekey: each refuses the other.
    const link = pair({ seed: 'ike x child' });
    established(link);
    link.take('initiator', link.initiator.rekeyIkeSa(link.now));
    link.take('responder', link.responder.rekeyChildSa(link.now));
    link.run();
    assert.deepEqual(link.eventsOf('initiator', 'rekey-failed').map((e) => [e.what, e.notifyType]), [['ike', NOTIFY.TEMPORARY_FAILURE]]);
    assert.deepEqual(link.eventsOf('responder', 'rekey-failed').map((e) => [e.what, e.notifyType]), [['child', NOTIFY.TEMPORARY_FAILURE]]);
    assert.deepEqual([link.sessions.initiator.length, link.sessions.responder.length], [1, 1], 'no new IKE SA');
  }
  {
    // An IKE SA rekey reaching an IKE SA that is being deleted: TEMPORARY_FAILURE, then the Delete closes both.
    const link = pair({ seed: 'ike x delete' });
    established(link);
    link.take('initiator', link.initiator.close(link.now));
    link.take('responder', link.responder.rekeyIkeSa(link.now));
    const [del, rekey] = link.inFlight;
    assert.ok(del !== undefined && rekey !== undefined);
    link.inFlight = [];
    link.deliver(rekey); // reaches the deleting IKE SA: TEMPORARY_FAILURE
    link.run();
    link.deliver(del);
    link.run();
    assert.deepEqual(link.eventsOf('responder', 'rekey-failed').map((e) => [e.what, e.notifyType]), [['ike', NOTIFY.TEMPORARY_FAILURE]]);
    assert.deepEqual([link.initiator.state, link.responder.state], ['closed', 'closed']);
    assert.deepEqual(link.eventsOf('responder', 'closed').map((e) => e.reason), ['deleted-by-peer']);
    assert.deepEqual([link.sessions.initiator.length, link.sessions.responder.length], [1, 1], 'no new IKE SA');
  }
  {
    // A peer's IKE SA rekey while our Child SA rekey is queued behind our IKE SA rekey: refused,
    // and since our IKE SA rekey then completes alone, the peer is left with ours.
    const link = pair({ seed: 'ike x queued child' });
    established(link);
    link.take('initiator', link.initiator.rekeyIkeSa(link.now));
    link.take('initiator', link.initiator.rekeyChildSa(link.now));
    link.take('responder', link.responder.rekeyIkeSa(link.now));
    link.run();
    assert.deepEqual(link.eventsOf('initiator', 'rekey-failed').map((e) => [e.what, e.reason]), [['child', 'gone']], 'the queued Child SA rekey is handed back');
    assert.deepEqual(link.eventsOf('responder', 'rekey-failed'), [], 'the responder concluded with the initiator\'s SA instead');
    assert.deepEqual([link.current('initiator').spiI, link.current('initiator').spiR], [link.current('responder').spiI, link.current('responder').spiR]);
    assert.equal(link.current('initiator').role, 'initiator');
    assert.deepEqual([link.initiator.state, link.responder.state], ['closed', 'closed']);
  }
});
