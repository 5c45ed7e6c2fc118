/**
 * daemon/ike-driver.ts: runs the pure IKEv2 state machine (src/ike/sa/session.ts) against
 * real edges: datagrams on UDP ports 500 and 4500, the clock and timers, and the SADB.
 * Everything the driver touches comes in through narrow interfaces (IkeTransport, IkeSaSink,
 * IkeTimers), so a unit test wires two drivers back to back with no network and a clock it moves.
 *
 *   UDP 500/4500 --receive()--> routeIkeDatagram --> session (ours by SPI, or a new responder)
 *                                                  |  events   --> 'child-sa': sink.addInbound (+ setOutbound)
 *                                                  |               FIRST, so an SA is installed before the
 *                                                  |               message that lets the peer use it leaves
 *                                                  |  messages --> IkeTransport.send(session.remote, session.localPort)
 *                                                  |  events   --> 'child-sa-outbound': setOutbound
 *                                                  |               'child-sa-deleted' / 'closed': remove (fail closed;
 *                                                  |               a rekeyed SA's inbound half after REKEY_LINGER_MS)
 *                                                  |               'ike-rekeyed': a new entry takes the Child SAs
 *                                                  |               'ike-redundant': an entry that only waits to be
 *                                                  |               deleted (simultaneous IKE SA rekeys, §2.8.2)
 *   timer per session: min(nextTimeout, DPD due, rekey/expiry due, usage poll) --> onTimeout / sendDpd /
 *                      rekeyChildSa / rekeyIkeSa / expiry
 *   timer per peer (initiate): start after a close, backing off INITIATE_BACKOFF_MS .. MAX
 *
 * NAT traversal (RFC 7296 §2.23): the session decides the path (session.remote, session.localPort):
 * the initiator floats to 4500 when IKE_SA_INIT detects a NAT, a responder answers where a request
 * came from, and a new source port of an authenticated message is followed ('path-changed': the
 * Child SAs' encap port follows). Child SAs of such an IKE SA carry `encap`.
 *
 * Lifetimes: each IKE SA and Child SA is rekeyed at REKEY_SOFT_FRACTION of its lifetime minus up to
 * REKEY_JITTER_FRACTION at random (so the side whose soft time comes first initiates; a collision
 * is settled by the session, RFC 7296 §2.8.1 for a Child SA, §2.8.2 for the IKE SA) and removed
 * at 100% (fail closed). Byte and packet lifetimes are checked through sink.usage every USAGE_POLL_MS.
 *
 * Rekeying a Child SA, make before break (which side sends on what, as strongSwan does it):
 *   initiator: install new inbound -> CREATE_CHILD_SA request ... response -> send on the new SA,
 *              Delete(old) ... response -> old inbound removed REKEY_LINGER_MS later
 *   responder: request -> install new inbound -> response (still sending on the old SA) ...
 *              Delete(old) -> send on the new SA, answer; old inbound removed REKEY_LINGER_MS later
 *   so at every moment each side sends on an SA whose inbound half the other side has installed.
 *
 * Rekeying the IKE SA: the Child SAs' entries move to the new IKE SA's entry as they are (their
 * ESP keys do not change, nothing is reinstalled); the old entry only waits for its Delete. When
 * both sides rekeyed it at once (§2.8.2) the session names the surviving new IKE SA
 * ('ike-rekeyed') and the redundant one ('ike-redundant'): the latter gets an entry of its own,
 * without Child SAs and never active, that routes its Delete (ours or the peer's) and goes when
 * it closes, or after SUPERSEDED_WAIT_MS like an old entry whose Delete never comes. So a peer
 * ends with one IKE SA.
 *
 * Several IKE SAs with one peer (both sides initiated at once, or a peer that restarted):
 *   - 'established' with INITIAL_CONTACT: the peer lost its state, so every SA with it that was
 *     established before this one's session was created is dropped (locally, no Delete).
 *   - two established SAs with the same peer otherwise: both sides keep the one with the lower
 *     SPIi (both see the same pair of SPIs) and delete the other.
 * The outbound SA towards a peer is the newest installed Child SA; when it goes, the next newest
 * takes over, and with none left the peer has no outbound SA: its traffic is dropped.
 *
 * A driver is used from the one thread that runs the daemon; none of its methods throw per datagram.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { SPI_MIN } from '../esp/sa.js';
import { routeIkeDatagram } from '../ike/sa/dispatch.js';
import { NAT_T_PORT as IKE_NAT_T_PORT } from '../ike/sa/natd.js';
import { IkeSession } from '../ike/sa/session.js';
import type { ChildSa, IkeEvent, IkeOutput, IkePath, IkePeer, IkeState } from '../ike/sa/session.js';
import type { IkeIdentity } from '../ike/sa/identity.js';
import { IkeCookieJar } from '../ike/sa/cookie.js';
import type { IkeCookiePolicy } from '../ike/sa/types.js';
import type { EspAlgorithms, IkeAlgorithms } from '../ike/sa/proposals.js';

/** IKE_PORT is the UDP port IKE starts on (RFC 7296 §2). */
export const IKE_PORT = 500;
/**
 * NAT_T_PORT is the UDP port of NAT traversal (RFC 7296 §2.23, RFC 3948): IKE moves to it when a
 * NAT is detected, behind a four-octet zero non-ESP marker that the transport adds and strips,
 * and UDP-encapsulated ESP shares it.
 */
export const NAT_T_PORT: number = IKE_NAT_T_PORT;
/** DPD_DEFAULT_MS is how long a peer may be silent before a liveness check is sent. */
export const DPD_DEFAULT_MS = 30_000;
/** INITIATE_BACKOFF_MS is the first wait before initiating again after a close; it doubles. */
export const INITIATE_BACKOFF_MS = 1_000;
/** INITIATE_BACKOFF_MAX_MS caps the re-initiation backoff. */
export const INITIATE_BACKOFF_MAX_MS = 60_000;
/** MAX_TIMER_MS bounds one timer, so a clock jump never leaves a session unserviced for long. */
export const MAX_TIMER_MS = 60_000;
/** MAX_SESSIONS_PER_PEER bounds the IKE SAs (half-open included) kept per peer. */
export const MAX_SESSIONS_PER_PEER = 8;
/**
 * COOKIE_THRESHOLD: with this many half-open responder SAs, IKE_SA_INIT requests must carry a
 * cookie (RFC 7296 §2.6): a sender that spoofs a peer's address never sees the cookie, so it can
 * no longer fill that peer's half-open slots, while the real peer answers it and gets through.
 */
