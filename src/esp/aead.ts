/**
 * aead.ts: the AEAD interface the ESP codec encrypts with, the algorithm registry, and the
 * node:crypto implementation (AES-GCM, RFC 4106).
 *
 * Keying material is the key followed by a 4-byte salt, exactly as Linux takes it:
 *
 *   ip xfrm state add ... aead 'rfc4106(gcm(aes))' 0x<key || salt> 128
 *
 *   aes128gcm16: 16-byte key + 4-byte salt = 20 bytes
 *   aes192gcm16: 24-byte key + 4-byte salt = 28 bytes
 *   aes256gcm16: 32-byte key + 4-byte salt = 36 bytes
 *
 * Per packet (RFC 4106 §4, §5):
 *
 *   nonce = salt (4) || IV (8)                       IV is carried in the packet
 *   AAD   = SPI || seq (32-bit)                      8 bytes
 *         | SPI || seq-high || seq-low               12 bytes with ESN
 *   out   = ciphertext (same length as plaintext) || ICV (16)
 *
 * Adding an algorithm is one entry in AEAD_ALGORITHMS below. ChaCha20-Poly1305 (RFC 7634) has
 * the same shape (32-byte key + 4-byte salt, 8-byte IV, 16-byte ICV, same AAD, block size 1),
 * and node:crypto implements it under the name 'chacha20-poly1305', so it would be:
 *
 *   chacha20poly1305: nodeAead({ name: 'chacha20poly1305', cipher: 'chacha20-poly1305',
 *     keyLength: 32, linuxName: 'rfc7539esp(chacha20,poly1305)', wiresharkName: <its UAT name> }),
 *
 * (Tried: with that entry the RFC 7634 Appendix A packet encrypts byte for byte and sealEsp /
 * openEsp round-trip; a test with that vector should come with the entry.)
 *
 * Measured per-call costs on the project machine (Node 20.20, OpenSSL 3.0.19, AES-NI, 2 vCPUs
 * shared with other jobs, so +-50%; bench/esp-bench.ts measures the whole path):
 *   createCipheriv / createDecipheriv   3.5-4 us, the same with a Buffer key or a KeyObject
 *   setAAD                              ~0.3 us
 *   update                              ~0.5 us at 64 B, 1-4 us at 1400 B
 *   final + getAuthTag                  ~0.8-1.2 us
 *   whole bare seal / open              ~5.3-9 us / ~4.7-7.5 us (64 B), ~8.5-10 us / ~7-9 us (1400 B)
 *   TypedArray.set of update()'s output 36-60 ns (the one unavoidable copy: no output-buffer API)
 *   subarray view                       76-130 ns
 *   failed ICV: final() throws          +3-8 us for the exception, so a forgery costs ~1.5-2x a good packet
 * Preallocated per instance: the key (KeyObject) and the 12-byte nonce with the salt in place;
 * per SA (sa.ts): the AAD buffer. Per packet only the 8 IV bytes are copied into the nonce.
 */
import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto';
import type { CipherGCMTypes, KeyObject } from 'node:crypto';
import { GatewayError } from '../errors.js';
import { AEAD_NONCE_LEN, AEAD_SALT_LEN, ESP_IV_LEN } from './nonce.js';
import { createNativeGcm } from './aead-native.js';

/** AEAD_ICV_LEN is the ICV (tag) length of every registered algorithm: 16 bytes. */
export const AEAD_ICV_LEN = 16;

/**
 * An Aead seals and opens ESP payloads for one SA (one key). Instances keep preallocated
 * scratch buffers (the nonce), so one instance must not be used by two callers at once; the
 * SA that owns it is used sequentially (STYLE principle 5).
 */
export interface Aead {
  /** impl says which implementation this is: node:crypto (the reference) or the native addon. */
  readonly impl: 'node' | 'native';
  /** name is the registry name, eg. 'aes128gcm16'. */
  readonly name: AeadName;
  /** ivLength is the explicit IV length on the wire (8). */
  readonly ivLength: number;
  /** icvLength is the ICV (tag) length appended to the ciphertext (16). */
  readonly icvLength: number;
  /** blockSize is the cipher block size for padding (1 for stream-like AEADs; ESP aligns to max(4, blockSize)). */
  readonly blockSize: number;
  /** keyMaterialLength is the key + salt length this instance was created with. */
  readonly keyMaterialLength: number;
  /**
   * seal encrypts src[srcOff, srcOff+srcLen) under nonce salt || iv[ivOff, ivOff+8) and the
   * given AAD (its whole length), writing the ciphertext at dst[dstOff] followed by the ICV.
   * dst may be src (in place, same offset). Returns srcLen + icvLength. The caller has checked
   * that dst has room. Never throws for well-formed arguments.
   */
  seal(iv: Uint8Array, ivOff: number, aad: Uint8Array,
    src: Uint8Array, srcOff: number, srcLen: number, dst: Uint8Array, dstOff: number): number;
  /**
   * open authenticates and decrypts the ciphertext src[srcOff, srcOff+ctLen) whose ICV follows
   * it at src[srcOff+ctLen, +icvLength). Only if the ICV verifies is the plaintext written at
   * dst[dstOff] (which may be the ciphertext's own place) and true returned; otherwise dst is
   * untouched and it returns false. Never throws for well-formed arguments.
   */
  open(iv: Uint8Array, ivOff: number, aad: Uint8Array,
    src: Uint8Array, srcOff: number, ctLen: number, dst: Uint8Array, dstOff: number): boolean;
}

