/**
 * proposals.ts: building the SA payload offers and choosing from them (RFC 7296 §2.7, §3.3).
 *
 * espgate offers one proposal per SA, with several transforms of a type where it has a choice
 * (the way strongSwan writes them), in preference order:
 *
 *   IKE SA (IKE_SA_INIT, SPI Size 0):  ENCR_AES_GCM_16/256 [, ENCR_AES_GCM_16/128]
 *                                      PRF_HMAC_SHA2_256
 *                                      DH 31, DH 19            (KE carries the first)
 *   Child SA (IKE_AUTH, SPI Size 4):   ENCR_AES_GCM_16/256, ENCR_AES_GCM_16/128
 *                                      ESN: No ESN
 *
 * No INTEG transform goes with the AEADs (§3.3: "no integrity algorithm being the RECOMMENDED
 * method") and no DH transform in IKE_AUTH (§1.2: its SA payloads cannot carry a group other
 * than NONE).
 *
 * The responder takes the first proposal (the initiator's order) in which every transform type
 * has an acceptable transform, and within a type the first acceptable transform the initiator
 * listed; only what its own config lists is acceptable, so a weaker offer gets no match. A
 * proposal with a transform type it does not know, an INTEG other than NONE, an ESN transform
 * in an IKE proposal, or a wrong SPI size is skipped (§3.3.6). The DH group is settled
 * separately (selectDhGroup): the KE payload's group when the proposal offers it and the config
 * accepts it, else INVALID_KE_PAYLOAD naming the responder's most preferred group that the
 * proposal offers.
 *
 * The initiator checks the answer (checkIkeAnswer / checkEspAnswer): exactly one proposal,
 * numbered like one it sent, of the right protocol, and exactly one transform of each type, each
 * one it offered in that proposal.
 *
 * Pure.
 */
import { readU32 } from '../../packet/bytes.js';
import { AEAD_ALGORITHMS } from '../../esp/aead.js';
import type { AeadName } from '../../esp/aead.js';
import { ENCR, ESN, INTEG, PROTOCOL, TRANSFORM } from '../constants.js';
import { dhGroupById } from '../crypto/dh.js';
import { PRF_HMAC_SHA2_256, prfById } from '../crypto/prf.js';
import type { Prf } from '../crypto/prf.js';
import { keyLengthOf, transform } from '../payloads.js';
import type { Proposal, SaPayload, Transform } from '../payloads.js';
import { SK_CIPHERS, skCipherFor } from '../sk.js';
import type { SkCipherName } from '../sk.js';
import { SPI_MIN } from '../../esp/sa.js';

/** ESP_SPI_LEN is an ESP SPI on the wire (RFC 4303 §2.1). */
export const ESP_SPI_LEN = 4;

/** IkeAlgorithms are the IKE SA transforms one side offers or accepts, each list in preference order. */
export interface IkeAlgorithms {
  /** encryption lists SK ciphers (sk.ts names, e.g. 'aes256gcm16'). */
  readonly encryption: readonly SkCipherName[];
  /** prf lists PRF transform IDs (only PRF_HMAC_SHA2_256 = 5 is implemented). */
  readonly prf: readonly number[];
  /** dhGroups lists DH group IDs (31, 19). The initiator's KE is for the first. */
  readonly dhGroups: readonly number[];
}

/** EspAlgorithms are the Child SA transforms, in preference order. */
export interface EspAlgorithms {
  /** encryption lists ESP AEADs (src/esp/aead.ts names). */
  readonly encryption: readonly AeadName[];
}

/** DEFAULT_IKE_ALGORITHMS is AES-GCM-16/256, PRF_HMAC_SHA2_256, groups 31 then 19. */
export const DEFAULT_IKE_ALGORITHMS: IkeAlgorithms = Object.freeze({
  encryption: Object.freeze(['aes256gcm16'] as const),
  prf: Object.freeze([PRF_HMAC_SHA2_256.id]),
  dhGroups: Object.freeze([31, 19]),
});

/** DEFAULT_ESP_ALGORITHMS is AES-GCM-16 with 256- then 128-bit keys. */
export const DEFAULT_ESP_ALGORITHMS: EspAlgorithms = Object.freeze({
  encryption: Object.freeze(['aes256gcm16', 'aes128gcm16'] as const),
});

/**
 * algorithmsProblem says what is wrong with an algorithm config (an empty list, an
 * unimplemented PRF or group, a duplicate), or undefined when it is usable.
 */
