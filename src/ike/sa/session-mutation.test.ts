/*
 * Mutated and garbage messages at every stage of the exchange. The properties:
 *   - handle() never throws and never hits its internal-error guard;
 *   - a mutated message never leads to a Child SA (on either side) after it is delivered, with
 *     one exception the protocol allows: a mutated IKE_SA_INIT request may draw an unprotected
 *     INVALID_KE_PAYLOAD or COOKIE answer that the initiator follows with a genuine request
 *     (e.g. a flipped DH transform ID makes the responder ask for group 19). What comes of that
 *     is a genuine exchange, so its Child SA must then be the same on both sides; an attacker
 *     on the path can steer the group only among groups both sides accept (RFC 7296 §1.2
 *     re-sends the whole offer for this reason);
 *   - a flip in a field the initiator must ignore in the IKE_SA_INIT response (minor version, V
 *     flag, RESERVED octets; RFC 7296 §3.1, §3.2) is only caught by its AUTH check over that
 *     message, after the responder has committed its Child SA: the initiator sends
 *     AUTHENTICATION_FAILED and the responder deletes it again. No Child SA stays up on one side;
 *   - a mutated message that the receiver drops changes nothing: delivering the genuine
 *     message afterwards (a retransmission) still establishes the SA on both sides;
 *   - random datagrams and truncations in any state are dropped without a state change.
 * Bit positions: every bit of the header from Next Payload on (octets 16-27: version, exchange,
 * flags, message ID, length), every 5th bit of the two SPIs, then a stride through the payloads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pair } from './ike-fixtures.js';
import type { IkeLink, Side } from './ike-link.js';
import { seededRandom } from './ike-link.js';

const STAGES = ['IKE_SA_INIT request', 'IKE_SA_INIT response', 'IKE_AUTH request', 'IKE_AUTH response'] as const;
const HEADER_BITS = 28 * 8;
const SPI_BITS = 16 * 8;
const SPI_STRIDE = 5;
const PAYLOAD_STRIDE = 29;

function childEventsSince(link: IkeLink, mark: Record<Side, number>): number {
  return link.events.initiator.slice(mark.initiator).filter((e) => e.type === 'child-sa').length +
    link.events.responder.slice(mark.responder).filter((e) => e.type === 'child-sa').length;
}

function internalErrors(link: IkeLink): number {
  return link.initiator.drops.counts['internal-error'] + link.responder.drops.counts['internal-error'];
}

/** genuine is a clean transcript: the four messages of a successful exchange, by stage (lengths and headers are the same in every run). */
function genuine(): Uint8Array[] {
  const link = pair({ seed: 'mutation' });
  link.start();
  link.run();
  assert.equal(link.responder.state, 'established');
  return [link.sent.initiator[0], link.sent.responder[0], link.sent.initiator[1], link.sent.responder[1]];
}