export const COOKIE_THRESHOLD = 2;
/** COOKIE_ROTATE_MS: the cookie secret changes this often (the previous one stays valid once). */
export const COOKIE_ROTATE_MS = 300_000;
/** INIT_RATE_PER_S and INIT_BURST: IKE_SA_INIT requests taken per second (token bucket), each costing a DH. */
export const INIT_RATE_PER_S = 50;
export const INIT_BURST = 100;
/** IKE_LIFETIME_DEFAULT_MS is an IKE SA's lifetime unless the peer sets ikeLifetimeMs (4 h). */
export const IKE_LIFETIME_DEFAULT_MS = 4 * 3_600_000;
/** CHILD_LIFETIME_DEFAULT_MS is a Child SA's lifetime unless the peer sets childLifetimeMs (1 h). */
export const CHILD_LIFETIME_DEFAULT_MS = 3_600_000;
/** REKEY_SOFT_FRACTION is the part of a lifetime after which an SA is rekeyed (before jitter). */
export const REKEY_SOFT_FRACTION = 0.9;
/** REKEY_JITTER_FRACTION is the most of a lifetime taken off the soft time at random. */
export const REKEY_JITTER_FRACTION = 0.05;
/** REKEY_RETRY_MS is the wait before a failed or refused rekey is tried again (while the SA lives). */
export const REKEY_RETRY_MS = 10_000;
/** REKEY_LINGER_MS is how long a rekeyed Child SA's inbound half stays after its Delete, for packets in flight. */
export const REKEY_LINGER_MS = 2_000;
/** USAGE_POLL_MS is how often byte and packet lifetimes are checked (sink.usage). */
export const USAGE_POLL_MS = 1_000;
/** SUPERSEDED_WAIT_MS is how long an IKE SA replaced by a rekey waits for its Delete before it is forgotten. */
export const SUPERSEDED_WAIT_MS = 60_000;

/**
 * IkeTransport sends datagrams to the peers; the driver's receive() takes what arrives. A
 * datagram to port NAT_T_PORT leaves from local port NAT_T_PORT with the non-ESP marker
 * prepended; to any other port, from local IKE_PORT as it is.
 */
export interface IkeTransport {
  /**
   * send sends one IKE message to address:port. localPort, when given, is the local port to send
   * from (NAT_T_PORT: with the non-ESP marker); without it, the port rule above applies. The
   * driver always passes it: behind a NAT, the peer's port on the 4500 path need not be 4500.
   */
  send(bytes: Uint8Array, address: string, port: number, localPort?: number): void;
  close(): void;
}

/** IkeSaSink is where negotiated Child SAs go: the SADB of the running engine. */
export interface IkeSaSink {
  /** spiInUse says whether an inbound SPI is taken (static SAs and installed Child SAs). */
  spiInUse(spi: number): boolean;
  /** addInbound installs the inbound half of a Child SA of peer `peer`. */
  addInbound(peer: string, endpoint: string, child: ChildSa): void;
  /** removeInbound uninstalls the inbound SA with this SPI. */
  removeInbound(spi: number): void;
  /** setOutbound makes child's outbound half the SA towards peer, or removes it (undefined). */
  setOutbound(peer: string, child: ChildSa | undefined): void;
  /**
   * usage reports what a Child SA carried so far (the larger of its two directions), for
   * lifetimes by bytes and packets; undefined when neither SPI is installed.
   */
  usage?(inboundSpi: number, outboundSpi: number): { readonly packets: number; readonly bytes: number } | undefined;
}

/** IkeTimers is setTimeout/clearTimeout, replaceable in tests. */
export interface IkeTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** IkeDriverLog takes one line per state change. */
export interface IkeDriverLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** IkeDriverPeer is one peer negotiated by IKE. */
export interface IkeDriverPeer {
  readonly name: string;
  /** endpoint is the peer's (public) address: IKE goes to and must come from it (port 500, or its NAT-T port). */
  readonly endpoint: string;
  /** protect lists the peer's protected prefixes (its traffic selectors). */
  readonly protect: readonly string[];
  readonly psk: Uint8Array;
  /** localId is what we present (default: our local address of the endpoint's family). */
  readonly localId?: IkeIdentity;
  /** remoteId is what the peer must present (default: its endpoint address). */
  readonly remoteId?: IkeIdentity;
  /** initiate starts an IKE SA towards the peer, and again after a close (default true). */
  readonly initiate?: boolean;
  /** ike and esp are the algorithms offered and accepted (defaults: proposals.ts). */
  readonly ike?: IkeAlgorithms;
  readonly esp?: EspAlgorithms;
  /** pfs: a Child SA rekey carries a fresh DH exchange in the IKE SA's group (default true). */
  readonly pfs?: boolean;
  /** dpdMs overrides the driver's dpdMs for this peer; 0 turns liveness checks off. */
  readonly dpdMs?: number;
  /** ikeLifetimeMs: the IKE SA is rekeyed before this age (default 4 h). */
  readonly ikeLifetimeMs?: number;
  /** childLifetimeMs: a Child SA is rekeyed before this age (default 1 h). */
  readonly childLifetimeMs?: number;
  /** childLifetimeBytes/Packets: a Child SA is rekeyed before it carried this much (default: no limit). */
  readonly childLifetimeBytes?: number;
  readonly childLifetimePackets?: number;
}

/** IkeDriverOptions configure a driver. */
export interface IkeDriverOptions {
  readonly peers: readonly IkeDriverPeer[];
  /** localProtect lists our protected prefixes. */
  readonly localProtect: readonly string[];
  /** localAddress4/6 are our addresses towards the peers (identities and NAT detection). */
  readonly localAddress4?: string;
  readonly localAddress6?: string;
  readonly transport: IkeTransport;
  readonly sink: IkeSaSink;
  readonly log: IkeDriverLog;
  readonly dpdMs?: number;
  readonly now?: () => number;
  readonly timers?: IkeTimers;
  readonly random?: (n: number) => Uint8Array;
  /** cookieThreshold overrides COOKIE_THRESHOLD (half-open SAs before cookies are required). */
  readonly cookieThreshold?: number;
  /** retransmitInitialMs overrides the sessions' first retransmission interval (tests). */
  readonly retransmitInitialMs?: number;
}

