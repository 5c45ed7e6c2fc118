/**
 * daemon/ike-edges.ts: the real edges of the IKE driver (ike-driver.ts): UDP sockets on ports
 * 500 and 4500 (IkeTransport) and the engine's SADB (IkeSaSink). Child SAs are made through the
 * daemon's SaFactory, so their outbound sequence numbers are reserved on disk like those of
 * static SAs; a Child SA negotiated with NAT traversal (ChildSa.encap) installs an outbound SA
 * whose ESP the engine sends in UDP (RFC 3948).
 *
 *   port 500  socket ── datagram ──────────────────────────────► onMessage(…, localPort 500)
 *   port 4500 socket (io/udp-encap.ts) ── marker 0000 + IKE ───► onMessage(…, localPort 4500)
 *                                      ── 0xFF keepalive: dropped
 *                                      ── ESP ─────────────────► encap.onEsp (engine.handleUdpEsp)
 */
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { natKeepaliveTargets } from '../datapath/engine.js';
import type { Engine } from '../datapath/engine.js';
import type { Sadb } from '../esp/sadb.js';
import { openUdpEncap } from '../io/udp-encap.js';
import type { KeepaliveTimers, UdpEncapSocket } from '../io/udp-encap.js';
import type { ChildSa } from '../ike/sa/session.js';
import { IKE_PORT, NAT_T_PORT } from './ike-driver.js';
import type { IkeSaSink, IkeTransport } from './ike-driver.js';
import type { SaConfig, SaFactory } from './tables.js';

/** childSaConfig presents one direction of a Child SA as the SaFactory's config entry (AES-GCM-16, no ESN). */
export function childSaConfig(spi: number, keyMaterial: Uint8Array): SaConfig {
  return { spi, aead: 'aes-gcm-16', key: Buffer.from(keyMaterial), esn: false };
}

/**
 * sadbSink installs Child SAs into the SADB that `sadb()` returns at the time of the call (the
 * engine's current tables: a reload swaps them). replayWindow is the inbound window in packets.
 * An outbound SA gets the Child SA's UDP encapsulation (child.encap), if any; usage reports the
 * larger of the two directions' packets and bytes.
 */
export function sadbSink(sadb: () => Sadb, sas: SaFactory, replayWindow: (peer: string) => number): IkeSaSink {
  return {
    spiInUse: (spi) => sadb().inbound(spi) !== undefined,
    addInbound: (peer, endpoint, child: ChildSa) => {
      sadb().addInbound(sas.inbound(peer, endpoint, childSaConfig(child.inbound.spi, child.inbound.keyMaterial), replayWindow(peer)));
    },
    removeInbound: (spi) => { sadb().removeInbound(spi); },
    setOutbound: (peer, child) => {
      const db = sadb();
      if (child === undefined) { db.removeOutbound(peer); return; }
      // The same SA again with only a new UDP port (the peer's NAT rebound): update it in place.
      // A new OutboundSa would restart the sequence counter under the same key: GCM nonce reuse.
      const cur = db.outbound(peer);
      if (cur !== undefined && cur.spi === child.outbound.spi) {
        cur.encap = child.encap === undefined ? null : { remotePort: child.encap.remotePort };
        return;
      }
      db.setOutbound(peer, sas.outbound(peer, childSaConfig(child.outbound.spi, child.outbound.keyMaterial)), child.encap);
    },
    usage: (inboundSpi, outboundSpi) => {
      const db = sadb();
      const i = db.inbound(inboundSpi);
      const o = db.outboundBySpi(outboundSpi);
      if (i === undefined && o === undefined) return undefined;
      return {
        packets: Math.max(i?.stats.packets ?? 0, o?.stats.packets ?? 0),
        bytes: Math.max(i?.stats.bytes ?? 0, o?.stats.bytes ?? 0),
      };
    },
  };
}

/** UdpTransport is IkeTransport over UDP ports 500 and 4500, one socket of each per address family in use. */
export interface UdpTransport extends IkeTransport {
  /** port is the bound port of the first port-500 socket (IKE_PORT unless a test asked for 0). */
  readonly port: number;
  /** encap is the port-4500 socket: NAT-T IKE goes through it, and UDP-encapsulated ESP (engine). */
  readonly encap: UdpEncapSocket;
}

/** NAT_T_PEERS_MAX bounds the remembered (address, port) pairs heard on port 4500. */
export const NAT_T_PEERS_MAX = 4096;

