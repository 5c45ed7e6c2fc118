/**
 * dh.ts: the IKEv2 Diffie-Hellman groups espgate offers, on node:crypto.
 *
 *   group 31  Curve25519 (RFC 8031, X25519 of RFC 7748)
 *             KE data   = the 32-octet u-coordinate, little-endian (RFC 7748 §5)
 *             g^ir      = X25519(own scalar, peer u), 32 octets
 *             rejected  = peer data not 32 octets; an all-zero g^ir (RFC 8031 §2: a
 *                         low-order peer point; OpenSSL already refuses to return one)
 *
 *   group 19  256-bit random ECP group, NIST P-256 (RFC 5903)
 *             KE data   = x | y, 32 octets each, big-endian, NO 0x04 prefix (RFC 5903 §7)
 *             g^ir      = the x coordinate of the shared point only, 32 octets (RFC 5903 §7,
 *                         §9: RFC 4753 used x | y, and RFC 5903 changed it)
 *             rejected  = peer data not 64 octets; a coordinate >= p; a point not on the
 *                         curve (RFC 6989 §2.3; the cofactor is 1, so on-curve suffices and
 *                         the point at infinity has no x | y encoding)
 *
 * A private key is an opaque DhPrivateKey of its group: for Curve25519 a node:crypto KeyObject
 * (importing a raw X25519 scalar through PKCS#8 costs OpenSSL 3's decoder ~1-5 ms, so the
 * generate -> compute path never does it; fromPrivate, for known answers, does), for P-256 the
 * raw scalar that createECDH takes. A bad peer value is data, not an exception: compute()
 * returns { ok: false, reason }, the way the data path returns drop reasons. A private key of
 * another group, or a malformed scalar given to fromPrivate, is a programming error and throws
 * RangeError.
 *
 * Groups are stateless; any caller may use one at any time.
 */
import {
  createECDH, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync,
} from 'node:crypto';
import type { ECDH, KeyObject } from 'node:crypto';

/** DH_GROUP_ECP256 is the IANA Transform Type 4 ID of the 256-bit random ECP group (RFC 5903). */
export const DH_GROUP_ECP256 = 19;
/** DH_GROUP_CURVE25519 is the IANA Transform Type 4 ID of Curve25519 (RFC 8031). */
export const DH_GROUP_CURVE25519 = 31;

/** X25519_KE_LEN is the KE data length of group 31: one u-coordinate. */
export const X25519_KE_LEN = 32;
/** ECP256_COORD_LEN is the length of one P-256 coordinate, and of its g^ir. */
export const ECP256_COORD_LEN = 32;
/** ECP256_KE_LEN is the KE data length of group 19: x | y without the SEC1 0x04 prefix. */
export const ECP256_KE_LEN = 2 * ECP256_COORD_LEN;

/** DhFailure names why a peer's KE data gave no shared secret. */
export type DhFailure =
  | 'bad-length'     // KE data of the wrong length for the group
  | 'invalid-point'  // ECP: a coordinate out of range or a point not on the curve
  | 'zero-shared';   // Curve25519: the shared secret would be all zero (low-order peer point)

/** DhResult is the outcome of compute(): the shared secret g^ir, or why there is none. */
export type DhResult =
  | { readonly ok: true; readonly shared: Uint8Array }
  | { readonly ok: false; readonly reason: DhFailure };

/**
 * A DhPrivateKey is one side's ephemeral private key, usable only with the group that made it
 * (groupId). Instances come from DhGroup.generate or DhGroup.fromPrivate; keep one only until
 * g^ir is computed.
 */
export abstract class DhPrivateKey {
  /** groupId is the IANA ID of the group the key belongs to. */
  abstract readonly groupId: number;
}

/** A DhKeyPair is one side's ephemeral key: the KE payload data and the private key. */
export interface DhKeyPair {
  /** public is the KE payload data, in the group's wire form (keLength octets). */
  readonly public: Uint8Array;
  readonly privateKey: DhPrivateKey;
}

/** A DhGroup is one IKEv2 Diffie-Hellman group (Transform Type 4). */
export interface DhGroup {
  /** id is the IANA Transform Type 4 ID, as carried in the KE payload's DH Group Num. */
  readonly id: number;
  readonly name: string;
  /** keLength is the length of the KE payload's Key Exchange Data. */
  readonly keLength: number;
  /** sharedLength is the length of g^ir. */
  readonly sharedLength: number;
  /** generate makes a fresh key pair from the system CSPRNG. */
  generate(): DhKeyPair;
  /**
   * fromPrivate rebuilds the key pair of a known raw private scalar (32 octets: little-endian
   * for Curve25519, big-endian in [1, n-1] for P-256), for known-answer tests. Throws
   * RangeError for an invalid scalar.
   */
  fromPrivate(privateKey: Uint8Array): DhKeyPair;
  /**
   * compute returns g^ir from the own private key and the peer's KE data, or the reason the
   * peer value is refused. Throws RangeError only for a private key of another group.
   */
  compute(privateKey: DhPrivateKey, peerPublic: Uint8Array): DhResult;
}

