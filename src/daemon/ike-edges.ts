/**
 * daemon/ike-edges.ts: the real edges of the IKE driver (ike-driver.ts): UDP sockets on port
 * 500 (IkeTransport) and the engine's SADB (IkeSaSink). Child SAs are made through the daemon's
 * SaFactory, so their outbound sequence numbers are reserved on disk like those of static SAs.
 */
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { isIP } from 'node:net';
import type { Sadb } from '../esp/sadb.js';
import type { ChildSa } from '../ike/sa/session.js';
import { IKE_PORT } from './ike-driver.js';
import type { IkeSaSink, IkeTransport } from './ike-driver.js';
import type { SaConfig, SaFactory } from './tables.js';

/** childSaConfig presents one direction of a Child SA as the SaFactory's config entry (AES-GCM-16, no ESN). */
export function childSaConfig(spi: number, keyMaterial: Uint8Array): SaConfig {
  return { spi, aead: 'aes-gcm-16', key: Buffer.from(keyMaterial), esn: false };
}

/**
 * sadbSink installs Child SAs into the SADB that `sadb()` returns at the time of the call (the
 * engine's current tables: a reload swaps them). replayWindow is the inbound window in packets.
 */
export function sadbSink(sadb: () => Sadb, sas: SaFactory, replayWindow: (peer: string) => number): IkeSaSink {
  return {
    spiInUse: (spi) => sadb().inbound(spi) !== undefined,
    addInbound: (peer, endpoint, child: ChildSa) => {
      sadb().addInbound(sas.inbound(peer, endpoint, childSaConfig(child.inbound.spi, child.inbound.keyMaterial), replayWindow(peer)));
    },
    removeInbound: (spi) => { sadb().removeInbound(spi); },
    setOutbound: (peer, child) => {
      if (child === undefined) sadb().removeOutbound(peer);
      else sadb().setOutbound(peer, sas.outbound(peer, childSaConfig(child.outbound.spi, child.outbound.keyMaterial)));
    },
  };
}

/** UdpTransport is IkeTransport over one UDP socket per address family in use. */
export interface UdpTransport extends IkeTransport {
  /** port is the bound port of the first socket (IKE_PORT unless a test asked for 0). */
  readonly port: number;
}

/**
 * openUdpTransport binds UDP `port` (default 500) for each family in `families` and hands every
 * datagram to onMessage. Rejects with the bind error (EADDRINUSE: another IKE daemon runs).
 */
export async function openUdpTransport(
  families: ReadonlySet<4 | 6>,
  onMessage: (bytes: Uint8Array, address: string, port: number) => void,
  port = IKE_PORT,
  bindAddress: { v4?: string; v6?: string } = {},
): Promise<UdpTransport> {
  const sockets = new Map<4 | 6, Socket>();
  try {
    for (const fam of families) {
      const s = createSocket({ type: fam === 6 ? 'udp6' : 'udp4', ipv6Only: fam === 6 });
      sockets.set(fam, s);
      s.on('message', (msg, rinfo) => { onMessage(msg, rinfo.address, rinfo.port); });
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
  const first = sockets.values().next().value;
  return {
    port: first === undefined ? port : first.address().port,
    send(bytes, address, toPort) {
      const s = sockets.get(isIP(address) === 6 ? 6 : 4);
      s?.send(bytes, toPort, address);
    },
    close() {
      for (const s of sockets.values()) s.close();
      sockets.clear();
    },
  };
}
