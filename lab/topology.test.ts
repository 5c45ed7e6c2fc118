// topology.test.ts: the lab topologies and the plan lab.sh executes (no root needed).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Topology } from './topology.js';
import {
  DEFAULT_HUB_CLIENTS,
  MAX_HUB_CLIENTS,
  TOPOLOGY_NAMES,
  addressOf,
  addressInPrefix,
  buildTopology,
  findHost,
  localAddressOf,
  namespaceName,
  outerAddressOf,
  parseAddress,
  peeringOf,
  peersOf,
  prefixContains,
  protectedHosts,
  renderPlan,
  sharedSegment,
  validateTopology,
} from './topology.js';

describe('prefix maths', () => {
  const cases: readonly [number, string, string, boolean][] = [
    [1, '198.18.0.0/15', '198.19.0.0/16', true],
    [2, '198.18.0.0/16', '198.19.0.0/24', false],
    [3, '198.18.0.0/24', '198.18.0.7/32', true],
    [4, '198.18.0.0/24', '198.18.1.7/32', false],
    [5, '198.18.0.7/32', '198.18.0.0/24', false],
    [6, '2001:db8::/32', '2001:db8:0:ff01::/64', true],
    [7, '2001:db8:0:1::/64', '2001:db8:0:1::2/128', true],
    [8, '2001:db8:0:1::/64', '2001:db8:0:10::2/128', false],
    [9, '198.18.0.0/24', '2001:db8:0:1::/64', false],
    [10, '0.0.0.0/0', '198.18.2.0/24', true],
  ];
  for (const [n, outer, inner, want] of cases) {
    it(`case ${n}: ${inner} within ${outer} is ${want}`, () => {
      assert.equal(prefixContains(outer, inner), want);
    });
  }

  const bad: readonly [number, string][] = [
    [11, '198.18.0.1/24'],
    [12, '198.18.0/24'],
    [13, '198.18.0.256/32'],
    [14, '2001:db8::1::/64'],
    [15, '2001:db8:0:1::/129'],
    [16, '2001:db8:0:1:2:3:4:5:6/128'],
  ];
  for (const [n, p] of bad) {
    it(`case ${n}: ${p} is refused`, () => {
      assert.throws(() => prefixContains('0.0.0.0/0', p));
    });
  }

  it('case 17: parseAddress expands :: in the middle and at either end', () => {
    assert.equal(parseAddress('2001:db8::1').value, 0x2001_0db8_0000_0000_0000_0000_0000_0001n);
    assert.equal(parseAddress('::1').value, 1n);
    assert.equal(parseAddress('2001:db8::').value, 0x2001_0db8n << 96n);
    assert.equal(parseAddress('198.18.0.1').value, 0xc6120001n);
  });
});

