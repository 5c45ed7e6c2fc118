/**
 * sk.ts: the Encrypted payload (SK, RFC 7296 §3.14) with an AEAD: AES-GCM with a 16-byte ICV
 * (ENCR_AES_GCM_16, RFC 5282) and, because it has exactly the same shape, ChaCha20-Poly1305
 * (RFC 7634, whose Appendix B message is this module's byte-exact known answer).
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  <- IKE header (28) before it,
 *   | Next Payload  |C|  RESERVED   |         Payload Length        |     maybe clear payloads too
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  <- AAD ends here
 *   |                Initialization Vector (8 bytes)                |  SK_OFFSET_IV = 4
 *   |                                                               |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  SK_OFFSET_CIPHERTEXT = 12
 *   ~           Inner payloads (encrypted, a payload chain)         ~
 *   +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |               |        Padding (0-255 bytes, encrypted)       |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                                               |  Pad Length   |  (encrypted)
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   ~                      ICV (16 bytes)                           ~
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 *   AAD   = the message from its first byte through the SK generic header (RFC 5282 §5.1), so
 *           the IKE header with its final Length field, and any clear payloads before SK
 *   nonce = salt (4) || IV (8)                       (RFC 5282 §4; RFC 7634 §2)
 *   SK_e  = key || salt: 16+4, 24+4 or 32+4 bytes    (RFC 5282 §7.1: the salt is KEYMAT's last 4 bytes)
 *
 * The Next Payload field of the SK header names the first inner payload. The padding may hold
 * any value (RFC 7296 §3.14); this sealer writes zeros, padLength 0 by default (a block size of
 * one needs none). The opener accepts any Pad Length that fits and never looks at the padding.
 *
 * Keys come in as parameters (SK_ei / SK_er from the key derivation); nothing is derived here.
 * IVs come in too: the caller must never use an IV twice with one key (a counter per key is
 * enough, RFC 5282 §3.1 / RFC 4106 §3.1). The cost per message is one createCipheriv, which
 * is nothing at IKE rates.
 */
import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto';
import type { CipherGCMTypes, KeyObject } from 'node:crypto';
import { ENCR, PAYLOAD, TRANSFORM } from './constants.js';
import {
  GENERIC_HEADER_LEN, IKE_HEADER_LEN, IKE_MAX_PAYLOADS, PAYLOAD_OFFSET_LENGTH, PAYLOAD_OFFSET_NEXT,
  encodePayloadChain, isIkeParseError, parsePayloadChain, payloadChainLength, writeIkeHeader,
} from './message.js';
import type { IkeHeader, IkeParseError, IkeParseReason, ParsedIkeMessage, PayloadChain } from './message.js';
import { keyLengthOf, payloadTypeOf } from './payloads.js';
import type { Payload, Transform } from './payloads.js';

/** SK_IV_LEN is the IV of the AEAD ciphers in the Encrypted payload (8 bytes, RFC 5282 §3.1). */
export const SK_IV_LEN = 8;
/** SK_ICV_LEN is the ICV of ENCR_AES_GCM_16 and ChaCha20-Poly1305. */
export const SK_ICV_LEN = 16;
/** SK_SALT_LEN is the salt at the end of SK_e (RFC 5282 §7.1). */
export const SK_SALT_LEN = 4;
/** SK_PAD_LENGTH_LEN is the Pad Length byte. */
export const SK_PAD_LENGTH_LEN = 1;
/** SK_MAX_PAD is the largest Pad Length. */
export const SK_MAX_PAD = 255;
/** SK_OFFSET_IV is the IV's offset from the SK payload's generic header. */
export const SK_OFFSET_IV = GENERIC_HEADER_LEN;
/** SK_OFFSET_CIPHERTEXT is where the encrypted inner payloads start, from the SK generic header. */
export const SK_OFFSET_CIPHERTEXT = SK_OFFSET_IV + SK_IV_LEN;
/** SK_OVERHEAD is what the Encrypted payload adds to the inner chain, at Pad Length 0. */
export const SK_OVERHEAD = GENERIC_HEADER_LEN + SK_IV_LEN + SK_PAD_LENGTH_LEN + SK_ICV_LEN;
/** SK_MIN_BODY_LEN is the shortest SK body (after the generic header): IV, Pad Length, ICV. */
export const SK_MIN_BODY_LEN = SK_IV_LEN + SK_PAD_LENGTH_LEN + SK_ICV_LEN;

