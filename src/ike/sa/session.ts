/**
 * session.ts: the IKEv2 state machine of one IKE SA (RFC 7296), from IKE_SA_INIT through
 * IKE_AUTH with PSK authentication and its first Child SA, then INFORMATIONAL exchanges (DPD,
 * Delete) until it closes. Pure: no sockets and no timers of its own. The driver feeds it
 * datagrams and the clock, and sends what it returns:
 *
 *   handle(datagram, now)  -> { messages to send to the peer, events, dropped? }
 *   start(now)             -> the initiator's first IKE_SA_INIT request
 *   nextTimeout(now)       -> ms until onTimeout(now) has work (retransmission, half-open expiry)
 *   sendDpd / deleteChildSa / close (now)   -> the requests they start
 *
 * States (one IKE SA; a responder session is made per IKE_SA_INIT request the driver takes):
 *
 *     initiator                                 responder
 *
 *       idle                                      idle      COOKIE, INVALID_KE_PAYLOAD and
 *        | start()                                 |        NO_PROPOSAL_CHOSEN answers leave it
 *        v                                         |        idle: nothing kept (RFC 7296 §2.6)
 *     init-sent --COOKIE / INVALID_KE_PAYLOAD      | IKE_SA_INIT request accepted
 *        |        (resend, same SPIi and Ni)       v
 *        | IKE_SA_INIT response accepted        init-done --half-open timeout--> closed
 *        v                                         | IKE_AUTH request, AUTH verified
 *     auth-sent                                    v
 *        | IKE_AUTH response, AUTH verified     established <-- INFORMATIONAL: DPD, Delete
 *        v                                         |            CHILD_SA, either direction
 *     established                                  | close()
 *        | close()                                 v
 *        v                                      deleting --response or timeout--> closed
 *     deleting --response or timeout--> closed
 *
 *   Any state goes to closed on: the retransmission limit, AUTHENTICATION_FAILED either way, a
 *   Delete of the IKE SA from the peer. A closed session still answers a retransmission of the
 *   last request it answered (same bytes), and nothing else.
 *
 * Message IDs (§2.2): each side numbers its own requests from 0 (the initiator's IKE_SA_INIT is
 * 0, IKE_AUTH 1); the window is 1 in both directions. A request with the next expected ID is
 * processed; one with the ID of the last answered request gets the stored response again,
 * byte for byte (IKE_SA_INIT only if it is the same request, byte for byte; SK requests only
 * once their ICV verifies); anything else is dropped. A response is taken only for the one
 * outstanding request. Requests the driver asks for while one is outstanding are queued.
 *
 * Trust (§2.21): nothing unauthenticated changes the state, except what the RFC makes the
 * initiator act on in an IKE_SA_INIT response: COOKIE (resend with it, at most
 * MAX_COOKIE_ROUNDS times) and INVALID_KE_PAYLOAD (resend once with the group named, if it was
 * offered). Any other error notify in an IKE_SA_INIT response (NO_PROPOSAL_CHOSEN, ...) stops
 * the retransmissions and fails the attempt when the current retransmission timer runs out,
 * unless a valid response arrives first (§2.21.1: "the recipient should not immediately act
 * based on the error notification"). A response that does not parse, answers with something we
 * did not offer, or carries bad KE data is dropped and the attempt goes on.
 *
 * Retransmission (§2.1): a request is resent, the same bytes, after initialMs, then twice as
 * long each time (0.5 s, 1 s, 2 s, 4 s by default); when the last of `tries` transmissions is
 * unanswered for its doubled interval, the SA closes with 'timeout'.
 *
 * Randomness (SPIs, nonces, ESP SPIs) comes from an injected function; DH key pairs from the
 * group's generate() unless generateDh is injected. Errors are values: dropped datagrams are
 * counted (drops.ts) and named in the output, failures are 'closed' / 'child-sa-failed' events,
 * API calls in the wrong state return `refused`. Only the constructor throws (GatewayError
 * ERR_CONFIG for a config that cannot work).
 *
 * Not done here: CREATE_CHILD_SA (rekeying the Child SA or the IKE SA, more Child SAs: a
 * request is answered NO_ADDITIONAL_SAS, see #onCreateChildSaRequest), NAT traversal beyond
 * detection (port 4500, UDP-encapsulated ESP), IKE fragmentation, windows above 1, EAP and
 * certificates. A session is used by one caller at a time.
 */
import { randomBytes } from 'node:crypto';
import { GatewayError } from '../../errors.js';
import { AEAD_ALGORITHMS } from '../../esp/aead.js';
import { SPI_MIN } from '../../esp/sa.js';
import { parseIpAddress } from '../../packet/address.js';
import { readU16, readU32 } from '../../packet/bytes.js';
import { AUTH_METHOD, EXCHANGE, NOTIFY, NOTIFY_STATUS_MIN, PROTOCOL } from '../constants.js';
import { AUTH_METHOD_SHARED_KEY_MIC, computePskAuth, verifyPskAuth } from '../crypto/auth.js';
import { dhGroupById } from '../crypto/dh.js';
import type { DhGroup, DhKeyPair } from '../crypto/dh.js';
import { computeSkeyseed, deriveChildSaKeys, deriveIkeSaKeys } from '../crypto/keys.js';
import type { IkeSaKeys } from '../crypto/keys.js';
import type { Prf } from '../crypto/prf.js';
import { isIkeParseError, notifyForParseError, parseIkeMessage, serializeIkeMessage } from '../message.js';
import type { IkeHeader, ParsedIkeMessage } from '../message.js';
import { FIXED_BODY_LEN, notify } from '../payloads.js';
import type { AddressRangeSelector, NotifyPayload, Payload, Proposal } from '../payloads.js';
import { SK_IV_LEN, SkKey, openIkeMessage, sealIkeMessage, skKeyMaterialLength } from '../sk.js';
import type { SkCipherName, SkOpened } from '../sk.js';
import { COOKIE_MAX_LEN, COOKIE_MIN_LEN } from './cookie.js';
import { IkeDropCounters } from './drops.js';
import type { IkeDropReason } from './drops.js';
import { encodeIdentity, identityMatches } from './identity.js';
import type { IdentityWire } from './identity.js';
import { natDetectionHash, natStatus } from './natd.js';
import type { NatStatus } from './natd.js';
import {
  DEFAULT_ESP_ALGORITHMS, DEFAULT_IKE_ALGORITHMS, algorithmsProblem, buildEspProposal, buildIkeProposal, checkEspAnswer,
  checkIkeAnswer, espAnswer, ikeAnswer, selectDhGroup, selectEspProposal, selectIkeProposal,
} from './proposals.js';
import type { EspAlgorithms, IkeAlgorithms } from './proposals.js';
import { narrowSelectors, selectorsFromPrefixes, selectorsWithin } from './ts.js';
import type {
  IkeCloseReason, IkeCookiePolicy, IkeEndpoint, IkeEvent, IkeInitiatorOptions, IkeOutput, IkePeer, IkeResponderOptions,
  IkeSessionStats, IkeState,
} from './types.js';

// ---------------------------------------------------------------------------------------------
// Configuration

