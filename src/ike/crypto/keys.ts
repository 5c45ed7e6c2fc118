/**
 * keys.ts: the IKEv2 key schedule (RFC 7296 §2.14, §2.17, §2.18) for AEAD transforms
 * (AES-GCM with a 16-octet ICV: RFC 5282 for the IKE SA, RFC 4106 for ESP; ChaCha20-Poly1305
 * has the same key || salt shape).
 *
 * IKE SA (§2.14), after IKE_SA_INIT:
 *
 *   SKEYSEED = prf(Ni | Nr, g^ir)
 *   {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
 *
 *   +------+-------+-------+------------+------------+------+------+
 *   | SK_d | SK_ai | SK_ar |   SK_ei    |   SK_er    | SK_pi| SK_pr|
 *   |  32  |   0   |   0   | key | salt | key | salt |  32  |  32  |   octets, PRF_HMAC_SHA2_256
 *   +------+-------+-------+------------+------------+------+------+
 *           AEAD: no integrity keys      key+4 octets (RFC 5282 §7.1)
 *
 *   SK_d, SK_pi and SK_pr have the PRF's preferred key length. SK_ei and SK_er have the
 *   Encrypted payload AEAD's key material length, key + 4-octet salt: 20, 28 or 36 for
 *   AES-GCM-16 with 128, 192 or 256-bit keys (RFC 5282 §7.1), 36 for ChaCha20-Poly1305
 *   (RFC 7634); the caller passes it (src/ike/sk.ts knows it per cipher). Ni and Nr are the
 *   nonce data without payload headers; SPIi and SPIr are the 8-octet SPIs of the IKE header,
 *   initiator first, whoever computes. g^ir comes from dh.ts, already in its wire length.
 *
 * IKE SA rekey (§2.18), in a CREATE_CHILD_SA exchange of the old IKE SA:
 *
 *   SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)       with the OLD IKE SA's PRF
 *   then the seven keys as above with the NEW SA's PRF, the new exchange's Ni and Nr, and
 *   the new SPIs (from the Proposal SPI fields, not the IKE header).
 *
 * Child SA (§2.17):
 *
 *   KEYMAT = prf+(SK_d, Ni | Nr)                 first Child SA: IKE_SA_INIT nonces;
 *                                                 later ones: that CREATE_CHILD_SA's nonces
 *   KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)    CREATE_CHILD_SA with a KE payload (PFS)
 *
 *   +---------------------------+---------------------------+
 *   | initiator -> responder    | responder -> initiator    |   all initiator-to-responder
 *   | key | salt (4)            | key | salt (4)            |   keys first (§2.17); AEAD has no
 *   +---------------------------+---------------------------+   integrity key (RFC 4106 §8.1)
 *
 *   Each half is exactly the key material src/esp/aead.ts takes (key || salt, as `ip xfrm`
 *   does): pass AEAD_ALGORITHMS[name].keyMaterialLength, then createAead(name,
 *   keys.initiatorToResponder).
 *
 * Integrity transforms (non-AEAD ciphers) are not supported: SK_ai and SK_ar are always empty
 * and a Child SA has no integrity key; supporting one means adding its key length to both
 * layouts (integrity keys follow their encryption keys, §2.17). The derivation does not judge
 * its inputs beyond their shape: nonce lengths (§2.10: at least 16 octets, and at least half
 * the PRF key size) are the message layer's to enforce. Key outputs are fresh Uint8Arrays,
 * each its own copy, so a caller may wipe any of them.
 */
import { concatBytes, prfPlus } from './prf.js';
import type { Prf } from './prf.js';

/** IKE_SPI_LEN is the length of an IKE SA SPI (RFC 7296 §3.1). */
export const IKE_SPI_LEN = 8;

/** IkeNonces are the nonce data of one exchange (payload bodies, no headers). */
export interface IkeNonces {
  /** ni is the nonce of the exchange's initiator. */
  readonly ni: Uint8Array;
  /** nr is the nonce of the exchange's responder. */
  readonly nr: Uint8Array;
}

/** IkeSaKeyInput is what prf+ is seeded with for an IKE SA: Ni | Nr | SPIi | SPIr. */
export interface IkeSaKeyInput extends IkeNonces {
  /** spiI is the IKE SA initiator's SPI, 8 octets. */
  readonly spiI: Uint8Array;
  /** spiR is the IKE SA responder's SPI, 8 octets. */
  readonly spiR: Uint8Array;
}

/** IkeSaKeys are the seven keys of an IKE SA (§2.14). With an AEAD, skAi and skAr are empty. */
export interface IkeSaKeys {
  /** skD derives Child SA keys and the next IKE SA's SKEYSEED. */
  readonly skD: Uint8Array;
  readonly skAi: Uint8Array;
  readonly skAr: Uint8Array;
  /** skEi protects messages from the original initiator: key || salt. */
  readonly skEi: Uint8Array;
  /** skEr protects messages from the original responder: key || salt. */
  readonly skEr: Uint8Array;
  /** skPi and skPr key the MACedIDFor* of the AUTH payloads (auth.ts). */
  readonly skPi: Uint8Array;
  readonly skPr: Uint8Array;
}

