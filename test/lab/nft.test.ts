/**
 * test/lab/nft.test.ts: the gate with `rules.backend: nftables` in the `lan` lab (root only;
 * skips otherwise). alice and bob only; carol and dave stay idle.
 *
 *   alice 198.18.0.1 ══ ESP ══ bob 198.18.0.2        (br-lan captured from sub-test 2 to 4)
 *     configs: rules.backend: nftables on both
 *
 *   1  `espgate rules install` on alice: names the nftables backend (and, on a kernel without
 *      nft queue, the iptables NFQUEUE fallback); a second install leaves `nft list ruleset`
 *      and `iptables-save` unchanged; our table holds no iptables-backend chain or ipset
 *   2  guard: bob (no gate yet) pings alice in the clear: alice's table drops it (IPv4 and
 *      IPv6); alice's own pings to bob go nowhere without a daemon (fail closed)
 *   3  gate on bob too, both daemons up (they find the gate installed: nftStatus says so):
 *      pings both ways, IPv4 and IPv6, and a TCP transfer with matching SHA-256; afterwards
 *      conntrack holds no entry for ESP on either host (our ESP is notracked)
 *   4  the capture: only ESP between alice and bob, both ways; no plaintext between them
 *   5  SIGTERM: both exit 0, the gate stays; `rules remove`: no table of ours, no iptables
 *      rule of ours; rules, routes, links and `nft list ruleset` exactly as before install
 *   6  alice's daemon alone, no gate installed: it installs the nftables gate itself (table
 *      inet espgate while up) and removes it on SIGTERM: everything as before again
 *
 * Every wait is bounded; every process started here is stopped by pid in after(), and the lab
 * is torn down there (the run dir is kept when a sub-test failed, or with EGL_KEEP=1).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import type { LabRun } from '../../lab/harness.js';
import { cliPath, labConfigs, labUnavailable, labUp, startCapture, stopProcess } from '../../lab/harness.js';
import type { AddressFamily } from '../../lab/topology.js';
import { addressOf, findHost, interfaceOn } from '../../lab/topology.js';
import type { LabTestState, ProtectedPair } from './support.js';
import {
  canon, configPathOf, decodeFrames, describeResult, diffLines, espConntrackEntries, frameText, isLeak, normalizeState, protectOf, runIn, snapshotState,
  startDaemon, startServer, tail, tearDownLab, traffic, waitReady,
} from './support.js';

const SUBTEST_TIMEOUT_MS = 120_000;
const HOOK_TIMEOUT_MS = 180_000;
const TCP_PORT = 5001;
const BULK_BYTES = 4_000_000;
const HOSTS = ['alice', 'bob'] as const;

const skip = labUnavailable() ?? (spawnSync('nft', ['--version'], { stdio: 'ignore', timeout: 5_000 }).status === 0 ? undefined : 'needs nft (nftables)');

/** normalizeNft drops handles and counters from `nft list ruleset`, for before/after comparisons. */
function normalizeNft(text: string): string {
  return text.split('\n').map((l) => l.replace(/ # handle \d+/, '').replace(/counter packets \d+ bytes \d+/, 'counter').trimEnd()).filter((l) => l !== '').join('\n');
}

describe('nftables backend: lan, alice and bob', { skip: skip ?? false }, () => {
  const st: LabTestState & { before?: Map<string, Map<string, string>>; capture?: LabTestState['capture']; tcpLog?: string } = { daemons: new Map(), failed: false };
  const runOf = (): LabRun => {
    if (st.run === undefined) throw new Error('the lab is not up (see the before hook)');
    return st.run;
  };
  const addr = (h: string, fam: AddressFamily): string => addressOf(runOf().topology, h, fam);
  const step = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    test(name, { timeout: SUBTEST_TIMEOUT_MS }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        st.failed = true;
        throw e;
      }
    });
  };
  const sh = async (h: string, argv: readonly string[]): Promise<string> => {
    const r = await runIn(runOf(), h, argv, 30_000);
    assert.equal(r.status, 0, `${h}: ${argv.join(' ')}: ${describeResult(r)}`);
    return r.stdout;
  };
  const state = async (h: string): Promise<Map<string, string>> => {
    const m = await snapshotState(runOf(), h);
    m.set('nft list ruleset', normalizeNft(await sh(h, ['nft', 'list', 'ruleset'])));
    return m;
  };
  const rules = async (h: string, action: 'install' | 'remove'): Promise<string> => sh(h, ['node', cliPath(), 'rules', action, '-c', configPathOf(runOf(), h)]);
  const pings = async (from: string, to: string, fam: AddressFamily): Promise<number> => {
    const r = await runIn(runOf(), from, ['ping', `-${fam}`, '-n', '-c', '3', '-i', '0.2', '-W', '1', addr(to, fam)], 20_000);
    return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? -1);
  };

  before(async () => {
    try {
      const run = labUp('lan', { run: `n${process.pid.toString(36)}`.slice(0, 12) });
      st.run = run;
      labConfigs(run, 4, 'static'); // static SAs: this file is about the rules backend, not key exchange
      for (const h of HOSTS) {
        const path = configPathOf(run, h);
        const doc = parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
        doc['rules'] = { backend: 'nftables' };
        writeFileSync(path, stringify(doc), { mode: 0o600 });
      }
      const before = new Map<string, Map<string, string>>();
      for (const h of HOSTS) before.set(h, await state(h));
      st.before = before;
    } catch (e) {
      st.failed = true;
      throw e;
    }
  }, { timeout: HOOK_TIMEOUT_MS });

  after(async () => {
    await tearDownLab(st, 'nft');
  }, { timeout: HOOK_TIMEOUT_MS });

  step('1. rules install names the nftables backend; installing twice leaves the same ruleset; nothing of the iptables backend', async (t) => {
    const out = await rules('alice', 'install');
    assert.match(out, /^rules backend: nftables, table inet espgate \(rules\.backend: nftables: nft /m, out);
    const kernelQueue = !/no nft queue/.test(out);
    t.diagnostic(`kernel: ${kernelQueue ? 'nft queue available' : 'no nft queue: NFQUEUE through iptables (ESPGATE-NFQ)'}`);
    const once = await state('alice');
    const again = await rules('alice', 'install');
    assert.match(again, /^rules backend: nftables/m);
    const twice = await state('alice');
    for (const [cmd, text] of once) assert.equal(twice.get(cmd), text, `alice: \`${cmd}\` changed by the second install:\n${diffLines(text, twice.get(cmd) ?? '')}`);
    const ruleset = once.get('nft list ruleset') ?? '';
    assert.match(ruleset, /^table inet espgate \{$/m);
    assert.match(ruleset, /comment "espgate ESPGATE [0-9a-f]{16}"/);
    assert.match(ruleset, /dnat ip prefix to 198\.19\.0\.0\/24/);
    const save = normalizeState(await sh('alice', ['iptables-save']));
    const ours = save.split('\n').filter((l) => l.includes('ESPGATE'));
    if (kernelQueue) assert.deepEqual(ours, []);
    else {
      assert.deepEqual(ours, [':ESPGATE-NFQ - [0:0]', '-A PREROUTING -j ESPGATE-NFQ', '-A ESPGATE-NFQ -p esp -m mark --mark 0x20000000/0x20000000 -j NFQUEUE --queue-num 0']
        .map((l) => l.replace('--queue-num 0', /--queue-num \d+/.exec(save)?.[0] ?? '')));
    }
    assert.equal((await sh('alice', ['ipset', 'list', '-n'])).trim(), '', 'no ipsets: peers live in nft sets');
  });

  step('2. guard: bob\'s cleartext pings to alice are dropped; alice\'s pings go nowhere without a daemon', async () => {
    for (const fam of [4, 6] as const) {
      assert.equal(await pings('bob', 'alice', fam), 0, `IPv${fam}: bob -> alice in the clear gets no reply (alice drops it)`);
      assert.equal(await pings('alice', 'bob', fam), 0, `IPv${fam}: alice -> bob with the gate and no daemon gets no reply`);
    }
    const counters = await sh('alice', ['nft', 'list', 'chain', 'inet', 'espgate', 'filter_input']);
    assert.match(counters, /ip saddr @peer4 drop/);
  });

  step('3. gate on bob; both daemons find it installed; pings both ways and a TCP transfer through the tunnel', async (t) => {
    const run = runOf();
    await rules('bob', 'install');
    st.capture = await startCapture(run, 'nft.pcap', { maxSeconds: 300 });
    st.tcpLog = await startServer(run, 'bob', 'tcp-server', TCP_PORT);
    for (const h of HOSTS) {
      const d = startDaemon(run, h);
      st.daemons.set(h, d);
    }
    for (const d of st.daemons.values()) {
      assert.ok(await waitReady(run, d), `${d.host}: espgate up did not get ready:\n${tail(d.log)}`);
      assert.match(readFileSync(d.log, 'utf8'), /gate already installed/, `${d.host}: the daemon saw the nftables gate as installed:\n${tail(d.log)}`);
    }
    for (const [from, to] of [['alice', 'bob'], ['bob', 'alice']] as const) {
      for (const fam of [4, 6] as const) assert.equal(await pings(from, to, fam), 3, `${from} -> ${to} IPv${fam} through the tunnel: 3 of 3 replies`);
    }
    const o = await traffic(run, 'alice', ['tcp-client', '--host', addr('bob', 4), '--port', String(TCP_PORT), '--bytes', String(BULK_BYTES)], 90_000);
    assert.ok(o.ok, o.detail);
    assert.equal(o.result?.received, BULK_BYTES);
    t.diagnostic(`TCP ${BULK_BYTES} bytes each way in ${String(o.result?.ms)} ms`);
    // Our own ESP skips conntrack (chain raw_output, notrack), inbound ESP is queued before it.
    for (const h of HOSTS) {
      for (const fam of ['ipv4', 'ipv6'] as const) assert.deepEqual(await espConntrackEntries(runOf(), h, fam), [], `${h}: no ${fam} conntrack entry for ESP`);
    }
  });

  step('4. the capture: only ESP between alice and bob, both ways; no plaintext between them', async (t) => {
    const run = runOf();
    assert.ok(st.capture !== undefined);
    const frames = await decodeFrames(run, await st.capture.stop());
    const peering: ProtectedPair[] = [[protectOf(run, 'alice'), protectOf(run, 'bob')]];
    const leaks = frames.filter((f) => isLeak(f, peering));
    assert.deepEqual(leaks.slice(0, 10).map(frameText), [], 'no plaintext between alice and bob');
    const topo = run.topology;
    const ea = canon(interfaceOn(findHost(topo, 'alice'), 'lan').v4);
    const eb = canon(interfaceOn(findHost(topo, 'bob'), 'lan').v4);
    const esp = frames.filter((f) => f.proto === 50);
    const ab = esp.filter((f) => f.src === ea && f.dst === eb).length;
    const ba = esp.filter((f) => f.src === eb && f.dst === ea).length;
    assert.ok(ab > 100 && ba > 100, `ESP both ways (${ab} / ${ba} frames)`);
    t.diagnostic(`${frames.length} frames, ${esp.length} ESP, 0 plaintext between the peers`);
  });

  step('5. SIGTERM: daemons exit 0, gate stays; rules remove: no table or rule of ours, everything as before', async () => {
    for (const h of HOSTS) {
      const d = st.daemons.get(h);
      assert.ok(d !== undefined);
      assert.equal(await stopProcess(d.child, 10_000), 0, `${h}: exit status after SIGTERM:\n${tail(d.log)}`);
    }
    assert.equal(await pings('alice', 'bob', 4), 0, 'after the daemons stopped, the installed gate still lets nothing through');
    for (const h of HOSTS) {
      const out = await rules(h, 'remove');
      assert.match(out, /gate removed/);
      const tables = JSON.parse(await sh(h, ['nft', '-j', 'list', 'tables'])) as { nftables: Record<string, { name?: string; family?: string }>[] };
      assert.deepEqual(tables.nftables.filter((x) => x['table']?.name === 'espgate'), [], `${h}: no table of ours`);
      assert.doesNotMatch(await sh(h, ['iptables-save']), /ESPGATE/, `${h}: no iptables rule of ours`);
      assert.doesNotMatch(await sh(h, ['ip6tables-save']), /ESPGATE/, `${h}: no ip6tables rule of ours`);
      const before = st.before?.get(h);
      assert.ok(before !== undefined);
      const now = await state(h);
      for (const [cmd, text] of before) assert.equal(now.get(cmd), text, `${h}: \`${cmd}\` differs after rules remove:\n${diffLines(text, now.get(cmd) ?? '')}`);
    }
    assert.equal(await pings('alice', 'bob', 4), 3, 'with the gate removed, alice and bob talk in the clear again');
  });

  step('6. a daemon installs the nftables gate itself and removes it on stop', async () => {
    const run = runOf();
    const d = startDaemon(run, 'alice');
    st.daemons.set('alice', d);
    assert.ok(await waitReady(run, d), `alice: espgate up did not get ready:\n${tail(d.log)}`);
    assert.match(readFileSync(d.log, 'utf8'), /gate installed: rules and blackhole routes/, tail(d.log));
    assert.match(await sh('alice', ['nft', 'list', 'tables']), /^table inet espgate$/m);
    assert.equal(await stopProcess(d.child, 10_000), 0, `alice: exit status after SIGTERM:\n${tail(d.log)}`);
    const before = st.before?.get('alice');
    assert.ok(before !== undefined);
    const now = await state('alice');
    for (const [cmd, text] of before) assert.equal(now.get(cmd), text, `alice: \`${cmd}\` differs after the daemon stopped:\n${diffLines(text, now.get(cmd) ?? '')}`);
  });

  step('7. rules.backend auto with inbound: socket takes nftables in this kernel, nft queue or not; nothing of ours in iptables; removed cleanly', async (t) => {
    const run = runOf();
    const path = configPathOf(run, 'bob');
    const doc = parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const socketPath = path.replace(/\.yaml$/, '-socket-auto.yaml');
    writeFileSync(socketPath, stringify({ ...doc, rules: { backend: 'auto' }, inbound: 'socket' }), { mode: 0o600 });
    const check = (await runIn(run, 'bob', ['node', cliPath(), 'check', '-c', socketPath], 30_000)).stdout;
    assert.match(check, /rules backend: nftables, table inet espgate \(auto: nft [^ ]+ and the kernel offer what the gate needs \(inbound: socket, no queue rule\)\)/, check);
    // control: the same host with the queue (the default) and auto
    const queuePath = path.replace(/\.yaml$/, '-queue-auto.yaml');
    writeFileSync(queuePath, stringify({ ...doc, rules: { backend: 'auto' } }), { mode: 0o600 });
    const queueCheck = (await runIn(run, 'bob', ['node', cliPath(), 'check', '-c', queuePath], 30_000)).stdout;
    const kernelQueue = /nft queue included/.test(queueCheck);
    t.diagnostic(`queue mode, auto: ${/rules backend: [^\n]*/.exec(queueCheck)?.[0] ?? '?'}`);
    if (!kernelQueue) assert.match(queueCheck, /rules backend: iptables \(auto: the kernel has no nft queue/, queueCheck);
    const out = await sh('bob', ['node', cliPath(), 'rules', 'install', '-c', socketPath]);
    assert.match(out, /^rules backend: nftables/m, out);
    const save = normalizeState(await sh('bob', ['iptables-save']));
    assert.deepEqual(save.split('\n').filter((l) => l.includes('ESPGATE')), [], 'inbound: socket: nothing of ours in iptables');
    assert.match(await sh('bob', ['nft', 'list', 'chain', 'inet', 'espgate', 'raw_prerouting']), /meta l4proto esp .*notrack/);
    await sh('bob', ['node', cliPath(), 'rules', 'remove', '-c', socketPath]);
    const before = st.before?.get('bob');
    assert.ok(before !== undefined);
    const now = await state('bob');
    for (const [cmd, text] of before) assert.equal(now.get(cmd), text, `bob: \`${cmd}\` differs after rules remove:\n${diffLines(text, now.get(cmd) ?? '')}`);
  });
});
