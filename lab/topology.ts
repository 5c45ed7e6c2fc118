/**
 * topology.ts: the pure description of the lab's network-namespace topologies: which hosts
 * exist, their interfaces and addresses, their routes, which pairs of hosts protect their traffic
 * with espgate, and the real <-> fake prefix maps. It is the one source of truth: lab.sh reads it
 * through `renderPlan` (via lab/cli.ts), gen-configs.ts turns it into espgate configs, and lab
 * tests import it to know addresses without parsing shell.
 *
 * Nothing here touches the system: no `node:` I/O, no clocks, no randomness.
 *
 * Addresses come only from 198.18.0.0/15 and 2001:db8::/32. 198.19.0.0/16 is reserved for fake
 * prefixes and is never assigned to an interface; IPv6 fake prefixes are 2001:db8:0:ffXX::/64.
 * IPv6 host ids repeat the IPv4 host number's decimal digits (198.18.0.10 <-> 2001:db8:0:1::10),
 * which is easy to read and valid for numbers up to 9999.
 *
 * Names: every namespace is `egl-<run>-<host>` (see namespaceName); the switch namespace is
 * `egl-<run>-sw` and holds one bridge per segment; a host's interface `ethN` is one end of a veth
 * pair whose other end, `<host>-eN`, is a port of that segment's bridge.
 */

/** TopologyName lists the lab's topologies. */
export type TopologyName = 'lan' | 'sites' | 'hub' | 'nat';

/** TOPOLOGY_NAMES is every TopologyName, in the order `lab.sh` documents them. */
export const TOPOLOGY_NAMES: readonly TopologyName[] = ['lan', 'sites', 'hub', 'nat'];

/** LAB_NS_PREFIX starts every lab namespace name; `lab.sh down --all-stale` looks for it. */
export const LAB_NS_PREFIX = 'egl-';

/** SWITCH_HOST is the host name of the switch namespace (bridges, the capture point). */
export const SWITCH_HOST = 'sw';

/** DEFAULT_HUB_CLIENTS is the number of hub clients when none is given. */
export const DEFAULT_HUB_CLIENTS = 8;

/** MAX_HUB_CLIENTS bounds `--clients`: clients are .2 .. .(N+1) of one /24. */
export const MAX_HUB_CLIENTS = 250;

/** IFNAMSIZ_MAX is the longest Linux interface name (IFNAMSIZ 16 minus the NUL). */
export const IFNAMSIZ_MAX = 15;

/** RUN_ID_PATTERN is what a run id may look like: short, lowercase, no '-' (namespace names split on it). */
export const RUN_ID_PATTERN = /^[a-z0-9]{1,12}$/;

/** HOST_NAME_PATTERN is what a host name may look like (no '-', short enough for `<host>-eN`). */
export const HOST_NAME_PATTERN = /^[a-z][a-z0-9]{0,9}$/;

/** AddressFamily is 4 or 6. */
export type AddressFamily = 4 | 6;

/** PrefixPair is one real <-> fake offset map, as in the config file's `prefixes` list. */
export interface PrefixPair {
  readonly real: string;
  readonly fake: string;
}

/** Segment is one layer-2 network: a bridge in the switch namespace with a v4 and a v6 prefix. */
export interface Segment {
  readonly name: string;
  /** bridge is the bridge's interface name inside the switch namespace. */
  readonly bridge: string;
  /** v4 is the segment's IPv4 prefix, e.g. "198.18.0.0/24". */
  readonly v4: string;
  /** v6 is the segment's IPv6 prefix, e.g. "2001:db8:0:1::/64". */
  readonly v6: string;
}

/** LabInterface is one host interface on one segment. Addresses are bare (no prefix length). */
export interface LabInterface {
  /** name is the interface name inside the host's namespace ("eth0", "eth1"). */
  readonly name: string;
  readonly segment: string;
  /** switchPort is the name of the veth peer inside the switch namespace ("alice-e0"). */
  readonly switchPort: string;
  readonly v4: string;
  readonly v6: string;
}

/** Route is one static route; `dst` is "default" or a prefix. */
export interface Route {
  readonly family: AddressFamily;
  readonly dst: string;
  readonly via: string;
}