describe('topologies', () => {
  it('case 1: every topology validates, for hub with 1, default and max clients', () => {
    const topos: Topology[] = [
      ...TOPOLOGY_NAMES.map((n) => buildTopology(n)),
      buildTopology('hub', { clients: 1 }),
      buildTopology('hub', { clients: MAX_HUB_CLIENTS }),
    ];
    for (const t of topos) assert.deepEqual(validateTopology(t), [], t.name);
  });

  it('case 2: lan has the brief\'s addresses; alice, bob, carol mesh; dave is no peer', () => {
    const t = buildTopology('lan');
    const want: readonly [string, string, string][] = [
      ['alice', '198.18.0.1', '2001:db8:0:1::1'],
      ['bob', '198.18.0.2', '2001:db8:0:1::2'],
      ['carol', '198.18.0.3', '2001:db8:0:1::3'],
      ['dave', '198.18.0.4', '2001:db8:0:1::4'],
    ];
    for (const [h, v4, v6] of want) {
      assert.equal(addressOf(t, h, 4), v4);
      assert.equal(addressOf(t, h, 6), v6);
    }
    assert.deepEqual(peersOf(t, 'alice'), ['bob', 'carol']);
    assert.deepEqual(peersOf(t, 'carol'), ['alice', 'bob']);
    assert.deepEqual(peersOf(t, 'dave'), []);
    assert.deepEqual(protectedHosts(t).map((h) => h.name), ['alice', 'bob', 'carol']);
    assert.equal(t.captureSegment, 'lan');
  });

  it('case 3: sites routes LAN hosts via their gateway and maps the far LAN on each gateway', () => {
    const t = buildTopology('sites');
    assert.equal(addressOf(t, 'a1', 4), '198.18.1.10');
    assert.equal(addressOf(t, 'b1', 6), '2001:db8:0:b::10');
    assert.equal(addressOf(t, 'gwa', 4, 'wan'), '198.18.0.1');
    assert.equal(addressOf(t, 'gwb', 4, 'wan'), '198.18.0.2');
    assert.equal(addressOf(t, 'gwa', 4, 'lana'), '198.18.1.1');
    assert.deepEqual(findHost(t, 'a1').routes.map((r) => `${r.family} ${r.dst} ${r.via}`), ['4 default 198.18.1.1', '6 default 2001:db8:0:a::1']);
    assert.equal(findHost(t, 'gwa').forwarding, true);
    assert.equal(findHost(t, 'a1').forwarding, false);
    assert.deepEqual(findHost(t, 'gwa').espgate?.prefixes, [
      { real: '198.18.2.0/24', fake: '198.19.2.0/24' },
      { real: '2001:db8:0:b::/64', fake: '2001:db8:0:ff0b::/64' },
    ]);
    assert.deepEqual(findHost(t, 'gwb').espgate?.protect, ['198.18.2.0/24', '2001:db8:0:b::/64']);
    assert.equal(t.captureSegment, 'wan');
  });

  it('case 4: hub clients are .2 .. .N+1, each a peer of the server only', () => {
    const t = buildTopology('hub', { clients: 12 });
    assert.equal(t.hosts.length, 13);
    assert.equal(addressOf(t, 'c12', 4), '198.18.0.13');
    assert.equal(addressOf(t, 'c12', 6), '2001:db8:0:1::13');
    assert.deepEqual(peersOf(t, 'c5'), ['server']);
    assert.equal(peersOf(t, 'server').length, 12);
    assert.equal(buildTopology('hub').hosts.length, DEFAULT_HUB_CLIENTS + 1);
  });

  it('case 5: hub client counts outside 1..MAX are refused', () => {
    for (const clients of [0, -1, 1.5, MAX_HUB_CLIENTS + 1]) {
      assert.throws(() => buildTopology('hub', { clients }), RangeError, String(clients));
    }
  });

  it('case 6: no interface address lies in the fake range 198.19.0.0/16', () => {
    for (const name of TOPOLOGY_NAMES) {
      for (const h of buildTopology(name).hosts) {
        for (const i of h.interfaces) assert.ok(!addressInPrefix(i.v4, '198.19.0.0/16'), `${h.name} ${i.v4}`);
      }
    }
  });

  it('case 7: validateTopology reports an address in the fake range and a dangling peering', () => {
    const t = buildTopology('lan');
    const broken: Topology = {
      ...t,
      hosts: t.hosts.map((h) => (h.name === 'bob' ? { ...h, interfaces: h.interfaces.map((i) => ({ ...i, v4: '198.19.0.2' })) } : h)),
      peerings: [...t.peerings, { a: 'alice', b: 'dave', segment: 'lan' }],
    };
    const problems = validateTopology(broken);
    assert.ok(problems.some((p) => p.includes('198.19.0.2')), problems.join('; '));
    assert.ok(problems.some((p) => p.includes('alice-dave')), problems.join('; '));
  });

  it('case 8: namespaceName uses the egl- prefix', () => {
    assert.equal(namespaceName('r123', 'alice'), 'egl-r123-alice');
    assert.equal(namespaceName('r123', 'sw'), 'egl-r123-sw');
  });

  it('case 9: nat: inside behind a masquerading router, outside on the WAN; each end\'s endpoint for the other', () => {
    const t = buildTopology('nat');
    assert.deepEqual(t.hosts.map((h) => h.name), ['inside', 'router', 'outside']);
    assert.deepEqual(protectedHosts(t).map((h) => h.name), ['inside', 'outside']);
    assert.equal(addressOf(t, 'inside', 4), '198.18.3.10');
    assert.equal(addressOf(t, 'inside', 6), '2001:db8:0:3::10');
    assert.equal(addressOf(t, 'router', 4, 'wan'), '198.18.0.1');
    assert.equal(addressOf(t, 'router', 4, 'home'), '198.18.3.1');
    assert.equal(addressOf(t, 'outside', 4), '198.18.0.2');
    assert.deepEqual(findHost(t, 'router').masquerade, ['eth0']);
    assert.equal(findHost(t, 'router').interfaces[0]?.segment, 'wan');
    assert.equal(findHost(t, 'router').forwarding, true);
    assert.deepEqual(findHost(t, 'inside').routes.map((r) => `${r.family} ${r.dst} ${r.via}`), ['4 default 198.18.3.1', '6 default 2001:db8:0:3::1']);
    assert.deepEqual(findHost(t, 'outside').routes.map((r) => `${r.family} ${r.dst} ${r.via}`), ['4 default 198.18.0.1', '6 default 2001:db8:0:1::1']);
    assert.equal(sharedSegment(t, 'inside', 'outside'), undefined);
    assert.equal(sharedSegment(t, 'inside', 'router'), 'home');
    const p = peeringOf(t, 'inside', 'outside');
    assert.ok(p !== undefined);
    // what each end sends from, and what the other end (and a WAN capture) sees
    const want: readonly [string, 4 | 6, string, string][] = [
      ['inside', 4, '198.18.3.10', '198.18.0.1'],
      ['inside', 6, '2001:db8:0:3::10', '2001:db8:0:1::1'],
      ['outside', 4, '198.18.0.2', '198.18.0.2'],
      ['outside', 6, '2001:db8:0:1::2', '2001:db8:0:1::2'],
    ];
    for (const [h, fam, local, outer] of want) {
      assert.equal(localAddressOf(t, p, h, fam), local, `${h} IPv${fam} local`);
      assert.equal(outerAddressOf(t, p, h, fam), outer, `${h} IPv${fam} outer`);
    }
    // each end maps the other's real segment to a fake twin
    assert.deepEqual(findHost(t, 'inside').espgate?.prefixes.map((x) => x.real), ['198.18.0.0/24', '2001:db8:0:1::/64']);
    assert.deepEqual(findHost(t, 'outside').espgate?.prefixes, [
      { real: '198.18.3.0/24', fake: '198.19.3.0/24' },
      { real: '2001:db8:0:3::/64', fake: '2001:db8:0:ff03::/64' },
    ]);
  });

  it('case 10: validateTopology reports a NAT without masquerade, a natted host on the WAN, a missing default route', () => {
    const t = buildTopology('nat');
    const cases: readonly [number, Topology, string][] = [
      [1, { ...t, hosts: t.hosts.map((h) => (h.name === 'router' ? { ...h, masquerade: [] } : h)) }, 'does not masquerade eth0'],
      [2, { ...t, hosts: t.hosts.map((h) => (h.name === 'router' ? { ...h, forwarding: false } : h)) }, 'does not forward'],
      [3, { ...t, hosts: t.hosts.map((h) => (h.name === 'inside' ? { ...h, routes: h.routes.filter((r) => r.family === 4) } : h)) }, 'no IPv6 default route'],
      [4, { ...t, hosts: t.hosts.map((h) => (h.name === 'router' ? { ...h, masquerade: ['eth7'] } : h)) }, 'unknown interface eth7'],
      [5, { ...t, peerings: t.peerings.map((p) => ({ ...p, nat: { host: 'outside', router: 'router' } })) }, 'outside is behind the NAT but on wan'],
      [6, { ...t, peerings: t.peerings.map(({ a, b, segment }) => ({ a, b, segment })) }, 'inside not on wan'],
    ];
    for (const [n, broken, want] of cases) {
      const problems = validateTopology(broken);
      assert.ok(problems.some((x) => x.includes(want)), `case 10.${n}: want "${want}", got: ${problems.join('; ')}`);
    }
  });

});

