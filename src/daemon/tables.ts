/**
 * daemon/tables.ts: builds the data path's EngineTables from a Config. Pure apart from the
 * SaFactory (which may persist sequence reservations). On reload, SAs whose SPI and key did not
 * change are carried over from the previous tables, so their sequence and replay state survive.
 */
import { isIP } from 'node:net';
import type { Config } from '../config/load.js';
import { addrBytes } from '../config/load.js';
import { PrefixTable } from '../datapath/prefix-table.js';
import { newPeerRuntime } from '../datapath/engine.js';
import type { EngineTables, PeerRuntime } from '../datapath/engine.js';
import { OffsetMap } from '../steer/fake-offset.js';
import { Sadb } from '../esp/sadb.js';
import type { InboundSa, OutboundSa } from '../esp/sa.js';

/** SaConfig is one SA entry of the config. */
export type SaConfig = NonNullable<Config['peers'][number]['sa']>['out'];

/** SaFactory creates SA objects for one peer's static SAs. */
export interface SaFactory {
  outbound(peer: string, sa: SaConfig): OutboundSa;
  inbound(peer: string, endpoint: string, sa: SaConfig, replayWindow: number): InboundSa;
  /** sameKey tells whether an existing SA was made from this config entry (for reload). */
  sameKey(existing: OutboundSa | InboundSa, sa: SaConfig): boolean;
  /** flush makes persisted replay state durable (the daemon calls it once a second); returns errors. */
  flush?(): unknown[];
  /** flushAsync is flush off the event loop (the daemon's periodic flush); resolves with the errors. */
  flushAsync?(): Promise<unknown[]>;
  /** close releases files; called once on stop. */
  close?(): void;
}

function insertCidr<V>(t4: PrefixTable<V>, t6: PrefixTable<V>, cidr: string, v: V): void {
  const [addr = '', len = '0'] = cidr.split('/');
  (isIP(addr) === 6 ? t6 : t4).insert(addrBytes(addr), Number(len), v);
}

/**
 * buildTables makes fresh tables; `previous` lends its SAs to unchanged peers: static SAs whose
 * SPI and key did not change, and every SA of a peer that was keyed by IKE before
 * (`previousIkePeers`) and still is, with the same endpoint.
 */
export function buildTables(cfg: Config, sas: SaFactory, previous?: EngineTables, previousIkePeers?: ReadonlySet<string>): EngineTables {
  const offsets = new OffsetMap(cfg.prefixes.map((p) => ({ real: p.real, fake: p.fake })));
  const peerByDst4 = new PrefixTable<PeerRuntime>(4);
  const peerByDst6 = new PrefixTable<PeerRuntime>(6);
  const local4 = new PrefixTable<true>(4);
  const local6 = new PrefixTable<true>(6);
  const sadb = new Sadb();
  const peers = new Map<string, PeerRuntime>();
  for (const c of cfg.local.protect) insertCidr(local4, local6, c, true);

  for (const p of cfg.peers) {
    const old = previous?.peers.get(p.name);
    const sameEndpoint = old !== undefined && old.endpoint === p.endpoint;
    const oldOut = sameEndpoint ? previous?.sadb.outbound(p.name) : undefined;
    if (p.sa !== undefined) {
      const oldIn = sameEndpoint ? previous?.sadb.inbound(p.sa.in.spi) : undefined;
      sadb.setOutbound(p.name, oldOut !== undefined && sas.sameKey(oldOut, p.sa.out) ? oldOut : sas.outbound(p.name, p.sa.out));
      sadb.addInbound(oldIn !== undefined && oldIn.peer === p.name && sas.sameKey(oldIn, p.sa.in) ? oldIn : sas.inbound(p.name, p.endpoint, p.sa.in, p.replayWindow));
    } else if (p.ike !== undefined && sameEndpoint && previous !== undefined) {
      // IKE peer: its SAs live in the SADB only (the IKE driver installed them); a reload
      // carries them over untouched so that nothing negotiated is lost. An IKE peer whose
      // endpoint changed starts empty: the driver negotiates afresh.
      // Only if it was an IKE peer before: a peer switched from static keys keeps none of them.
      const wasIke = previousIkePeers?.has(p.name) ?? false;
      if (wasIke && oldOut !== undefined) sadb.setOutbound(p.name, oldOut);
      if (wasIke) for (const s of previous.sadb.inboundSas()) if (s.peer === p.name) sadb.addInbound(s);
    }
    const peer = newPeerRuntime(p.name, p.endpoint, isIP(p.endpoint) === 6 ? 6 : 4, old?.stats);
    for (const c of p.protect) {
      insertCidr(peer.protect4, peer.protect6, c, true);
      insertCidr(peerByDst4, peerByDst6, c, peer);
    }
    peers.set(p.name, peer);
  }
  return { offsets, peerByDst4, peerByDst6, local4, local6, sadb, peers };
}
