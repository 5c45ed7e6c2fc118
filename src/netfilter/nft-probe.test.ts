/**
 * nft-probe.test.ts: parsing of nft's answers, the backend choice, and the probe's commands
 * (through a scripted Runner: nothing runs nft here).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GatewayError } from '../errors.js';
import type { ConfiguredBackend, NftProbe } from './nft-probe.js';
import { chooseBackend, describeBackend, NFT_PROBE_QUEUE, NFT_PROBE_REST, parseCheck, parseNftVersion, probeNftables } from './nft-probe.js';
import type { RunResult, Runner } from './runner.js';

const QUEUE_ERR = '/dev/stdin:3:20-24: Error: Could not process rule: No such file or directory\n\t\tmeta l4proto esp queue num 0\n\t\t                 ^^^^^\n';

test('parseNftVersion (numbered cases)', () => {
  const cases: [string, string | undefined][] = [
    ['nftables v1.0.6 (Lester Gooch #5)\n', '1.0.6'],
    ['nftables v0.9.8 (E.D.S.)', '0.9.8'],
    ['nftables v1.1\n', '1.1'],
    ['garbage', undefined],
  ];
  for (const [i, [text, want]] of cases.entries()) assert.equal(parseNftVersion(text), want, `case ${i + 1}`);
});

test('parseCheck (numbered cases)', () => {
  const cases: [number | null, string, string, string | undefined][] = [
    [0, '', 'ok', undefined],
    [1, QUEUE_ERR, 'refused', 'Could not process rule: No such file or directory'],
    [1, 'Error: Could not process rule: Operation not permitted\n', 'unknown', 'Could not process rule: Operation not permitted'],
    [1, 'netlink: Error: cache initialization failed: Operation not permitted\n', 'unknown', 'cache initialization failed: Operation not permitted'],
    [null, '', 'refused', 'exit null'],
  ];
  for (const [i, [code, stderr, result, error]] of cases.entries()) {
    const got = parseCheck(code, stderr);
    assert.equal(got.result, result, `case ${i + 1}`);
    assert.equal('error' in got ? got.error : undefined, error, `case ${i + 1}`);
  }
});

const OK = { result: 'ok' } as const;
const REFUSED = { result: 'refused', error: 'Could not process rule: No such file or directory' } as const;
const UNKNOWN = { result: 'unknown', error: 'Operation not permitted' } as const;
const probe = (o: Partial<NftProbe>): NftProbe => ({ version: '1.0.6', rest: OK, queue: OK, iptables: true, ...o });

test('chooseBackend: configured backend x what the host offers (numbered cases)', () => {
  // [configured, probe, backend | error code, nativeQueue, reason pattern]
  const cases: [ConfiguredBackend, NftProbe, string, boolean, RegExp][] = [
    ['iptables', probe({}), 'iptables', false, /^rules\.backend: iptables$/],
    ['auto', probe({}), 'nftables', true, /^auto: nft 1\.0\.6 .* nft queue included$/],
    ['auto', probe({ queue: REFUSED }), 'iptables', false, /^auto: the kernel has no nft queue \(CONFIG_NFT_QUEUE\).*stays in iptables/],
    ['auto', probe({ version: undefined }), 'iptables', false, /^auto: nft is not installed$/],
    ['auto', probe({ rest: REFUSED }), 'iptables', false, /refuses what the gate needs/],
    ['auto', probe({ rest: UNKNOWN }), 'iptables', false, /could not probe/],
    ['auto', probe({ queue: REFUSED, iptables: false }), 'iptables', false, /no nft queue/],
    ['nftables', probe({ queue: REFUSED }), 'nftables', false, /^rules\.backend: nftables: /],
    ['nftables', probe({ version: undefined }), 'ERR_MISSING_TOOL', false, /nft is not installed/],
    ['nftables', probe({ rest: REFUSED }), 'ERR_RULES_APPLY', false, /refuses what the gate needs/],
    ['nftables', probe({ queue: REFUSED, iptables: false }), 'ERR_MISSING_TOOL', false, /must go through iptables.*iptables-restore is not installed/],
  ];
  for (const [i, [configured, p, want, nativeQueue, reason]] of cases.entries()) {
    if (want.startsWith('ERR_')) {
      assert.throws(() => chooseBackend(configured, p), (e: unknown) => GatewayError.isGatewayError(e) && e.code === want && reason.test(e.message), `case ${i + 1}`);
      continue;
    }
    const c = chooseBackend(configured, p);
    assert.equal(c.backend, want, `case ${i + 1}`);
    assert.equal(c.nativeQueue, nativeQueue, `case ${i + 1}`);
    assert.match(c.reason, reason, `case ${i + 1}`);
  }
  assert.match(describeBackend(chooseBackend('nftables', probe({ queue: REFUSED })), 'espgate'), /^rules backend: nftables, table inet espgate \(rules.backend: nftables/);
});

test('chooseBackend with inbound socket: no queue rule, so nft queue and iptables do not decide (numbered cases)', () => {
  // [configured, probe, backend | error code, reason pattern]
  const cases: [ConfiguredBackend, NftProbe, string, RegExp][] = [
    ['auto', probe({}), 'nftables', /^auto: nft 1\.0\.6 .*\(inbound: socket, no queue rule\)$/],
    // the cases that differ from queue mode: no nft queue, with and without iptables
    ['auto', probe({ queue: REFUSED }), 'nftables', /inbound: socket, no queue rule/],
    ['auto', probe({ queue: REFUSED, iptables: false }), 'nftables', /inbound: socket/],
    ['nftables', probe({ queue: REFUSED, iptables: false }), 'nftables', /^rules\.backend: nftables: .*inbound: socket/],
    // what still decides: nft itself and the kernel's answer to our table
    ['auto', probe({ version: undefined }), 'iptables', /^auto: nft is not installed$/],
    ['auto', probe({ rest: REFUSED }), 'iptables', /refuses what the gate needs/],
    ['auto', probe({ rest: UNKNOWN }), 'iptables', /could not probe/],
    ['iptables', probe({}), 'iptables', /^rules\.backend: iptables$/],
    ['nftables', probe({ version: undefined }), 'ERR_MISSING_TOOL', /nft is not installed/],
    ['nftables', probe({ rest: REFUSED }), 'ERR_RULES_APPLY', /refuses what the gate needs/],
  ];
  for (const [i, [configured, p, want, reason]] of cases.entries()) {
    if (want.startsWith('ERR_')) {
      assert.throws(() => chooseBackend(configured, p, 'socket'), (e: unknown) => GatewayError.isGatewayError(e) && e.code === want && reason.test(e.message), `case ${i + 1}`);
      continue;
    }
    const c = chooseBackend(configured, p, 'socket');
    assert.equal(c.backend, want, `case ${i + 1}`);
    assert.match(c.reason, reason, `case ${i + 1}`);
  }
  // control: the same host in queue mode keeps the whole gate in iptables (and refuses nftables without iptables)
  assert.equal(chooseBackend('auto', probe({ queue: REFUSED }), 'queue').backend, 'iptables');
  assert.throws(() => chooseBackend('nftables', probe({ queue: REFUSED, iptables: false }), 'queue'), /iptables-restore is not installed/);
});

test('probeNftables: version, then nft -c of the table and of the queue rule; nothing else', async () => {
  const calls: { cmd: string; stdin: string | undefined }[] = [];
  const runner: Runner = {
    run(file, args, stdin): Promise<RunResult> {
      calls.push({ cmd: [file, ...args].join(' '), stdin });
      const base: RunResult = { code: 0, stdout: '', stderr: '', missing: false, timedOut: false };
      if (args[0] === '--version') return Promise.resolve({ ...base, stdout: 'nftables v1.0.6 (Lester Gooch #5)\n' });
      if (stdin === NFT_PROBE_QUEUE) return Promise.resolve({ ...base, code: 1, stderr: QUEUE_ERR });
      return Promise.resolve(base);
    },
  };
  const p = await probeNftables(runner, true);
  assert.deepEqual(calls.map((c) => c.cmd), ['nft --version', 'nft -c -f -', 'nft -c -f -']);
  assert.equal(calls[1]?.stdin, NFT_PROBE_REST);
  assert.deepEqual(p, { version: '1.0.6', rest: OK, queue: REFUSED, iptables: true });
  // the probe never commits: every rule-carrying call is a check
  for (const c of calls.slice(1)) assert.match(c.cmd, / -c /);
  const missing = await probeNftables({ run: () => Promise.resolve({ code: null, stdout: '', stderr: '', missing: true, timedOut: false }) }, false);
  assert.equal(missing.version, undefined);
  assert.equal(chooseBackend('auto', missing).backend, 'iptables');
});
