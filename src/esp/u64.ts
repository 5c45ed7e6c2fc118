/**
 * u64.ts: 64-bit sequence numbers as two unsigned 32-bit halves (hi, lo).
 *
 * ESP sequence numbers are 64 bits with ESN (RFC 4303 §2.2.1). A JS number holds integers
 * exactly only up to 2^53, and bigint costs an allocation per operation, so the data path
 * keeps every sequence number as a pair of u32 numbers. bigint appears only at the control
 * plane edge (SA construction, tests), through the converters below.
 */

/** U32_RANGE is 2^32, the weight of the high half. */
export const U32_RANGE = 4294967296;
/** U32_MAX is 2^32 - 1, the largest 32-bit sequence number. */
export const U32_MAX = 0xffffffff;
/** U64_MAX is 2^64 - 1, the largest 64-bit (ESN) sequence number. */
export const U64_MAX = (1n << 64n) - 1n;

/** compareU64 returns -1, 0 or 1 as (aHi, aLo) is below, equal to or above (bHi, bLo). */
export function compareU64(aHi: number, aLo: number, bHi: number, bLo: number): -1 | 0 | 1 {
  if (aHi !== bHi) return aHi < bHi ? -1 : 1;
  if (aLo !== bLo) return aLo < bLo ? -1 : 1;
  return 0;
}

/** u64ToBigInt joins the halves. Control plane and tests only. */
export function u64ToBigInt(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** u64FromBigInt splits v (0 <= v <= 2^64 - 1) into [hi, lo]; throws RangeError outside. */
export function u64FromBigInt(v: bigint): [hi: number, lo: number] {
  if (v < 0n || v > U64_MAX) throw new RangeError(`u64 out of range: ${v}`);
  return [Number(v >> 32n), Number(v & 0xffffffffn)];
}

/**
 * u64ToNumberCeil converts (hi, lo) to the smallest JS number >= its exact value. Exact up to
 * 2^53; above that it rounds up to the next representable double, which is safe wherever the
 * value is a high-water mark ("everything up to here may be used"): over-reserving only skips
 * sequence numbers. Used for SeqReserver marks.
 */
export function u64ToNumberCeil(hi: number, lo: number): number {
  const n = hi * U32_RANGE + lo;
  if (n <= Number.MAX_SAFE_INTEGER) return n;
  // n is an integer-valued double; see whether rounding went down.
  const [nh, nl] = u64FromNumber(n);
  if (compareU64(nh, nl, hi, lo) >= 0) return n;
  // One ulp up: for n in [2^k, 2^(k+1)) the spacing is 2^(k-52).
  const ulp = 2 ** (Math.floor(Math.log2(n)) - 52);
  return n + ulp;
}

/**
 * u64FromNumber splits an integer-valued number 0 <= n <= 2^64 into [hi, lo]; n = 2^64 gives
 * hi = 2^32 (one past the sequence space), which callers treat as exhausted. Throws RangeError
 * for anything else.
 */
export function u64FromNumber(n: number): [hi: number, lo: number] {
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 64) throw new RangeError(`not a u64: ${n}`);
  const hi = Math.floor(n / U32_RANGE);
  return [hi, n - hi * U32_RANGE];
}
