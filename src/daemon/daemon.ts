/**
 * daemon/daemon.ts: the daemon's lifecycle. Everything that touches the kernel comes in through
 * the System interface, so the whole daemon runs in a unit test with fakes (test/support/).
 *
 *      ┌──────┐  start()  ┌────┐  stop()  ┌────────┐
 *      │ down │ ────────► │ up │ ───────► │ closed │
 *      └──────┘           └────┘          └────────┘
 *          │ start() fails: everything added so far is removed again, state → closed
 *
 * start(): lock (control socket) → rules (if absent) → blackhole routes → TUN + routes →
 *          raw sockets → NFQUEUE → engine. The gate (rules + blackholes) goes in before the TUN
 *          exists, so nothing steered can leave in the clear during start-up.
 * stop():  engine → NFQUEUE → sockets → TUN → (routes, rules: only if this daemon added them).
 *          If the operator installed the rules with `espgate rules install`, they stay: the gate
 *          stays closed until `espgate rules remove`.
 * reload(): re-reads the config and swaps the data path's tables; untouched peers keep their SAs.
 */
import type { Server } from 'node:net';
import { join } from 'node:path';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { parseIpAddress } from '../packet/address.js';
import type { Config } from '../config/load.js';
import type { TunDevice, EspSender, EspReceiver } from '../io/types.js';
import type { Logger } from '../log.js';
import { packetLog, type RateLimitedLog } from '../log.js';
import { Engine, type EngineTables } from '../datapath/engine.js';
import { PATH_WARMUP_BATCHES, PATH_WARMUP_SLICE_BATCHES, PathWarmUp, WARMUP_ROUNDS, WARMUP_SELF_CHECK_ROUNDS, WARMUP_SLICE_ROUNDS, warmUpCodec } from '../datapath/warmup.js';
import type { StandInIo } from '../io/stand-in.js';
import type { AeadName } from '../esp/aead.js';
import { Tracer } from '../datapath/trace.js';
import { algorithmOf, staticSaFactory } from './sa-factory.js';
import { REPLAY_WINDOW_DEFAULT } from '../esp/replay.js';
import { buildTables, type SaFactory } from './tables.js';
import { listenControl, closeControl } from './control.js';
import { statusOf, type DaemonStatus } from './status.js';
import { startMetrics, type MetricsEndpoint } from './metrics.js';
import { GatewayError } from '../errors.js';
import { IkeDriver } from './ike-driver.js';
import type { IkeDriverPeer, IkePeerStatus, IkeSaSink, IkeTransport } from './ike-driver.js';
import { espSaLine } from '../cli/keys.js';
import { childSaConfig, openUdpTransport, sadbSink, wireUdpEncap } from './ike-edges.js';
import { UDP_ENCAP_OVERHEAD, type UdpEncapSocket } from '../io/udp-encap.js';
import type { UdpPortStats } from '../io/proc-udp.js';
import { ikePeersOf } from './ike-config.js';
import { sourceTowards } from './source-address.js';
import type { Inbound } from '../netfilter/model.js';

/** System is every kernel edge the daemon uses. */
export interface System {
  /** preflight checks what start() needs before anything is changed (privileges); throws GatewayError. */
  preflight?(): void;
  /** lock takes the one-daemon-per-network-namespace lock (ERR_ALREADY_RUNNING); returns its release. */
  lock?(): Promise<() => Promise<void>>;
  openTun(name: string): TunDevice;
  configureTun(name: string, mtuBytes: number, fakePrefixes: readonly string[], src: Readonly<{ v4?: string; v6?: string }>): Promise<void>;
  /** localAddresses lists this host's global addresses. */
  localAddresses(): Promise<string[]>;
  linkMtuTowards(addr: string): Promise<number>;
  openSender(): EspSender;
  /**
   * openReceiver opens the inbound ESP receiver: raw ESP sockets ('socket'; the sender's own,
   * shared, where it has them) or NFQUEUE `queue` ('queue').
   */
  openReceiver(queue: number, inbound: Inbound, sender?: EspSender): EspReceiver;
  /**
   * openStandIn returns stand-ins of the same classes as `tun` and `sender` for the data-path
   * warm-up (io/stand-in.ts), or undefined when there are none (then only the codec is warmed).
   */
  openStandIn?(tun: TunDevice, sender: EspSender): StandInIo | undefined;
  /** gateInstalled says whether the gate (rules + blackhole routes) is in place, installed by anyone. */
  gateInstalled(cfg: Config): Promise<boolean>;
  /** installGate installs rules and blackhole routes atomically per table; idempotent. */
  installGate(cfg: Config): Promise<void>;
  removeGate(cfg: Config): Promise<void>;
  /** queueStats reads the kernel's counters of our NFQUEUE (packets it dropped before we saw them). */
  queueStats?(queue: number): QueueStats | undefined;
  /** udpPortStats reads the kernel's counters of the UDP sockets on a local port (io/proc-udp.ts). */
  udpPortStats?(port: number): UdpPortStats | undefined;
  /** linkUp says whether an interface is administratively up (IFF_UP); undefined if it is gone. */
  linkUp?(name: string): boolean | undefined;
  /**
   * openIkeTransport opens IKE's sockets (default: UDP 500 per family, ike-edges.ts); onMessage
   * gets each datagram with the local port it arrived on. Replaced by an in-memory link in tests.
   */
  openIkeTransport?(families: ReadonlySet<4 | 6>, onMessage: (bytes: Uint8Array, address: string, port: number, localPort: number) => void): Promise<IkeTransport>;
  /** sourceTowards is our address on the route to `addr` (default: a connected UDP socket). */
  sourceTowards?(addr: string): Promise<string | undefined>;
}

