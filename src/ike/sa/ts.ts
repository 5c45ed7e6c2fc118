/**
 * ts.ts: traffic selectors (RFC 7296 §2.9, §3.13.1) as the first Child SA negotiates them.
 *
 * espgate's policy is prefixes: the configured protected prefixes become TS_IPV4_ADDR_RANGE /
 * TS_IPV6_ADDR_RANGE selectors, any protocol (0), all ports (0-65535):
 *
 *   198.18.0.0/24  ->  [198.18.0.0 - 198.18.0.255]  proto 0  ports 0-65535
 *
 * The responder narrows (§2.9): each proposed selector is intersected with each selector of its
 * own policy, address range by address range, protocol (0 is a wildcard) and port range; the
 * non-empty intersections, without duplicates, are what it accepts. The initiator then checks
 * that each returned selector lies inside one it proposed (a responder may only narrow).
 * Selectors of other types (RawSelector, e.g. TS_SECLABEL) never match.
 *
 * Pure; addresses compare as unsigned big-endian byte strings of their family's length.
 */
import { GatewayError } from '../../errors.js';
import { formatCidr, formatIpAddress, maskByte, parseCidr } from '../../packet/address.js';
import type { Cidr } from '../../packet/address.js';
import { TS_TYPE } from '../constants.js';
import type { AddressRangeSelector, TrafficSelector } from '../payloads.js';

/** TS_PORT_MAX is the highest port; 0..TS_PORT_MAX means any port. */
export const TS_PORT_MAX = 0xffff;
/** TS_PROTOCOL_ANY is IP Protocol ID 0: any protocol. */
export const TS_PROTOCOL_ANY = 0;

/** selectorFromCidr is the address range selector covering a prefix, any protocol, all ports. */
export function selectorFromCidr(c: Cidr): AddressRangeSelector {
  const start = Uint8Array.from(c.bytes);
  const end = new Uint8Array(c.bytes.length);
  for (let i = 0; i < end.length; i++) end[i] = c.bytes[i] | (~maskByte(c.prefixLen, i) & 0xff);
  return {
    kind: 'range',
    tsType: c.family === 4 ? TS_TYPE.IPV4_ADDR_RANGE : TS_TYPE.IPV6_ADDR_RANGE,
    ipProtocol: TS_PROTOCOL_ANY,
    startPort: 0,
    endPort: TS_PORT_MAX,
    startAddress: start,
    endAddress: end,
  };
}

/** selectorsFromPrefixes parses CIDR text into selectors. Throws GatewayError ERR_CONFIG naming `what`. */
export function selectorsFromPrefixes(prefixes: readonly string[], what: string): AddressRangeSelector[] {
  if (prefixes.length === 0) throw new GatewayError('ERR_CONFIG', `${what}: at least one prefix is needed`);
  return prefixes.map((p) => {
    const r = parseCidr(p);
    if (!r.ok) throw new GatewayError('ERR_CONFIG', `${what}: ${r.message}`);
    return selectorFromCidr(r.cidr);
  });
}

/** compareBytes orders two byte strings of equal length as unsigned big-endian numbers. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

/** isWellFormed says whether a range selector has start <= end (addresses and ports) and matching address lengths. */
export function isWellFormed(s: AddressRangeSelector): boolean {
  const len = s.tsType === TS_TYPE.IPV4_ADDR_RANGE ? 4 : 16;
  return s.startAddress.length === len && s.endAddress.length === len &&
    compareBytes(s.startAddress, s.endAddress) <= 0 && s.startPort <= s.endPort;
}

/**
 * intersectSelectors is the selector matching exactly the traffic both a and b match, or
 * undefined when there is none (other family, protocols that differ, disjoint ranges).
 */
export function intersectSelectors(a: AddressRangeSelector, b: AddressRangeSelector): AddressRangeSelector | undefined {
  if (a.tsType !== b.tsType || !isWellFormed(a) || !isWellFormed(b)) return undefined;
  let proto: number;
  if (a.ipProtocol === TS_PROTOCOL_ANY) proto = b.ipProtocol;
  else if (b.ipProtocol === TS_PROTOCOL_ANY || b.ipProtocol === a.ipProtocol) proto = a.ipProtocol;
  else return undefined;
  const startPort = Math.max(a.startPort, b.startPort);
  const endPort = Math.min(a.endPort, b.endPort);
  if (startPort > endPort) return undefined;
  const start = compareBytes(a.startAddress, b.startAddress) >= 0 ? a.startAddress : b.startAddress;
  const end = compareBytes(a.endAddress, b.endAddress) <= 0 ? a.endAddress : b.endAddress;
  if (compareBytes(start, end) > 0) return undefined;
  return {
    kind: 'range', tsType: a.tsType, ipProtocol: proto, startPort, endPort,
    startAddress: Uint8Array.from(start), endAddress: Uint8Array.from(end),
  };
}