/** EspgateRole says how a protected host runs espgate (the parts of its config the topology decides). */
export interface EspgateRole {
  readonly mode: 'host' | 'gateway';
  /** protect is the config's `local.protect`: our own addresses (host) or our LAN prefixes (gateway). */
  readonly protect: readonly string[];
  /** prefixes is the config's `prefixes`: the real <-> fake maps covering every peer's protect list. */
  readonly prefixes: readonly PrefixPair[];
}

/** LabHost is one namespace other than the switch. */
export interface LabHost {
  readonly name: string;
  /** index is the host's 1-based position in Topology.hosts; SPIs are built from it. */
  readonly index: number;
  /** forwarding is true on routers/gateways (ip_forward and IPv6 forwarding on). */
  readonly forwarding: boolean;
  readonly interfaces: readonly LabInterface[];
  readonly routes: readonly Route[];
  /** espgate is present on hosts that run espgate. */
  readonly espgate?: EspgateRole;
  /**
   * masquerade names the interfaces (of a forwarding host) whose outgoing forwarded traffic is
   * source-NATed to the interface's address, IPv4 and IPv6; new connections coming in on them
   * are not forwarded (a home router).
   */
  readonly masquerade?: readonly string[];
}

/** PeeringNat says that one end of a peering reaches the other only through a masquerading router. */
export interface PeeringNat {
  /** host is the end behind the NAT; its packets reach `segment` with the router's address. */
  readonly host: string;
  /** router masquerades its interface on the peering's segment. */
  readonly router: string;
}

/**
 * Peering is one pair of protected hosts. Their outer (tunnel) addresses are on `segment`, except
 * for the end named in `nat`, which sits on another segment behind `nat.router`: the other end
 * sees it as the router's address on `segment` (see outerAddressOf).
 */
export interface Peering {
  readonly a: string;
  readonly b: string;
  readonly segment: string;
  readonly nat?: PeeringNat;
}

/** Topology is one complete lab topology. */
export interface Topology {
  readonly name: TopologyName;
  readonly description: string;
  readonly segments: readonly Segment[];
  readonly hosts: readonly LabHost[];
  readonly peerings: readonly Peering[];
  /** captureSegment is the segment whose bridge `lab.sh capture` listens on by default. */
  readonly captureSegment: string;
}

/** TopologyOptions tunes a topology; only `hub` reads `clients`. */
export interface TopologyOptions {
  readonly clients?: number;
}

// ---------------------------------------------------------------------------------------------
// Address helpers (string maths on the lab's own, well-formed addresses).

/** v4Host returns the address with the last octet replaced in a /24 prefix ("198.18.0.0/24", 7 -> "198.18.0.7"). */
export function v4Host(prefix24: string, n: number): string {
  const base = prefix24.split('/')[0] ?? '';
  const octets = base.split('.');
  return `${octets[0]}.${octets[1]}.${octets[2]}.${n}`;
}

/** v6Host returns the address of host number n in a /64 written "x:x:x:x::/64" (n's decimal digits as the last group). */
export function v6Host(prefix64: string, n: number): string {
  const base = (prefix64.split('/')[0] ?? '').replace(/::$/, '');
  return `${base}::${n}`;
}

/** withLength appends a segment prefix's length to a bare address ("198.18.0.1", "198.18.0.0/24" -> "198.18.0.1/24"). */
export function withLength(address: string, prefix: string): string {
  return `${address}/${prefix.split('/')[1] ?? ''}`;
}

/** hostPrefix returns the single-address prefix of an address (/32 or /128). */
export function hostPrefix(address: string): string {
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}

/** familyOf returns 6 for an address or prefix containing ':' and 4 otherwise. */
export function familyOf(address: string): AddressFamily {
  return address.includes(':') ? 6 : 4;
}

// ---------------------------------------------------------------------------------------------
// Builders.

interface IfaceSpec {
  readonly segment: Segment;
  readonly n: number;
}

function makeInterfaces(host: string, specs: readonly IfaceSpec[]): LabInterface[] {
  return specs.map((s, i) => ({
    name: `eth${i}`,
    segment: s.segment.name,
    switchPort: `${host}-e${i}`,
    v4: v4Host(s.segment.v4, s.n),
    v6: v6Host(s.segment.v6, s.n),
  }));
}

