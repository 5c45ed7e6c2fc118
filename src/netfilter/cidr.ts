/**
 * cidr.ts: parse, validate and print IPv4/IPv6 addresses and prefixes for the rules model.
 *
 * Pure: no `node:` imports. Printing follows glibc `inet_ntop` (RFC 5952 for IPv6: lowercase,
 * no leading zeros, the first longest run of two or more zero groups compressed), so that the
 * text we render equals what `iptables-save` / `ip6tables-save` print back.
 */

import { formatIpAddress, parseIpAddress } from '../packet/address.js';

/** IpFamily names the two address families the installer handles. */
export type IpFamily = 'v4' | 'v6';

/** IPV4_LEN and IPV6_LEN are address sizes in bytes. */
export const IPV4_LEN = 4;
export const IPV6_LEN = 16;

/** IPV4_BITS and IPV6_BITS are the maximum prefix lengths. */
export const IPV4_BITS = 32;
export const IPV6_BITS = 128;

/** A Cidr is an address plus a prefix length; `addr` holds 4 or 16 bytes. */
export interface Cidr {
  readonly family: IpFamily;
  readonly addr: Uint8Array;
  readonly prefixLen: number;
}

/** familyBits returns the address width in bits of a family. */
export function familyBits(family: IpFamily): number {
  return family === 'v4' ? IPV4_BITS : IPV6_BITS;
}

/** parseIp parses an IPv4 or IPv6 address (the one parser: src/packet/address.ts). */
export function parseIp(text: string): { family: IpFamily; addr: Uint8Array } | undefined {
  const a = parseIpAddress(text);
  return a === undefined ? undefined : { family: a.family === 4 ? 'v4' : 'v6', addr: a.bytes };
}

/**
 * formatIp prints an address as glibc inet_ntop does, which is what iptables-save prints:
 * RFC 5952, plus the deprecated IPv4-compatible form (first 96 bits zero, word 6 non-zero) in
 * dotted notation, "::198.18.0.1".
 */
export function formatIp(family: IpFamily, addr: Uint8Array): string {
  if (family === 'v6' && addr.subarray(0, 12).every((b) => b === 0) && ((addr[12] ?? 0) | (addr[13] ?? 0)) !== 0) {
    return `::${formatIpAddress(addr, 12, 4)}`;
  }
  return formatIpAddress(addr, 0, family === 'v4' ? 4 : 6);
}

export function maskAddr(addr: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(addr);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLen - 8 * i));
    out[i] = (out[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** A CidrParse is the outcome of parseCidr: a value, or a reason for the caller's error message. */
export type CidrParse = { ok: true; cidr: Cidr; hostBitsSet: boolean } | { ok: false; reason: string };

/**
 * parseCidr parses "addr/len" or a bare address (a host prefix). It reports, rather than
 * silently clears, bits set after the prefix: the caller decides whether that is an error.
 */
export function parseCidr(text: string): CidrParse {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addrText);
  if (ip === undefined) return { ok: false, reason: `"${addrText}" is not an IPv4 or IPv6 address` };
  const bits = familyBits(ip.family);
  let prefixLen = bits;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > bits) {
      return { ok: false, reason: `prefix length "${lenText}" is not in 0-${bits}` };
    }
    prefixLen = Number(lenText);
  }
  const masked = maskAddr(ip.addr, prefixLen);
  const hostBitsSet = masked.some((b, i) => b !== ip.addr[i]);
  return { ok: true, cidr: { family: ip.family, addr: masked, prefixLen }, hostBitsSet };
}

/** formatCidr prints a prefix as "network/len" (host prefixes keep their "/32" or "/128"). */
export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.addr)}/${c.prefixLen}`;
}

/** cidrContains reports whether `inner` lies entirely inside `outer` (same family). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.prefixLen < outer.prefixLen) return false;
  const a = maskAddr(outer.addr, outer.prefixLen);
  const b = maskAddr(inner.addr, outer.prefixLen);
  return a.every((v, i) => v === b[i]);
}

/** cidrOverlaps reports whether two prefixes share at least one address. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}