/** QueueStats are the kernel's counters of one NFQUEUE (/proc/net/netfilter/nfnetlink_queue). */
export interface QueueStats {
  /** waiting: packets queued now, not yet read by the daemon. */
  readonly waiting: number;
  /** queueDropped: packets the kernel dropped because the queue was full. */
  readonly queueDropped: number;
  /** userDropped: packets the kernel could not deliver to the socket (receive buffer full). */
  readonly userDropped: number;
}

/**
 * WARMUP_SLICE_MS bounds one warm-up slice (the work done between two event-loop turns). Sized in
 * batches, a slice took ~7 ms on a slow day, and a ping started right after 'up' waited for one
 * at each of its four hops: 10-60 ms round trips for the warm-up's 1.5 s.
 */
export const WARMUP_SLICE_MS = 1;
/** WARMUP_CODEC_STEP is how many codec rounds run between two looks at the clock. */
const WARMUP_CODEC_STEP = 50;
/** GATE_CHECK_MS is how often a running daemon checks that its gate (rules) is still installed. */
export const GATE_CHECK_MS = 10_000;

/** GateState is what status reports about the gate: installed (as last checked) and by whom. */
export interface GateState {
  /** installed: the rules were found in place at checkedMs (null: not checked yet). */
  readonly installed: boolean | null;
  /** installedBy: 'daemon' (removed on stop) or 'operator' (`espgate rules install`: stays). */
  readonly installedBy: 'daemon' | 'operator' | null;
  readonly checkedMs: number;
}

/** DaemonState is the lifecycle state. */
export type DaemonState = 'down' | 'up' | 'closed';

/** ESP_OVERHEAD_V4/V6: outer IP + ESP header + IV + max padding + trailer + ICV (AES-GCM-16). */
export const ESP_OVERHEAD_V4 = 20 + 8 + 8 + 3 + 2 + 16;
export const ESP_OVERHEAD_V6 = 40 + 8 + 8 + 3 + 2 + 16;

/** tunMtuFor returns the largest 4-aligned inner MTU whose ESP packet (plus extraOverhead, e.g. UDP encapsulation) fits in linkMtu. */
export function tunMtuFor(linkMtuBytes: number, outerFamilies: ReadonlySet<4 | 6>, extraOverhead = 0): number {
  const overhead = (outerFamilies.has(6) ? ESP_OVERHEAD_V6 : ESP_OVERHEAD_V4) + extraOverhead;
  return (linkMtuBytes - overhead) & ~3;
}

/** REPLAY_FLUSH_MS is how often persisted replay-window tops are fdatasync'ed (power-loss bound). */
export const REPLAY_FLUSH_MS = 1000;

/** WARMUP_DIR, under stateDir, holds the data-path warm-up's sequence and replay files while it runs. */
export const WARMUP_DIR = 'warmup';

/** GATE_OWNER_FILE marks, in stateDir, a gate that a daemon (not `rules install`) installed. */
export const GATE_OWNER_FILE = 'gate.owner';

/** markGateOwner records (or clears) that the daemon owns the gate. `rules install` clears it. */
export function markGateOwner(stateDir: string, daemonOwns: boolean): void {
  const f = join(stateDir, GATE_OWNER_FILE);
  if (daemonOwns) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(f, 'daemon\n', { mode: 0o600 });
  } else rmSync(f, { force: true });
}

