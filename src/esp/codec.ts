/**
 * codec.ts: ESP in tunnel mode (RFC 4303) with an AEAD (RFC 4106 AES-GCM; RFC 7634 has the
 * same layout). Pure functions over (buffer, offset, length) and an SA; no clocks, no I/O.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  ESP_OFFSET_SPI = 0
 *   |               Security Parameters Index (SPI)                 |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  ESP_OFFSET_SEQ = 4
 *   |                 Sequence Number (low 32 bits)                 |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  ESP_OFFSET_IV = 8
 *   |                     IV (8 bytes, = 64-bit seq)                |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  ESP_OFFSET_PAYLOAD = 16
 *   |  inner IP packet (encrypted) ...                              |
 *   +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |               |  Padding 1, 2, 3, ... (0-255 bytes, encrypted) |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |               | Pad Length    | Next Header (4 / 41 / 59)     |  <- 4-byte aligned end
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                 ICV (16 bytes, the GCM tag)                   |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Seal (outbound): inner version -> next header; size check; sequence number (never wraps);
 * inner moved into place unless already there; padding so that payload + pad + 2 is a
 * multiple of 4 (RFC 4303 §2.4, GCM block size 1); header, IV, AAD; encrypt in place.
 *
 * Open (inbound), in strongSwan's order (esp_packet.c decrypt / esp_context.c):
 *   1. every length check (header + IV + ICV + 2-byte trailer, 4-byte alignment) -> 'truncated'
 *   2. SPI is the SA's and the SA is not hard-expired                            -> 'unknown-spi'
 *   3. ESN: rebuild the high 32 bits from the window (RFC 4303 A2.2)            -> 'too-old'
 *   4. replay check, no state change                                           -> 'replay' / 'too-old'
 *   5. ICV verified and payload decrypted in place                             -> 'auth'
 *   6. only now: the window records the sequence number
 *   7. pad length fits and padding is 1, 2, 3, ... (RFC 4303 §2.4 SHOULD)      -> 'bad-padding'
 *   8. next header 4 (IPv4) or 41 (IPv6) delivered; 59 is a TFC dummy packet    -> 'dummy'
 *      (RFC 4303 §2.6: discarded without error, counted in stats.dummyPackets, not a drop);
 *      anything else                                                           -> 'bad-next-header'
 * Steps 6-8 happen only for authenticated packets, so the window also records packets later
 * dropped for padding or next header: they were really sent with that number.
 *
 * Every drop is returned as a DropReason and counted in sa.drops; nothing here throws for
 * any input bytes. Inner-packet validation (IP header, lengths, addresses) is the caller's
 * next stage ('bad-inner', 'policy').
 */
import type { DropReason } from '../drops.js';
import type { InboundSa, OutboundSa } from './sa.js';
import { readU32, writeU32 } from '../packet/bytes.js';

