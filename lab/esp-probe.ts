/**
 * esp-probe.ts: an independent, minimal ESP sealer for the lab (RFC 4303 tunnel mode, AES-GCM
 * per RFC 4106, no ESN). It builds ESP payloads carrying an inner ICMP echo request, sealed with
 * an SA from a lab config, so that
 *   - lab/selftest.sh can check that keys.uat lets tshark decrypt what it captures, and
 *   - lab tests can inject ESP sealed by something other than espgate into a running daemon,
 *     well formed or bent out of shape on purpose (sealEspProbeWith, ProbeTweaks).
 * It is deliberately separate from src/esp (no shared code), so the two can check each other.
 *
 * The ESP payload returned is what a raw IPPROTO_ESP socket sends (the kernel adds the outer
 * IP header):
 *
 *     0               4               8                      16
 *     +---------------+---------------+----------------------+------------------------+-------+
 *     | SPI           | sequence      | IV (8)               | AES-GCM( inner | pad | | ICV   |
 *     |               |               |                      |  pad len | next hdr )  | (16)  |
 *     +---------------+---------------+----------------------+------------------------+-------+
 *     nonce = salt (last 4 bytes of the key material) || IV ; AAD = SPI || sequence
 */

import { createCipheriv, createDecipheriv } from 'node:crypto';
import { parseAddress } from './topology.js';

/** ESP_HEADER_LEN is SPI + sequence number. */
export const ESP_HEADER_LEN = 8;
/** GCM_IV_LEN is the explicit IV carried in each packet (RFC 4106 §3.1). */
export const GCM_IV_LEN = 8;
/** GCM_ICV_LEN is the 16-octet ICV of aes-gcm-16. */
export const GCM_ICV_LEN = 16;
/** GCM_SALT_LEN is the salt at the end of the key material (RFC 4106 §8.1). */
export const GCM_SALT_LEN = 4;
/** ESP_TRAILER_LEN is pad length + next header. */
export const ESP_TRAILER_LEN = 2;
/** NEXT_HEADER_IPV4 / NEXT_HEADER_IPV6 are the ESP next-header values of tunnel mode. */
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;

const IPV4_HEADER_LEN = 20;
const IPV6_HEADER_LEN = 40;
const ICMP_HEADER_LEN = 8;
const ICMP_ECHO_REQUEST = 8;
const ICMPV6_ECHO_REQUEST = 128;
const PROTO_ICMP = 1;
const PROTO_ICMPV6 = 58;

/** ProbeSa is the sealing side of one SA. */
export interface ProbeSa {
  readonly spi: number;
  /** keymat is key || salt: 20 bytes for AES-128-GCM, 36 for AES-256-GCM. */
  readonly keymat: Uint8Array;
}

