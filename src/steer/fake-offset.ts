/**
 * steer/fake-offset.ts: the real <-> fake address maths of the steering design.
 *
 * Traffic to a protected peer is steered by moving its address from a "real" prefix into a
 * "fake" prefix of the same length, keeping the host bits:
 *
 *      real 198.18.0.0/24   198.18.0.7  ──toFake──▶  198.19.0.7   fake 198.19.0.0/24
 *                                       ◀──toReal──
 *
 *   address = | prefix bits (replaced) | host bits (kept) |
 *
 * An OffsetMap holds a few such pairs (IPv4 and IPv6 mixed). It is built and validated once in
 * the control plane (throwing GatewayError 'ERR_PREFIX'); its per-packet methods read and write
 * addresses in place in a packet buffer, scan the pairs of one family linearly and allocate
 * nothing. Immutable after construction: safe to share between readers.
 */

import { GatewayError } from '../errors.js';
import { cidrsOverlap, formatCidr, formatIpAddress, maskByte, parseCidr, parseIpAddress } from '../packet/address.js';
import type { Cidr } from '../packet/address.js';
import type { IpFamily } from '../packet/offsets.js';

/** PrefixPair is one configured mapping: a real prefix and the fake prefix it is steered through. */
export interface PrefixPair {
  readonly real: string;
  readonly fake: string;
}

/** MappedPair is a validated pair, as the control plane lists it. */
export interface MappedPair {
  readonly family: IpFamily;
  readonly real: Cidr;
  readonly fake: Cidr;
  /** text is "real -> fake" in canonical form, for messages and status output. */
  readonly text: string;
}

/**
 * CompiledPair holds what a lookup needs, precomputed: the prefix bytes that are wholly network
 * (`fullBytes`) and the mask of the one byte that is part network, part host.
 */
class CompiledPair {
  readonly index: number;
  readonly addrLen: number;
  readonly fullBytes: number;
  /** partialMask is the network part of byte fullBytes; 0 when the prefix ends on a byte boundary. */
  readonly partialMask: number;
  readonly real: Uint8Array;
  readonly fake: Uint8Array;

  constructor(index: number, real: Cidr, fake: Cidr) {
    this.index = index;
    this.addrLen = real.bytes.length;
    this.fullBytes = real.prefixLen >> 3;
    this.partialMask = this.fullBytes < this.addrLen ? maskByte(real.prefixLen, this.fullBytes) : 0;
    // Own copies: the MappedPair objects handed out share nothing the lookups depend on.
    this.real = Uint8Array.from(real.bytes);
    this.fake = Uint8Array.from(fake.bytes);
  }
}

function matches(net: Uint8Array, full: number, partialMask: number, buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < full; i++) if (buf[off + i] !== net[i]) return false;
  return partialMask === 0 || (buf[off + full] & partialMask) === net[full];
}

function replacePrefix(net: Uint8Array, full: number, partialMask: number, buf: Uint8Array, off: number): void {
  for (let i = 0; i < full; i++) buf[off + i] = net[i];
  if (partialMask !== 0) buf[off + full] = (buf[off + full] & ~partialMask & 0xff) | net[full];
}

/** OffsetMap maps addresses between real and fake prefixes; see the file comment. */
export class OffsetMap {
  /** pairs are the validated pairs in configuration order; lookups return indexes into it. */
  readonly pairs: readonly MappedPair[];
  readonly #v4: readonly CompiledPair[];
  readonly #v6: readonly CompiledPair[];

