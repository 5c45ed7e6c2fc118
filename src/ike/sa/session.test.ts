import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../../errors.js';
import { EXCHANGE, NOTIFY, PAYLOAD } from '../constants.js';
import { IKE_OFFSET_FLAGS, IKE_OFFSET_MESSAGE_ID, FLAG_INITIATOR } from '../message.js';
import { IkeCookieJar } from './cookie.js';
import { A, B, PSK, espCarries, established, forgedInitAnswer, initiatorOptions, pair, parsed, responderOptions } from './ike-fixtures.js';
import type { PairOptions } from './ike-fixtures.js';
import { IkeLink } from './ike-link.js';
import { IkeSession } from './session.js';
import type { ChildSa, IkeInitiatorOptions, IkeResponderOptions } from './session.js';
import { formatSelector } from './ts.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const u16 = (v: number): Uint8Array => Uint8Array.of(v >>> 8, v & 0xff);

/** assertMirrored checks that two Child SAs are the two ends of one pair of ESP SAs. */
function assertMirrored(ci: ChildSa, cr: ChildSa, label: string): void {
  assert.equal(ci.outbound.spi, cr.inbound.spi, `${label}: initiator's outbound SPI = responder's inbound SPI`);
  assert.equal(ci.inbound.spi, cr.outbound.spi, `${label}: initiator's inbound SPI = responder's outbound SPI`);
  assert.notEqual(ci.inbound.spi, ci.outbound.spi, `${label}: two different SPIs`);
  assert.equal(hex(ci.outbound.keyMaterial), hex(cr.inbound.keyMaterial), `${label}: i->r key`);
  assert.equal(hex(ci.inbound.keyMaterial), hex(cr.outbound.keyMaterial), `${label}: r->i key`);
  assert.notEqual(hex(ci.inbound.keyMaterial), hex(ci.outbound.keyMaterial), `${label}: one key per direction`);
  assert.equal(ci.algorithm, cr.algorithm, label);
  assert.deepEqual(ci.localTs.map(formatSelector), cr.remoteTs.map(formatSelector), `${label}: TSi`);
  assert.deepEqual(ci.remoteTs.map(formatSelector), cr.localTs.map(formatSelector), `${label}: TSr`);
  assert.ok(espCarries(ci, cr, 1), `${label}: ESP initiator -> responder`);
  assert.ok(espCarries(cr, ci, 2), `${label}: ESP responder -> initiator`);
  // The wrong key does not open: seal with the initiator's outbound SA, open as if it were the r->i SA.
  assert.equal(espCarries(ci, { ...cr, inbound: { spi: cr.inbound.spi, keyMaterial: cr.outbound.keyMaterial } }), false, `${label}: keys are per direction`);
}

test('session: two peers establish an IKE SA and a Child SA whose ESP keys work (groups, ciphers, identities)', () => {
  const v6 = (o: PairOptions): PairOptions => ({
    i: { ...o.i, local: { address: '2001:db8::1', port: 500 }, remote: { address: '2001:db8::2', port: 500 }, localProtect: ['2001:db8:1::/48'],
      localId: { kind: 'ipv6', address: '2001:db8::1' },
      peer: { name: 'gw-b', id: { kind: 'ipv6', address: '2001:db8::2' }, psk: PSK, protect: ['2001:db8:2::/48'] } },
    r: { ...o.r, local: { address: '2001:db8::2', port: 500 }, remote: { address: '2001:db8::1', port: 500 }, localProtect: ['2001:db8:2::/48'],
      localId: { kind: 'ipv6', address: '2001:db8::2' },
      peers: [{ name: 'gw-a', id: { kind: 'ipv6', address: '2001:db8::1' }, psk: PSK, protect: ['2001:db8:1::/48'] }] },
  });
  const cases: [string, PairOptions, { dh: number; ike: string; esp: string }][] = [
    ['1 defaults: group 31, AES-GCM-16/256 for IKE and ESP', {}, { dh: 31, ike: 'aes256gcm16', esp: 'aes256gcm16' }],
    ['2 group 19 on both sides', { i: { ike: { encryption: ['aes256gcm16'], prf: [5], dhGroups: [19] } }, r: { ike: { encryption: ['aes256gcm16'], prf: [5], dhGroups: [19] } } },
      { dh: 19, ike: 'aes256gcm16', esp: 'aes256gcm16' }],
    ['3 AES-128 chosen by a responder that only takes it', {
      i: { ike: { encryption: ['aes256gcm16', 'aes128gcm16'], prf: [5], dhGroups: [31, 19] } },
      r: { ike: { encryption: ['aes128gcm16'], prf: [5], dhGroups: [31, 19] }, esp: { encryption: ['aes128gcm16'] } },
    }, { dh: 31, ike: 'aes128gcm16', esp: 'aes128gcm16' }],
    ['4 ID_IPV4_ADDR and ID_KEY_ID identities, IDr sent', {
      i: { localId: { kind: 'ipv4', address: '192.0.2.1' }, sendPeerId: true,
        peer: { name: 'gw-b', id: { kind: 'key-id', keyId: Uint8Array.of(1, 2, 3, 4) }, psk: PSK, protect: ['198.18.2.0/24'] } },
      r: { localId: { kind: 'key-id', keyId: Uint8Array.of(1, 2, 3, 4) },
        peers: [{ name: 'gw-a', id: { kind: 'ipv4', address: '192.0.2.1' }, psk: PSK, protect: ['198.18.1.0/24'] }] },
    }, { dh: 31, ike: 'aes256gcm16', esp: 'aes256gcm16' }],
    ['5 IPv6 endpoints, ID_IPV6_ADDR, IPv6 prefixes', v6({}), { dh: 31, ike: 'aes256gcm16', esp: 'aes256gcm16' }],
    ['6 IPv6 with group 19 and AES-128 ESP', v6({ i: { ike: { encryption: ['aes256gcm16'], prf: [5], dhGroups: [19, 31] }, esp: { encryption: ['aes128gcm16'] } } }),
      { dh: 19, ike: 'aes256gcm16', esp: 'aes128gcm16' }],
    ['7 the responder knows several peers; the IDi picks one', {
      r: { peers: [
        { name: 'other', id: { kind: 'fqdn', name: 'c.example' }, psk: Uint8Array.of(9), protect: ['198.18.9.0/24'] },
        { name: 'gw-a', id: { kind: 'fqdn', name: 'A.Example' }, psk: PSK, protect: ['198.18.1.0/24'] },
      ] },
    }, { dh: 31, ike: 'aes256gcm16', esp: 'aes256gcm16' }],
  ];
  for (const [name, opts, want] of cases) {
    const link = pair({ ...opts, seed: name });
    const { ci, cr } = established(link);
    assert.deepEqual([link.sent.initiator.length, link.sent.responder.length], [2, 2], `${name}: four messages`);
    const ei = link.eventsOf('initiator', 'established')[0];
    const er = link.eventsOf('responder', 'established')[0];
    assert.deepEqual([ei.dhGroup, ei.encryption, er.dhGroup, er.encryption], [want.dh, want.ike, want.dh, want.ike], name);
    assert.deepEqual([ei.spiI, ei.spiR], [er.spiI, er.spiR], `${name}: one IKE SA`);
    assert.deepEqual([ei.peer, er.peer], ['gw-b', 'gw-a'], name);
    assert.deepEqual([ei.initialContact, er.initialContact], [false, true], `${name}: INITIAL_CONTACT reaches the responder`);
    assert.deepEqual(ei.nat, { local: false, remote: false }, name);
    assert.equal(ci.algorithm, want.esp, name);
    assertMirrored(ci, cr, name);
    for (const s of [link.initiator, link.responder]) {
      assert.equal(s.drops.total(), 0, `${name}: no drops`);
      assert.equal(s.nextTimeout(link.now), undefined, `${name}: no timer once established`);
      assert.ok(s.lastHeardMs > 0, name);
    }
    assert.deepEqual(link.initiator.childSpis, { inbound: ci.inbound.spi, outbound: ci.outbound.spi }, name);
  }
});

