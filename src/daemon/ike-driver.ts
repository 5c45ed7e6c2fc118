/**
 * daemon/ike-driver.ts: runs the pure IKEv2 state machine (src/ike/sa/session.ts) against
 * real edges: datagrams on UDP port 500, the clock and timers, and the SADB. Everything the
 * driver touches comes in through narrow interfaces (IkeTransport, IkeSaSink, IkeTimers), so a
 * unit test wires two drivers back to back with no network and a clock it moves.
 *
 *   UDP 500 --receive()--> routeIkeDatagram --> session (ours by SPI, or a new responder)
 *                                                  |  messages --> IkeTransport.send
 *                                                  |  events   --> 'child-sa': sink.addInbound + setOutbound
 *                                                  |               'child-sa-deleted' / 'closed': remove (fail closed)
 *   timer per session: min(nextTimeout, DPD due) --> onTimeout / sendDpd
 *   timer per peer (initiate): start after a close, backing off INITIATE_BACKOFF_MS .. MAX
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
import { IkeSession } from '../ike/sa/session.js';
import type { ChildSa, IkeEvent, IkeOutput, IkePeer, IkeState } from '../ike/sa/session.js';
import type { IkeIdentity } from '../ike/sa/identity.js';
import type { EspAlgorithms, IkeAlgorithms } from '../ike/sa/proposals.js';

/** IKE_PORT is the UDP port IKE starts on (RFC 7296 §2). */
export const IKE_PORT = 500;
/**
 * NAT_T_PORT is the UDP port of NAT traversal (RFC 7296 §2.23, RFC 3948): IKE moves to it when a
 * NAT is detected, behind a four-octet zero non-ESP marker that the transport adds and strips,
 * and UDP-encapsulated ESP shares it.
 */
export const NAT_T_PORT = 4500;
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
 * IkeTransport sends datagrams to the peers; the driver's receive() takes what arrives. A
 * datagram to port NAT_T_PORT leaves from local port NAT_T_PORT with the non-ESP marker
 * prepended; to any other port, from local IKE_PORT as it is.
 */
export interface IkeTransport {
  send(bytes: Uint8Array, address: string, port: number): void;
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
  /** endpoint is the peer's address: IKE goes to and must come from it, port 500. */
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
  /** retransmitInitialMs overrides the sessions' first retransmission interval (tests). */
  readonly retransmitInitialMs?: number;
}

/** IkePeerStatus is one peer's IKE state for status --json. */
export interface IkePeerStatus {
  readonly state: IkeState | 'none';
  readonly lastHeardMs: number;
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
  children: ChildSa[];
  state: IkeState;
}

interface PeerState {
  readonly peer: IkeDriverPeer;
  retryTimer: unknown;
  backoffMs: number;
  /** installed lists the installed Child SAs, oldest first; the last one is the outbound SA. */
  installed: ChildSa[];
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
  #stopped = false;
  #seq = 0;
  /** dropped counts datagrams the driver discarded before any session (unknown source, no route). */
  dropped = 0;

