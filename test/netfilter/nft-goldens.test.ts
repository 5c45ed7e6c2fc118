/**
 * nft-goldens.test.ts (root): every reviewed nftables golden spec (src/netfilter/golden-cases.ts)
 * loaded into a real kernel, in a namespace of its own: `nft -f` of the rendered table, then
 * `nft list` shows every chain, then the table is deleted and nothing of ours is left. The
 * goldens compare text; this proves the kernel takes that text (rules nft accepts only at load
 * time, such as `icmp code prot-unreachable` or `fib daddr type local`, included). Specs that
 * queue are rendered for a kernel without nft queue (the mark variant), which is what this
 * machine kind has; the queue statement itself is probed by nft-probe.ts at start.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GOLDEN_CASES } from '../../src/netfilter/golden-cases.js';
import { buildRulesSpec } from '../../src/netfilter/model.js';
import { nftTableName, planNft, renderNftInstall } from '../../src/netfilter/nft-render.js';
import { Netns, rootSkipReason } from './netns.js';

const skip = rootSkipReason(['nft']);

describe('nftables goldens in a real kernel', { skip }, () => {
  let ns: Netns;
  let dir: string;
  before(async () => {
    ns = new Netns('ng');
    dir = await mkdtemp(join(tmpdir(), 'espgate-nft-goldens-'));
  });
  after(async () => {
    ns.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const [i, c] of GOLDEN_CASES.entries()) {
    test(`case ${i + 1}: ${c.name}`, async () => {
      const spec = buildRulesSpec(c.input);
      const plan = planNft(spec, { nativeQueue: false });
      const file = join(dir, `${c.name}.nft`);
      await writeFile(file, renderNftInstall(plan));
      ns.sh(`nft -f ${file}`);
      const listed = ns.sh(`nft list table inet ${nftTableName(spec.tag)}`);
      for (const ch of plan.chains) assert.match(listed, new RegExp(`chain ${ch.name} \\{`), `${c.name}: chain ${ch.name} loaded`);
      ns.sh(`nft delete table inet ${nftTableName(spec.tag)}`);
      assert.doesNotMatch(ns.sh('nft list ruleset'), /espgate/, `${c.name}: nothing left`);
    });
  }
});