/** ESP_HEADER_LEN is SPI + sequence number. */
export const ESP_HEADER_LEN = 8;
/** ESP_OFFSET_SPI is the SPI's offset in the ESP header. */
export const ESP_OFFSET_SPI = 0;
/** ESP_OFFSET_SEQ is the sequence number's offset in the ESP header. */
export const ESP_OFFSET_SEQ = 4;
/** ESP_OFFSET_IV is where the explicit IV starts. */
export const ESP_OFFSET_IV = ESP_HEADER_LEN;
/** GCM_IV_LEN is the explicit IV length of AES-GCM ESP (RFC 4106 §3.1). */
export const GCM_IV_LEN = 8;
/** GCM_ICV_LEN is the ICV length of the aes*gcm16 algorithms. */
export const GCM_ICV_LEN = 16;
/** ESP_OFFSET_PAYLOAD is where the encrypted payload starts for 8-byte-IV algorithms. */
export const ESP_OFFSET_PAYLOAD = ESP_OFFSET_IV + GCM_IV_LEN;
/** ESP_TRAILER_LEN is Pad Length + Next Header. */
export const ESP_TRAILER_LEN = 2;
/** ESP_ALIGN is the alignment of the encrypted part's end (RFC 4303 §2.4). */
export const ESP_ALIGN = 4;
/** ESP_MAX_PAD is the largest Pad Length (one byte). */
export const ESP_MAX_PAD = 255;
/** NEXT_HEADER_IPV4 is IP-in-IP, the next header of an IPv4 inner packet. */
export const NEXT_HEADER_IPV4 = 4;
/** NEXT_HEADER_IPV6 is the next header of an IPv6 inner packet. */
export const NEXT_HEADER_IPV6 = 41;
/** NEXT_HEADER_DUMMY marks a TFC dummy packet (RFC 4303 §2.6), "no next header". */
export const NEXT_HEADER_DUMMY = 59;
/** ESP_MIN_LEN is the shortest well-formed ESP packet with an 8-byte IV and 16-byte ICV. */
export const ESP_MIN_LEN = ESP_HEADER_LEN + GCM_IV_LEN + ESP_ALIGN + GCM_ICV_LEN;
/** ESP_HEADROOM is the room sealEsp needs in front of an in-place inner packet (header + IV). */
export const ESP_HEADROOM = ESP_OFFSET_PAYLOAD;
/** ESP_MAX_TAILROOM is the most sealEsp writes after the inner packet (padding 3 + trailer + ICV). */
export const ESP_MAX_TAILROOM = ESP_ALIGN - 1 + ESP_TRAILER_LEN + GCM_ICV_LEN;
/** ESP_MAX_OVERHEAD is the most ESP adds to an inner packet (37 bytes with AES-GCM). */
export const ESP_MAX_OVERHEAD = ESP_HEADROOM + ESP_MAX_TAILROOM;

/** EspHeader is the clear part of an ESP header. */
export interface EspHeader {
  spi: number;
  seqLow: number;
}

/** EspOpened locates the decrypted payload inside the buffer openEsp was given. */
export interface EspOpened {
  /** innerOff is the payload's offset in the caller's buffer (decrypted in place). */
  innerOff: number;
  innerLen: number;
  nextHeader: number;
}

/** EspDummy is openEsp's outcome for an authenticated TFC dummy packet: discard, not a drop. */
export type EspDummy = 'dummy';

/** parseEspHeader reads the SPI and low sequence number, or 'truncated' if fewer than 8 bytes are there. */
export function parseEspHeader(buf: Uint8Array, off: number, len: number): EspHeader | 'truncated' {
  if (!validSpan(buf, off, len) || len < ESP_HEADER_LEN) return 'truncated';
  return { spi: readU32(buf, off + ESP_OFFSET_SPI), seqLow: readU32(buf, off + ESP_OFFSET_SEQ) };
}

/** espPadLength is the padding sealEsp adds to a payload of `payloadLen` bytes (0-3). */
export function espPadLength(payloadLen: number, blockSize = 1): number {
  const align = Math.max(ESP_ALIGN, blockSize);
  return (align - ((payloadLen + ESP_TRAILER_LEN) % align)) % align;
}

/** espSealedLength is how many bytes (SPI..ICV) sealEsp writes for an inner packet of innerLen bytes on sa. */
export function espSealedLength(sa: OutboundSa, innerLen: number): number {
  const a = sa.aead;
  return ESP_HEADER_LEN + a.ivLength + innerLen + espPadLength(innerLen, a.blockSize) + ESP_TRAILER_LEN + a.icvLength;
}

/**
 * sealEsp encapsulates the inner IP packet inner[innerOff, +innerLen) into out at outOff
 * (SPI..ICV) and returns the number of bytes written, or a DropReason:
 *   'bad-inner'     the inner packet is empty or not IPv4/IPv6 (version nibble)
 *   'too-big'       out has no room for the sealed packet
 *   'no-sa'         the SA reached a hard lifetime limit
 *   'seq-exhausted' the SA's sequence space is used up
 *   'seq-store'     the next block of sequence numbers could not be reserved durably
 * For zero copies, read the inner packet to out[outOff + 16] (ESP_OFFSET_PAYLOAD headroom)
 * and pass that same buffer and offset; any other placement (even overlapping) is copied first.
 */
