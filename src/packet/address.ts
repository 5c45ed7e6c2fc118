/**
 * packet/address.ts: IPv4 and IPv6 address text <-> bytes and CIDR prefixes, without node:net.
 * Control-plane code (config, CLI, tests): these functions allocate; none of them throws on bad
 * text, they return undefined or a result with a message instead.
 */

import { IPV4_ADDR_LEN, IPV6_ADDR_LEN } from './offsets.js';
import type { IpFamily } from './offsets.js';

/** IpAddress is an address in bytes (4 or 16) with its family. */
export interface IpAddress {
  readonly family: IpFamily;
  readonly bytes: Uint8Array;
}

/** Cidr is a prefix: network bytes (host bits zero), family and prefix length in bits. */
export interface Cidr {
  readonly family: IpFamily;
  readonly bytes: Uint8Array;
  readonly prefixLen: number;
}

/** CidrResult is what parseCidr returns: the prefix, or a message that names the text. */
export type CidrResult = { readonly ok: true; readonly cidr: Cidr } | { readonly ok: false; readonly message: string };

const DECIMAL_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const PREFIX_LEN = /^(?:0|[1-9][0-9]{0,2})$/;

/**
 * parseIpv4Address parses dotted-quad text ("198.18.0.7") into 4 bytes. Like node:net isIPv4 it
 * refuses leading zeros ("010.0.0.1" is ambiguous octal), short forms and surrounding space.
 */
export function parseIpv4Address(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(IPV4_ADDR_LEN);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!DECIMAL_OCTET.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

/**
 * parseIpv6Address parses RFC 4291 §2.2 text (with at most one "::" and an optional trailing
 * dotted quad) into 16 bytes. Zone ids ("%eth0") and brackets are refused.
 */
export function parseIpv6Address(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = splitGroups(halves[0]);
  const tail = halves.length === 2 ? splitGroups(halves[1]) : [];
  if (head === undefined || tail === undefined) return undefined;
  const groups: number[] = [];
  const all = [...head, ...tail];
  const out = new Uint8Array(IPV6_ADDR_LEN);
  // A dotted quad may only be the very last piece and stands for two groups.
  const lastHalf = halves.length === 2 ? tail : head;
  for (let i = 0; i < all.length; i++) {
    const g = all[i];
    if (g.includes('.')) {
      if (i !== all.length - 1 || lastHalf.length === 0) return undefined;
      const v4 = parseIpv4Address(g);
      if (v4 === undefined) return undefined;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else {
      if (!HEX_GROUP.test(g)) return undefined;
      groups.push(parseInt(g, 16));
    }
  }
  const headGroups = countGroups(head);
  if (halves.length === 1) {
    if (groups.length !== 8) return undefined;
  } else if (groups.length > 7) {
    return undefined; // "::" stands for at least one group of zeros
  }
  const zeros = 8 - groups.length;
  let w = 0;
  for (let i = 0; i < groups.length; i++) {
    if (halves.length === 2 && i === headGroups) w += zeros;
    const v = groups[i];
    out[w * 2] = v >>> 8;
    out[w * 2 + 1] = v & 0xff;
    w++;
  }
  return out;
}

function splitGroups(s: string): string[] | undefined {
  if (s === '') return [];
  const parts = s.split(':');
  for (const p of parts) if (p === '') return undefined;
  return parts;
}

function countGroups(pieces: string[]): number {
  let n = 0;
  for (const p of pieces) n += p.includes('.') ? 2 : 1;
  return n;
}

/** parseIpAddress parses IPv4 or IPv6 text; undefined when it is neither. */
export function parseIpAddress(text: string): IpAddress | undefined {
  const v4 = parseIpv4Address(text);
  if (v4 !== undefined) return { family: 4, bytes: v4 };
  const v6 = parseIpv6Address(text);
  if (v6 !== undefined) return { family: 6, bytes: v6 };
  return undefined;
}

/** formatIpv4Address formats buf[off, off + 4) as dotted-quad text. */
export function formatIpv4Address(buf: Uint8Array, off = 0): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/**
 * formatIpv6Address formats buf[off, off + 16) in RFC 5952 canonical form: lower case, no leading
 * zeros, the longest run (first on a tie) of two or more zero groups as "::", and IPv4-mapped
 * addresses (::ffff:0:0/96) with a dotted quad (RFC 5952 §5).
 */
export function formatIpv6Address(buf: Uint8Array, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((buf[off + 2 * i] << 8) | buf[off + 2 * i + 1]);
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${formatIpv4Address(buf, off + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]): string => a.map((v) => v.toString(16)).join(':');
  if (bestLen < 2) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** formatIpAddress formats a 4- or 16-byte address at buf[off] by family. */
export function formatIpAddress(buf: Uint8Array, off: number, family: IpFamily): string {
  return family === 4 ? formatIpv4Address(buf, off) : formatIpv6Address(buf, off);
}

/** addressLength is 4 for IPv4 and 16 for IPv6. */
export function addressLength(family: IpFamily): number {
  return family === 4 ? IPV4_ADDR_LEN : IPV6_ADDR_LEN;
}

/** maskByte is the byte of a prefixLen-bit netmask at byte index i. */
export function maskByte(prefixLen: number, i: number): number {
  const bits = prefixLen - i * 8;
  if (bits >= 8) return 0xff;
  if (bits <= 0) return 0;
  return (0xff << (8 - bits)) & 0xff;
}

/**
 * parseCidr parses "address/length". It refuses a missing or out-of-range length and an address
 * with host bits set (the message names the network that was probably meant).
 */
export function parseCidr(text: string): CidrResult {
  const slash = text.indexOf('/');
  if (slash < 0) return { ok: false, message: `'${text}' is not a prefix: expected address/length, eg. 198.18.0.0/24` };
  const addrText = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  const addr = parseIpAddress(addrText);
  if (addr === undefined) return { ok: false, message: `'${text}': '${addrText}' is not an IPv4 or IPv6 address` };
  const maxLen = addr.bytes.length * 8;
  if (!PREFIX_LEN.test(lenText) || Number(lenText) > maxLen) {
    return { ok: false, message: `'${text}': prefix length '${lenText}' is not a number from 0 to ${maxLen}` };
  }
  const prefixLen = Number(lenText);
  const net = new Uint8Array(addr.bytes.length);
  for (let i = 0; i < net.length; i++) net[i] = addr.bytes[i] & maskByte(prefixLen, i);
  for (let i = 0; i < net.length; i++) {
    if (net[i] !== addr.bytes[i]) {
      const meant = `${formatIpAddress(net, 0, addr.family)}/${prefixLen}`;
      return { ok: false, message: `'${text}' has host bits set (the network is ${meant})` };
    }
  }
  return { ok: true, cidr: { family: addr.family, bytes: net, prefixLen } };
}

/** formatCidr formats a prefix as "network/length". */
export function formatCidr(c: Cidr): string {
  return `${formatIpAddress(c.bytes, 0, c.family)}/${c.prefixLen}`;
}

/** cidrContains says whether addr[off] (same family as c) lies inside prefix c. */
export function cidrContains(c: Cidr, addr: Uint8Array, off = 0): boolean {
  const n = c.bytes.length;
  for (let i = 0; i < n; i++) {
    const m = maskByte(c.prefixLen, i);
    if (m === 0) break;
    if ((addr[off + i] & m) !== c.bytes[i]) return false;
  }
  return true;
}

/** cidrsOverlap says whether two prefixes share any address (one contains the other). */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  return a.prefixLen <= b.prefixLen ? cidrContains(a, b.bytes) : cidrContains(b, a.bytes);
}
