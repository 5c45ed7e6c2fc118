import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DH, ENCR, ESN, INTEG, PAYLOAD, PRF, PROTOCOL, TRANSFORM } from '../constants.js';
import { decodePayloadBody, encodePayloadBody, payloadBodyLength, transform } from '../payloads.js';
import type { Proposal, SaPayload, Transform } from '../payloads.js';
import {
  DEFAULT_ESP_ALGORITHMS, DEFAULT_IKE_ALGORITHMS, algorithmsProblem, buildEspProposal, buildIkeProposal, checkEspAnswer,
  checkIkeAnswer, checkRekeyEspAnswer, espAnswer, ikeAnswer, selectDhGroup, selectEspProposal, selectIkeProposal,
  selectRekeyEspProposal,
} from './proposals.js';
import type { IkeAlgorithms } from './proposals.js';

const sa = (...proposals: Proposal[]): SaPayload => ({ kind: 'sa', proposals });
const encr = (bits: number, id: number = ENCR.AES_GCM_16): Transform => transform(TRANSFORM.ENCR, id, bits);
const prf = transform(TRANSFORM.PRF, PRF.HMAC_SHA2_256);
const dh = (g: number): Transform => transform(TRANSFORM.DH, g);
const ike = (num: number, ...transforms: Transform[]): Proposal => ({ num, protocol: PROTOCOL.IKE, spi: new Uint8Array(0), transforms });
const esp = (num: number, spi: number, ...transforms: Transform[]): Proposal =>
  ({ num, protocol: PROTOCOL.ESP, spi: Uint8Array.of(spi >>> 24, (spi >>> 16) & 255, (spi >>> 8) & 255, spi & 255), transforms });
const noEsn = transform(TRANSFORM.ESN, ESN.NO_ESN);

function bodyHex(p: SaPayload): string {
  const b = new Uint8Array(payloadBodyLength(p));
  encodePayloadBody(p, b, 0);
  return Buffer.from(b).toString('hex');
}

test('proposals: the default offers, byte for byte (RFC 7296 §3.3)', () => {
  // Proposal: Last Substruc 0, RESERVED, Length 44, Num 1, Protocol IKE, SPI Size 0, 4 transforms;
  // transforms: ENCR 20 + Key Length 256 (TV 0x800e), PRF 5, DH 31, DH 19; Last Substruc 3 but the last.
  const ikeBody = '0000002c 01010004 0300000c 01000014 800e0100 03000008 02000005 03000008 0400001f 00000008 04000013';
  assert.equal(bodyHex(sa(buildIkeProposal(DEFAULT_IKE_ALGORITHMS))), ikeBody.replace(/ /g, ''));
  // ESP: Protocol 3, SPI Size 4, SPI, ENCR 20/256, ENCR 20/128, ESN 0.
  const espBody = '0000002c 01030403 12345678 0300000c 01000014 800e0100 0300000c 01000014 800e0080 00000008 05000000';
  assert.equal(bodyHex(sa(buildEspProposal(DEFAULT_ESP_ALGORITHMS, 0x12345678))), espBody.replace(/ /g, ''));
  // and the codec reads them back
  const b = Uint8Array.from(Buffer.from(ikeBody.replace(/ /g, ''), 'hex'));
  assert.deepEqual(decodePayloadBody(PAYLOAD.SA, b, 0, b.length), sa(buildIkeProposal(DEFAULT_IKE_ALGORITHMS)));
});

