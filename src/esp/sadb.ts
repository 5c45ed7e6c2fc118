/**
 * sadb.ts: the SA database (RFC 4301 §4.4.2). Inbound SAs are found by SPI in O(1) (one Map
 * lookup per packet), each with the outer source address its peer must send from; outbound
 * SAs are found by peer name. SAs are added and removed at run time (static config now, IKE
 * later); a rekey adds the new inbound SA next to the old one and swaps the outbound SA in
 * one call. An outbound SA may carry a UDP encapsulation (OutboundSa.encap, RFC 3948): the
 * engine then sends its ESP through the UDP 4500 socket instead of the raw socket.
 *
 * Like the SAs in it, an Sadb is used from the one thread that runs the data path.
 */
import { GatewayError } from '../errors.js';
import { parseIpAddress } from '../packet/address.js';
import { checkEncap } from './sa.js';
import type { InboundSa, OutboundSa, UdpEncap } from './sa.js';

/** Sadb holds the installed SAs. */
export class Sadb {
  readonly #inbound = new Map<number, InboundSa>();
  readonly #outbound = new Map<string, OutboundSa>();
  /** #outboundBySpi indexes the installed outbound SAs by SPI (usage queries, O(1)). */
  readonly #outboundBySpi = new Map<number, OutboundSa>();
  /**
   * onChange runs after every change to the installed SAs (IKE installs and removes them in
   * place, without new tables): the engine forgets what its express path learned about them.
   */
  onChange: (() => void) | undefined;

  /** addInbound installs sa under its SPI; throws GatewayError ERR_CONFIG if the SPI is taken. */
  addInbound(sa: InboundSa): void {
    if (this.#inbound.has(sa.spi)) {
      throw new GatewayError('ERR_CONFIG', `inbound SPI 0x${sa.spi.toString(16).padStart(8, '0')} is already installed`);
    }
    this.#inbound.set(sa.spi, sa);
    this.onChange?.();
  }

  /** removeInbound uninstalls the SA with this SPI; returns whether there was one. */
  removeInbound(spi: number): boolean {
    const had = this.#inbound.delete(spi);
    if (had) this.onChange?.();
    return had;
  }

  /** inbound returns the SA with this SPI, if installed. */
  inbound(spi: number): InboundSa | undefined {
    return this.#inbound.get(spi);
  }

  /**
   * lookupInbound is the data path's lookup: the SA for spi, 'unknown-spi' if none, or
   * 'wrong-source' if the outer source address at srcBuf[srcOff, +srcLen) is not its peer's.
   */
  lookupInbound(spi: number, srcBuf: Uint8Array, srcOff: number, srcLen: number): InboundSa | 'unknown-spi' | 'wrong-source' {
    const sa = this.#inbound.get(spi);
    if (sa === undefined) return 'unknown-spi';
    return sa.sourceMatches(srcBuf, srcOff, srcLen) ? sa : 'wrong-source';
  }

  /**
   * setOutbound makes sa the SA used to send to `peer`; returns the one it replaces, if any.
   * With `encap` the SA's ESP goes in UDP (sets sa.encap; without it sa.encap is left as made).
   */
  setOutbound(peer: string, sa: OutboundSa, encap?: UdpEncap): OutboundSa | undefined {
    if (encap !== undefined) sa.encap = checkEncap(encap);
    const old = this.#outbound.get(peer);
    this.#outbound.set(peer, sa);
    if (old !== undefined && this.#outboundBySpi.get(old.spi) === old) this.#outboundBySpi.delete(old.spi);
    this.#outboundBySpi.set(sa.spi, sa);
    this.onChange?.();
    return old;
  }

  /** removeOutbound stops sending to `peer`; returns whether it had an SA. */
  removeOutbound(peer: string): boolean {
    const old = this.#outbound.get(peer);
    if (old === undefined) return false;
    this.#outbound.delete(peer);
    if (this.#outboundBySpi.get(old.spi) === old) this.#outboundBySpi.delete(old.spi);
    this.onChange?.();
    return true;
  }

  /** outboundBySpi returns the installed outbound SA with this SPI, if any (Child SA usage). */
  outboundBySpi(spi: number): OutboundSa | undefined {
    return this.#outboundBySpi.get(spi);
  }

  /** outbound returns the SA used to send to `peer`, if any. */
  outbound(peer: string): OutboundSa | undefined {
    return this.#outbound.get(peer);
  }

  /** removePeer removes the peer's outbound SA and every inbound SA whose `peer` is it; returns how many. */
  removePeer(peer: string): number {
    let n = this.removeOutbound(peer) ? 1 : 0;
    for (const [spi, sa] of this.#inbound) {
      if (sa.peer === peer) {
        this.#inbound.delete(spi);
        n++;
      }
    }
    if (n > 0) this.onChange?.();
    return n;
  }

  /** inboundSas lists the installed inbound SAs (status output). */
  inboundSas(): InboundSa[] {
    return [...this.#inbound.values()];
  }

  /** outboundSas lists [peer, SA] pairs (status output). */
  outboundSas(): [string, OutboundSa][] {
    return [...this.#outbound.entries()];
  }
}

/**
 * parseOuterAddress turns a tunnel endpoint's text form (IPv4 or IPv6, packet/address.ts) into
 * the 4 or 16 bytes InboundSa.outerSource takes. Throws GatewayError ERR_CONFIG.
 */
export function parseOuterAddress(text: string): Uint8Array {
  const a = parseIpAddress(text);
  if (a === undefined) throw new GatewayError('ERR_CONFIG', `not an IP address: ${JSON.stringify(text)}`);
  return a.bytes;
}