export function algorithmsProblem(ike: IkeAlgorithms, esp: EspAlgorithms): string | undefined {
  const lists: [string, readonly unknown[]][] = [['ike.encryption', ike.encryption], ['ike.prf', ike.prf], ['ike.dhGroups', ike.dhGroups], ['esp.encryption', esp.encryption]];
  for (const [name, l] of lists) {
    if (l.length === 0) return `${name} is empty`;
    if (new Set(l).size !== l.length) return `${name} lists a value twice`;
  }
  for (const e of ike.encryption) if (!Object.hasOwn(SK_CIPHERS, e)) return `ike.encryption: unknown cipher ${String(e)}`;
  for (const p of ike.prf) if (prfById(p) === undefined) return `ike.prf: PRF ${p} is not implemented`;
  for (const g of ike.dhGroups) if (dhGroupById(g) === undefined) return `ike.dhGroups: group ${g} is not implemented`;
  for (const e of esp.encryption) if (!Object.hasOwn(AEAD_ALGORITHMS, e)) return `esp.encryption: unknown AEAD ${String(e)}`;
  return undefined;
}

/** encrTransform is the ENCR transform negotiating an SK cipher or ESP AEAD name. */
function encrTransform(name: SkCipherName): Transform {
  const spec = SK_CIPHERS[name];
  return transform(TRANSFORM.ENCR, spec.encrId, spec.keyLengthBits);
}

/**
 * buildIkeProposal is the IKE_SA_INIT offer: proposal 1, protocol IKE, no SPI; or, with `spi`
 * (8 octets), the offer of an IKE SA rekey in CREATE_CHILD_SA (§1.3.2: the new SA's SPI).
 */
export function buildIkeProposal(alg: IkeAlgorithms, spi: Uint8Array = new Uint8Array(0)): Proposal {
  return {
    num: 1,
    protocol: PROTOCOL.IKE,
    spi: Uint8Array.from(spi),
    transforms: [
      ...alg.encryption.map(encrTransform),
      ...alg.prf.map((id) => transform(TRANSFORM.PRF, id)),
      ...alg.dhGroups.map((id) => transform(TRANSFORM.DH, id)),
    ],
  };
}

/**
 * buildEspProposal is the Child SA offer: proposal 1, protocol ESP, our inbound SPI, No ESN;
 * in a CREATE_CHILD_SA with PFS, `dhGroups` adds the DH transforms (the KE payload's first).
 */
export function buildEspProposal(alg: EspAlgorithms, inboundSpi: number, dhGroups: readonly number[] = []): Proposal {
  return {
    num: 1,
    protocol: PROTOCOL.ESP,
    spi: spiBytes(inboundSpi),
    transforms: [
      ...alg.encryption.map(encrTransform),
      ...dhGroups.map((g) => transform(TRANSFORM.DH, g)),
      transform(TRANSFORM.ESN, ESN.NO_ESN),
    ],
  };
}

/** spiBytes encodes an ESP SPI as its 4 wire bytes. */
export function spiBytes(spi: number): Uint8Array {
  const b = new Uint8Array(ESP_SPI_LEN);
  new DataView(b.buffer).setUint32(0, spi);
  return b;
}

/** IkeChoice is the IKE SA transform set a responder picked (the DH group is chosen afterwards). */
export interface IkeChoice {
  /** proposalNum is the chosen proposal's number, echoed in the answer. */
  readonly proposalNum: number;
  readonly encryption: SkCipherName;
  readonly prf: Prf;
  /** dhGroups are the groups the proposal offers that the responder accepts, in the responder's order. */
  readonly dhGroups: readonly number[];
  /** integNone is true when the proposal listed INTEG NONE (echoed in the answer). */
  readonly integNone: boolean;
}

/** EspChoice is the Child SA transform set chosen by the responder, or checked by the initiator. */
export interface EspChoice {
  readonly proposalNum: number;
  readonly encryption: AeadName;
  /** peerSpi is the SPI in the chosen proposal: the proposer's inbound SPI. */
  readonly peerSpi: number;
  readonly integNone: boolean;
}

/** byType groups a proposal's transforms by Transform Type, keeping their order. */
function byType(p: Proposal): Map<number, Transform[]> {
  const m = new Map<number, Transform[]>();
  for (const t of p.transforms) {
    const l = m.get(t.type);
    if (l === undefined) m.set(t.type, [t]);
    else l.push(t);
  }
  return m;
}