export function sealEsp(sa: OutboundSa, inner: Uint8Array, innerOff: number, innerLen: number,
  out: Uint8Array, outOff: number): number | DropReason {
  let nh: number;
  if (!validSpan(inner, innerOff, innerLen) || innerLen === 0) return countOut(sa, 'bad-inner');
  const version = inner[innerOff] >>> 4;
  if (version === 4) nh = NEXT_HEADER_IPV4;
  else if (version === 6) nh = NEXT_HEADER_IPV6;
  else return countOut(sa, 'bad-inner');
  return sealInternal(sa, nh, inner, innerOff, innerLen, out, outOff);
}

/**
 * sealEspPayload is sealEsp with an explicit next header and no check of the payload: for
 * known-answer tests (the draft-mcgrew vectors use next header 1) and TFC dummy packets (59).
 */
export function sealEspPayload(sa: OutboundSa, nextHeader: number, payload: Uint8Array, payloadOff: number,
  payloadLen: number, out: Uint8Array, outOff: number): number | DropReason {
  if (!validSpan(payload, payloadOff, payloadLen) || !Number.isInteger(nextHeader) || nextHeader < 0 || nextHeader > 255) {
    return countOut(sa, 'bad-inner');
  }
  return sealInternal(sa, nextHeader, payload, payloadOff, payloadLen, out, outOff);
}

function sealInternal(sa: OutboundSa, nh: number, inner: Uint8Array, innerOff: number, innerLen: number,
  out: Uint8Array, outOff: number): number | DropReason {
  const aead = sa.aead;
  const ivLen = aead.ivLength;
  const pad = espPadLength(innerLen, aead.blockSize);
  const ptLen = innerLen + pad + ESP_TRAILER_LEN;
  const total = ESP_HEADER_LEN + ivLen + ptLen + aead.icvLength;
  if (!Number.isInteger(outOff) || outOff < 0 || outOff + total > out.length) return countOut(sa, 'too-big');
  if (sa.hardExpired) return countOut(sa, 'no-sa');
  const r = sa.takeSeq();
  if (r !== null) return countOut(sa, r);

  // 1. The payload goes first: writing the header must not clobber an overlapping inner packet.
  const ptOff = outOff + ESP_HEADER_LEN + ivLen;
  const inPlace = (inner === out && innerOff === ptOff) ||
    (inner.buffer === out.buffer && inner.byteOffset + innerOff === out.byteOffset + ptOff);
  if (!inPlace) {
    out.set(inner.subarray(innerOff, innerOff + innerLen), ptOff); // TypedArray.set copes with overlap
  }
  // 2. Trailer: padding 1, 2, 3, ..., pad length, next header.
  let p = ptOff + innerLen;
  for (let i = 1; i <= pad; i++) out[p++] = i;
  out[p++] = pad;
  out[p] = nh;
  // 3. Header and IV.
  const seqHi = sa.seqHi;
  const seqLo = sa.seqLo;
  writeU32(out, outOff + ESP_OFFSET_SPI, sa.spi);
  writeU32(out, outOff + ESP_OFFSET_SEQ, seqLo);
  sa.ivGenerator.writeIv(seqHi, seqLo, out, outOff + ESP_OFFSET_IV);
  // 4. AAD (RFC 4106 §5) and encryption in place.
  const aad = buildAad(sa.aadBuf, sa.spi, sa.esn, seqHi, seqLo) ? sa.aad12 : sa.aad8;
  aead.seal(out, outOff + ESP_OFFSET_IV, aad, out, ptOff, ptLen, out, ptOff);
  sa.countPacket(innerLen);
  return total;
}

/**
 * openEsp decapsulates the ESP packet buf[off, off+len) (SPI..ICV, outer IP header already
 * stripped) in place. Returns where the inner packet is, 'dummy' for an authenticated TFC
 * dummy packet (discard silently), or a DropReason (see the module comment for the order):
 * 'truncated', 'unknown-spi', 'replay', 'too-old', 'auth', 'bad-padding', 'bad-next-header'.
 * Drops are counted in sa.drops; successes and dummies in sa.stats.
 */