/**
 * openUdpTransport binds UDP `port` (default 500) for each family in `families` and hands every
 * datagram to onMessage with localPort IKE_PORT; IKE on the port-4500 socket `encap` (opened
 * here on NAT_T_PORT, or on port 0 when `port` is 0, unless given) arrives with localPort
 * NAT_T_PORT, its non-ESP marker stripped. An encap socket opened here is closed with the
 * transport; one passed in belongs to the caller.
 *
 * send(bytes, address, toPort) follows the IkeTransport contract: to NAT_T_PORT it leaves from
 * port 4500 with the marker; so does a reply to an (address, port) last heard on port 4500
 * (a NAT in front of the peer maps its 4500 to another port); anything else leaves from port 500.
 * Rejects with the bind error (EADDRINUSE: another IKE daemon runs).
 */
export async function openUdpTransport(
  families: ReadonlySet<4 | 6>,
  onMessage: (bytes: Uint8Array, address: string, port: number, localPort: number) => void,
  port = IKE_PORT,
  bindAddress: { v4?: string; v6?: string } = {},
  encapSocket?: UdpEncapSocket,
): Promise<UdpTransport> {
  const sockets = new Map<4 | 6, Socket>();
  try {
    for (const fam of families) {
      const s = createSocket({ type: fam === 6 ? 'udp6' : 'udp4', ipv6Only: fam === 6 });
      sockets.set(fam, s);
      s.on('message', (msg, rinfo) => { onMessage(msg, rinfo.address, rinfo.port, IKE_PORT); });
      s.on('error', () => { /* a receive error loses a datagram; retransmission covers it */ });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(port, fam === 6 ? (bindAddress.v6 ?? '::') : (bindAddress.v4 ?? '0.0.0.0'), () => { s.off('error', reject); resolve(); });
      });
    }
  } catch (e) {
    for (const s of sockets.values()) s.close();
    throw e;
  }
  let encap: UdpEncapSocket;
  try {
    encap = encapSocket ?? await openUdpEncap(families, { port: port === 0 ? 0 : NAT_T_PORT, bind: bindAddress });
  } catch (e) {
    for (const s of sockets.values()) s.close();
    throw e;
  }
  const heardOn4500 = new Set<string>();
  encap.onIke = (bytes, address, fromPort) => {
    const key = `${address.toLowerCase()}|${fromPort}`;
    if (!heardOn4500.has(key)) {
      if (heardOn4500.size >= NAT_T_PEERS_MAX) heardOn4500.clear();
      heardOn4500.add(key);
    }
    onMessage(bytes, address, fromPort, NAT_T_PORT);
  };
  const first = sockets.values().next().value;
  return {
    port: first === undefined ? port : first.address().port,
    encap,
    send(bytes, address, toPort, localPort) {
      // The driver names the local port (the IKE SA's path); without it: port 4500, or a port
      // last heard on 4500 (a NAT-mapped peer port), goes through the NAT-T socket.
      const viaNatT = localPort !== undefined ? localPort === NAT_T_PORT : toPort === NAT_T_PORT || heardOn4500.has(`${address.toLowerCase()}|${toPort}`);
      if (viaNatT) {
        encap.sendIke(bytes, address, toPort);
        return;
      }
      const s = sockets.get(isIP(address) === 6 ? 6 : 4);
      s?.send(bytes, toPort, address);
    },
    close() {
      for (const s of sockets.values()) s.close();
      sockets.clear();
      encap.onIke = () => {};
      if (encapSocket === undefined) encap.close();
    },
  };
}

/**
 * wireUdpEncap connects a port-4500 socket (UdpTransport.encap) to the engine: encapsulated ESP
 * leaves through it, ESP arriving on it goes to engine.handleUdpEsp, and every 20 s a NAT
 * keepalive goes to each peer whose outbound SA is encapsulated (read from the engine's tables
 * of the moment, so reloads and rekeys are followed). Returns the undo; closing the socket also
 * stops the keepalives. `timers` replaces setInterval in tests.
 */
export function wireUdpEncap(encap: UdpEncapSocket, engine: Engine, timers?: KeepaliveTimers): () => void {
  engine.setUdpSender(encap);
  encap.onEsp = engine.handleUdpEsp;
  encap.startKeepalives(() => natKeepaliveTargets(engine.tables), undefined, timers);
  return () => {
    encap.stopKeepalives();
    encap.onEsp = () => {};
    engine.setUdpSender(undefined);
  };
}
