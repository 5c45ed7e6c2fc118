/**
 * test/lab/swan-support.ts: strongSwan (charon 5.9.8 with kernel-libipsec, Debian bookworm) in a
 * lab namespace, for interop tests against espgate and for a charon <-> charon control.
 *
 * One charon per host namespace, as /work/shared/bench/anchors.sh runs it:
 *
 *     <run dir>/swan/<host>/strongswan.conf   from fixtures/swan/strongswan.conf.tpl (STRONGSWAN_CONF)
 *                          swanctl.conf       from fixtures/swan/swanctl.conf.tpl
 *                          charon.vici        the vici socket (swanctl talks to it, never /var/run)
 *                          charon.log         charon's file log
 *                          run/               bind-mounted on /run inside charon's own mount
 *                                             namespace (charon 5.9.8 hard-codes /var/run/charon.pid)
 *
 *     ip netns exec egl-<run>-<host> env STRONGSWAN_CONF=... \
 *         sh -c 'mount --bind <dir>/run /run && exec /usr/lib/ipsec/charon'
 *
 * `ip netns exec` gives each command a private mount namespace (mounts are slaves of the root's),
 * so the bind mount is seen by that charon only and never by the root namespace. `sh` execs
 * charon, so the spawned process's pid is charon's: stop, kill -9 and restart go by that pid.
 * Every process is tracked (support.ts `track`), so the test's after() hook stops it if a test
 * fails half-way.
 *
 * What the tests learnt about this charon (see also docs/lab.md, "strongSwan"):
 * - kernel-libipsec in 5.9.8 always encapsulates ESP in UDP: it fakes NAT detection
 *   (NAT_DETECTION_SOURCE_IP hashes a random address), so both ends float to port 4500 after
 *   IKE_SA_INIT and the Child SA is `encap=yes`. On the wire: UDP 500 (IKE_SA_INIT), then UDP
 *   4500 for IKE (with the non-ESP marker) and ESP-in-UDP. No raw ESP (protocol 50) at all.
 * - The TUN is `ipsec0` (MTU 1400); protected routes go into table 220.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabRun } from '../../lab/harness.js';
import { labSpawn, projectRoot, stopProcess } from '../../lab/harness.js';
import type { LabPsk } from '../../lab/gen-configs.js';
import type { LabHost } from '../../lab/topology.js';
import { addressOf, findHost, hostPrefix, interfaceOn, outerAddressOf, peeringOf, sharedSegment } from '../../lab/topology.js';
import type { RunResult } from './support.js';
import { pollUntil, runIn, track } from './support.js';

/** CHARON is strongSwan's IKE daemon (Debian: strongswan-charon). */
export const CHARON = '/usr/lib/ipsec/charon';

/** SWAN_PLUGINS are the plugin files the lab's strongswan.conf loads beyond the defaults (package in the message). */
const SWAN_PLUGINS: readonly [string, string][] = [
  ['/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so', 'libcharon-extra-plugins'],
  ['/usr/lib/ipsec/plugins/libstrongswan-openssl.so', 'libstrongswan-standard-plugins'],
  ['/usr/lib/ipsec/plugins/libstrongswan-gcm.so', 'libstrongswan-standard-plugins'],
  ['/usr/lib/ipsec/plugins/libstrongswan-vici.so', 'strongswan-charon'],
];

/** SWAN_START_TIMEOUT_MS bounds the wait for charon's vici socket. */
export const SWAN_START_TIMEOUT_MS = 10_000;

/** SWANCTL_TIMEOUT_MS bounds one swanctl command (its own --timeout is below this). */
export const SWANCTL_TIMEOUT_MS = 30_000;

/** DEFAULT_IKE_PROPOSAL and DEFAULT_ESP_PROPOSAL are what the lab's strongSwan offers by default. */
export const DEFAULT_IKE_PROPOSAL = 'aes256gcm16-prfsha256-x25519';
export const DEFAULT_ESP_PROPOSAL = 'aes256gcm16';

