/**
 * cli/init.ts: `espgate init`: writes a commented config for each end of a two-host setup at
 * once, with fresh random keys and SPIs (like `wg genkey` plus a config template).
 *
 *   espgate init --local alice=198.18.0.1 --peer bob=198.18.0.2 \
 *                --prefix 198.18.0.0/24=198.19.0.0/24 [--prefix 2001:db8:0:1::/64=2001:db8:0:ff01::/64] \
 *                [--static] [--aes 128|256] [-o DIR] [--force]
 *
 * By default both ends are keyed by IKEv2 with one fresh pre-shared key (32 random octets,
 * hex): the SAs are negotiated, rekeyed and never static. With --static, each side's `out` SA
 * is the other side's `in` SA (for tests and debugging). Keys come from node:crypto's CSPRNG;
 * SPIs are random in 0x00010000..0xfffffffe and distinct. Both configs are parsed with the real
 * schema before anything is written, so init never writes a config `up` would refuse. Files are
 * created with mode 0600 (they hold keys) and never overwritten without --force.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { parseConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { parseIpAddress } from '../packet/address.js';

/** InitHost is one end: a name and its address (the tunnel endpoint and the protected address). */
export interface InitHost {
  readonly name: string;
  readonly address: string;
}

/** InitOptions say what to generate. */
export interface InitOptions {
  readonly local: InitHost;
  readonly peer: InitHost;
  /** prefixes are real=fake pairs covering both addresses (one per address family used). */
  readonly prefixes: readonly { readonly real: string; readonly fake: string }[];
  /** aesBits picks AES-128-GCM or AES-256-GCM. */
  readonly aesBits: 128 | 256;
  /** stateDir defaults to /var/lib/espgate. */
  readonly stateDir?: string;
  /** keying: 'ike' (default: IKEv2 with a fresh PSK) or 'static' (SAs with fresh keys). */
  readonly keying?: 'ike' | 'static';
}

/** INIT_PSK_OCTETS is the size of the pre-shared key init draws (256 bits). */
export const INIT_PSK_OCTETS = 32;

/** InitRandom is the randomness init uses (injected by tests). */
export interface InitRandom {
  bytes(n: number): Buffer;
  int(min: number, max: number): number;
}

const CSPRNG: InitRandom = { bytes: (n) => randomBytes(n), int: (min, max) => randomInt(min, max) };

/** SPI_RANGE: random SPIs come from [0x00010000, 0xffffffff) (below 256 is reserved; keep clear of small hand-picked ones). */
const SPI_MIN = 0x0001_0000;
const SPI_MAX_EXCLUSIVE = 0xffff_ffff;

/** parseHostArg parses "name=address". */
export function parseHostArg(what: string, text: string): InitHost {
  const m = /^([A-Za-z0-9_.-]{1,32})=(.+)$/.exec(text);
  if (m === null) throw new GatewayError('ERR_CONFIG', `--${what} must be NAME=ADDRESS (e.g. alice=198.18.0.1), got "${text}"`);
  const [, name = '', address = ''] = m;
  if (parseIpAddress(address) === undefined) throw new GatewayError('ERR_CONFIG', `--${what}: "${address}" is not an IPv4 or IPv6 address`);
  return { name, address };
}

/** parsePrefixArg parses "real=fake". */
export function parsePrefixArg(text: string): { real: string; fake: string } {
  const m = /^([^=]+)=([^=]+)$/.exec(text);
  if (m === null) throw new GatewayError('ERR_CONFIG', `--prefix must be REAL=FAKE (e.g. 198.18.0.0/24=198.19.0.0/24), got "${text}"`);
  return { real: m[1] ?? '', fake: m[2] ?? '' };
}

const hostPrefix = (address: string): string => `${address}/${address.includes(':') ? 128 : 32}`;
const hex = (b: Buffer): string => `0x${b.toString('hex')}`;
const spiHex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
const q = (s: string): string => JSON.stringify(s);

interface SaText {
  readonly spi: string;
  readonly key: string;
}

type Keying = { readonly kind: 'static'; readonly out: SaText; readonly inn: SaText } | { readonly kind: 'ike'; readonly psk: string; readonly initiate: boolean };

function keyingHeader(k: Keying, other: InitHost): string {
  if (k.kind === 'ike') {
    return `# Its twin for ${other.name} was written at the same time with the same pre-shared key:
# IKEv2 (RFC 7296) negotiates the ESP SAs, rekeys them and checks that the peer is alive.
# The key is secret: keep this file 0600 (or move it to a file and use pskFile).`;
  }
  return `# Its twin for ${other.name} was written at the same time: the two must stay mirrored
# (our sa.out is their sa.in and the other way round). Keys are secret: keep this file 0600.
#
# Static keys are for testing and debugging: RFC 4106 forbids AES-GCM with statically
# configured keys in production (espgate persists sequence numbers so a restart never reuses
# an IV, but a copied config or a restored backup would). Drop --static to use IKEv2.`;
}