/** IkeChildStatus is one installed Child SA for status --json. */
export interface IkeChildStatus {
  /** inSpi / outSpi are the SPIs as 0x%08x. */
  readonly inSpi: string;
  readonly outSpi: string;
  readonly algorithm: string;
  /** encapPort is the peer's UDP port of UDP-encapsulated ESP, or null for plain ESP. */
  readonly encapPort: number | null;
  readonly establishedMs: number;
  /** rekeyAtMs is when the soft lifetime starts a rekey (0: this SA is being replaced). */
  readonly rekeyAtMs: number;
}

/** IkePeerStatus is one peer's IKE state for status --json (the new fields are '' / 0 / false / [] without an IKE SA). */
export interface IkePeerStatus {
  readonly state: IkeState | 'none';
  readonly lastHeardMs: number;
  /** spiI / spiR are the IKE SA's SPIs, 16 hex digits. */
  readonly spiI: string;
  readonly spiR: string;
  readonly establishedMs: number;
  /** natT: a NAT was detected, IKE and ESP run over UDP 4500. */
  readonly natT: boolean;
  /** ikeRekeyAtMs is when the IKE SA's soft lifetime starts a rekey. */
  readonly ikeRekeyAtMs: number;
  /** lastDpdMs is when the last liveness check was sent (0: none). */
  readonly lastDpdMs: number;
  readonly children: readonly IkeChildStatus[];
}

/** ChildRec is a Child SA as the driver keeps it: its lifetimes and whether it may carry outbound traffic. */
interface ChildRec {
  child: ChildSa;
  readonly establishedMs: number;
  /** softAt: a rekey is asked for at this time (moved on after a refusal); hardAt: removed. */
  softAt: number;
  readonly hardAt: number;
  readonly softBytes: number | undefined;
  readonly hardBytes: number | undefined;
  readonly softPackets: number | undefined;
  readonly hardPackets: number | undefined;
  /** rekeyRequested: the session is rekeying it (or it was replaced). */
  rekeyRequested: boolean;
  /** ready: it may be the outbound SA (false for a rekey responder's SA until the old one is deleted). */
  ready: boolean;
}

interface Entry {
  readonly session: IkeSession;
  readonly peer: IkeDriverPeer;
  readonly createdMs: number;
  /** createdSeq and establishedSeq order entries without relying on the clock's resolution. */
  readonly createdSeq: number;
  establishedSeq: number;
  /** ourSpi is the key in #bySpi once known. */
  ourSpi: bigint;
  halfOpenKey: string | undefined;
  timer: unknown;
  lastDpdMs: number;
  established: boolean;
  establishedMs: number;
  children: ChildRec[];
  state: IkeState;
  ikeSoftAt: number;
  ikeHardAt: number;
  ikeRekeyRequested: boolean;
  /** superseded: a rekey replaced this IKE SA; it only waits for its Delete, until supersededMs + SUPERSEDED_WAIT_MS. */
  superseded: boolean;
  supersededMs: number;
}

interface PeerState {
  readonly peer: IkeDriverPeer;
  retryTimer: unknown;
  backoffMs: number;
  /** installed lists the installed Child SAs, oldest first; the last ready one is the outbound SA. */
  installed: ChildRec[];
  /** outbound is what setOutbound was last given. */
  outbound: ChildSa | undefined;
}

const realTimers: IkeTimers = {
  set: (fn, ms) => { const t = setTimeout(fn, ms); t.unref(); return t; },
  clear: (h) => { clearTimeout(h as NodeJS.Timeout); },
};

/** IkeDriver owns every IKE session of the daemon. */
export class IkeDriver {
  readonly #o: IkeDriverOptions;
  readonly #now: () => number;
  readonly #timers: IkeTimers;
  readonly #random: (n: number) => Uint8Array;
  readonly #dpdMs: number;
  readonly #peers = new Map<string, PeerState>();
  readonly #byEndpoint = new Map<string, PeerState>();
  readonly #bySpi = new Map<bigint, Entry>();
  readonly #halfOpen = new Map<string, Entry>();
  readonly #entries = new Set<Entry>();
  readonly #ourChildSpis = new Set<number>();
  /** #lingering maps the inbound SPI of a rekeyed Child SA to the timer that removes it. */
  readonly #lingering = new Map<number, unknown>();
  #stopped = false;
  #seq = 0;
  /** dropped counts datagrams the driver discarded before any session (unknown source, no route). */
  dropped = 0;
  /** rateLimited counts IKE_SA_INIT requests dropped by the INIT_RATE_PER_S token bucket. */
  rateLimited = 0;
  readonly #cookieJar: IkeCookieJar;
  #cookieRotatedMs = 0;
  readonly #cookiePolicy: IkeCookiePolicy;
  #initTokens = INIT_BURST;
  #initTokensMs = 0;

  constructor(o: IkeDriverOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#timers = o.timers ?? realTimers;
    this.#random = o.random ?? ((n) => randomBytes(n));
    this.#dpdMs = o.dpdMs ?? DPD_DEFAULT_MS;
    this.#cookieJar = new IkeCookieJar(this.#random);
    this.#cookieRotatedMs = this.#now();
    this.#initTokensMs = this.#now();
    this.#cookiePolicy = { jar: this.#cookieJar, required: () => this.#halfOpen.size >= (o.cookieThreshold ?? COOKIE_THRESHOLD) };
    for (const p of o.peers) {
      const st: PeerState = { peer: p, retryTimer: undefined, backoffMs: INITIATE_BACKOFF_MS, installed: [], outbound: undefined };
      this.#peers.set(p.name, st);
      this.#byEndpoint.set(canonical(p.endpoint), st);
    }
  }

  /** sessionCount is how many IKE SAs the driver keeps, half-open ones and ones replaced by a rekey included (metrics, tests). */
  get sessionCount(): number {
    return this.#entries.size;
  }