test('session: INVALID_KE_PAYLOAD: the initiator retries once with the group asked for, if it offered it', () => {
  // Case 1: the responder takes only group 19; the initiator offers 31 (KE) and 19.
  const link = pair({ r: { ike: { encryption: ['aes256gcm16'], prf: [5], dhGroups: [19] } } });
  link.start();
  const first = parsed(link.sent.initiator[0]);
  link.run(undefined, 1);
  const answer = parsed(link.sent.responder[0]);
  assert.equal(answer.header.spiR, 0n, 'case 1: the refusal keeps no responder SPI');
  assert.deepEqual(answer.payloads, [{ kind: 'notify', protocol: 0, spi: new Uint8Array(0), notifyType: NOTIFY.INVALID_KE_PAYLOAD, data: u16(19) }], 'case 1: N(INVALID_KE_PAYLOAD, 19)');
  assert.equal(link.responder.state, 'idle', 'case 1: the responder kept nothing');
  link.run(undefined, 1);
  const retry = parsed(link.sent.initiator[1]);
  assert.equal(retry.header.spiI, first.header.spiI, 'case 1: same SPIi');
  const ke = (m: typeof first): number => { const k = m.payloads.find((p) => p.kind === 'ke'); return k?.kind === 'ke' ? k.group : -1; };
  const part = (m: typeof first, kind: string): unknown => m.payloads.find((p) => p.kind === kind);
  assert.deepEqual([ke(first), ke(retry)], [31, 19], 'case 1: KE for 31, then 19');
  assert.deepEqual(part(retry, 'sa'), part(first, 'sa'), 'case 1: the full offer again (§1.2)');
  assert.deepEqual(part(retry, 'nonce'), part(first, 'nonce'), 'case 1: the same Ni');
  link.run();
  assert.deepEqual([link.initiator.state, link.responder.state], ['established', 'established'], 'case 1');
  assert.equal(link.eventsOf('initiator', 'established')[0].dhGroup, 19, 'case 1');
  assert.deepEqual([link.responder.stats.invalidKeSent, link.initiator.stats.invalidKeRetries], [1, 1], 'case 1');

  // Cases 2-5: answers the initiator must not act on (any sender on the path can forge them).
  const ignored: [string, Uint8Array][] = [
    ['2 a group not offered', u16(14)],
    ['3 the group already sent', u16(31)],
    ['4 no group', new Uint8Array(0)],
    ['5 a 3-byte group', Uint8Array.of(0, 19, 0)],
  ];
  for (const [name, data] of ignored) {
    const l = pair({ seed: name });
    l.start();
    const out = l.initiator.handle(forgedInitAnswer(l.initiator.spiI, NOTIFY.INVALID_KE_PAYLOAD, data), l.now);
    assert.equal(out.dropped, 'ignored-invalid-ke', name);
    assert.deepEqual([out.messages.length, l.initiator.state], [0, 'init-sent'], name);
    l.run();
    assert.equal(l.initiator.state, 'established', `${name}: the real answer still gets through`);
  }

  // Case 6: only one retry: a second INVALID_KE_PAYLOAD (for 31, after retrying with 19) is ignored.
  const l = pair({ seed: 'case 6' });
  l.start();
  assert.equal(l.take('initiator', l.initiator.handle(forgedInitAnswer(l.initiator.spiI, NOTIFY.INVALID_KE_PAYLOAD, u16(19)), l.now)).messages.length, 1, 'case 6: retried');
  assert.equal(l.initiator.handle(forgedInitAnswer(l.initiator.spiI, NOTIFY.INVALID_KE_PAYLOAD, u16(31)), l.now).dropped, 'ignored-invalid-ke', 'case 6');
});