function keyingBody(k: Keying): string {
  if (k.kind === 'ike') {
    return `    ike:
      psk: "${k.psk}"   # the same on both ends
      initiate: ${String(k.initiate)}   # both ends may start the IKE SA; true on both is fine
      # ikeProposals: [aes256gcm16-prfsha256-x25519, aes256gcm16-prfsha256-ecp256]
      # espProposals: [aes256gcm16, aes128gcm16]
      # dpdDelay: 30        # seconds of silence before a liveness check
      # childLifetime: 3600 # seconds between ESP rekeys
`;
  }
  return `    sa:
      out: { spi: "${k.out.spi}", aead: aes-gcm-16, key: "${k.out.key}" }   # what we send
      in:  { spi: "${k.inn.spi}", aead: aes-gcm-16, key: "${k.inn.key}" }   # what we accept
`;
}

function render(me: InitHost, other: InitHost, o: InitOptions, k: Keying): string {
  const fams = o.prefixes.map((p) => `  - { real: ${q(p.real)}, fake: ${q(p.fake)} }`).join('\n');
  return `# espgate config for ${me.name} (${me.address}), written by \`espgate init\`.
${keyingHeader(k, other)}
# Reference: docs/config.md. Check it with \`espgate check -c <this file>\`.
name: ${q(me.name)}
mode: host               # host: protect this host's own traffic (gateway: also forwarded LAN traffic)
tun: { name: eg0 }       # the TUN interface espgate creates
queue: 0                 # NFQUEUE number for inbound ESP (change it if another program uses 0)
stateDir: ${q(o.stateDir ?? '/var/lib/espgate')}
local:
  protect: [${q(hostPrefix(me.address))}]   # what peers may send to: this host's address
prefixes:                # real prefix -> fake prefix (same size, unused on your networks)
${fams}
peers:
  - name: ${q(other.name)}
    endpoint: ${q(other.address)}         # where ESP is sent, and where it must come from
    protect: [${q(hostPrefix(other.address))}]
${keyingBody(k)}`;
}

/** renderInitConfigs returns [local config text, peer config text]; both are validated. */
export function renderInitConfigs(o: InitOptions, rnd: InitRandom = CSPRNG): [string, string] {
  if (o.local.name === o.peer.name) throw new GatewayError('ERR_CONFIG', 'the two hosts need different names');
  if (o.local.address === o.peer.address) throw new GatewayError('ERR_CONFIG', 'the two hosts need different addresses');
  if ((o.keying ?? 'ike') === 'ike') {
    const psk = hex(rnd.bytes(INIT_PSK_OCTETS));
    const a = render(o.local, o.peer, o, { kind: 'ike', psk, initiate: true });
    const b = render(o.peer, o.local, o, { kind: 'ike', psk, initiate: true });
    parseConfig(a, `${o.local.name}.yaml`);
    parseConfig(b, `${o.peer.name}.yaml`);
    return [a, b];
  }
  const keyLen = o.aesBits / 8 + 4; // key || 4-byte salt
  const spiA = rnd.int(SPI_MIN, SPI_MAX_EXCLUSIVE);
  let spiB = rnd.int(SPI_MIN, SPI_MAX_EXCLUSIVE);
  for (let i = 0; spiB === spiA && i < 16; i++) spiB = rnd.int(SPI_MIN, SPI_MAX_EXCLUSIVE);
  if (spiB === spiA) throw new GatewayError('ERR_CONFIG', 'could not draw two distinct SPIs');
  const aToB: SaText = { spi: spiHex(spiA), key: hex(rnd.bytes(keyLen)) };
  const bToA: SaText = { spi: spiHex(spiB), key: hex(rnd.bytes(keyLen)) };
  const a = render(o.local, o.peer, o, { kind: 'static', out: aToB, inn: bToA });
  const b = render(o.peer, o.local, o, { kind: 'static', out: bToA, inn: aToB });
  // Validate with the real loader: a config init writes must be one `up` accepts.
  parseConfig(a, `${o.local.name}.yaml`);
  parseConfig(b, `${o.peer.name}.yaml`);
  return [a, b];
}

/** writeInitConfigs writes DIR/<name>.yaml for both hosts (0600); refuses to overwrite unless force. */
export function writeInitConfigs(dir: string, o: InitOptions, texts: readonly [string, string], force: boolean): string[] {
  const files = [join(dir, `${o.local.name}.yaml`), join(dir, `${o.peer.name}.yaml`)];
  if (!force) {
    const there = files.filter((f) => existsSync(f));
    if (there.length > 0) throw new GatewayError('ERR_CONFIG', `${there.join(', ')} already exist(s): not overwriting keys (use --force)`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  files.forEach((f, i) => {
    writeFileSync(f, texts[i] ?? '', { mode: 0o600, flag: force ? 'w' : 'wx' });
    chmodSync(f, 0o600); // an overwritten file keeps its old mode otherwise
  });
  return files;
}