function hostRole(seg: Segment, n: number, prefixes: readonly PrefixPair[]): EspgateRole {
  return {
    mode: 'host',
    protect: [hostPrefix(v4Host(seg.v4, n)), hostPrefix(v6Host(seg.v6, n))],
    prefixes,
  };
}

/** LAN_SEGMENT is the one segment of `lan` and `hub` (also the WAN of `sites`). */
const LAN_SEGMENT: Segment = { name: 'lan', bridge: 'br-lan', v4: '198.18.0.0/24', v6: '2001:db8:0:1::/64' };

/** LAN_PREFIXES maps LAN_SEGMENT to its fake twin. */
const LAN_PREFIXES: readonly PrefixPair[] = [
  { real: '198.18.0.0/24', fake: '198.19.0.0/24' },
  { real: '2001:db8:0:1::/64', fake: '2001:db8:0:ff01::/64' },
];

/**
 * lanTopology: four hosts on one bridge; alice, bob and carol protect their traffic to each other
 * (full mesh), dave is not a peer and talks in the clear.
 */
function lanTopology(): Topology {
  const seg = LAN_SEGMENT;
  const names: readonly [string, number, boolean][] = [
    ['alice', 1, true],
    ['bob', 2, true],
    ['carol', 3, true],
    ['dave', 4, false],
  ];
  const hosts: LabHost[] = names.map(([name, n, protectedHost], i) => {
    const base = {
      name,
      index: i + 1,
      forwarding: false,
      interfaces: makeInterfaces(name, [{ segment: seg, n }]),
      routes: [],
    };
    return protectedHost ? { ...base, espgate: hostRole(seg, n, LAN_PREFIXES) } : base;
  });
  return {
    name: 'lan',
    description: 'one bridge; alice, bob, carol protect their traffic to each other; dave is not a peer',
    segments: [seg],
    hosts,
    peerings: [
      { a: 'alice', b: 'bob', segment: seg.name },
      { a: 'alice', b: 'carol', segment: seg.name },
      { a: 'bob', b: 'carol', segment: seg.name },
    ],
    captureSegment: seg.name,
  };
}

/**
 * sitesTopology: two LANs joined by two gateways over a WAN. The gateways protect LAN-to-LAN
 * traffic only: each maps the other site's LAN to a fake prefix. The WAN addresses are the tunnel
 * endpoints and are not protected (gateway-to-gateway traffic stays in the clear), so there is
 * no WAN prefix pair.
 */
function sitesTopology(): Topology {
  const wan: Segment = { ...LAN_SEGMENT, name: 'wan', bridge: 'br-wan' };
  const lana: Segment = { name: 'lana', bridge: 'br-lana', v4: '198.18.1.0/24', v6: '2001:db8:0:a::/64' };
  const lanb: Segment = { name: 'lanb', bridge: 'br-lanb', v4: '198.18.2.0/24', v6: '2001:db8:0:b::/64' };
  const lanaPrefixes: readonly PrefixPair[] = [
    { real: lana.v4, fake: '198.19.1.0/24' },
    { real: lana.v6, fake: '2001:db8:0:ff0a::/64' },
  ];
  const lanbPrefixes: readonly PrefixPair[] = [
    { real: lanb.v4, fake: '198.19.2.0/24' },
    { real: lanb.v6, fake: '2001:db8:0:ff0b::/64' },
  ];
  const hosts: LabHost[] = [
    {
      name: 'a1',
      index: 1,
      forwarding: false,
      interfaces: makeInterfaces('a1', [{ segment: lana, n: 10 }]),
      routes: [
        { family: 4, dst: 'default', via: v4Host(lana.v4, 1) },
        { family: 6, dst: 'default', via: v6Host(lana.v6, 1) },
      ],
    },
    {
      name: 'gwa',
      index: 2,
      forwarding: true,
      interfaces: makeInterfaces('gwa', [{ segment: wan, n: 1 }, { segment: lana, n: 1 }]),
      routes: [
        { family: 4, dst: lanb.v4, via: v4Host(wan.v4, 2) },
        { family: 6, dst: lanb.v6, via: v6Host(wan.v6, 2) },
      ],
      espgate: { mode: 'gateway', protect: [lana.v4, lana.v6], prefixes: lanbPrefixes },
    },
    {
      name: 'gwb',
      index: 3,
      forwarding: true,
      interfaces: makeInterfaces('gwb', [{ segment: wan, n: 2 }, { segment: lanb, n: 1 }]),
      routes: [
        { family: 4, dst: lana.v4, via: v4Host(wan.v4, 1) },
        { family: 6, dst: lana.v6, via: v6Host(wan.v6, 1) },
      ],
      espgate: { mode: 'gateway', protect: [lanb.v4, lanb.v6], prefixes: lanaPrefixes },
    },
    {
      name: 'b1',
      index: 4,
      forwarding: false,
      interfaces: makeInterfaces('b1', [{ segment: lanb, n: 10 }]),
      routes: [
        { family: 4, dst: 'default', via: v4Host(lanb.v4, 1) },
        { family: 6, dst: 'default', via: v6Host(lanb.v6, 1) },
      ],
    },
  ];
  return {
    name: 'sites',
    description: 'lanA - gwa - WAN - gwb - lanB; the gateways protect LAN-to-LAN traffic',
    segments: [lana, wan, lanb],
    hosts,
    peerings: [{ a: 'gwa', b: 'gwb', segment: wan.name }],
    captureSegment: wan.name,
  };
}

