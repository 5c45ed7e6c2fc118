/**
 * gen-configs.ts: turns a lab topology into one espgate config (YAML, the format src/config
 * parses) per protected host, with fresh random AES-GCM-128 keys, plus a
 * Wireshark `esp_sa` UAT file (keys.uat) so tshark can decrypt the switch capture.
 *
 * generateLabConfigs is pure (randomness is injected); writeLabConfigs does the file I/O.
 *
 * SPIs: the SA from sender S to receiver R has SPI (S.index << 12) | R.index, e.g. alice (1) to
 * bob (2) is 0x1002 and bob to alice is 0x2001. That is unique per receiver (and in the whole
 * run), always >= 0x1001 (RFC 4303 reserves 1..255), and readable in a capture.
 *
 * Keying: 'static' writes `sa: { out, in }` per peer as above; 'ike' (the default,
 * DEFAULT_KEYING) writes `ike:` instead: one fresh pre-shared key per peering (both ends get the same),
 * identities = the ends' own outer addresses (localAddressOf: behind a NAT, the host's own
 * address, not the router's), plus any IkeTuning the caller gives (short lifetimes for rekey
 * tests, DPD). keys.uat then holds no records: IKE negotiates the keys.
 *
 * Endpoints: a peer's `endpoint` is its address as seen from this host (outerAddressOf): for a
 * peer behind a NAT, the router's address on the peering's segment.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { AddressFamily, LabHost, PrefixPair, Topology } from './topology.js';
import { findHost, localAddressOf, outerAddressOf, peersOf, peeringOf, protectedHosts } from './topology.js';
import type { Inbound } from '../src/netfilter/model.js';

/** AEAD_NAME is the config's name for AES-GCM with a 16-octet ICV (RFC 4106). */
export const AEAD_NAME = 'aes-gcm-16';

/** AES128_GCM_KEYMAT_BYTES is the key material of one AES-128-GCM SA: 16 key bytes || 4 salt bytes. */
export const AES128_GCM_KEYMAT_BYTES = 20;

/** MIN_SPI is the smallest SPI a config may use (RFC 4303 §2.1: 1..255 are reserved). */
export const MIN_SPI = 0x100;

/** SPI_SENDER_SHIFT places the sender's host index above the receiver's in an SPI. */
export const SPI_SENDER_SHIFT = 12;

/** LAB_TUN_NAME is the TUN interface every lab host uses. */
export const LAB_TUN_NAME = 'eg0';

/** LAB_QUEUE is the NFQUEUE number every lab host uses (one daemon per namespace). */
export const LAB_QUEUE = 0;

/** WIRESHARK_AES_GCM_16 is Wireshark's esp_sa UAT name for the AEAD (checked against tshark 4.0). */
export const WIRESHARK_AES_GCM_16 = 'AES-GCM with 16 octet ICV [RFC4106]';

/** SaConfig is one SA as the config file spells it. */
export interface SaConfig {
  readonly spi: string;
  readonly aead: typeof AEAD_NAME;
  readonly key: string;
}

/** Keying says how the lab configs key their peers: static SAs or IKEv2 with a pre-shared key. */
export type Keying = 'static' | 'ike';

/** KEYINGS is every Keying. */
export const KEYINGS: readonly Keying[] = ['static', 'ike'];

/**
 * DEFAULT_KEYING is the lab's keying when none is asked for: IKEv2, as in production (RFC 4106
 * §8.1 forbids AES-GCM with static keys). Static SAs stay one option away (`lab.sh configs
 * --static`, GenerateOptions.keying) for debugging and for tests that need known keys.
 */
export const DEFAULT_KEYING: Keying = 'ike';

/** IKE_PSK_BYTES is the size of each peering's random pre-shared key (written as 0x + hex). */
export const IKE_PSK_BYTES = 32;

