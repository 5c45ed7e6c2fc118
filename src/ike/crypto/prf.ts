/**
 * prf.ts: the IKEv2 pseudorandom function and prf+ (RFC 7296 §2.13), with the one PRF espgate
 * negotiates: PRF_HMAC_SHA2_256 (RFC 4868 §2.1.2, IANA IKEv2 Transform Type 2, ID 5).
 *
 * prf+ stretches a PRF into as many octets as the key schedule needs (§2.13):
 *
 *   prf+ (K, S) = T1 | T2 | T3 | T4 | ...
 *
 *   T1 = prf (K, S | 0x01)
 *   T2 = prf (K, T1 | S | 0x02)
 *   T3 = prf (K, T2 | S | 0x03)
 *   ...                                   the counter is one octet: at most 255 blocks
 *
 * For HMAC-SHA-256 one block is 32 octets, so prf+ yields at most 255 * 32 = 8160 octets; asking
 * for more is a programming error (the key lengths come from the negotiated transforms) and
 * throws RangeError.
 *
 * Everything here is pure: bytes in, bytes out, no state. Outputs are fresh Uint8Arrays (not
 * Buffers, whose slice() would alias), so a caller may keep or wipe any of them.
 */
import { createHmac } from 'node:crypto';

/** PRF_PLUS_MAX_BLOCKS is the most blocks prf+ can produce: its counter is one octet (§2.13). */
export const PRF_PLUS_MAX_BLOCKS = 255;

/**
 * A Prf is one negotiated IKEv2 PRF transform. Instances are stateless; any caller may use one
 * at any time.
 */
export interface Prf {
  /** id is the IANA "Transform Type 2 - Pseudorandom Function" ID. */
  readonly id: number;
  /** name is the IANA name, eg. 'PRF_HMAC_SHA2_256'. */
  readonly name: string;
  /** outputLength is the octets one prf call returns: the block of prf+. */
  readonly outputLength: number;
  /**
   * keyLength is the preferred key length (§2.14): the length of SK_d, SK_pi and SK_pr. For
   * HMAC PRFs it equals the hash output length.
   */
  readonly keyLength: number;
  /**
   * fixedKeyLength is set only for PRFs that take a key of one fixed length (AES-XCBC-PRF-128,
   * AES-CMAC-PRF-128); computeSkeyseed (keys.ts) then builds the Ni | Nr key by §2.14's rule.
   * HMAC PRFs take any key length and leave it undefined.
   */
  readonly fixedKeyLength?: number;
  /** compute returns prf(key, data[0] | data[1] | ...) without concatenating the parts. */
  compute(key: Uint8Array, ...data: readonly Uint8Array[]): Uint8Array;
}

/** PRF_HMAC_SHA2_256_ID is the IANA transform ID of PRF_HMAC_SHA2_256 (RFC 4868). */
export const PRF_HMAC_SHA2_256_ID = 5;

/** hmacPrf builds an HMAC PRF on a node:crypto hash. */
function hmacPrf(id: number, name: string, hash: string, outputLength: number): Prf {
  return {
    id,
    name,
    outputLength,
    keyLength: outputLength,
    compute(key: Uint8Array, ...data: readonly Uint8Array[]): Uint8Array {
      const h = createHmac(hash, key);
      for (const part of data) h.update(part);
      return toPlain(h.digest());
    },
  };
}

/**
 * PRF_HMAC_SHA2_256 is HMAC-SHA-256 as the IKEv2 PRF (RFC 4868 §2.1.2): 32-octet output and
 * preferred key length 32; keys of any length are accepted (HMAC hashes long keys, pads short).
 */
export const PRF_HMAC_SHA2_256: Prf = hmacPrf(PRF_HMAC_SHA2_256_ID, 'PRF_HMAC_SHA2_256', 'sha256', 32);

/** prfById returns the supported PRF with this IANA transform ID, or undefined. */
export function prfById(id: number): Prf | undefined {
  return id === PRF_HMAC_SHA2_256_ID ? PRF_HMAC_SHA2_256 : undefined;
}

/** prfPlusMaxLength is the most octets prf+ can produce with this PRF (255 blocks). */
export function prfPlusMaxLength(prf: Prf): number {
  return PRF_PLUS_MAX_BLOCKS * prf.outputLength;
}

/**
 * prfPlus returns the first `length` octets of prf+(key, seed) (RFC 7296 §2.13). Throws
 * RangeError when length is not an integer in [0, prfPlusMaxLength(prf)]. seed may be any
 * view (its byteOffset is honoured); it is not modified.
 */
export function prfPlus(prf: Prf, key: Uint8Array, seed: Uint8Array, length: number): Uint8Array {
  const max = prfPlusMaxLength(prf);
  if (!Number.isInteger(length) || length < 0 || length > max) {
    throw new RangeError(`prf+ of ${prf.name} yields 0..${max} octets (255 blocks), not ${length}`);
  }
  const out = new Uint8Array(length);
  const counter = new Uint8Array(1);
  let prev: Uint8Array = new Uint8Array(0);
  for (let off = 0, n = 1; off < length; n++) {
    counter[0] = n;
    prev = prf.compute(key, prev, seed, counter);
    const take = Math.min(prev.length, length - off);
    out.set(prev.subarray(0, take), off);
    off += take;
  }
  return out;
}

/** concatBytes returns a fresh Uint8Array holding the parts one after another. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}

/** toPlain copies a Buffer (or any view) into a plain Uint8Array of its own. */
function toPlain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}
