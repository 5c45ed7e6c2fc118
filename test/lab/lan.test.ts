/**
 * test/lab/lan.test.ts: espgate end to end in the `lan` lab (root only; skips otherwise).
 *
 *   alice 198.18.0.1   bob 198.18.0.2   carol 198.18.0.3   dave 198.18.0.4
 *   2001:db8:0:1::1    ...::2           ...::3             ...::4
 *        |                 |                |                  |
 *   =====+=================+===== br-lan (capture) ============+=====
 *   alice, bob and carol run espgate in host mode (full mesh); dave is no peer.
 *
 * alice <-> bob carries the bulk transfers, the ICMP errors and the too-big pings; carol pings
 * both so that every peering carries traffic; dave <-> alice must stay in the clear.
 */
import { gatewaySuite } from './suite.js';

gatewaySuite({
  title: 'lan: three peers in host mode, dave in the clear',
  topology: 'lan',
  pairs: [['alice', 'bob'], ['carol', 'alice'], ['bob', 'carol']],
  clear: [['dave', 'alice']],
  many: { from: ['alice'], to: 'bob', perHost: 100 },
});
