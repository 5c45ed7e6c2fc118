/**
 * daemon/ike-config.ts: the config's `peers[].ike` sections as the IKE driver's peers
 * (IkeDriverPeer). Pure apart from reading `pskFile`; every mistake is a GatewayError
 * ERR_CONFIG naming the field, so `espgate check` and `up` report it before anything changes.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Config } from '../config/load.js';
import { PSK_MIN_LENGTH } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { DH_GROUP_CURVE25519, DH_GROUP_ECP256 } from '../ike/crypto/dh.js';
import { PRF_HMAC_SHA2_256 } from '../ike/crypto/prf.js';
import { parseIdentity } from '../ike/sa/identity.js';
import type { EspAlgorithms, IkeAlgorithms } from '../ike/sa/proposals.js';
import type { SkCipherName } from '../ike/sk.js';
import type { IkeDriverPeer } from './ike-driver.js';

/** IkePeerConfig is one peer of the config that is keyed by IKE. */
export type IkePeerConfig = Config['peers'][number] & { readonly ike: NonNullable<Config['peers'][number]['ike']> };

/** isIkePeer narrows a config peer to one keyed by IKE. */
export function isIkePeer(p: Config['peers'][number]): p is IkePeerConfig {
  return p.ike !== undefined;
}

const DH_BY_KEYWORD: Readonly<Record<string, number>> = { x25519: DH_GROUP_CURVE25519, curve25519: DH_GROUP_CURVE25519, ecp256: DH_GROUP_ECP256 };

/**
 * ikeAlgorithmsOf turns strongSwan-style proposal strings ("aes256gcm16-prfsha256-x25519") into
 * the algorithm lists the session offers and accepts: each list in first-mention order. (A
 * session offers one proposal with every listed transform, so any listed cipher combines with
 * any listed group; nothing unlisted is ever accepted.)
 */
export function ikeAlgorithmsOf(proposals: readonly string[]): IkeAlgorithms {
  const encryption: SkCipherName[] = [];
  const dhGroups: number[] = [];
  for (const p of proposals) {
    const [enc, prf, dh] = p.split('-');
    if ((enc !== 'aes256gcm16' && enc !== 'aes128gcm16') || prf !== 'prfsha256' || dh === undefined || DH_BY_KEYWORD[dh] === undefined) {
      throw new GatewayError('ERR_CONFIG', `IKE proposal "${p}" is not one of aes256gcm16|aes128gcm16-prfsha256-x25519|ecp256`);
    }
    if (!encryption.includes(enc)) encryption.push(enc);
    const g = DH_BY_KEYWORD[dh];
    if (!dhGroups.includes(g)) dhGroups.push(g);
  }
  return { encryption, prf: [PRF_HMAC_SHA2_256.id], dhGroups };
}

/** espAlgorithmsOf maps the config's ESP keywords to the ESP layer's AEAD names (the same words). */
export function espAlgorithmsOf(proposals: readonly ('aes256gcm16' | 'aes128gcm16')[]): EspAlgorithms {
  return { encryption: [...new Set(proposals)] };
}

/** pskBytes reads a psk value: 0x-hex octets, or text as its UTF-8 octets (strongSwan's rule). */
export function pskBytes(text: string): Uint8Array {
  return text.startsWith('0x') ? Uint8Array.from(Buffer.from(text.slice(2), 'hex')) : Uint8Array.from(Buffer.from(text, 'utf8'));
}

/**
 * readPskFile reads the first line of a PSK file. Refuses a file that others can read (the key
 * would not be secret) and one whose key is too short. `where` names the config field.
 */
export function readPskFile(path: string, where: string): Uint8Array {
  let text: string;
  try {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0) {
      throw new GatewayError('ERR_CONFIG', `${where}: ${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); fix: chmod 600 ${path}`);
    }
    text = (readFileSync(path, 'utf8').split('\n')[0] ?? '').trim();
  } catch (e) {
    if (GatewayError.isGatewayError(e)) throw e;
    throw new GatewayError('ERR_CONFIG', `${where}: cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (text.length < PSK_MIN_LENGTH) throw new GatewayError('ERR_CONFIG', `${where}: the key in ${path} is shorter than ${PSK_MIN_LENGTH} characters`);
  if (text.startsWith('0x') && !/^0x([0-9a-fA-F]{2})+$/.test(text)) throw new GatewayError('ERR_CONFIG', `${where}: the key in ${path} starts with 0x but is not hex octets`);
  return pskBytes(text);
}

/** ikePeersOf maps every IKE peer of the config to the driver's peer; throws GatewayError ERR_CONFIG. */
export function ikePeersOf(cfg: Config): IkeDriverPeer[] {
  const out: IkeDriverPeer[] = [];
  cfg.peers.forEach((p, i) => {
    if (!isIkePeer(p)) return;
    const k = p.ike;
    const where = `peers[${i}].ike`;
    const psk = k.psk !== undefined ? pskBytes(k.psk) : readPskFile(k.pskFile ?? '', `${where}.pskFile`);
    out.push({
      name: p.name,
      endpoint: p.endpoint,
      protect: p.protect,
      psk,
      ...(k.localId === undefined ? {} : { localId: parseIdentity(k.localId) }),
      ...(k.remoteId === undefined ? {} : { remoteId: parseIdentity(k.remoteId) }),
      initiate: k.initiate,
      ike: ikeAlgorithmsOf(k.ikeProposals),
      esp: espAlgorithmsOf(k.espProposals),
      pfs: k.pfs,
      dpdMs: k.dpdDelay * 1000,
      ikeLifetimeMs: k.ikeLifetime * 1000,
      childLifetimeMs: k.childLifetime * 1000,
      ...(k.childLifetimeBytes > 0 ? { childLifetimeBytes: k.childLifetimeBytes } : {}),
      ...(k.childLifetimePackets > 0 ? { childLifetimePackets: k.childLifetimePackets } : {}),
    });
  });
  return out;
}