/** SkCipherSpec describes one AEAD usable in the Encrypted payload. */
export interface SkCipherSpec {
  /** cipher is node:crypto's name. */
  readonly cipher: 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  /** keyLength is the cipher key in bytes, without the salt. */
  readonly keyLength: number;
  /** encrId is the ENCR transform ID that negotiates it. */
  readonly encrId: number;
  /** keyLengthBits is the transform's Key Length attribute (none for ChaCha20-Poly1305). */
  readonly keyLengthBits: number | undefined;
}

/** SK_CIPHERS lists the Encrypted payload AEADs, by strongSwan proposal keyword. */
export const SK_CIPHERS = {
  aes128gcm16: { cipher: 'aes-128-gcm', keyLength: 16, encrId: ENCR.AES_GCM_16, keyLengthBits: 128 },
  aes192gcm16: { cipher: 'aes-192-gcm', keyLength: 24, encrId: ENCR.AES_GCM_16, keyLengthBits: 192 },
  aes256gcm16: { cipher: 'aes-256-gcm', keyLength: 32, encrId: ENCR.AES_GCM_16, keyLengthBits: 256 },
  chacha20poly1305: { cipher: 'chacha20-poly1305', keyLength: 32, encrId: ENCR.CHACHA20_POLY1305, keyLengthBits: undefined },
} as const satisfies Record<string, SkCipherSpec>;

/** SkCipherName is a key of SK_CIPHERS. */
export type SkCipherName = keyof typeof SK_CIPHERS;

/** skKeyMaterialLength is the length of SK_ei / SK_er for a cipher: key + 4-byte salt. */
export function skKeyMaterialLength(name: SkCipherName): number {
  return SK_CIPHERS[name].keyLength + SK_SALT_LEN;
}

/**
 * skCipherFor maps a negotiated ENCR transform (ENCR_AES_GCM_16 with Key Length 128/192/256,
 * or ENCR_CHACHA20_POLY1305 without one) to its SK cipher, or undefined if it is not one.
 */
export function skCipherFor(t: Transform): SkCipherName | undefined {
  if (t.type !== TRANSFORM.ENCR) return undefined;
  const bits = keyLengthOf(t);
  for (const [name, spec] of Object.entries(SK_CIPHERS) as [SkCipherName, SkCipherSpec][]) {
    if (spec.encrId === t.id && spec.keyLengthBits === bits) return name;
  }
  return undefined;
}

/**
 * An SkKey is one direction's Encrypted payload key (SK_ei or SK_er): the cipher key as a
 * KeyObject and the salt. Immutable; safe to share. Construct with the key material exactly as
 * the key derivation produced it (key || salt); throws RangeError for the wrong length.
 */
export class SkKey {
  readonly name: SkCipherName;
  readonly #spec: SkCipherSpec;
  readonly #key: KeyObject;
  readonly #salt: Uint8Array;

  constructor(name: SkCipherName, keyMaterial: Uint8Array) {
    const spec: SkCipherSpec | undefined = Object.hasOwn(SK_CIPHERS, name) ? SK_CIPHERS[name] : undefined;
    if (spec === undefined) throw new RangeError(`unknown SK cipher ${String(name)}`);
    if (!(keyMaterial instanceof Uint8Array) || keyMaterial.length !== spec.keyLength + SK_SALT_LEN) {
      throw new RangeError(`${name}: key material must be ${spec.keyLength + SK_SALT_LEN} bytes (key + ${SK_SALT_LEN}-byte salt)`);
    }
    this.name = name;
    this.#spec = spec;
    this.#key = createSecretKey(Buffer.from(keyMaterial.subarray(0, spec.keyLength)));
    this.#salt = Uint8Array.from(keyMaterial.subarray(spec.keyLength));
  }