export function openEsp(sa: InboundSa, buf: Uint8Array, off: number, len: number): EspOpened | DropReason | EspDummy {
  const r = openInternal(sa, buf, off, len);
  if (typeof r === 'string') return countIn(sa, r);
  const nh = r.nextHeader;
  if (nh === NEXT_HEADER_IPV4 || nh === NEXT_HEADER_IPV6) {
    sa.countPacket(r.innerLen);
    return r;
  }
  if (nh === NEXT_HEADER_DUMMY) {
    sa.stats.dummyPackets++;
    return 'dummy';
  }
  return countIn(sa, 'bad-next-header');
}

/**
 * openEspPayload is openEsp without the next-header policy: any authenticated, well-padded
 * payload is returned with its next header (known-answer tests; transport-mode experiments).
 */
export function openEspPayload(sa: InboundSa, buf: Uint8Array, off: number, len: number): EspOpened | DropReason {
  const r = openInternal(sa, buf, off, len);
  if (typeof r === 'string') return countIn(sa, r);
  sa.countPacket(r.innerLen);
  return r;
}

function openInternal(sa: InboundSa, buf: Uint8Array, off: number, len: number): EspOpened | DropReason {
  const aead = sa.aead;
  const ivLen = aead.ivLength;
  const icvLen = aead.icvLength;
  if (!validSpan(buf, off, len)) return 'truncated';
  const ctLen = len - ESP_HEADER_LEN - ivLen - icvLen; // payload + padding + trailer
  if (ctLen < ESP_TRAILER_LEN || ctLen % Math.max(ESP_ALIGN, aead.blockSize) !== 0) return 'truncated';
  if (readU32(buf, off + ESP_OFFSET_SPI) !== sa.spi || sa.hardExpired) return 'unknown-spi';
  const seqLo = readU32(buf, off + ESP_OFFSET_SEQ);
  const replay = sa.replay;
  let seqHi = 0;
  if (sa.esn) {
    seqHi = replay.esnHigh(seqLo);
    if (seqHi < 0) return 'too-old';
  }
  const seen = replay.check(seqHi, seqLo);
  if (seen !== null) return seen;
  const aad = buildAad(sa.aadBuf, sa.spi, sa.esn, seqHi, seqLo) ? sa.aad12 : sa.aad8;
  const ptOff = off + ESP_HEADER_LEN + ivLen;
  if (!aead.open(buf, off + ESP_OFFSET_IV, aad, buf, ptOff, ctLen, buf, ptOff)) return 'auth';
  const late = replay.accept(seqHi, seqLo);
  if (late !== null) return late;
  const padLen = buf[ptOff + ctLen - 2];
  const nextHeader = buf[ptOff + ctLen - 1];
  if (padLen + ESP_TRAILER_LEN > ctLen) return 'bad-padding';
  const innerLen = ctLen - ESP_TRAILER_LEN - padLen;
  const padOff = ptOff + innerLen;
  for (let i = 0; i < padLen; i++) {
    if (buf[padOff + i] !== i + 1) return 'bad-padding';
  }
  return { innerOff: ptOff, innerLen, nextHeader };
}

/** buildAad writes SPI || [seq-high ||] seq-low into aad; returns true for the 12-byte ESN form. */
function buildAad(aad: Uint8Array, spi: number, esn: boolean, seqHi: number, seqLo: number): boolean {
  writeU32(aad, 0, spi);
  if (esn) {
    writeU32(aad, 4, seqHi);
    writeU32(aad, 8, seqLo);
    return true;
  }
  writeU32(aad, 4, seqLo);
  return false;
}

function validSpan(buf: Uint8Array, off: number, len: number): boolean {
  return Number.isInteger(off) && Number.isInteger(len) && off >= 0 && len >= 0 && off + len <= buf.length;
}

function countOut(sa: OutboundSa, reason: DropReason): DropReason {
  sa.drops.add(reason);
  return reason;
}

function countIn(sa: InboundSa, reason: DropReason): DropReason {
  sa.drops.add(reason);
  return reason;
}