test('session: COOKIE round trip; a stateless responder; cookies that do not verify are answered again', () => {
  const jar = new IkeCookieJar();
  let required = true;
  const r = responderOptions('cookie', { cookies: { jar, required: () => required } });
  // Case 1: the round trip.
  const link = new IkeLink(new IkeSession(initiatorOptions('cookie')), new IkeSession(r));
  link.start();
  link.run(undefined, 1);
  const answer = parsed(link.sent.responder[0]);
  assert.equal(answer.header.spiR, 0n, 'case 1: HDR(A, 0)');
  assert.equal(answer.payloads.length, 1, 'case 1');
  const c = answer.payloads[0];
  assert.ok(c.kind === 'notify' && c.notifyType === NOTIFY.COOKIE && c.data.length === 33, 'case 1: N(COOKIE)');
  assert.deepEqual([link.responder.state, link.responder.spiR], ['idle', 0n], 'case 1: no state kept');
  link.run(undefined, 1);
  const again = parsed(link.sent.initiator[1]);
  assert.deepEqual(again.payloads[0], c, 'case 1: the cookie is the first payload of the retry (§2.6)');
  assert.deepEqual(again.payloads.slice(1), parsed(link.sent.initiator[0]).payloads, 'case 1: everything else unchanged');
  link.run();
  assert.deepEqual([link.initiator.state, link.responder.state], ['established', 'established'], 'case 1');
  assert.deepEqual([link.responder.stats.cookiesSent, link.initiator.stats.cookieRounds], [1, 1], 'case 1');

  // Cases 2-4: a retry whose cookie does not verify gets a fresh cookie answer, nothing else.
  const retry = link.sent.initiator[1];
  const tampered = (f: (b: Uint8Array) => void): Uint8Array => { const b = Uint8Array.from(retry); f(b); return b; };
  const cases: [string, Uint8Array][] = [
    ['2 a cookie byte flipped', tampered((b) => { b[40] ^= 1; })],
    ['3 another SPIi', tampered((b) => { b[7] ^= 1; })],
    ['4 no cookie', link.sent.initiator[0]],
  ];
  for (const [name, bytes] of cases) {
    const fresh = new IkeSession(r);
    const out = fresh.handle(bytes, link.now);
    assert.equal(out.messages.length, 1, name);
    const m = parsed(out.messages[0]);
    assert.ok(m.payloads[0].kind === 'notify' && m.payloads[0].notifyType === NOTIFY.COOKIE, `${name}: N(COOKIE)`);
    assert.equal(fresh.state, 'idle', name);
  }
  // Case 5: cookies not required: a request with one is served (the cookie is ignored, §2.6).
  required = false;
  const served = new IkeSession(r).handle(retry, link.now);
  assert.ok(parsed(served.messages[0]).payloads.some((p) => p.kind === 'sa'), 'case 5');

  // Case 6: a rotated jar still takes the cookie handed out just before.
  required = true;
  jar.rotate();
  const rotated = new IkeSession(r).handle(retry, link.now);
  assert.ok(parsed(rotated.messages[0]).payloads.some((p) => p.kind === 'sa'), 'case 6');

  // Case 7: cookies and INVALID_KE_PAYLOAD together: cookie, then group 19, then the SA.
  const both = new IkeLink(new IkeSession(initiatorOptions('both')),
    new IkeSession(responderOptions('both', { cookies: { jar, required: () => true }, ike: { encryption: ['aes256gcm16'], prf: [5], dhGroups: [19] } })));
  established(both);
  const last = parsed(both.sent.initiator[2]);
  assert.ok(last.payloads[0].kind === 'notify' && last.payloads[0].notifyType === NOTIFY.COOKIE, 'case 7: still with the cookie');
  assert.deepEqual([both.responder.stats.cookiesSent, both.responder.stats.invalidKeSent], [1, 1], 'case 7');

  // Case 8: a responder that keeps asking for cookies is followed MAX_COOKIE_ROUNDS (2) times.
  const l = pair({ seed: 'case 8' });
  l.start();
  const spi = l.initiator.spiI;
  const cookieAnswer = forgedInitAnswer(spi, NOTIFY.COOKIE, new Uint8Array(8).fill(1));
  assert.equal(l.initiator.handle(cookieAnswer, l.now).messages.length, 1, 'case 8: round 1');
  assert.equal(l.initiator.handle(cookieAnswer, l.now).messages.length, 1, 'case 8: round 2');
  assert.equal(l.initiator.handle(cookieAnswer, l.now).dropped, 'bad-cookie', 'case 8: round 3 ignored');
  assert.equal(l.initiator.handle(forgedInitAnswer(spi, NOTIFY.COOKIE, new Uint8Array(65)), l.now).dropped, 'bad-cookie', 'case 8: 65 bytes');
});

