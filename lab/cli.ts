/**
 * cli.ts: the command line lab.sh uses to read the topologies (topology.ts is the one source of
 * truth) and to write configs. Run as `node dist/lab/cli.js ...` after `npm run build`, or as
 * `node --import tsx lab/cli.ts ...` from the sources.
 *
 *     plan <lan|sites|hub|nat> [--clients N]                  the plan lab.sh executes (renderPlan)
 *     json <lan|sites|hub|nat> [--clients N]                  the topology as JSON
 *     configs <lan|sites|hub|nat> <runDir> [--clients N] [--outer 4|6] [--keying static|ike] [--inbound socket|queue]
 *                                                             write configs/, state/, keys.uat
 *     esp-probe <config.yaml> <peer> [--family 4|6] [--count N] [--seq S] [--src A] [--dst A]
 *                                                             print "<endpoint> <hex>" lines: ESP
 *                                                             payloads (inner ICMP echo) sealed
 *                                                             with the config's out SA to <peer>
 *
 * Exit status: 0 on success, 2 on a usage error, 1 on any other error.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { parse } from 'yaml';
import { buildEchoRequest, sealEspProbe } from './esp-probe.js';
import type { Keying } from './gen-configs.js';
import { KEYINGS, generateLabConfigs, writeLabConfigs } from './gen-configs.js';
import type { AddressFamily, Topology } from './topology.js';
import { buildTopology, isTopologyName, renderPlan } from './topology.js';
import type { Inbound } from '../src/netfilter/model.js';

const USAGE = `usage:
  cli plan <lan|sites|hub|nat> [--clients N]
  cli json <lan|sites|hub|nat> [--clients N]
  cli configs <lan|sites|hub|nat> <runDir> [--clients N] [--outer 4|6] [--keying static|ike] [--inbound socket|queue]
  cli esp-probe <config.yaml> <peer> [--family 4|6] [--count N] [--seq S] [--src A] [--dst A]`;

/** UsageError is a bad command line (exit status 2). */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface Parsed {
  readonly positional: string[];
  clients?: number;
  outer?: AddressFamily;
  keying?: Keying;
  inbound?: Inbound;
  family?: AddressFamily;
  count?: number;
  seq?: number;
  src?: string;
  dst?: string;
}

const MAX_PROBES = 1000;

function parseArgs(argv: readonly string[]): Parsed {
  const out: Parsed = { positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--clients') {
      const v = value();
      if (!/^\d+$/.test(v)) throw new UsageError(`--clients wants a number, got ${v}`);
      out.clients = Number(v);
    } else if (a === '--outer') {
      const v = value();
      if (v !== '4' && v !== '6') throw new UsageError(`--outer wants 4 or 6, got ${v}`);
      out.outer = v === '4' ? 4 : 6;
    } else if (a === '--inbound') {
      const v = value();
      if (v !== 'socket' && v !== 'queue') throw new UsageError(`--inbound wants socket or queue, got ${v}`);
      out.inbound = v;
    } else if (a === '--keying') {
      const v = value();
      const k = KEYINGS.find((x) => x === v);
      if (k === undefined) throw new UsageError(`--keying wants ${KEYINGS.join(' or ')}, got ${v}`);
      out.keying = k;
    } else if (a === '--family') {
      const v = value();
      if (v !== '4' && v !== '6') throw new UsageError(`--family wants 4 or 6, got ${v}`);
      out.family = v === '4' ? 4 : 6;
    } else if (a === '--count' || a === '--seq') {
      const v = value();
      const n = Number(v);
      if (!/^\d+$/.test(v) || n > 0xffffffff) throw new UsageError(`${a} wants a number, got ${v}`);
      if (a === '--count') out.count = n;
      else out.seq = n;
    } else if (a === '--src' || a === '--dst') {
      const v = value();
      if (a === '--src') out.src = v;
      else out.dst = v;
    } else if (a.startsWith('--')) {
      throw new UsageError(`unknown option ${a}`);
    } else {
      out.positional.push(a);
    }
  }
  return out;
}