  /**
   * The constructor validates every pair and throws GatewayError('ERR_PREFIX') naming the pair
   * when: a prefix does not parse or has host bits set; real and fake are of different families
   * or lengths; real and fake overlap; or either overlaps a prefix of another pair.
   */
  constructor(pairs: readonly PrefixPair[]) {
    const mapped: MappedPair[] = [];
    const v4: CompiledPair[] = [];
    const v6: CompiledPair[] = [];
    pairs.forEach((p, i) => {
      const name = `prefix pair ${i + 1} (real ${p.real}, fake ${p.fake})`;
      const real = parseCidr(p.real);
      if (!real.ok) throw new GatewayError('ERR_PREFIX', `${name}: real prefix ${real.message}`);
      const fake = parseCidr(p.fake);
      if (!fake.ok) throw new GatewayError('ERR_PREFIX', `${name}: fake prefix ${fake.message}`);
      const r = real.cidr;
      const f = fake.cidr;
      if (r.family !== f.family) {
        throw new GatewayError('ERR_PREFIX', `${name}: real is IPv${r.family} but fake is IPv${f.family}; both must be one family`);
      }
      if (r.prefixLen !== f.prefixLen) {
        throw new GatewayError('ERR_PREFIX', `${name}: real is a /${r.prefixLen} but fake is a /${f.prefixLen}; the lengths must be equal so host bits map one to one`);
      }
      if (cidrsOverlap(r, f)) throw new GatewayError('ERR_PREFIX', `${name}: real and fake prefixes overlap`);
      for (const [j, q] of mapped.entries()) {
        for (const [mine, a] of [['real', r], ['fake', f]] as const) {
          for (const [theirs, b] of [['real', q.real], ['fake', q.fake]] as const) {
            if (cidrsOverlap(a, b)) {
              throw new GatewayError('ERR_PREFIX', `${name}: ${mine} prefix ${formatCidr(a)} overlaps the ${theirs} prefix ${formatCidr(b)} of prefix pair ${j + 1} (${q.text})`);
            }
          }
        }
      }
      mapped.push({ family: r.family, real: r, fake: f, text: `${formatCidr(r)} -> ${formatCidr(f)}` });
      (r.family === 4 ? v4 : v6).push(new CompiledPair(i, r, f));
    });
    this.pairs = mapped;
    this.#v4 = v4;
    this.#v6 = v6;
  }

  /** indexOfReal is the index in `pairs` of the real prefix holding the address at buf[off], or -1. */
  indexOfReal(buf: Uint8Array, off: number, family: IpFamily): number {
    const list = family === 4 ? this.#v4 : this.#v6;
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (matches(c.real, c.fullBytes, c.partialMask, buf, off)) return c.index;
    }
    return -1;
  }

  /** indexOfFake is the index in `pairs` of the fake prefix holding the address at buf[off], or -1. */
  indexOfFake(buf: Uint8Array, off: number, family: IpFamily): number {
    const list = family === 4 ? this.#v4 : this.#v6;
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (matches(c.fake, c.fullBytes, c.partialMask, buf, off)) return c.index;
    }
    return -1;
  }

  /** isReal says whether the address at buf[off] lies in a real prefix. */
  isReal(buf: Uint8Array, off: number, family: IpFamily): boolean {
    return this.indexOfReal(buf, off, family) >= 0;
  }

  /** isFake says whether the address at buf[off] lies in a fake prefix. */
  isFake(buf: Uint8Array, off: number, family: IpFamily): boolean {
    return this.indexOfFake(buf, off, family) >= 0;
  }

  /**
   * toFake rewrites the address at buf[off] from its real prefix into the paired fake prefix, in
   * place. Returns false, leaving the bytes untouched, when it is in no real prefix.
   */
  toFake(buf: Uint8Array, off: number, family: IpFamily): boolean {
    const list = family === 4 ? this.#v4 : this.#v6;
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (matches(c.real, c.fullBytes, c.partialMask, buf, off)) {
        replacePrefix(c.fake, c.fullBytes, c.partialMask, buf, off);
        return true;
      }
    }
    return false;
  }

  /**
   * toReal rewrites the address at buf[off] from its fake prefix back into the paired real
   * prefix, in place. Returns false, leaving the bytes untouched, when it is in no fake prefix.
   */
  toReal(buf: Uint8Array, off: number, family: IpFamily): boolean {
    const list = family === 4 ? this.#v4 : this.#v6;
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (matches(c.fake, c.fullBytes, c.partialMask, buf, off)) {
        replacePrefix(c.real, c.fullBytes, c.partialMask, buf, off);
        return true;
      }
    }
    return false;
  }

  /**
   * mapToFake maps address text from a real prefix to its fake twin ('198.18.0.7' -> '198.19.0.7').
   * Control plane: throws GatewayError('ERR_PREFIX') for bad text or an address in no real prefix.
   */
  mapToFake(address: string): string {
    return this.#mapText(address, true);
  }

  /**
   * unmapFromFake maps address text from a fake prefix back to the real one ('198.19.0.7' ->
   * '198.18.0.7'). Throws GatewayError('ERR_PREFIX') for bad text or an address in no fake prefix.
   */
  unmapFromFake(address: string): string {
    return this.#mapText(address, false);
  }

  #mapText(address: string, toFake: boolean): string {
    const a = parseIpAddress(address);
    if (a === undefined) throw new GatewayError('ERR_PREFIX', `'${address}' is not an IPv4 or IPv6 address`);
    const b = a.bytes.slice();
    const ok = toFake ? this.toFake(b, 0, a.family) : this.toReal(b, 0, a.family);
    if (!ok) throw new GatewayError('ERR_PREFIX', `${address} is not inside any ${toFake ? 'real' : 'fake'} prefix`);
    return formatIpAddress(b, 0, a.family);
  }
}

