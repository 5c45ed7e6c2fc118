/**
 * session.ts: the IKEv2 state machine of one IKE SA (RFC 7296), from IKE_SA_INIT through
 * IKE_AUTH with PSK authentication and its first Child SA, then INFORMATIONAL exchanges (DPD,
 * Delete) and CREATE_CHILD_SA rekeys until it closes. Pure: no sockets and no timers of its
 * own. The driver feeds it datagrams and the clock, and sends what it returns:
 *
 *   handle(datagram, now, path?)  -> { messages to send to the peer, events, dropped? }
 *   start(now)             -> the initiator's first IKE_SA_INIT request
 *   nextTimeout(now)       -> ms until onTimeout(now) has work (retransmission, half-open expiry)
 *   sendDpd / deleteChildSa / rekeyChildSa / rekeyIkeSa / close (now)   -> the requests they start
 *   remote, localPort      -> where messages go now (NAT-T, below)
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
 * NAT traversal (§2.23): when IKE_SA_INIT detects a NAT at either end, the initiator moves to
 * port 4500 (localPort, remote.port) from IKE_AUTH on; every session follows the path of each
 * authenticated datagram (a message on local 4500 moves it there; a new source port is taken
 * unless we are behind the NAT ourselves) and says so once established ('path-changed'). Child
 * SAs of an IKE SA with a NAT carry encap: { remotePort } (RFC 3948).
 *
 * CREATE_CHILD_SA (§1.3, §2.8): rekeyChildSa / rekeyIkeSa, and their responder halves. A Child
 * SA rekey: N(REKEY_SA), SA, Ni, [KEi], TSi, TSr (KE in the IKE SA's group with pfs, the
 * default); the initiator sends on the new SA from the response on and deletes the old one; the
 * responder installs the new SA's inbound half before answering but sends on it only when the
 * old one is deleted ('child-sa' with deferOutbound, then 'child-sa-outbound'), as strongSwan's
 * child_rekey does. Simultaneous rekeys of one Child SA: both complete, and the side whose
 * exchange holds the lowest of the four nonces deletes the SA it made (§2.8.1). An IKE SA rekey
 * makes a new IkeSession ('ike-rekeyed') that takes the Child SAs; the old one is deleted by the
 * rekey's initiator and closes 'rekeyed'. Simultaneous IKE SA rekeys (§2.8.2, as strongSwan's
 * ike_rekey does them): each side answers the other's request, but keeps the new SA it made as
 * responder aside (#passiveIke) until its own response comes; then two new IKE SAs exist and
 *
 *     the exchange holding the lowest of the four nonces made the redundant SA:
 *       its initiator (the loser) sends Delete on it at once (it closes 'redundant'),
 *       hands the Child SAs to the other new SA and waits for the old SA's Delete;
 *       the winner hands the Child SAs to its own new SA, deletes the old SA, and keeps
 *       the peer's new SA ('ike-redundant') until the loser's Delete closes it ('redundant').
 *     our own rekey failed (TEMPORARY_FAILURE: the peer completed first without seeing the
 *       collision), or the peer's Delete of the old SA comes before our response: the
 *       peer's new SA takes the Child SAs (no redundant SA; §2.8.2 "only one peer detects").
 *
 * TEMPORARY_FAILURE answers a rekey of a Child SA being deleted or rekeyed, any rekey while the
 * IKE SA is deleted or rekeyed (so also an IKE SA rekey that arrives after ours completed), a
 * Child SA rekey while our IKE SA rekey is in flight, and an IKE SA rekey while a Child SA
 * exchange is under way (§2.25). INVALID_KE_PAYLOAD in a response is followed once with the
 * group named, if we offer it (not during a collision: the peer's new SA is taken instead).
 *
 * Not done here: additional Child SAs (a CREATE_CHILD_SA without REKEY_SA is answered
 * NO_ADDITIONAL_SAS), IKE fragmentation, windows above 1, MOBIKE, EAP and certificates. A
 * session is used by one caller at a time.
 */