// ---------------------------------------------------------------------------------------------
// Curve25519 (group 31)

/** X25519_PKCS8_PREFIX is the DER of a PKCS#8 X25519 private key up to its 32 raw octets (RFC 8410). */
const X25519_PKCS8_PREFIX = Uint8Array.from(Buffer.from('302e020100300506032b656e04220420', 'hex'));

/** X25519PrivateKey holds a Curve25519 private key as a node:crypto KeyObject. */
class X25519PrivateKey extends DhPrivateKey {
  readonly groupId = DH_GROUP_CURVE25519;
  constructor(readonly key: KeyObject) { super(); }
}

/** X25519_SPKI_PREFIX is the DER of an X25519 SubjectPublicKeyInfo up to its 32 raw octets (RFC 8410). */
const X25519_SPKI_PREFIX = Uint8Array.from(Buffer.from('302a300506032b656e032100', 'hex'));

/**
 * x25519KeData returns the raw u-coordinate of a public X25519 KeyObject, from its SPKI DER.
 * Not through JWK: Node 20's JWK export of OKP keys allocates JS objects while it holds the
 * key's mutex, and a GC finalising a key-generation job at that moment deadlocked a test run
 * here (gdb: ExportJWKEdKey -> GC -> ~KeyGenJob -> uv_mutex_lock).
 */
function x25519KeData(key: KeyObject): Uint8Array {
  const der = key.export({ format: 'der', type: 'spki' });
  if (der.length !== X25519_SPKI_PREFIX.length + X25519_KE_LEN) throw new Error(`X25519 SPKI of ${der.length} octets`);
  return Uint8Array.from(der.subarray(X25519_SPKI_PREFIX.length));
}

/** DH_CURVE25519 is group 31: X25519 key agreement (RFC 8031, RFC 7748). */
export const DH_CURVE25519: DhGroup = {
  id: DH_GROUP_CURVE25519,
  name: 'curve25519',
  keLength: X25519_KE_LEN,
  sharedLength: X25519_KE_LEN,
  generate(): DhKeyPair {
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    return { public: x25519KeData(publicKey), privateKey: new X25519PrivateKey(privateKey) };
  },
  fromPrivate(privateKey: Uint8Array): DhKeyPair {
    if (privateKey.length !== X25519_KE_LEN) throw new RangeError(`X25519 private key must be 32 octets, not ${privateKey.length}`);
    const key = createPrivateKey({ key: Buffer.from(concat(X25519_PKCS8_PREFIX, privateKey)), format: 'der', type: 'pkcs8' });
    return { public: x25519KeData(createPublicKey(key)), privateKey: new X25519PrivateKey(key) };
  },
  compute(privateKey: DhPrivateKey, peerPublic: Uint8Array): DhResult {
    if (!(privateKey instanceof X25519PrivateKey)) throw new RangeError(`group 31 given a key of group ${privateKey.groupId}`);
    if (peerPublic.length !== X25519_KE_LEN) return { ok: false, reason: 'bad-length' };
    // Every 32-octet string is a valid u-coordinate (RFC 7748 §5: the top bit is masked), so
    // the one way derivation fails is OpenSSL refusing an all-zero result.
    const peer = createPublicKey({ key: Buffer.from(concat(X25519_SPKI_PREFIX, peerPublic)), format: 'der', type: 'spki' });
    let shared: Uint8Array;
    try {
      shared = Uint8Array.from(diffieHellman({ privateKey: privateKey.key, publicKey: peer }));
    } catch {
      return { ok: false, reason: 'zero-shared' };
    }
    if (isAllZero(shared)) return { ok: false, reason: 'zero-shared' };
    return { ok: true, shared };
  },
};

// ---------------------------------------------------------------------------------------------
// 256-bit random ECP group (group 19)

/** P256_P is the field prime p = 2^256 - 2^224 + 2^192 + 2^96 - 1 (RFC 5903 §3.1). */
const P256_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
/** P256_B is the curve coefficient b of y^2 = x^3 - 3x + b (RFC 5903 §3.1). */
const P256_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
/** SEC1_UNCOMPRESSED is the SEC1 uncompressed-point tag node:crypto adds and IKEv2 omits. */
const SEC1_UNCOMPRESSED = 0x04;
/** P256_CURVE is the OpenSSL name of P-256. */
const P256_CURVE = 'prime256v1';

/**
 * isOnP256 reports whether x | y (64 octets, big-endian) is an affine point of P-256: both
 * coordinates below p and y^2 = x^3 - 3x + b (mod p). Variable time; it sees public data only.
 */