test('proposals: the responder picks the first acceptable IKE proposal, refusing weaker ones', () => {
  const cfg: IkeAlgorithms = { encryption: ['aes256gcm16'], prf: [PRF.HMAC_SHA2_256], dhGroups: [31, 19] };
  const both: IkeAlgorithms = { ...cfg, encryption: ['aes256gcm16', 'aes128gcm16'] };
  const cases: [string, SaPayload, IkeAlgorithms, { num: number; encryption: string; dh: number[]; integNone: boolean } | undefined][] = [
    ['1 default offer', sa(buildIkeProposal(DEFAULT_IKE_ALGORITHMS)), cfg, { num: 1, encryption: 'aes256gcm16', dh: [31, 19], integNone: false }],
    ['2 weaker only', sa(ike(1, encr(128), prf, dh(31))), cfg, undefined],
    ['3 an INTEG we cannot do', sa(ike(1, encr(256), prf, transform(TRANSFORM.INTEG, INTEG.HMAC_SHA2_256_128), dh(31))), cfg, undefined],
    ['4 INTEG NONE', sa(ike(1, encr(256), prf, transform(TRANSFORM.INTEG, INTEG.NONE), dh(31))), cfg, { num: 1, encryption: 'aes256gcm16', dh: [31], integNone: true }],
    ['5 second proposal', sa(ike(1, encr(128, ENCR.AES_CBC), prf, dh(31)), ike(2, encr(256), prf, dh(19))), cfg, { num: 2, encryption: 'aes256gcm16', dh: [19], integNone: false }],
    ['6 unknown transform type', sa(ike(1, encr(256), prf, dh(31), transform(9, 1))), cfg, undefined],
    ['7 ESN in an IKE proposal', sa(ike(1, encr(256), prf, dh(31), noEsn)), cfg, undefined],
    ['8 SPI in a first IKE proposal', sa({ ...ike(1, encr(256), prf, dh(31)), spi: new Uint8Array(8).fill(1) }), cfg, undefined],
    ['9 protocol ESP', sa({ ...ike(1, encr(256), prf, dh(31)), protocol: PROTOCOL.ESP }), cfg, undefined],
    ['10 the initiator\'s ENCR order wins', sa(ike(1, encr(128), encr(256), prf, dh(31))), both, { num: 1, encryption: 'aes128gcm16', dh: [31], integNone: false }],
    ['11 no common group', sa(ike(1, encr(256), prf, dh(DH.MODP_2048))), cfg, undefined],
    ['12 no common PRF', sa(ike(1, encr(256), transform(TRANSFORM.PRF, PRF.HMAC_SHA1), dh(31))), cfg, undefined],
    ['13 groups in the responder\'s order', sa(ike(1, encr(256), prf, dh(19), dh(31))), cfg, { num: 1, encryption: 'aes256gcm16', dh: [31, 19], integNone: false }],
  ];
  for (const [name, offer, local, want] of cases) {
    const c = selectIkeProposal(offer, local);
    assert.deepEqual(c === undefined ? undefined : { num: c.proposalNum, encryption: c.encryption, dh: [...c.dhGroups], integNone: c.integNone }, want, name);
    if (c !== undefined) {
      // The answer is one transform of each type, and the initiator accepts it.
      const answer = ikeAnswer(c, c.dhGroups[0]);
      const offered = offer.proposals.find((p) => p.num === c.proposalNum);
      assert.ok(offered !== undefined);
      assert.deepEqual(checkIkeAnswer(sa(answer), offered), { encryption: c.encryption, prf: c.prf, dhGroup: c.dhGroups[0] }, name);
    }
  }
});

test('proposals: the DH group is the KE\'s when acceptable, else INVALID_KE_PAYLOAD names ours', () => {
  const c = selectIkeProposal(sa(buildIkeProposal(DEFAULT_IKE_ALGORITHMS)), { ...DEFAULT_IKE_ALGORITHMS, dhGroups: [19] });
  assert.ok(c !== undefined);
  const cases: [number, { use: number } | { ask: number }][] = [[19, { use: 19 }], [31, { ask: 19 }], [14, { ask: 19 }]];
  for (const [i, [ke, want]] of cases.entries()) assert.deepEqual(selectDhGroup(c, ke), want, `case ${i + 1}: KE ${ke}`);
});

test('proposals: the initiator refuses any IKE answer that is not a choice from its offer', () => {
  const offer = buildIkeProposal({ ...DEFAULT_IKE_ALGORITHMS, encryption: ['aes256gcm16', 'aes128gcm16'] });
  const cases: [string, SaPayload, boolean][] = [
    ['1 valid', sa(ike(1, encr(256), prf, dh(31))), true],
    ['2 valid, 128, INTEG NONE', sa(ike(1, encr(128), prf, transform(TRANSFORM.INTEG, INTEG.NONE), dh(19))), true],
    ['3 two proposals', sa(ike(1, encr(256), prf, dh(31)), ike(1, encr(256), prf, dh(31))), false],
    ['4 proposal number not offered', sa(ike(2, encr(256), prf, dh(31))), false],
    ['5 key length not offered', sa(ike(1, encr(192), prf, dh(31))), false],
    ['6 PRF not offered', sa(ike(1, encr(256), transform(TRANSFORM.PRF, PRF.HMAC_SHA2_512), dh(31))), false],
    ['7 two ENCR', sa(ike(1, encr(256), encr(128), prf, dh(31))), false],
    ['8 no DH', sa(ike(1, encr(256), prf)), false],
    ['9 group not offered', sa(ike(1, encr(256), prf, dh(DH.ECP_384))), false],
    ['10 an SPI', sa({ ...ike(1, encr(256), prf, dh(31)), spi: new Uint8Array(8) }), false],
    ['11 an ESN transform', sa(ike(1, encr(256), prf, dh(31), noEsn)), false],
    ['12 protocol ESP', sa({ ...ike(1, encr(256), prf, dh(31)), protocol: PROTOCOL.ESP }), false],
  ];
  for (const [name, answer, ok] of cases) assert.equal(checkIkeAnswer(answer, offer) !== undefined, ok, name);
});