/** IkeTuning is the part of a peer's `ike:` section a caller may set (the config contract's names and units: seconds). */
export interface IkeTuning {
  readonly initiate?: boolean;
  readonly ikeProposals?: readonly string[];
  readonly espProposals?: readonly string[];
  readonly pfs?: boolean;
  readonly dpdDelay?: number;
  readonly ikeLifetime?: number;
  readonly childLifetime?: number;
  readonly childLifetimeBytes?: number;
  readonly childLifetimePackets?: number;
}

/** IkePeerConfig is a peer's `ike:` section as the lab writes it. */
export interface IkePeerConfig extends IkeTuning {
  readonly psk: string;
  readonly localId: string;
  readonly remoteId: string;
}

/** PeerConfig is one `peers[]` entry: exactly one of `sa` (static keying) and `ike`. */
export interface PeerConfig {
  readonly name: string;
  readonly endpoint: string;
  readonly protect: readonly string[];
  readonly sa?: { readonly out: SaConfig; readonly in: SaConfig };
  readonly ike?: IkePeerConfig;
}

/** LabEspgateConfig is the config document written for one host (a subset of what the schema allows). */
export interface LabEspgateConfig {
  readonly name: string;
  readonly mode: 'host' | 'gateway';
  readonly tun: { readonly name: string };
  readonly inbound?: Inbound;
  readonly queue: number;
  readonly stateDir: string;
  readonly local: { readonly protect: readonly string[] };
  readonly prefixes: readonly PrefixPair[];
  readonly peers: readonly PeerConfig[];
}

/** LabSa is one direction of one peering: the SA `from` seals and `to` opens. */
export interface LabSa {
  readonly from: string;
  readonly to: string;
  readonly family: AddressFamily;
  /** src and dst are the outer (tunnel) addresses. */
  readonly src: string;
  readonly dst: string;
  readonly spi: number;
  /** keymat is key || salt (AES128_GCM_KEYMAT_BYTES). */
  readonly keymat: Uint8Array;
}

/** GeneratedConfig is one host's config, as a document and as YAML text. */
export interface GeneratedConfig {
  readonly host: string;
  /** path is where writeLabConfigs puts it: <runDir>/configs/<host>.yaml. */
  readonly path: string;
  readonly config: LabEspgateConfig;
  readonly yaml: string;
}

/** LabConfigSet is everything generated for one run. */
export interface LabConfigSet {
  readonly configs: readonly GeneratedConfig[];
  readonly sas: readonly LabSa[];
  /** psks: one per peering with keying 'ike' (empty for static keying). */
  readonly psks: readonly LabPsk[];
  /** uatPath is <runDir>/keys.uat; uat is its text. */
  readonly uatPath: string;
  readonly uat: string;
}

/** GenerateOptions chooses the outer address family, the keying and the source of key material. */
export interface GenerateOptions {
  /** outer is the family of the tunnel endpoints (default 4). */
  readonly outer?: AddressFamily;
  /** keying is 'static' or 'ike' (default DEFAULT_KEYING). */
  readonly keying?: Keying;
  /** inbound, when given, is written into every config (else the daemon's default, queue). */
  readonly inbound?: Inbound;
  /** ike is added to every peer's `ike:` section (keying 'ike' only). */
  readonly ike?: IkeTuning;
  /** ikeFor is added after `ike`, per host and peer name: ikeFor[host][peer] (keying 'ike' only). */
  readonly ikeFor?: Readonly<Record<string, Readonly<Record<string, IkeTuning>>>>;
  /** randomBytes returns n fresh random bytes (node:crypto randomBytes in production). */
  readonly randomBytes: (n: number) => Uint8Array;
}

/** LabPsk is one peering's pre-shared key and the identities of its ends. */
export interface LabPsk {
  readonly a: string;
  readonly b: string;
  /** psk is the key as the config writes it ("0x" + hex), also valid in strongSwan's secrets. */
  readonly psk: string;
  /** idA and idB are the ends' identities (their own outer addresses). */
  readonly idA: string;
  readonly idB: string;
}