/** hubTopology: a server (.1) and N clients (.2 ..) on one bridge; each client is a peer of the server only. */
function hubTopology(clients: number): Topology {
  const seg = LAN_SEGMENT;
  const hosts: LabHost[] = [
    {
      name: 'server',
      index: 1,
      forwarding: false,
      interfaces: makeInterfaces('server', [{ segment: seg, n: 1 }]),
      routes: [],
      espgate: hostRole(seg, 1, LAN_PREFIXES),
    },
  ];
  const peerings: Peering[] = [];
  for (let i = 1; i <= clients; i++) {
    const name = `c${i}`;
    hosts.push({
      name,
      index: i + 1,
      forwarding: false,
      interfaces: makeInterfaces(name, [{ segment: seg, n: i + 1 }]),
      routes: [],
      espgate: hostRole(seg, i + 1, LAN_PREFIXES),
    });
    peerings.push({ a: 'server', b: name, segment: seg.name });
  }
  return {
    name: 'hub',
    description: `a server and ${clients} clients on one bridge; each client is a peer of the server only`,
    segments: [seg],
    hosts,
    peerings,
    captureSegment: seg.name,
  };
}

/**
 * natTopology: `inside` sits on a home segment behind `router`, which masquerades everything it
 * forwards out of its WAN interface (IPv4 and IPv6) and forwards nothing new from the WAN in;
 * `outside` is on the WAN. The two protect their own addresses (host mode). `inside` sends to
 * `outside`'s address; `outside` sees `inside` only as the router's WAN address, so that is its
 * endpoint for `inside`. Both ends route everything else via the router (default routes), so
 * locally sent packets to the other's real address have a route before espgate steers them.
 *
 *     inside .3.10 --[home 198.18.3.0/24]-- .3.1 router .0.1 --[wan 198.18.0.0/24]-- .0.2 outside
 */
function natTopology(): Topology {
  const wan: Segment = { ...LAN_SEGMENT, name: 'wan', bridge: 'br-wan' };
  const home: Segment = { name: 'home', bridge: 'br-home', v4: '198.18.3.0/24', v6: '2001:db8:0:3::/64' };
  const wanPrefixes: readonly PrefixPair[] = LAN_PREFIXES;
  const homePrefixes: readonly PrefixPair[] = [
    { real: home.v4, fake: '198.19.3.0/24' },
    { real: home.v6, fake: '2001:db8:0:ff03::/64' },
  ];
  const hosts: LabHost[] = [
    {
      name: 'inside',
      index: 1,
      forwarding: false,
      interfaces: makeInterfaces('inside', [{ segment: home, n: 10 }]),
      routes: [
        { family: 4, dst: 'default', via: v4Host(home.v4, 1) },
        { family: 6, dst: 'default', via: v6Host(home.v6, 1) },
      ],
      espgate: hostRole(home, 10, wanPrefixes),
    },
    {
      name: 'router',
      index: 2,
      forwarding: true,
      interfaces: makeInterfaces('router', [{ segment: wan, n: 1 }, { segment: home, n: 1 }]),
      routes: [],
      masquerade: ['eth0'],
    },
    {
      name: 'outside',
      index: 3,
      forwarding: false,
      interfaces: makeInterfaces('outside', [{ segment: wan, n: 2 }]),
      routes: [
        { family: 4, dst: 'default', via: v4Host(wan.v4, 1) },
        { family: 6, dst: 'default', via: v6Host(wan.v6, 1) },
      ],
      espgate: hostRole(wan, 2, homePrefixes),
    },
  ];
  return {
    name: 'nat',
    description: 'inside - router (masquerade) - outside; the two ends protect their traffic across the NAT',
    segments: [wan, home],
    hosts,
    peerings: [{ a: 'inside', b: 'outside', segment: wan.name, nat: { host: 'inside', router: 'router' } }],
    captureSegment: wan.name,
  };
}

