/**
 * packet/testing.ts: helpers for tests of byte codecs; nothing in the data path uses them.
 */

/**
 * embedAt copies bytes into a larger Buffer, `lead` bytes from its start and with `trail` bytes
 * after, all filled with `fill`, and returns the view of just the copy: its byteOffset is not
 * zero and reading past either end of it would meet junk, so codecs that ignore byteOffset or
 * overrun show up in tests (the undici frame.js lesson).
 */
export function embedAt(bytes: Uint8Array, lead = 7, trail = lead, fill = 0xee): Buffer {
  const outer = Buffer.alloc(lead + bytes.length + trail, fill);
  outer.set(bytes, lead);
  return outer.subarray(lead, lead + bytes.length);
}

/** Rng is a small seeded PRNG (mulberry32) so that randomised tests repeat exactly. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** next returns a uniform 32-bit unsigned integer. */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** int returns an integer in [0, n). */
  int(n: number): number {
    return this.next() % n;
  }

  /** bytes returns n random bytes. */
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

/**
 * sum16 is a deliberately naive one's complement sum over the concatenated parts, independent
 * of checksum.ts, so tests can check the real code against it.
 */
export function sum16(...parts: Uint8Array[]): number {
  const all = Buffer.concat(parts);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) s += (all[i] << 8) + (i + 1 < all.length ? all[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