/** spiFor returns the SPI of the SA from sender to receiver (see the file comment). */
export function spiFor(sender: LabHost, receiver: LabHost): number {
  return (sender.index << SPI_SENDER_SHIFT) | receiver.index;
}

/** formatSpi writes an SPI as the config does: "0x" and 8 hex digits. */
export function formatSpi(spi: number): string {
  return `0x${spi.toString(16).padStart(8, '0')}`;
}

/** formatKey writes key material as "0x" and lowercase hex. */
export function formatKey(keymat: Uint8Array): string {
  return `0x${Buffer.from(keymat.buffer, keymat.byteOffset, keymat.byteLength).toString('hex')}`;
}

/** configPath returns where a host's config lives in a run dir. */
export function configPath(runDir: string, host: string): string {
  return join(runDir, 'configs', `${host}.yaml`);
}

/** stateDirOf returns a host's espgate stateDir in a run dir. */
export function stateDirOf(runDir: string, host: string): string {
  return join(runDir, 'state', host);
}

/** uatPathOf returns the keys.uat path of a run dir. */
export function uatPathOf(runDir: string): string {
  return join(runDir, 'keys.uat');
}

/** renderUatLine renders one SA as a Wireshark esp_sa UAT record (the file format and `-o uat:esp_sa:` take the same). */
export function renderUatLine(sa: LabSa): string {
  const fields = [
    sa.family === 4 ? 'IPv4' : 'IPv6',
    sa.src,
    sa.dst,
    formatSpi(sa.spi),
    WIRESHARK_AES_GCM_16,
    formatKey(sa.keymat),
    'NULL',
    '',
  ];
  return fields.map((f) => `"${f}"`).join(',');
}

/** renderUat renders keys.uat: a comment header, then one record per SA (none with IKE keying). */
export function renderUat(topo: Topology, sas: readonly LabSa[], keying: Keying = 'static'): string {
  const header = [
    `# Wireshark esp_sa UAT for the espgate lab (topology ${topo.name}).`,
    '# Use: lab/lab.sh decode FILE, or copy to ~/.config/wireshark/esp_sa, or pass each line',
    '# as tshark -o \'uat:esp_sa:LINE\' together with -o esp.enable_encryption_decode:TRUE.',
  ];
  if (keying === 'ike') header.push('# keying: ike; the SAs are negotiated at run time, so there are no records here.');
  return [...header, ...sas.map(renderUatLine)].join('\n') + '\n';
}

/**
 * generateLabConfigs builds every protected host's config and the SA list for a run. Each peering
 * gets two SAs (one per direction) with independent key material; host A's `out` SA for B is B's
 * `in` SA for A. Throws Error when a peering's hosts lack an address of the outer family.
 */