/** swanUnavailable returns why strongSwan tests cannot run here, or undefined when they can. */
export function swanUnavailable(): string | undefined {
  if (!existsSync(CHARON)) return `missing ${CHARON} (apt install strongswan-charon)`;
  if (!existsSync('/usr/sbin/swanctl')) return 'missing swanctl (apt install strongswan-swanctl)';
  for (const [file, pkg] of SWAN_PLUGINS) if (!existsSync(file)) return `missing ${file} (apt install ${pkg})`;
  return undefined;
}

/** SwanConn is one charon's configuration: one IKE connection with one Child SA. Times in seconds. */
export interface SwanConn {
  /** host is the lab host (namespace) charon runs in. */
  readonly host: string;
  /** name is the connection's and the Child SA's name (default 'lab'). */
  readonly name?: string;
  readonly localAddr: string;
  readonly remoteAddr: string;
  readonly localId: string;
  readonly remoteId: string;
  /** psk is "0x" + hex (as gen-configs writes it) or text (written quoted). */
  readonly psk: string;
  readonly localTs: readonly string[];
  readonly remoteTs: readonly string[];
  readonly ikeProposal?: string;
  /** espProposal is the AEAD; with pfs (default true) the IKE proposal's DH group is appended. */
  readonly espProposal?: string;
  readonly pfs?: boolean;
  /** dpdDelay: seconds, 0 (default) = off. */
  readonly dpdDelay?: number;
  /** dpdAction: what charon does with the Child SA when DPD declares the peer dead (default 'clear'). */
  readonly dpdAction?: 'clear' | 'trap' | 'restart';
  /** ikeRekey: seconds before the IKE SA is rekeyed (default 14400). */
  readonly ikeRekey?: number;
  /** childRekey: seconds before the Child SA is rekeyed (default 3600); childLife the hard limit (default rekey + 10 %). */
  readonly childRekey?: number;
  readonly childLife?: number;
  /** childRand: jitter subtracted from childRekey (default 0: rekeys at exactly childRekey). */
  readonly childRand?: number;
  /** startAction: 'start' initiates as soon as the config is loaded (default 'none': responder or initiate()). */
  readonly startAction?: 'none' | 'start' | 'trap';
  /** closeAction: what to do when the peer deletes the Child SA (default 'none'). */
  readonly closeAction?: 'none' | 'start' | 'trap';
  /** retransmitTries: retransmissions before charon gives an exchange up (default 3: ~1+1.4+2 s). */
  readonly retransmitTries?: number;
}

/** Swan is one charon in a lab namespace; `child` changes on restart. */
export interface Swan {
  readonly run: LabRun;
  readonly conn: SwanConn;
  readonly name: string;
  readonly dir: string;
  /** conf is the strongswan.conf path (STRONGSWAN_CONF for charon and swanctl). */
  readonly conf: string;
  readonly log: string;
  child: ChildProcess;
}

/** swanDir returns a host's strongSwan directory in the run. */
export function swanDir(run: LabRun, host: string): string {
  return join(run.dir, 'swan', host);
}

/** fixturePath returns a file of test/lab/fixtures/swan (read from the source tree, also when running from dist/). */
export function fixturePath(file: string): string {
  return join(projectRoot(), 'test', 'lab', 'fixtures', 'swan', file);
}

/** fillTemplate replaces every @KEY@ in a template; throws Error when one is left or a value is missing. */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const out = template.replace(/@([A-Z_]+)@/g, (_m, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`template field @${key}@ has no value`);
    return v;
  });
  return out;
}

