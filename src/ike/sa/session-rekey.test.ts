/**
 * session-rekey.test.ts: NAT traversal's port floating (RFC 7296 §2.23) and CREATE_CHILD_SA
 * exchanges between two sessions (§1.3, §2.8, §2.25): simultaneous Child SA rekeys, collisions
 * with other exchanges (TEMPORARY_FAILURE), a rekey crossing a Delete, ESP through the rekeyed
 * SAs. Simultaneous IKE SA rekeys (§2.8.2) have their own file, session-ike-collision.test.ts.
 * The byte layouts and keys are checked by hand in session-rfc.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NOTIFY } from '../constants.js';
import { A, B, espCarries, established, initiatorOptions, pair, responderOptions } from './ike-fixtures.js';
import { IkeSession, compareNonces } from './session.js';
import type { ChildSa, IkeEvent, IkeOutput, IkePath } from './session.js';

const NAT_PUBLIC = '203.0.113.5';

/** deliverAll hands each message of out to `to`, on `path`, and returns the answers. */
function deliverAll(out: IkeOutput, to: IkeSession, now: number, path?: IkePath): IkeOutput[] {
  return out.messages.map((m) => to.handle(m, now, path));
}

function childOf(evs: readonly IkeEvent[]): ChildSa | undefined {
  const e = evs.find((x) => x.type === 'child-sa');
  return e?.type === 'child-sa' ? e.child : undefined;
}

test('NAT-T (§2.23): the initiator floats to 4500 when a NAT is detected; the responder answers where requests came from', () => {
  const cases: [string, boolean][] = [['1 the initiator behind a NAT', true], ['2 no NAT', false]];
  for (const [name, nat] of cases) {
    // The responder sees the initiator at NAT_PUBLIC:1500 (IKE_SA_INIT) and :31000 (from its 4500) behind a NAT.
    const i = new IkeSession(initiatorOptions(`nat-${name}`));
    const r = new IkeSession(responderOptions(`nat-${name}`, { remote: nat ? { address: NAT_PUBLIC, port: 1500 } : A }));
    const pathR = (port500: boolean): IkePath => (nat ? { remotePort: port500 ? 1500 : 31_000, localPort: port500 ? 500 : 4500 } : { remotePort: 500, localPort: 500 });
    const i1 = i.start(1);
    const [r1] = deliverAll(i1, r, 1, pathR(true));
    assert.ok(r1 !== undefined);
    assert.deepEqual(r.nat, { local: false, remote: nat }, `${name}: the responder sees the initiator's NAT`);
    const [i2] = deliverAll(r1, i, 2, { remotePort: 500, localPort: 500 });
    assert.ok(i2 !== undefined);
    assert.deepEqual(i.nat, { local: nat, remote: false }, `${name}: the initiator sees its own NAT`);
    assert.equal(i.natDetected, nat);
    assert.deepEqual([i.localPort, i.remote.port], nat ? [4500, 4500] : [500, 500], `${name}: IKE_AUTH goes from/to 4500`);
    const [r2] = deliverAll(i2, r, 3, pathR(!nat));
    assert.ok(r2 !== undefined);
    assert.deepEqual([r.localPort, r.remote.port], nat ? [4500, 31_000] : [500, 500], `${name}: the responder answers from 4500 to the mapped port`);
    const [i3] = deliverAll(r2, i, 4, nat ? { remotePort: 4500, localPort: 4500 } : { remotePort: 500, localPort: 500 });
    assert.equal(i.state, 'established', name);
    assert.equal(r.state, 'established', name);
    assert.deepEqual(childOf(i3?.events ?? [])?.encap, nat ? { remotePort: 4500 } : undefined, `${name}: the initiator's Child SA`);
    assert.deepEqual(childOf(r2.events)?.encap, nat ? { remotePort: 31_000 } : undefined, `${name}: the responder's Child SA`);
    assert.equal(r2.events.some((e) => e.type === 'path-changed'), false, `${name}: no path event before established`);
    if (!nat) continue;

    // A NAT rebinding: the initiator's DPD arrives from 32000; the responder (not behind a NAT) follows it.
    const dpd = i.sendDpd(10);
    const mutated = Uint8Array.from(dpd.messages[0] ?? []);
    mutated[mutated.length - 1] ^= 1;
    const forged = r.handle(mutated, 10, { remotePort: 40_000, localPort: 4500 });
    assert.equal(forged.dropped, 'sk-auth');
    assert.equal(r.remote.port, 31_000, 'an unauthenticated datagram moves nothing');
    const [rd] = deliverAll(dpd, r, 11, { remotePort: 32_000, localPort: 4500 });
    assert.deepEqual(rd?.events, [{ type: 'path-changed', remotePort: 32_000, localPort: 4500 }], 'the responder follows');
    assert.equal(r.remote.port, 32_000);
    // The initiator is behind the NAT: it does not follow a new source port (§2.23 "SHOULD NOT").
    const [ia] = deliverAll(rd ?? { messages: [], events: [] }, i, 12, { remotePort: 4501, localPort: 4500 });
    assert.deepEqual(ia?.events, [{ type: 'peer-alive' }]);
    assert.equal(i.remote.port, 4500, 'the initiator keeps sending to 4500');
    // A Child SA rekeyed later carries the new port.
    const rk = i.rekeyChildSa(20);
    const [rr] = deliverAll(rk, r, 21, { remotePort: 32_000, localPort: 4500 });
    assert.deepEqual(childOf(rr?.events ?? [])?.encap, { remotePort: 32_000 }, 'the rekeyed Child SA follows the path');
  }
});