/** An AeadAlgorithm describes one registered algorithm and creates Aead instances of it. */
export interface AeadAlgorithm {
  readonly name: string;
  /** keyLength is the cipher key length, without the salt. */
  readonly keyLength: number;
  /** keyMaterialLength is keyLength + salt, the length configs and `ip xfrm` use. */
  readonly keyMaterialLength: number;
  readonly ivLength: number;
  readonly icvLength: number;
  readonly blockSize: number;
  /** linuxName is the kernel's algorithm name, for `ip xfrm state ... aead <linuxName> 0x.. 128`. */
  readonly linuxName: string;
  /** wiresharkName is the "Encryption" value of Wireshark's esp_sa UAT, for captures. */
  readonly wiresharkName: string;
  /**
   * create builds an instance; throws GatewayError ERR_ESP_KEY for bad key material. impl
   * 'auto' (the default) takes the native AES-GCM addon when it is built (aead-native.ts) unless
   * the environment says ESPGATE_AEAD=node; 'node' is node:crypto, the reference.
   */
  create(keyMaterial: Uint8Array, impl?: AeadImpl): Aead;
}

/** AeadImpl picks an implementation: node:crypto ('node', the reference) or the native addon. */
export type AeadImpl = 'auto' | 'native' | 'node';

/** defaultAeadImpl is what 'auto' resolves to: 'native' unless ESPGATE_AEAD=node or the addon is missing. */
export function defaultAeadImpl(): 'native' | 'node' {
  return process.env.ESPGATE_AEAD === 'node' ? 'node' : 'native';
}

/** NodeAeadSpec is what nodeAead needs to register a node:crypto AEAD. */
interface NodeAeadSpec {
  readonly name: string;
  readonly cipher: CipherGCMTypes | 'chacha20-poly1305';
  readonly keyLength: number;
  readonly linuxName: string;
  readonly wiresharkName: string;
}

/** nodeAead registers a node:crypto AEAD with the RFC 4106 / RFC 7634 shape. */
function nodeAead(spec: NodeAeadSpec): AeadAlgorithm {
  const alg: AeadAlgorithm = {
    name: spec.name,
    keyLength: spec.keyLength,
    keyMaterialLength: spec.keyLength + AEAD_SALT_LEN,
    ivLength: ESP_IV_LEN,
    icvLength: AEAD_ICV_LEN,
    blockSize: 1,
    linuxName: spec.linuxName,
    wiresharkName: spec.wiresharkName,
    create(keyMaterial: Uint8Array, impl: AeadImpl = 'auto'): Aead {
      checkKeyMaterial(alg, keyMaterial);
      const want = impl === 'auto' ? defaultAeadImpl() : impl;
      if (want === 'native' && spec.cipher !== 'chacha20-poly1305') {
        const a = createNativeGcm(alg.name as AeadName, alg.keyLength, keyMaterial);
        if (a !== undefined) return a;
        if (impl === 'native') throw new GatewayError('ERR_ESP_KEY', `${alg.name}: the native AES-GCM addon is not built ('npm run build:native')`);
      }
      return new NodeAead(alg, spec.cipher, keyMaterial);
    },
  };
  return alg;
}

/**
 * AEAD_ALGORITHMS is the registry. Names follow strongSwan's proposal keywords
 * (aes128gcm16 = AES-GCM, 128-bit key, 16-byte ICV).
 */
export const AEAD_ALGORITHMS = {
  aes128gcm16: nodeAead({
    name: 'aes128gcm16', cipher: 'aes-128-gcm', keyLength: 16,
    linuxName: 'rfc4106(gcm(aes))', wiresharkName: 'AES-GCM with 16 octet ICV [RFC4106]',
  }),
  aes192gcm16: nodeAead({
    name: 'aes192gcm16', cipher: 'aes-192-gcm', keyLength: 24,
    linuxName: 'rfc4106(gcm(aes))', wiresharkName: 'AES-GCM with 16 octet ICV [RFC4106]',
  }),
  aes256gcm16: nodeAead({
    name: 'aes256gcm16', cipher: 'aes-256-gcm', keyLength: 32,
    linuxName: 'rfc4106(gcm(aes))', wiresharkName: 'AES-GCM with 16 octet ICV [RFC4106]',
  }),
} as const satisfies Record<string, AeadAlgorithm>;

/** AeadName is a key of AEAD_ALGORITHMS. */
export type AeadName = keyof typeof AEAD_ALGORITHMS;

/** AEAD_NAMES lists the registered names, for config validation and messages. */
export const AEAD_NAMES = Object.keys(AEAD_ALGORITHMS) as AeadName[];