test('proposals: ESP selection and answer checks', () => {
  const cases: [string, SaPayload, { num: number; encryption: string; peerSpi: number } | undefined][] = [
    ['1 default offer', sa(buildEspProposal(DEFAULT_ESP_ALGORITHMS, 0x1000)), { num: 1, encryption: 'aes256gcm16', peerSpi: 0x1000 }],
    ['2 reserved SPI', sa(esp(1, 255, encr(256), noEsn)), undefined],
    ['3 ESN only', sa(esp(1, 0x1000, encr(256), transform(TRANSFORM.ESN, ESN.ESN))), undefined],
    ['4 no ESN transform counts as No ESN', sa(esp(1, 0x1000, encr(128))), { num: 1, encryption: 'aes128gcm16', peerSpi: 0x1000 }],
    ['5 a DH transform is ignored (IKE_AUTH, §1.2)', sa(esp(1, 0x1000, encr(256), dh(31), noEsn)), { num: 1, encryption: 'aes256gcm16', peerSpi: 0x1000 }],
    ['6 SPI size 8', sa({ ...esp(1, 0x1000, encr(256), noEsn), spi: new Uint8Array(8).fill(1) }), undefined],
    ['7 not GCM', sa(esp(1, 0x1000, encr(256, ENCR.AES_CBC), noEsn)), undefined],
    ['8 PRF in ESP', sa(esp(1, 0x1000, encr(256), prf, noEsn)), undefined],
    ['9 second proposal', sa(esp(1, 0x1000, encr(256, ENCR.AES_CBC)), esp(2, 0x2000, encr(128), noEsn)), { num: 2, encryption: 'aes128gcm16', peerSpi: 0x2000 }],
  ];
  for (const [name, offer, want] of cases) {
    const c = selectEspProposal(offer, DEFAULT_ESP_ALGORITHMS);
    assert.deepEqual(c === undefined ? undefined : { num: c.proposalNum, encryption: c.encryption, peerSpi: c.peerSpi }, want, name);
  }
  const offer = buildEspProposal(DEFAULT_ESP_ALGORITHMS, 0x1000);
  const chosen = selectEspProposal(sa(offer), { encryption: ['aes128gcm16'] });
  assert.ok(chosen !== undefined);
  assert.deepEqual(checkEspAnswer(sa(espAnswer(chosen, 0x2000)), offer), { proposalNum: 1, encryption: 'aes128gcm16', peerSpi: 0x2000, integNone: false });
  const bad: [string, SaPayload][] = [
    ['1 SPI 255', sa(esp(1, 255, encr(256), noEsn))],
    ['2 ESN 1', sa(esp(1, 0x2000, encr(256), transform(TRANSFORM.ESN, ESN.ESN)))],
    ['3 192 not offered', sa(esp(1, 0x2000, encr(192), noEsn))],
    ['4 no ENCR', sa(esp(1, 0x2000, noEsn))],
    ['5 protocol IKE', sa({ ...esp(1, 0x2000, encr(256), noEsn), protocol: PROTOCOL.IKE })],
  ];
  for (const [name, answer] of bad) assert.equal(checkEspAnswer(answer, offer), undefined, name);
});

test('proposals: algorithm configs that cannot work are named', () => {
  const cases: [string, IkeAlgorithms, string | undefined][] = [
    ['1 default', DEFAULT_IKE_ALGORITHMS, undefined],
    ['2 no groups', { ...DEFAULT_IKE_ALGORITHMS, dhGroups: [] }, 'ike.dhGroups is empty'],
    ['3 group 14', { ...DEFAULT_IKE_ALGORITHMS, dhGroups: [14] }, 'ike.dhGroups: group 14 is not implemented'],
    ['4 PRF SHA-1', { ...DEFAULT_IKE_ALGORITHMS, prf: [PRF.HMAC_SHA1] }, 'ike.prf: PRF 2 is not implemented'],
    ['5 twice', { ...DEFAULT_IKE_ALGORITHMS, dhGroups: [31, 31] }, 'ike.dhGroups lists a value twice'],
  ];
  for (const [name, alg, want] of cases) assert.equal(algorithmsProblem(alg, DEFAULT_ESP_ALGORITHMS), want, name);
  assert.equal(algorithmsProblem(DEFAULT_IKE_ALGORITHMS, { encryption: [] }), 'esp.encryption is empty');
});

