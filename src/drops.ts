/**
 * drops.ts: every reason the data path may drop a packet. Drops are data: each one has a reason
 * and a counter (DropCounters), the way strongSwan returns a status instead of throwing.
 */

/** DROP_REASONS names every drop reason; the order is the order `espgate status` prints them in. */
export const DROP_REASONS = [
  // inbound ESP (RFC 4303 §3.4)
  'truncated',        // shorter than outer IP + ESP header + IV + ICV, or declared length disagrees
  'bad-outer',        // outer IP header invalid (version, header length, fragment of ESP)
  'unknown-spi',      // no inbound SA with this SPI
  'wrong-source',     // SA exists but the outer source is not that peer's endpoint
  'replay',           // sequence number already seen (inside the window)
  'too-old',          // sequence number left of the replay window
  'auth',             // ICV did not verify
  'bad-padding',      // pad length too large or padding bytes not 1,2,3,... (RFC 4303 §2.4)
  'bad-next-header',  // next header not 4 (IPv4) or 41 (IPv6); 59 (TFC dummy) is not a drop: openEsp returns 'dummy'
  'bad-inner',        // decrypted payload is not a valid IP packet of that version
  'policy',           // inner addresses are not that peer's protected prefixes / our own
  'unmapped',         // address not inside any configured real (or fake) prefix
  // outbound
  'no-peer',          // no peer protects the inner destination
  'no-sa',            // the peer has no usable outbound SA
  'seq-exhausted',    // the SA reached the end of its sequence space and refuses to send
  'seq-store',        // the next block of sequence numbers could not be reserved durably (disk): not sent
  'too-big',          // inner packet larger than the tunnel MTU (an ICMP error is sent back)
  // I/O
  'tun-write',        // TUN write failed (queue full, device gone)
  'send-error',       // raw socket send failed
] as const;

/** DropReason is one of DROP_REASONS. */
export type DropReason = (typeof DROP_REASONS)[number];

/** DropCounters counts drops by reason. Not safe for concurrent use across workers. */
export class DropCounters {
  readonly counts: Record<DropReason, number>;
  constructor() {
    this.counts = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  }
  /** add counts one drop (or n). */
  add(reason: DropReason, n = 1): void {
    this.counts[reason] += n;
  }
  /** total is the sum over all reasons. */
  total(): number {
    let t = 0;
    for (const r of DROP_REASONS) t += this.counts[r];
    return t;
  }
}