function gateOwnedByDaemon(stateDir: string): boolean {
  return existsSync(join(stateDir, GATE_OWNER_FILE));
}

/** pickSources finds, per family, one of this host's addresses that lies inside local.protect. */
export function pickSources(addrs: readonly string[], tables: EngineTables): { v4?: string; v6?: string } {
  const out: { v4?: string; v6?: string } = {};
  for (const a of addrs) {
    const ip = parseIpAddress(a);
    if (ip === undefined) continue;
    if (ip.family === 4 && out.v4 === undefined && tables.local4.lookup(ip.bytes, 0) !== undefined) out.v4 = a;
    if (ip.family === 6 && out.v6 === undefined && tables.local6.lookup(ip.bytes, 0) !== undefined) out.v6 = a;
  }
  return out;
}

/** Daemon owns the engine, the control socket and what it added to the system. */
export class Daemon {
  state: DaemonState = 'down';
  readonly startedMs = Date.now();
  engine: Engine | undefined;
  tunMtu = 0;
  #cfg: Config;
  readonly #sys: System;
  readonly #log: Logger;
  readonly #sas: SaFactory;
  readonly #added: string[] = [];
  #tun: TunDevice | undefined;
  #sender: EspSender | undefined;
  #receiver: EspReceiver | undefined;
  #control: Server | undefined;
  #dropLog: RateLimitedLog;
  #flushTimer: NodeJS.Timeout | undefined;
  #metrics: MetricsEndpoint | undefined;
  #unlock: (() => Promise<void>) | undefined;
  #tracer: Tracer | undefined;
  #reloading: Promise<void> = Promise.resolve();
  #ike: IkeDriver | undefined;
  #ikeTransport: IkeTransport | undefined;
  #unwireUdpEncap: (() => void) | undefined;
  #udpEncap: UdpEncapSocket | undefined;
  /** #ikeKey fingerprints the IKE peers the driver runs with (reload keeps it when unchanged). */
  #ikeKey = '';
  /** #liveKeys holds the esp_sa lines of the Child SAs IKE installed (`espgate keys`). */
  readonly #liveKeys = new Map<string, string>();
  /** reloads counts successful reloads. */
  reloads = 0;
  /**
   * warmUp: the JIT warm-up after start ('running'; 'done' for the whole path and the codec;
   * 'codec-only' without stand-in I/O; 'off' when disabled, not started or cut short by a stop).
   */
  warmUp: 'running' | 'done' | 'codec-only' | 'off' = 'off';
  /** gate is the gate's state as last checked (every GATE_CHECK_MS while up). */
  gate: GateState = { installed: null, installedBy: null, checkedMs: 0 };
  #gateTimer: NodeJS.Timeout | undefined;

  constructor(cfg: Config, sys: System, log: Logger, sas: SaFactory) {
    this.#cfg = cfg;
    this.#sys = sys;
    this.#log = log;
    this.#sas = sas;
    // Drops are per-packet events: debug level only, rate-limited (a flood never fills the journal).
    this.#dropLog = packetLog(log);
  }

  get config(): Config {
    return this.#cfg;
  }