test('session: authentication failures create no Child SA', () => {
  const cases: [string, PairOptions, { i: string; r: string; rChild: boolean }][] = [
    ['1 wrong PSK', { r: { peers: [{ name: 'gw-a', id: { kind: 'fqdn', name: 'a.example' }, psk: Uint8Array.from(Buffer.from('other')), protect: ['198.18.1.0/24'] }] } },
      { i: 'peer-auth-failed', r: 'auth-failed', rChild: false }],
    ['2 unknown IDi', { i: { localId: { kind: 'fqdn', name: 'x.example' } } }, { i: 'peer-auth-failed', r: 'auth-failed', rChild: false }],
    ['3 IDi of another type with the same octets', { i: { localId: { kind: 'key-id', keyId: Uint8Array.from(Buffer.from('a.example')) } } },
      { i: 'peer-auth-failed', r: 'auth-failed', rChild: false }],
    // The responder authenticates the initiator and commits first (it answers with its Child SA);
    // the initiator then refuses the responder's identity and says so (§2.21.2).
    ['4 the responder is not who the initiator expects', { i: { peer: { name: 'gw-b', id: { kind: 'fqdn', name: 'c.example' }, psk: PSK, protect: ['198.18.2.0/24'] } } },
      { i: 'auth-failed', r: 'peer-auth-failed', rChild: true }],
  ];
  for (const [name, opts, want] of cases) {
    const link = pair({ ...opts, seed: name });
    link.start();
    link.run();
    assert.deepEqual([link.initiator.state, link.responder.state], ['closed', 'closed'], name);
    assert.equal(link.eventsOf('initiator', 'closed')[0]?.reason, want.i, name);
    assert.equal(link.eventsOf('responder', 'closed')[0]?.reason, want.r, name);
    assert.equal(link.eventsOf('initiator', 'child-sa').length, 0, `${name}: no Child SA at the initiator`);
    assert.equal(link.eventsOf('initiator', 'established').length, 0, name);
    const rChild = link.eventsOf('responder', 'child-sa');
    assert.equal(rChild.length > 0, want.rChild, name);
    if (want.rChild) {
      assert.deepEqual(link.eventsOf('responder', 'child-sa-deleted').map((e) => [e.inboundSpi, e.reason]), [[rChild[0].child.inbound.spi, 'ike-closed']],
        `${name}: and deletes it at once`);
    }
    const notified = want.i === 'peer-auth-failed' ? link.eventsOf('initiator', 'closed')[0] : link.eventsOf('responder', 'closed')[0];
    assert.equal(notified.notifyType ?? NOTIFY.AUTHENTICATION_FAILED, NOTIFY.AUTHENTICATION_FAILED, name);
    for (const s of [link.initiator, link.responder]) assert.equal(s.nextTimeout(link.now), undefined, `${name}: no timers left`);
  }
});

test('session: NO_PROPOSAL_CHOSEN fails the attempt after the grace period; a forged one loses to the real answer', () => {
  // Case 1: no common IKE proposal.
  const link = pair({ i: { ike: { encryption: ['aes128gcm16'], prf: [5], dhGroups: [31, 19] } } });
  link.start();
  link.run();
  const answer = parsed(link.sent.responder[0]);
  assert.deepEqual(answer.payloads.map((p) => (p.kind === 'notify' ? p.notifyType : -1)), [NOTIFY.NO_PROPOSAL_CHOSEN], 'case 1');
  assert.deepEqual([link.responder.state, link.responder.stats.noProposalSent], ['idle', 1], 'case 1: stateless');
  assert.equal(link.initiator.state, 'init-sent', 'case 1: not acted on at once (§2.21.1)');
  assert.equal(link.initiator.nextTimeout(link.now), 500, 'case 1');
  link.advance(500);
  assert.deepEqual(link.eventsOf('initiator', 'closed'), [{ type: 'closed', reason: 'no-proposal-chosen', notifyType: NOTIFY.NO_PROPOSAL_CHOSEN }], 'case 1');
  assert.equal(link.sent.initiator.length, 1, 'case 1: no retransmission after the error');

  // Case 2: a forged NO_PROPOSAL_CHOSEN arrives first; the genuine answer still wins.
  const l2 = pair({ seed: 'case 2' });
  l2.start();
  assert.equal(l2.initiator.handle(forgedInitAnswer(l2.initiator.spiI, NOTIFY.NO_PROPOSAL_CHOSEN), l2.now).messages.length, 0, 'case 2');
  established(l2);
  l2.advance(60_000);
  assert.equal(l2.initiator.state, 'established', 'case 2: the pending error is forgotten');

  // Case 3: another error notify (unknown to us) counts the same way.
  const l3 = pair({ seed: 'case 3' });
  l3.start();
  l3.initiator.handle(forgedInitAnswer(l3.initiator.spiI, 12345), l3.now);
  l3.advance(500);
  assert.deepEqual(l3.eventsOf('initiator', 'closed'), [{ type: 'closed', reason: 'peer-error', notifyType: 12345 }], 'case 3');

  // Case 4: no common ESP proposal: the IKE SA is up, the Child SA is refused on both sides.
  const l4 = pair({ seed: 'case 4', i: { esp: { encryption: ['aes256gcm16'] } }, r: { esp: { encryption: ['aes128gcm16'] } } });
  l4.start();
  l4.run();
  assert.deepEqual([l4.initiator.state, l4.responder.state], ['established', 'established'], 'case 4');
  assert.deepEqual(l4.eventsOf('initiator', 'child-sa-failed'), [{ type: 'child-sa-failed', reason: 'refused', notifyType: NOTIFY.NO_PROPOSAL_CHOSEN }], 'case 4');
  assert.deepEqual(l4.eventsOf('responder', 'child-sa-failed'), [{ type: 'child-sa-failed', reason: 'no-proposal', notifyType: NOTIFY.NO_PROPOSAL_CHOSEN }], 'case 4');
  assert.equal(l4.eventsOf('initiator', 'child-sa').length + l4.eventsOf('responder', 'child-sa').length, 0, 'case 4');
});