export function generateLabConfigs(topo: Topology, runDir: string, options: GenerateOptions): LabConfigSet {
  const outer = options.outer ?? 4;
  const keying = options.keying ?? DEFAULT_KEYING;
  const draw = (n: number): Uint8Array => {
    const bytes = options.randomBytes(n);
    if (bytes.length !== n) throw new Error('randomBytes returned the wrong length');
    return Uint8Array.from(bytes);
  };
  const sas: LabSa[] = [];
  const psks: LabPsk[] = [];
  const saByPair = new Map<string, LabSa>();
  const pskByPair = new Map<string, LabPsk>();
  for (const p of topo.peerings) {
    if (keying === 'ike') {
      const psk: LabPsk = {
        a: p.a,
        b: p.b,
        psk: formatKey(draw(IKE_PSK_BYTES)),
        idA: localAddressOf(topo, p, p.a, outer),
        idB: localAddressOf(topo, p, p.b, outer),
      };
      psks.push(psk);
      pskByPair.set(`${p.a}>${p.b}`, psk);
      pskByPair.set(`${p.b}>${p.a}`, psk);
      continue;
    }
    for (const [from, to] of [[p.a, p.b], [p.b, p.a]] as const) {
      const sa: LabSa = {
        from,
        to,
        family: outer,
        src: outerAddressOf(topo, p, from, outer),
        dst: outerAddressOf(topo, p, to, outer),
        spi: spiFor(findHost(topo, from), findHost(topo, to)),
        keymat: draw(AES128_GCM_KEYMAT_BYTES),
      };
      sas.push(sa);
      saByPair.set(`${from}>${to}`, sa);
    }
  }
  const ikeConfig = (self: string, peer: string): IkePeerConfig => {
    const k = pskByPair.get(`${self}>${peer}`);
    if (k === undefined) throw new Error(`peering ${self}-${peer} has no key`);
    const selfIsA = k.a === self;
    return {
      psk: k.psk,
      localId: selfIsA ? k.idA : k.idB,
      remoteId: selfIsA ? k.idB : k.idA,
      ...options.ike,
      ...options.ikeFor?.[self]?.[peer],
    };
  };
  const saConfig = (sa: LabSa): SaConfig => ({ spi: formatSpi(sa.spi), aead: AEAD_NAME, key: formatKey(sa.keymat) });
  const configs: GeneratedConfig[] = protectedHosts(topo).map((h) => {
    const role = h.espgate;
    if (role === undefined) throw new Error(`host ${h.name} is not protected`);
    const peers: PeerConfig[] = peersOf(topo, h.name).map((peerName) => {
      const peer = findHost(topo, peerName);
      const peering = peeringOf(topo, h.name, peerName);
      if (peering === undefined || peer.espgate === undefined) throw new Error(`peering ${h.name}-${peerName} incomplete`);
      const base = {
        name: peerName,
        endpoint: outerAddressOf(topo, peering, peerName, outer),
        protect: [...peer.espgate.protect],
      };
      if (keying === 'ike') return { ...base, ike: ikeConfig(h.name, peerName) };
      const out = saByPair.get(`${h.name}>${peerName}`);
      const inb = saByPair.get(`${peerName}>${h.name}`);
      if (out === undefined || inb === undefined) throw new Error(`peering ${h.name}-${peerName} incomplete`);
      return { ...base, sa: { out: saConfig(out), in: saConfig(inb) } };
    });
    const config: LabEspgateConfig = {
      name: h.name,
      mode: role.mode,
      tun: { name: LAB_TUN_NAME },
      ...(options.inbound === undefined ? {} : { inbound: options.inbound }),
      queue: LAB_QUEUE,
      stateDir: stateDirOf(runDir, h.name),
      local: { protect: [...role.protect] },
      prefixes: role.prefixes.map((p) => ({ real: p.real, fake: p.fake })),
      peers,
    };
    const yaml =
      `# espgate config for ${h.name} in the lab (topology ${topo.name}), written by lab/gen-configs.ts.\n` +
      (keying === 'ike' ? '# Keying: IKEv2 with a pre-shared key per peering, random for this run only.\n' : '# Keys are random for this run only.\n') +
      stringify(config, { lineWidth: 0 });
    return { host: h.name, path: configPath(runDir, h.name), config, yaml };
  });
  return { configs, sas, psks, uatPath: uatPathOf(runDir), uat: renderUat(topo, sas, keying) };
}

/**
 * writeLabConfigs writes a LabConfigSet into its run dir (configs/, state/<host>/ and keys.uat,
 * all readable by the owner only) and returns the paths written. Overwrites earlier files.
 */
export function writeLabConfigs(set: LabConfigSet, runDir: string): string[] {
  mkdirSync(join(runDir, 'configs'), { recursive: true, mode: 0o700 });
  const written: string[] = [];
  for (const c of set.configs) {
    mkdirSync(c.config.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(c.path, c.yaml, { mode: 0o600 });
    written.push(c.path);
  }
  writeFileSync(set.uatPath, set.uat, { mode: 0o600 });
  written.push(set.uatPath);
  return written;
}