import { randomBytes } from 'node:crypto';
import { GatewayError } from '../../errors.js';
import { AEAD_ALGORITHMS } from '../../esp/aead.js';
import { SPI_MIN } from '../../esp/sa.js';
import { parseIpAddress } from '../../packet/address.js';
import { readU16, readU32 } from '../../packet/bytes.js';
import type { AeadName } from '../../esp/aead.js';
import { AUTH_METHOD, EXCHANGE, NOTIFY, NOTIFY_STATUS_MIN, PROTOCOL } from '../constants.js';
import { AUTH_METHOD_SHARED_KEY_MIC, computePskAuth, verifyPskAuth } from '../crypto/auth.js';
import { dhGroupById } from '../crypto/dh.js';
import type { DhGroup, DhKeyPair } from '../crypto/dh.js';
import { computeRekeySkeyseed, computeSkeyseed, deriveChildSaKeys, deriveIkeSaKeys } from '../crypto/keys.js';
import type { IkeSaKeys } from '../crypto/keys.js';
import type { Prf } from '../crypto/prf.js';
import { isIkeParseError, notifyForParseError, parseIkeMessage, serializeIkeMessage } from '../message.js';
import type { IkeHeader, ParsedIkeMessage } from '../message.js';
import { FIXED_BODY_LEN, notify } from '../payloads.js';
import type { AddressRangeSelector, KePayload, NoncePayload, NotifyPayload, Payload, Proposal, SaPayload, TrafficSelector } from '../payloads.js';
import { SK_IV_LEN, SkKey, openIkeMessage, sealIkeMessage, skKeyMaterialLength } from '../sk.js';
import type { SkCipherName, SkOpened } from '../sk.js';
import { COOKIE_MAX_LEN, COOKIE_MIN_LEN } from './cookie.js';
import { IkeDropCounters } from './drops.js';
import type { IkeDropReason } from './drops.js';
import { encodeIdentity, identityMatches } from './identity.js';
import type { IdentityWire } from './identity.js';
import { NAT_T_PORT, natDetectionHash, natStatus } from './natd.js';
import type { NatStatus } from './natd.js';
import {
  DEFAULT_ESP_ALGORITHMS, DEFAULT_IKE_ALGORITHMS, algorithmsProblem, buildEspProposal, buildIkeProposal, checkEspAnswer,
  checkIkeAnswer, checkRekeyEspAnswer, espAnswer, ikeAnswer, selectDhGroup, selectEspProposal, selectIkeProposal,
  selectRekeyEspProposal,
} from './proposals.js';
import type { EspAlgorithms, IkeAlgorithms } from './proposals.js';
import { narrowSelectors, selectorsFromPrefixes, selectorsWithin } from './ts.js';
import type {
  ChildSa, IkeCloseReason, IkeCookiePolicy, IkeEndpoint, IkeEvent, IkeInitiatorOptions, IkeOutput, IkePath, IkePeer,
  IkeResponderOptions, IkeSessionStats, IkeState,
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
  ChildSa, ChildSaDirection, IkeCloseReason, IkeCookiePolicy, IkeEndpoint, IkeEvent, IkeInitiatorOptions, IkeOutput, IkePath,
  IkePeer, IkeResponderOptions, IkeSessionOptions, IkeSessionStats, IkeState, RetransmitPolicy,
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
  | { readonly kind: 'delete-ike' }
  /** rekey-child: CREATE_CHILD_SA with REKEY_SA for our inbound SPI `spi`; group overrides the KE group (INVALID_KE_PAYLOAD). */
  | { readonly kind: 'rekey-child'; readonly spi: number; readonly group: number | undefined; readonly keRetried: boolean }
  | { readonly kind: 'rekey-ike'; readonly group: number | undefined; readonly keRetried: boolean };

/** RekeyContext is what a CREATE_CHILD_SA request we sent needs when its response comes. */
interface RekeyContext {
  readonly ni: Uint8Array;
  readonly dh: { readonly group: DhGroup; readonly pair: DhKeyPair } | undefined;
  readonly offer: Proposal;
  /** newSpi is our inbound ESP SPI of the new Child SA (rekey-child). */
  readonly newSpi: number;
  /** newSpiI is our SPI of the new IKE SA (rekey-ike). */
  readonly newSpiI: bigint;
}

/** Outstanding is the one request in flight. */
interface Outstanding {
  readonly kind: 'init' | 'auth' | Intent['kind'];
  readonly intent: Intent | undefined;
  readonly exchange: number;
  readonly messageId: number;
  readonly bytes: Uint8Array;
  readonly ctx: RekeyContext | undefined;
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

/** LiveChild is what the session remembers of a Child SA (no keys). */
interface LiveChild {
  readonly inboundSpi: number;
  readonly outboundSpi: number;
  readonly algorithm: AeadName;
  readonly localTs: readonly AddressRangeSelector[];
  readonly remoteTs: readonly AddressRangeSelector[];
  /** deleting: our Delete for it is queued or outstanding. */
  deleting: boolean;
  /** rekeying: our CREATE_CHILD_SA rekeying it is queued or outstanding. */
  rekeying: boolean;
  /** replacedBy is the inbound SPI of the Child SA that replaced it; it waits for its Delete. */
  replacedBy: number | undefined;
  /** outboundPending: a rekey responder's new SA, not sent on until the old one is deleted. */
  outboundPending: boolean;
  /** passive is the peer's rekey of this SA that we answered while ours was in flight (§2.8.1). */
  passive: { readonly ni: Uint8Array; readonly nr: Uint8Array } | undefined;
  /** redundant: the loser of a simultaneous rekey, which we delete. */
  redundant: boolean;
}

function liveChild(inboundSpi: number, outboundSpi: number, algorithm: AeadName, localTs: readonly AddressRangeSelector[],
  remoteTs: readonly AddressRangeSelector[]): LiveChild {
  return {
    inboundSpi, outboundSpi, algorithm, localTs: localTs.map(copySelector), remoteTs: remoteTs.map(copySelector),
    deleting: false, rekeying: false, replacedBy: undefined, outboundPending: false, passive: undefined, redundant: false,
  };
}

/** compareNonces orders nonces as memcmp over the shorter length, then the shorter first (§2.8.1 "lowest nonce"). */
export function compareNonces(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  return a.length - b.length;
}

function minBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  return compareNonces(a, b) <= 0 ? a : b;
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
  readonly #opts: IkeInitiatorOptions | IkeResponderOptions;
  readonly #pfs: boolean;
  readonly #ikeAlg: IkeAlgorithms;
  readonly #espAlg: EspAlgorithms;
  readonly #local: PathEnd;
  readonly #remote: PathEnd;
  readonly #localId: IdentityWire;
  readonly #localTs: AddressRangeSelector[];
  readonly #peers: readonly PeerPolicy[];
  readonly #cookies: IkeCookiePolicy | undefined;
  readonly #sendPeerId: boolean;
  readonly #initialContact: boolean | (() => boolean);
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
  /** #localPort / #remotePort are the UDP path as it stands (NAT-T floats it, §2.23). */
  #localPort: number;
  #remotePort: number;
  /** #rxPath is the path of the datagram being handled, applied once it authenticates. */
  #rxPath: IkePath | undefined;
  /** #rekeyedTo is the IKE SA that replaced this one (CREATE_CHILD_SA, §1.3.2). */
  #rekeyedTo: IkeSession | undefined;
  /**
   * #passiveIke is the peer's rekey of this IKE SA that we answered while our own was in flight
   * (§2.8.2): its new IKE SA, and the exchange's nonces, until our response settles which one survives.
   */
  #passiveIke: { readonly next: IkeSession; readonly ni: Uint8Array; readonly nr: Uint8Array } | undefined;
  /** #redundant: this is the new IKE SA of a simultaneous rekey that lost the nonce rule (§2.8.2); it only waits to be deleted. */
  #redundant = false;
  /** #pathEvents holds a 'path-changed' until the output it belongs to is complete. */
  #pathEvents: IkeEvent[] = [];

  // exchanges
  #ownNextId = 0;
  #peerNextId = 0;
  #outstanding: Outstanding | undefined;
  #queue: Intent[] = [];
  #lastResponse: StoredResponse | undefined;

  // Child SAs, oldest first (two at once while one is rekeyed)
  #espOffer: Proposal | undefined;
  #children: LiveChild[] = [];

  /** The constructor validates the options; throws GatewayError ERR_CONFIG when they cannot work. */
  constructor(opts: IkeInitiatorOptions | IkeResponderOptions) {
    this.role = opts.role;
    this.#opts = opts;
    this.#pfs = opts.pfs ?? true;
    this.#ikeAlg = opts.ike ?? DEFAULT_IKE_ALGORITHMS;
    this.#espAlg = opts.esp ?? DEFAULT_ESP_ALGORITHMS;
    const problem = algorithmsProblem(this.#ikeAlg, this.#espAlg);
    if (problem !== undefined) throw config(problem);
    this.#local = pathEnd(opts.local, 'local');
    this.#remote = pathEnd(opts.remote, 'remote');
    this.#localPort = opts.local.port;
    this.#remotePort = opts.remote.port;
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

  /** childSpis are the SPIs of the newest Child SA, or undefined. */
  get childSpis(): { readonly inbound: number; readonly outbound: number } | undefined {
    const c = this.#children[this.#children.length - 1];
    return c === undefined ? undefined : { inbound: c.inboundSpi, outbound: c.outboundSpi };
  }

  /** children lists the SPIs of every Child SA, oldest first (two while one is being rekeyed). */
  get children(): { readonly inbound: number; readonly outbound: number }[] {
    return this.#children.map((c) => ({ inbound: c.inboundSpi, outbound: c.outboundSpi }));
  }

  /** nat is the NAT detection result of IKE_SA_INIT (undefined before, or without NAT-D notifies). */
  get nat(): NatStatus | undefined {
    return this.#nat;
  }

  /**
   * natDetected is true when IKE_SA_INIT found a NAT at either end (§2.23): IKE then runs on
   * port 4500 and every Child SA is UDP-encapsulated (ChildSa.encap).
   */
  get natDetected(): boolean {
    return this.#nat !== undefined && (this.#nat.local || this.#nat.remote);
  }

  /** remote is where this IKE SA's messages go now: the peer's address and its current port. */
  get remote(): IkeEndpoint {
    return { address: this.#opts.remote.address, port: this.#remotePort };
  }

  /** localPort is the local UDP port this IKE SA's messages leave from now (500, or 4500 after a NAT-T float). */
  get localPort(): number {
    return this.#localPort;
  }

  /** dhGroup is the IKE SA's DH group (0 before IKE_SA_INIT completes): the KE group of PFS rekeys. */
  get dhGroup(): number {
    return this.#dhGroupId;
  }

  /** rekeyedTo is the IKE SA that replaced this one, once a rekey of it completed. */
  get rekeyedTo(): IkeSession | undefined {
    return this.#rekeyedTo;
  }

  /**
   * redundant is true for the new IKE SA of a simultaneous rekey that lost the nonce rule
   * (§2.8.2): it never carries a Child SA and only waits to be deleted ('ike-redundant').
   */
  get redundant(): boolean {
    return this.#redundant;
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
  handle(datagram: Uint8Array, now: number, path?: IkePath): IkeOutput {
    const out = new Out();
    this.#rxPath = path;
    try {
      this.#handle(datagram, now, out);
    } catch {
      // Defence in depth: a bug must not take the daemon down with it. Tests assert 0.
      this.#drop(out, 'internal-error');
    }
    this.#rxPath = undefined;
    out.events.unshift(...this.#pathEvents);
    this.#pathEvents = [];
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
      this.#close(out, o.kind !== 'delete-ike' ? 'timeout' : this.#goneReason(false));
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

  /**
   * deleteChildSa deletes a Child SA, by default the newest, else the one with inbound SPI
   * `inboundSpi` (INFORMATIONAL with Delete, §1.4.1); 'child-sa-deleted' when answered.
   */
  deleteChildSa(now: number, inboundSpi?: number): IkeOutput {
    const out = new Out();
    const c = inboundSpi === undefined ? this.#children[this.#children.length - 1] : this.#childByInbound(inboundSpi);
    if (this.#state !== 'established') out.refused = `deleteChildSa: state ${this.#state}`;
    else if (c === undefined || c.deleting) out.refused = 'deleteChildSa: no Child SA, or its deletion is pending';
    else {
      c.deleting = true;
      this.#enqueue({ kind: 'delete-child', spi: c.inboundSpi }, now, out);
    }
    return out.result();
  }

  /**
   * rekeyChildSa rekeys a Child SA (CREATE_CHILD_SA with N(REKEY_SA), §1.3.3), by default the
   * newest. On the response: 'child-sa' with rekeyOf (send on it now), then the old SA is
   * deleted ('child-sa-deleted', reason 'rekeyed'); or 'rekey-failed'.
   */
  rekeyChildSa(now: number, inboundSpi?: number): IkeOutput {
    const out = new Out();
    const c = inboundSpi === undefined ? this.#children[this.#children.length - 1] : this.#childByInbound(inboundSpi);
    if (this.#state !== 'established' || this.#rekeyedTo !== undefined || this.#redundant) out.refused = `rekeyChildSa: state ${this.#state}`;
    else if (c === undefined || c.deleting || c.rekeying || c.replacedBy !== undefined || c.redundant) {
      out.refused = 'rekeyChildSa: no such Child SA, or it is being deleted or rekeyed';
    } else {
      c.rekeying = true;
      this.#enqueue({ kind: 'rekey-child', spi: c.inboundSpi, group: undefined, keRetried: false }, now, out);
    }
    return out.result();
  }

  /**
   * rekeyIkeSa rekeys the IKE SA (CREATE_CHILD_SA with an IKE proposal and KE, §1.3.2). On the
   * response: 'ike-rekeyed' with the new session, which owns every Child SA from then on; this
   * one sends Delete and closes ('rekeyed'). Or 'rekey-failed'. If the peer rekeys it at the
   * same time (§2.8.2): 'ike-rekeyed' with the surviving new SA (ours or the peer's) and, when
   * both exchanges made one, 'ike-redundant' with the other; never 'rekey-failed'.
   */
  rekeyIkeSa(now: number): IkeOutput {
    const out = new Out();
    if (this.#state !== 'established' || this.#rekeyedTo !== undefined || this.#redundant) out.refused = `rekeyIkeSa: state ${this.#state}`;
    else if (this.#outstanding?.kind === 'rekey-ike' || this.#queue.some((i) => i.kind === 'rekey-ike')) out.refused = 'rekeyIkeSa: already pending';
    else this.#enqueue({ kind: 'rekey-ike', group: undefined, keRetried: false }, now, out);
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
    if (isIkeParseError(r) && (r.reason === 'no-sk' || r.reason === 'sk-truncated' || r.reason === 'sk-auth')) return 'unauthenticated';
    this.#notePath();
    if (!isIkeParseError(r)) return r;
    const n = notifyForParseError(r);
    return { notify: n === undefined ? undefined : notify(n.notifyType, n.data) };
  }

  /**
   * #notePath follows the path of an authenticated datagram (§2.23): a message on another local
   * port means the peer floated (we answer from there); a new source port is taken unless we
   * are behind a NAT ourselves ("a host behind a NAT SHOULD NOT" update). 'path-changed' tells
   * the driver once established, so that UDP-encapsulated ESP follows.
   */
  #notePath(): void {
    const p = this.#rxPath;
    if (p === undefined) return;
    this.#rxPath = undefined;
    let changed = false;
    if (p.localPort !== this.#localPort) { this.#localPort = p.localPort; changed = true; }
    if (p.remotePort !== this.#remotePort && (this.#nat?.local !== true || changed)) { this.#remotePort = p.remotePort; changed = true; }
    if (changed && this.#state === 'established') this.#pathEvents.push({ type: 'path-changed', remotePort: this.#remotePort, localPort: this.#localPort });
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
        if (h.exchangeType === EXCHANGE.INFORMATIONAL) return this.#onInformationalRequest(opened, h.messageId, now, out);
        return this.#onCreateChildSaRequest(opened, h.messageId, now, out);
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
        const c = liveChild(inboundSpi, choice.peerSpi, choice.encryption, tsr, tsi);
        this.#children.push(c);
        inner.push({ kind: 'sa', proposals: [espAnswer(choice, inboundSpi)] }, { kind: 'tsi', selectors: tsi }, { kind: 'tsr', selectors: tsr });
        events.push({ type: 'child-sa', child: this.#childSa(c, k.initiatorToResponder, k.responderToInitiator) });
      }
    }
    this.#state = 'established';
    this.#respond(out, EXCHANGE.IKE_AUTH, id, inner);
    out.events.push(...events);
  }

  /** #onInformationalRequest answers DPD, Delete and notifies (§1.4, §1.4.1). */
  #onInformationalRequest(opened: SkOpened, messageId: number, now: number, out: Out): void {
    const ps = opened.payloads;
    const paired: Uint8Array[] = [];
    let closeReason: IkeCloseReason | undefined;
    for (const d of only(ps, 'delete')) {
      if (d.protocol === PROTOCOL.IKE) {
        // §2.8.2: the peer deletes this IKE SA while our rekey of it is in flight and we answered
        // its own rekey: it did not see the collision (our request got TEMPORARY_FAILURE or will),
        // so its new IKE SA is the one; the Child SAs move there before this one closes.
        this.#concludePassiveIke(now, out);
        closeReason = this.#goneReason(true);
        continue;
      }
      if (d.protocol !== PROTOCOL.ESP) continue;
      for (const spi of d.spis) {
        // The peer deletes the pair whose inbound SPI (our outbound) it names. If we are deleting
        // it too, the requests crossed: no Delete for it in this response (§1.4.1). Unknown
        // SPIs: already gone; answered without them.
        const c = spi.length === 4 ? this.#children.find((x) => x.outboundSpi === readU32(spi, 0)) : undefined;
        if (c === undefined) continue;
        if (!c.deleting) paired.push(spiOf(c.inboundSpi));
        this.#removeChild(out, c, c.replacedBy === undefined ? 'peer' : 'rekeyed');
      }
    }
    const inner: Payload[] = paired.length === 0 ? [] : [{ kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: paired }];
    if (closeReason === undefined && notifiesOf(ps, NOTIFY.AUTHENTICATION_FAILED).length > 0) closeReason = 'peer-auth-failed';
    if (ps.length === 0) this.stats.livenessAnswered++;
    this.#respond(out, EXCHANGE.INFORMATIONAL, messageId, closeReason === undefined ? inner : []);
    if (closeReason !== undefined) this.#close(out, closeReason);
  }

  /**
   * #onCreateChildSaRequest answers CREATE_CHILD_SA (§1.3): a rekey of a Child SA (N(REKEY_SA))
   * or of the IKE SA (an IKE proposal). A request for an additional Child SA is refused with
   * NO_ADDITIONAL_SAS (one Child SA per IKE SA is all espgate negotiates). While this IKE SA is
   * being deleted or was rekeyed: TEMPORARY_FAILURE (§2.25).
   */
  #onCreateChildSaRequest(opened: SkOpened, messageId: number, now: number, out: Out): void {
    const ps = opened.payloads;
    const sas = only(ps, 'sa');
    const nonces = only(ps, 'nonce');
    if (this.#state !== 'established' || this.#rekeyedTo !== undefined || this.#redundant) {
      return this.#answerCreate(out, messageId, [notify(NOTIFY.TEMPORARY_FAILURE)]);
    }
    if (sas.length !== 1 || nonces.length !== 1 || only(ps, 'ke').length > 1) return this.#answerCreate(out, messageId, [notify(NOTIFY.INVALID_SYNTAX)]);
    const ke = only(ps, 'ke')[0] as KePayload | undefined;
    if (sas[0].proposals.some((p) => p.protocol === PROTOCOL.IKE)) return this.#onIkeRekeyRequest(sas[0], nonces[0], ke, messageId, now, out);
    const rekey = notifiesOf(ps, NOTIFY.REKEY_SA)[0];
    if (rekey === undefined) return this.#answerCreate(out, messageId, [notify(NOTIFY.NO_ADDITIONAL_SAS)]);
    const tsis = only(ps, 'tsi');
    const tsrs = only(ps, 'tsr');
    const spi = rekey.spi.length === 4 ? readU32(rekey.spi, 0) : -1;
    const old = rekey.protocol === PROTOCOL.ESP ? this.#children.find((c) => c.outboundSpi === spi) : undefined;
    if (old === undefined) {
      const nf: NotifyPayload = { kind: 'notify', protocol: rekey.protocol, spi: Uint8Array.from(rekey.spi), notifyType: NOTIFY.CHILD_SA_NOT_FOUND, data: new Uint8Array(0) };
      return this.#answerCreate(out, messageId, [nf]);
    }
    // §2.25.1: a Child SA we are deleting; §2.8.2: while we rekey the IKE SA.
    if (old.deleting || old.replacedBy !== undefined || old.redundant || this.#outstanding?.kind === 'rekey-ike') {
      return this.#answerCreate(out, messageId, [notify(NOTIFY.TEMPORARY_FAILURE)]);
    }
    const peer = this.#peer;
    const prf = this.#prf;
    const keys = this.#keys;
    if (peer === undefined || prf === undefined || keys === undefined) throw new Error('unreachable: established has keys and a peer');
    const choice = selectRekeyEspProposal(sas[0], this.#espAlg, this.#ikeAlg.dhGroups);
    if (choice === undefined) return this.#answerCreate(out, messageId, [notify(NOTIFY.NO_PROPOSAL_CHOSEN)]);
    let group: DhGroup | undefined;
    if (choice.dhGroups.length > 0) {
      if (ke === undefined || !choice.dhGroups.includes(ke.group)) {
        return this.#answerCreate(out, messageId, [notify(NOTIFY.INVALID_KE_PAYLOAD, u16(choice.dhGroups[0]))]);
      }
      group = dhGroupById(ke.group);
      if (group === undefined) throw new Error('unreachable: accepted groups are implemented');
    }
    const tsi = tsis.length === 1 ? narrowSelectors(tsis[0].selectors, peer.ts) : [];
    const tsr = tsrs.length === 1 ? narrowSelectors(tsrs[0].selectors, this.#localTs) : [];
    if (tsi.length === 0 || tsr.length === 0) return this.#answerCreate(out, messageId, [notify(NOTIFY.TS_UNACCEPTABLE)]);
    let gir: Uint8Array | undefined;
    let pub: Uint8Array | undefined;
    if (group !== undefined && ke !== undefined) {
      const pair = this.#generateDh(group);
      const r = group.compute(pair.privateKey, ke.data);
      if (!r.ok) return this.#answerCreate(out, messageId, [notify(NOTIFY.INVALID_SYNTAX)]);
      gir = r.shared;
      pub = pair.public;
    }
    const ni = Uint8Array.from(nonces[0].data);
    const nr = this.#random(NONCE_LEN);
    const newIn = this.#allocateSpi();
    const k = deriveChildSaKeys(prf, keys.skD, { ni, nr }, AEAD_ALGORITHMS[choice.encryption].keyMaterialLength, gir);
    gir?.fill(0);
    // A collision (§2.8.1): we are rekeying the same SA and our request is in flight. Both
    // exchanges complete; the one with the lowest nonce made the redundant SA (decided when
    // our response comes, #onRekeyChildResponse).
    if (old.rekeying && this.#outstanding?.intent?.kind === 'rekey-child' && this.#outstanding.intent.spi === old.inboundSpi) {
      old.passive = { ni, nr };
    }
    old.replacedBy = newIn;
    const c = liveChild(newIn, choice.peerSpi, choice.encryption, tsr, tsi);
    c.outboundPending = true;
    this.#children.push(c);
    const inner: Payload[] = [
      { kind: 'sa', proposals: [espAnswer(choice, newIn, group?.id)] },
      { kind: 'nonce', data: nr },
    ];
    if (group !== undefined && pub !== undefined) inner.push({ kind: 'ke', group: group.id, data: pub });
    inner.push({ kind: 'tsi', selectors: tsi }, { kind: 'tsr', selectors: tsr });
    this.#answerCreate(out, messageId, inner);
    // Responder: the new SA's inbound half now; its outbound once the initiator deletes the old
    // SA (strongSwan's child_rekey/child_delete do the same), so no packet is sent on an SA the
    // peer has not installed yet, and none of the old SA's in-flight packets are lost.
    out.events.push({ type: 'child-sa', child: this.#childSa(c, k.initiatorToResponder, k.responderToInitiator), rekeyOf: old.inboundSpi, deferOutbound: true });
  }

  #answerCreate(out: Out, messageId: number, inner: Payload[]): void {
    this.#respond(out, EXCHANGE.CREATE_CHILD_SA, messageId, inner);
  }

  /**
   * #onIkeRekeyRequest answers a rekey of the IKE SA (§1.3.2, §2.18): a new IKE SA with the
   * proposal's SPI as SPIi and a fresh SPIr, keys from SK_d (old) and a new DH. The Child SAs
   * move to it at once; this one waits for the initiator's Delete. If our own rekey of this IKE
   * SA is in flight (§2.8.2), the request is answered all the same, but the new IKE SA waits in
   * #passiveIke until our response says which of the two survives (#onRekeyIkeResponse).
   */
  #onIkeRekeyRequest(sa: SaPayload, nonce: NoncePayload, ke: KePayload | undefined, messageId: number, now: number, out: Out): void {
    // §2.25.2 (and strongSwan's ike_rekey): not while a Child SA is being created, rekeyed or
    // deleted. A second rekey from the peer while we hold one (it cannot have two requests out)
    // is refused too. The IKE SA being deleted or rekeyed already was refused by our caller.
    const busy = this.#children.some((c) => c.deleting || c.rekeying || c.replacedBy !== undefined || c.outboundPending || c.redundant) ||
      this.#passiveIke !== undefined;
    if (busy) return this.#answerCreate(out, messageId, [notify(NOTIFY.TEMPORARY_FAILURE)]);
    const choice = selectIkeProposal(sa, this.#ikeAlg, IKE_SPI_LEN);
    if (choice === undefined) return this.#answerCreate(out, messageId, [notify(NOTIFY.NO_PROPOSAL_CHOSEN)]);
    const proposal = sa.proposals.find((p) => p.num === choice.proposalNum && p.protocol === PROTOCOL.IKE && p.spi.length === IKE_SPI_LEN);
    if (ke === undefined || proposal === undefined || nonce.data.length < choice.prf.keyLength / 2) {
      return this.#answerCreate(out, messageId, [notify(NOTIFY.INVALID_SYNTAX)]);
    }
    const g = selectDhGroup(choice, ke.group);
    if ('ask' in g) return this.#answerCreate(out, messageId, [notify(NOTIFY.INVALID_KE_PAYLOAD, u16(g.ask))]);
    const group = dhGroupById(g.use);
    if (group === undefined) throw new Error('unreachable: accepted groups are implemented');
    const pair = this.#generateDh(group);
    const shared = group.compute(pair.privateKey, ke.data);
    if (!shared.ok) return this.#answerCreate(out, messageId, [notify(NOTIFY.INVALID_SYNTAX)]);
    const spiI = new DataView(proposal.spi.buffer, proposal.spi.byteOffset, IKE_SPI_LEN).getBigUint64(0);
    const spiR = this.#randomIkeSpi();
    const ni = Uint8Array.from(nonce.data);
    const nr = this.#random(NONCE_LEN);
    const next = this.#spawnRekeyed('responder', { spiI, spiR, ni, nr, prf: choice.prf, encryption: choice.encryption, group: group.id, gir: shared.shared }, now);
    shared.shared.fill(0);
    this.#answerCreate(out, messageId, [
      { kind: 'sa', proposals: [{ ...ikeAnswer(choice, group.id), spi: spiBytes64(spiR) }] },
      { kind: 'nonce', data: nr },
      { kind: 'ke', group: group.id, data: pair.public },
    ]);
    if (this.#outstanding?.kind === 'rekey-ike') {
      // A collision (§2.8.2): both exchanges complete; the nonce rule is applied when our
      // response comes. Until then nothing moves and the new SA is not announced (strongSwan's
      // ike_rekey likewise leaves the passive SA to its active task).
      this.#passiveIke = { next, ni, nr };
      return;
    }
    this.#handOver(next, now, out);
  }

  /**
   * #concludePassiveIke ends a collision in which only the peer's IKE SA rekey produced a new
   * IKE SA (ours failed, or the peer deleted this SA before our response: it never saw the
   * collision, §2.8.2): the Child SAs move to the peer's new SA, and this one waits for the
   * peer's Delete. Returns whether there was such a rekey.
   */
  #concludePassiveIke(now: number, out: Out): boolean {
    const p = this.#passiveIke;
    if (p === undefined) return false;
    this.#passiveIke = undefined;
    if (this.#state === 'closed') return false;
    this.#handOver(p.next, now, out);
    return true;
  }

  /** #goneReason is why this IKE SA closes once deleted, by us or by the peer. */
  #goneReason(byPeer: boolean): IkeCloseReason {
    if (this.#redundant) return 'redundant';
    if (this.#rekeyedTo !== undefined) return 'rekeyed';
    return byPeer ? 'deleted-by-peer' : 'deleted';
  }

  /**
   * #spawnRekeyed makes the IKE SA a rekey creates (§2.18): SKEYSEED = prf(SK_d (old), g^ir | Ni | Nr)
   * with the old PRF, the seven keys with the new one; established, message IDs from 0, the same
   * peer and path. `role` is ours in the new SA: the rekey's initiator is its original initiator.
   */
  #spawnRekeyed(role: 'initiator' | 'responder', p: {
    readonly spiI: bigint; readonly spiR: bigint; readonly ni: Uint8Array; readonly nr: Uint8Array;
    readonly prf: Prf; readonly encryption: SkCipherName; readonly group: number; readonly gir: Uint8Array;
  }, now: number): IkeSession {
    const oldPrf = this.#prf;
    const oldKeys = this.#keys;
    const peer = this.#peer;
    if (oldPrf === undefined || oldKeys === undefined || peer === undefined) throw new Error('unreachable: established has keys and a peer');
    const skeyseed = computeRekeySkeyseed(oldPrf, oldKeys.skD, p.gir, { ni: p.ni, nr: p.nr });
    const keys = deriveIkeSaKeys(p.prf, skeyseed, { ni: p.ni, nr: p.nr, spiI: spiBytes64(p.spiI), spiR: spiBytes64(p.spiR) }, skKeyMaterialLength(p.encryption));
    skeyseed.fill(0);
    const o = this.#opts;
    const local = { address: o.local.address, port: this.#localPort };
    const remote = { address: o.remote.address, port: this.#remotePort };
    const next = role === 'initiator'
      ? new IkeSession({ ...o, role: 'initiator', peer: peer.peer, initialContact: false, local, remote })
      : new IkeSession({ ...o, role: 'responder', peers: [peer.peer], local, remote });
    next.#adopt(this, { ...p, keys }, now);
    return next;
  }

  /** #adopt makes this fresh session the rekeyed successor of `old` (see #spawnRekeyed). */
  #adopt(old: IkeSession, p: { readonly spiI: bigint; readonly spiR: bigint; readonly ni: Uint8Array; readonly nr: Uint8Array;
    readonly prf: Prf; readonly encryption: SkCipherName; readonly group: number; readonly keys: IkeSaKeys }, now: number): void {
    this.#spiI = p.spiI;
    this.#spiR = p.spiR;
    this.#ni = Uint8Array.from(p.ni);
    this.#nr = Uint8Array.from(p.nr);
    this.#prf = p.prf;
    this.#encryption = p.encryption;
    this.#dhGroupId = p.group;
    this.#nat = old.#nat;
    this.#peer = old.#peer;
    this.#installKeys(p.keys);
    this.#state = 'established';
    this.lastHeardMs = now;
  }

  /**
   * #handOver moves every Child SA to the rekeyed IKE SA `next` and says so. Queued Deletes of
   * Child SAs move with them (sent on `next`); queued Child SA rekeys are dropped with
   * 'rekey-failed' ('gone'), for the driver to ask `next` again.
   */
  #handOver(next: IkeSession, now: number, out: Out): void {
    for (const c of this.#children) c.rekeying = false;
    next.#children = this.#children;
    this.#children = [];
    this.#rekeyedTo = next;
    out.events.push({ type: 'ike-rekeyed', next });
    for (const i of this.#queue) {
      if (i.kind === 'rekey-child') out.events.push({ type: 'rekey-failed', what: 'child', inboundSpi: i.spi, reason: 'gone' });
      if (i.kind === 'delete-child') next.#queue.push(i);
    }
    this.#queue = this.#queue.filter((i) => i.kind === 'dpd' || i.kind === 'delete-ike');
    next.#pump(now, out);
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
    const intent = o.intent;
    if (!('payloads' in opened)) {
      // Authentic but malformed: the request failed (§2.21.2).
      if (o.kind === 'auth') return this.#close(out, 'syntax');
      if (o.kind === 'delete-ike') return this.#close(out, this.#goneReason(false));
      if (intent?.kind === 'delete-child') this.#childGone(out, intent.spi);
      if (intent?.kind === 'rekey-child') this.#rekeyFailed(out, intent.spi, 'refused', NOTIFY.INVALID_SYNTAX);
      if (intent?.kind === 'rekey-ike' && !this.#concludePassiveIke(now, out)) {
        out.events.push({ type: 'rekey-failed', what: 'ike', reason: 'refused', notifyType: NOTIFY.INVALID_SYNTAX });
      }
    } else if (o.kind === 'auth') {
      this.#onAuthResponse(opened, now, out);
    } else if (o.kind === 'dpd') {
      out.events.push({ type: 'peer-alive' });
    } else if (o.kind === 'delete-ike') {
      return this.#close(out, this.#goneReason(false));
    } else if (intent?.kind === 'delete-child') {
      this.#childGone(out, intent.spi);
    } else if (intent?.kind === 'rekey-child' && o.ctx !== undefined) {
      this.#onRekeyChildResponse(opened, intent, o.ctx, out);
    } else if (intent?.kind === 'rekey-ike' && o.ctx !== undefined) {
      this.#onRekeyIkeResponse(opened, intent, o.ctx, now, out);
    }
    this.#pump(now, out);
  }

  #rekeyFailed(out: Out, spi: number, reason: 'refused' | 'bad-answer' | 'gone', notifyType?: number): void {
    const c = this.#childByInbound(spi);
    if (c !== undefined) { c.rekeying = false; c.passive = undefined; }
    out.events.push(notifyType === undefined
      ? { type: 'rekey-failed', what: 'child', inboundSpi: spi, reason }
      : { type: 'rekey-failed', what: 'child', inboundSpi: spi, reason, notifyType });
  }

  /**
   * #invalidKeRetry handles INVALID_KE_PAYLOAD in a CREATE_CHILD_SA response: the request is
   * made again, once, with the group named if we accept it (§1.3: a new exchange, new message
   * ID). Returns whether it did.
   */
  #invalidKeRetry(ps: readonly Payload[], intent: Extract<Intent, { kind: 'rekey-child' | 'rekey-ike' }>, ctx: RekeyContext): boolean {
    const n = notifiesOf(ps, NOTIFY.INVALID_KE_PAYLOAD)[0];
    if (n === undefined || n.data.length !== 2 || intent.keRetried) return false;
    const asked = readU16(n.data, 0);
    if (!this.#ikeAlg.dhGroups.includes(asked) || asked === ctx.dh?.group.id || dhGroupById(asked) === undefined) return false;
    this.#queue.unshift({ ...intent, group: asked, keRetried: true });
    return true;
  }

  /** #onRekeyChildResponse completes our Child SA rekey (§1.3.3, §2.8), simultaneous ones by the nonce rule (§2.8.1). */
  #onRekeyChildResponse(opened: SkOpened, intent: Extract<Intent, { kind: 'rekey-child' }>, ctx: RekeyContext, out: Out): void {
    const ps = opened.payloads;
    if (this.#invalidKeRetry(ps, intent, ctx)) return;
    const err = errorNotifies(ps)[0];
    if (err !== undefined) return this.#rekeyFailed(out, intent.spi, 'refused', err.notifyType);
    const peer = this.#peer;
    const prf = this.#prf;
    const keys = this.#keys;
    if (peer === undefined || prf === undefined || keys === undefined) throw new Error('unreachable: established has keys and a peer');
    const sas = only(ps, 'sa');
    const nonces = only(ps, 'nonce');
    const kes = only(ps, 'ke');
    const tsis = only(ps, 'tsi');
    const tsrs = only(ps, 'tsr');
    const choice = sas.length === 1 ? checkRekeyEspAnswer(sas[0], ctx.offer) : undefined;
    const dh = ctx.dh;
    const ke = kes.length === 1 ? kes[0] : undefined;
    const ok = choice !== undefined && nonces.length === 1 && nonces[0].data.length >= prf.keyLength / 2 && tsis.length === 1 && tsrs.length === 1 &&
      selectorsWithin(tsis[0].selectors, this.#localTs) && selectorsWithin(tsrs[0].selectors, peer.ts) &&
      (dh === undefined ? choice.dhGroup === undefined && kes.length === 0 : choice.dhGroup === dh.group.id && ke?.group === dh.group.id);
    let gir: Uint8Array | undefined;
    if (ok && dh !== undefined && ke !== undefined) {
      const r = dh.group.compute(dh.pair.privateKey, ke.data);
      if (r.ok) gir = r.shared;
    }
    if (!ok || (dh !== undefined && gir === undefined)) {
      this.#rekeyFailed(out, intent.spi, 'bad-answer');
      // The peer may have installed its half: delete it by our SPI (it sends to ctx.newSpi).
      if (sas.length === 1) this.#queue.push({ kind: 'delete-child', spi: ctx.newSpi });
      return;
    }
    const nr = Uint8Array.from(nonces[0].data);
    const k = deriveChildSaKeys(prf, keys.skD, { ni: ctx.ni, nr }, AEAD_ALGORITHMS[choice.encryption].keyMaterialLength, gir);
    gir?.fill(0);
    const ranges = (ts: readonly TrafficSelector[]): AddressRangeSelector[] => ts.filter((x): x is AddressRangeSelector => x.kind === 'range');
    const c = liveChild(ctx.newSpi, choice.peerSpi, choice.encryption, ranges(tsis[0].selectors), ranges(tsrs[0].selectors));
    const child = this.#childSa(c, k.responderToInitiator, k.initiatorToResponder);
    const old = this.#childByInbound(intent.spi);
    this.#children.push(c);
    if (old === undefined || old.deleting) {
      // The old SA went while we rekeyed it (the peer deleted it): the new one simply replaces it.
      out.events.push({ type: 'child-sa', child });
      return;
    }
    old.rekeying = false;
    const passive = old.passive;
    old.passive = undefined;
    if (passive !== undefined && compareNonces(minBytes(ctx.ni, nr), minBytes(passive.ni, passive.nr)) < 0) {
      // We lost (§2.8.1): our exchange holds the lowest nonce, so our new SA is the redundant
      // one and we delete it; the peer deletes the old SA, which switches us to its new SA.
      c.redundant = true;
      c.outboundPending = true;
      c.deleting = true;
      out.events.push({ type: 'child-sa', child, rekeyOf: old.inboundSpi, deferOutbound: true });
      this.#queue.push({ kind: 'delete-child', spi: c.inboundSpi });
      return;
    }
    // Ours is the replacement: send on it now (the responder installed its inbound half before
    // answering) and delete the old SA; its inbound half is removed after that exchange.
    old.replacedBy = c.inboundSpi;
    old.deleting = true;
    out.events.push({ type: 'child-sa', child, rekeyOf: old.inboundSpi });
    this.#queue.push({ kind: 'delete-child', spi: old.inboundSpi });
  }

  /**
   * #onRekeyIkeResponse completes our IKE SA rekey (§1.3.2, §2.18): the Child SAs move, the old
   * SA is deleted. If we answered the peer's rekey of the same IKE SA meanwhile (#passiveIke),
   * two new IKE SAs exist and the nonce rule of §2.8.2 settles which survives (below); if
   * ours failed, the peer's is the new IKE SA.
   */
  #onRekeyIkeResponse(opened: SkOpened, intent: Extract<Intent, { kind: 'rekey-ike' }>, ctx: RekeyContext, now: number, out: Out): void {
    const ps = opened.payloads;
    if (this.#passiveIke === undefined && this.#invalidKeRetry(ps, intent, ctx)) return;
    const err = errorNotifies(ps)[0];
    if (err !== undefined) {
      // TEMPORARY_FAILURE here usually means the peer completed its own rekey before ours reached it.
      if (!this.#concludePassiveIke(now, out)) out.events.push({ type: 'rekey-failed', what: 'ike', reason: 'refused', notifyType: err.notifyType });
      return;
    }
    const sas = only(ps, 'sa');
    const nonces = only(ps, 'nonce');
    const kes = only(ps, 'ke');
    const answer = sas.length === 1 ? checkIkeAnswer(sas[0], ctx.offer) : undefined;
    const dh = ctx.dh;
    const ke = kes.length === 1 ? kes[0] : undefined;
    const spiR = answer === undefined ? 0n : new DataView(sas[0].proposals[0].spi.buffer, sas[0].proposals[0].spi.byteOffset, IKE_SPI_LEN).getBigUint64(0);
    const r = answer !== undefined && dh !== undefined && ke !== undefined && answer.dhGroup === dh.group.id && ke.group === dh.group.id &&
      nonces.length === 1 && nonces[0].data.length >= answer.prf.keyLength / 2 && spiR !== 0n
      ? dh.group.compute(dh.pair.privateKey, ke.data) : undefined;
    if (answer === undefined || dh === undefined || r === undefined || !r.ok) {
      if (!this.#concludePassiveIke(now, out)) out.events.push({ type: 'rekey-failed', what: 'ike', reason: 'bad-answer' });
      return;
    }
    const nr = Uint8Array.from(nonces[0].data);
    const next = this.#spawnRekeyed('initiator', {
      spiI: ctx.newSpiI, spiR, ni: ctx.ni, nr, prf: answer.prf, encryption: answer.encryption, group: dh.group.id, gir: r.shared,
    }, now);
    r.shared.fill(0);
    const passive = this.#passiveIke;
    this.#passiveIke = undefined;
    if (passive !== undefined && compareNonces(minBytes(ctx.ni, nr), minBytes(passive.ni, passive.nr)) < 0) {
      // We lost (§2.8.2): "The new IKE SA containing the lowest nonce SHOULD be deleted by the
      // node that created it, and the other surviving new IKE SA MUST inherit all the Child
      // SAs." Ours is deleted now, as its first request; the peer's takes the Child SAs, and
      // the peer, which initiated the surviving rekey, deletes this old one.
      next.#redundant = true;
      next.#state = 'deleting';
      out.events.push({ type: 'ike-redundant', sa: next });
      next.#enqueue({ kind: 'delete-ike' }, now, out);
      this.#handOver(passive.next, now, out);
      return;
    }
    this.#handOver(next, now, out);
    if (passive !== undefined) {
      // We won: the peer's new IKE SA is the redundant one, which the peer deletes.
      passive.next.#redundant = true;
      out.events.push({ type: 'ike-redundant', sa: passive.next });
    }
    // The Delete of the old IKE SA is the last request on it (§1.3.2).
    this.#state = 'deleting';
    this.#queue = [{ kind: 'delete-ike' }];
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
    if (this.natDetected && this.#localPort !== NAT_T_PORT) {
      // §2.23: with a NAT on the path, the initiator moves to port 4500 from IKE_AUTH on.
      this.#localPort = NAT_T_PORT;
      this.#remotePort = NAT_T_PORT;
    }
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
    const c = liveChild(ourSpi, choice.peerSpi, choice.encryption, tsi, tsr);
    this.#children.push(c);
    out.events.push({ type: 'child-sa', child: this.#childSa(c, k.responderToInitiator, k.initiatorToResponder) });
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
    const ic = this.#initialContact;
    if (typeof ic === 'function' ? ic() : ic) inner.push(notify(NOTIFY.INITIAL_CONTACT));
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

  /** #pump sends the next queued request when none is outstanding (window 1, §2.3). */
  #pump(now: number, out: Out): void {
    if (this.#outstanding !== undefined || (this.#state !== 'established' && this.#state !== 'deleting')) return;
    for (let guard = 0; guard < 1024; guard++) {
      const intent = this.#queue.shift();
      if (intent === undefined) return;
      const req = this.#buildRequest(intent, out);
      if (req === undefined) continue; // obsolete (its Child SA went or was rekeyed meanwhile)
      const id = this.#ownNextId;
      this.#track(intent.kind, intent, req.exchange, id, this.#seal(req.exchange, false, id, req.inner), now, out, req.ctx);
      return;
    }
  }

  /** #buildRequest makes the payloads of a queued request, or undefined when it is obsolete. */
  #buildRequest(intent: Intent, out: Out): { exchange: number; inner: Payload[]; ctx?: RekeyContext } | undefined {
    switch (intent.kind) {
      case 'dpd': return { exchange: EXCHANGE.INFORMATIONAL, inner: [] };
      case 'delete-child': return { exchange: EXCHANGE.INFORMATIONAL, inner: [{ kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: [spiOf(intent.spi)] }] };
      case 'delete-ike': return { exchange: EXCHANGE.INFORMATIONAL, inner: [{ kind: 'delete', protocol: PROTOCOL.IKE, spiSize: 0, spis: [] }] };
      case 'rekey-child': {
        // CREATE_CHILD_SA request, as strongSwan orders it: N(REKEY_SA), SA, Ni, [KEi], TSi, TSr.
        const c = this.#childByInbound(intent.spi);
        if (c === undefined || c.deleting || c.replacedBy !== undefined || this.#rekeyedTo !== undefined) {
          if (c !== undefined) c.rekeying = false;
          out.events.push({ type: 'rekey-failed', what: 'child', inboundSpi: intent.spi, reason: 'gone' });
          return undefined;
        }
        const ni = this.#random(NONCE_LEN);
        const newSpi = this.#allocateSpi();
        const group = this.#pfs ? dhGroupById(intent.group ?? this.#dhGroupId) : undefined;
        const dh = group === undefined ? undefined : { group, pair: this.#generateDh(group) };
        // Every group we take, the KE's first: a peer preferring another answers INVALID_KE_PAYLOAD.
        const groups = dh === undefined ? [] : [dh.group.id, ...this.#ikeAlg.dhGroups.filter((g) => g !== dh.group.id)];
        const offer = buildEspProposal(this.#espAlg, newSpi, groups);
        const inner: Payload[] = [
          { kind: 'notify', protocol: PROTOCOL.ESP, spi: spiOf(c.inboundSpi), notifyType: NOTIFY.REKEY_SA, data: new Uint8Array(0) },
          { kind: 'sa', proposals: [offer] },
          { kind: 'nonce', data: ni },
        ];
        if (dh !== undefined) inner.push({ kind: 'ke', group: dh.group.id, data: dh.pair.public });
        inner.push({ kind: 'tsi', selectors: [...c.localTs] }, { kind: 'tsr', selectors: [...c.remoteTs] });
        return { exchange: EXCHANGE.CREATE_CHILD_SA, inner, ctx: { ni, dh, offer, newSpi, newSpiI: 0n } };
      }
      case 'rekey-ike': {
        // CREATE_CHILD_SA request: SA (SPI = our new SPIi), Ni, KEi in the IKE SA's group.
        if (this.#rekeyedTo !== undefined || this.#state !== 'established') return undefined;
        const newSpiI = this.#randomIkeSpi();
        const ni = this.#random(NONCE_LEN);
        const group = dhGroupById(intent.group ?? this.#dhGroupId);
        if (group === undefined) return undefined;
        const dh = { group, pair: this.#generateDh(group) };
        // The KE's group first, so a responder that takes the first acceptable group agrees with it.
        const offer = buildIkeProposal({ ...this.#ikeAlg, dhGroups: [group.id, ...this.#ikeAlg.dhGroups.filter((g) => g !== group.id)] }, spiBytes64(newSpiI));
        const inner: Payload[] = [{ kind: 'sa', proposals: [offer] }, { kind: 'nonce', data: ni }, { kind: 'ke', group: group.id, data: dh.pair.public }];
        return { exchange: EXCHANGE.CREATE_CHILD_SA, inner, ctx: { ni, dh, offer, newSpi: 0, newSpiI } };
      }
    }
  }

  /** #track makes bytes the outstanding request, sends them and starts the retransmission timer. */
  #track(kind: Outstanding['kind'], intent: Intent | undefined, exchange: number, messageId: number, bytes: Uint8Array, now: number, out: Out,
    ctx?: RekeyContext): void {
    this.#outstanding = {
      kind, intent, exchange, messageId, bytes, ctx, tries: 1,
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
    this.#installKeys(keys);
  }

  /** #installKeys keeps SK_d, SK_pi, SK_pr and makes the SK keys of both directions (SK_ei/SK_er are wiped). */
  #installKeys(keys: IkeSaKeys): void {
    const enc = this.#encryption;
    if (enc === undefined) throw new Error('unreachable: cipher chosen before keys');
    this.#keys = keys;
    this.#ivCounter = 0n;
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

  #childByInbound(spi: number): LiveChild | undefined {
    return this.#children.find((c) => c.inboundSpi === spi);
  }

  /** #childGone is our Delete of the Child SA with inbound SPI `spi` answered. */
  #childGone(out: Out, spi: number): void {
    const c = this.#childByInbound(spi);
    if (c !== undefined) this.#removeChild(out, c, c.replacedBy !== undefined || c.redundant ? 'rekeyed' : 'local');
  }

  /**
   * #removeChild forgets a Child SA. If it had been replaced by a rekey we answered, the new SA
   * takes the outbound traffic now ('child-sa-outbound' before 'child-sa-deleted').
   */
  #removeChild(out: Out, c: LiveChild, reason: 'local' | 'peer' | 'rekeyed'): void {
    const i = this.#children.indexOf(c);
    if (i < 0) return;
    this.#children.splice(i, 1);
    const next = c.replacedBy === undefined ? undefined : this.#childByInbound(c.replacedBy);
    if (next?.outboundPending === true && !next.redundant) {
      next.outboundPending = false;
      out.events.push({ type: 'child-sa-outbound', inboundSpi: next.inboundSpi });
    }
    out.events.push({ type: 'child-sa-deleted', inboundSpi: c.inboundSpi, outboundSpi: c.outboundSpi, reason });
  }

  /** #childSa is the 'child-sa' event's view of c with its keys; UDP-encapsulated when a NAT was detected. */
  #childSa(c: LiveChild, inKey: Uint8Array, outKey: Uint8Array): ChildSa {
    const peer = this.#peer;
    if (peer === undefined) throw new Error('unreachable: a Child SA has a peer');
    const base: ChildSa = {
      peer: peer.peer.name, algorithm: c.algorithm, esn: false,
      inbound: { spi: c.inboundSpi, keyMaterial: inKey }, outbound: { spi: c.outboundSpi, keyMaterial: outKey },
      localTs: c.localTs.map(copySelector), remoteTs: c.remoteTs.map(copySelector),
    };
    return this.natDetected ? { ...base, encap: { remotePort: this.#remotePort } } : base;
  }

  /** #close ends the IKE SA: its Child SAs go with it; keys are wiped except what answers retransmissions. */
  #close(out: Out, reason: IkeCloseReason, notifyType?: number): void {
    if (this.#state === 'closed') return;
    for (const c of this.#children) out.events.push({ type: 'child-sa-deleted', inboundSpi: c.inboundSpi, outboundSpi: c.outboundSpi, reason: 'ike-closed' });
    this.#children = [];
    this.#state = 'closed';
    this.#outstanding = undefined;
    this.#queue = [];
    this.#passiveIke = undefined;
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