/** ChildSaKeys are the two ESP key materials of one Child SA, each key || salt. */
export interface ChildSaKeys {
  /** initiatorToResponder keys the SA carrying traffic from the exchange's initiator. */
  readonly initiatorToResponder: Uint8Array;
  /** responderToInitiator keys the SA carrying traffic from the exchange's responder. */
  readonly responderToInitiator: Uint8Array;
}

/**
 * skeyseedKey returns the PRF key of SKEYSEED: Ni | Nr, or, for the PRFs with a fixed key
 * length (AES-XCBC-PRF-128, AES-CMAC-PRF-128), the first half of that length from each nonce
 * (§2.14: "only the first 64 bits of Ni and the first 64 bits of Nr").
 */
function skeyseedKey(prf: Prf, { ni, nr }: IkeNonces): Uint8Array {
  const fixed = prf.fixedKeyLength;
  if (fixed === undefined) return concatBytes(ni, nr);
  const half = fixed / 2;
  if (!Number.isInteger(half) || ni.length < half || nr.length < half) {
    throw new RangeError(`${prf.name}: SKEYSEED needs ${half} octets of each nonce`);
  }
  return concatBytes(ni.subarray(0, half), nr.subarray(0, half));
}

/** computeSkeyseed returns SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA (§2.14). */
export function computeSkeyseed(prf: Prf, nonces: IkeNonces, gir: Uint8Array): Uint8Array {
  return prf.compute(skeyseedKey(prf, nonces), gir);
}

/**
 * computeRekeySkeyseed returns SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) for the IKE SA
 * that a CREATE_CHILD_SA exchange creates (§2.18). oldPrf is the old IKE SA's PRF; the new
 * SA's keys then come from deriveIkeSaKeys with the new SA's PRF.
 */
export function computeRekeySkeyseed(oldPrf: Prf, oldSkD: Uint8Array, girNew: Uint8Array, { ni, nr }: IkeNonces): Uint8Array {
  return oldPrf.compute(oldSkD, girNew, ni, nr);
}

/** checkKeyLength throws RangeError unless n is a positive whole number of octets. */
function checkKeyLength(what: string, n: number): void {
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${what} must be a positive number of octets, not ${n}`);
}

/**
 * ikeSaKeymatLength is how many prf+ octets the seven IKE SA keys take with an AEAD whose
 * SK_ei / SK_er are encrKeyLength octets (key + salt).
 */
export function ikeSaKeymatLength(prf: Prf, encrKeyLength: number): number {
  return 3 * prf.keyLength + 2 * encrKeyLength;
}

/**
 * deriveIkeSaKeys returns {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
 * prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) for an IKE SA whose Encrypted payload uses an AEAD
 * with encrKeyLength octets of key material (key + 4-octet salt, RFC 5282 §7.1) (§2.14).
 * Throws RangeError when an SPI is not 8 octets or encrKeyLength is not positive.
 */
export function deriveIkeSaKeys(prf: Prf, skeyseed: Uint8Array, input: IkeSaKeyInput, encrKeyLength: number): IkeSaKeys {
  if (input.spiI.length !== IKE_SPI_LEN || input.spiR.length !== IKE_SPI_LEN) {
    throw new RangeError(`IKE SPIs are ${IKE_SPI_LEN} octets, not ${input.spiI.length} and ${input.spiR.length}`);
  }
  checkKeyLength('SK_e length', encrKeyLength);
  const seed = concatBytes(input.ni, input.nr, input.spiI, input.spiR);
  const keymat = prfPlus(prf, skeyseed, seed, ikeSaKeymatLength(prf, encrKeyLength));
  const take = cutter(keymat);
  const keys: IkeSaKeys = {
    skD: take(prf.keyLength),
    skAi: take(0),
    skAr: take(0),
    skEi: take(encrKeyLength),
    skEr: take(encrKeyLength),
    skPi: take(prf.keyLength),
    skPr: take(prf.keyLength),
  };
  keymat.fill(0);
  return keys;
}

/**
 * deriveChildSaKeys returns the ESP key material of one Child SA (§2.17) from SK_d and the
 * nonces: KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) when the
 * CREATE_CHILD_SA exchange carried KE payloads (pass girNew). keyMaterialLength is one
 * direction's AEAD key material (AEAD_ALGORITHMS[name].keyMaterialLength: key + 4-octet salt,
 * RFC 4106 §8.1). The initiator-to-responder key comes first. Throws RangeError when
 * keyMaterialLength is not positive.
 */
export function deriveChildSaKeys(prf: Prf, skD: Uint8Array, nonces: IkeNonces, keyMaterialLength: number, girNew?: Uint8Array): ChildSaKeys {
  checkKeyLength('ESP key material length', keyMaterialLength);
  const seed = girNew === undefined ? concatBytes(nonces.ni, nonces.nr) : concatBytes(girNew, nonces.ni, nonces.nr);
  const keymat = prfPlus(prf, skD, seed, 2 * keyMaterialLength);
  const take = cutter(keymat);
  const keys: ChildSaKeys = { initiatorToResponder: take(keyMaterialLength), responderToInitiator: take(keyMaterialLength) };
  keymat.fill(0);
  return keys;
}

/** cutter returns a function that copies the next n octets of keymat, in order. */
function cutter(keymat: Uint8Array): (n: number) => Uint8Array {
  let off = 0;
  return (n: number): Uint8Array => {
    const out = keymat.slice(off, off + n);
    off += n;
    return out;
  };
}