function topologyFrom(p: Parsed): Topology {
  const name = p.positional[1];
  if (name === undefined || !isTopologyName(name)) throw new UsageError(`unknown topology ${name ?? '(none)'}`);
  try {
    return buildTopology(name, p.clients === undefined ? {} : { clients: p.clients });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

/** ProbeConfigView is the part of a config esp-probe reads (checked by hand, not the full schema). */
interface ProbeConfigView {
  local: { protect: string[] };
  peers: { name: string; endpoint: string; protect: string[]; sa: { out: { spi: string; key: string } } }[];
}

function isStringArray(x: unknown): x is string[] {
  return Array.isArray(x) && x.every((e) => typeof e === 'string');
}

function readProbeConfig(path: string): ProbeConfigView {
  const doc = parse(readFileSync(path, 'utf8')) as unknown;
  const d = doc as Partial<ProbeConfigView> | null;
  const ok =
    d !== null && typeof d === 'object' && isStringArray(d.local?.protect) && Array.isArray(d.peers) &&
    d.peers.every((p) => typeof p.name === 'string' && typeof p.endpoint === 'string' && isStringArray(p.protect) &&
      typeof p.sa?.out?.spi === 'string' && typeof p.sa.out.key === 'string');
  if (!ok) throw new Error(`${path}: not an espgate config with local.protect and peers[].sa.out`);
  return d as ProbeConfigView;
}

/** hostAddressOf returns the address of the first single-address prefix (/32 or /128) of a family. */
function hostAddressOf(prefixes: readonly string[], family: AddressFamily): string | undefined {
  const want = family === 4 ? '/32' : '/128';
  return prefixes.find((p) => p.endsWith(want) && (p.includes(':') ? 6 : 4) === family)?.split('/')[0];
}

function espProbe(p: Parsed): void {
  const [, path, peerName] = p.positional;
  if (path === undefined || peerName === undefined) throw new UsageError('esp-probe needs <config.yaml> <peer>');
  const cfg = readProbeConfig(path);
  const peer = cfg.peers.find((x) => x.name === peerName);
  if (peer === undefined) throw new UsageError(`${path} has no peer ${peerName}`);
  const family = p.family ?? 4;
  const src = p.src ?? hostAddressOf(cfg.local.protect, family);
  const dst = p.dst ?? hostAddressOf(peer.protect, family);
  if (src === undefined || dst === undefined) throw new UsageError('no single-address inner src/dst in the config: give --src and --dst');
  const count = p.count ?? 1;
  if (count < 1 || count > MAX_PROBES) throw new UsageError(`--count must be 1..${MAX_PROBES}`);
  const sa = { spi: Number.parseInt(peer.sa.out.spi, 16), keymat: Buffer.from(peer.sa.out.key.replace(/^0x/, ''), 'hex') };
  const firstSeq = p.seq ?? 1;
  for (let i = 0; i < count; i++) {
    const inner = buildEchoRequest({ src, dst, id: 0x4567, seq: i + 1, payload: Buffer.from('espgate-lab-probe') });
    const esp = sealEspProbe(sa, firstSeq + i, randomBytes(8), inner);
    process.stdout.write(`${peer.endpoint} ${Buffer.from(esp).toString('hex')}\n`);
  }
}

function run(argv: readonly string[]): void {
  const p = parseArgs(argv);
  switch (p.positional[0]) {
    case 'plan':
      process.stdout.write(renderPlan(topologyFrom(p)));
      return;
    case 'json':
      process.stdout.write(JSON.stringify(topologyFrom(p), null, 2) + '\n');
      return;
    case 'configs': {
      const topo = topologyFrom(p);
      const runDir = p.positional[2];
      if (runDir === undefined || !isAbsolute(runDir)) throw new UsageError('configs needs an absolute run dir');
      const set = generateLabConfigs(topo, runDir, {
        outer: p.outer ?? 4,
        ...(p.keying === undefined ? {} : { keying: p.keying }),
        ...(p.inbound === undefined ? {} : { inbound: p.inbound }),
        randomBytes: (n) => randomBytes(n),
      });
      for (const path of writeLabConfigs(set, runDir)) process.stdout.write(`${path}\n`);
      return;
    }
    case 'esp-probe':
      espProbe(p);
      return;
    default:
      throw new UsageError(`unknown command ${p.positional[0] ?? '(none)'}`);
  }
}

try {
  run(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    process.stderr.write(`${e.message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