  /** nonce builds salt || iv (12 bytes). */
  #nonce(iv: Uint8Array): Buffer {
    const n = Buffer.alloc(SK_SALT_LEN + SK_IV_LEN);
    n.set(this.#salt, 0);
    n.set(iv, SK_SALT_LEN);
    return n;
  }

  /** seal encrypts buf[ptOff, +ptLen) in place under (iv, aad) and writes the ICV right after it. */
  seal(iv: Uint8Array, aad: Uint8Array, buf: Uint8Array, ptOff: number, ptLen: number): void {
    const c = createCipheriv(this.#spec.cipher as CipherGCMTypes, this.#key, this.#nonce(iv), { authTagLength: SK_ICV_LEN });
    c.setAAD(aad);
    const ct = c.update(buf.subarray(ptOff, ptOff + ptLen));
    c.final();
    buf.set(ct, ptOff);
    buf.set(c.getAuthTag(), ptOff + ptLen);
  }

  /** open authenticates and decrypts ct (its ICV in tag); the plaintext, or undefined if the ICV fails. */
  open(iv: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Buffer | undefined {
    const d = createDecipheriv(this.#spec.cipher as CipherGCMTypes, this.#key, this.#nonce(iv), { authTagLength: SK_ICV_LEN });
    d.setAAD(aad);
    d.setAuthTag(tag);
    const pt = d.update(ct);
    try {
      d.final(); // throws when the ICV does not verify
    } catch {
      return undefined;
    }
    return pt;
  }
}

/** SealOptions are the optional parts of an SK-protected message. */
export interface SealOptions {
  /** outer are clear payloads before the SK payload (rare; usually none). */
  outer?: readonly Payload[];
  /** padLength is the padding to add (0-255, default 0). */
  padLength?: number;
}

/**
 * sealIkeMessage builds a whole IKE message whose last payload is an SK payload holding the
 * `inner` chain, encrypted under key with the given 8-byte IV, and returns it in a new Buffer.
 * The header's Length is final before the AAD is taken. Throws RangeError for an IV of the
 * wrong length, a bad padLength, or payloads that do not fit the wire.
 */
export function sealIkeMessage(header: IkeHeader, inner: readonly Payload[], key: SkKey, iv: Uint8Array,
  opts: SealOptions = {}): Buffer {
  const outer = opts.outer ?? [];
  const pad = opts.padLength ?? 0;
  if (!(iv instanceof Uint8Array) || iv.length !== SK_IV_LEN) throw new RangeError(`SK IV must be ${SK_IV_LEN} bytes`);
  if (!Number.isInteger(pad) || pad < 0 || pad > SK_MAX_PAD) throw new RangeError(`pad length ${pad} is not 0..${SK_MAX_PAD}`);
  if (inner.length > IKE_MAX_PAYLOADS) throw new RangeError(`${inner.length} inner payloads, more than ${IKE_MAX_PAYLOADS}`);
  for (const p of outer) if (p.kind === 'sk') throw new RangeError('the Encrypted payload must be last');
  const outerLen = payloadChainLength(outer);
  const innerLen = payloadChainLength(inner);
  const ptLen = innerLen + pad + SK_PAD_LENGTH_LEN;
  const skLen = GENERIC_HEADER_LEN + SK_IV_LEN + ptLen + SK_ICV_LEN;
  if (skLen > 0xffff) throw new RangeError(`Encrypted payload of ${skLen} bytes exceeds 65535`);
  const total = IKE_HEADER_LEN + outerLen + skLen;
  const buf = Buffer.alloc(total);
  const first: Payload | undefined = outer[0];
  writeIkeHeader(header, first === undefined ? PAYLOAD.SK : payloadTypeOf(first), total, buf, 0);
  // Clear payloads: the last one's Next Payload must name SK, so the chain is encoded with a
  // placeholder NONE and patched.
  encodePayloadChain(outer, buf, IKE_HEADER_LEN, false);
  if (outer.length > 0) {
    let p = IKE_HEADER_LEN;
    for (let i = 0; i < outer.length - 1; i++) p += buf.readUInt16BE(p + PAYLOAD_OFFSET_LENGTH);
    buf[p + PAYLOAD_OFFSET_NEXT] = PAYLOAD.SK;
  }
  const skOff = IKE_HEADER_LEN + outerLen;
  const innerFirst: Payload | undefined = inner[0];
  buf[skOff + PAYLOAD_OFFSET_NEXT] = innerFirst === undefined ? PAYLOAD.NONE : payloadTypeOf(innerFirst);
  buf[skOff + 1] = 0;
  buf.writeUInt16BE(skLen, skOff + PAYLOAD_OFFSET_LENGTH);
  buf.set(iv, skOff + SK_OFFSET_IV);
  const ptOff = skOff + SK_OFFSET_CIPHERTEXT;
  encodePayloadChain(inner, buf, ptOff, false);
  // Padding is already zero (Buffer.alloc); Pad Length is the plaintext's last byte.
  buf[ptOff + ptLen - 1] = pad;
  key.seal(iv, buf.subarray(0, skOff + GENERIC_HEADER_LEN), buf, ptOff, ptLen);
  return buf;
}

/** SkOpened is the decrypted inside of an SK payload: its chain, parsed. */
export interface SkOpened extends PayloadChain {
  /** innerType is the SK header's Next Payload (the first inner payload's type). */
  innerType: number;
  /** plaintext is the decrypted chain + padding + Pad Length; the payloads are views into it. */
  plaintext: Uint8Array;
}

function skFail(reason: IkeParseReason, detail: string, m: ParsedIkeMessage, payloadType: number = PAYLOAD.SK): IkeParseError {
  return { reason, payloadType, detail, header: m.header };
}

/**
 * openIkeMessage authenticates and decrypts the SK payload of a parsed message and parses the
 * chain inside it. Returns the inner payloads, or an IkeParseError (never throws on any bytes):
 *   'no-sk'          the message has no SK payload
 *   'sk-truncated'   the SK body is shorter than IV + Pad Length + ICV
 *   'sk-auth'        the ICV does not verify: nothing of the message may be trusted or answered
 *   'sk-bad-padding' authentic, but Pad Length is larger than the plaintext
 *   and any parsePayloadChain reason for the inner chain ('nested-sk' for an SK inside,
 *   'unsupported-critical' with the payload type for the UNSUPPORTED_CRITICAL_PAYLOAD answer).
 * Only the header and any clear payloads before SK are available before this succeeds; they
 * are authenticated (AAD) only once it has.
 */
export function openIkeMessage(m: ParsedIkeMessage, key: SkKey): SkOpened | IkeParseError {
  const sk: Payload | undefined = m.payloads[m.payloads.length - 1];
  if (m.skOffset < 0 || sk === undefined || sk.kind !== 'sk') return skFail('no-sk', 'no Encrypted payload', m, 0);
  const bytes = m.bytes;
  const bodyOff = m.skOffset + GENERIC_HEADER_LEN;
  const bodyLen = bytes.length - bodyOff;
  if (bodyLen < SK_MIN_BODY_LEN) return skFail('sk-truncated', `SK body of ${bodyLen} bytes, shorter than ${SK_MIN_BODY_LEN}`, m);
  const iv = bytes.subarray(bodyOff, bodyOff + SK_IV_LEN);
  const ctEnd = bytes.length - SK_ICV_LEN;
  const opened = key.open(iv, bytes.subarray(0, bodyOff), bytes.subarray(bodyOff + SK_IV_LEN, ctEnd), bytes.subarray(ctEnd));
  if (opened === undefined) return skFail('sk-auth', 'ICV did not verify', m);
  const pt = Uint8Array.from(opened); // a plain Uint8Array of its own, like parseIkeMessage's copy
  const padLen = pt[pt.length - 1];
  if (padLen + SK_PAD_LENGTH_LEN > pt.length) return skFail('sk-bad-padding', `Pad Length ${padLen} in a ${pt.length}-byte plaintext`, m);
  const chain = parsePayloadChain(pt, 0, pt.length - SK_PAD_LENGTH_LEN - padLen, sk.innerType, false);
  if (isIkeParseError(chain)) return skFail(chain.reason, `inside SK: ${chain.detail}`, m, chain.payloadType);
  return { ...chain, innerType: sk.innerType, plaintext: pt };
}
