/**
 * config/schema.ts: the one documented config file, as a zod schema. docs/config.md is generated
 * from the `describe()` texts here (npm run docs:config), so the reference cannot drift.
 *
 * Everything is strict: an unknown field is an error that names its path.
 */
import { z } from 'zod';
import { isIP } from 'node:net';

const HEX_KEY_LENGTHS: Record<number, string> = { 40: 'AES-128-GCM', 72: 'AES-256-GCM' };

/** parseSpi accepts 0x-hex strings or integers. */
const spi = z
  .union([z.number().int(), z.string().regex(/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/, 'SPI must be an integer or a 0x-prefixed hex string')])
  .transform((v) => (typeof v === 'number' ? v : Number(v)))
  .refine((v) => v >= 256 && v <= 0xffffffff, 'SPI must be in 256..0xffffffff (RFC 4303 reserves 1..255)')
  .describe('Security Parameter Index: integer or "0x..." hex, 256..0xffffffff.');

const key = z
  .string()
  .regex(/^0x[0-9a-fA-F]+$/, 'key must be 0x followed by hex digits (key || 4-byte salt, as `ip xfrm state ... aead rfc4106(gcm(aes))` takes it)')
  .superRefine((v, ctx) => {
    if (HEX_KEY_LENGTHS[v.length - 2] === undefined) {
      ctx.addIssue({ code: 'custom', message: `key must have 40 hex digits (AES-128 key + salt) or 72 (AES-256 key + salt), got ${v.length - 2}` });
    }
  })
  .transform((v) => Buffer.from(v.slice(2), 'hex'))
  .describe('Key material in hex: the AES key followed by the 4-byte salt (RFC 4106), 40 or 72 hex digits after 0x.');

const address = z
  .string()
  .refine((v) => isIP(v) !== 0, 'not an IPv4 or IPv6 address')
  .describe('An IPv4 or IPv6 address.');

/** cidr validates the text form; host-bit and containment checks happen in validate.ts. */
const cidr = z
  .string()
  .refine((v) => {
    const [a, l, ...rest] = v.split('/');
    if (a === undefined || l === undefined || rest.length > 0 || !/^[0-9]{1,3}$/.test(l)) return false;
    const fam = isIP(a);
    const len = Number(l);
    return (fam === 4 && len <= 32) || (fam === 6 && len <= 128);
  }, 'not a prefix in CIDR form (address/length)')
  .describe('A prefix in CIDR form, e.g. 198.18.0.0/24 or 2001:db8::/64.');

const saSchema = z
  .strictObject({
    spi,
    aead: z.enum(['aes-gcm-16']).default('aes-gcm-16').describe('AEAD algorithm: aes-gcm-16 (RFC 4106, 16-byte ICV); key size follows the key length.'),
    key,
    esn: z.boolean().default(false).describe('Extended (64-bit) sequence numbers, RFC 4303 §2.2.1.'),
  })
  .describe('One static security association.');

/** IKE_PROPOSAL is a strongSwan-style IKE proposal keyword string that espgate implements. */
const IKE_PROPOSAL = /^(aes256gcm16|aes128gcm16)-prfsha256-(x25519|curve25519|ecp256)$/;

/** PSK_MIN_LENGTH: a shorter pre-shared key is refused (RFC 7296 §2.15 asks for high entropy). */
export const PSK_MIN_LENGTH = 16;

const psk = z
  .string()
  .min(PSK_MIN_LENGTH, `psk must have at least ${PSK_MIN_LENGTH} characters (or 0x and at least ${PSK_MIN_LENGTH} hex octets); \`espgate init\` makes one`)
  .refine((v) => !v.startsWith('0x') || (/^0x([0-9a-fA-F]{2})+$/.test(v) && v.length >= 2 + 2 * PSK_MIN_LENGTH), `a 0x psk must be hex octets, at least ${PSK_MIN_LENGTH} of them`)
  .describe('Pre-shared key: text (used as its UTF-8 octets, as strongSwan does) or 0x followed by hex octets; at least 16 characters/octets.');

const seconds = (what: string, dflt: number, min: number): z.ZodDefault<z.ZodNumber> =>
  z.number().int().min(min).max(365 * 86400).default(dflt).describe(what);

const ikeSchema = z
  .strictObject({
    psk: psk.optional(),
    pskFile: z.string().min(1).optional().describe('File holding the pre-shared key (first line; same rules as psk). Read at start and reload; keep it 0600.'),
    localId: z.string().min(1).optional().describe('Identity we present, strongSwan syntax: an address, @fqdn or @#hex key id. Default: our address towards the peer.'),
    remoteId: z.string().min(1).optional().describe('Identity the peer must present. Default: its endpoint address.'),
    initiate: z.boolean().default(true).describe('Start the IKE SA (and again after it closes); false: only answer.'),
    ikeProposals: z.array(z.string().regex(IKE_PROPOSAL, 'IKE proposal must be one of aes256gcm16|aes128gcm16 - prfsha256 - x25519|ecp256, e.g. aes256gcm16-prfsha256-x25519')).min(1)
      .default(['aes256gcm16-prfsha256-x25519', 'aes256gcm16-prfsha256-ecp256'])
      .describe('IKE SA proposals, most preferred first (strongSwan keywords). Nothing weaker than listed is accepted.'),
    espProposals: z.array(z.enum(['aes256gcm16', 'aes128gcm16'])).min(1).default(['aes256gcm16', 'aes128gcm16'])
      .describe('Child SA (ESP) AEADs, most preferred first.'),
    pfs: z.boolean().default(true).describe('Child SA rekeys carry a fresh Diffie-Hellman exchange in the IKE SA\'s group (perfect forward secrecy).'),
    dpdDelay: seconds('Seconds of silence from the peer before a liveness check (dead peer detection); 0 = off.', 30, 0),
    ikeLifetime: seconds('Seconds after which the IKE SA is rekeyed (make-before-break; a little earlier, with jitter).', 14400, 60),
    childLifetime: seconds('Seconds after which a Child SA is rekeyed (a little earlier, with jitter).', 3600, 10),
    childLifetimeBytes: z.number().int().min(0).default(0).describe('Rekey a Child SA after this many bytes; 0 = no limit.'),
    childLifetimePackets: z.number().int().min(0).default(0).describe('Rekey a Child SA after this many packets; 0 = no limit.'),
  })
  .superRefine((v, ctx) => {
    if ((v.psk === undefined) === (v.pskFile === undefined)) ctx.addIssue({ code: 'custom', message: 'give exactly one of psk or pskFile' });
  })
  .describe('IKEv2 (RFC 7296) negotiates this peer\'s SAs, authenticated with a pre-shared key.');

const peerSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,32}$/, 'peer name: 1-32 of A-Z a-z 0-9 _ . -').describe('Peer name, unique.'),
    endpoint: address.describe('The peer\'s outer (tunnel) address: where ESP is sent and where it must come from.'),
    protect: z.array(cidr).min(1).describe('The peer\'s protected inner prefixes (real addresses); each must lie inside some prefixes[].real.'),
    sa: z.strictObject({ out: saSchema, in: saSchema }).optional().describe('Static SAs: out = what we send (the peer\'s in), in = what we accept. For tests and debugging: RFC 4106 forbids AES-GCM with static keys. Exactly one of sa or ike.'),
    ike: ikeSchema.optional(),
    replayWindow: z.number().int().min(64).max(65536).refine((v) => v % 32 === 0, 'replayWindow must be a multiple of 32').default(1024)
      .describe('Anti-replay window size in packets (multiple of 32, 64..65536).'),
  })
  .superRefine((p, ctx) => {
    if ((p.sa === undefined) === (p.ike === undefined)) ctx.addIssue({ code: 'custom', message: 'a peer needs exactly one of sa (static keys) or ike (IKEv2)' });
  });

/** configSchema is the whole file. */
export const configSchema = z.strictObject({
  name: z.string().max(64).optional().describe('Label for logs and status.'),
  mode: z.enum(['host', 'gateway']).default('host').describe('host: protect this host\'s own traffic; gateway: also steer traffic forwarded from the LAN.'),
  tun: z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'interface name: 1-15 of A-Z a-z 0-9 _ . -').default('eg0').describe('TUN interface name.'),
    mtu: z.number().int().min(1280).max(9000).optional().describe('TUN MTU; default: outer link MTU minus the ESP overhead of the algorithm.'),
  }).prefault({}).describe('The TUN device.'),
  inbound: z.enum(['queue', 'socket']).default('queue')
    .describe('How inbound ESP reaches the daemon: queue (NFQUEUE in raw PREROUTING, before conntrack) or socket (raw ESP sockets after the input hooks; the rules notrack it and accept it in INPUT; needs neither nfnetlink_queue nor, with the nftables backend, iptables). docs/io.md has the measurements: queue is faster for small packets.'),
  queue: z.number().int().min(0).max(65535).default(0).describe('NFQUEUE number on which inbound ESP is taken (inbound: queue).'),
  stateDir: z.string().min(1).default('/var/lib/espgate').describe('Directory for sequence-number reservations, the lock file and the control socket.'),
  guard: z.boolean().default(true).describe('Fail-closed filter rules: drop cleartext to or from protected peers.'),
  rules: z.strictObject({
    backend: z.enum(['auto', 'iptables', 'nftables']).default('auto')
      .describe('Which tool installs the gate: iptables (iptables-restore, ipset), nftables (nft -f, one table of ours), or auto (nftables where nft and the kernel offer what the gate needs, else iptables).'),
    espNotrack: z.boolean().default(true)
      .describe('Exempt this host\'s own outbound ESP to peer endpoints from connection tracking (a raw-table rule): one conntrack lookup less per packet sent. Turn it off only if a firewall of yours matches our ESP by conntrack state.'),
  }).prefault({}).describe('How the gate (steering and guard rules) is installed.'),
  local: z.strictObject({
    protect: z.array(cidr).min(1).describe('Inner addresses that peers may send to: this host\'s addresses, or the LANs behind a gateway.'),
  }),
  prefixes: z.array(z.strictObject({ real: cidr, fake: cidr })).min(1)
    .describe('Real <-> fake offset maps: same family and length; the fake prefix is routed to the TUN.'),
  peers: z.array(peerSchema).min(1).describe('Protected peers.'),
  metrics: z.strictObject({
    listen: z.string()
      .regex(/^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost):\d{1,5}$/, 'metrics.listen must be a loopback address and port: 127.0.0.1:9469, [::1]:9469 or localhost:9469')
      .refine((v) => { const port = Number(v.slice(v.lastIndexOf(':') + 1)); return port >= 1 && port <= 65535; }, 'metrics.listen: port must be 1..65535')
      .describe('Loopback address and port of the Prometheus text endpoint (GET /metrics), e.g. 127.0.0.1:9469.'),
  }).optional().describe('Prometheus metrics endpoint; off unless set, and only on loopback.'),
});

/** RawConfig is the parsed file before semantic validation. */
export type RawConfig = z.output<typeof configSchema>;
