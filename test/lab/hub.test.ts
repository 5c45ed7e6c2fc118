/**
 * test/lab/hub.test.ts: espgate end to end in the `hub` lab with 8 clients (root only), with
 * IPv6 outer headers (configs --outer 6), so the tunnel's IPv6 transport is covered too.
 *
 *   server .1 ::1    c1 .2 ::2    c2 .3 ::3    ...    c8 .9 ::9
 *        |               |            |                   |
 *   =====+===============+============+==== br-lan (capture) ===+====
 *   every client is a peer of the server only; c1 <-> c2 stays in the clear.
 *
 * c1 <-> server carries the bulk transfers, ICMP errors and too-big pings; all eight clients
 * ping, use UDP, transfer 2 MB each at the same time and open 13 concurrent connections each.
 */
import { DEFAULT_HUB_CLIENTS } from '../../lab/topology.js';
import { gatewaySuite } from './suite.js';

const clients = Array.from({ length: DEFAULT_HUB_CLIENTS }, (_, i) => `c${i + 1}`);

gatewaySuite({
  title: `hub: a server and ${clients.length} clients, IPv6 outer headers`,
  topology: 'hub',
  clients: clients.length,
  outer: 6,
  // Raw ESP sockets (inbound: socket) here, where the outer headers are IPv6: the one suite that
  // runs the socket receiver end to end, the header it writes back for IPv6 included.
  inbound: 'socket',
  pairs: clients.map((c) => [c, 'server'] as const),
  clear: [['c1', 'c2']],
  many: { from: clients, to: 'server', perHost: 13 },
  fanIn: { from: clients, to: 'server', bytes: 2_000_000 },
});