test('session: traffic selectors are narrowed by the responder and checked by the initiator', () => {
  const peerA = (protect: string[]): IkeResponderOptions['peers'] => [{ name: 'gw-a', id: { kind: 'fqdn', name: 'a.example' }, psk: PSK, protect }];
  const peerB = (protect: string[]): IkeInitiatorOptions['peer'] => ({ name: 'gw-b', id: { kind: 'fqdn', name: 'b.example' }, psk: PSK, protect });
  const cases: [string, PairOptions, { local: string[]; remote: string[] } | 'unacceptable'][] = [
    ['1 same policy on both sides', {}, { local: ['198.18.1.0/24'], remote: ['198.18.2.0/24'] }],
    ['2 the responder narrows both sides', { i: { peer: peerB(['198.18.2.0/23']) }, r: { peers: peerA(['198.18.1.0/25']) } },
      { local: ['198.18.1.0/25'], remote: ['198.18.2.0/24'] }],
    ['3 two prefixes, one in common', { i: { localProtect: ['198.18.1.0/24', '198.18.3.0/24'] }, r: { peers: peerA(['198.18.3.0/24', '198.18.4.0/24']) } },
      { local: ['198.18.3.0/24'], remote: ['198.18.2.0/24'] }],
    ['4 two prefixes both kept', { i: { localProtect: ['198.18.1.0/24', '198.18.3.0/24'] }, r: { peers: peerA(['198.18.0.0/16']) } },
      { local: ['198.18.1.0/24', '198.18.3.0/24'], remote: ['198.18.2.0/24'] }],
    ['5 disjoint: TS_UNACCEPTABLE', { r: { peers: peerA(['198.18.7.0/24']) } }, 'unacceptable'],
  ];
  for (const [name, opts, want] of cases) {
    const link = pair({ ...opts, seed: name });
    if (want === 'unacceptable') {
      link.start();
      link.run();
      assert.equal(link.initiator.state, 'established', name);
      assert.deepEqual(link.eventsOf('initiator', 'child-sa-failed'), [{ type: 'child-sa-failed', reason: 'refused', notifyType: NOTIFY.TS_UNACCEPTABLE }], name);
      assert.deepEqual(link.eventsOf('responder', 'child-sa-failed'), [{ type: 'child-sa-failed', reason: 'ts-unacceptable', notifyType: NOTIFY.TS_UNACCEPTABLE }], name);
      continue;
    }
    const { ci, cr } = established(link);
    assert.deepEqual({ local: ci.localTs.map(formatSelector), remote: ci.remoteTs.map(formatSelector) }, want, name);
    assertMirrored(ci, cr, name);
  }
});

test('session: a retransmitted request gets the identical response; lost messages are retransmitted', () => {
  // Case 1: IKE_SA_INIT twice.
  const l1 = pair({ seed: 'case 1' });
  l1.start();
  const req = l1.sent.initiator[0];
  const r1 = l1.responder.handle(req, l1.now);
  const r2 = l1.responder.handle(req, l1.now);
  assert.equal(hex(r2.messages[0]), hex(r1.messages[0]), 'case 1: same bytes');
  assert.equal(l1.responder.stats.responsesReplayed, 1, 'case 1');
  // Case 2: IKE_AUTH twice (an SK request is replayed only once it authenticates).
  const l2 = pair({ seed: 'case 2' });
  established(l2);
  const auth = l2.sent.initiator[1];
  const a2 = l2.responder.handle(auth, l2.now);
  assert.equal(hex(a2.messages[0]), hex(l2.sent.responder[1]), 'case 2: same bytes');
  assert.deepEqual(a2.events, [], 'case 2: nothing happens again');
  // Case 3: an INFORMATIONAL (DPD) twice.
  l2.take('initiator', l2.initiator.sendDpd(l2.now));
  l2.run();
  const dpd = l2.sent.initiator[2];
  assert.equal(hex(l2.responder.handle(dpd, l2.now).messages[0]), hex(l2.sent.responder[2]), 'case 3: same bytes');
  assert.equal(l2.responder.stats.responsesReplayed, 2, 'case 3');
  // Case 4: message ID 0 again, but another IKE_SA_INIT (another nonce): not a retransmission.
  const other = pair({ seed: 'case 4 other' });
  other.start();
  const forged = Uint8Array.from(other.sent.initiator[0]);
  forged.set(req.subarray(0, 8), 0); // same SPIi as l1's request
  assert.equal(l1.responder.handle(forged, l1.now).dropped, 'bad-retransmit', 'case 4');
  // Case 5: the IKE_AUTH response is lost; the timer resends the request byte for byte and the
  // responder replays its answer.
  const l5 = pair({ seed: 'case 5' });
  l5.start();
  l5.run((d) => (d.seq === 3 ? undefined : d.bytes));
  assert.equal(l5.initiator.state, 'auth-sent', 'case 5: response lost');
  assert.equal(l5.initiator.nextTimeout(l5.now), 500, 'case 5');
  l5.advance(500);
  assert.equal(hex(l5.sent.initiator[2]), hex(l5.sent.initiator[1]), 'case 5: the same request');
  l5.run();
  assert.deepEqual([l5.initiator.state, l5.initiator.stats.retransmits, l5.responder.stats.responsesReplayed], ['established', 1, 1], 'case 5');
  assert.equal(hex(l5.sent.responder[2]), hex(l5.sent.responder[1]), 'case 5: the same response');
  // Case 6: the IKE_SA_INIT request is lost; the timer resends it.
  const l6 = pair({ seed: 'case 6' });
  l6.start();
  l6.run(() => undefined);
  l6.advance(500);
  l6.run();
  assert.equal(l6.initiator.state, 'established', 'case 6');
});