test('session: single-bit flips at every stage never create a Child SA, never throw, and a dropped flip leaves the exchange recoverable', () => {
  const clean = genuine();
  let runs = 0;
  for (const [stage, name] of STAGES.entries()) {
    const bits = clean[stage].length * 8;
    const positions: number[] = [];
    for (let b = 0; b < SPI_BITS; b += SPI_STRIDE) positions.push(b);
    for (let b = SPI_BITS; b < HEADER_BITS; b++) positions.push(b);
    for (let b = HEADER_BITS; b < bits; b += PAYLOAD_STRIDE) positions.push(b);
    let dropped = 0;
    let retried = 0;
    let ignorable = 0;
    for (const bit of positions) {
      const label = `stage ${stage + 1} (${name}), bit ${bit}`;
      const link = pair({ seed: 'mutation' });
      link.start();
      const mark: Record<Side, number> = { initiator: 0, responder: 0 };
      let receiverDropped = false;
      let original: Uint8Array = new Uint8Array(0);
      link.run((d) => {
        if (d.seq !== stage) return d.bytes;
        original = d.bytes;
        mark.initiator = link.events.initiator.length;
        mark.responder = link.events.responder.length;
        const m = Uint8Array.from(d.bytes);
        m[bit >>> 3] ^= 0x80 >>> (bit & 7);
        const out = link.session(d.to).handle(m, link.now);
        receiverDropped = out.dropped !== undefined;
        link.take(d.to, out);
        return undefined; // delivered by hand above
      }, 16);
      runs++;
      assert.equal(internalErrors(link), 0, label);
      const children = childEventsSince(link, mark);
      if (children > 0 && stage === 0) {
        // A genuine retry after an unprotected answer to the mutated request: consistent on both sides.
        assert.ok(link.initiator.stats.invalidKeRetries + link.initiator.stats.cookieRounds > 0, `${label}: only through a genuine retry`);
        const ci = link.eventsOf('initiator', 'child-sa')[0].child;
        const cr = link.eventsOf('responder', 'child-sa')[0].child;
        assert.equal(children, 2, label);
        assert.ok(Buffer.from(ci.outbound.keyMaterial).equals(cr.inbound.keyMaterial) && Buffer.from(ci.inbound.keyMaterial).equals(cr.outbound.keyMaterial), `${label}: and it is consistent`);
        retried++;
      } else if (children > 0 && stage === 1) {
        // A flip the initiator must ignore (minor version, V flag, RESERVED): the responder
        // authenticates the genuine IKE_AUTH request and commits first; the initiator's AUTH check
        // over the mutated RealMessage2 fails, it says so, and the responder deletes again.
        assert.equal(link.eventsOf('initiator', 'child-sa').length, 0, `${label}: never at the initiator`);
        assert.equal(link.eventsOf('initiator', 'closed')[0]?.reason, 'auth-failed', label);
        assert.equal(link.eventsOf('responder', 'child-sa-deleted').length, children, `${label}: the responder's is deleted again`);
        assert.equal(link.responder.state, 'closed', label);
        ignorable++;
      } else {
        assert.equal(children, 0, `${label}: no Child SA after the mutation`);
      }
      if (receiverDropped) {
        dropped++;
        // The genuine message arrives after all (a retransmission): the exchange completes.
        link.inFlight = [{ seq: 1000, to: stage % 2 === 0 ? 'responder' : 'initiator', bytes: original }];
        link.run(undefined, 16);
        assert.deepEqual([link.initiator.state, link.responder.state], ['established', 'established'], `${label}: recoverable after a drop`);
        assert.equal(link.eventsOf('initiator', 'child-sa').length, 1, label);
      }
    }
    assert.ok(dropped > 0, `stage ${stage + 1}: some flips are dropped`);
    if (stage >= 2) assert.equal(dropped, positions.length, `stage ${stage + 1}: every flip of an SK message is dropped`);
    if (stage > 0) assert.equal(retried, 0, `stage ${stage + 1}`);
    if (stage === 1) assert.ok(ignorable > 0 && ignorable < 40, `stage 2: ${ignorable} flips of ignored bits`);
  }
  assert.ok(runs > 600, `${runs} runs`);
});

test('session: random datagrams and truncations are dropped in every state without a state change', () => {
  const random = seededRandom('garbage');
  const clean = genuine();
  // States reached by delivering the first k messages of the transcript.
  const plans: [string, number, Side][] = [
    ['1 responder idle', 0, 'responder'],
    ['2 initiator init-sent', 1, 'initiator'],
    ['3 responder init-done', 1, 'responder'],
    ['4 initiator auth-sent', 3, 'initiator'],
    ['5 responder established', 3, 'responder'],
    ['6 initiator established', 4, 'initiator'],
  ];
  for (const [name, k, side] of plans) {
    const link = pair({ seed: 'mutation' });
    link.start();
    link.run(undefined, k);
    const s = link.session(side);
    const state = s.state;
    const datagrams: Uint8Array[] = [];
    for (let n = 0; n < 150; n++) {
      const len = random(1)[0] + (n % 3) * 100;
      const g = random(len);
      if (n % 2 === 0 && len >= 28) {
        // Keep a plausible header (this SA's SPIs, version 2, the length) so the chain parser is reached.
        g.set(clean[3].subarray(0, 18), 0);
        new DataView(g.buffer).setUint32(24, len);
      }
      datagrams.push(g);
    }
    for (const m of clean) for (let cut = 0; cut < m.length; cut += 7) datagrams.push(m.subarray(0, cut));
    for (const [i, g] of datagrams.entries()) {
      const out = s.handle(g, link.now);
      assert.ok(out.dropped !== undefined || (state === 'idle' && out.messages.length <= 1), `${name}, datagram ${i + 1}: dropped`);
      assert.equal(out.events.length, 0, `${name}, datagram ${i + 1}: no events`);
      assert.equal(s.state, state, `${name}, datagram ${i + 1}: no state change`);
    }
    assert.equal(s.drops.counts['internal-error'], 0, name);
  }
});
