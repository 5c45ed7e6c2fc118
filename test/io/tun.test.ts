/**
 * test/io/tun.test.ts: both TUN implementations against the kernel, each in its own network
 * namespace (root only). The fixtures under fixtures/ run inside the namespace; see their
 * header comments for the topology.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { loadNativeAddon } from '../../src/io/tun-native.js';
import type { TunImpl } from '../../src/io/tun.js';
import { Netns, rootSkipReason, runFixture } from './helpers.js';

const skip = rootSkipReason(['ip']);
const IMPLS: readonly TunImpl[] = ['native', 'koffi'];

function implSkip(impl: TunImpl): string | undefined {
  if (skip !== undefined) return skip;
  if (impl === 'native' && loadNativeAddon() === undefined) return "native TUN addon not built: run 'npm run build:native'";
  return undefined;
}

const spaces: Netns[] = [];

describe('TUN koffi, other readiness modes', { skip: skip ?? false }, () => {
  for (const [i, readiness] of (['threadpool', 'timer'] as const).entries()) {
    test(`${21 + i}: koffi with '${readiness}' readiness moves packets both ways and closes`, () => {
      const ns = new Netns(`k${i}`);
      spaces.push(ns);
      const r = runFixture(ns, import.meta.url, 'tun-roundtrip', [`koffi:${readiness}`]).last.result as Record<string, unknown>;
      for (const v of [4, 6]) {
        assert.equal(r[`v${v}.readPayload`], `ping-v${v}`);
        assert.deepEqual(r[`v${v}.batchReplies`], ['batch-0', 'batch-1', 'batch-2']);
      }
      assert.equal(r.existsAfterClose, false, 'close released the TUN (the worker poll woken)');
      assert.equal(r.writeAfterClose, 'ERR_TUN');
    });
  }
});
after(() => {
  for (const ns of spaces) ns.del();
});

for (const [i, impl] of IMPLS.entries()) {
  describe(`TUN ${impl}`, { skip: implSkip(impl) ?? false }, () => {
    test(`${i * 10 + 1}: packets out of and into the kernel (IPv4, IPv6, batch, truncation, close)`, () => {
      const ns = new Netns(`r${i}`);
      spaces.push(ns);
      const r = runFixture(ns, import.meta.url, 'tun-roundtrip', [impl]).last.result as Record<string, unknown>;
      assert.equal(r.impl, impl);
      assert.equal(r.name, 'egtun0');
      for (const v of [4, 6]) {
        assert.equal(r[`v${v}.readVersion`], v, `v${v}: read an IPv${v} packet`);
        assert.equal(r[`v${v}.readPayload`], `ping-v${v}`);
        assert.equal(r[`v${v}.writeOk`], true);
        const reply = r[`v${v}.reply`] as { msg: string; from: string; port: number };
        assert.deepEqual(reply, { msg: `ping-v${v}`, from: v === 4 ? '198.19.0.5' : '2001:db8:19::5', port: 7000 });
        assert.equal(r[`v${v}.writeBatch`], 3);
        assert.deepEqual(r[`v${v}.batchReplies`], ['batch-0', 'batch-1', 'batch-2']);
      }
      assert.equal(r.truncatedReportedLength, r.truncatedCapacity, 'a short buffer is filled exactly');
      assert.equal(r.truncatedDeclaredLength, 128, 'the IP header still declares the full 128 bytes');
      assert.equal(r.existsAfterClose, false, 'a non-persistent TUN goes away with its fd');
      assert.equal(r.writeAfterClose, 'ERR_TUN');
    });

    test(`${i * 10 + 2}: persistence, attach, modes, multi-queue and open errors`, () => {
      const ns = new Netns(`p${i}`);
      spaces.push(ns);
      const r = runFixture(ns, import.meta.url, 'tun-persist', [impl]).last.result as Record<string, string | boolean>;
      const cases: [string, string | boolean | RegExp][] = [
        ['existsAfterClose', true],
        ['addrAfterClose', true],
        ['attachName', 'egtper0'],
        ['secondOpener', /^ERR_TUN: .*EBUSY/],
        ['createExisting', /^ERR_TUN: .*EBUSY/],
        ['removed', true],
        ['existsAfterRemove', false],
        ['removedAgain', false],
        ['attachMissing', /^ERR_TUN: no interface egtper0/],
        ['mqFds', true],
        ['mqMismatch', /^ERR_TUN: .*IFF_MULTI_QUEUE/],
        ['mqExistsWithOneQueue', true],
        ['mqExistsAfterAll', false],
        ['notTunAny', /^ERR_TUN: .*EINVAL/],
        ['notTunAttach', /^ERR_TUN: .*not a TUN/],
        ['missingDevice', /^ERR_TUN: .*modprobe tun/],
        ['badName', /^ERR_TUN: invalid TUN name/],
      ];
      for (const [n, [key, want]] of cases.entries()) {
        const got = r[key];
        if (want instanceof RegExp) assert.match(String(got), want, `case ${n + 1} ${key}`);
        else assert.equal(got, want, `case ${n + 1} ${key}`);
      }
    });

    test(`${i * 10 + 3}: without privileges every edge's error names the capability`, () => {
      const ns = new Netns(`e${i}`);
      spaces.push(ns);
      const r = runFixture(ns, import.meta.url, 'io-eperm', [impl]).last.result as Record<string, { code?: string; message: string } | number>;
      assert.equal(r.uid, 65534);
      const cases: [string, string, RegExp][] = [
        ['tun', 'ERR_TUN', /CAP_NET_ADMIN/],
        ['rawsock', 'ERR_RAWSOCK', /CAP_NET_RAW/],
        ['nfqueue', 'ERR_NFQUEUE', /CAP_NET_ADMIN/],
        ['nfqueueNpm', 'ERR_NFQUEUE', /CAP_NET_ADMIN/],
      ];
      for (const [n, [key, code, msg]] of cases.entries()) {
        const got = r[key] as { code?: string; message: string };
        assert.equal(got.code, code, `case ${n + 1} ${key}: ${got.message}`);
        assert.match(got.message, msg, `case ${n + 1} ${key}`);
      }
    });
  });
}