describe('renderPlan', () => {
  const FIELDS: Record<string, number> = { topology: 2, capture: 3, segment: 5, host: 5, link: 8, route: 5, masquerade: 3 };
  const ORDER = ['topology', 'capture', 'segment', 'host', 'link', 'route', 'masquerade'];

  for (const [n, name] of TOPOLOGY_NAMES.entries()) {
    it(`case ${n + 1}: ${name}: every record has its field count, records in order, matching the topology`, () => {
      const t = buildTopology(name);
      const lines = renderPlan(t).trimEnd().split('\n');
      let last = 0;
      let links = 0;
      for (const line of lines) {
        const f = line.split(' ');
        const kind = f[0] ?? '';
        assert.equal(f.length, FIELDS[kind], line);
        assert.ok(f.every((x) => x !== ''), line);
        const pos = ORDER.indexOf(kind);
        assert.ok(pos >= last, `record out of order: ${line}`);
        last = pos;
        if (kind === 'link') {
          links++;
          const [, host, ifname, , , port, v4, v6] = f;
          const iface = findHost(t, host ?? '').interfaces.find((i) => i.name === ifname);
          assert.ok(iface, line);
          assert.equal(port, iface.switchPort);
          assert.equal(v4?.split('/')[0], iface.v4);
          assert.equal(v6?.split('/')[0], iface.v6);
        }
      }
      assert.equal(links, t.hosts.reduce((s, h) => s + h.interfaces.length, 0));
      assert.deepEqual(lines.filter((l) => l.startsWith('masquerade ')), t.hosts.flatMap((h) => (h.masquerade ?? []).map((i) => `masquerade ${h.name} ${i}`)));
      assert.equal(lines.filter((l) => l.startsWith('host ')).length, t.hosts.length);
    });
  }
});
