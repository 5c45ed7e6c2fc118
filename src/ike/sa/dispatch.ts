/**
 * dispatch.ts: which IKE SA a datagram is for, from its header alone (RFC 7296 §2.2, §3.1),
 * so a driver can keep its sessions in maps by its own SPI:
 *
 *   I flag  R flag  SPIr   exchange      -> route
 *   1       0       0      IKE_SA_INIT   'init-request': a new responder session, or the half-open
 *                                          one with this (remote address, port, SPIi) if any
 *                                          (a retransmission, or a retry with COOKIE / new KE)
 *   1       *       != 0   any           'responder': our SA as responder, key SPIr
 *   0       *       any    any           'initiator': our SA as initiator, key SPIi (an IKE_SA_INIT
 *                                          response carries a new SPIr, or 0 in an error answer)
 *   anything shorter than a header, or not version 2               -> 'drop'
 *
 * The session checks everything else (both SPIs, flags, message IDs) itself; this only picks it.
 * On UDP port 4500 the four-octet non-ESP marker comes first (RFC 3948 §2.2): strip it before.
 */
import { EXCHANGE } from '../constants.js';
import { IKE_MAJOR_VERSION, isIkeParseError, parseIkeHeader } from '../message.js';

/** IkeRoute says where a datagram goes. */
export type IkeRoute =
  | { readonly kind: 'init-request'; readonly spiI: bigint }
  | { readonly kind: 'responder'; readonly spi: bigint }
  | { readonly kind: 'initiator'; readonly spi: bigint }
  | { readonly kind: 'drop'; readonly reason: 'truncated' | 'bad-version' | 'zero-spi' };

/** routeIkeDatagram classifies the IKE message buf[off, off+len). Never throws. */
export function routeIkeDatagram(buf: Uint8Array, off: number, len: number): IkeRoute {
  const w = parseIkeHeader(buf, off, len);
  if (isIkeParseError(w)) return { kind: 'drop', reason: 'truncated' };
  if (w.majorVersion !== IKE_MAJOR_VERSION) return { kind: 'drop', reason: 'bad-version' };
  const h = w.header;
  if (h.spiI === 0n) return { kind: 'drop', reason: 'zero-spi' };
  if (!h.initiator) return { kind: 'initiator', spi: h.spiI };
  if (h.spiR === 0n) {
    return !h.response && h.exchangeType === EXCHANGE.IKE_SA_INIT ? { kind: 'init-request', spiI: h.spiI } : { kind: 'drop', reason: 'zero-spi' };
  }
  return { kind: 'responder', spi: h.spiR };
}