  constructor(o: IkeDriverOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#timers = o.timers ?? realTimers;
    this.#random = o.random ?? ((n) => randomBytes(n));
    this.#dpdMs = o.dpdMs ?? DPD_DEFAULT_MS;
    for (const p of o.peers) {
      const st: PeerState = { peer: p, retryTimer: undefined, backoffMs: INITIATE_BACKOFF_MS, installed: [] };
      this.#peers.set(p.name, st);
      this.#byEndpoint.set(canonical(p.endpoint), st);
    }
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
      if (e.established) this.#send(e, e.session.close(now));
      this.#forget(e, 'daemon stopping');
    }
    for (const st of this.#peers.values()) {
      if (st.retryTimer !== undefined) this.#timers.clear(st.retryTimer);
      st.retryTimer = undefined;
    }
    this.#stopped = true;
  }

  /** status returns each peer's best IKE SA: established if any, else the newest attempt. */
  status(peer: string): IkePeerStatus | undefined {
    if (!this.#peers.has(peer)) return undefined;
    let best: Entry | undefined;
    for (const e of this.#entries) {
      if (e.peer.name !== peer) continue;
      if (best === undefined || (e.established && !best.established) || (e.established === best.established && e.createdMs >= best.createdMs)) best = e;
    }
    return best === undefined ? { state: 'none', lastHeardMs: 0 } : { state: best.session.state, lastHeardMs: best.session.lastHeardMs };
  }

  /**
   * receive takes one datagram that arrived on local port `localPort` (IKE_PORT, or NAT_T_PORT
   * with the non-ESP marker already stripped). Never throws.
   */
  receive(bytes: Uint8Array, address: string, port: number, localPort: number = IKE_PORT): void {
    void localPort;
    if (this.#stopped) return;
    const route = routeIkeDatagram(bytes, 0, bytes.length);
    const now = this.#now();
    switch (route.kind) {
      case 'drop':
        this.dropped++;
        return;
      case 'init-request': {
        const st = this.#byEndpoint.get(canonical(address));
        if (st === undefined) { this.dropped++; return; }
        const key = `${canonical(address)}|${port}|${route.spiI.toString(16)}`;
        let e = this.#halfOpen.get(key);
        if (e === undefined) {
          if (this.#countFor(st.peer.name) >= MAX_SESSIONS_PER_PEER) { this.dropped++; return; }
          e = this.#newEntry(st, 'responder', port);
          if (e === undefined) return;
          e.halfOpenKey = key;
        }
        this.#handle(e, bytes, now);
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
        this.#handle(e, bytes, now);
        return;
      }
    }
  }

  #countFor(peer: string): number {
    let n = 0;
    for (const e of this.#entries) if (e.peer.name === peer) n++;
    return n;
  }

  #initiate(st: PeerState): void {
    if (this.#stopped) return;
    st.retryTimer = undefined;
    const e = this.#newEntry(st, 'initiator', IKE_PORT);
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

  #newEntry(st: PeerState, role: 'initiator' | 'responder', remotePort: number): Entry | undefined {
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
      local: { address: localAddr, port: IKE_PORT },
      remote: { address: p.endpoint, port: remotePort },
      localId,
      localProtect: this.#o.localProtect,
      random: this.#random,
      allocateSpi: () => this.#allocateSpi(),
      ...(this.#o.retransmitInitialMs === undefined ? {} : { retransmit: { initialMs: this.#o.retransmitInitialMs } }),
    };
    let session: IkeSession;
    try {
      session = role === 'initiator'
        ? new IkeSession({ ...common, role: 'initiator', peer })
        : new IkeSession({ ...common, role: 'responder', peers: [peer] });
    } catch (err) {
      this.#o.log.warn({ peer: p.name, err: (err as Error).message }, 'ike: cannot make a session for this peer');
      return undefined;
    }
    const e: Entry = {
      session, peer: p, createdMs: this.#now(), createdSeq: ++this.#seq, establishedSeq: 0, ourSpi: 0n, halfOpenKey: undefined, timer: undefined,
      lastDpdMs: 0, established: false, establishedMs: 0, children: [], state: session.state,
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

  #handle(e: Entry, bytes: Uint8Array, now: number): void {
    let out: IkeOutput;
    try {
      out = e.session.handle(bytes, now);
    } catch (err) {
      this.#o.log.warn({ peer: e.peer.name, err: (err as Error).message }, 'ike: session failed on a datagram');
      return;
    }
    this.#after(e, out);
  }

  #send(e: Entry, out: IkeOutput): void {
    const port = e.session.role === 'initiator' ? IKE_PORT : this.#remotePort(e);
    for (const m of out.messages) {
      try { this.#o.transport.send(m, e.peer.endpoint, port); } catch { /* a send error is like a lost datagram: retransmission covers it */ }
    }
  }

  #remotePort(e: Entry): number {
    const k = e.halfOpenKey;
    if (k === undefined) return IKE_PORT;
    const port = Number(k.split('|')[1]);
    return Number.isInteger(port) ? port : IKE_PORT;
  }

  /** #after sends out's messages, acts on its events, logs a state change and re-arms the timer. */
  #after(e: Entry, out: IkeOutput): void {
    this.#send(e, out);
    for (const ev of out.events) {
      // An entry dropped by an earlier event of this output (a duplicate) installs nothing more.
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

  #onEvent(e: Entry, ev: IkeEvent): void {
    const ps = this.#peers.get(e.peer.name);
    if (ps === undefined) return;
    switch (ev.type) {
      case 'established': {
        e.established = true;
        e.establishedMs = this.#now();
        e.establishedSeq = ++this.#seq;
        if (e.halfOpenKey !== undefined) { this.#halfOpen.delete(e.halfOpenKey); }
        ps.backoffMs = INITIATE_BACKOFF_MS;
        this.#o.log.info({ peer: e.peer.name, role: e.session.role, spiI: ev.spiI.toString(16), spiR: ev.spiR.toString(16), initialContact: ev.initialContact }, `ike: ${e.peer.name} IKE SA established`);
        this.#resolveDuplicates(e, ev.initialContact);
        return;
      }
      case 'child-sa': {
        e.children.push(ev.child);
        ps.installed.push(ev.child);
        try {
          this.#o.sink.addInbound(e.peer.name, e.peer.endpoint, ev.child);
          this.#o.sink.setOutbound(e.peer.name, ev.child);
        } catch (err) {
          this.#o.log.warn({ peer: e.peer.name, err: (err as Error).message }, 'ike: Child SA could not be installed');
          return;
        }
        this.#o.log.info({ peer: e.peer.name, inSpi: hex(ev.child.inbound.spi), outSpi: hex(ev.child.outbound.spi), algorithm: ev.child.algorithm }, `ike: ${e.peer.name} Child SA installed`);
        return;
      }
      case 'child-sa-deleted':
        this.#removeChild(e, ev.inboundSpi, `deleted (${ev.reason})`);
        return;
      case 'child-sa-failed':
        this.#o.log.warn({ peer: e.peer.name, reason: ev.reason, notifyType: ev.notifyType }, `ike: ${e.peer.name} Child SA not negotiated`);
        return;
      case 'closed':
        this.#o.log.info({ peer: e.peer.name, reason: ev.reason, notifyType: ev.notifyType }, `ike: ${e.peer.name} IKE SA closed`);
        return;
      case 'peer-alive':
        return;
    }
  }

  /** #resolveDuplicates applies the rules in the module comment after e was established. */
  #resolveDuplicates(e: Entry, initialContact: boolean): void {
    const now = this.#now();
    for (const o of [...this.#entries]) {
      if (o === e || o.peer.name !== e.peer.name || !o.established) continue;
      if (initialContact && o.establishedSeq < e.createdSeq) {
        this.#forget(o, 'the peer restarted (INITIAL_CONTACT)');
        continue;
      }
      const keep = o.session.spiI < e.session.spiI ? o : e;
      const drop = keep === o ? e : o;
      this.#send(drop, drop.session.close(now));
      this.#forget(drop, 'a second IKE SA with the same peer (the lower SPIi is kept)');
      if (drop === e) return;
    }
  }

  #removeChild(e: Entry, inboundSpi: number, why: string): void {
    const ps = this.#peers.get(e.peer.name);
    const i = e.children.findIndex((c) => c.inbound.spi === inboundSpi);
    if (i < 0 || ps === undefined) return;
    const [child] = e.children.splice(i, 1);
    if (child === undefined) return;
    const wasOutbound = ps.installed[ps.installed.length - 1] === child;
    ps.installed = ps.installed.filter((c) => c !== child);
    this.#ourChildSpis.delete(child.inbound.spi);
    try {
      this.#o.sink.removeInbound(child.inbound.spi);
      if (wasOutbound) this.#o.sink.setOutbound(e.peer.name, ps.installed[ps.installed.length - 1]);
    } catch (err) {
      this.#o.log.warn({ peer: e.peer.name, err: (err as Error).message }, 'ike: Child SA could not be removed');
    }
    this.#o.log.info({ peer: e.peer.name, inSpi: hex(child.inbound.spi), outSpi: hex(child.outbound.spi), left: ps.installed.length }, `ike: ${e.peer.name} Child SA removed: ${why}`);
  }

  /** #forget drops an entry: its Child SAs, its maps and its timer. */
  #forget(e: Entry, why: string | undefined): void {
    if (!this.#entries.delete(e)) return;
    for (const c of [...e.children]) this.#removeChild(e, c.inbound.spi, why ?? 'IKE SA closed');
    if (e.ourSpi !== 0n && this.#bySpi.get(e.ourSpi) === e) this.#bySpi.delete(e.ourSpi);
    if (e.halfOpenKey !== undefined && this.#halfOpen.get(e.halfOpenKey) === e) this.#halfOpen.delete(e.halfOpenKey);
    if (e.timer !== undefined) this.#timers.clear(e.timer);
    e.timer = undefined;
    if (why !== undefined) this.#o.log.info({ peer: e.peer.name, role: e.session.role, state: e.session.state }, `ike: ${e.peer.name} IKE SA dropped: ${why}`);
  }

  /** #arm sets the entry's one timer to the earlier of its retransmission/expiry and its DPD. */
  #arm(e: Entry): void {
    if (e.timer !== undefined) this.#timers.clear(e.timer);
    e.timer = undefined;
    const now = this.#now();
    let ms = e.session.nextTimeout(now);
    if (e.established) {
      const dpdIn = Math.max(0, Math.max(e.session.lastHeardMs, e.lastDpdMs, e.establishedMs) + this.#dpdMs - now);
      ms = ms === undefined ? dpdIn : Math.min(ms, dpdIn);
    }
    if (ms === undefined) return;
    e.timer = this.#timers.set(() => { e.timer = undefined; this.#fire(e); }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
  }

  #fire(e: Entry): void {
    if (this.#stopped || !this.#entries.has(e)) return;
    const now = this.#now();
    if (e.session.nextTimeout(now) === 0) {
      this.#after(e, e.session.onTimeout(now));
      if (!this.#entries.has(e)) return;
    }
    if (e.established && now - Math.max(e.session.lastHeardMs, e.lastDpdMs, e.establishedMs) >= this.#dpdMs) {
      e.lastDpdMs = now;
      this.#after(e, e.session.sendDpd(now));
      return;
    }
    this.#arm(e);
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
