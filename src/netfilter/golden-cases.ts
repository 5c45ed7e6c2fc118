/**
 * netfilter/golden-cases.ts: the reviewed rule specs behind rules/golden/: each iptables golden
 * `<name>.txt` (render.test.ts) has an nftables twin `nft-<name>.nft` (nft-render.test.ts) made
 * from the same input, so the two backends are always checked on the same cases.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RulesInput } from './model.js';

const V4 = { pairs: [{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }], peerAddrs: ['198.18.0.2/32'], endpoints: ['198.18.0.2'] };
const V6 = {
  pairs: [{ real: '2001:db8:1::/64', fake: '2001:db8:ff01::/64' }],
  peerAddrs: ['2001:db8:1::2/128', '2001:db8:1::100/120'],
  endpoints: ['2001:db8:1::2'],
};
const BASE = { tun: 'eg0', queueNum: 7, mssClamp: true, guard: true, notrack: true } as const;

/** GOLDEN_CASES lists the reviewed specs by golden name. */
export const GOLDEN_CASES: readonly { readonly name: string; readonly input: RulesInput }[] = [
  { name: 'host-v4-one-pair', input: { ...BASE, mode: 'host', families: { v4: V4 } } },
  { name: 'host-dual-stack', input: { ...BASE, mode: 'host', families: { v4: V4, v6: V6 } } },
  {
    name: 'gateway-v4-two-pairs',
    input: {
      ...BASE, mode: 'gateway', families: {
        v4: {
          pairs: [{ real: '198.18.1.0/24', fake: '198.19.1.0/24' }, { real: '198.18.2.0/24', fake: '198.19.2.0/24' }],
          peerAddrs: ['198.18.1.0/25', '198.18.2.0/24'],
          endpoints: ['203.0.113.1', '203.0.113.2'],
        },
      },
    },
  },
  { name: 'gateway-dual-stack', input: { ...BASE, mode: 'gateway', families: { v4: V4, v6: V6 } } },
  { name: 'host-v4-no-guard-no-clamp', input: { ...BASE, mssClamp: false, guard: false, notrack: false, mode: 'host', families: { v4: V4 } } },
  { name: 'host-v4-ike', input: { ...BASE, ike: true, mode: 'host', families: { v4: V4 } } },
  { name: 'gateway-dual-stack-ike', input: { ...BASE, ike: true, mode: 'gateway', families: { v4: V4, v6: V6 } } },
  // inbound: socket: raw ESP sockets instead of the queue.
  { name: 'host-dual-stack-socket', input: { ...BASE, inbound: 'socket', mode: 'host', families: { v4: V4, v6: V6 } } },
  { name: 'gateway-dual-stack-ike-socket', input: { ...BASE, inbound: 'socket', ike: true, mode: 'gateway', families: { v4: V4, v6: V6 } } },
  { name: 'host-v4-socket-no-guard-no-notrack', input: { ...BASE, inbound: 'socket', mssClamp: false, guard: false, notrack: false, mode: 'host', families: { v4: V4 } } },
];

/** GOLDEN_V4 / GOLDEN_V6 / GOLDEN_BASE are the building blocks, for tests that vary one case. */
export const GOLDEN_V4 = V4;
export const GOLDEN_V6 = V6;
export const GOLDEN_BASE = BASE;

/** goldenDir walks up from this file (src/ or dist/src/) to the project root and returns rules/golden. */
export function goldenDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'rules', 'golden');
    dir = dirname(dir);
  }
  throw new Error('package.json not found above golden-cases');
}

/**
 * checkGolden compares `got` with rules/golden/<file>, or rewrites the file when UPDATE_GOLDEN=1
 * (then review the diff). `producer` names what rendered it, for the failure message.
 */
export function checkGolden(file: string, got: string, producer: string): void {
  const path = join(goldenDir(), file);
  if (process.env['UPDATE_GOLDEN'] === '1') {
    writeFileSync(path, got);
    return;
  }
  assert.ok(existsSync(path), `${path} is missing: run with UPDATE_GOLDEN=1 and review it`);
  assert.equal(got, readFileSync(path, 'utf8'), `${file} differs from ${producer}; if intended, UPDATE_GOLDEN=1 and review the diff`);
}