  /** start initiates towards every peer with initiate !== false. */
  start(): void {
    for (const st of this.#peers.values()) if (st.peer.initiate !== false) this.#initiate(st);
  }

  /** stop deletes every IKE SA (best effort: the Deletes are sent once), removes their SAs and cancels all timers. */
  stop(): void {
    if (this.#stopped) return;
    const now = this.#now();
    for (const e of [...this.#entries]) {
      if (e.established && !e.superseded) this.#send(e, e.session.close(now));
      this.#forget(e, 'daemon stopping');
    }
    for (const [spi, t] of this.#lingering) {
      this.#timers.clear(t);
      this.#uninstallInbound(spi);
    }
    this.#lingering.clear();
    for (const st of this.#peers.values()) {
      if (st.retryTimer !== undefined) this.#timers.clear(st.retryTimer);
      st.retryTimer = undefined;
    }
    this.#stopped = true;
  }

  /** status returns each peer's best IKE SA: established if any (the newest after a rekey), else the newest attempt. */
  status(peer: string): IkePeerStatus | undefined {
    if (!this.#peers.has(peer)) return undefined;
    let best: Entry | undefined;
    for (const e of this.#entries) {
      if (e.peer.name !== peer || e.superseded) continue;
      if (best === undefined || (e.established && !best.established) || (e.established === best.established && e.createdSeq >= best.createdSeq)) best = e;
    }
    if (best === undefined) {
      return { state: 'none', lastHeardMs: 0, spiI: '', spiR: '', establishedMs: 0, natT: false, ikeRekeyAtMs: 0, lastDpdMs: 0, children: [] };
    }
    const s = best.session;
    return {
      state: s.state, lastHeardMs: s.lastHeardMs,
      spiI: s.spiI.toString(16).padStart(16, '0'), spiR: s.spiR.toString(16).padStart(16, '0'),
      establishedMs: best.establishedMs, natT: s.natDetected, ikeRekeyAtMs: best.established ? best.ikeSoftAt : 0, lastDpdMs: best.lastDpdMs,
      children: best.children.map((r) => ({
        inSpi: hex(r.child.inbound.spi), outSpi: hex(r.child.outbound.spi), algorithm: r.child.algorithm,
        encapPort: r.child.encap?.remotePort ?? null, establishedMs: r.establishedMs, rekeyAtMs: r.rekeyRequested ? 0 : r.softAt,
      })),
    };
  }

  /**
   * rekeyNow starts a rekey of the peer's IKE SA ('ike') or of its newest Child SA ('child') now,
   * as the soft lifetime would (an operator's request, tests). Returns false when there is
   * nothing to rekey or a rekey is already under way.
   */
  rekeyNow(peer: string, what: 'ike' | 'child'): boolean {
    if (this.#stopped) return false;
    let e: Entry | undefined;
    for (const x of this.#entries) if (x.peer.name === peer && this.#active(x) && (e === undefined || x.establishedSeq > e.establishedSeq)) e = x;
    if (e === undefined) return false;
    const now = this.#now();
    if (what === 'ike') {
      if (e.ikeRekeyRequested) return false;
      e.ikeSoftAt = now;
    } else {
      const r = [...e.children].reverse().find((c) => !c.rekeyRequested);
      if (r === undefined) return false;
      r.softAt = now;
    }
    this.#lifetimes(e, now);
    if (this.#entries.has(e)) this.#arm(e);
    return true;
  }

  /**
   * receive takes one datagram that arrived on local port `localPort` (IKE_PORT, or NAT_T_PORT
   * with the non-ESP marker already stripped). Never throws.
   */
  receive(bytes: Uint8Array, address: string, port: number, localPort: number = IKE_PORT): void {
    if (this.#stopped) return;
    const route = routeIkeDatagram(bytes, 0, bytes.length);
    const now = this.#now();
    const path = { remotePort: port, localPort };
    switch (route.kind) {
      case 'drop':
        this.dropped++;
        return;
      case 'init-request': {
        const st = this.#byEndpoint.get(canonical(address));
        if (st === undefined) { this.dropped++; return; }
        // Unauthenticated work is bounded: a token bucket for IKE_SA_INIT requests (each costs a
        // DH computation), then cookies (RFC 7296 §2.6) once half-open SAs pile up.
        if (!this.#takeInitToken(now)) { this.rateLimited++; return; }
        if (now - this.#cookieRotatedMs >= COOKIE_ROTATE_MS) { this.#cookieJar.rotate(); this.#cookieRotatedMs = now; }
        const key = `${canonical(address)}|${port}|${localPort}|${route.spiI.toString(16)}`;
        let e = this.#halfOpen.get(key);
        if (e === undefined) {
          if (this.#countFor(st.peer.name) >= MAX_SESSIONS_PER_PEER) { this.dropped++; return; }
          e = this.#newEntry(st, 'responder', port, localPort);
          if (e === undefined) return;
          e.halfOpenKey = key;
        }
        this.#handle(e, bytes, now, path);
        if (e.ourSpi === 0n && e.session.spiR !== 0n && this.#entries.has(e)) {
          e.ourSpi = e.session.spiR;
          this.#bySpi.set(e.ourSpi, e);
          this.#halfOpen.set(key, e);
        } else if (e.ourSpi === 0n && this.#entries.has(e)) {
          this.#forget(e, undefined); // answered statelessly (COOKIE, INVALID_KE, NO_PROPOSAL): keep nothing
        }
        return;
      }
      case 'responder':
      case 'initiator': {
        const e = this.#bySpi.get(route.spi);
        if (e === undefined || canonical(address) !== canonical(e.peer.endpoint)) { this.dropped++; return; }
        this.#handle(e, bytes, now, path);
        return;
      }
    }
  }

  /** #takeInitToken refills the IKE_SA_INIT bucket (INIT_RATE_PER_S, burst INIT_BURST) and takes one. */
  #takeInitToken(now: number): boolean {
    const elapsed = Math.max(0, now - this.#initTokensMs);
    this.#initTokensMs = now;
    this.#initTokens = Math.min(INIT_BURST, this.#initTokens + (elapsed * INIT_RATE_PER_S) / 1000);
    if (this.#initTokens < 1) return false;
    this.#initTokens -= 1;
    return true;
  }

  #countFor(peer: string): number {
    let n = 0;
    for (const e of this.#entries) if (e.peer.name === peer) n++;
    return n;
  }

  #initiate(st: PeerState): void {
    if (this.#stopped) return;
    st.retryTimer = undefined;
    const e = this.#newEntry(st, 'initiator', IKE_PORT, IKE_PORT);
    if (e === undefined) return;
    const out = e.session.start(this.#now());
    e.ourSpi = e.session.spiI;
    this.#bySpi.set(e.ourSpi, e);
    this.#after(e, out);
  }

  #scheduleInitiate(st: PeerState): void {
    if (this.#stopped || st.peer.initiate === false || st.retryTimer !== undefined) return;
    for (const e of this.#entries) if (e.peer.name === st.peer.name && e.state !== 'closed') return; // one is alive or on its way
    const ms = st.backoffMs;
    st.backoffMs = Math.min(st.backoffMs * 2, INITIATE_BACKOFF_MAX_MS);
    this.#o.log.info({ peer: st.peer.name, inMs: ms }, 'ike: initiating again after a pause');
    st.retryTimer = this.#timers.set(() => { this.#initiate(st); }, ms);
  }

  #newEntry(st: PeerState, role: 'initiator' | 'responder', remotePort: number, localPort: number): Entry | undefined {
    const p = st.peer;
    const fam = isIP(p.endpoint) === 6 ? 6 : 4;
    const localAddr = (fam === 6 ? this.#o.localAddress6 : this.#o.localAddress4) ?? (fam === 6 ? '::' : '0.0.0.0');
    const localId: IkeIdentity = p.localId ?? (fam === 6 ? { kind: 'ipv6', address: localAddr } : { kind: 'ipv4', address: localAddr });
    const peer: IkePeer = {
      name: p.name,
      id: p.remoteId ?? (fam === 6 ? { kind: 'ipv6', address: p.endpoint } : { kind: 'ipv4', address: p.endpoint }),
      psk: p.psk,
      protect: p.protect,
    };
    const common = {
      local: { address: localAddr, port: localPort },
      remote: { address: p.endpoint, port: remotePort },
      localId,
      localProtect: this.#o.localProtect,
      random: this.#random,
      allocateSpi: () => this.#allocateSpi(),
      pfs: p.pfs ?? true,
      ...(p.ike === undefined ? {} : { ike: p.ike }),
      ...(p.esp === undefined ? {} : { esp: p.esp }),
      ...(this.#o.retransmitInitialMs === undefined ? {} : { retransmit: { initialMs: this.#o.retransmitInitialMs } }),
    };
    let session: IkeSession;
    try {
      session = role === 'initiator'
        ? new IkeSession({ ...common, role: 'initiator', peer, initialContact: () => !this.#hasEstablished(p.name) })
        : new IkeSession({ ...common, role: 'responder', peers: [peer], cookies: this.#cookiePolicy });
    } catch (err) {
      this.#o.log.warn({ peer: p.name, err: (err as Error).message }, 'ike: cannot make a session for this peer');
      return undefined;
    }
    return this.#addEntry(session, p);
  }

  #addEntry(session: IkeSession, p: IkeDriverPeer): Entry {
    const e: Entry = {
      session, peer: p, createdMs: this.#now(), createdSeq: ++this.#seq, establishedSeq: 0, ourSpi: 0n, halfOpenKey: undefined, timer: undefined,
      lastDpdMs: 0, established: false, establishedMs: 0, children: [], state: session.state,
      ikeSoftAt: Infinity, ikeHardAt: Infinity, ikeRekeyRequested: false, superseded: false, supersededMs: 0,
    };
    this.#entries.add(e);
    return e;
  }

  #allocateSpi(): number {
    for (let i = 0; i < 64; i++) {
      const b = this.#random(4);
      const spi = ((b[0] ?? 0) * 0x1000000 + ((b[1] ?? 0) << 16) + ((b[2] ?? 0) << 8) + (b[3] ?? 0)) >>> 0;
      if (spi < SPI_MIN || this.#ourChildSpis.has(spi) || this.#o.sink.spiInUse(spi)) continue;
      this.#ourChildSpis.add(spi);
      return spi;
    }
    // 64 collisions in a 32-bit space means a broken random source: fail loudly in the control plane.
    throw new Error('ike: could not allocate a free inbound SPI');
  }

  /** #softOf is the soft part of a lifetime: REKEY_SOFT_FRACTION minus up to REKEY_JITTER_FRACTION at random. */
  #softOf(total: number): number {
    const b = this.#random(2);
    const u = ((b[0] ?? 0) * 256 + (b[1] ?? 0)) / 65_535;
    return total * (REKEY_SOFT_FRACTION - REKEY_JITTER_FRACTION * u);
  }

  #handle(e: Entry, bytes: Uint8Array, now: number, path: IkePath): void {
    let out: IkeOutput;
    try {
      out = e.session.handle(bytes, now, path);
    } catch (err) {
      this.#o.log.warn({ peer: e.peer.name, err: (err as Error).message }, 'ike: session failed on a datagram');
      return;
    }
    this.#after(e, out);
  }

  /** #send sends out's messages on the session's current path (NAT-T: from 4500, to the peer's port there). */
  #send(e: Entry, out: IkeOutput): void {
    const r = e.session.remote;
    const localPort = e.session.localPort;
    for (const m of out.messages) {
      try { this.#o.transport.send(m, e.peer.endpoint, r.port, localPort); } catch { /* a send error is like a lost datagram: retransmission covers it */ }
    }
  }

  /**
   * #after acts on out: new Child SAs are installed first (their inbound halves must exist before
   * the message that lets the peer use them leaves), then the messages are sent, then the other
   * events; it logs a state change and re-arms the timer.
   */
  #after(e: Entry, out: IkeOutput): void {
    for (const ev of out.events) if (ev.type === 'child-sa' && this.#entries.has(e)) this.#install(e, ev.child, ev.rekeyOf, ev.deferOutbound === true);
    this.#send(e, out);
    for (const ev of out.events) {
      if (ev.type === 'child-sa') continue;
      // An entry dropped by an earlier event of this output (a duplicate) acts on nothing more.
      if (this.#entries.has(e) || ev.type === 'closed') this.#onEvent(e, ev);
    }
    if (!this.#entries.has(e)) return;
    const st = e.session.state;
    if (st !== e.state) {
      this.#o.log.info({ peer: e.peer.name, role: e.session.role, from: e.state, to: st }, `ike: ${e.peer.name} ${e.state} -> ${st}`);
      e.state = st;
    }
    if (st === 'closed') {
      this.#forget(e, undefined);
      const ps = this.#peers.get(e.peer.name);
      if (ps !== undefined) this.#scheduleInitiate(ps);
      return;
    }
    this.#arm(e);
  }

  /** #install installs a new Child SA's inbound half, and makes it the outbound SA unless deferOutbound. */
  #install(e: Entry, child: ChildSa, rekeyOf: number | undefined, deferOutbound: boolean): void {
    const ps = this.#peers.get(e.peer.name);
    if (ps === undefined) return;
    const now = this.#now();
    const p = e.peer;
    const life = p.childLifetimeMs ?? CHILD_LIFETIME_DEFAULT_MS;
    const bytes = p.childLifetimeBytes !== undefined && p.childLifetimeBytes > 0 ? p.childLifetimeBytes : undefined;
    const packets = p.childLifetimePackets !== undefined && p.childLifetimePackets > 0 ? p.childLifetimePackets : undefined;
    const rec: ChildRec = {
      child, establishedMs: now, softAt: now + this.#softOf(life), hardAt: now + life,
      softBytes: bytes === undefined ? undefined : Math.floor(this.#softOf(bytes)), hardBytes: bytes,
      softPackets: packets === undefined ? undefined : Math.floor(this.#softOf(packets)), hardPackets: packets,
      rekeyRequested: false, ready: !deferOutbound,
    };
    try {
      this.#o.sink.addInbound(e.peer.name, e.peer.endpoint, child);
    } catch (err) {
      this.#o.log.warn({ peer: e.peer.name, err: (err as Error).message }, 'ike: Child SA could not be installed');
      return;
    }
    e.children.push(rec);
    ps.installed.push(rec);
    if (rekeyOf !== undefined) {
      const old = e.children.find((r) => r.child.inbound.spi === rekeyOf);
      if (old !== undefined) old.rekeyRequested = true; // replaced: never rekeyed again
    }
    this.#o.log.info({
      peer: e.peer.name, inSpi: hex(child.inbound.spi), outSpi: hex(child.outbound.spi), algorithm: child.algorithm,
      encapPort: child.encap?.remotePort ?? null, rekeyOf: rekeyOf === undefined ? undefined : hex(rekeyOf), outbound: !deferOutbound,
    }, `ike: ${e.peer.name} Child SA installed${rekeyOf === undefined ? '' : ` (rekey of ${hex(rekeyOf)}${deferOutbound ? ', outbound after its Delete' : ''})`}`);
    this.#applyOutbound(ps, false);
  }

  /**
   * #applyOutbound makes the newest ready Child SA the peer's outbound SA; with none ready, the
   * newest installed one (a rekey responder whose old SA expired before its Delete came); with
   * none at all, no outbound SA (fail closed).
   */
  #applyOutbound(ps: PeerState, force: boolean): void {
    let want: ChildRec | undefined;
    for (const r of ps.installed) if (r.ready) want = r;
    if (want === undefined && ps.installed.length > 0) {
      want = ps.installed[ps.installed.length - 1];
      if (want !== undefined) want.ready = true;
    }
    const child = want?.child;
    if (child === ps.outbound && !force) return;
    try {
      this.#o.sink.setOutbound(ps.peer.name, child);
      ps.outbound = child;
    } catch (err) {
      this.#o.log.warn({ peer: ps.peer.name, err: (err as Error).message }, 'ike: outbound SA could not be set');
    }
  }

  #onEvent(e: Entry, ev: IkeEvent): void {
    const ps = this.#peers.get(e.peer.name);
    if (ps === undefined) return;
    const now = this.#now();
    switch (ev.type) {
      case 'established': {
        e.established = true;
        e.establishedMs = now;
        e.establishedSeq = ++this.#seq;
        this.#setIkeLifetime(e, now);
        if (e.halfOpenKey !== undefined) { this.#halfOpen.delete(e.halfOpenKey); }
        ps.backoffMs = INITIATE_BACKOFF_MS;
        this.#o.log.info({
          peer: e.peer.name, role: e.session.role, spiI: ev.spiI.toString(16), spiR: ev.spiR.toString(16), initialContact: ev.initialContact,
          natT: e.session.natDetected, remotePort: e.session.remote.port, localPort: e.session.localPort,
        }, `ike: ${e.peer.name} IKE SA established`);
        this.#resolveDuplicates(e, ev.initialContact);
        return;
      }
      case 'child-sa':
        return; // installed before the messages were sent (#after)
      case 'child-sa-outbound': {
        const r = e.children.find((x) => x.child.inbound.spi === ev.inboundSpi);
        if (r === undefined) return;
        r.ready = true;
        this.#o.log.info({ peer: e.peer.name, inSpi: hex(r.child.inbound.spi), outSpi: hex(r.child.outbound.spi) }, `ike: ${e.peer.name} sending on the rekeyed Child SA`);
        this.#applyOutbound(ps, false);
        return;
      }
      case 'child-sa-deleted':
        this.#removeChild(e, ev.inboundSpi, `deleted (${ev.reason})`, ev.reason === 'rekeyed');
        return;
      case 'child-sa-failed':
        this.#o.log.warn({ peer: e.peer.name, reason: ev.reason, notifyType: ev.notifyType }, `ike: ${e.peer.name} Child SA not negotiated`);
        return;
      case 'rekey-failed': {
        this.#o.log.warn({ peer: e.peer.name, what: ev.what, reason: ev.reason, notifyType: ev.notifyType, inSpi: ev.inboundSpi === undefined ? undefined : hex(ev.inboundSpi) },
          `ike: ${e.peer.name} ${ev.what === 'ike' ? 'IKE SA' : 'Child SA'} rekey failed, trying again in ${REKEY_RETRY_MS} ms`);
        if (ev.what === 'ike') {
          e.ikeRekeyRequested = false;
          e.ikeSoftAt = now + REKEY_RETRY_MS;
        } else {
          // The Child SA may have moved to a rekeyed IKE SA meanwhile: look for it among the peer's.
          const r = ps.installed.find((x) => x.child.inbound.spi === ev.inboundSpi);
          if (r !== undefined) { r.rekeyRequested = false; r.softAt = now + REKEY_RETRY_MS; }
        }
        return;
      }
      case 'ike-rekeyed':
        this.#onIkeRekeyed(e, ev.next, now);
        return;
      case 'ike-redundant':
        this.#onIkeRedundant(e, ev.sa, now);
        return;
      case 'path-changed': {
        this.#o.log.info({ peer: e.peer.name, remotePort: ev.remotePort, localPort: ev.localPort }, `ike: ${e.peer.name} IKE path moved`);
        let changed = false;
        for (const r of e.children) {
          if (r.child.encap === undefined || r.child.encap.remotePort === ev.remotePort) continue;
          r.child = { ...r.child, encap: { remotePort: ev.remotePort } };
          changed = true;
        }
        if (changed) this.#applyOutbound(ps, true);
        return;
      }
      case 'closed':
        this.#o.log.info({ peer: e.peer.name, reason: ev.reason, notifyType: ev.notifyType }, `ike: ${e.peer.name} IKE SA closed`);
        return;
      case 'peer-alive':
        return;
    }
  }

  #setIkeLifetime(e: Entry, now: number): void {
    const life = e.peer.ikeLifetimeMs ?? IKE_LIFETIME_DEFAULT_MS;
    e.ikeSoftAt = now + this.#softOf(life);
    e.ikeHardAt = now + life;
    e.ikeRekeyRequested = false;
  }

  /** #addEstablished adds an entry for an IKE SA that a rekey made: established now, known by our SPI. */
  #addEstablished(sa: IkeSession, peer: Entry['peer'], now: number): Entry {
    const n = this.#addEntry(sa, peer);
    n.established = true;
    n.establishedMs = now;
    n.establishedSeq = ++this.#seq;
    n.state = sa.state;
    n.ourSpi = sa.role === 'initiator' ? sa.spiI : sa.spiR;
    return n;
  }

  /** #onIkeRekeyed gives the rekeyed IKE SA `next` its own entry, with e's Child SAs. */
  #onIkeRekeyed(e: Entry, next: IkeSession, now: number): void {
    const n = this.#addEstablished(next, e.peer, now);
    n.children = e.children;
    e.children = [];
    e.superseded = true;
    e.supersededMs = now;
    this.#setIkeLifetime(n, now);
    this.#bySpi.set(n.ourSpi, n);
    this.#o.log.info({
      peer: e.peer.name, role: next.role, spiI: next.spiI.toString(16), spiR: next.spiR.toString(16),
      oldSpiI: e.session.spiI.toString(16), oldSpiR: e.session.spiR.toString(16), children: n.children.length,
    }, `ike: ${e.peer.name} IKE SA rekeyed`);
    this.#arm(n);
  }

  /**
   * #onIkeRedundant keeps the redundant new IKE SA of simultaneous IKE SA rekeys (RFC 7296
   * §2.8.2) until it closes: an entry that routes its messages and runs its timer (our Delete of
   * it is in flight, or the peer's is to come), with no Child SAs, never active, and forgotten
   * after SUPERSEDED_WAIT_MS like a replaced IKE SA whose Delete never comes.
   */
  #onIkeRedundant(e: Entry, sa: IkeSession, now: number): void {
    const n = this.#addEstablished(sa, e.peer, now);
    n.superseded = true;
    n.supersededMs = now;
    this.#bySpi.set(n.ourSpi, n);
    this.#o.log.info({
      peer: e.peer.name, role: sa.role, spiI: sa.spiI.toString(16), spiR: sa.spiR.toString(16), deletedBy: sa.state === 'deleting' ? 'us' : 'peer',
    }, `ike: ${e.peer.name} simultaneous IKE SA rekeys: this new IKE SA lost the nonce rule and is deleted`);
    this.#arm(n);
  }

  /** #hasEstablished says whether an established IKE SA (not one replaced by a rekey) with the peer exists. */
  #hasEstablished(peer: string): boolean {
    for (const e of this.#entries) if (e.peer.name === peer && e.established && !e.superseded) return true;
    return false;
  }

  /** #resolveDuplicates applies the rules in the module comment after e was established. */
  #resolveDuplicates(e: Entry, initialContact: boolean): void {
    const now = this.#now();
    for (const o of [...this.#entries]) {
      if (o === e || o.peer.name !== e.peer.name || !o.established || o.superseded) continue;
      if (initialContact && o.establishedSeq < e.createdSeq) {
        this.#forget(o, 'the peer restarted (INITIAL_CONTACT)');
        continue;
      }
      const keep = o.session.spiI < e.session.spiI ? o : e;
      const drop = keep === o ? e : o;
      this.#send(drop, drop.session.close(now));
      // linger: the peer may have sent on the dropped Child SA until it settled too
      this.#forget(drop, 'a second IKE SA with the same peer (the lower SPIi is kept)', true);
      if (drop === e) return;
    }
  }

  /**
   * #removeChild drops a Child SA: from the outbound choice at once, its inbound half at once or,
   * with linger (a rekeyed SA, a dropped duplicate), REKEY_LINGER_MS later so packets in flight still decrypt.
   */
  #removeChild(e: Entry, inboundSpi: number, why: string, linger: boolean): void {
    const ps = this.#peers.get(e.peer.name);
    const i = e.children.findIndex((c) => c.child.inbound.spi === inboundSpi);
    if (i < 0 || ps === undefined) return;
    const [rec] = e.children.splice(i, 1);
    if (rec === undefined) return;
    ps.installed = ps.installed.filter((c) => c !== rec);
    this.#applyOutbound(ps, false);
    const spi = rec.child.inbound.spi;
    if (linger && !this.#stopped) {
      this.#lingering.set(spi, this.#timers.set(() => {
        this.#lingering.delete(spi);
        this.#uninstallInbound(spi);
        this.#o.log.info({ peer: e.peer.name, inSpi: hex(spi) }, `ike: ${e.peer.name} replaced Child SA's inbound half removed`);
      }, REKEY_LINGER_MS));
    } else {
      this.#uninstallInbound(spi);
    }
    this.#o.log.info({ peer: e.peer.name, inSpi: hex(spi), outSpi: hex(rec.child.outbound.spi), left: ps.installed.length, lingerMs: linger ? REKEY_LINGER_MS : 0 },
      `ike: ${e.peer.name} Child SA removed: ${why}`);
  }