/** isTopologyName tells whether a string names a topology. */
export function isTopologyName(s: string): s is TopologyName {
  return (TOPOLOGY_NAMES as readonly string[]).includes(s);
}

/**
 * buildTopology returns the named topology. Throws RangeError on a client count outside
 * 1..MAX_HUB_CLIENTS. The result is checked by validateTopology before it is returned.
 */
export function buildTopology(name: TopologyName, options: TopologyOptions = {}): Topology {
  let topo: Topology;
  switch (name) {
    case 'lan':
      topo = lanTopology();
      break;
    case 'sites':
      topo = sitesTopology();
      break;
    case 'hub': {
      const clients = options.clients ?? DEFAULT_HUB_CLIENTS;
      if (!Number.isInteger(clients) || clients < 1 || clients > MAX_HUB_CLIENTS) {
        throw new RangeError(`hub clients must be an integer in 1..${MAX_HUB_CLIENTS}, got ${clients}`);
      }
      topo = hubTopology(clients);
      break;
    }
    case 'nat':
      topo = natTopology();
      break;
  }
  const problems = validateTopology(topo);
  if (problems.length > 0) throw new Error(`topology ${name} is inconsistent: ${problems.join('; ')}`);
  return topo;
}

// ---------------------------------------------------------------------------------------------
// Queries.

/** namespaceName returns the namespace of a host (or of the switch, SWITCH_HOST) in a run. */
export function namespaceName(run: string, host: string): string {
  return `${LAB_NS_PREFIX}${run}-${host}`;
}

/** findHost returns the named host; throws Error when the topology has none. */
export function findHost(topo: Topology, name: string): LabHost {
  const h = topo.hosts.find((x) => x.name === name);
  if (h === undefined) throw new Error(`topology ${topo.name} has no host ${name}`);
  return h;
}

/** findSegment returns the named segment; throws Error when the topology has none. */
export function findSegment(topo: Topology, name: string): Segment {
  const s = topo.segments.find((x) => x.name === name);
  if (s === undefined) throw new Error(`topology ${topo.name} has no segment ${name}`);
  return s;
}

/** interfaceOn returns the host's interface on a segment; throws Error when there is none. */
export function interfaceOn(host: LabHost, segment: string): LabInterface {
  const i = host.interfaces.find((x) => x.segment === segment);
  if (i === undefined) throw new Error(`host ${host.name} has no interface on ${segment}`);
  return i;
}

/** addressOf returns a host's address of one family on a segment (its first interface's when segment is omitted). */
export function addressOf(topo: Topology, host: string, family: AddressFamily, segment?: string): string {
  const h = findHost(topo, host);
  const iface = segment === undefined ? h.interfaces[0] : interfaceOn(h, segment);
  if (iface === undefined) throw new Error(`host ${host} has no interface`);
  return family === 4 ? iface.v4 : iface.v6;
}

/** peersOf returns the names of the hosts a host protects its traffic with, in peering order. */
export function peersOf(topo: Topology, host: string): string[] {
  const out: string[] = [];
  for (const p of topo.peerings) {
    if (p.a === host) out.push(p.b);
    else if (p.b === host) out.push(p.a);
  }
  return out;
}

/** peeringOf returns the peering of two hosts (either order), or undefined. */
export function peeringOf(topo: Topology, a: string, b: string): Peering | undefined {
  return topo.peerings.find((p) => (p.a === a && p.b === b) || (p.a === b && p.b === a));
}

