// gen-configs.test.ts: the lab's config generator (no root needed).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../src/config/load.js';
import type { LabConfigSet, LabEspgateConfig, PeerConfig, SaConfig } from './gen-configs.js';
import {
  AES128_GCM_KEYMAT_BYTES,
  DEFAULT_KEYING,
  IKE_PSK_BYTES,
  MIN_SPI,
  WIRESHARK_AES_GCM_16,
  formatKey,
  formatSpi,
  generateLabConfigs,
  writeLabConfigs,
} from './gen-configs.js';
import type { AddressFamily, Topology, TopologyName } from './topology.js';
import { TOPOLOGY_NAMES, buildTopology, findHost, localAddressOf, outerAddressOf, parsePrefix, peeringOf, peersOf, prefixContains } from './topology.js';

const RUN_DIR = '/tmp/espgate-lab/unit';

interface Case {
  readonly n: number;
  readonly topology: TopologyName;
  readonly clients?: number;
  readonly outer: AddressFamily;
  /** hosts that must get a config, in order */
  readonly protectedHosts: readonly string[];
  readonly sas: number;
}

const CASES: readonly Case[] = [
  { n: 1, topology: 'lan', outer: 4, protectedHosts: ['alice', 'bob', 'carol'], sas: 6 },
  { n: 2, topology: 'lan', outer: 6, protectedHosts: ['alice', 'bob', 'carol'], sas: 6 },
  { n: 3, topology: 'sites', outer: 4, protectedHosts: ['gwa', 'gwb'], sas: 2 },
  { n: 4, topology: 'sites', outer: 6, protectedHosts: ['gwa', 'gwb'], sas: 2 },
  { n: 5, topology: 'hub', outer: 4, protectedHosts: ['server', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8'], sas: 16 },
  { n: 6, topology: 'hub', clients: 1, outer: 4, protectedHosts: ['server', 'c1'], sas: 2 },
  { n: 7, topology: 'hub', clients: 250, outer: 6, protectedHosts: ['server', ...Array.from({ length: 250 }, (_, i) => `c${i + 1}`)], sas: 500 },
  { n: 12, topology: 'nat', outer: 4, protectedHosts: ['inside', 'outside'], sas: 2 },
  { n: 13, topology: 'nat', outer: 6, protectedHosts: ['inside', 'outside'], sas: 2 },
];

function build(c: Case): { topo: Topology; set: LabConfigSet } {
  const topo = buildTopology(c.topology, c.clients === undefined ? {} : { clients: c.clients });
  const set = generateLabConfigs(topo, RUN_DIR, { outer: c.outer, keying: 'static', randomBytes: (n) => randomBytes(n) });
  return { topo, set };
}

function configOf(set: LabConfigSet, host: string): LabEspgateConfig {
  const c = set.configs.find((x) => x.host === host);
  assert.ok(c, `no config for ${host}`);
  return c.config;
}

function peerEntry(cfg: LabEspgateConfig, peer: string): LabEspgateConfig['peers'][number] {
  const p = cfg.peers.find((x) => x.name === peer);
  assert.ok(p, `${cfg.name} has no peer ${peer}`);
  return p;
}

/** saOf returns a statically keyed peer's SAs (failing the test when it has none). */
function saOf(p: PeerConfig): { readonly out: SaConfig; readonly in: SaConfig } {
  assert.ok(p.sa !== undefined && p.ike === undefined, `${p.name}: static SAs and no ike section`);
  return p.sa;
}

describe('generateLabConfigs', () => {
  for (const c of CASES) {
    const label = `case ${c.n}: ${c.topology}${c.clients === undefined ? '' : ` clients=${c.clients}`} outer=IPv${c.outer}`;

    it(`${label}: one config per protected host, with the fixed lab settings`, () => {
      const { set } = build(c);
      assert.deepEqual(set.configs.map((x) => x.host), c.protectedHosts);
      for (const g of set.configs) {
        assert.equal(g.path, join(RUN_DIR, 'configs', `${g.host}.yaml`));
        assert.equal(g.config.stateDir, join(RUN_DIR, 'state', g.host));
        assert.equal(g.config.tun.name, 'eg0');
        assert.equal(g.config.queue, 0);
        assert.equal(g.config.mode, c.topology === 'sites' ? 'gateway' : 'host');
      }
      assert.equal(set.sas.length, c.sas);
    });

    it(`${label}: A's out SA for B is B's in SA for A, and the reverse`, () => {
      const { topo, set } = build(c);
      let checked = 0;
      for (const g of set.configs) {
        assert.deepEqual(g.config.peers.map((p) => p.name), peersOf(topo, g.host));
        for (const p of g.config.peers) {
          const back = saOf(peerEntry(configOf(set, p.name), g.host));
          const sa = saOf(p);
          assert.deepEqual(sa.out, back.in, `${g.host}->${p.name}`);
          assert.deepEqual(sa.in, back.out, `${p.name}->${g.host}`);
          assert.notEqual(sa.out.key, sa.in.key, 'the two directions share a key');
          assert.notEqual(sa.out.spi, sa.in.spi);
          checked++;
        }
      }
      assert.equal(checked, c.sas);
    });

    it(`${label}: inbound SPIs unique per receiver (and per run), all >= 0x100`, () => {
      const { set } = build(c);
      const all = new Set<string>();
      for (const g of set.configs) {
        const inbound = g.config.peers.map((p) => saOf(p).in.spi);
        assert.equal(new Set(inbound).size, inbound.length, `${g.host} has a duplicate inbound SPI`);
        for (const spi of inbound) {
          assert.match(spi, /^0x[0-9a-f]{8}$/);
          assert.ok(Number.parseInt(spi, 16) >= MIN_SPI, `${spi} < 0x100`);
          all.add(spi);
        }
      }
      assert.equal(all.size, c.sas);
    });

    it(`${label}: every protected prefix lies within a configured real prefix; pairs have one shape`, () => {
      const { topo, set } = build(c);
      for (const g of set.configs) {
        const reals = g.config.prefixes.map((p) => p.real);
        for (const pair of g.config.prefixes) {
          const real = parsePrefix(pair.real);
          const fake = parsePrefix(pair.fake);
          assert.equal(real.length, fake.length);
          assert.equal(real.family, fake.family);
          assert.ok(!prefixContains(pair.real, pair.fake) && !prefixContains(pair.fake, pair.real), 'real and fake overlap');
          if (fake.family === 4) assert.ok(prefixContains('198.19.0.0/16', pair.fake), pair.fake);
          else assert.match(pair.fake, /^2001:db8:0:ff[0-9a-f]{2}::\/64$/);
        }
        for (const p of g.config.peers) {
          for (const prefix of p.protect) {
            assert.ok(reals.some((r) => prefixContains(r, prefix)), `${g.host}: ${p.name} protect ${prefix} not inside ${reals.join(',')}`);
          }
          // The endpoint is the peer's address on the peering's segment (its router's, behind a NAT), of the outer family.
          assert.equal(p.endpoint.includes(':'), c.outer === 6);
          const peering = peeringOf(topo, g.host, p.name);
          assert.ok(peering !== undefined);
          assert.equal(p.endpoint, outerAddressOf(topo, peering, p.name, c.outer));
        }
        // local.protect covers this host's own addresses (host mode) or its LAN (gateway mode).
        const self = findHost(topo, g.host);
        for (const iface of self.interfaces) {
          const own = [iface.v4, iface.v6].filter((a) => g.config.local.protect.some((pr) => prefixContains(pr, a.includes(':') ? `${a}/128` : `${a}/32`)));
          if (g.config.mode === 'host') assert.equal(own.length, 2, `${g.host} does not protect ${iface.v4}/${iface.v6}`);
        }
      }
    });

    it(`${label}: the YAML parses back to the same document, SPIs and keys as strings`, () => {
      const { set } = build(c);
      for (const g of set.configs) {
        const doc: unknown = parse(g.yaml);
        assert.deepEqual(doc, JSON.parse(JSON.stringify(g.config)));
        for (const p of g.config.peers) {
          for (const sa of [saOf(p).out, saOf(p).in]) {
            assert.equal(sa.aead, 'aes-gcm-16');
            assert.match(sa.key, /^0x[0-9a-f]{40}$/);
          }
        }
      }
    });

    it(`${label}: keys.uat has one Wireshark record per SA matching the configs`, () => {
      const { set } = build(c);
      const records = set.uat.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      assert.equal(records.length, c.sas);
      for (const line of records) {
        const m = /^"(IPv4|IPv6)","([^"]+)","([^"]+)","(0x[0-9a-f]{8})","([^"]+)","(0x[0-9a-f]{40})","NULL",""$/.exec(line);
        assert.ok(m, `bad UAT line ${line}`);
        const [, proto, src, dst, spi, alg, key] = m;
        assert.equal(proto, c.outer === 4 ? 'IPv4' : 'IPv6');
        assert.equal(alg, WIRESHARK_AES_GCM_16);
        // The receiver (dst endpoint) holds this SPI/key as an inbound SA from the sender.
        const receiver = set.configs.find((g) => g.config.peers.some((p) => p.endpoint === src && saOf(p).in.spi === spi));
        assert.ok(receiver, `no receiver for ${line}`);
        const fromPeer = receiver.config.peers.find((p) => p.endpoint === src);
        assert.ok(fromPeer !== undefined);
        assert.equal(saOf(fromPeer).in.key, key);
        const sender = configOf(set, fromPeer.name);
        assert.ok(sender.peers.some((p) => p.endpoint === dst && saOf(p).out.spi === spi));
      }
    });
  }

  it('case 8: key material comes from the injected source, 20 bytes per SA, in order', () => {
    let calls = 0;
    const topo = buildTopology('lan');
    const set = generateLabConfigs(topo, RUN_DIR, {
      keying: 'static',
      randomBytes: (n) => {
        assert.equal(n, AES128_GCM_KEYMAT_BYTES);
        calls++;
        return new Uint8Array(n).fill(calls);
      },
    });
    assert.equal(calls, 6);
    // First peering alice-bob: alice->bob is drawn first, bob->alice second.
    const aliceBob = peerEntry(configOf(set, 'alice'), 'bob');
    assert.equal(saOf(aliceBob).out.key, `0x${'01'.repeat(20)}`);
    assert.equal(saOf(aliceBob).in.key, `0x${'02'.repeat(20)}`);
    assert.equal(saOf(aliceBob).out.spi, '0x00001002');
    assert.equal(saOf(aliceBob).in.spi, '0x00002001');
    assert.equal(aliceBob.endpoint, '198.18.0.2');
  });

  it('case 9: a short random source is refused', () => {
    assert.throws(() => generateLabConfigs(buildTopology('lan'), RUN_DIR, { keying: 'static', randomBytes: () => new Uint8Array(16) }));
  });

  it('case 10: formatKey honours a subarray with a non-zero byteOffset; formatSpi pads to 8 digits', () => {
    const backing = Uint8Array.from([0xff, 0xff, 0x01, 0x02, 0xab, 0xff]);
    assert.equal(formatKey(backing.subarray(2, 5)), '0x0102ab');
    assert.equal(formatSpi(0x100), '0x00000100');
    assert.equal(formatSpi(0xfe0ff), '0x000fe0ff');
  });

  it('case 11: two generations draw different keys', () => {
    const a = build(CASES[0]).set;
    const b = build(CASES[0]).set;
    assert.notEqual(a.uat, b.uat);
    assert.deepEqual(a.sas.map((s) => s.spi), b.sas.map((s) => s.spi));
  });
});