  #uninstallInbound(spi: number): void {
    this.#ourChildSpis.delete(spi);
    try {
      this.#o.sink.removeInbound(spi);
    } catch (err) {
      this.#o.log.warn({ inSpi: hex(spi), err: (err as Error).message }, 'ike: Child SA could not be removed');
    }
  }

  /**
   * #forget drops an entry: its Child SAs (their inbound halves REKEY_LINGER_MS later with
   * linger, for packets in flight), its maps and its timer.
   */
  #forget(e: Entry, why: string | undefined, linger = false): void {
    if (!this.#entries.delete(e)) return;
    for (const c of [...e.children]) this.#removeChild(e, c.child.inbound.spi, why ?? 'IKE SA closed', linger);
    if (e.ourSpi !== 0n && this.#bySpi.get(e.ourSpi) === e) this.#bySpi.delete(e.ourSpi);
    if (e.halfOpenKey !== undefined && this.#halfOpen.get(e.halfOpenKey) === e) this.#halfOpen.delete(e.halfOpenKey);
    if (e.timer !== undefined) this.#timers.clear(e.timer);
    e.timer = undefined;
    if (why !== undefined) this.#o.log.info({ peer: e.peer.name, role: e.session.role, state: e.session.state }, `ike: ${e.peer.name} IKE SA dropped: ${why}`);
  }

  #dpdOf(e: Entry): number {
    return e.peer.dpdMs ?? this.#dpdMs;
  }

  /** #active says whether e runs lifetimes and DPD: established and not replaced by a rekey. */
  #active(e: Entry): boolean {
    return e.established && !e.superseded && e.session.state === 'established';
  }

  /** #arm sets the entry's one timer to the earliest of its retransmission/expiry, DPD, rekey and expiry times, and usage poll. */
  #arm(e: Entry): void {
    if (e.timer !== undefined) this.#timers.clear(e.timer);
    e.timer = undefined;
    const now = this.#now();
    let at = Infinity;
    const t = e.session.nextTimeout(now);
    if (t !== undefined) at = now + t;
    if (e.superseded) at = Math.min(at, e.supersededMs + SUPERSEDED_WAIT_MS);
    if (this.#active(e)) {
      const dpd = this.#dpdOf(e);
      if (dpd > 0) at = Math.min(at, Math.max(e.session.lastHeardMs, e.lastDpdMs, e.establishedMs) + dpd);
      if (!e.ikeRekeyRequested) at = Math.min(at, e.ikeSoftAt);
      at = Math.min(at, e.ikeHardAt);
      for (const r of e.children) {
        if (!r.rekeyRequested) at = Math.min(at, r.softAt);
        at = Math.min(at, r.hardAt);
        if ((r.hardBytes !== undefined || r.hardPackets !== undefined) && this.#o.sink.usage !== undefined) at = Math.min(at, now + USAGE_POLL_MS);
      }
    }
    if (at === Infinity) return;
    e.timer = this.#timers.set(() => { e.timer = undefined; this.#fire(e); }, Math.min(Math.max(0, at - now), MAX_TIMER_MS));
  }

  #fire(e: Entry): void {
    if (this.#stopped || !this.#entries.has(e)) return;
    const now = this.#now();
    if (e.session.nextTimeout(now) === 0) {
      this.#after(e, e.session.onTimeout(now));
      if (!this.#entries.has(e)) return;
    }
    if (e.superseded && now >= e.supersededMs + SUPERSEDED_WAIT_MS) {
      this.#forget(e, e.session.redundant ? 'the redundant IKE SA of simultaneous rekeys, and its Delete never came' : 'replaced by a rekey, and its Delete never came');
      return;
    }
    if (this.#active(e)) {
      this.#lifetimes(e, now);
      if (!this.#entries.has(e)) return;
    }
    const dpd = this.#dpdOf(e);
    if (this.#active(e) && dpd > 0 && now - Math.max(e.session.lastHeardMs, e.lastDpdMs, e.establishedMs) >= dpd) {
      e.lastDpdMs = now;
      this.#after(e, e.session.sendDpd(now));
      return;
    }
    this.#arm(e);
  }

  /** #lifetimes starts due rekeys and removes expired SAs (fail closed) of an active entry. */
  #lifetimes(e: Entry, now: number): void {
    if (now >= e.ikeHardAt) {
      this.#o.log.warn({ peer: e.peer.name }, `ike: ${e.peer.name} IKE SA expired (hard lifetime): deleting it with its Child SAs`);
      for (const r of [...e.children]) this.#removeChild(e, r.child.inbound.spi, 'IKE SA expired', false);
      this.#after(e, e.session.close(now));
      return;
    }
    for (const r of [...e.children]) {
      const spi = r.child.inbound.spi;
      const u = r.hardBytes !== undefined || r.hardPackets !== undefined ? this.#o.sink.usage?.(spi, r.child.outbound.spi) : undefined;
      const over = (limit: number | undefined, v: number | undefined): boolean => limit !== undefined && v !== undefined && v >= limit;
      if (now >= r.hardAt || over(r.hardBytes, u?.bytes) || over(r.hardPackets, u?.packets)) {
        this.#o.log.warn({ peer: e.peer.name, inSpi: hex(spi), bytes: u?.bytes, packets: u?.packets }, `ike: ${e.peer.name} Child SA expired (hard lifetime)`);
        this.#removeChild(e, spi, 'hard lifetime', false);
        this.#after(e, e.session.deleteChildSa(now, spi));
        if (!this.#entries.has(e)) return;
        continue;
      }
      if (r.rekeyRequested) continue;
      if (over(r.softBytes, u?.bytes) || over(r.softPackets, u?.packets)) r.softAt = Math.min(r.softAt, now);
      if (now < r.softAt) continue;
      r.rekeyRequested = true;
      const out = e.session.rekeyChildSa(now, spi);
      if (out.refused !== undefined) {
        r.rekeyRequested = false;
        r.softAt = now + REKEY_RETRY_MS;
        continue;
      }
      this.#o.log.info({ peer: e.peer.name, inSpi: hex(spi), bytes: u?.bytes, packets: u?.packets }, `ike: ${e.peer.name} Child SA rekey started`);
      this.#after(e, out);
      if (!this.#entries.has(e)) return;
    }
    if (!e.ikeRekeyRequested && now >= e.ikeSoftAt && this.#active(e)) {
      e.ikeRekeyRequested = true;
      const out = e.session.rekeyIkeSa(now);
      if (out.refused !== undefined) {
        e.ikeRekeyRequested = false;
        e.ikeSoftAt = now + REKEY_RETRY_MS;
        return;
      }
      this.#o.log.info({ peer: e.peer.name, spiI: e.session.spiI.toString(16), spiR: e.session.spiR.toString(16) }, `ike: ${e.peer.name} IKE SA rekey started`);
      this.#after(e, out);
    }
  }
}

function hex(spi: number): string {
  return `0x${spi.toString(16).padStart(8, '0')}`;
}

/** canonical gives one text form per address (IPv6 case and zero compression as the caller wrote them aside). */
function canonical(address: string): string {
  const a = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  return a.toLowerCase();
}
