/**
 * cidr.ts: parse, validate and print IPv4/IPv6 addresses and prefixes for the rules model.
 *
 * Pure: no `node:` imports. Printing follows glibc `inet_ntop` (RFC 5952 for IPv6: lowercase,
 * no leading zeros, the first longest run of two or more zero groups compressed), so that the
 * text we render equals what `iptables-save` / `ip6tables-save` print back.
 */

/** IpFamily names the two address families the installer handles. */
export type IpFamily = 'v4' | 'v6';

/** IPV4_LEN and IPV6_LEN are address sizes in bytes. */
export const IPV4_LEN = 4;
export const IPV6_LEN = 16;

/** IPV4_BITS and IPV6_BITS are the maximum prefix lengths. */
export const IPV4_BITS = 32;
export const IPV6_BITS = 128;

const IPV6_GROUPS = 8;

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

function parseIpv4Bytes(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== IPV4_LEN) return undefined;
  const out = new Uint8Array(IPV4_LEN);
  for (let i = 0; i < IPV4_LEN; i++) {
    const p = parts[i] ?? '';
    // Decimal only, no leading zeros (inet_pton refuses "010" as ambiguous octal in some libcs).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

function parseGroups(text: string): number[] | undefined {
  if (text === '') return [];
  const out: number[] = [];
  for (const g of text.split(':')) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    out.push(parseInt(g, 16));
  }
  return out;
}

function parseIpv6Bytes(text: string): Uint8Array | undefined {
  if (text.includes('%')) return undefined; // zone ids have no meaning in a rule
  let body = text;
  let tail: number[] = [];
  // A trailing dotted quad stands for the last two groups.
  const lastColon = body.lastIndexOf(':');
  if (lastColon >= 0 && body.slice(lastColon + 1).includes('.')) {
    const v4 = parseIpv4Bytes(body.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0)];
    body = body.slice(0, lastColon + 1);
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0] ?? '');
    const rest = parseGroups(halves[1] ?? '');
    if (head === undefined || rest === undefined) return undefined;
    const fill = IPV6_GROUPS - head.length - rest.length - tail.length;
    if (fill < 1) return undefined; // "::" stands for at least one zero group
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest, ...tail];
  } else {
    const all = parseGroups(body);
    if (all === undefined) return undefined;
    groups = [...all, ...tail];
    if (groups.length !== IPV6_GROUPS) return undefined;
  }
  const out = new Uint8Array(IPV6_LEN);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** parseIp parses an address of either family; it returns undefined for anything else. */
export function parseIp(text: string): { family: IpFamily; addr: Uint8Array } | undefined {
  if (text.includes(':')) {
    const addr = parseIpv6Bytes(text);
    return addr === undefined ? undefined : { family: 'v6', addr };
  }
  const addr = parseIpv4Bytes(text);
  return addr === undefined ? undefined : { family: 'v4', addr };
}

/** formatIp prints an address as glibc inet_ntop does. */
export function formatIp(family: IpFamily, addr: Uint8Array): string {
  if (family === 'v4') return Array.from(addr.subarray(0, IPV4_LEN)).join('.');
  const words: number[] = [];
  for (let i = 0; i < IPV6_GROUPS; i++) words.push(((addr[2 * i] ?? 0) << 8) | (addr[2 * i + 1] ?? 0));
  // First longest run of zero words, of length >= 2.
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < IPV6_GROUPS; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < IPV6_GROUPS && words[j] === 0) j++;
    if (j - i > bestLen) { bestBase = i; bestLen = j - i; }
    i = j;
  }
  if (bestLen < 2) { bestBase = -1; bestLen = 0; }
  // glibc prints an embedded IPv4 address for ::a.b.c.d and ::ffff:a.b.c.d.
  const embedded = bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff));
  let out = '';
  for (let i = 0; i < IPV6_GROUPS; i++) {
    if (i === bestBase) {
      out += ':';
      i += bestLen - 1;
      if (i === IPV6_GROUPS - 1) out += ':';
      continue;
    }
    if (i > 0) out += ':';
    if (i === 6 && embedded) {
      out += Array.from(addr.subarray(12, 16)).join('.');
      break;
    }
    out += (words[i] ?? 0).toString(16);
  }
  return out;
}

/** maskAddr returns a copy of addr with every bit after prefixLen cleared. */
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