/** integAcceptable says whether the INTEG transforms (if any) allow an AEAD: absent, or NONE among them. */
function integState(ts: readonly Transform[] | undefined): 'absent' | 'none' | 'refused' {
  if (ts === undefined) return 'absent';
  return ts.some((t) => t.id === INTEG.NONE) ? 'none' : 'refused';
}

/** aeadNameOf maps an ENCR transform to an ESP AEAD name (AES-GCM-16 only). */
function aeadNameOf(t: Transform): AeadName | undefined {
  if (t.type !== TRANSFORM.ENCR || t.id !== ENCR.AES_GCM_16) return undefined;
  const bits = keyLengthOf(t);
  for (const name of Object.keys(AEAD_ALGORITHMS) as AeadName[]) {
    if (AEAD_ALGORITHMS[name].keyLength * 8 === bits) return name;
  }
  return undefined;
}

/** first returns the first item of offered (in order) that maps to an accepted value. */
function firstAccepted<T>(offered: readonly Transform[] | undefined, map: (t: Transform) => T | undefined, accepted: readonly T[]): T | undefined {
  for (const t of offered ?? []) {
    const v = map(t);
    if (v !== undefined && accepted.includes(v)) return v;
  }
  return undefined;
}

/** DH_NONE is the DH transform ID meaning no group (§3.3.2). */
const DH_NONE = 0;

const IKE_TYPES: readonly number[] = [TRANSFORM.ENCR, TRANSFORM.PRF, TRANSFORM.INTEG, TRANSFORM.DH];
const ESP_TYPES: readonly number[] = [TRANSFORM.ENCR, TRANSFORM.INTEG, TRANSFORM.DH, TRANSFORM.ESN];

/**
 * selectIkeProposal is the responder's choice in an IKE_SA_INIT request's SA payload, or
 * undefined (NO_PROPOSAL_CHOSEN). spiSize is 0 there and 8 in an IKE SA rekey (§1.3.2).
 */
export function selectIkeProposal(sa: SaPayload, local: IkeAlgorithms, spiSize = 0): IkeChoice | undefined {
  for (const p of sa.proposals) {
    if (p.protocol !== PROTOCOL.IKE || p.spi.length !== spiSize) continue;
    const types = byType(p);
    if ([...types.keys()].some((t) => !IKE_TYPES.includes(t))) continue;
    const integ = integState(types.get(TRANSFORM.INTEG));
    if (integ === 'refused') continue;
    const encryption = firstAccepted(types.get(TRANSFORM.ENCR), skCipherFor, local.encryption);
    const prfId = firstAccepted(types.get(TRANSFORM.PRF), (t) => (t.attributes.length === 0 ? t.id : undefined), local.prf);
    const offeredGroups = (types.get(TRANSFORM.DH) ?? []).filter((t) => t.attributes.length === 0).map((t) => t.id);
    const dhGroups = local.dhGroups.filter((g) => offeredGroups.includes(g));
    const prf = prfId === undefined ? undefined : prfById(prfId);
    if (encryption === undefined || prf === undefined || dhGroups.length === 0) continue;
    return { proposalNum: p.num, encryption, prf, dhGroups, integNone: integ === 'none' };
  }
  return undefined;
}

/**
 * selectDhGroup settles the group of a chosen IKE proposal: { use } when the KE payload's group
 * is acceptable, { ask } with the group to name in INVALID_KE_PAYLOAD otherwise.
 */
export function selectDhGroup(choice: IkeChoice, keGroup: number): { readonly use: number } | { readonly ask: number } {
  if (choice.dhGroups.includes(keGroup)) return { use: keGroup };
  return { ask: choice.dhGroups[0] };
}

/** ikeAnswer is the responder's SA payload proposal for a choice and group: one transform of each type. */
export function ikeAnswer(choice: IkeChoice, dhGroup: number): Proposal {
  const transforms = [encrTransform(choice.encryption), transform(TRANSFORM.PRF, choice.prf.id)];
  if (choice.integNone) transforms.push(transform(TRANSFORM.INTEG, INTEG.NONE));
  transforms.push(transform(TRANSFORM.DH, dhGroup));
  return { num: choice.proposalNum, protocol: PROTOCOL.IKE, spi: new Uint8Array(0), transforms };
}

