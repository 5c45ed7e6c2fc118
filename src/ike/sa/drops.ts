/**
 * drops.ts: every reason an IKE session drops a datagram without acting on it. Like the data
 * path's DropCounters (src/drops.ts), drops are data: a reason and a counter, never an
 * exception. A drop changes nothing in the session (RFC 7296 §2.21: unauthenticated errors
 * and garbage are discarded), except that the timers keep running.
 */

/** IKE_DROP_REASONS names every reason, in the order status prints them. */
export const IKE_DROP_REASONS = [
  'malformed',           // parseIkeMessage refused it (length, version, payload chain, a payload's layout)
  'wrong-spi',           // the IKE SPIs are not this SA's
  'wrong-flags',         // the I flag names the wrong original initiator
  'unexpected-exchange', // an exchange this state does not take (IKE_AUTH before IKE_SA_INIT, INFORMATIONAL half-open, ...)
  'unexpected-response', // a response with no request outstanding, or for another message ID or exchange
  'msgid-window',        // a request that is neither the next message ID nor a retransmission of the last one
  'bad-retransmit',      // message ID 0 again, but not the same IKE_SA_INIT request
  'sk-auth',             // the Encrypted payload is missing, truncated or does not authenticate
  'bad-init',            // an IKE_SA_INIT message that lacks a payload, repeats one, or answers with something not offered
  'bad-ke',              // KE data the DH group refuses (length, invalid point, zero shared secret)
  'bad-cookie',          // a COOKIE notify of a bad length, or one cookie round trip too many
  'ignored-invalid-ke',  // INVALID_KE_PAYLOAD naming a group not offered, the one sent, or after the one retry
  'closed',              // the IKE SA is closed: only retransmissions of the last request are answered
  'internal-error',      // a bug caught at the boundary; should stay 0 (tests assert it)
] as const;

/** IkeDropReason is one of IKE_DROP_REASONS. */
export type IkeDropReason = (typeof IKE_DROP_REASONS)[number];

/** IkeDropCounters counts drops by reason. */
export class IkeDropCounters {
  readonly counts: Record<IkeDropReason, number>;
  constructor() {
    this.counts = Object.fromEntries(IKE_DROP_REASONS.map((r) => [r, 0])) as Record<IkeDropReason, number>;
  }
  /** add counts one drop. */
  add(reason: IkeDropReason): void {
    this.counts[reason]++;
  }
  /** total is the sum over all reasons. */
  total(): number {
    let t = 0;
    for (const r of IKE_DROP_REASONS) t += this.counts[r];
    return t;
  }
}