describe('generateLabConfigs with IKE keying', () => {
  const topologies: readonly [number, Topology][] = [
    ...TOPOLOGY_NAMES.map((n, i) => [i + 1, buildTopology(n, n === 'hub' ? { clients: 3 } : {})] as [number, Topology]),
  ];
  for (const [n, topo] of topologies) {
    for (const outer of [4, 6] as const) {
      it(`case ${n}.${outer}: ${topo.name} outer=IPv${outer}: ike sections pair up, one PSK per peering, ids = own addresses, no static SAs`, () => {
        const set = generateLabConfigs(topo, RUN_DIR, { outer, keying: 'ike', randomBytes: (k) => randomBytes(k) });
        assert.equal(set.sas.length, 0);
        assert.equal(set.psks.length, topo.peerings.length);
        assert.equal(new Set(set.psks.map((k) => k.psk)).size, set.psks.length, 'every peering has its own PSK');
        assert.equal(set.uat.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length, 0, 'keys.uat has no records');
        for (const g of set.configs) {
          for (const p of g.config.peers) {
            const ike = p.ike;
            assert.ok(ike !== undefined && p.sa === undefined, `${g.host}->${p.name}: ike and no sa`);
            const back = peerEntry(configOf(set, p.name), g.host).ike;
            assert.ok(back !== undefined);
            assert.equal(ike.psk, back.psk, 'both ends hold the same PSK');
            assert.match(ike.psk, new RegExp(`^0x[0-9a-f]{${2 * IKE_PSK_BYTES}}$`));
            assert.equal(ike.localId, back.remoteId);
            assert.equal(ike.remoteId, back.localId);
            const peering = peeringOf(topo, g.host, p.name);
            assert.ok(peering !== undefined);
            assert.equal(ike.localId, localAddressOf(topo, peering, g.host, outer));
            assert.equal(ike.remoteId, localAddressOf(topo, peering, p.name, outer));
            assert.equal(p.endpoint, outerAddressOf(topo, peering, p.name, outer));
            assert.deepEqual(Object.keys(ike).sort(), ['localId', 'psk', 'remoteId'], 'nothing but the keys and ids unless asked');
          }
        }
      });
    }
  }

  it('case 4b: IKE is the default keying: no `keying` gives ike sections and an empty keys.uat', () => {
    assert.equal(DEFAULT_KEYING, 'ike');
    const set = generateLabConfigs(buildTopology('sites'), RUN_DIR, { randomBytes: (k) => randomBytes(k) });
    assert.equal(set.sas.length, 0);
    assert.ok(set.configs.every((g) => g.config.peers.every((p) => p.ike !== undefined && p.sa === undefined)));
  });

  it('case 5: nat: the outside end knows inside by the router\'s address but by inside\'s own id', () => {
    const set = generateLabConfigs(buildTopology('nat'), RUN_DIR, { keying: 'ike', randomBytes: (k) => randomBytes(k) });
    const out = peerEntry(configOf(set, 'outside'), 'inside');
    const ins = peerEntry(configOf(set, 'inside'), 'outside');
    assert.equal(out.endpoint, '198.18.0.1');
    assert.equal(out.ike?.remoteId, '198.18.3.10');
    assert.equal(out.ike?.localId, '198.18.0.2');
    assert.equal(ins.endpoint, '198.18.0.2');
    assert.equal(ins.ike?.localId, '198.18.3.10');
  });

  it('case 6: tuning: `ike` goes to every peer, `ikeFor` to one direction only, after `ike`', () => {
    const set = generateLabConfigs(buildTopology('lan'), RUN_DIR, {
      keying: 'ike',
      ike: { childLifetime: 20, dpdDelay: 5, pfs: true },
      ikeFor: { bob: { alice: { initiate: false, dpdDelay: 7 } } },
      randomBytes: (k) => randomBytes(k),
    });
    const ba = peerEntry(configOf(set, 'bob'), 'alice').ike;
    const ab = peerEntry(configOf(set, 'alice'), 'bob').ike;
    const bc = peerEntry(configOf(set, 'bob'), 'carol').ike;
    assert.deepEqual([ba?.initiate, ba?.dpdDelay, ba?.childLifetime], [false, 7, 20]);
    assert.deepEqual([ab?.initiate, ab?.dpdDelay, ab?.childLifetime, ab?.pfs], [undefined, 5, 20, true]);
    assert.deepEqual([bc?.initiate, bc?.dpdDelay], [undefined, 5]);
  });

  it('case 7: key material: one IKE_PSK_BYTES draw per peering, in peering order', () => {
    let calls = 0;
    const set = generateLabConfigs(buildTopology('lan'), RUN_DIR, {
      keying: 'ike',
      randomBytes: (k) => {
        assert.equal(k, IKE_PSK_BYTES);
        calls++;
        return new Uint8Array(k).fill(calls);
      },
    });
    assert.equal(calls, 3);
    assert.equal(peerEntry(configOf(set, 'carol'), 'bob').ike?.psk, `0x${'03'.repeat(IKE_PSK_BYTES)}`);
  });

  it('case 8: the YAML round-trips and is accepted by espgate\'s own config parser (both keyings, every topology)', () => {
    for (const name of TOPOLOGY_NAMES) {
      for (const keying of ['static', 'ike'] as const) {
        const set = generateLabConfigs(buildTopology(name, name === 'hub' ? { clients: 3 } : {}), RUN_DIR, {
          keying,
          ike: { childLifetime: 20, dpdDelay: 5 },
          randomBytes: (k) => randomBytes(k),
        });
        for (const g of set.configs) {
          assert.deepEqual(parse(g.yaml), JSON.parse(JSON.stringify(g.config)));
          const cfg = parseConfig(g.yaml, g.path);
          assert.equal(cfg.peers.length, g.config.peers.length, `${name} ${keying} ${g.host}`);
        }
      }
    }
  });
});

describe('writeLabConfigs', () => {
  it('case 1: writes configs, state dirs and keys.uat (owner-only) that read back unchanged', () => {
    const dir = mkdtempSync(join(tmpdir(), 'egl-unit-'));
    try {
      const topo = buildTopology('sites');
      const set = generateLabConfigs(topo, dir, { keying: 'static', randomBytes: (n) => randomBytes(n) });
      const written = writeLabConfigs(set, dir);
      assert.deepEqual(written, [join(dir, 'configs', 'gwa.yaml'), join(dir, 'configs', 'gwb.yaml'), join(dir, 'keys.uat')]);
      for (const g of set.configs) {
        assert.equal(readFileSync(g.path, 'utf8'), g.yaml);
        assert.equal(statSync(g.path).mode & 0o077, 0, `${g.path} readable by others`);
        assert.ok(statSync(g.config.stateDir).isDirectory());
      }
      assert.equal(readFileSync(join(dir, 'keys.uat'), 'utf8'), set.uat);
      assert.equal(statSync(join(dir, 'keys.uat')).mode & 0o077, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