/**
 * selectEspProposal is the responder's choice in an IKE_AUTH request's SA payload, or undefined
 * (NO_PROPOSAL_CHOSEN). DH transforms are ignored (§1.2: the IKE_AUTH Child SA has no KE); an
 * ESN transform must offer No ESN (none at all counts as No ESN); the SPI must be 4 bytes and
 * not reserved (>= 256, RFC 4303 §2.1).
 */
export function selectEspProposal(sa: SaPayload, local: EspAlgorithms): EspChoice | undefined {
  const c = selectEsp(sa, local, undefined);
  return c === undefined ? undefined : { proposalNum: c.proposalNum, encryption: c.encryption, peerSpi: c.peerSpi, integNone: c.integNone };
}

/** RekeyEspChoice is an EspChoice in CREATE_CHILD_SA: dhGroups empty means no PFS. */
export interface RekeyEspChoice extends EspChoice {
  /** dhGroups are the groups the proposal offers that we accept, in our order (empty: no DH offered). */
  readonly dhGroups: readonly number[];
}

/**
 * selectRekeyEspProposal is the responder's choice in a CREATE_CHILD_SA request's SA payload
 * (§1.3.1, §1.3.3): as selectEspProposal, but a proposal offering DH groups (other than NONE)
 * is taken only if one of them is in acceptedGroups (our IKE groups), and the choice says which.
 */
export function selectRekeyEspProposal(sa: SaPayload, local: EspAlgorithms, acceptedGroups: readonly number[]): RekeyEspChoice | undefined {
  return selectEsp(sa, local, acceptedGroups);
}

function selectEsp(sa: SaPayload, local: EspAlgorithms, acceptedGroups: readonly number[] | undefined): RekeyEspChoice | undefined {
  for (const p of sa.proposals) {
    if (p.protocol !== PROTOCOL.ESP || p.spi.length !== ESP_SPI_LEN) continue;
    const peerSpi = readU32(p.spi, 0);
    if (peerSpi < SPI_MIN) continue;
    const types = byType(p);
    if ([...types.keys()].some((t) => !ESP_TYPES.includes(t))) continue;
    const integ = integState(types.get(TRANSFORM.INTEG));
    if (integ === 'refused') continue;
    const esn = types.get(TRANSFORM.ESN);
    if (esn !== undefined && !esn.some((t) => t.id === ESN.NO_ESN)) continue;
    const encryption = firstAccepted(types.get(TRANSFORM.ENCR), aeadNameOf, local.encryption);
    if (encryption === undefined) continue;
    let dhGroups: number[] = [];
    if (acceptedGroups !== undefined) {
      const offered = (types.get(TRANSFORM.DH) ?? []).filter((t) => t.attributes.length === 0).map((t) => t.id);
      const real = offered.filter((g) => g !== DH_NONE);
      dhGroups = acceptedGroups.filter((g) => real.includes(g));
      // DH offered, none of it acceptable, and NONE not offered either: no match.
      if (real.length > 0 && dhGroups.length === 0 && !offered.includes(DH_NONE)) continue;
    }
    return { proposalNum: p.num, encryption, peerSpi, integNone: integ === 'none', dhGroups };
  }
  return undefined;
}

/**
 * espAnswer is the responder's SA payload proposal: the chosen AEAD, No ESN, our inbound SPI;
 * and the DH group used, when the CREATE_CHILD_SA carried a KE (PFS).
 */
export function espAnswer(choice: EspChoice, inboundSpi: number, dhGroup?: number): Proposal {
  const transforms = [encrTransform(choice.encryption)];
  if (choice.integNone) transforms.push(transform(TRANSFORM.INTEG, INTEG.NONE));
  if (dhGroup !== undefined) transforms.push(transform(TRANSFORM.DH, dhGroup));
  transforms.push(transform(TRANSFORM.ESN, ESN.NO_ESN));
  return { num: choice.proposalNum, protocol: PROTOCOL.ESP, spi: spiBytes(inboundSpi), transforms };
}

/** sameTransform compares type, ID and attributes (Key Length). */
function sameTransform(a: Transform, b: Transform): boolean {
  return a.type === b.type && a.id === b.id && keyLengthOf(a) === keyLengthOf(b) && a.attributes.length === b.attributes.length;
}

/**
 * checkAnswer verifies a responder's SA payload against the offer: one proposal with a number
 * offered, the same protocol, exactly one transform of each required type and at most one of
 * each optional type, each transform offered. Returns the answer's transforms by type.
 */
