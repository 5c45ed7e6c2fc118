import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { hex, offsetView, toHex } from '../../../test/support/vectors/load.js';
import {
  AUTH_METHOD_SHARED_KEY_MIC, KEY_PAD_FOR_IKEV2, buildSignedOctets, computeMacedId, computePskAuth, verifyPskAuth,
} from './auth.js';
import type { PskAuthInput } from './auth.js';
import { DH_CURVE25519 } from './dh.js';
import { computeSkeyseed, deriveIkeSaKeys } from './keys.js';
import { PRF_HMAC_SHA2_256 } from './prf.js';

const PRF = PRF_HMAC_SHA2_256;
const ascii = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'ascii'));

/**
 * PINNED is a fixed AUTH computation. No published IKEv2 PSK AUTH vector was found; the expected
 * values were computed with python3's hmac module from RFC 7296 §2.15's formulas (an independent
 * implementation), and interop-python.test.ts repeats that comparison on random inputs.
 */
const PINNED = {
  sharedSecret: ascii('espgate example psk'),
  // a 28-octet IKE header standing in for RealMessage1 (SPIi, SPIr 0, next payload 33, version
  // 2.0, IKE_SA_INIT, Initiator flag, message ID 0, length 28)
  realMessage: hex('0011223344556677' + '0000000000000000' + '21202208' + '00000000' + '0000001c'),
  peerNonce: Uint8Array.from({ length: 32 }, (_, i) => 0x10 + i),
  skP: Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i),
  // ID_FQDN (2), three reserved octets, "gw.example.org"
  restOfIdPayload: hex('02000000' + Buffer.from('gw.example.org', 'ascii').toString('hex')),
  macedId: 'd453f2da04cba630748e1ef7caf9fecb3310606eb5bfee5d823f7400ed15cdd1',
  auth: '9e33c8d047cd1eaaffa552f026a821615873b277fafd87492422ec14b5527329',
} as const;

test('auth: constants: Auth Method 2 and the 17-octet key pad', () => {
  assert.equal(AUTH_METHOD_SHARED_KEY_MIC, 2);
  assert.equal(toHex(KEY_PAD_FOR_IKEV2), '4b65792050616420666f7220494b457632');
  assert.equal(KEY_PAD_FOR_IKEV2.length, 17);
});

test('auth: pinned PSK AUTH (python3 hmac), from views with non-zero byteOffset', () => {
  const input: PskAuthInput = {
    sharedSecret: offsetView(PINNED.sharedSecret),
    realMessage: offsetView(PINNED.realMessage),
    peerNonce: offsetView(PINNED.peerNonce),
    skP: offsetView(PINNED.skP),
    restOfIdPayload: offsetView(PINNED.restOfIdPayload),
  };
  assert.equal(toHex(computeMacedId(PRF, input.skP, input.restOfIdPayload)), PINNED.macedId);
  assert.equal(toHex(buildSignedOctets(PRF, input)), toHex(PINNED.realMessage) + toHex(PINNED.peerNonce) + PINNED.macedId);
  assert.equal(toHex(computePskAuth(PRF, input)), PINNED.auth);
  assert.equal(verifyPskAuth(PRF, input, offsetView(hex(PINNED.auth))), true);
});

test('auth: AUTH = prf(prf(secret, "Key Pad for IKEv2"), msg | nonce | prf(SK_p, ID)), composed by hand', () => {
  const h = (key: Uint8Array, ...data: Uint8Array[]): Buffer => {
    const m = createHmac('sha256', key);
    for (const d of data) m.update(d);
    return m.digest();
  };
  const cases: PskAuthInput[] = [
    { ...PINNED },
    { ...PINNED, sharedSecret: new Uint8Array(0) },                       // empty secret
    { ...PINNED, sharedSecret: new Uint8Array(200).fill(0x5a) },          // longer than the HMAC block
    { ...PINNED, realMessage: new Uint8Array(1200).fill(1), peerNonce: new Uint8Array(256).fill(2) },
    { ...PINNED, restOfIdPayload: hex('01000000c0000201') },              // ID_IPV4_ADDR 192.0.2.1
  ];
  for (const [i, c] of cases.entries()) {
    const want = h(h(c.sharedSecret, Buffer.from('Key Pad for IKEv2')), c.realMessage, c.peerNonce, h(c.skP, c.restOfIdPayload));
    assert.equal(toHex(computePskAuth(PRF, c)), want.toString('hex'), `case ${i + 1}`);
  }
});