test('CREATE_CHILD_SA: ESP runs through each generation of rekeyed Child SAs, both directions, either side rekeying', () => {
  const link = pair({ seed: 'generations' });
  let { ci, cr } = established(link);
  for (const [k, side] of (['initiator', 'responder', 'initiator', 'responder'] as const).entries()) {
    link.take(side, link.session(side).rekeyChildSa(link.now));
    link.run();
    const { nci, ncr } = link.lastChildren();
    assert.ok(nci !== undefined && ncr !== undefined && nci.inbound.spi !== ci.inbound.spi, `${k}: a new Child SA`);
    assert.ok(espCarries(nci, ncr, k) && espCarries(ncr, nci, k), `${k}: ESP both ways`);
    assert.ok(!espCarries(ci, ncr, k), `${k}: the old key does not open the new SA`);
    assert.equal(link.initiator.children.length, 1, `${k}: one Child SA left`);
    assert.equal(link.responder.children.length, 1, `${k}: one Child SA left`);
    ci = nci;
    cr = ncr;
  }
  assert.equal(link.initiator.drops.total() + link.responder.drops.total(), 0);
  void cr;
});

test('CREATE_CHILD_SA collisions (§2.8.1, §2.25): simultaneous rekeys keep the lowest-nonce rule; other collisions get TEMPORARY_FAILURE', () => {
  // 1. Simultaneous Child SA rekeys, several seeds: one new SA survives, on both sides, and it is the
  //    one whose exchange does not hold the lowest of the four nonces.
  for (const seed of ['a', 'b', 'c', 'd', 'e', 'f']) {
    const link = pair({ seed: `sim-${seed}` });
    const { ci } = established(link);
    link.take('initiator', link.initiator.rekeyChildSa(link.now));
    link.take('responder', link.responder.rekeyChildSa(link.now));
    link.run();
    const [si] = link.initiator.children;
    const [sr] = link.responder.children;
    assert.equal(link.initiator.children.length, 1, `${seed}: initiator keeps one`);
    assert.equal(link.responder.children.length, 1, `${seed}: responder keeps one`);
    assert.deepEqual([si?.inbound, si?.outbound], [sr?.outbound, sr?.inbound], `${seed}: the same pair`);
    assert.notEqual(si?.inbound, ci.inbound.spi, `${seed}: a new one`);
    const isNew = link.eventsOf('initiator', 'child-sa').slice(1).map((e) => e.child);
    const survivor = isNew.find((c) => c.inbound.spi === si?.inbound);
    const peerSide = link.eventsOf('responder', 'child-sa').find((e) => e.child.inbound.spi === sr?.inbound)?.child;
    assert.ok(survivor !== undefined && peerSide !== undefined && espCarries(survivor, peerSide) && espCarries(peerSide, survivor), `${seed}: keys agree`);
    assert.equal(link.eventsOf('initiator', 'rekey-failed').length + link.eventsOf('responder', 'rekey-failed').length, 0, seed);
  }

  // 2. An IKE SA rekey crossing a Child SA rekey: each side answers TEMPORARY_FAILURE (§2.8.2, §2.25.2).
  {
    const link = pair({ seed: 'cross-ike-child' });
    established(link);
    link.take('initiator', link.initiator.rekeyIkeSa(link.now));
    link.take('responder', link.responder.rekeyChildSa(link.now));
    link.run();
    const fi = link.eventsOf('initiator', 'rekey-failed');
    const fr = link.eventsOf('responder', 'rekey-failed');
    assert.deepEqual(fi.map((e) => [e.what, e.notifyType]), [['ike', NOTIFY.TEMPORARY_FAILURE]]);
    assert.deepEqual(fr.map((e) => [e.what, e.notifyType]), [['child', NOTIFY.TEMPORARY_FAILURE]]);
    assert.deepEqual([link.initiator.state, link.responder.state, link.initiator.children.length], ['established', 'established', 1]);
  }

  // 3. A rekey of a Child SA the other side is deleting: TEMPORARY_FAILURE, and the Delete wins.
  {
    const link = pair({ seed: 'cross-delete' });
    established(link);
    link.take('initiator', link.initiator.deleteChildSa(link.now));
    link.take('responder', link.responder.rekeyChildSa(link.now));
    link.run();
    assert.deepEqual(link.eventsOf('responder', 'rekey-failed').map((e) => e.notifyType), [NOTIFY.TEMPORARY_FAILURE]);
    assert.deepEqual([link.initiator.children.length, link.responder.children.length], [0, 0], 'the Delete went through');
  }

  // Simultaneous IKE SA rekeys (§2.8.2, the nonce rule) are in session-ike-collision.test.ts.
  assert.ok(compareNonces(Uint8Array.of(1, 2), Uint8Array.of(1, 3)) < 0 && compareNonces(Uint8Array.of(1), Uint8Array.of(1, 0)) < 0 &&
    compareNonces(Uint8Array.of(2), Uint8Array.of(1, 9)) > 0 && compareNonces(Uint8Array.of(7), Uint8Array.of(7)) === 0, 'compareNonces');
});