function checkAnswer(answer: SaPayload, offer: Proposal, required: readonly number[], optional: readonly number[]): Map<number, Transform> | undefined {
  if (answer.proposals.length !== 1) return undefined;
  const p = answer.proposals[0];
  if (p.num !== offer.num || p.protocol !== offer.protocol) return undefined;
  const out = new Map<number, Transform>();
  for (const t of p.transforms) {
    if (out.has(t.type) || (!required.includes(t.type) && !optional.includes(t.type))) return undefined;
    const offered = offer.transforms.some((o) => sameTransform(o, t)) ||
      (t.type === TRANSFORM.INTEG && t.id === INTEG.NONE) || (t.type === TRANSFORM.ESN && t.id === ESN.NO_ESN);
    if (!offered) return undefined;
    out.set(t.type, t);
  }
  for (const r of required) if (!out.has(r)) return undefined;
  return out;
}

/** IkeAnswer is what the initiator learns from a valid IKE SA answer. */
export interface IkeAnswer {
  readonly encryption: SkCipherName;
  readonly prf: Prf;
  readonly dhGroup: number;
}

/**
 * checkIkeAnswer validates the SAr1 payload against our offer; undefined if it is not a valid
 * choice from it. The answer's SPI has the offer's size (0 in IKE_SA_INIT, 8 in an IKE SA rekey,
 * where it is the responder's new SPI: IkeAnswer.spi).
 */
export function checkIkeAnswer(answer: SaPayload, offer: Proposal): IkeAnswer | undefined {
  const t = checkAnswer(answer, offer, [TRANSFORM.ENCR, TRANSFORM.PRF, TRANSFORM.DH], [TRANSFORM.INTEG]);
  if (t === undefined || answer.proposals[0].spi.length !== offer.spi.length) return undefined;
  const encr = t.get(TRANSFORM.ENCR);
  const prfT = t.get(TRANSFORM.PRF);
  const dh = t.get(TRANSFORM.DH);
  if (encr === undefined || prfT === undefined || dh === undefined) return undefined;
  const encryption = skCipherFor(encr);
  const prf = prfById(prfT.id);
  if (encryption === undefined || prf === undefined) return undefined;
  return { encryption, prf, dhGroup: dh.id };
}

/** RekeyEspAnswer is a checked CREATE_CHILD_SA answer: dhGroup is set when the answer has a DH transform. */
export interface RekeyEspAnswer extends EspChoice {
  readonly dhGroup: number | undefined;
}

/**
 * checkRekeyEspAnswer validates a CREATE_CHILD_SA response's SA payload against our offer: as
 * checkEspAnswer, plus at most one DH transform, one we offered.
 */
export function checkRekeyEspAnswer(answer: SaPayload, offer: Proposal): RekeyEspAnswer | undefined {
  const t = checkAnswer(answer, offer, [TRANSFORM.ENCR], [TRANSFORM.INTEG, TRANSFORM.ESN, TRANSFORM.DH]);
  if (t === undefined) return undefined;
  const base = checkEspAnswer(answer, { ...offer, transforms: offer.transforms.filter((x) => x.type !== TRANSFORM.DH) },
    t.has(TRANSFORM.DH));
  if (base === undefined) return undefined;
  const dh = t.get(TRANSFORM.DH);
  return { ...base, dhGroup: dh === undefined || dh.id === DH_NONE ? undefined : dh.id };
}

/** checkEspAnswer validates the SAr2 payload against our offer; undefined if it is not a valid choice from it. */
export function checkEspAnswer(answer: SaPayload, offer: Proposal, allowDh = false): EspChoice | undefined {
  const strip = (sa: SaPayload): SaPayload => ({ kind: 'sa', proposals: sa.proposals.map((p) => ({ ...p, transforms: p.transforms.filter((x) => x.type !== TRANSFORM.DH) })) });
  const t = checkAnswer(allowDh ? strip(answer) : answer, offer, [TRANSFORM.ENCR], [TRANSFORM.INTEG, TRANSFORM.ESN]);
  if (t === undefined) return undefined;
  const p = answer.proposals[0];
  if (p.spi.length !== ESP_SPI_LEN) return undefined;
  const peerSpi = readU32(p.spi, 0);
  const encr = t.get(TRANSFORM.ENCR);
  const encryption = encr === undefined ? undefined : aeadNameOf(encr);
  if (peerSpi < SPI_MIN || encryption === undefined) return undefined;
  return { proposalNum: p.num, encryption, peerSpi, integNone: t.has(TRANSFORM.INTEG) };
}