/** selectorContains says whether every packet inner matches also matches outer. */
export function selectorContains(outer: AddressRangeSelector, inner: AddressRangeSelector): boolean {
  if (outer.tsType !== inner.tsType || !isWellFormed(outer) || !isWellFormed(inner)) return false;
  if (outer.ipProtocol !== TS_PROTOCOL_ANY && outer.ipProtocol !== inner.ipProtocol) return false;
  return outer.startPort <= inner.startPort && inner.endPort <= outer.endPort &&
    compareBytes(outer.startAddress, inner.startAddress) <= 0 && compareBytes(inner.endAddress, outer.endAddress) <= 0;
}

/** selectorsEqual compares two range selectors field by field. */
export function selectorsEqual(a: AddressRangeSelector, b: AddressRangeSelector): boolean {
  return a.tsType === b.tsType && a.ipProtocol === b.ipProtocol && a.startPort === b.startPort && a.endPort === b.endPort &&
    a.startAddress.length === b.startAddress.length && compareBytes(a.startAddress, b.startAddress) === 0 &&
    a.endAddress.length === b.endAddress.length && compareBytes(a.endAddress, b.endAddress) === 0;
}

/**
 * narrowSelectors is the responder's narrowing (§2.9): every non-empty intersection of a
 * proposed selector with a policy selector, in the proposal's order, duplicates removed. An
 * empty result means TS_UNACCEPTABLE.
 */
export function narrowSelectors(proposed: readonly TrafficSelector[], policy: readonly AddressRangeSelector[]): AddressRangeSelector[] {
  const out: AddressRangeSelector[] = [];
  for (const p of proposed) {
    if (p.kind !== 'range') continue;
    for (const q of policy) {
      const x = intersectSelectors(p, q);
      if (x !== undefined && !out.some((o) => selectorsEqual(o, x))) out.push(x);
    }
  }
  return out;
}

/**
 * selectorsWithin is the initiator's check of a narrowed answer: non-empty, only range
 * selectors, each inside one of the selectors it proposed.
 */
export function selectorsWithin(answer: readonly TrafficSelector[], proposed: readonly AddressRangeSelector[]): answer is AddressRangeSelector[] {
  if (answer.length === 0) return false;
  return answer.every((a) => a.kind === 'range' && proposed.some((p) => selectorContains(p, a)));
}

/** formatSelector is one line for logs: the prefix when the range is one, else start-end; protocol and ports when narrowed. */
export function formatSelector(s: TrafficSelector): string {
  if (s.kind !== 'range') return `ts-type-${s.tsType}`;
  const family = s.tsType === TS_TYPE.IPV4_ADDR_RANGE ? 4 : 6;
  if (s.startAddress.length !== (family === 4 ? 4 : 16) || s.endAddress.length !== s.startAddress.length) return 'ts-malformed';
  const prefix = rangeAsPrefix(s, family);
  const addr = prefix ?? `${formatIpAddress(s.startAddress, 0, family)}-${formatIpAddress(s.endAddress, 0, family)}`;
  const proto = s.ipProtocol === TS_PROTOCOL_ANY ? '' : ` proto ${s.ipProtocol}`;
  const ports = s.startPort === 0 && s.endPort === TS_PORT_MAX ? '' : ` ports ${s.startPort}-${s.endPort}`;
  return addr + proto + ports;
}

/** rangeAsPrefix returns "network/len" when [start, end] is exactly one prefix. */
function rangeAsPrefix(s: AddressRangeSelector, family: 4 | 6): string | undefined {
  const n = s.startAddress.length;
  for (let len = 0; len <= n * 8; len++) {
    let ok = true;
    for (let i = 0; i < n && ok; i++) {
      const host = ~maskByte(len, i) & 0xff;
      ok = (s.startAddress[i] & host) === 0 && s.endAddress[i] === (s.startAddress[i] | host);
    }
    if (ok) return formatCidr({ family, bytes: s.startAddress, prefixLen: len });
  }
  return undefined;
}