test('session: duplicate, out-of-window, unauthenticated and misdirected messages are dropped and change nothing', () => {
  const link = pair({ seed: 'drops' });
  established(link);
  link.take('initiator', link.initiator.sendDpd(link.now));
  link.run();
  const [i1, i2, iDpd] = link.sent.initiator;
  const [, r2, rDpd] = link.sent.responder;
  const edit = (b: Uint8Array, f: (c: Uint8Array) => void): Uint8Array => { const c = Uint8Array.from(b); f(c); return c; };
  const withId = (b: Uint8Array, id: number): Uint8Array => edit(b, (c) => new DataView(c.buffer).setUint32(IKE_OFFSET_MESSAGE_ID, id));
  const cases: [string, 'initiator' | 'responder', Uint8Array, string][] = [
    ['1 garbage', 'responder', Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 'malformed'],
    ['2 the IKE_AUTH response again', 'initiator', r2, 'unexpected-response'],
    ['3 the DPD response again', 'initiator', rDpd, 'unexpected-response'],
    ['4 a request ahead of the window', 'responder', withId(iDpd, 7), 'msgid-window'],
    ['5 the old IKE_SA_INIT request', 'responder', i1, 'msgid-window'],
    ['6 the IKE_AUTH request (two exchanges ago)', 'responder', i2, 'msgid-window'],
    ['7 another IKE SA (SPIi)', 'responder', edit(iDpd, (c) => { c[0] ^= 0x80; }), 'wrong-spi'],
    ['8 another IKE SA (SPIr)', 'responder', edit(iDpd, (c) => { c[15] ^= 1; }), 'wrong-spi'],
    ['9 the I flag cleared', 'responder', edit(iDpd, (c) => { c[IKE_OFFSET_FLAGS] &= ~FLAG_INITIATOR; }), 'wrong-flags'],
    ['10 the last request with its ICV broken', 'responder', edit(iDpd, (c) => { c[c.length - 1] ^= 1; }), 'sk-auth'],
    ['11 the next request ID with a broken ICV', 'responder', edit(withId(iDpd, 3), (c) => { c[c.length - 1] ^= 1; }), 'sk-auth'],
    ['12 a request of the next ID, replayed bytes (ICV covers the ID)', 'responder', withId(iDpd, 3), 'sk-auth'],
    ['13 an IKE_SA_INIT response to an established initiator', 'initiator', link.sent.responder[0], 'unexpected-response'],
    ['14 a response with a message ID never used', 'initiator', withId(rDpd, 9), 'unexpected-response'],
    ['15 IKE_AUTH again with a new message ID', 'responder', withId(i2, 3), 'unexpected-exchange'],
    ['16 truncated', 'responder', iDpd.subarray(0, iDpd.length - 1), 'malformed'],
  ];
  for (const [name, side, bytes, reason] of cases) {
    const s = link.session(side);
    const before = s.drops.counts[reason as keyof typeof s.drops.counts];
    const out = s.handle(bytes, link.now);
    assert.equal(out.dropped, reason, name);
    assert.deepEqual([out.messages.length, out.events.length, s.state], [0, 0, 'established'], name);
    assert.equal(s.drops.counts[reason as keyof typeof s.drops.counts], before + 1, `${name}: counted`);
  }
  // Nothing was disturbed: the next exchange works in both directions.
  link.take('responder', link.responder.sendDpd(link.now));
  link.take('initiator', link.initiator.sendDpd(link.now));
  link.run();
  assert.equal(link.eventsOf('initiator', 'peer-alive').length, 2);
  assert.equal(link.eventsOf('responder', 'peer-alive').length, 1);
  assert.equal(link.initiator.drops.counts['internal-error'] + link.responder.drops.counts['internal-error'], 0);
});

test('session: DPD (empty INFORMATIONAL) both ways, with message IDs per direction', () => {
  const link = pair({ seed: 'dpd' });
  established(link);
  const cases: ['initiator' | 'responder', number][] = [['initiator', 2], ['responder', 0], ['initiator', 3], ['responder', 1]];
  for (const [i, [side, id]] of cases.entries()) {
    const label = `case ${i + 1} (${side})`;
    const out = link.take(side, link.session(side).sendDpd(link.now));
    assert.equal(out.messages.length, 1, label);
    const m = parsed(out.messages[0]);
    assert.deepEqual([m.header.exchangeType, m.header.messageId, m.header.response, m.header.initiator], [EXCHANGE.INFORMATIONAL, id, false, side === 'initiator'], label);
    assert.equal(m.payloads.length, 1, `${label}: only the SK payload`);
    assert.ok(m.payloads[0].kind === 'sk' && m.payloads[0].innerType === PAYLOAD.NONE, `${label}: empty inside`);
    assert.equal(link.session(side).sendDpd(link.now).refused, 'sendDpd: a liveness check is already pending', label);
    link.run();
    assert.equal(link.eventsOf(side, 'peer-alive').length, Math.floor(i / 2) + 1, label);
  }
  assert.deepEqual([link.initiator.stats.livenessAnswered, link.responder.stats.livenessAnswered], [2, 2]);
  const fresh = pair({ seed: 'dpd fresh' });
  assert.equal(fresh.initiator.sendDpd(fresh.now).refused, 'sendDpd: state idle');
});