export function isOnP256(ke: Uint8Array): boolean {
  if (ke.length !== ECP256_KE_LEN) return false;
  const x = toBigInt(ke.subarray(0, ECP256_COORD_LEN));
  const y = toBigInt(ke.subarray(ECP256_COORD_LEN));
  if (x >= P256_P || y >= P256_P) return false;
  const lhs = (y * y) % P256_P;
  const rhs = (((x * x % P256_P) * x - 3n * x + P256_B) % P256_P + P256_P) % P256_P;
  return lhs === rhs;
}

/** Ecp256PrivateKey holds a P-256 private scalar, 32 octets big-endian, in [1, n-1]. */
class Ecp256PrivateKey extends DhPrivateKey {
  readonly groupId = DH_GROUP_ECP256;
  constructor(readonly scalar: Uint8Array) { super(); }
}

/** p256WithPrivate returns an ECDH object holding the scalar; RangeError if it is not in [1, n-1]. */
function p256WithPrivate(raw: Uint8Array): ECDH {
  if (raw.length !== ECP256_COORD_LEN) throw new RangeError(`P-256 private key must be 32 octets, not ${raw.length}`);
  const ecdh = createECDH(P256_CURVE);
  try {
    ecdh.setPrivateKey(raw);
  } catch (e) {
    throw new RangeError('P-256 private key is not in [1, n-1]', { cause: e });
  }
  return ecdh;
}

/** p256KeData drops the SEC1 0x04 tag from node:crypto's uncompressed point. */
function p256KeData(ecdh: ECDH): Uint8Array {
  const point = ecdh.getPublicKey();
  if (point.length !== 1 + ECP256_KE_LEN || point[0] !== SEC1_UNCOMPRESSED) {
    throw new Error(`unexpected P-256 public point encoding (${point.length} octets)`);
  }
  return Uint8Array.from(point.subarray(1));
}

/** DH_ECP256 is group 19: ECDH on NIST P-256 with RFC 5903's encodings. */
export const DH_ECP256: DhGroup = {
  id: DH_GROUP_ECP256,
  name: 'ecp256',
  keLength: ECP256_KE_LEN,
  sharedLength: ECP256_COORD_LEN,
  generate(): DhKeyPair {
    const ecdh = createECDH(P256_CURVE);
    ecdh.generateKeys();
    // getPrivateKey drops leading zero octets (1 key in 256 is 31 octets long): pad to 32.
    return { public: p256KeData(ecdh), privateKey: new Ecp256PrivateKey(padLeft(ecdh.getPrivateKey(), ECP256_COORD_LEN)) };
  },
  fromPrivate(privateKey: Uint8Array): DhKeyPair {
    const ecdh = p256WithPrivate(privateKey);
    return { public: p256KeData(ecdh), privateKey: new Ecp256PrivateKey(Uint8Array.from(privateKey)) };
  },
  compute(privateKey: DhPrivateKey, peerPublic: Uint8Array): DhResult {
    if (!(privateKey instanceof Ecp256PrivateKey)) throw new RangeError(`group 19 given a key of group ${privateKey.groupId}`);
    if (peerPublic.length !== ECP256_KE_LEN) return { ok: false, reason: 'bad-length' };
    if (!isOnP256(peerPublic)) return { ok: false, reason: 'invalid-point' };
    const ecdh = p256WithPrivate(privateKey.scalar);
    let shared: Uint8Array;
    try {
      // OpenSSL checks the point again; its x coordinate comes back padded to 32 octets.
      shared = Uint8Array.from(ecdh.computeSecret(concat(Uint8Array.of(SEC1_UNCOMPRESSED), peerPublic)));
    } catch {
      return { ok: false, reason: 'invalid-point' };
    }
    if (shared.length !== ECP256_COORD_LEN) return { ok: false, reason: 'invalid-point' };
    return { ok: true, shared };
  },
};

// ---------------------------------------------------------------------------------------------

/** DH_GROUPS lists the supported groups by IANA ID, in espgate's order of preference. */
export const DH_GROUPS: ReadonlyMap<number, DhGroup> = new Map([
  [DH_GROUP_CURVE25519, DH_CURVE25519],
  [DH_GROUP_ECP256, DH_ECP256],
]);

/** dhGroupById returns the supported group with this IANA ID, or undefined. */
export function dhGroupById(id: number): DhGroup | undefined {
  return DH_GROUPS.get(id);
}

/** isAllZero reports whether every octet is zero, without an early exit. */
function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (const v of b) acc |= v;
  return acc === 0;
}

/** toBigInt reads big-endian octets as a non-negative BigInt. */
function toBigInt(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex'));
}

/** padLeft copies b into a fresh array of length n, right-aligned (big-endian zero padding). */
function padLeft(b: Uint8Array, n: number): Uint8Array {
  if (b.length > n) throw new RangeError(`value of ${b.length} octets does not fit ${n}`);
  const out = new Uint8Array(n);
  out.set(b, n - b.length);
  return out;
}

/** concat returns a fresh array holding a then b. */
function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