/** isAeadName reports whether s names a registered algorithm. */
export function isAeadName(s: string): s is AeadName {
  return Object.hasOwn(AEAD_ALGORITHMS, s);
}

/** createAead builds an Aead; throws GatewayError ERR_ESP_KEY for bad key material. */
export function createAead(name: AeadName, keyMaterial: Uint8Array, impl: AeadImpl = 'auto'): Aead {
  return AEAD_ALGORITHMS[name].create(keyMaterial, impl);
}

/**
 * parseKeyMaterialHex parses key material as `ip xfrm` prints it ("0x" + hex, no separators;
 * the 0x is optional). Throws GatewayError ERR_ESP_KEY on anything else. Does not check the
 * length: createAead does, against the algorithm.
 */
export function parseKeyMaterialHex(text: string): Uint8Array {
  const hex = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
    throw new GatewayError('ERR_ESP_KEY', 'key material must be an even number of hex digits, optionally prefixed by 0x');
  }
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** checkKeyMaterial throws GatewayError ERR_ESP_KEY unless keyMaterial fits alg. */
function checkKeyMaterial(alg: AeadAlgorithm, keyMaterial: Uint8Array): void {
  if (!(keyMaterial instanceof Uint8Array)) {
    throw new GatewayError('ERR_ESP_KEY', `${alg.name}: key material must be bytes`);
  }
  if (keyMaterial.length !== alg.keyMaterialLength) {
    throw new GatewayError('ERR_ESP_KEY',
      `${alg.name}: key material must be ${alg.keyMaterialLength} bytes (${alg.keyLength}-byte key + ` +
      `${AEAD_SALT_LEN}-byte salt), got ${keyMaterial.length}`);
  }
}

/** CIPHER_OPTIONS is shared by every createCipheriv call (no per-packet allocation). */
const CIPHER_OPTIONS = { authTagLength: AEAD_ICV_LEN } as const;

/**
 * NodeAead implements Aead with one createCipheriv/createDecipheriv per packet: node:crypto
 * cannot re-key or re-nonce a cipher object, so this is the floor. The key is kept as a
 * KeyObject and the 12-byte nonce buffer is preallocated with the salt in place; per packet
 * only the 8 IV bytes are copied in. node:crypto has no output-buffer API, so update() returns
 * a fresh buffer that is copied into place once (~40 ns at 1400 bytes).
 */
class NodeAead implements Aead {
  readonly impl = 'node' as const;
  readonly name: AeadName;
  readonly ivLength = ESP_IV_LEN;
  readonly icvLength = AEAD_ICV_LEN;
  readonly blockSize = 1;
  readonly keyMaterialLength: number;
  readonly #cipher: NodeAeadSpec['cipher'];
  readonly #key: KeyObject;
  readonly #nonce: Buffer;

  constructor(alg: AeadAlgorithm, cipher: NodeAeadSpec['cipher'], keyMaterial: Uint8Array) {
    this.name = alg.name as AeadName;
    this.keyMaterialLength = alg.keyMaterialLength;
    this.#cipher = cipher;
    this.#key = createSecretKey(Buffer.from(keyMaterial.subarray(0, alg.keyLength)));
    this.#nonce = Buffer.alloc(AEAD_NONCE_LEN);
    this.#nonce.set(keyMaterial.subarray(alg.keyLength), 0);
  }

  seal(iv: Uint8Array, ivOff: number, aad: Uint8Array,
    src: Uint8Array, srcOff: number, srcLen: number, dst: Uint8Array, dstOff: number): number {
    const nonce = this.#nonce;
    for (let i = 0; i < ESP_IV_LEN; i++) nonce[AEAD_SALT_LEN + i] = iv[ivOff + i];
    // The cast picks one overload: node's typings split GCM and ChaCha20-Poly1305 by literal name.
    const c = createCipheriv(this.#cipher as CipherGCMTypes, this.#key, nonce, CIPHER_OPTIONS);
    c.setAAD(aad);
    const ct = c.update(src.subarray(srcOff, srcOff + srcLen));
    c.final(); // GCM and ChaCha20-Poly1305 are stream-like: final() emits nothing.
    dst.set(ct, dstOff);
    dst.set(c.getAuthTag(), dstOff + srcLen);
    return srcLen + AEAD_ICV_LEN;
  }

  open(iv: Uint8Array, ivOff: number, aad: Uint8Array,
    src: Uint8Array, srcOff: number, ctLen: number, dst: Uint8Array, dstOff: number): boolean {
    const nonce = this.#nonce;
    for (let i = 0; i < ESP_IV_LEN; i++) nonce[AEAD_SALT_LEN + i] = iv[ivOff + i];
    const d = createDecipheriv(this.#cipher as CipherGCMTypes, this.#key, nonce, CIPHER_OPTIONS);
    d.setAAD(aad);
    d.setAuthTag(src.subarray(srcOff + ctLen, srcOff + ctLen + AEAD_ICV_LEN));
    const pt = d.update(src.subarray(srcOff, srcOff + ctLen));
    try {
      d.final(); // throws when the ICV does not verify
    } catch {
      return false;
    }
    dst.set(pt, dstOff);
    return true;
  }
}