/**
 * sharedSegment returns the name of the first segment two hosts both have an interface on (in
 * `a`'s interface order), or undefined.
 */
export function sharedSegment(topo: Topology, a: string, b: string): string | undefined {
  const hb = findHost(topo, b);
  return findHost(topo, a).interfaces.find((i) => hb.interfaces.some((j) => j.segment === i.segment))?.segment;
}

/**
 * localAddressOf returns the outer address a peering's end sends from: its own address on the
 * peering's segment or, for the end behind a NAT, on the segment it shares with the router.
 * This is also the identity the lab's IKE configs give the host (ids = addresses).
 */
export function localAddressOf(topo: Topology, p: Peering, host: string, family: AddressFamily): string {
  if (p.nat?.host === host) {
    const seg = sharedSegment(topo, host, p.nat.router);
    if (seg === undefined) throw new Error(`${host} shares no segment with ${p.nat.router}`);
    return addressOf(topo, host, family, seg);
  }
  return addressOf(topo, host, family, p.segment);
}

/**
 * outerAddressOf returns the address a peering's end has on the peering's segment, as the other
 * end and a capture there see it: the router's address for the end behind a NAT, else its own.
 * It is the other end's `endpoint` for this host.
 */
export function outerAddressOf(topo: Topology, p: Peering, host: string, family: AddressFamily): string {
  if (p.nat?.host === host) return addressOf(topo, p.nat.router, family, p.segment);
  return addressOf(topo, host, family, p.segment);
}

/** protectedHosts returns the hosts that run espgate, in host order. */
export function protectedHosts(topo: Topology): LabHost[] {
  return topo.hosts.filter((h) => h.espgate !== undefined);
}

// ---------------------------------------------------------------------------------------------
// Prefix maths, enough to validate the lab's own prefixes (not a general parser).

/** parseAddress returns an address as a bigint and its family; throws Error on anything else. */
export function parseAddress(address: string): { value: bigint; family: AddressFamily } {
  if (!address.includes(':')) {
    const parts = address.split('.');
    if (parts.length !== 4) throw new Error(`bad IPv4 address ${address}`);
    let v = 0n;
    for (const p of parts) {
      const n = Number(p);
      if (!/^\d{1,3}$/.test(p) || n > 255) throw new Error(`bad IPv4 address ${address}`);
      v = (v << 8n) | BigInt(n);
    }
    return { value: v, family: 4 };
  }
  const halves = address.split('::');
  if (halves.length > 2) throw new Error(`bad IPv6 address ${address}`);
  const left = halves[0] === '' || halves[0] === undefined ? [] : halves[0].split(':');
  const right = halves.length === 2 && halves[1] !== '' && halves[1] !== undefined ? halves[1].split(':') : [];
  const missing = 8 - left.length - right.length;
  if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) {
    throw new Error(`bad IPv6 address ${address}`);
  }
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...right];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`bad IPv6 address ${address}`);
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return { value: v, family: 6 };
}

/** ParsedPrefix is a prefix as numbers. */
export interface ParsedPrefix {
  readonly base: bigint;
  readonly length: number;
  readonly family: AddressFamily;
}

/** parsePrefix parses "a.b.c.d/n" or "x::/n"; throws Error when host bits are set or n is out of range. */
export function parsePrefix(prefix: string): ParsedPrefix {
  const [addr, len] = prefix.split('/');
  if (addr === undefined || len === undefined || !/^\d{1,3}$/.test(len)) throw new Error(`bad prefix ${prefix}`);
  const { value, family } = parseAddress(addr);
  const bits = family === 4 ? 32 : 128;
  const length = Number(len);
  if (length > bits) throw new Error(`bad prefix length in ${prefix}`);
  const hostMask = (1n << BigInt(bits - length)) - 1n;
  if ((value & hostMask) !== 0n) throw new Error(`prefix ${prefix} has host bits set`);
  return { base: value, length, family };
}

/** prefixContains tells whether `inner` (a prefix) lies within `outer` (a prefix) of the same family. */
export function prefixContains(outer: string, inner: string): boolean {
  const o = parsePrefix(outer);
  const i = parsePrefix(inner);
  if (o.family !== i.family || i.length < o.length) return false;
  const bits = o.family === 4 ? 32 : 128;
  const shift = BigInt(bits - o.length);
  return i.base >> shift === o.base >> shift;
}