test('session: deleting the Child SA (either side, or both at once)', () => {
  const cases: [string, ('initiator' | 'responder')[]][] = [
    ['1 the initiator deletes', ['initiator']],
    ['2 the responder deletes', ['responder']],
    ['3 both at once: the requests cross (§1.4.1)', ['initiator', 'responder']],
  ];
  for (const [name, deleters] of cases) {
    const link = pair({ seed: name });
    const { ci, cr } = established(link);
    for (const side of deleters) link.take(side, link.session(side).deleteChildSa(link.now));
    assert.equal(link.session(deleters[0]).deleteChildSa(link.now).refused, 'deleteChildSa: no Child SA, or its deletion is pending', name);
    link.run();
    const di = link.eventsOf('initiator', 'child-sa-deleted');
    const dr = link.eventsOf('responder', 'child-sa-deleted');
    assert.deepEqual(di.map((e) => [e.inboundSpi, e.outboundSpi]), [[ci.inbound.spi, ci.outbound.spi]], `${name}: initiator, once`);
    assert.deepEqual(dr.map((e) => [e.inboundSpi, e.outboundSpi]), [[cr.inbound.spi, cr.outbound.spi]], `${name}: responder, once`);
    if (deleters.length === 1) {
      const other = deleters[0] === 'initiator' ? 'responder' : 'initiator';
      assert.equal(link.eventsOf(deleters[0], 'child-sa-deleted')[0].reason, 'local', name);
      assert.equal(link.eventsOf(other, 'child-sa-deleted')[0].reason, 'peer', name);
      // The answer carries the other half of the pair (§1.4.1): one Delete payload, decrypted by the receiver.
      assert.ok(parsed(link.sent[other].at(-1) ?? new Uint8Array(0)).payloads[0].kind === 'sk', name);
    }
    assert.deepEqual([link.initiator.childSpis, link.responder.childSpis], [undefined, undefined], name);
    assert.deepEqual([link.initiator.state, link.responder.state], ['established', 'established'], `${name}: the IKE SA stays`);
    assert.equal(link.initiator.drops.total() + link.responder.drops.total(), 0, name);
  }
});

test('session: deleting the IKE SA closes both sides and their Child SA', () => {
  const cases: [string, 'initiator' | 'responder'][] = [['1 the initiator closes', 'initiator'], ['2 the responder closes', 'responder']];
  for (const [name, closer] of cases) {
    const link = pair({ seed: name });
    const { ci, cr } = established(link);
    const other = closer === 'initiator' ? 'responder' : 'initiator';
    link.take(closer, link.session(closer).close(link.now));
    assert.equal(link.session(closer).state, 'deleting', name);
    assert.equal(link.session(closer).sendDpd(link.now).refused, 'sendDpd: state deleting', name);
    link.run();
    assert.deepEqual(link.events[closer].slice(-2), [
      { type: 'child-sa-deleted', inboundSpi: closer === 'initiator' ? ci.inbound.spi : cr.inbound.spi, outboundSpi: closer === 'initiator' ? ci.outbound.spi : cr.outbound.spi, reason: 'ike-closed' },
      { type: 'closed', reason: 'deleted' },
    ], name);
    assert.deepEqual(link.events[other].slice(-1), [{ type: 'closed', reason: 'deleted-by-peer' }], name);
    assert.equal(link.eventsOf(other, 'child-sa-deleted').length, 1, name);
    // A closed peer still answers a retransmission of the Delete, with the same bytes.
    const del = link.sent[closer].at(-1) ?? new Uint8Array(0);
    const replay = link.session(other).handle(del, link.now);
    assert.equal(hex(replay.messages[0]), hex(link.sent[other].at(-1) ?? new Uint8Array(0)), `${name}: replayed`);
    assert.equal(link.session(other).handle(Uint8Array.of(0), link.now).dropped, 'malformed', name);
    assert.equal(link.session(closer).close(link.now).refused, 'close: state closed', name);
  }
  // Case 3: closing before the IKE SA exists just stops.
  const l = pair({ seed: 'case 3' });
  l.start();
  assert.deepEqual(l.initiator.close(l.now).events, [{ type: 'closed', reason: 'deleted' }], 'case 3');
  assert.equal(l.initiator.nextTimeout(l.now), undefined, 'case 3');
});