/** swanSecret writes a PSK for swanctl.conf: 0x hex as is, text double-quoted. */
export function swanSecret(psk: string): string {
  if (/^0x[0-9a-fA-F]+$/.test(psk)) return psk;
  if (/["\\\n]/.test(psk)) throw new Error('a text PSK for strongSwan must not contain quotes, backslashes or newlines');
  return `"${psk}"`;
}

/** dhGroupOf returns the DH keyword of an IKE proposal ("aes256gcm16-prfsha256-x25519" -> "x25519"). */
export function dhGroupOf(proposal: string): string {
  const parts = proposal.split('-');
  return parts[parts.length - 1] ?? '';
}

/** renderSwanConfigs returns strongswan.conf and swanctl.conf for a connection (pure). */
export function renderSwanConfigs(dir: string, conn: SwanConn): { strongswan: string; swanctl: string } {
  const name = conn.name ?? 'lab';
  const ike = conn.ikeProposal ?? DEFAULT_IKE_PROPOSAL;
  const esp = conn.espProposal ?? DEFAULT_ESP_PROPOSAL;
  const childRekey = conn.childRekey ?? 3600;
  const strongswan = fillTemplate(readFileSync(fixturePath('strongswan.conf.tpl'), 'utf8'), {
    DIR: dir,
    RETRANSMIT_TRIES: String(conn.retransmitTries ?? 3),
  });
  const swanctl = fillTemplate(readFileSync(fixturePath('swanctl.conf.tpl'), 'utf8'), {
    CONN: name,
    LOCAL_ADDR: conn.localAddr,
    REMOTE_ADDR: conn.remoteAddr,
    LOCAL_ID: conn.localId,
    REMOTE_ID: conn.remoteId,
    PSK: swanSecret(conn.psk),
    IKE_PROPOSAL: ike,
    ESP_PROPOSAL: conn.pfs === false ? esp : `${esp}-${dhGroupOf(ike)}`,
    LOCAL_TS: conn.localTs.join(','),
    REMOTE_TS: conn.remoteTs.join(','),
    DPD_DELAY: String(conn.dpdDelay ?? 0),
    DPD_ACTION: conn.dpdAction ?? 'clear',
    IKE_REKEY: String(conn.ikeRekey ?? 14400),
    CHILD_REKEY: String(childRekey),
    CHILD_LIFE: String(conn.childLife ?? Math.ceil(childRekey * 1.1)),
    CHILD_RAND: String(conn.childRand ?? 0),
    START_ACTION: conn.startAction ?? 'none',
    CLOSE_ACTION: conn.closeAction ?? 'none',
  });
  return { strongswan, swanctl };
}

/** swanctl runs swanctl against a charon's vici socket, in its namespace (bounded). */
export function swanctl(swan: Swan, args: readonly string[], timeoutMs = SWANCTL_TIMEOUT_MS): Promise<RunResult> {
  return runIn(swan.run, swan.conn.host, ['env', `STRONGSWAN_CONF=${swan.conf}`, 'swanctl', ...args], timeoutMs);
}

function spawnCharon(run: LabRun, host: string, dir: string, conf: string, log: string): ChildProcess {
  const script = `mount --bind '${join(dir, 'run')}' /run && exec ${CHARON}`;
  return track(labSpawn(run, host, ['env', `STRONGSWAN_CONF=${conf}`, 'sh', '-c', script], log));
}

function alive(c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null;
}

/** SWAN_FWMARK is the mark charon's own sockets set (strongswan.conf.tpl socket-default.fwmark). */
export const SWAN_FWMARK = '0x42';

/**
 * prepareSwanHost lets charon's encapsulated traffic pass the host's strict rp_filter. charon
 * routes the peer's address into its TUN (table 220, for packets not marked SWAN_FWMARK), so
 * the reverse-path check of an IKE or ESP-in-UDP packet from the peer, arriving on ethN, would
 * point at ipsec0 and drop it. The packets to and from UDP 500/4500 are therefore marked in
 * mangle PREROUTING and src_valid_mark makes the check use the mark: it then looks in main and
 * finds ethN. rp_filter stays 1. Idempotent; only the host's own namespace is touched.
 */
export async function prepareSwanHost(run: LabRun, host: string): Promise<void> {
  const sysctl = await runIn(run, host, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.src_valid_mark=1'], 10_000);
  if (sysctl.status !== 0) throw new Error(`${host}: sysctl src_valid_mark: ${sysctl.stderr}`);
  for (const cmd of ['iptables', 'ip6tables']) {
    const rule = ['-t', 'mangle', 'PREROUTING', '-p', 'udp', '-m', 'multiport', '--ports', '500,4500', '-j', 'MARK', '--set-mark', SWAN_FWMARK];
    const check = await runIn(run, host, [cmd, '-w', '10', ...rule.slice(0, 2), '-C', ...rule.slice(2)], 15_000);
    if (check.status === 0) continue;
    const add = await runIn(run, host, [cmd, '-w', '10', ...rule.slice(0, 2), '-A', ...rule.slice(2)], 15_000);
    if (add.status !== 0) throw new Error(`${host}: ${cmd} mark rule: ${add.stderr}`);
  }
}

/**
 * pinNeighbours adds permanent IPv4 neighbour entries between a charon host and its IKE peer
 * when the two share a segment (lan), both ways. Needed with strict rp_filter: charon routes the
 * peer's address into its TUN, and the kernel validates an ARP request's sender address by that
 * route (ARP carries no mark), so each host silently ignores the other's ARP requests. Once the
 * first neighbour entry goes stale (~30 s) the hosts lose each other; a rekey around that time
 * then looked like a charon bug (DPD failing, ~30 % of the pings lost). Idempotent.
 */
export async function pinNeighbours(run: LabRun, host: string, peerAddr: string): Promise<void> {
  const topo = run.topology;
  const self = findHost(topo, host);
  const peer = topo.hosts.find((h) => h.interfaces.some((i) => i.v4 === peerAddr));
  if (peer === undefined) return;
  const seg = sharedSegment(topo, host, peer.name);
  if (seg === undefined) return;
  const ends: [LabHost, LabHost][] = [[self, peer], [peer, self]];
  for (const [from, to] of ends) {
    const toIf = interfaceOn(to, seg);
    const fromIf = interfaceOn(from, seg);
    const link = await runIn(run, to.name, ['ip', '-j', 'link', 'show', toIf.name], 10_000);
    const mac = (JSON.parse(link.status === 0 ? link.stdout : '[]') as { address?: string }[])[0]?.address;
    if (mac === undefined) throw new Error(`${to.name}: no MAC address of ${toIf.name}: ${link.stderr}`);
    const r = await runIn(run, from.name, ['ip', 'neigh', 'replace', toIf.v4, 'lladdr', mac, 'dev', fromIf.name, 'nud', 'permanent'], 10_000);
    if (r.status !== 0) throw new Error(`${from.name}: ip neigh replace ${toIf.v4}: ${r.stderr}`);
  }
}

/**
 * startSwan writes the configs into <run dir>/swan/<host>/, starts charon and loads the
 * connection and its secret. Throws Error (with the log's tail) when charon does not open its
 * vici socket within SWAN_START_TIMEOUT_MS or the load fails.
 */
export async function startSwan(run: LabRun, conn: SwanConn): Promise<Swan> {
  const dir = swanDir(run, conn.host);
  mkdirSync(join(dir, 'run'), { recursive: true, mode: 0o700 });
  const { strongswan, swanctl: swanctlConf } = renderSwanConfigs(dir, conn);
  const conf = join(dir, 'strongswan.conf');
  writeFileSync(conf, strongswan, { mode: 0o600 });
  writeFileSync(join(dir, 'swanctl.conf'), swanctlConf, { mode: 0o600 });
  await prepareSwanHost(run, conn.host);
  await pinNeighbours(run, conn.host, conn.remoteAddr);
  const log = join(dir, 'charon.out');
  const swan: Swan = { run, conn, name: conn.name ?? 'lab', dir, conf, log, child: spawnCharon(run, conn.host, dir, conf, log) };
  await waitVici(swan);
  await loadConns(swan);
  return swan;
}

async function waitVici(swan: Swan): Promise<void> {
  const sock = join(swan.dir, 'charon.vici');
  const ok = await pollUntil(async () => {
    if (!alive(swan.child)) return true;
    if (!existsSync(sock)) return false;
    return (await swanctl(swan, ['--version'], 5_000)).status === 0;
  }, SWAN_START_TIMEOUT_MS / 100, 100);
  if (!ok || !alive(swan.child)) {
    throw new Error(`${swan.conn.host}: charon did not start (${ok ? 'exited' : 'no vici socket'}):\n${swanLogTail(swan)}`);
  }
}

/** swanLogTail returns the end of charon's stdout/stderr and file log, for assertion messages. */
export function swanLogTail(swan: Swan, lines = 25): string {
  const read = (f: string): string => (existsSync(f) ? readFileSync(f, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : `(no ${f})`);
  return `${read(swan.log)}\n--- charon.log\n${read(join(swan.dir, 'charon.log'))}`;
}

/** loadConns (re)loads swanctl.conf: connections and secrets. Throws Error when swanctl fails. */
export async function loadConns(swan: Swan): Promise<void> {
  const r = await swanctl(swan, ['--load-all', '--file', join(swan.dir, 'swanctl.conf')]);
  if (r.status !== 0) throw new Error(`${swan.conn.host}: swanctl --load-all: ${r.stdout}${r.stderr}`);
}

/** initiate asks charon to initiate the Child SA (and the IKE SA); resolves with swanctl's outcome. */
export function initiate(swan: Swan, timeoutS = 20): Promise<RunResult> {
  return swanctl(swan, ['--initiate', '--child', swan.name, '--timeout', String(timeoutS)], (timeoutS + 10) * 1000);
}

/** terminateIke asks charon to delete its IKE SA(s) of the connection (sends Delete). */
export function terminateIke(swan: Swan, timeoutS = 10): Promise<RunResult> {
  return swanctl(swan, ['--terminate', '--ike', swan.name, '--timeout', String(timeoutS)], (timeoutS + 10) * 1000);
}

/** stopSwan stops charon by pid (SIGTERM, bounded wait, SIGKILL); resolves with how it ended. */
export function stopSwan(swan: Swan): Promise<number | NodeJS.Signals | null> {
  return stopProcess(swan.child);
}

/** killSwan sends SIGKILL to charon (kill -9: no Delete, no cleanup) and waits for it to exit (bounded). */
export async function killSwan(swan: Swan): Promise<void> {
  if (!alive(swan.child)) return;
  const exited = new Promise<void>((r) => swan.child.once('exit', () => r()));
  swan.child.kill('SIGKILL');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
}

/** restartSwan starts charon again with the same files (after stopSwan or killSwan) and reloads the connection. */
export async function restartSwan(swan: Swan): Promise<void> {
  if (alive(swan.child)) throw new Error(`${swan.conn.host}: charon still runs (pid ${swan.child.pid ?? '?'})`);
  // kill -9 leaves the vici socket file behind; charon replaces it.
  swan.child = spawnCharon(swan.run, swan.conn.host, swan.dir, swan.conf, swan.log);
  await waitVici(swan);
  await loadConns(swan);
}

// ---------------------------------------------------------------------------------------------
// `swanctl --list-sas --raw`

/** ViciValue is a value of a vici message as swanctl --raw prints it: text, a list, or a section. */
export type ViciValue = string | readonly string[] | ViciSection;

/** ViciSection is a vici section: named values in order. */
export interface ViciSection {
  readonly [key: string]: ViciValue;
}

/**
 * parseViciRaw parses one line of `swanctl --raw` output: `<event name> {k=v k2=[a b] sub {...}}`.
 * Returns the event name and its top section; throws Error on text that does not follow that
 * shape. Values hold no spaces or braces in what charon prints for SAs (addresses, ids of the lab,
 * algorithm names, numbers), which is what the tokenizer assumes.
 */
export function parseViciRaw(line: string): { event: string; body: ViciSection } {
  const tokens = line.match(/\{|\}|\[|\]|[^\s{}[\]]+/g) ?? [];
  let i = 0;
  const next = (): string => {
    const t = tokens[i++];
    if (t === undefined) throw new Error(`vici raw: unexpected end of "${line.slice(0, 200)}"`);
    return t;
  };
  const section = (): ViciSection => {
    const out: Record<string, ViciValue> = {};
    for (;;) {
      const t = next();
      if (t === '}') return out;
      const eq = t.indexOf('=');
      if (eq > 0) {
        const key = t.slice(0, eq);
        const rest = t.slice(eq + 1);
        if (rest === '' && tokens[i] === '[') {
          i++;
          const list: string[] = [];
          for (let u = next(); u !== ']'; u = next()) list.push(u);
          out[key] = list;
        } else {
          out[key] = rest;
        }
      } else {
        if (next() !== '{') throw new Error(`vici raw: section ${t} without "{"`);
        out[t] = section();
      }
    }
  };
  const words: string[] = [];
  for (let t = next(); t !== '{'; t = next()) words.push(t);
  const body = section();
  if (i !== tokens.length) throw new Error(`vici raw: trailing text after the section in "${line.slice(0, 200)}"`);
  return { event: words.join(' '), body };
}

/** SwanChildSa is one Child SA of `--list-sas`. */
export interface SwanChildSa {
  readonly name: string;
  readonly state: string;
  readonly encap: boolean;
  readonly spiIn: string;
  readonly spiOut: string;
  readonly encrAlg: string;
  readonly encrKeysize: number;
  readonly dhGroup: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly installTime: number;
  readonly rekeyTime: number;
  readonly localTs: readonly string[];
  readonly remoteTs: readonly string[];
}

/** SwanIkeSa is one IKE SA of `--list-sas`, with its Child SAs. */
export interface SwanIkeSa {
  readonly name: string;
  readonly uniqueId: number;
  readonly state: string;
  readonly initiator: boolean;
  readonly localHost: string;
  readonly localPort: number;
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly localId: string;
  readonly remoteId: string;
  readonly initiatorSpi: string;
  readonly responderSpi: string;
  readonly natLocal: boolean;
  readonly natRemote: boolean;
  readonly natFake: boolean;
  readonly encrAlg: string;
  readonly dhGroup: string;
  readonly established: number;
  readonly children: readonly SwanChildSa[];
}

const str = (s: ViciSection, k: string): string => (typeof s[k] === 'string' ? s[k] : '');
const int = (s: ViciSection, k: string): number => (typeof s[k] === 'string' ? Number(s[k]) : -1);
const list = (s: ViciSection, k: string): readonly string[] => {
  const v = s[k];
  return Array.isArray(v) ? (v as readonly string[]) : [];
};
const sub = (s: ViciSection, k: string): ViciSection => {
  const v = s[k];
  return typeof v === 'object' && !Array.isArray(v) ? (v as ViciSection) : {};
};

/** parseListSas reads `swanctl --list-sas --raw` output: one `list-sa event {...}` line per IKE SA. */
export function parseListSas(stdout: string): SwanIkeSa[] {
  const out: SwanIkeSa[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('list-sa event')) continue;
    const { body } = parseViciRaw(line);
    for (const [name, v] of Object.entries(body)) {
      if (typeof v !== 'object' || Array.isArray(v)) continue;
      const s = v as ViciSection;
      const kids = sub(s, 'child-sas');
      out.push({
        name,
        uniqueId: int(s, 'uniqueid'),
        state: str(s, 'state'),
        initiator: str(s, 'initiator') === 'yes',
        localHost: str(s, 'local-host'),
        localPort: int(s, 'local-port'),
        remoteHost: str(s, 'remote-host'),
        remotePort: int(s, 'remote-port'),
        localId: str(s, 'local-id'),
        remoteId: str(s, 'remote-id'),
        initiatorSpi: str(s, 'initiator-spi'),
        responderSpi: str(s, 'responder-spi'),
        natLocal: str(s, 'nat-local') === 'yes',
        natRemote: str(s, 'nat-remote') === 'yes',
        natFake: str(s, 'nat-fake') === 'yes',
        encrAlg: str(s, 'encr-alg'),
        dhGroup: str(s, 'dh-group'),
        established: int(s, 'established'),
        children: Object.values(kids).filter((c): c is ViciSection => typeof c === 'object' && !Array.isArray(c)).map((c) => ({
          name: str(c, 'name'),
          state: str(c, 'state'),
          encap: str(c, 'encap') === 'yes',
          spiIn: str(c, 'spi-in'),
          spiOut: str(c, 'spi-out'),
          encrAlg: str(c, 'encr-alg'),
          encrKeysize: int(c, 'encr-keysize'),
          dhGroup: str(c, 'dh-group'),
          bytesIn: int(c, 'bytes-in'),
          bytesOut: int(c, 'bytes-out'),
          packetsIn: int(c, 'packets-in'),
          packetsOut: int(c, 'packets-out'),
          installTime: int(c, 'install-time'),
          rekeyTime: int(c, 'rekey-time'),
          localTs: list(c, 'local-ts'),
          remoteTs: list(c, 'remote-ts'),
        })),
      });
    }
  }
  return out;
}

/** listSas returns charon's IKE SAs (empty when it does not answer). */
export async function listSas(swan: Swan): Promise<SwanIkeSa[]> {
  const r = await swanctl(swan, ['--list-sas', '--raw'], 15_000);
  if (r.status !== 0) return [];
  return parseListSas(r.stdout);
}

/** installedChildren returns the INSTALLED Child SAs of ESTABLISHED IKE SAs. */
export function installedChildren(sas: readonly SwanIkeSa[]): SwanChildSa[] {
  return sas.filter((s) => s.state === 'ESTABLISHED').flatMap((s) => s.children.filter((c) => c.state === 'INSTALLED'));
}

/** waitEstablished polls listSas until an IKE SA is ESTABLISHED with an INSTALLED Child SA (bounded); resolves with the SAs or undefined. */
export async function waitEstablished(swan: Swan, tries = 60, intervalMs = 500): Promise<SwanIkeSa[] | undefined> {
  let last: SwanIkeSa[] = [];
  const ok = await pollUntil(async () => {
    last = await listSas(swan);
    return installedChildren(last).length > 0;
  }, tries, intervalMs);
  return ok ? last : undefined;
}

/**
 * swanConnFor builds one end's SwanConn from the lab's IKE keys for a pair: ids = the hosts' own
 * addresses (as the espgate configs use), the peer reached at its outer address (the router's,
 * behind a NAT), traffic selectors = the hosts' own addresses (IPv4 only, or both families).
 */
export function swanConnFor(run: LabRun, psk: LabPsk, host: string, extra: Partial<SwanConn> = {}, families: readonly (4 | 6)[] = [4]): SwanConn {
  const selfIsA = psk.a === host;
  const peer = selfIsA ? psk.b : psk.a;
  const peering = peeringOf(run.topology, host, peer);
  if (peering === undefined) throw new Error(`no peering ${host}-${peer}`);
  const localId = selfIsA ? psk.idA : psk.idB;
  const remoteId = selfIsA ? psk.idB : psk.idA;
  return {
    host,
    localAddr: localId,
    remoteAddr: outerAddressOf(run.topology, peering, peer, 4),
    localId,
    remoteId,
    psk: psk.psk,
    localTs: families.map((f) => hostPrefix(addressOf(run.topology, host, f))),
    remoteTs: families.map((f) => hostPrefix(addressOf(run.topology, peer, f))),
    ...extra,
  };
}