test('proposals: CREATE_CHILD_SA offers (§1.3): ESP with DH for PFS, IKE with an 8-octet SPI', () => {
  // The PFS offer: ENCR 256, ENCR 128, DH 31, No ESN; 4 transforms, length 8 + 4 + 12 + 12 + 8 + 8.
  assert.equal(bodyHex(sa(buildEspProposal(DEFAULT_ESP_ALGORITHMS, 0x12345678, [31]))),
    '00000034 01030404 12345678 0300000c 01000014 800e0100 0300000c 01000014 800e0080 03000008 0400001f 00000008 05000000'.replace(/ /g, ''));
  const spi8 = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
  const ikeOffer = buildIkeProposal(DEFAULT_IKE_ALGORITHMS, spi8);
  assert.deepEqual([...ikeOffer.spi], [...spi8]);
  const cases: [string, SaPayload, readonly number[], { num: number; encryption: string; dh: readonly number[] } | undefined][] = [
    // [name, offer, our groups, choice]
    ['1 PFS with 31', sa(esp(1, 0x1000, encr(256), dh(31), noEsn)), [31, 19], { num: 1, encryption: 'aes256gcm16', dh: [31] }],
    ['2 no DH: no PFS', sa(esp(1, 0x1000, encr(256), noEsn)), [31, 19], { num: 1, encryption: 'aes256gcm16', dh: [] }],
    ['3 DH 14 only: refused', sa(esp(1, 0x1000, encr(256), dh(14), noEsn)), [31, 19], undefined],
    ['4 DH 14 or NONE: taken without PFS', sa(esp(1, 0x1000, encr(256), dh(14), dh(0), noEsn)), [31, 19], { num: 1, encryption: 'aes256gcm16', dh: [] }],
    ['5 our order among those offered', sa(esp(1, 0x1000, encr(128), dh(31), dh(19), noEsn)), [19, 31], { num: 1, encryption: 'aes128gcm16', dh: [19, 31] }],
    ['6 the second proposal when the first has no acceptable group', sa(esp(1, 0x1000, encr(256), dh(14)), esp(2, 0x2000, encr(256), dh(19))), [31, 19],
      { num: 2, encryption: 'aes256gcm16', dh: [19] }],
  ];
  for (const [name, offer, groups, want] of cases) {
    const c = selectRekeyEspProposal(offer, DEFAULT_ESP_ALGORITHMS, groups);
    assert.deepEqual(c === undefined ? undefined : { num: c.proposalNum, encryption: c.encryption, dh: c.dhGroups }, want, name);
  }
  const offer = buildEspProposal(DEFAULT_ESP_ALGORITHMS, 0x1000, [31]);
  const choice = selectRekeyEspProposal(sa(offer), DEFAULT_ESP_ALGORITHMS, [31]);
  assert.ok(choice !== undefined);
  assert.deepEqual(checkRekeyEspAnswer(sa(espAnswer(choice, 0x3000, 31)), offer), { proposalNum: 1, encryption: 'aes256gcm16', peerSpi: 0x3000, integNone: false, dhGroup: 31 });
  assert.deepEqual(checkRekeyEspAnswer(sa(espAnswer(choice, 0x3000)), offer)?.dhGroup, undefined, 'an answer without DH checks (the caller insists on PFS)');
  assert.equal(checkRekeyEspAnswer(sa(espAnswer(choice, 0x3000, 19)), offer), undefined, 'a group not offered');
  assert.equal(checkRekeyEspAnswer(sa(esp(1, 0x3000, encr(256), dh(31), dh(31), noEsn)), offer), undefined, 'two DH transforms');
  // IKE SA rekey: the SPI size must be 8; the answer's SPI has the offer's size.
  assert.equal(selectIkeProposal(sa(ikeOffer), DEFAULT_IKE_ALGORITHMS), undefined, 'SPI size 8 is not an IKE_SA_INIT offer');
  const ic = selectIkeProposal(sa(ikeOffer), DEFAULT_IKE_ALGORITHMS, 8);
  assert.ok(ic !== undefined);
  assert.equal(checkIkeAnswer(sa({ ...ikeAnswer(ic, 31), spi: spi8 }), ikeOffer)?.dhGroup, 31);
  assert.equal(checkIkeAnswer(sa(ikeAnswer(ic, 31)), ikeOffer), undefined, 'an answer without the SPI');
});