test('session: retransmission backoff 0.5 s doubling, 5 tries, then timeout; half-open expiry; dead peer', () => {
  // Case 1: nobody answers IKE_SA_INIT.
  const link = pair({ seed: 'timers' });
  link.start();
  link.inFlight = [];
  const sentAt: number[] = [0];
  const t0 = link.now;
  for (let step = 0; step < 40 && link.initiator.state !== 'closed'; step++) {
    const wait = link.initiator.nextTimeout(link.now);
    assert.ok(wait !== undefined && wait > 0, 'case 1: a timer is armed');
    link.advance(wait - 1);
    assert.equal(link.sent.initiator.length, sentAt.length, 'case 1: not before the deadline');
    link.advance(1);
    link.inFlight = [];
    if (link.sent.initiator.length > sentAt.length) sentAt.push(link.now - t0);
  }
  assert.deepEqual(sentAt, [0, 500, 1500, 3500, 7500], 'case 1: five transmissions');
  assert.equal(link.now - t0, 15_500, 'case 1: give up 8 s after the last');
  assert.deepEqual(link.eventsOf('initiator', 'closed'), [{ type: 'closed', reason: 'timeout' }], 'case 1');
  assert.ok(link.sent.initiator.every((m) => hex(m) === hex(link.sent.initiator[0])), 'case 1: the same bytes each time');

  // Case 2: the responder never sees IKE_AUTH: half-open expiry after 30 s (configurable).
  const l2 = pair({ seed: 'case 2', r: { halfOpenTimeoutMs: 2000 } });
  l2.start();
  l2.run((d) => (d.seq >= 2 ? undefined : d.bytes));
  assert.equal(l2.responder.state, 'init-done', 'case 2');
  assert.equal(l2.responder.nextTimeout(l2.now), 2000, 'case 2');
  l2.advance(2000);
  assert.deepEqual(l2.eventsOf('responder', 'closed'), [{ type: 'closed', reason: 'half-open-timeout' }], 'case 2');

  // Case 3: the peer dies after establishment: DPD times out; the Child SA goes with the IKE SA.
  const l3 = pair({ seed: 'case 3', i: { retransmit: { initialMs: 100, tries: 3 } } });
  const { ci } = established(l3);
  l3.take('initiator', l3.initiator.sendDpd(l3.now));
  for (let step = 0; step < 10 && l3.initiator.state !== 'closed'; step++) {
    l3.inFlight = [];
    l3.advance(l3.initiator.nextTimeout(l3.now) ?? 0);
  }
  assert.deepEqual(l3.events.initiator.slice(-2), [
    { type: 'child-sa-deleted', inboundSpi: ci.inbound.spi, outboundSpi: ci.outbound.spi, reason: 'ike-closed' },
    { type: 'closed', reason: 'timeout' },
  ], 'case 3');
  assert.equal(l3.initiator.stats.retransmits, 2, 'case 3: 100 ms, 200 ms, then 400 ms to give up');
});

test('session: NAT detection reports which side is behind a NAT', () => {
  // A thinks it is 192.0.2.1:500; B sees the datagrams come from 203.0.113.7:4500 (a NAT).
  const link = pair({ seed: 'nat', r: { remote: { address: '203.0.113.7', port: 4500 } } });
  established(link);
  assert.deepEqual(link.eventsOf('responder', 'established')[0].nat, { local: false, remote: true }, 'B: the peer is behind a NAT');
  assert.deepEqual(link.eventsOf('initiator', 'established')[0].nat, { local: true, remote: false }, 'A: we are behind a NAT');
  assert.deepEqual(link.initiator.nat, { local: true, remote: false });
});

test('session: API refusals and configs that cannot work', () => {
  const link = pair({ seed: 'api' });
  assert.equal(link.responder.start(link.now).refused, 'start: responder in state idle');
  link.start();
  assert.equal(link.initiator.start(link.now).refused, 'start: initiator in state init-sent');
  assert.equal(link.initiator.deleteChildSa(link.now).refused, 'deleteChildSa: state init-sent');
  assert.equal(link.responder.handle(link.sent.initiator[0].subarray(0, 20), link.now).dropped, 'malformed');

  const isConfig = (e: unknown): boolean => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG';
  const bad: [string, () => unknown][] = [
    ['1 local address', () => new IkeSession(initiatorOptions('x', { local: { address: '192.0.2.300', port: 500 } }))],
    ['2 remote port', () => new IkeSession(initiatorOptions('x', { remote: { address: B.address, port: 70000 } }))],
    ['3 empty PSK', () => new IkeSession(initiatorOptions('x', { peer: { name: 'p', id: { kind: 'fqdn', name: 'b.example' }, psk: new Uint8Array(0), protect: ['198.18.2.0/24'] } }))],
    ['4 prefix with host bits', () => new IkeSession(initiatorOptions('x', { localProtect: ['198.18.1.1/24'] }))],
    ['5 no peers', () => new IkeSession(responderOptions('x', { peers: [] }))],
    ['6 group 14', () => new IkeSession(initiatorOptions('x', { ike: { encryption: ['aes256gcm16'], prf: [5], dhGroups: [14] } }))],
    ['7 zero tries', () => new IkeSession(initiatorOptions('x', { retransmit: { tries: 0 } }))],
    ['8 bad identity', () => new IkeSession(initiatorOptions('x', { localId: { kind: 'ipv4', address: 'a.example' } }))],
    ['9 half-open 0', () => new IkeSession(responderOptions('x', { halfOpenTimeoutMs: 0 }))],
  ];
  for (const [name, f] of bad) assert.throws(f, isConfig, name);
  assert.equal(A.port, 500);
});

test('session: datagrams are views into one receive buffer that is reused at once (nothing aliases it)', () => {
  const rx = new Uint8Array(4096);
  const link = pair({ seed: 'rx buffer' });
  link.start();
  let deliveries = 0;
  for (let step = 0; step < 16 && link.inFlight.length > 0; step++) {
    const d = link.inFlight.shift();
    if (d === undefined) break;
    const off = 3 + step; // a different, non-zero byteOffset each time
    rx.set(d.bytes, off);
    const view = rx.subarray(off, off + d.bytes.length);
    assert.notEqual(view.byteOffset, 0);
    link.take(d.to, link.session(d.to).handle(view, link.now));
    rx.fill(0xa5); // the driver's next recvmsg overwrites it
    deliveries++;
  }
  assert.equal(deliveries, 4);
  const ci = link.eventsOf('initiator', 'child-sa')[0].child;
  const cr = link.eventsOf('responder', 'child-sa')[0].child;
  assertMirrored(ci, cr, 'reused buffer');
  // The stored response is intact too: a retransmitted IKE_AUTH request gets it byte for byte.
  const again = link.responder.handle(Uint8Array.from(link.sent.initiator[1]), link.now);
  assert.equal(hex(again.messages[0]), hex(link.sent.responder[1]), 'replayed intact');
});
