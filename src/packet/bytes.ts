/**
 * packet/bytes.ts: big-endian reads and writes on a Uint8Array at an absolute index. They work on
 * any view (Buffer or subarray); the index is relative to the view, never to its ArrayBuffer.
 */

/** readU16 reads a big-endian 16-bit word at buf[off], buf[off + 1]. */
export function readU16(buf: Uint8Array, off: number): number {
  return ((buf[off]) << 8) | (buf[off + 1]);
}

/** writeU16 writes v (taken modulo 2^16) big-endian at buf[off]. */
export function writeU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

/** readU32 reads a big-endian 32-bit unsigned word at buf[off]. */
export function readU32(buf: Uint8Array, off: number): number {
  return (((buf[off]) << 24) | ((buf[off + 1]) << 16) | ((buf[off + 2]) << 8) | (buf[off + 3])) >>> 0;
}

/** writeU32 writes v (taken modulo 2^32) big-endian at buf[off]. */
export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

/** inBounds says whether [off, off + len) lies inside buf, with non-negative integers. */
export function inBounds(buf: Uint8Array, off: number, len: number): boolean {
  return Number.isInteger(off) && Number.isInteger(len) && off >= 0 && len >= 0 && off + len <= buf.length;
}

/** copyBytes copies buf[start, end) into a new plain Uint8Array (never a view, even for a Buffer). */
export function copyBytes(buf: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(buf.subarray(start, end));
}