test('auth: verifyPskAuth refuses a changed AUTH, any changed input, and wrong lengths', () => {
  const good = hex(PINNED.auth);
  const flip = (b: Uint8Array, at: number): Uint8Array => { const c = Uint8Array.from(b); c[at] = (c[at] ?? 0) ^ 0x01; return c; };
  const received: [string, Uint8Array][] = [
    ['first bit', flip(good, 0)],
    ['middle octet', flip(good, 16)],
    ['last bit', flip(good, 31)],
    ['truncated to 31', good.subarray(0, 31)],
    ['truncated to 16 (an HMAC-SHA-256-128 ICV length)', good.subarray(0, 16)],
    ['one octet longer', Uint8Array.from([...good, 0])],
    ['empty', new Uint8Array(0)],
  ];
  for (const [i, [name, r]] of received.entries()) {
    assert.equal(verifyPskAuth(PRF, PINNED, r), false, `received case ${i + 1} (${name})`);
  }
  const inputs: [string, PskAuthInput][] = [
    ['shared secret', { ...PINNED, sharedSecret: ascii('espgate example psK') }],
    ['real message', { ...PINNED, realMessage: flip(PINNED.realMessage, 27) }],
    ['peer nonce', { ...PINNED, peerNonce: flip(PINNED.peerNonce, 0) }],
    ['SK_p', { ...PINNED, skP: flip(PINNED.skP, 31) }],
    ['ID payload body', { ...PINNED, restOfIdPayload: flip(PINNED.restOfIdPayload, 1) }],
    ['ID type', { ...PINNED, restOfIdPayload: flip(PINNED.restOfIdPayload, 0) }],
  ];
  for (const [i, [name, input]] of inputs.entries()) {
    assert.equal(verifyPskAuth(PRF, input, good), false, `input case ${i + 1} (${name})`);
  }
});

test('auth: initiator and responder authenticate each other; SK_pi and SK_pr are not interchangeable', () => {
  // A whole PSK flow over the real key schedule: DH, SKEYSEED, the seven keys, both AUTHs.
  const init = DH_CURVE25519.generate();
  const resp = DH_CURVE25519.generate();
  const gi = DH_CURVE25519.compute(init.privateKey, resp.public);
  const gr = DH_CURVE25519.compute(resp.privateKey, init.public);
  if (!gi.ok || !gr.ok) assert.fail('DH refused');
  const ni = new Uint8Array(32).fill(0x4e);
  const nr = new Uint8Array(32).fill(0x52);
  const ids = { ni, nr, spiI: hex('1111111111111111'), spiR: hex('2222222222222222') };
  const kI = deriveIkeSaKeys(PRF, computeSkeyseed(PRF, ids, gi.shared), ids, 36);
  const kR = deriveIkeSaKeys(PRF, computeSkeyseed(PRF, ids, gr.shared), ids, 36);
  const psk = ascii('a pre-shared key for the example');
  const message1 = new Uint8Array(300).fill(0x01);
  const message2 = new Uint8Array(280).fill(0x02);
  const idI = hex('02000000' + Buffer.from('left.example', 'ascii').toString('hex'));
  const idR = hex('02000000' + Buffer.from('right.example', 'ascii').toString('hex'));

  // the initiator signs RealMessage1 | Nr | prf(SK_pi, IDi'); the responder checks it
  const authI = computePskAuth(PRF, { sharedSecret: psk, realMessage: message1, peerNonce: nr, skP: kI.skPi, restOfIdPayload: idI });
  assert.equal(verifyPskAuth(PRF, { sharedSecret: psk, realMessage: message1, peerNonce: nr, skP: kR.skPi, restOfIdPayload: idI }, authI), true);
  // the responder signs RealMessage2 | Ni | prf(SK_pr, IDr'); the initiator checks it
  const authR = computePskAuth(PRF, { sharedSecret: psk, realMessage: message2, peerNonce: ni, skP: kR.skPr, restOfIdPayload: idR });
  assert.equal(verifyPskAuth(PRF, { sharedSecret: psk, realMessage: message2, peerNonce: ni, skP: kI.skPr, restOfIdPayload: idR }, authR), true);

  const wrong: [string, PskAuthInput, Uint8Array][] = [
    ['initiator AUTH checked with SK_pr', { sharedSecret: psk, realMessage: message1, peerNonce: nr, skP: kR.skPr, restOfIdPayload: idI }, authI],
    ['responder AUTH checked with SK_pi', { sharedSecret: psk, realMessage: message2, peerNonce: ni, skP: kI.skPi, restOfIdPayload: idR }, authR],
    ['initiator AUTH with its own nonce', { sharedSecret: psk, realMessage: message1, peerNonce: ni, skP: kR.skPi, restOfIdPayload: idI }, authI],
    ['initiator AUTH over message 2 (reflection)', { sharedSecret: psk, realMessage: message2, peerNonce: nr, skP: kR.skPi, restOfIdPayload: idI }, authI],
    ['another PSK', { sharedSecret: ascii('another key'), realMessage: message1, peerNonce: nr, skP: kR.skPi, restOfIdPayload: idI }, authI],
  ];
  for (const [i, [name, input, auth]] of wrong.entries()) {
    assert.equal(verifyPskAuth(PRF, input, auth), false, `case ${i + 1} (${name})`);
  }
});