/** NONCE_LEN is the length of the nonces espgate sends (RFC 7296 §2.10: >= 16, >= half the PRF key). */
export const NONCE_LEN = 32;
/** IKE_SPI_LEN is an IKE SA SPI. */
export const IKE_SPI_LEN = 8;
/** RETRANSMIT_INITIAL_MS is the first retransmission interval by default. */
export const RETRANSMIT_INITIAL_MS = 500;
/** RETRANSMIT_TRIES is how many times a request is sent by default (the first and 4 retransmissions). */
export const RETRANSMIT_TRIES = 5;
/** HALF_OPEN_TIMEOUT_MS is how long a responder waits for IKE_AUTH after answering IKE_SA_INIT, by default. */
export const HALF_OPEN_TIMEOUT_MS = 30_000;
/** MAX_COOKIE_ROUNDS is how many COOKIE answers the initiator follows in one attempt. */
export const MAX_COOKIE_ROUNDS = 2;

export type {
  ChildSa, ChildSaDirection, IkeCloseReason, IkeCookiePolicy, IkeEndpoint, IkeEvent, IkeInitiatorOptions, IkeOutput, IkePeer,
  IkeResponderOptions, IkeSessionOptions, IkeSessionStats, IkeState, RetransmitPolicy,
} from './types.js';

// ---------------------------------------------------------------------------------------------
// Output

/** Out collects one call's IkeOutput. */
class Out {
  readonly messages: Uint8Array[] = [];
  readonly events: IkeEvent[] = [];
  dropped: IkeDropReason | undefined;
  refused: string | undefined;

  result(): IkeOutput {
    const r: { messages: Uint8Array[]; events: IkeEvent[]; dropped?: IkeDropReason; refused?: string } = { messages: this.messages, events: this.events };
    if (this.dropped !== undefined) r.dropped = this.dropped;
    if (this.refused !== undefined) r.refused = this.refused;
    return r;
  }
}

// ---------------------------------------------------------------------------------------------
// Internal state

/** Intent is a request the session will send when the window is free. */
type Intent =
  | { readonly kind: 'dpd' }
  | { readonly kind: 'delete-child'; readonly spi: number }
  | { readonly kind: 'delete-ike' };

/** Outstanding is the one request in flight. */
interface Outstanding {
  readonly kind: 'init' | 'auth' | Intent['kind'];
  readonly intent: Intent | undefined;
  readonly exchange: number;
  readonly messageId: number;
  readonly bytes: Uint8Array;
  tries: number;
  intervalMs: number;
  deadline: number;
}

/** StoredResponse is the last response sent, for retransmitted requests. */
interface StoredResponse {
  readonly messageId: number;
  readonly exchange: number;
  readonly bytes: Uint8Array;
  /** request is the IKE_SA_INIT request answered (compared byte for byte); undefined for SK exchanges. */
  readonly request: Uint8Array | undefined;
}

/** PathEnd is an endpoint with its address in bytes. */
interface PathEnd {
  readonly address: Uint8Array;
  readonly port: number;
}

/** PeerPolicy is an IkePeer with its identity and selectors decoded once. */
interface PeerPolicy {
  readonly peer: IkePeer;
  readonly wire: IdentityWire;
  readonly ts: AddressRangeSelector[];
}

/** LiveChild is what the session remembers of its Child SA (no keys). */
interface LiveChild {
  readonly inboundSpi: number;
  readonly outboundSpi: number;
  deleting: boolean;
}

/** PayloadOf is the payload type whose kind may be K ('idi' gives IdPayload, whose kind is 'idi' | 'idr'). */
type PayloadOf<K extends Payload['kind']> = Payload extends infer P ? (P extends Payload ? (K extends P['kind'] ? P : never) : never) : never;

function only<K extends Payload['kind']>(ps: readonly Payload[], kind: K): PayloadOf<K>[] {
  return ps.filter((p): p is PayloadOf<K> => p.kind === kind);
}

function notifiesOf(ps: readonly Payload[], type: number): NotifyPayload[] {
  return only(ps, 'notify').filter((n) => n.notifyType === type);
}