  get controlPath(): string {
    return join(this.#cfg.stateDir, 'espgate.sock');
  }

  fakePrefixes(): string[] {
    return this.#cfg.prefixes.map((p) => p.fake);
  }

  /** start brings the gateway up; on failure it undoes what it did and rethrows. */
  async start(): Promise<void> {
    if (this.state !== 'down') throw new GatewayError('ERR_CONTROL', `cannot start from state ${this.state}`);
    const cfg = this.#cfg;
    try {
      this.#sys.preflight?.();
      // IKE peers are read first (pskFile, identities): a config mistake changes nothing.
      const ikePeers = ikePeersOf(cfg);
      this.#unlock = await this.#sys.lock?.();
      this.#control = await listenControl(this.controlPath, (req) => this.#handleControl(req));
      this.#added.push('control');
      if (cfg.peers.some((p) => p.sa !== undefined)) {
        this.#log.warn('static SAs from the config: RFC 4106 forbids AES-GCM with statically configured keys in production; use this for testing and debugging only (sequence numbers are persisted so a restart never reuses an IV)');
      }

      if (!(await this.#sys.gateInstalled(cfg))) {
        this.#added.push('gate'); // before the call: a half-applied install is removed on failure
        markGateOwner(cfg.stateDir, true);
        await this.#sys.installGate(cfg);
        this.#log.info('gate installed: rules and blackhole routes (removed again on stop)');
      } else if (gateOwnedByDaemon(cfg.stateDir)) {
        this.#added.push('gate');
        this.#log.warn('gate left by an earlier daemon that did not stop cleanly (crash?): adopting it; it is removed on stop');
      } else this.#log.info('gate already installed (by `espgate rules install`): it stays closed after stop until `espgate rules remove`');

      const tables = buildTables(cfg, this.#sas);
      const families = new Set<4 | 6>(cfg.peers.map((p) => (p.endpoint.includes(':') ? 6 : 4)));
      const first = cfg.peers[0];
      const linkMtu = first === undefined ? 1500 : await this.#sys.linkMtuTowards(first.endpoint);
      // An IKE peer's ESP may run in UDP (NAT traversal): leave room for the 8-octet UDP header.
      this.tunMtu = cfg.tun.mtu ?? tunMtuFor(linkMtu, families, ikePeers.length > 0 ? UDP_ENCAP_OVERHEAD : 0);

      this.#tun = this.#sys.openTun(cfg.tun.name);
      const src = pickSources(await this.#sys.localAddresses(), tables);
      if (src.v4 === undefined && src.v6 === undefined) this.#log.warn('no address of this host lies inside local.protect: ICMP errors this host sends into the tunnel will be refused by peers');
      await this.#sys.configureTun(cfg.tun.name, this.tunMtu, this.fakePrefixes(), src);
      this.#sender = this.#sys.openSender();
      this.#receiver = this.#sys.openReceiver(cfg.queue, cfg.inbound, this.#sender);
      this.engine = new Engine(tables, this.#tun, this.#sender, this.#receiver);
      // A short self-check of the codec now; the JIT warm-up proper runs after 'up', in slices
      // between packets, so it never delays readiness (a restart after a crash resumes sooner).
      const algs = [...new Set(cfg.peers.flatMap((p) => (p.sa !== undefined ? [algorithmOf(p.sa.out), algorithmOf(p.sa.in)] : (p.ike?.espProposals ?? []))))];
      if (algs.length > 0 && warmUpCodec(algs, WARMUP_SELF_CHECK_ROUNDS) === 0) {
        throw new GatewayError('ERR_ESP_KEY', 'the ESP codec failed its start-up self-check (round trips on throwaway SAs)');
      }
      this.engine.onDrop = (reason, dir) => { this.#dropLog.note(`${dir}:${reason}`, `drop ${dir}bound: ${reason}`); };
      this.engine.start();
      if (ikePeers.length > 0) await this.#startIke(cfg, ikePeers);
      this.#flushTimer = setInterval(() => {
        // Counters the express path kept (lone outbound packets) reach the peers and SAs at least
        // once a second, for whatever reads them (IKE liveness, lifetimes, status).
        this.engine?.syncExpress();
        const sas = this.#sas;
        const report = (errors: unknown[]): void => {
          for (const e of errors) this.#log.error({ err: e }, 'replay state could not be made durable');
        };
        if (sas.flushAsync !== undefined) void sas.flushAsync().then(report);
        else report(sas.flush?.() ?? []);
      }, REPLAY_FLUSH_MS);
      this.#flushTimer.unref();
      if (cfg.metrics !== undefined) {
        try {
          const ep = await startMetrics(cfg.metrics.listen, this);
          this.#metrics = ep;
          this.engine.onTiming = (dir, packets, seconds) => { ep.timings.batch(dir, packets, seconds); };
          this.#log.info({ listen: cfg.metrics.listen }, 'metrics endpoint on (GET /metrics)');
        } catch (e) {
          // The tunnel matters more than its metrics: say so loudly and run without them.
          this.#log.error({ err: GatewayError.isGatewayError(e) ? e.message : e }, 'metrics endpoint could not start; running without it');
        }
      }
      this.state = 'up';
      this.gate = { installed: true, installedBy: this.#added.includes('gate') ? 'daemon' : 'operator', checkedMs: Date.now() };
      this.#gateTimer = setInterval(() => { void this.checkGate(); }, GATE_CHECK_MS);
      this.#gateTimer.unref();
      if (process.env.ESPGATE_WARMUP !== '0') this.#warmUpInSlices(algs);
      else this.warmUp = 'off';
      this.#log.info({ tun: cfg.tun.name, mtu: this.tunMtu, tunReads: this.#tun.batchedReads === true ? 'io_uring' : 'read(2)', peers: cfg.peers.length, mode: cfg.mode }, 'espgate up');
    } catch (e) {
      await this.#teardown();
      this.state = 'closed';
      throw e;
    }
  }

  /**
   * #warmUpInSlices gets V8 to optimise the data path before real packets need it, in slices
   * between event-loop turns (a real packet waits at most one slice, about WARMUP_SLICE_MS): first the whole
   * path both ways over stand-ins of the real TUN and sender (PathWarmUp), then the codec with
   * every configured algorithm. Without a warm-up, low-rate traffic (a ping, an interactive
   * session) runs in V8's interpreter and baseline tiers: 0.64-1.01 ms ping RTT in the lan lab
   * without it, 0.33-0.49 ms with it (100 x 10 ms pings, alternated; docs/performance.md).
   */
  #warmUpInSlices(algs: readonly AeadName[]): void {
    const t0 = performance.now();
    this.warmUp = 'running';
    const tun = this.#tun;
    const sender = this.#sender;
    let path: PathWarmUp | undefined;
    // The warm-up's SAs are made like real ones (staticSaFactory: the same sequence reserver and
    // replay store classes), on files of their own under stateDir/warmup, removed when done.
    const warmDir = join(this.#cfg.stateDir, WARMUP_DIR);
    let warmSas: SaFactory | undefined;
    const endPath = (): void => {
      path?.close();
      path = undefined;
      warmSas?.close?.();
      warmSas = undefined;
      rmSync(warmDir, { recursive: true, force: true });
    };
    try {
      const io = tun !== undefined && sender !== undefined ? this.#sys.openStandIn?.(tun, sender) : undefined;
      if (io !== undefined) {
        rmSync(warmDir, { recursive: true, force: true });
        mkdirSync(warmDir, { recursive: true, mode: 0o700 });
        const f = staticSaFactory(warmDir);
        warmSas = f;
        path = new PathWarmUp(io, algs, {
          outbound: (peer, spi, key) => f.outbound(peer, childSaConfig(spi, key)),
          inbound: (peer, endpoint, spi, key) => f.inbound(peer, endpoint, childSaConfig(spi, key), REPLAY_WINDOW_DEFAULT),
        });
      }
    } catch (e) {
      endPath();
      this.#log.warn({ err: e }, 'data-path warm-up could not start (only the codec is warmed)');
    }
    let batches = PATH_WARMUP_BATCHES;
    let pathDone = false;
    let left = WARMUP_ROUNDS;
    const slice = (): void => {
      if (this.state !== 'up') {
        endPath();
        this.warmUp = 'off';
        return;
      }
      const sliceStart = performance.now();
      if (path !== undefined && batches > 0) {
        let ran = 0;
        try {
          // A few batches at a time until the slice's time is up: a packet waits at most one
          // slice per hop, and a ping crosses four hops (two per daemon).
          for (let k = 0; k < PATH_WARMUP_SLICE_BATCHES && batches - ran > 0; k += 2) {
            const r = path.run(Math.min(2, batches - ran));
            ran += r;
            if (r === 0 || performance.now() - sliceStart >= WARMUP_SLICE_MS) break;
          }
        } catch (e) {
          this.#log.warn({ err: e }, 'data-path warm-up failed (only the codec is warmed)');
        }
        batches = ran === 0 ? 0 : batches - ran;
        if (batches === 0) {
          const r = path.report();
          pathDone = ran > 0;
          endPath();
          // The warm-up's own counters: a mismatch is a data-path bug worth a line, not a stop.
          if (r.drops !== 0 || r.espSent !== r.expectedSent || r.tunWritten !== r.expectedWritten) this.#log.warn({ report: r }, 'data-path warm-up: packets went missing on the throwaway path');
          else this.#log.debug({ report: r, ms: Math.round(performance.now() - t0) }, 'data path warmed up (both directions)');
        }
        setImmediate(slice);
        return;
      }
      for (let k = 0; k < WARMUP_SLICE_ROUNDS && left > 0; k += WARMUP_CODEC_STEP) {
        const n = Math.min(WARMUP_CODEC_STEP, left);
        warmUpCodec(algs, n);
        left -= n;
        if (performance.now() - sliceStart >= WARMUP_SLICE_MS) break;
      }
      if (left > 0) {
        setImmediate(slice);
        return;
      }
      this.warmUp = pathDone ? 'done' : 'codec-only';
      this.#log.debug({ ms: Math.round(performance.now() - t0) }, 'data path warmed up (codec optimised)');
    };
    setImmediate(slice);
  }

  /** stop removes what this daemon added; idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.#teardown();
    this.#log.info('espgate stopped');
  }

  /**
   * reload brings the running daemon to a new config's peers and SAs (same TUN, queue, mode and
   * prefixes required). The gate's peer and endpoint sets are re-applied first (each restore is
   * atomic), then the tables are swapped in one assignment, so an added peer is steered into the
   * tunnel and a removed one is no longer; untouched peers keep their SAs, sequence and replay
   * state. Between the two steps an added peer's packets find no SA and are dropped and counted
   * (fail closed). Reloads are serialized; on any error the daemon keeps its current tables.
   */
  reload(next: Config): Promise<void> {
    const run = this.#reloading.catch(() => {}).then(() => this.#reload(next));
    this.#reloading = run;
    return run;
  }

  async #reload(next: Config): Promise<void> {
    const cur = this.#cfg;
    if (next.tun.name !== cur.tun.name || next.queue !== cur.queue || next.inbound !== cur.inbound || next.mode !== cur.mode
      || next.stateDir !== cur.stateDir || JSON.stringify(next.prefixes) !== JSON.stringify(cur.prefixes)) {
      throw new GatewayError('ERR_CONFIG', 'reload can change peers and SAs only; tun, inbound, queue, mode, stateDir and prefixes need a restart');
    }
    const engine = this.engine;
    if (engine === undefined || this.state !== 'up') throw new GatewayError('ERR_CONTROL', `cannot reload in state ${this.state}`);
    const nextIke = ikePeersOf(next);
    const ikeChanged = ikeKeyOf(nextIke) !== this.#ikeKey;
    // IKE peers unchanged: the driver and every SA it negotiated carry over. Changed: the
    // driver restarts (Deletes sent, its SAs removed) and negotiates afresh; until then the
    // IKE peers' traffic has no SA and is dropped (fail closed).
    if (ikeChanged) this.#stopIke();
    const prevIke = new Set(ikeChanged ? [] : cur.peers.filter((p) => p.ike !== undefined).map((p) => p.name));
    const tables = buildTables(next, this.#sas, engine.tables, prevIke);
    await this.#sys.installGate(next);
    if (this.state !== 'up') return; // stopped meanwhile: teardown owns the gate now
    engine.setTables(tables);
    this.#cfg = next;
    if (ikeChanged && nextIke.length > 0) await this.#startIke(next, nextIke);
    this.reloads++;
    this.#log.info({ peers: next.peers.length, names: next.peers.map((p) => p.name) }, 'config reloaded: gate sets and SAs updated');
  }

  /**
   * #startIke opens the IKE sockets and starts the driver: Child SAs go into the SADB of the
   * engine's current tables (a reload swaps them; the sink always looks them up afresh).
   */
  async #startIke(cfg: Config, peers: readonly IkeDriverPeer[]): Promise<void> {
    const engine = this.engine;
    if (engine === undefined) return;
    const families = new Set<4 | 6>(peers.map((p) => (p.endpoint.includes(':') ? 6 : 4)));
    const local: { v4?: string; v6?: string } = {};
    for (const p of peers) {
      const fam = p.endpoint.includes(':') ? 'v6' : 'v4';
      if (local[fam] === undefined) {
        const a = await (this.#sys.sourceTowards ?? sourceTowards)(p.endpoint);
        if (a !== undefined) local[fam] = a;
      }
    }
    let transport: IkeTransport;
    const onMessage = (bytes: Uint8Array, address: string, port: number, localPort: number): void => { this.#ike?.receive(bytes, address, port, localPort); };
    try {
      if (this.#sys.openIkeTransport !== undefined) transport = await this.#sys.openIkeTransport(families, onMessage);
      else {
        const udp = await openUdpTransport(families, onMessage);
        // ESP in UDP 4500 (RFC 3948: NAT traversal, and strongSwan's kernel-libipsec always)
        // shares the NAT-T socket with IKE: the engine sends and takes it there.
        this.#unwireUdpEncap = wireUdpEncap(udp.encap, engine);
        this.#udpEncap = udp.encap;
        transport = udp;
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const fix = code === 'EADDRINUSE' ? ': another IKE daemon (strongSwan charon, libreswan pluto) holds the port; stop it or use static SAs for this host'
        : code === 'EACCES' ? ': binding ports 500 and 4500 needs CAP_NET_BIND_SERVICE (or root)' : '';
      throw new GatewayError('ERR_IKE', `cannot open the IKE sockets (UDP 500/4500): ${(e as Error).message}${fix}`, { cause: e });
    }
    this.#ikeTransport = transport;
    const windowOf = new Map(cfg.peers.map((p) => [p.name, p.replayWindow]));
    const driver = new IkeDriver({
      peers,
      localProtect: cfg.local.protect,
      ...(local.v4 === undefined ? {} : { localAddress4: local.v4 }),
      ...(local.v6 === undefined ? {} : { localAddress6: local.v6 }),
      transport,
      sink: this.#keyRecordingSink(sadbSink(() => (this.engine ?? engine).tables.sadb, this.#sas, (peer) => windowOf.get(peer) ?? 1024), local),
      log: this.#log,
    });
    this.#ike = driver;
    this.#ikeKey = ikeKeyOf(peers);
    driver.start();
    this.#log.info({ peers: peers.map((p) => p.name), local }, 'IKEv2 started (UDP 500 and 4500)');
  }

  /**
   * #keyRecordingSink passes every call on to `sink` and keeps the live Child SAs' keys as
   * Wireshark esp_sa lines for `espgate keys` (the control socket is root-only, like the keys).
   */
  #keyRecordingSink(sink: IkeSaSink, local: { v4?: string; v6?: string }): IkeSaSink {
    const me = (endpoint: string): string => (endpoint.includes(':') ? local.v6 : local.v4) ?? 'any';
    const outByPeer = new Map<string, number>();
    const usage = sink.usage?.bind(sink);
    return {
      ...(usage === undefined ? {} : { usage }),
      spiInUse: (spi) => sink.spiInUse(spi),
      addInbound: (peer, endpoint, child) => {
        sink.addInbound(peer, endpoint, child);
        this.#liveKeys.set(`in:${child.inbound.spi}`, espSaLine(endpoint, me(endpoint), child.inbound.spi, Buffer.from(child.inbound.keyMaterial)));
      },
      removeInbound: (spi) => {
        sink.removeInbound(spi);
        this.#liveKeys.delete(`in:${spi}`);
      },
      setOutbound: (peer, child) => {
        sink.setOutbound(peer, child);
        const old = outByPeer.get(peer);
        if (old !== undefined) this.#liveKeys.delete(`out:${peer}:${old}`);
        outByPeer.delete(peer);
        if (child === undefined) return;
        const endpoint = this.#cfg.peers.find((p) => p.name === peer)?.endpoint ?? 'any';
        outByPeer.set(peer, child.outbound.spi);
        this.#liveKeys.set(`out:${peer}:${child.outbound.spi}`, espSaLine(me(endpoint), endpoint, child.outbound.spi, Buffer.from(child.outbound.keyMaterial)));
      },
    };
  }

  /** #stopIke deletes the IKE SAs (Deletes sent once), removes their Child SAs and closes the sockets. */
  #stopIke(): void {
    this.#ike?.stop();
    this.#ike = undefined;
    this.#unwireUdpEncap?.();
    this.#unwireUdpEncap = undefined;
    this.#udpEncap = undefined;
    this.#ikeTransport?.close();
    this.#ikeTransport = undefined;
    this.#liveKeys.clear();
  }

  /** ikeStatus is one peer's IKE state, or undefined for a peer with static keys. */
  ikeStatus(peer: string): IkePeerStatus | undefined {
    return this.#ike?.status(peer);
  }

  status(): DaemonStatus {
    return statusOf(this);
  }

  /**
   * checkGate re-reads whether the gate is installed (every GATE_CHECK_MS while up). Someone removing our rules while we run
   * would open the door to cleartext: it is logged at error level and shown in status.
   */
  async checkGate(): Promise<void> {
    if (this.state !== 'up') return;
    let installed: boolean;
    try { installed = await this.#sys.gateInstalled(this.#cfg); } catch { return; }
    if (this.state !== 'up') return;
    if (!installed && this.gate.installed === true) this.#log.error('the gate (rules) is no longer installed: traffic to peers may leave in the clear; restore it with `espgate rules install` or restart espgate');
    if (installed && this.gate.installed === false) this.#log.info('the gate (rules) is installed again');
    this.gate = { ...this.gate, installed, checkedMs: Date.now() };
  }

  /** tunUp says whether the TUN is up (null when the System cannot tell). */
  tunUp(): boolean | null {
    if (this.#tun === undefined) return false;
    return this.#sys.linkUp?.(this.#cfg.tun.name) ?? null;
  }

  /** queueStats returns the kernel's counters of our NFQUEUE, when the System can read them. */
  queueStats(): QueueStats | undefined {
    return this.#sys.queueStats?.(this.#cfg.queue);
  }

  /**
   * udpEncapStats describes our NAT-T socket (UDP 4500: IKE and ESP in UDP): the receive buffer
   * the kernel gave us and the datagrams it dropped there before we read them (null when the
   * System cannot read them). Undefined while no such socket is open (no IKE peers).
   */
  /** socketDrops: inbound ESP the kernel dropped at our raw ESP sockets (inbound: socket); undefined otherwise. */
  socketDrops(): number | undefined {
    return this.#cfg.inbound === 'socket' ? this.#receiver?.socketDrops?.() : undefined;
  }

  udpEncapStats(): { readonly port: number; readonly rcvbufBytes: number; readonly dropped: number | null } | undefined {
    const u = this.#udpEncap;
    if (u === undefined) return undefined;
    const k = this.#sys.udpPortStats?.(u.port);
    return { port: u.port, rcvbufBytes: u.rcvbufBytes, dropped: k === undefined || k.sockets === 0 ? null : k.dropped };
  }

  #handleControl(req: { cmd: string; [k: string]: unknown }): unknown {
    switch (req.cmd) {
      case 'status': return this.status();
      case 'ping': return { ok: true };
      case 'keys': return { lines: [...this.#liveKeys.values()] };
      case 'trace-start': return this.#traceStart(req);
      case 'trace-read': {
        const since = typeof req['since'] === 'number' ? req['since'] : 0;
        return this.#tracer === undefined ? { error: 'no trace running: start one with `espgate trace`' } : this.#tracer.read(since);
      }
      default: return { error: `unknown command "${req.cmd}"` };
    }
  }

  /** #traceStart starts a trace (replacing any running one); fields: host, peer, count, seconds. */
  #traceStart(req: { [k: string]: unknown }): unknown {
    const engine = this.engine;
    if (engine === undefined || this.state !== 'up') return { error: `not up (state ${this.state})` };
    const host = typeof req['host'] === 'string' ? req['host'] : undefined;
    const peer = typeof req['peer'] === 'string' ? req['peer'] : undefined;
    if (host !== undefined && parseIpAddress(host) === undefined) return { error: `--host: "${host}" is not an IPv4 or IPv6 address` };
    if (peer !== undefined && !engine.tables.peers.has(peer)) return { error: `--peer: no peer named "${peer}" (peers: ${[...engine.tables.peers.keys()].join(', ')})` };
    const count = typeof req['count'] === 'number' ? req['count'] : 20;
    const seconds = typeof req['seconds'] === 'number' ? req['seconds'] : 10;
    const filter = { ...(host === undefined ? {} : { host }), ...(peer === undefined ? {} : { peer }) };
    this.#tracer = new Tracer(filter, count, seconds);
    engine.trace = this.#tracer;
    this.#log.info({ filter, count, seconds }, 'trace started');
    return { ok: true, filter, count, seconds };
  }

  async #teardown(): Promise<void> {
    try { this.#stopIke(); } catch (e) { this.#log.error({ err: e }, 'teardown step ike failed'); }
    this.engine?.stop();
    if (this.#flushTimer !== undefined) clearInterval(this.#flushTimer);
    if (this.#gateTimer !== undefined) clearInterval(this.#gateTimer);
    this.#sas.flush?.();
    this.#sas.close?.();
    const steps: [string, () => Promise<void> | void][] = [
      ['metrics', async () => { await this.#metrics?.close(); this.#metrics = undefined; }],
      ['receiver', () => this.#receiver?.close()],
      ['sender', () => this.#sender?.close()],
      ['tun', () => this.#tun?.close()],
      ['gate', async () => {
        if (!this.#added.includes('gate')) return;
        await this.#sys.removeGate(this.#cfg);
        markGateOwner(this.#cfg.stateDir, false);
      }],
      ['control', async () => { if (this.#control) await closeControl(this.#control, this.controlPath); }],
      ['lock', async () => { await this.#unlock?.(); this.#unlock = undefined; }],
    ];
    for (const [name, fn] of steps) {
      try { await fn(); } catch (e) { this.#log.error({ err: e }, `teardown step ${name} failed`); }
    }
    this.#added.length = 0;
  }
}

/** ikeKeyOf fingerprints the IKE peers' settings (reload restarts IKE only when they change). */
function ikeKeyOf(peers: readonly IkeDriverPeer[]): string {
  return JSON.stringify(peers, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));
}

export type { EngineTables };