/** addressInPrefix tells whether a bare address lies within a prefix. */
export function addressInPrefix(address: string, prefix: string): boolean {
  return prefixContains(prefix, hostPrefix(address));
}

const V4_LAB = '198.18.0.0/15';
const V4_FAKE = '198.19.0.0/16';
const V6_LAB = '2001:db8::/32';
const V6_FAKE_GROUP = /^2001:db8:0:ff[0-9a-f]{2}::\/64$/;

/**
 * validateTopology checks the rules every topology must keep and returns the problems found
 * (empty when none): allowed address ranges, no real address in the fake range, addresses inside
 * their segment, unique names and addresses, interface names short enough, peerings between
 * protected hosts on a shared segment, and every peer's protect list covered by a real prefix.
 */
export function validateTopology(topo: Topology): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  const segs = new Map(topo.segments.map((s) => [s.name, s]));
  for (const s of topo.segments) {
    if (!prefixContains(V4_LAB, s.v4) || prefixContains(V4_FAKE, s.v4)) problems.push(`segment ${s.name} v4 ${s.v4} outside 198.18.0.0/16`);
    if (!prefixContains(V6_LAB, s.v6)) problems.push(`segment ${s.name} v6 ${s.v6} outside 2001:db8::/32`);
    if (s.bridge.length > IFNAMSIZ_MAX) problems.push(`bridge name ${s.bridge} too long`);
  }
  if (!segs.has(topo.captureSegment)) problems.push(`capture segment ${topo.captureSegment} unknown`);
  topo.hosts.forEach((h, i) => {
    if (!HOST_NAME_PATTERN.test(h.name) || h.name === SWITCH_HOST) problems.push(`bad host name ${h.name}`);
    if (h.index !== i + 1) problems.push(`host ${h.name} index ${h.index} is not its position ${i + 1}`);
    if (seen.has(h.name)) problems.push(`duplicate host ${h.name}`);
    seen.add(h.name);
    for (const f of h.interfaces) {
      const s = segs.get(f.segment);
      if (s === undefined) {
        problems.push(`host ${h.name} ${f.name} on unknown segment ${f.segment}`);
        continue;
      }
      if (!addressInPrefix(f.v4, s.v4)) problems.push(`${h.name} ${f.v4} outside ${s.v4}`);
      if (!addressInPrefix(f.v6, s.v6)) problems.push(`${h.name} ${f.v6} outside ${s.v6}`);
      if (addressInPrefix(f.v4, V4_FAKE)) problems.push(`${h.name} ${f.v4} inside the fake range`);
      if (f.switchPort.length > IFNAMSIZ_MAX) problems.push(`port name ${f.switchPort} too long`);
      for (const a of [f.v4, f.v6]) {
        if (seen.has(a)) problems.push(`duplicate address ${a}`);
        seen.add(a);
      }
    }
    const e = h.espgate;
    if (e !== undefined) {
      for (const p of e.prefixes) {
        const real = parsePrefix(p.real);
        const fake = parsePrefix(p.fake);
        if (real.length !== fake.length || real.family !== fake.family) problems.push(`${h.name} prefix pair ${p.real} ${p.fake} differs in shape`);
        if (fake.family === 4 ? !prefixContains(V4_FAKE, p.fake) : !V6_FAKE_GROUP.test(p.fake)) problems.push(`${h.name} fake ${p.fake} outside the fake ranges`);
      }
    }
  });
  for (const h of topo.hosts) {
    for (const ifname of h.masquerade ?? []) {
      if (!h.forwarding) problems.push(`${h.name} masquerades ${ifname} but does not forward`);
      if (!h.interfaces.some((f) => f.name === ifname)) problems.push(`${h.name} masquerades unknown interface ${ifname}`);
    }
  }
  for (const p of topo.peerings) {
    const a = topo.hosts.find((h) => h.name === p.a);
    const b = topo.hosts.find((h) => h.name === p.b);
    if (a?.espgate === undefined || b?.espgate === undefined) {
      problems.push(`peering ${p.a}-${p.b} names a host without espgate`);
      continue;
    }
    if (p.nat !== undefined) problems.push(...validateNat(topo, p, p.nat));
    for (const [self, other] of [[a, b], [b, a]] as const) {
      if (p.nat?.host !== self.name && !self.interfaces.some((f) => f.segment === p.segment)) problems.push(`${self.name} not on ${p.segment}`);
      const realPrefixes = self.espgate?.prefixes.map((x) => x.real) ?? [];
      for (const covered of other.espgate?.protect ?? []) {
        if (!realPrefixes.some((r) => prefixContains(r, covered))) problems.push(`${self.name}: peer ${other.name} protect ${covered} outside every real prefix`);
      }
    }
  }
  return problems;
}