function errorNotifies(ps: readonly Payload[]): NotifyPayload[] {
  return only(ps, 'notify').filter((n) => n.notifyType < NOTIFY_STATUS_MIN);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** idBody is RestOfIDPayload as we encode it: ID Type, 3 zero RESERVED octets, data (§2.15). */
function idBody(w: IdentityWire): Uint8Array {
  const b = new Uint8Array(FIXED_BODY_LEN + w.data.length);
  b[0] = w.idType;
  b.set(w.data, FIXED_BODY_LEN);
  return b;
}

function u16(v: number): Uint8Array {
  return Uint8Array.of((v >>> 8) & 0xff, v & 0xff);
}

function config(message: string): GatewayError {
  return new GatewayError('ERR_CONFIG', `IKE session: ${message}`);
}

function pathEnd(e: IkeEndpoint, what: string): PathEnd {
  const a = parseIpAddress(e.address);
  if (a === undefined) throw config(`${what} address ${JSON.stringify(e.address)} is not an IP address`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff) throw config(`${what} port ${e.port} is not 0..65535`);
  return { address: a.bytes, port: e.port };
}

function peerPolicy(p: IkePeer): PeerPolicy {
  if (p.psk.length === 0) throw config(`peer ${p.name}: empty pre-shared key`);
  return { peer: p, wire: encodeIdentity(p.id), ts: selectorsFromPrefixes(p.protect, `peer ${p.name} protect`) };
}

// ---------------------------------------------------------------------------------------------
// The session

/**
 * IkeSession is one IKE SA with one peer, as initiator or responder. Construct it with the
 * options of its role; the initiator's first call is start(now), a responder's is handle() of
 * an IKE_SA_INIT request. Every method returns an IkeOutput; none throws after construction.
 */
export class IkeSession {
  readonly role: 'initiator' | 'responder';
  /** drops counts datagrams handle() discarded, by reason. */
  readonly drops = new IkeDropCounters();
  readonly stats: IkeSessionStats = {
    requestsSent: 0, retransmits: 0, responsesSent: 0, responsesReplayed: 0, cookiesSent: 0, cookieRounds: 0,
    invalidKeSent: 0, invalidKeRetries: 0, noProposalSent: 0, errorNotifies: 0, livenessAnswered: 0,
  };
  /** lastHeardMs is the clock at the last authenticated message from the peer (0: never), for DPD scheduling. */
  lastHeardMs = 0;

  // configuration
  readonly #ikeAlg: IkeAlgorithms;
  readonly #espAlg: EspAlgorithms;
  readonly #local: PathEnd;
  readonly #remote: PathEnd;
  readonly #localId: IdentityWire;
  readonly #localTs: AddressRangeSelector[];
  readonly #peers: readonly PeerPolicy[];
  readonly #cookies: IkeCookiePolicy | undefined;
  readonly #sendPeerId: boolean;
  readonly #initialContact: boolean;
  readonly #retransmitInitialMs: number;
  readonly #retransmitTries: number;
  readonly #halfOpenTimeoutMs: number;
  readonly #random: (n: number) => Uint8Array;
  readonly #generateDh: (group: DhGroup) => DhKeyPair;
  readonly #allocateSpi: () => number;

  // IKE SA
  #state: IkeState = 'idle';
  #spiI = 0n;
  #spiR = 0n;
  #ni: Uint8Array = new Uint8Array(0);
  #nr: Uint8Array = new Uint8Array(0);
  #dh: { readonly group: DhGroup; readonly pair: DhKeyPair } | undefined;
  #ikeOffer: Proposal | undefined;
  #cookie: Uint8Array | undefined;
  #cookieRounds = 0;
  #keRetried = false;
  #pendingError: { readonly reason: IkeCloseReason; readonly notifyType: number } | undefined;
  #initRequest: Uint8Array = new Uint8Array(0);
  #initResponse: Uint8Array = new Uint8Array(0);
  #prf: Prf | undefined;
  #encryption: SkCipherName | undefined;
  #dhGroupId = 0;
  #keys: IkeSaKeys | undefined;
  #sendKey: SkKey | undefined;
  #recvKey: SkKey | undefined;
  #ivCounter = 0n;
  #nat: NatStatus | undefined;
  #peer: PeerPolicy | undefined;
  #halfOpenDeadline = 0;

  // exchanges
  #ownNextId = 0;
  #peerNextId = 0;
  #outstanding: Outstanding | undefined;
  #queue: Intent[] = [];
  #lastResponse: StoredResponse | undefined;

  // Child SA
  #espOffer: Proposal | undefined;
  #child: LiveChild | undefined;

  /** The constructor validates the options; throws GatewayError ERR_CONFIG when they cannot work. */
  constructor(opts: IkeInitiatorOptions | IkeResponderOptions) {
    this.role = opts.role;
    this.#ikeAlg = opts.ike ?? DEFAULT_IKE_ALGORITHMS;
    this.#espAlg = opts.esp ?? DEFAULT_ESP_ALGORITHMS;
    const problem = algorithmsProblem(this.#ikeAlg, this.#espAlg);
    if (problem !== undefined) throw config(problem);
    this.#local = pathEnd(opts.local, 'local');
    this.#remote = pathEnd(opts.remote, 'remote');
    this.#localId = encodeIdentity(opts.localId);
    this.#localTs = selectorsFromPrefixes(opts.localProtect, 'localProtect');
    if (opts.role === 'initiator') {
      this.#peers = [peerPolicy(opts.peer)];
      this.#peer = this.#peers[0];
      this.#cookies = undefined;
      this.#sendPeerId = opts.sendPeerId ?? false;
      this.#initialContact = opts.initialContact ?? true;
    } else {
      if (opts.peers.length === 0) throw config('a responder needs at least one peer');
      this.#peers = opts.peers.map(peerPolicy);
      this.#cookies = opts.cookies;
      this.#sendPeerId = false;
      this.#initialContact = false;
    }
    this.#retransmitInitialMs = opts.retransmit?.initialMs ?? RETRANSMIT_INITIAL_MS;
    this.#retransmitTries = opts.retransmit?.tries ?? RETRANSMIT_TRIES;
    if (!(this.#retransmitInitialMs > 0) || !Number.isInteger(this.#retransmitTries) || this.#retransmitTries < 1) {
      throw config('retransmit: initialMs must be > 0 and tries an integer >= 1');
    }
    this.#halfOpenTimeoutMs = opts.halfOpenTimeoutMs ?? HALF_OPEN_TIMEOUT_MS;
    if (!(this.#halfOpenTimeoutMs > 0)) throw config('halfOpenTimeoutMs must be > 0');
    const random = opts.random ?? randomBytes;
    this.#random = (n: number): Uint8Array => Uint8Array.from(random(n).subarray(0, n));
    this.#generateDh = opts.generateDh ?? ((g: DhGroup): DhKeyPair => g.generate());
    this.#allocateSpi = opts.allocateSpi ?? ((): number => {
      const spi = readU32(this.#random(4), 0);
      return spi < SPI_MIN ? spi + SPI_MIN : spi;
    });
  }

  /** state is where the session is (see the module diagram). */
  get state(): IkeState {
    return this.#state;
  }

  /** spiI is the initiator's IKE SPI (0 before start / the first request). */
  get spiI(): bigint {
    return this.#spiI;
  }

  /** spiR is the responder's IKE SPI (0 until IKE_SA_INIT is answered). */
  get spiR(): bigint {
    return this.#spiR;
  }

  /** childSpis are the SPIs of the live Child SA, or undefined. */
  get childSpis(): { readonly inbound: number; readonly outbound: number } | undefined {
    const c = this.#child;
    return c === undefined ? undefined : { inbound: c.inboundSpi, outbound: c.outboundSpi };
  }

  /** nat is the NAT detection result of IKE_SA_INIT (undefined before, or without NAT-D notifies). */
  get nat(): NatStatus | undefined {
    return this.#nat;
  }

  // -------------------------------------------------------------------------------------------
  // API

  /** start sends the initiator's IKE_SA_INIT request. Only in state idle, role initiator. */
  start(now: number): IkeOutput {
    const out = new Out();
    if (this.role !== 'initiator' || this.#state !== 'idle') {
      out.refused = `start: ${this.role} in state ${this.#state}`;
      return out.result();
    }
    this.#spiI = this.#randomIkeSpi();
    this.#ni = this.#random(NONCE_LEN);
    const group = dhGroupById(this.#ikeAlg.dhGroups[0]);
    if (group === undefined) throw new Error('unreachable: algorithms were validated');
    this.#dh = { group, pair: this.#generateDh(group) };
    this.#ikeOffer = buildIkeProposal(this.#ikeAlg);
    this.#state = 'init-sent';
    this.#sendInitRequest(now, out);
    return out.result();
  }

  /**
   * handle processes one datagram from the peer (the IKE message: after any non-ESP marker).
   * Returns what to send back and what happened; a datagram that changes nothing is counted in
   * drops and named in `dropped`. Never throws.
   */
  handle(datagram: Uint8Array, now: number): IkeOutput {
    const out = new Out();
    try {
      this.#handle(datagram, now, out);
    } catch {
      // Defence in depth: a bug must not take the daemon down with it. Tests assert 0.
      this.#drop(out, 'internal-error');
    }
    return out.result();
  }

  /**
   * nextTimeout is how many ms from now onTimeout has work (0: due), or undefined when no timer
   * is needed (idle, established with nothing outstanding, closed).
   */
  nextTimeout(now: number): number | undefined {
    let at: number | undefined;
    if (this.#outstanding !== undefined) at = this.#outstanding.deadline;
    if (this.#state === 'init-done') at = at === undefined ? this.#halfOpenDeadline : Math.min(at, this.#halfOpenDeadline);
    return at === undefined ? undefined : Math.max(0, at - now);
  }

  /** onTimeout retransmits the outstanding request or gives up on it, and expires a half-open SA. */
  onTimeout(now: number): IkeOutput {
    const out = new Out();
    if (this.#state === 'closed') return out.result();
    if (this.#state === 'init-done' && now >= this.#halfOpenDeadline) {
      this.#close(out, 'half-open-timeout');
      return out.result();
    }
    const o = this.#outstanding;
    if (o === undefined || now < o.deadline) return out.result();
    if (o.kind === 'init' && this.#pendingError !== undefined) {
      this.#close(out, this.#pendingError.reason, this.#pendingError.notifyType);
    } else if (o.tries >= this.#retransmitTries) {
      this.#close(out, o.kind === 'delete-ike' ? 'deleted' : 'timeout');
    } else {
      o.tries++;
      o.intervalMs *= 2;
      o.deadline = now + o.intervalMs;
      this.stats.retransmits++;
      out.messages.push(o.bytes);
    }
    return out.result();
  }

  /** sendDpd sends an empty INFORMATIONAL request (liveness check, §1.4); 'peer-alive' when answered. */
  sendDpd(now: number): IkeOutput {
    const out = new Out();
    if (this.#state !== 'established') out.refused = `sendDpd: state ${this.#state}`;
    else if (this.#outstanding?.kind === 'dpd' || this.#queue.some((i) => i.kind === 'dpd')) out.refused = 'sendDpd: a liveness check is already pending';
    else this.#enqueue({ kind: 'dpd' }, now, out);
    return out.result();
  }

  /** deleteChildSa deletes the Child SA (INFORMATIONAL with Delete, §1.4.1); 'child-sa-deleted' when answered. */
  deleteChildSa(now: number): IkeOutput {
    const out = new Out();
    const c = this.#child;
    if (this.#state !== 'established') out.refused = `deleteChildSa: state ${this.#state}`;
    else if (c === undefined || c.deleting) out.refused = 'deleteChildSa: no Child SA, or its deletion is pending';
    else {
      c.deleting = true;
      this.#enqueue({ kind: 'delete-child', spi: c.inboundSpi }, now, out);
    }
    return out.result();
  }

  /**
   * close deletes the IKE SA: established, it sends Delete (the Child SA goes with it) and
   * closes when that is answered or times out; before that, it just closes.
   */
  close(now: number): IkeOutput {
    const out = new Out();
    if (this.#state === 'closed' || this.#state === 'deleting') {
      out.refused = `close: state ${this.#state}`;
    } else if (this.#state !== 'established') {
      this.#close(out, 'deleted');
    } else {
      this.#state = 'deleting';
      this.#queue = [];
      this.#enqueue({ kind: 'delete-ike' }, now, out);
    }
    return out.result();
  }

  // -------------------------------------------------------------------------------------------
  // Dispatch

  #drop(out: Out, reason: IkeDropReason): void {
    this.drops.add(reason);
    out.dropped = reason;
  }

  #handle(buf: Uint8Array, now: number, out: Out): void {
    const m = parseIkeMessage(buf, 0, buf.length);
    if (isIkeParseError(m)) return this.#drop(out, 'malformed');
    const h = m.header;
    if (this.role === 'responder' && this.#state === 'idle') return this.#onInitRequest(m, now, out);
    if (h.spiI !== this.#spiI) return this.#drop(out, 'wrong-spi');
    if (h.initiator !== (this.role === 'responder')) return this.#drop(out, 'wrong-flags');
    if (h.spiR !== this.#spiR) {
      const initResponse = this.#state === 'init-sent' && h.response && h.exchangeType === EXCHANGE.IKE_SA_INIT;
      const initRetransmit = this.role === 'responder' && !h.response && h.exchangeType === EXCHANGE.IKE_SA_INIT && h.spiR === 0n;
      if (!initResponse && !initRetransmit) return this.#drop(out, 'wrong-spi');
    }
    if (h.response) this.#onResponse(m, now, out);
    else this.#onRequest(m, now, out);
  }

  /** #open authenticates and decrypts an SK message: the inside, 'unauthenticated', or the parse error of an authentic message. */
  #open(m: ParsedIkeMessage): SkOpened | 'unauthenticated' | { readonly notify: NotifyPayload | undefined } {
    const key = this.#recvKey;
    if (key === undefined) return 'unauthenticated';
    const r = openIkeMessage(m, key);
    if (!isIkeParseError(r)) return r;
    if (r.reason === 'no-sk' || r.reason === 'sk-truncated' || r.reason === 'sk-auth') return 'unauthenticated';
    const n = notifyForParseError(r);
    return { notify: n === undefined ? undefined : notify(n.notifyType, n.data) };
  }

  // -------------------------------------------------------------------------------------------
  // Requests from the peer

  #onRequest(m: ParsedIkeMessage, now: number, out: Out): void {
    const h = m.header;
    const last = this.#lastResponse;
    if (last !== undefined && h.messageId === last.messageId) {
      if (h.exchangeType !== last.exchange) return this.#drop(out, 'msgid-window');
      if (last.request !== undefined) {
        if (!bytesEqual(m.bytes, last.request)) return this.#drop(out, 'bad-retransmit');
      } else if (this.#open(m) === 'unauthenticated') {
        return this.#drop(out, 'sk-auth');
      }
      this.stats.responsesReplayed++;
      out.messages.push(last.bytes);
      return;
    }
    if (this.#state === 'closed') return this.#drop(out, 'closed');
    if (h.messageId !== this.#peerNextId) return this.#drop(out, 'msgid-window');
    switch (h.exchangeType) {
      case EXCHANGE.IKE_AUTH:
        if (this.role !== 'responder' || this.#state !== 'init-done') return this.#drop(out, 'unexpected-exchange');
        return this.#onAuthRequest(m, now, out);
      case EXCHANGE.INFORMATIONAL:
      case EXCHANGE.CREATE_CHILD_SA: {
        if (this.#state !== 'established' && this.#state !== 'deleting') return this.#drop(out, 'unexpected-exchange');
        const opened = this.#open(m);
        if (opened === 'unauthenticated') return this.#drop(out, 'sk-auth');
        this.lastHeardMs = now;
        if (!('payloads' in opened)) {
          // Authentic but malformed (§2.21.2, §2.21.4): answer the error, protected, and go on.
          this.#respond(out, h.exchangeType, h.messageId, opened.notify === undefined ? [] : [opened.notify]);
          return;
        }
        if (h.exchangeType === EXCHANGE.INFORMATIONAL) return this.#onInformationalRequest(opened, h.messageId, out);
        return this.#onCreateChildSaRequest(opened, h.messageId, out);
      }
      default:
        return this.#drop(out, 'unexpected-exchange');
    }
  }

  /** #respond seals and sends a response to the peer's request messageId and stores it for retransmissions. */
  #respond(out: Out, exchange: number, messageId: number, inner: Payload[]): void {
    const bytes = this.#seal(exchange, true, messageId, inner);
    this.#lastResponse = { messageId, exchange, bytes, request: undefined };
    this.#peerNextId = messageId + 1;
    this.stats.responsesSent++;
    out.messages.push(bytes);
  }

  /** #answerInitUnprotected sends an IKE_SA_INIT error/cookie answer that keeps no state: HDR(SPIi, 0), N(...). */
  #answerInitUnprotected(out: Out, h: IkeHeader, n: NotifyPayload): void {
    const header = { spiI: h.spiI, spiR: 0n, exchangeType: EXCHANGE.IKE_SA_INIT, initiator: false, response: true, higherVersion: false, messageId: 0 };
    out.messages.push(serializeIkeMessage({ header, payloads: [n] }));
  }

  /** #onInitRequest is an idle responder's IKE_SA_INIT (RFC 7296 §1.2, §2.6, §2.7). */
  #onInitRequest(m: ParsedIkeMessage, now: number, out: Out): void {
    const h = m.header;
    if (h.response || h.exchangeType !== EXCHANGE.IKE_SA_INIT || h.messageId !== 0 || h.spiR !== 0n || !h.initiator || h.spiI === 0n) {
      return this.#drop(out, 'unexpected-exchange');
    }
    const ps = m.payloads;
    const sas = only(ps, 'sa');
    const kes = only(ps, 'ke');
    const nonces = only(ps, 'nonce');
    if (sas.length !== 1 || kes.length !== 1 || nonces.length !== 1) return this.#drop(out, 'bad-init');
    const [sa, ke, nonce] = [sas[0], kes[0], nonces[0]];
    const cookies = this.#cookies;
    if (cookies !== undefined && cookies.required()) {
      const first = ps[0];
      const ok = first.kind === 'notify' && first.notifyType === NOTIFY.COOKIE &&
        cookies.jar.verify(first.data, nonce.data, this.#remote.address, h.spiI);
      if (!ok) {
        this.stats.cookiesSent++;
        return this.#answerInitUnprotected(out, h, notify(NOTIFY.COOKIE, cookies.jar.make(nonce.data, this.#remote.address, h.spiI)));
      }
    }
    const choice = selectIkeProposal(sa, this.#ikeAlg);
    if (choice === undefined) {
      this.stats.noProposalSent++;
      return this.#answerInitUnprotected(out, h, notify(NOTIFY.NO_PROPOSAL_CHOSEN));
    }
    if (nonce.data.length < choice.prf.keyLength / 2) return this.#drop(out, 'bad-init');
    const g = selectDhGroup(choice, ke.group);
    if ('ask' in g) {
      this.stats.invalidKeSent++;
      return this.#answerInitUnprotected(out, h, notify(NOTIFY.INVALID_KE_PAYLOAD, u16(g.ask)));
    }
    const group = dhGroupById(g.use);
    if (group === undefined) return this.#drop(out, 'bad-init');
    const pair = this.#generateDh(group);
    const shared = group.compute(pair.privateKey, ke.data);
    if (!shared.ok) return this.#drop(out, 'bad-ke');

    // Accepted: from here on this session is the IKE SA (half-open).
    this.#spiI = h.spiI;
    this.#spiR = this.#randomIkeSpi();
    this.#ni = Uint8Array.from(nonce.data);
    this.#nr = this.#random(NONCE_LEN);
    this.#prf = choice.prf;
    this.#encryption = choice.encryption;
    this.#dhGroupId = group.id;
    const natSrc = notifiesOf(ps, NOTIFY.NAT_DETECTION_SOURCE_IP).map((n) => n.data);
    const natDst = notifiesOf(ps, NOTIFY.NAT_DETECTION_DESTINATION_IP).map((n) => n.data);
    this.#nat = natStatus(h.spiI, 0n, natSrc, natDst, this.#remote, this.#local);
    const payloads: Payload[] = [
      { kind: 'sa', proposals: [ikeAnswer(choice, group.id)] },
      { kind: 'ke', group: group.id, data: pair.public },
      { kind: 'nonce', data: this.#nr },
    ];
    if (this.#nat !== undefined) payloads.push(...this.#natNotifies());
    const header = { spiI: this.#spiI, spiR: this.#spiR, exchangeType: EXCHANGE.IKE_SA_INIT, initiator: false, response: true, higherVersion: false, messageId: 0 };
    const bytes = serializeIkeMessage({ header, payloads });
    this.#initRequest = m.bytes;
    this.#initResponse = bytes;
    this.#deriveIkeKeys(shared.shared);
    shared.shared.fill(0);
    this.#lastResponse = { messageId: 0, exchange: EXCHANGE.IKE_SA_INIT, bytes, request: m.bytes };
    this.#peerNextId = 1;
    this.#state = 'init-done';
    this.#halfOpenDeadline = now + this.#halfOpenTimeoutMs;
    this.stats.responsesSent++;
    out.messages.push(bytes);
  }

  /** #onAuthRequest is the responder's IKE_AUTH (§1.2, §2.15): authenticate the initiator, answer, make the Child SA. */
  #onAuthRequest(m: ParsedIkeMessage, now: number, out: Out): void {
    const opened = this.#open(m);
    if (opened === 'unauthenticated') return this.#drop(out, 'sk-auth');
    this.lastHeardMs = now;
    const id = m.header.messageId;
    if (!('payloads' in opened)) {
      this.#respond(out, EXCHANGE.IKE_AUTH, id, [opened.notify ?? notify(NOTIFY.INVALID_SYNTAX)]);
      return this.#close(out, 'syntax');
    }
    const ps = opened.payloads;
    const idis = only(ps, 'idi');
    const auths = only(ps, 'auth');
    const peer = idis.length === 1 ? this.#peers.find((p) => identityMatches(p.wire, idis[0])) : undefined;
    const prf = this.#prf;
    const keys = this.#keys;
    if (prf === undefined || keys === undefined) throw new Error('unreachable: keys exist in init-done');
    const authOk = peer !== undefined && auths.length === 1 && auths[0].method === AUTH_METHOD_SHARED_KEY_MIC &&
      verifyPskAuth(prf, {
        realMessage: this.#initRequest, peerNonce: this.#nr, skP: keys.skPi,
        restOfIdPayload: opened.bodies[ps.indexOf(idis[0])], sharedSecret: peer.peer.psk,
      }, auths[0].data);
    if (!authOk || peer === undefined) {
      this.#respond(out, EXCHANGE.IKE_AUTH, id, [notify(NOTIFY.AUTHENTICATION_FAILED)]);
      return this.#close(out, 'auth-failed');
    }
    this.#peer = peer;
    const auth = computePskAuth(prf, {
      realMessage: this.#initResponse, peerNonce: this.#ni, skP: keys.skPr,
      restOfIdPayload: idBody(this.#localId), sharedSecret: peer.peer.psk,
    });
    const inner: Payload[] = [
      { kind: 'idr', idType: this.#localId.idType, data: this.#localId.data },
      { kind: 'auth', method: AUTH_METHOD.SHARED_KEY_MIC, data: auth },
    ];
    const events: IkeEvent[] = [this.#establishedEvent(notifiesOf(ps, NOTIFY.INITIAL_CONTACT).length > 0)];
    const sas = only(ps, 'sa');
    const tsis = only(ps, 'tsi');
    const tsrs = only(ps, 'tsr');
    if (sas.length !== 1 || tsis.length !== 1 || tsrs.length !== 1) {
      events.push({ type: 'child-sa-failed', reason: 'not-requested' });
    } else {
      const choice = selectEspProposal(sas[0], this.#espAlg);
      const tsi = narrowSelectors(tsis[0].selectors, peer.ts);
      const tsr = narrowSelectors(tsrs[0].selectors, this.#localTs);
      if (choice === undefined) {
        inner.push(notify(NOTIFY.NO_PROPOSAL_CHOSEN));
        events.push({ type: 'child-sa-failed', reason: 'no-proposal', notifyType: NOTIFY.NO_PROPOSAL_CHOSEN });
      } else if (tsi.length === 0 || tsr.length === 0) {
        inner.push(notify(NOTIFY.TS_UNACCEPTABLE));
        events.push({ type: 'child-sa-failed', reason: 'ts-unacceptable', notifyType: NOTIFY.TS_UNACCEPTABLE });
      } else {
        const inboundSpi = this.#allocateSpi();
        const k = deriveChildSaKeys(prf, keys.skD, { ni: this.#ni, nr: this.#nr }, AEAD_ALGORITHMS[choice.encryption].keyMaterialLength);
        this.#child = { inboundSpi, outboundSpi: choice.peerSpi, deleting: false };
        inner.push({ kind: 'sa', proposals: [espAnswer(choice, inboundSpi)] }, { kind: 'tsi', selectors: tsi }, { kind: 'tsr', selectors: tsr });
        events.push({
          type: 'child-sa',
          child: {
            peer: peer.peer.name, algorithm: choice.encryption, esn: false,
            inbound: { spi: inboundSpi, keyMaterial: k.initiatorToResponder },
            outbound: { spi: choice.peerSpi, keyMaterial: k.responderToInitiator },
            localTs: tsr, remoteTs: tsi,
          },
        });
      }
    }
    this.#state = 'established';
    this.#respond(out, EXCHANGE.IKE_AUTH, id, inner);
    out.events.push(...events);
  }

  /** #onInformationalRequest answers DPD, Delete and notifies (§1.4, §1.4.1). */
  #onInformationalRequest(opened: SkOpened, messageId: number, out: Out): void {
    const ps = opened.payloads;
    const inner: Payload[] = [];
    let closeReason: IkeCloseReason | undefined;
    const c = this.#child;
    for (const d of only(ps, 'delete')) {
      if (d.protocol === PROTOCOL.IKE) {
        closeReason = 'deleted-by-peer';
      } else if (d.protocol === PROTOCOL.ESP && c !== undefined && this.#child === c && // (not twice in one message)
        d.spis.some((spi) => spi.length === 4 && readU32(spi, 0) === c.outboundSpi)) {
        // The peer deletes the pair whose inbound SPI (our outbound) it names. If we are deleting
        // it too, the requests crossed: no Delete in this response (§1.4.1).
        if (!c.deleting) inner.push({ kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: [spiOf(c.inboundSpi)] });
        this.#child = undefined;
        out.events.push({ type: 'child-sa-deleted', inboundSpi: c.inboundSpi, outboundSpi: c.outboundSpi, reason: 'peer' });
      }
      // Unknown SPIs: already gone; answer without them.
    }
    if (closeReason === undefined && notifiesOf(ps, NOTIFY.AUTHENTICATION_FAILED).length > 0) closeReason = 'peer-auth-failed';
    if (ps.length === 0) this.stats.livenessAnswered++;
    this.#respond(out, EXCHANGE.INFORMATIONAL, messageId, closeReason === undefined ? inner : []);
    if (closeReason !== undefined) this.#close(out, closeReason);
  }

  /**
   * #onCreateChildSaRequest is the hook for CREATE_CHILD_SA (§1.3): rekeying the Child SA
   * (N(REKEY_SA)), the IKE SA (SA with protocol IKE) or another Child SA.
   * TODO(issue 6, rekey step): implement §1.3.1-§1.3.3 here (nonces, optional KE, new keys
   * via computeRekeySkeyseed / deriveChildSaKeys with g^ir), plus the initiating side and
   * lifetimes. Until then every request is refused with NO_ADDITIONAL_SAS, which leaves the
   * existing SAs untouched; a peer then re-authenticates when its SA expires.
   */
  #onCreateChildSaRequest(_opened: SkOpened, messageId: number, out: Out): void {
    this.#respond(out, EXCHANGE.CREATE_CHILD_SA, messageId, [notify(NOTIFY.NO_ADDITIONAL_SAS)]);
  }

  // -------------------------------------------------------------------------------------------
  // Responses from the peer

  #onResponse(m: ParsedIkeMessage, now: number, out: Out): void {
    const o = this.#outstanding;
    const h = m.header;
    if (o === undefined || h.messageId !== o.messageId || h.exchangeType !== o.exchange) return this.#drop(out, 'unexpected-response');
    if (o.kind === 'init') return this.#onInitResponse(m, now, out);
    const opened = this.#open(m);
    if (opened === 'unauthenticated') return this.#drop(out, 'sk-auth');
    this.lastHeardMs = now;
    this.#outstanding = undefined;
    this.#ownNextId++;
    if (!('payloads' in opened)) {
      // Authentic but malformed: the request failed (§2.21.2).
      if (o.kind === 'auth') return this.#close(out, 'syntax');
      if (o.kind === 'delete-ike') return this.#close(out, 'deleted');
      if (o.intent?.kind === 'delete-child') this.#childGone(out, o.intent.spi, 'local');
    } else if (o.kind === 'auth') {
      this.#onAuthResponse(opened, now, out);
    } else if (o.kind === 'dpd') {
      out.events.push({ type: 'peer-alive' });
    } else if (o.kind === 'delete-ike') {
      return this.#close(out, 'deleted');
    } else if (o.intent?.kind === 'delete-child') {
      this.#childGone(out, o.intent.spi, 'local');
    }
    this.#pump(now, out);
  }

  /** #onInitResponse is the initiator's IKE_SA_INIT response (§1.2, §2.6, §2.7, §2.21.1). */
  #onInitResponse(m: ParsedIkeMessage, now: number, out: Out): void {
    const h = m.header;
    const ps = m.payloads;
    const dh = this.#dh;
    const offer = this.#ikeOffer;
    if (dh === undefined || offer === undefined) throw new Error('unreachable: init-sent has a KE and an offer');
    const cookie = notifiesOf(ps, NOTIFY.COOKIE)[0];
    if (cookie !== undefined) {
      if (cookie.data.length < COOKIE_MIN_LEN || cookie.data.length > COOKIE_MAX_LEN || this.#cookieRounds >= MAX_COOKIE_ROUNDS) {
        return this.#drop(out, 'bad-cookie');
      }
      this.#cookieRounds++;
      this.stats.cookieRounds++;
      this.#cookie = Uint8Array.from(cookie.data);
      return this.#sendInitRequest(now, out);
    }
    const invalidKe = notifiesOf(ps, NOTIFY.INVALID_KE_PAYLOAD)[0];
    if (invalidKe !== undefined) {
      const asked = invalidKe.data.length === 2 ? readU16(invalidKe.data, 0) : -1;
      const group = dhGroupById(asked);
      if (this.#keRetried || group === undefined || !this.#ikeAlg.dhGroups.includes(asked) || asked === dh.group.id) {
        return this.#drop(out, 'ignored-invalid-ke');
      }
      this.#keRetried = true;
      this.stats.invalidKeRetries++;
      this.#dh = { group, pair: this.#generateDh(group) };
      return this.#sendInitRequest(now, out);
    }
    const err = errorNotifies(ps)[0];
    if (err !== undefined) {
      // Unauthenticated (§2.21.1): stop retransmitting, fail when the current timer runs out
      // unless a valid response comes first.
      this.stats.errorNotifies++;
      if (this.#pendingError === undefined) {
        this.#pendingError = {
          reason: err.notifyType === NOTIFY.NO_PROPOSAL_CHOSEN ? 'no-proposal-chosen' : 'peer-error',
          notifyType: err.notifyType,
        };
      }
      return;
    }
    const sas = only(ps, 'sa');
    const kes = only(ps, 'ke');
    const nonces = only(ps, 'nonce');
    if (h.spiR === 0n || sas.length !== 1 || kes.length !== 1 || nonces.length !== 1) return this.#drop(out, 'bad-init');
    const answer = checkIkeAnswer(sas[0], offer);
    const ke = kes[0];
    if (answer === undefined || answer.dhGroup !== dh.group.id || ke.group !== dh.group.id ||
      nonces[0].data.length < answer.prf.keyLength / 2) {
      return this.#drop(out, 'bad-init');
    }
    const shared = dh.group.compute(dh.pair.privateKey, ke.data);
    if (!shared.ok) return this.#drop(out, 'bad-ke');

    // Accepted.
    this.#spiR = h.spiR;
    this.#nr = Uint8Array.from(nonces[0].data);
    this.#prf = answer.prf;
    this.#encryption = answer.encryption;
    this.#dhGroupId = answer.dhGroup;
    this.#initResponse = m.bytes;
    this.#dh = undefined;
    this.#pendingError = undefined;
    const natSrc = notifiesOf(ps, NOTIFY.NAT_DETECTION_SOURCE_IP).map((n) => n.data);
    const natDst = notifiesOf(ps, NOTIFY.NAT_DETECTION_DESTINATION_IP).map((n) => n.data);
    this.#nat = natStatus(this.#spiI, this.#spiR, natSrc, natDst, this.#remote, this.#local);
    this.#deriveIkeKeys(shared.shared);
    shared.shared.fill(0);
    this.#outstanding = undefined;
    this.#ownNextId = 1;
    this.#sendAuthRequest(now, out);
  }

  /** #onAuthResponse is the initiator's IKE_AUTH response: authenticate the responder, take the Child SA. */
  #onAuthResponse(opened: SkOpened, now: number, out: Out): void {
    const ps = opened.payloads;
    const errors = errorNotifies(ps);
    const idrs = only(ps, 'idr');
    const auths = only(ps, 'auth');
    if (idrs.length !== 1 || auths.length !== 1) {
      const e = errors[0] as NotifyPayload | undefined;
      if (e?.notifyType === NOTIFY.AUTHENTICATION_FAILED) return this.#close(out, 'peer-auth-failed', e.notifyType);
      return e === undefined ? this.#close(out, 'syntax') : this.#close(out, 'ike-auth-refused', e.notifyType);
    }
    const peer = this.#peer;
    const prf = this.#prf;
    const keys = this.#keys;
    if (peer === undefined || prf === undefined || keys === undefined) throw new Error('unreachable: auth-sent has keys and a peer');
    const idr = idrs[0];
    const ok = identityMatches(peer.wire, idr) && auths[0].method === AUTH_METHOD_SHARED_KEY_MIC &&
      verifyPskAuth(prf, {
        realMessage: this.#initResponse, peerNonce: this.#ni, skP: keys.skPr,
        restOfIdPayload: opened.bodies[ps.indexOf(idr)], sharedSecret: peer.peer.psk,
      }, auths[0].data);
    if (!ok) {
      // §2.21.2: an error on the initiator MAY go in a separate INFORMATIONAL exchange; sent
      // once, not retransmitted: the SA is gone either way.
      const bytes = this.#seal(EXCHANGE.INFORMATIONAL, false, this.#ownNextId++, [notify(NOTIFY.AUTHENTICATION_FAILED)]);
      this.stats.requestsSent++;
      out.messages.push(bytes);
      return this.#close(out, 'auth-failed');
    }
    this.#state = 'established';
    out.events.push(this.#establishedEvent(false));
    const offer = this.#espOffer;
    if (offer === undefined) throw new Error('unreachable: auth-sent has an ESP offer');
    const ourSpi = readU32(offer.spi, 0);
    const childErr = errors[0] as NotifyPayload | undefined;
    if (childErr !== undefined) {
      out.events.push({ type: 'child-sa-failed', reason: 'refused', notifyType: childErr.notifyType });
      return;
    }
    const sas = only(ps, 'sa');
    const tsis = only(ps, 'tsi');
    const tsrs = only(ps, 'tsr');
    const choice = sas.length === 1 ? checkEspAnswer(sas[0], offer) : undefined;
    const tsi = tsis.length === 1 ? tsis[0].selectors : [];
    const tsr = tsrs.length === 1 ? tsrs[0].selectors : [];
    if (choice === undefined || tsis.length !== 1 || tsrs.length !== 1 || !selectorsWithin(tsi, this.#localTs) || !selectorsWithin(tsr, peer.ts)) {
      out.events.push({ type: 'child-sa-failed', reason: 'bad-answer' });
      // The responder may have installed it: delete our half by its SPI (it sends to ourSpi).
      if (sas.length === 1) this.#enqueue({ kind: 'delete-child', spi: ourSpi }, now, out);
      return;
    }
    const k = deriveChildSaKeys(prf, keys.skD, { ni: this.#ni, nr: this.#nr }, AEAD_ALGORITHMS[choice.encryption].keyMaterialLength);
    this.#child = { inboundSpi: ourSpi, outboundSpi: choice.peerSpi, deleting: false };
    out.events.push({
      type: 'child-sa',
      child: {
        peer: peer.peer.name, algorithm: choice.encryption, esn: false,
        inbound: { spi: ourSpi, keyMaterial: k.responderToInitiator },
        outbound: { spi: choice.peerSpi, keyMaterial: k.initiatorToResponder },
        localTs: tsi.map(copySelector), remoteTs: tsr.map(copySelector),
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Requests we send

  /** #sendInitRequest (re)builds and sends IKE_SA_INIT: [N(COOKIE)], SA, KE, Ni, N(NAT_D_S), N(NAT_D_D). */
  #sendInitRequest(now: number, out: Out): void {
    const dh = this.#dh;
    const offer = this.#ikeOffer;
    if (dh === undefined || offer === undefined) throw new Error('unreachable: init-sent has a KE and an offer');
    const payloads: Payload[] = [];
    if (this.#cookie !== undefined) payloads.push(notify(NOTIFY.COOKIE, this.#cookie));
    payloads.push(
      { kind: 'sa', proposals: [offer] },
      { kind: 'ke', group: dh.group.id, data: dh.pair.public },
      { kind: 'nonce', data: this.#ni },
      ...this.#natNotifies(),
    );
    const header = { spiI: this.#spiI, spiR: 0n, exchangeType: EXCHANGE.IKE_SA_INIT, initiator: true, response: false, higherVersion: false, messageId: 0 };
    const bytes = serializeIkeMessage({ header, payloads });
    this.#initRequest = bytes;
    this.#track('init', undefined, EXCHANGE.IKE_SA_INIT, 0, bytes, now, out);
  }

  /** #sendAuthRequest sends IKE_AUTH: IDi, [N(INITIAL_CONTACT)], [IDr], AUTH, SAi2, TSi, TSr. */
  #sendAuthRequest(now: number, out: Out): void {
    const peer = this.#peer;
    const prf = this.#prf;
    const keys = this.#keys;
    if (peer === undefined || prf === undefined || keys === undefined) throw new Error('unreachable: keys and peer before IKE_AUTH');
    const spi = this.#allocateSpi();
    this.#espOffer = buildEspProposal(this.#espAlg, spi);
    const auth = computePskAuth(prf, {
      realMessage: this.#initRequest, peerNonce: this.#nr, skP: keys.skPi,
      restOfIdPayload: idBody(this.#localId), sharedSecret: peer.peer.psk,
    });
    const inner: Payload[] = [{ kind: 'idi', idType: this.#localId.idType, data: this.#localId.data }];
    if (this.#initialContact) inner.push(notify(NOTIFY.INITIAL_CONTACT));
    if (this.#sendPeerId) inner.push({ kind: 'idr', idType: peer.wire.idType, data: peer.wire.data });
    inner.push(
      { kind: 'auth', method: AUTH_METHOD.SHARED_KEY_MIC, data: auth },
      { kind: 'sa', proposals: [this.#espOffer] },
      { kind: 'tsi', selectors: this.#localTs },
      { kind: 'tsr', selectors: peer.ts },
    );
    this.#state = 'auth-sent';
    const id = this.#ownNextId;
    this.#track('auth', undefined, EXCHANGE.IKE_AUTH, id, this.#seal(EXCHANGE.IKE_AUTH, false, id, inner), now, out);
  }

  /** #enqueue queues a request and sends it if the window is free. */
  #enqueue(intent: Intent, now: number, out: Out): void {
    this.#queue.push(intent);
    this.#pump(now, out);
  }

  /** #pump sends the next queued request when none is outstanding. */
  #pump(now: number, out: Out): void {
    if (this.#outstanding !== undefined || (this.#state !== 'established' && this.#state !== 'deleting')) return;
    const intent = this.#queue.shift();
    if (intent === undefined) return;
    let inner: Payload[];
    switch (intent.kind) {
      case 'dpd': inner = []; break;
      case 'delete-child': inner = [{ kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: [spiOf(intent.spi)] }]; break;
      case 'delete-ike': inner = [{ kind: 'delete', protocol: PROTOCOL.IKE, spiSize: 0, spis: [] }]; break;
    }
    const id = this.#ownNextId;
    this.#track(intent.kind, intent, EXCHANGE.INFORMATIONAL, id, this.#seal(EXCHANGE.INFORMATIONAL, false, id, inner), now, out);
  }

  /** #track makes bytes the outstanding request, sends them and starts the retransmission timer. */
  #track(kind: Outstanding['kind'], intent: Intent | undefined, exchange: number, messageId: number, bytes: Uint8Array, now: number, out: Out): void {
    this.#outstanding = {
      kind, intent, exchange, messageId, bytes, tries: 1,
      intervalMs: this.#retransmitInitialMs, deadline: now + this.#retransmitInitialMs,
    };
    this.stats.requestsSent++;
    out.messages.push(bytes);
  }

  // -------------------------------------------------------------------------------------------
  // Helpers

  /** #seal builds an SK-protected message of this IKE SA with the next IV. */
  #seal(exchange: number, response: boolean, messageId: number, inner: Payload[]): Uint8Array {
    const key = this.#sendKey;
    if (key === undefined) throw new Error('unreachable: sealing before keys');
    const iv = new Uint8Array(SK_IV_LEN);
    new DataView(iv.buffer).setBigUint64(0, this.#ivCounter);
    this.#ivCounter++;
    const header = {
      spiI: this.#spiI, spiR: this.#spiR, exchangeType: exchange,
      initiator: this.role === 'initiator', response, higherVersion: false, messageId,
    };
    return sealIkeMessage(header, inner, key, iv);
  }

  /** #deriveIkeKeys computes SKEYSEED and the seven keys (§2.14) and the SK keys of both directions. */
  #deriveIkeKeys(gir: Uint8Array): void {
    const prf = this.#prf;
    const enc = this.#encryption;
    if (prf === undefined || enc === undefined) throw new Error('unreachable: PRF and cipher chosen before keys');
    const nonces = { ni: this.#ni, nr: this.#nr };
    const skeyseed = computeSkeyseed(prf, nonces, gir);
    const keys = deriveIkeSaKeys(prf, skeyseed, { ...nonces, spiI: spiBytes64(this.#spiI), spiR: spiBytes64(this.#spiR) }, skKeyMaterialLength(enc));
    skeyseed.fill(0);
    this.#keys = keys;
    const ei = new SkKey(enc, keys.skEi);
    const er = new SkKey(enc, keys.skEr);
    keys.skEi.fill(0);
    keys.skEr.fill(0);
    this.#sendKey = this.role === 'initiator' ? ei : er;
    this.#recvKey = this.role === 'initiator' ? er : ei;
  }

  /** #natNotifies are our NAT_DETECTION_SOURCE_IP / DESTINATION_IP for the SPIs as they stand. */
  #natNotifies(): NotifyPayload[] {
    return [
      notify(NOTIFY.NAT_DETECTION_SOURCE_IP, natDetectionHash(this.#spiI, this.#spiR, this.#local.address, this.#local.port)),
      notify(NOTIFY.NAT_DETECTION_DESTINATION_IP, natDetectionHash(this.#spiI, this.#spiR, this.#remote.address, this.#remote.port)),
    ];
  }

  #establishedEvent(initialContact: boolean): IkeEvent {
    const peer = this.#peer;
    const enc = this.#encryption;
    if (peer === undefined || enc === undefined) throw new Error('unreachable: established without a peer');
    return {
      type: 'established', spiI: this.#spiI, spiR: this.#spiR, peer: peer.peer.name, peerId: peer.peer.id,
      initialContact, nat: this.#nat, encryption: enc, dhGroup: this.#dhGroupId,
    };
  }

  #randomIkeSpi(): bigint {
    for (let i = 0; i < 4; i++) {
      const b = this.#random(IKE_SPI_LEN);
      const v = new DataView(b.buffer, b.byteOffset, IKE_SPI_LEN).getBigUint64(0);
      if (v !== 0n) return v;
    }
    return 1n; // only a broken injected random gets here
  }

  #childGone(out: Out, spi: number, reason: 'local' | 'peer'): void {
    const c = this.#child;
    if (c === undefined || c.inboundSpi !== spi) return;
    this.#child = undefined;
    out.events.push({ type: 'child-sa-deleted', inboundSpi: c.inboundSpi, outboundSpi: c.outboundSpi, reason });
  }

  /** #close ends the IKE SA: its Child SA goes with it; keys are wiped except what answers retransmissions. */
  #close(out: Out, reason: IkeCloseReason, notifyType?: number): void {
    if (this.#state === 'closed') return;
    const c = this.#child;
    if (c !== undefined) out.events.push({ type: 'child-sa-deleted', inboundSpi: c.inboundSpi, outboundSpi: c.outboundSpi, reason: 'ike-closed' });
    this.#child = undefined;
    this.#state = 'closed';
    this.#outstanding = undefined;
    this.#queue = [];
    this.#dh = undefined;
    this.#pendingError = undefined;
    const k = this.#keys;
    if (k !== undefined) { k.skD.fill(0); k.skPi.fill(0); k.skPr.fill(0); }
    out.events.push(notifyType === undefined ? { type: 'closed', reason } : { type: 'closed', reason, notifyType });
  }
}

/** spiOf encodes an ESP SPI as 4 octets. */
function spiOf(spi: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, spi);
  return b;
}

/** spiBytes64 encodes an IKE SPI as 8 octets. */
function spiBytes64(spi: bigint): Uint8Array {
  const b = new Uint8Array(IKE_SPI_LEN);
  new DataView(b.buffer).setBigUint64(0, spi);
  return b;
}

function copySelector(s: AddressRangeSelector): AddressRangeSelector {
  return { ...s, startAddress: Uint8Array.from(s.startAddress), endAddress: Uint8Array.from(s.endAddress) };
}
