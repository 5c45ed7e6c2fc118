/**
 * auth.ts: the AUTH payload data of Shared Key Message Integrity Code authentication (RFC 7296
 * §2.15, Auth Method 2).
 *
 * Each side signs its own IKE_SA_INIT message, the other side's nonce, and a MAC of its ID:
 *
 *   InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
 *       MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
 *   ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
 *       MACedIDForR = prf(SK_pr, RestOfRespIDPayload)
 *
 *   AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets> )
 *
 *   RealMessage1/2      the whole IKE_SA_INIT request/response as sent, from the first octet
 *                       of the IKE header (after the non-ESP marker when on port 4500)
 *   NonceRData/NonceIData  the PEER's nonce data, without the payload header
 *   RestOfIDPayload     the ID payload without its 4-octet generic header:
 *
 *      0                   1                   2                   3
 *     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *     |   ID Type     |                 RESERVED                      |   <- RestOfIDPayload
 *     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+      starts here
 *     ~                   Identification Data                         ~
 *     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 *   The initiator keys its MACedID with SK_pi, the responder with SK_pr (keys.ts).
 *
 * The PRF is the IKE SA's negotiated PRF. The shared secret is used as the PRF key exactly as
 * configured (octets); the key pad step exists so the secret is never used directly. Verify
 * with verifyPskAuth, which compares in constant time.
 */
import { timingSafeEqual } from 'node:crypto';
import { concatBytes } from './prf.js';
import type { Prf } from './prf.js';

/** AUTH_METHOD_SHARED_KEY_MIC is the Auth Method of PSK authentication (RFC 7296 §3.8). */
export const AUTH_METHOD_SHARED_KEY_MIC = 2;

/** KEY_PAD_FOR_IKEV2 is the 17 ASCII octets "Key Pad for IKEv2", no terminator (§2.15). */
export const KEY_PAD_FOR_IKEV2: Uint8Array = Uint8Array.from(Buffer.from('Key Pad for IKEv2', 'ascii'));

/** SignedOctetsInput is what one side's <SignedOctets> is built from. */
export interface SignedOctetsInput {
  /** realMessage is this side's IKE_SA_INIT message, exactly as sent. */
  readonly realMessage: Uint8Array;
  /** peerNonce is the other side's nonce data (Nr for the initiator, Ni for the responder). */
  readonly peerNonce: Uint8Array;
  /** skP is this side's SK_p: SK_pi for the initiator, SK_pr for the responder. */
  readonly skP: Uint8Array;
  /** restOfIdPayload is this side's ID payload body: ID Type, 3 reserved octets, ID data. */
  readonly restOfIdPayload: Uint8Array;
}

/** PskAuthInput adds the configured pre-shared key to SignedOctetsInput. */
export interface PskAuthInput extends SignedOctetsInput {
  /** sharedSecret is the pre-shared key as octets. */
  readonly sharedSecret: Uint8Array;
}

/** computeMacedId returns MACedIDFor{I,R} = prf(SK_p, RestOfIDPayload). */
export function computeMacedId(prf: Prf, skP: Uint8Array, restOfIdPayload: Uint8Array): Uint8Array {
  return prf.compute(skP, restOfIdPayload);
}

/**
 * buildSignedOctets returns <SignedOctets> = RealMessage | peer's Nonce Data | MACedID. The
 * same octets are signed by the signature methods, so this is kept apart from the PSK step.
 */
export function buildSignedOctets(prf: Prf, input: SignedOctetsInput): Uint8Array {
  return concatBytes(input.realMessage, input.peerNonce, computeMacedId(prf, input.skP, input.restOfIdPayload));
}

/** computePskAuth returns the AUTH payload data prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>). */
export function computePskAuth(prf: Prf, input: PskAuthInput): Uint8Array {
  const padded = prf.compute(input.sharedSecret, KEY_PAD_FOR_IKEV2);
  const auth = prf.compute(padded, buildSignedOctets(prf, input));
  padded.fill(0);
  return auth;
}

/**
 * verifyPskAuth reports whether `received` (the peer's AUTH payload data) is the AUTH the peer
 * should have sent; input describes the PEER's side (its message, our nonce, its SK_p, its ID).
 * The comparison takes the same time wherever the first difference is; a length mismatch
 * returns false at once (the length is public).
 */
export function verifyPskAuth(prf: Prf, input: PskAuthInput, received: Uint8Array): boolean {
  const expected = computePskAuth(prf, input);
  if (received.length !== expected.length) return false;
  return timingSafeEqual(received, expected);
}