/**
 * validateNat checks a peering's NAT: the natted end is one of the two and is not on the
 * peering's segment, the router forwards, masquerades its interface on that segment and shares
 * a segment with the natted end, and the natted end's default routes (both families) go via the
 * router's address there.
 */
function validateNat(topo: Topology, p: Peering, nat: PeeringNat): string[] {
  const problems: string[] = [];
  const label = `peering ${p.a}-${p.b}`;
  if (nat.host !== p.a && nat.host !== p.b) return [`${label}: NAT host ${nat.host} is not an end`];
  const host = topo.hosts.find((h) => h.name === nat.host);
  const router = topo.hosts.find((h) => h.name === nat.router);
  if (host === undefined || router === undefined) return [`${label}: NAT router ${nat.router} unknown`];
  if (host.interfaces.some((f) => f.segment === p.segment)) problems.push(`${label}: ${host.name} is behind the NAT but on ${p.segment}`);
  const out = router.interfaces.find((f) => f.segment === p.segment);
  if (out === undefined) return [...problems, `${label}: router ${router.name} not on ${p.segment}`];
  if (!router.forwarding || !(router.masquerade ?? []).includes(out.name)) problems.push(`${label}: router ${router.name} does not masquerade ${out.name}`);
  const inner = router.interfaces.find((f) => host.interfaces.some((i) => i.segment === f.segment));
  if (inner === undefined) return [...problems, `${label}: ${host.name} shares no segment with ${router.name}`];
  for (const fam of [4, 6] as const) {
    const via = fam === 4 ? inner.v4 : inner.v6;
    if (!host.routes.some((r) => r.family === fam && r.dst === 'default' && r.via === via)) problems.push(`${label}: ${host.name} has no IPv${fam} default route via ${via}`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The plan that lab.sh executes.

/**
 * renderPlan returns the line-oriented plan lab.sh reads to build a topology. One record per
 * line, fields separated by single spaces, no field ever empty:
 *
 *     topology <name>
 *     capture <segment> <bridge>
 *     segment <name> <bridge> <v4-prefix> <v6-prefix>
 *     host <name> <index> <forwarding 0|1> <protected 0|1>
 *     link <host> <ifname> <segment> <bridge> <switch-port> <v4/len> <v6/len>
 *     route <host> <4|6> <dst|default> <via>
 *     masquerade <host> <ifname>
 *
 * Records come in that order (all segments, then all hosts, then links, routes, masquerades).
 */
export function renderPlan(topo: Topology): string {
  const lines: string[] = [`topology ${topo.name}`];
  const capture = findSegment(topo, topo.captureSegment);
  lines.push(`capture ${capture.name} ${capture.bridge}`);
  for (const s of topo.segments) lines.push(`segment ${s.name} ${s.bridge} ${s.v4} ${s.v6}`);
  for (const h of topo.hosts) {
    lines.push(`host ${h.name} ${h.index} ${h.forwarding ? 1 : 0} ${h.espgate === undefined ? 0 : 1}`);
  }
  for (const h of topo.hosts) {
    for (const f of h.interfaces) {
      const s = findSegment(topo, f.segment);
      lines.push(`link ${h.name} ${f.name} ${s.name} ${s.bridge} ${f.switchPort} ${withLength(f.v4, s.v4)} ${withLength(f.v6, s.v6)}`);
    }
  }
  for (const h of topo.hosts) {
    for (const r of h.routes) lines.push(`route ${h.name} ${r.family} ${r.dst} ${r.via}`);
  }
  for (const h of topo.hosts) {
    for (const ifname of h.masquerade ?? []) lines.push(`masquerade ${h.name} ${ifname}`);
  }
  return lines.join('\n') + '\n';
}