test('CREATE_CHILD_SA: API refusals and a rekey that meets a closing IKE SA', () => {
  const link = pair({ seed: 'refusals' });
  const idle = new IkeSession(initiatorOptions('x'));
  assert.equal(idle.rekeyChildSa(0).refused, 'rekeyChildSa: state idle');
  assert.equal(idle.rekeyIkeSa(0).refused, 'rekeyIkeSa: state idle');
  established(link);
  link.take('initiator', link.initiator.rekeyChildSa(link.now));
  assert.equal(link.initiator.rekeyChildSa(link.now).refused, 'rekeyChildSa: no such Child SA, or it is being deleted or rekeyed');
  assert.equal(link.initiator.rekeyChildSa(link.now, 12345).refused, 'rekeyChildSa: no such Child SA, or it is being deleted or rekeyed');
  link.run();
  link.take('initiator', link.initiator.rekeyIkeSa(link.now));
  assert.equal(link.initiator.rekeyIkeSa(link.now).refused, 'rekeyIkeSa: already pending');
  link.run();
  assert.equal(link.initiator.rekeyChildSa(link.now).refused, 'rekeyChildSa: state closed', 'the old IKE SA is gone');
  // A rekey request to an IKE SA that is being deleted: TEMPORARY_FAILURE.
  const next = link.current('initiator');
  const nextR = link.current('responder');
  link.take('initiator', next.close(link.now));
  link.take('responder', nextR.rekeyChildSa(link.now));
  const [del, rekey] = link.inFlight;
  assert.ok(del !== undefined && rekey !== undefined);
  link.inFlight = [];
  link.deliver(rekey); // reaches the deleting IKE SA first
  link.run();          // its answer, then the Delete
  link.deliver(del);
  link.run();
  assert.deepEqual(link.eventsOf('responder', 'rekey-failed').map((e) => e.notifyType), [NOTIFY.TEMPORARY_FAILURE]);
  assert.deepEqual([next.state, nextR.state], ['closed', 'closed']);
  void B;
});

test('CREATE_CHILD_SA: requests queued behind an IKE SA rekey: a Child SA rekey is handed back (gone), a Delete moves to the new IKE SA', () => {
  const cases: [string, 'rekey' | 'delete'][] = [['1 a queued Child SA rekey', 'rekey'], ['2 a queued Child SA Delete', 'delete']];
  for (const [name, what] of cases) {
    const link = pair({ seed: `queued-${what}` });
    const { ci } = established(link);
    link.take('initiator', link.initiator.rekeyIkeSa(link.now));
    const queued = what === 'rekey' ? link.initiator.rekeyChildSa(link.now) : link.initiator.deleteChildSa(link.now);
    assert.equal(queued.messages.length, 0, `${name}: waits for the window`);
    link.take('initiator', queued);
    link.run();
    const next = link.current('initiator');
    assert.notEqual(next, link.initiator, `${name}: rekeyed`);
    if (what === 'rekey') {
      assert.deepEqual(link.eventsOf('initiator', 'rekey-failed').map((e) => [e.reason, e.inboundSpi]), [['gone', ci.inbound.spi]], name);
      link.take('initiator', next.rekeyChildSa(link.now));
      link.run();
      assert.notEqual(next.children[0]?.inbound, ci.inbound.spi, `${name}: rekeyed on the new IKE SA`);
      assert.equal(next.children.length, 1, name);
    } else {
      assert.deepEqual(link.eventsOf('initiator', 'child-sa-deleted').map((e) => [e.reason, e.inboundSpi]), [['local', ci.inbound.spi]], `${name}: deleted through the new IKE SA`);
      assert.deepEqual([next.children, link.current('responder').children], [[], []], name);
    }
    assert.equal(link.initiator.drops.total() + link.responder.drops.total() + next.drops.total() + link.current('responder').drops.total(), 0, name);
  }
});