/** ProbeInner says what the inner ICMP echo request looks like. */
export interface ProbeInner {
  /** src and dst are the inner addresses (both IPv4 or both IPv6). */
  readonly src: string;
  readonly dst: string;
  readonly id: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

function checksum(buf: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += ((buf[i] ?? 0) << 8) | (buf[i + 1] ?? 0);
  if (buf.length % 2 === 1) sum += (buf[buf.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function addressBytes(address: string): Uint8Array {
  const { value, family } = parseAddress(address);
  const len = family === 4 ? 4 : 16;
  const out = new Uint8Array(len);
  let v = value;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** buildEchoRequest returns an IPv4 ICMP or IPv6 ICMPv6 echo request with valid checksums. */
export function buildEchoRequest(inner: ProbeInner): Uint8Array {
  const src = addressBytes(inner.src);
  const dst = addressBytes(inner.dst);
  if (src.length !== dst.length) throw new Error('inner src and dst differ in family');
  const v6 = src.length === 16;
  const icmpLen = ICMP_HEADER_LEN + inner.payload.length;
  const hdrLen = v6 ? IPV6_HEADER_LEN : IPV4_HEADER_LEN;
  const pkt = new Uint8Array(hdrLen + icmpLen);
  const view = new DataView(pkt.buffer);
  const icmp = pkt.subarray(hdrLen);
  icmp[0] = v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO_REQUEST;
  view.setUint16(hdrLen + 4, inner.id);
  view.setUint16(hdrLen + 6, inner.seq);
  icmp.set(inner.payload, ICMP_HEADER_LEN);
  if (v6) {
    pkt[0] = 0x60;
    view.setUint16(4, icmpLen);
    pkt[6] = PROTO_ICMPV6;
    pkt[7] = 64;
    pkt.set(src, 8);
    pkt.set(dst, 24);
    // ICMPv6 checksum covers the pseudo-header: src, dst, upper-layer length, next header.
    const pseudo = new Uint8Array(40);
    pseudo.set(src, 0);
    pseudo.set(dst, 16);
    new DataView(pseudo.buffer).setUint32(32, icmpLen);
    pseudo[39] = PROTO_ICMPV6;
    const partial = ~checksum(pseudo) & 0xffff;
    view.setUint16(hdrLen + 2, checksum(icmp, partial));
  } else {
    pkt[0] = 0x45;
    view.setUint16(2, pkt.length);
    pkt[8] = 64;
    pkt[9] = PROTO_ICMP;
    pkt.set(src, 12);
    pkt.set(dst, 16);
    view.setUint16(10, checksum(pkt.subarray(0, IPV4_HEADER_LEN)));
    view.setUint16(hdrLen + 2, checksum(icmp));
  }
  return pkt;
}

function aesGcmName(keymat: Uint8Array): 'aes-128-gcm' | 'aes-256-gcm' {
  if (keymat.length === 16 + GCM_SALT_LEN) return 'aes-128-gcm';
  if (keymat.length === 32 + GCM_SALT_LEN) return 'aes-256-gcm';
  throw new Error(`key material of ${keymat.length} bytes is neither AES-128 nor AES-256 GCM`);
}

/**
 * ProbeTweaks bend a sealed probe out of shape on purpose, for the hostile-input lab tests
 * (test/lab/hostile.test.ts). Every field is optional; with none, sealEspProbeWith is sealEspProbe.
 * The tweaks inside the encrypted part (next header, padding) are still authenticated: the
 * receiver's ICV check passes and its later checks must catch them.
 */
export interface ProbeTweaks {
  /** nextHeader replaces the trailer's next header (default: 4 or 41 from the inner version nibble). */
  readonly nextHeader?: number;
  /** padding replaces the padding bytes (default 1, 2, 3, ...); its length decides the padding length. */
  readonly padding?: Uint8Array;
  /** padLength replaces the Pad Length byte only (the padding bytes written stay as they are). */
  readonly padLength?: number;
  /** flipIcvBit flips the lowest bit of the ICV's last byte after sealing: the ICV no longer verifies. */
  readonly flipIcvBit?: boolean;
  /** cutBytes removes that many bytes from the end after sealing (a truncated packet). */
  readonly cutBytes?: number;
}

/**
 * sealEspProbe seals one inner IP packet into an ESP payload with sequence number `seq` and
 * explicit IV `iv` (8 bytes; must never repeat under one key).
 */
export function sealEspProbe(sa: ProbeSa, seq: number, iv: Uint8Array, inner: Uint8Array): Uint8Array {
  return sealEspProbeWith(sa, seq, iv, inner, {});
}

/**
 * sealEspProbeWith is sealEspProbe with tweaks (see ProbeTweaks). The padding given must keep
 * inner + padding + 2 a multiple of 4, or the receiver sees a misaligned ('truncated') packet.
 */
export function sealEspProbeWith(sa: ProbeSa, seq: number, iv: Uint8Array, inner: Uint8Array, tweaks: ProbeTweaks): Uint8Array {
  if (iv.length !== GCM_IV_LEN) throw new Error('IV must be 8 bytes');
  const version = (inner[0] ?? 0) >> 4;
  const nextHeader = tweaks.nextHeader ?? (version === 6 ? NEXT_HEADER_IPV6 : NEXT_HEADER_IPV4);
  const padLen = tweaks.padding?.length ?? (4 - ((inner.length + ESP_TRAILER_LEN) % 4)) % 4;
  const plain = new Uint8Array(inner.length + padLen + ESP_TRAILER_LEN);
  plain.set(inner, 0);
  if (tweaks.padding !== undefined) plain.set(tweaks.padding, inner.length);
  else for (let i = 0; i < padLen; i++) plain[inner.length + i] = i + 1;
  plain[plain.length - 2] = tweaks.padLength ?? padLen;
  plain[plain.length - 1] = nextHeader;

  const header = new Uint8Array(ESP_HEADER_LEN);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, sa.spi >>> 0);
  hv.setUint32(4, seq >>> 0);
  const keyLen = sa.keymat.length - GCM_SALT_LEN;
  const nonce = new Uint8Array(GCM_SALT_LEN + GCM_IV_LEN);
  nonce.set(sa.keymat.subarray(keyLen), 0);
  nonce.set(iv, GCM_SALT_LEN);
  const cipher = createCipheriv(aesGcmName(sa.keymat), sa.keymat.subarray(0, keyLen), nonce, { authTagLength: GCM_ICV_LEN });
  cipher.setAAD(header);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  const tag = cipher.getAuthTag();

  const out = new Uint8Array(ESP_HEADER_LEN + GCM_IV_LEN + body.length + GCM_ICV_LEN);
  out.set(header, 0);
  out.set(iv, ESP_HEADER_LEN);
  out.set(body, ESP_HEADER_LEN + GCM_IV_LEN);
  out.set(tag, ESP_HEADER_LEN + GCM_IV_LEN + body.length);
  if (tweaks.flipIcvBit === true) out[out.length - 1] = (out[out.length - 1] ?? 0) ^ 0x01;
  const cut = tweaks.cutBytes ?? 0;
  if (!Number.isInteger(cut) || cut < 0 || cut > out.length) throw new Error(`cutBytes must be 0..${out.length}`);
  return cut === 0 ? out : out.slice(0, out.length - cut);
}

/** OpenedProbe is what openEspProbe recovers. */
export interface OpenedProbe {
  readonly spi: number;
  readonly seq: number;
  readonly nextHeader: number;
  readonly inner: Uint8Array;
  /** padding holds the padding bytes as received (between the inner packet and the Pad Length byte). */
  readonly padding: Uint8Array;
}

/** openEspProbe opens an ESP payload sealed with `sa` (the check side of the unit tests); throws on any failure. */
export function openEspProbe(sa: ProbeSa, esp: Uint8Array): OpenedProbe {
  const min = ESP_HEADER_LEN + GCM_IV_LEN + ESP_TRAILER_LEN + GCM_ICV_LEN;
  if (esp.length < min) throw new Error('ESP payload too short');
  const view = new DataView(esp.buffer, esp.byteOffset, esp.byteLength);
  const spi = view.getUint32(0);
  const seq = view.getUint32(4);
  const keyLen = sa.keymat.length - GCM_SALT_LEN;
  const nonce = new Uint8Array(GCM_SALT_LEN + GCM_IV_LEN);
  nonce.set(sa.keymat.subarray(keyLen), 0);
  nonce.set(esp.subarray(ESP_HEADER_LEN, ESP_HEADER_LEN + GCM_IV_LEN), GCM_SALT_LEN);
  const decipher = createDecipheriv(aesGcmName(sa.keymat), sa.keymat.subarray(0, keyLen), nonce, { authTagLength: GCM_ICV_LEN });
  decipher.setAAD(esp.subarray(0, ESP_HEADER_LEN));
  decipher.setAuthTag(esp.subarray(esp.length - GCM_ICV_LEN));
  const plain = Buffer.concat([decipher.update(esp.subarray(ESP_HEADER_LEN + GCM_IV_LEN, esp.length - GCM_ICV_LEN)), decipher.final()]);
  const nextHeader = plain[plain.length - 1] ?? 0;
  const padLen = plain[plain.length - 2] ?? 0;
  const innerLen = plain.length - ESP_TRAILER_LEN - padLen;
  if (innerLen < 0) throw new Error('bad padding');
  return {
    spi, seq, nextHeader,
    inner: new Uint8Array(plain.subarray(0, innerLen)),
    padding: new Uint8Array(plain.subarray(innerLen, plain.length - ESP_TRAILER_LEN)),
  };
}
