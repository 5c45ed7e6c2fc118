/**
 * aead-native.ts: AES-GCM (RFC 4106) through espgate's native addon (src/io/native/gcm.cc),
 * which calls the OpenSSL that Node itself links. Same Aead contract as aead.ts's NodeAead,
 * which stays the reference: src/esp/aead.test.ts and codec tests run every vector through both.
 *
 * Why: node:crypto cannot re-nonce a cipher object, so NodeAead pays a createCipheriv per
 * packet (~4 us) plus four more crossings and an output Buffer. The addon keys two
 * EVP_CIPHER_CTX once per SA and, per packet, sets the nonce and encrypts or decrypts in place:
 * one crossing, no allocation (docs/performance.md has the numbers).
 *
 * Selection: createAead (aead.ts) uses this when the addon is built, unless ESPGATE_AEAD=node.
 */
import { loadAddon } from '../io/native-addon.js';
import type { Aead, AeadName } from './aead.js';
import { AEAD_NONCE_LEN, AEAD_SALT_LEN, ESP_IV_LEN } from './nonce.js';

/** ICV_LEN is the 16-byte ICV of aes*gcm16. */
const ICV_LEN = 16;

interface NativeGcmKey {
  seal(nonce: Uint8Array, aad: Uint8Array, aadLen: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number;
  open(nonce: Uint8Array, aad: Uint8Array, aadLen: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): boolean;
}
interface GcmAddon {
  GcmKey: new (key: Uint8Array) => NativeGcmKey;
}

/** loadGcmAddon returns the addon, or undefined when it is not built (the reason: gcmAddonError). */
export function loadGcmAddon(): GcmAddon | undefined {
  return loadAddon<GcmAddon>('espgate_gcm').addon;
}

/** gcmAddonError says why loadGcmAddon returned undefined. */
export function gcmAddonError(): unknown {
  return loadAddon<GcmAddon>('espgate_gcm').error;
}

/** NativeGcmAead implements Aead over one addon GcmKey. Created by createNativeGcm. */
class NativeGcmAead implements Aead {
  readonly impl = 'native' as const;
  readonly name: AeadName;
  readonly ivLength = ESP_IV_LEN;
  readonly icvLength = ICV_LEN;
  readonly blockSize = 1;
  readonly keyMaterialLength: number;
  readonly #key: NativeGcmKey;
  readonly #nonce = new Uint8Array(AEAD_NONCE_LEN);

  constructor(mod: GcmAddon, name: AeadName, keyLength: number, keyMaterial: Uint8Array) {
    this.name = name;
    this.keyMaterialLength = keyMaterial.length;
    this.#key = new mod.GcmKey(keyMaterial.subarray(0, keyLength));
    this.#nonce.set(keyMaterial.subarray(keyLength, keyLength + AEAD_SALT_LEN), 0);
  }

  seal(iv: Uint8Array, ivOff: number, aad: Uint8Array,
    src: Uint8Array, srcOff: number, srcLen: number, dst: Uint8Array, dstOff: number): number {
    const nonce = this.#nonce;
    for (let i = 0; i < ESP_IV_LEN; i++) nonce[AEAD_SALT_LEN + i] = iv[ivOff + i];
    return this.#key.seal(nonce, aad, aad.length, src, srcOff, srcLen, dst, dstOff);
  }

  open(iv: Uint8Array, ivOff: number, aad: Uint8Array,
    src: Uint8Array, srcOff: number, ctLen: number, dst: Uint8Array, dstOff: number): boolean {
    const nonce = this.#nonce;
    for (let i = 0; i < ESP_IV_LEN; i++) nonce[AEAD_SALT_LEN + i] = iv[ivOff + i];
    return this.#key.open(nonce, aad, aad.length, src, srcOff, ctLen, dst, dstOff);
  }
}

/**
 * createNativeGcm builds a native AES-GCM Aead, or returns undefined when the addon is not
 * built. The caller (aead.ts) has checked the key material's length.
 */
export function createNativeGcm(name: AeadName, keyLength: number, keyMaterial: Uint8Array): Aead | undefined {
  const mod = loadGcmAddon();
  return mod === undefined ? undefined : new NativeGcmAead(mod, name, keyLength, keyMaterial);
}
