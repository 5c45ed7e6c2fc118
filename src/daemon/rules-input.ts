/**
 * daemon/rules-input.ts: what the rules installer needs from a Config (src/netfilter/model.ts
 * RulesInput): prefix pairs, every peer's protected prefixes and endpoints, split by family.
 */
import { isIP } from 'node:net';
import type { Config } from '../config/load.js';
import type { FamilyInput, RulesInput } from '../netfilter/model.js';

const famOf = (cidrOrAddr: string): 4 | 6 => (isIP(cidrOrAddr.split('/')[0] ?? '') === 6 ? 6 : 4);

/** rulesInputOf derives the rules installer's input from a config. */
export function rulesInputOf(cfg: Config): RulesInput {
  const fam = (f: 4 | 6): FamilyInput | undefined => {
    const pairs = cfg.prefixes.filter((p) => famOf(p.real) === f).map((p) => ({ real: p.real, fake: p.fake }));
    if (pairs.length === 0) return undefined;
    return {
      pairs,
      peerAddrs: cfg.peers.flatMap((p) => p.protect.filter((c) => famOf(c) === f)),
      endpoints: cfg.peers.map((p) => p.endpoint).filter((e) => famOf(e) === f),
    };
  };
  const v4 = fam(4);
  const v6 = fam(6);
  return {
    tun: cfg.tun.name,
    queueNum: cfg.queue,
    mode: cfg.mode,
    families: { ...(v4 === undefined ? {} : { v4 }), ...(v6 === undefined ? {} : { v6 }) },
    mssClamp: true,
    guard: cfg.guard,
    // IKE (and NAT-T on 4500) between us and the peer endpoints must pass the steering and the
    // guard when any peer is keyed by IKE; with static keys only, nothing but ESP is let through.
    ike: cfg.peers.some((p) => p.ike !== undefined),
    notrack: cfg.rules.espNotrack,
    inbound: cfg.inbound,
  };
}
