/**
 * nonce.ts: the explicit IV carried in each ESP packet, and the AEAD nonce built from it.
 *
 * RFC 4106 §3.1 (and RFC 7634 §2 for ChaCha20-Poly1305) only require that an IV never repeats
 * under one key, and explicitly allow a counter. We use the packet's own 64-bit sequence
 * number, as Linux (seqiv/seqniv) and strongSwan do: the outbound SA never reuses a sequence
 * number (it refuses to wrap, sa.ts, and persists reservations across restarts, seq-store.ts),
 * so (key, IV) pairs are unique by construction and no randomness is needed per packet.
 *
 *    nonce (12 bytes) = salt (4, fixed per SA, from the keying material) || IV (8, per packet)
 *
 * The IV generator is an interface so known-answer tests can inject the IVs a test vector
 * used (as strongSwan's test_chapoly.c replaces its IV generator).
 */

/** ESP_IV_LEN is the length of the explicit IV on the wire (RFC 4106 §3.1, RFC 7634 §2). */
export const ESP_IV_LEN = 8;
/** AEAD_SALT_LEN is the salt taken from the end of the keying material (RFC 4106 §8.1). */
export const AEAD_SALT_LEN = 4;
/** AEAD_NONCE_LEN is salt + IV, the 96-bit nonce given to the cipher (RFC 4106 §4). */
export const AEAD_NONCE_LEN = AEAD_SALT_LEN + ESP_IV_LEN;

/**
 * An IvGenerator chooses the 8-byte explicit IV of each outbound packet. writeIv is called
 * exactly once per packet, in sequence-number order, by the one caller that owns the SA.
 */
export interface IvGenerator {
  /** writeIv writes the IV for the packet with sequence number (seqHi, seqLo) at out[off..off+8). */
  writeIv(seqHi: number, seqLo: number, out: Uint8Array, off: number): void;
}

/** SequenceIvGenerator writes the 64-bit sequence number, big-endian, as the IV. Stateless. */
export class SequenceIvGenerator implements IvGenerator {
  writeIv(seqHi: number, seqLo: number, out: Uint8Array, off: number): void {
    out[off] = seqHi >>> 24;
    out[off + 1] = (seqHi >>> 16) & 0xff;
    out[off + 2] = (seqHi >>> 8) & 0xff;
    out[off + 3] = seqHi & 0xff;
    out[off + 4] = seqLo >>> 24;
    out[off + 5] = (seqLo >>> 16) & 0xff;
    out[off + 6] = (seqLo >>> 8) & 0xff;
    out[off + 7] = seqLo & 0xff;
  }
}

/** SEQUENCE_IV is the shared default generator (it has no state). */
export const SEQUENCE_IV: IvGenerator = new SequenceIvGenerator();

/**
 * FixedIvGenerator hands out a given list of IVs in order, for known-answer tests. It throws
 * when the list is used up: a test that sends more packets than it planned is a broken test.
 * Never use it for real traffic: it would repeat IVs across SAs.
 */
export class FixedIvGenerator implements IvGenerator {
  readonly #ivs: readonly Uint8Array[];
  #next = 0;

  constructor(ivs: readonly Uint8Array[]) {
    for (const iv of ivs) {
      if (iv.length !== ESP_IV_LEN) throw new RangeError(`IV must be ${ESP_IV_LEN} bytes, got ${iv.length}`);
    }
    this.#ivs = ivs;
  }

  writeIv(_seqHi: number, _seqLo: number, out: Uint8Array, off: number): void {
    const iv = this.#ivs[this.#next];
    if (iv === undefined) throw new RangeError('FixedIvGenerator: no IV left');
    this.#next++;
    out.set(iv, off);
  }
}
