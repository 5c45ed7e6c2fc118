/**
 * types.ts: the public shapes of an IKE session (session.ts): its options per role, the events
 * it emits, the output of every call, its states and counters. A driver imports these to wire
 * sessions to sockets, timers and the SADB.
 */
import type { AeadName } from '../../esp/aead.js';
import type { DhGroup, DhKeyPair } from '../crypto/dh.js';
import type { AddressRangeSelector } from '../payloads.js';
import type { SkCipherName } from '../sk.js';
import type { IkeCookieJar } from './cookie.js';
import type { IkeDropReason } from './drops.js';
import type { IkeIdentity } from './identity.js';
import type { NatStatus } from './natd.js';
import type { EspAlgorithms, IkeAlgorithms } from './proposals.js';
import type { IkeSession } from './session.js';

/** IkeEndpoint is one end of the UDP path: an IPv4 or IPv6 address in text form and a port. */
export interface IkeEndpoint {
  readonly address: string;
  readonly port: number;
}

/** IkePeer is one peer's policy: who it is, the key it proves that with, and what it protects. */
export interface IkePeer {
  /** name labels the peer in events (the config's peer name). */
  readonly name: string;
  /** id is the identity the peer must present (IDi to a responder, IDr to an initiator). */
  readonly id: IkeIdentity;
  /** psk is the pre-shared key as octets. */
  readonly psk: Uint8Array;
  /** protect lists the peer's protected prefixes (CIDR): its side of the traffic selectors. */
  readonly protect: readonly string[];
}

/**
 * IkePath is the UDP path one datagram took, as the driver saw it: the peer's source port and
 * our local port (500, or 4500 with the non-ESP marker already stripped).
 */
export interface IkePath {
  readonly remotePort: number;
  readonly localPort: number;
}

/** RetransmitPolicy sets the request retransmission backoff. */
export interface RetransmitPolicy {
  /** initialMs is the first interval (default 500); each retransmission doubles it. */
  readonly initialMs?: number;
  /** tries is how many times a request is sent in all (default 5). */
  readonly tries?: number;
}

/** IkeSessionOptions are what both roles take. */
export interface IkeSessionOptions {
  /** local is our end of the UDP path (for NAT detection). */
  readonly local: IkeEndpoint;
  /** remote is the peer's end, as the datagrams come from and go to. */
  readonly remote: IkeEndpoint;
  /** localId is the identity we present (IDi or IDr). */
  readonly localId: IkeIdentity;
  /** localProtect lists our protected prefixes (CIDR): our side of the traffic selectors. */
  readonly localProtect: readonly string[];
  /** ike lists the IKE SA algorithms (default DEFAULT_IKE_ALGORITHMS). */
  readonly ike?: IkeAlgorithms;
  /** esp lists the Child SA algorithms (default DEFAULT_ESP_ALGORITHMS). */
  readonly esp?: EspAlgorithms;
  readonly retransmit?: RetransmitPolicy;
  /** halfOpenTimeoutMs bounds a responder's wait for IKE_AUTH (default 30 s). */
  readonly halfOpenTimeoutMs?: number;
  /** random returns n random octets (default node:crypto randomBytes). */
  readonly random?: (n: number) => Uint8Array;
  /** generateDh makes an ephemeral key pair of a group (default group.generate()). */
  readonly generateDh?: (group: DhGroup) => DhKeyPair;
  /** allocateSpi returns a fresh inbound ESP SPI >= 256, unused in the SADB (default: random). */
  readonly allocateSpi?: () => number;
  /** pfs: the Child SA rekeys we start carry a KE in the IKE SA's group (default true). */
  readonly pfs?: boolean;
}

/** IkeInitiatorOptions configure the side that starts the IKE SA, towards one peer. */
export interface IkeInitiatorOptions extends IkeSessionOptions {
  readonly role: 'initiator';
  readonly peer: IkePeer;
  /** sendPeerId adds IDr (the identity we expect) to IKE_AUTH (default false). */
  readonly sendPeerId?: boolean;
  /**
   * initialContact adds N(INITIAL_CONTACT) to IKE_AUTH (default true: the first IKE SA with this
   * peer). A function is asked when IKE_AUTH is built: by then both sides may have established
   * an IKE SA the other way, and INITIAL_CONTACT would make the peer drop it (RFC 7296 §2.4:
   * it asserts that this is the only IKE SA between the two).
   */
  readonly initialContact?: boolean | (() => boolean);
}

/** IkeCookiePolicy is how a responder decides on and makes cookies (cookie.ts). */
export interface IkeCookiePolicy {
  readonly jar: IkeCookieJar;
  /** required says whether requests must carry a valid cookie now (e.g. half-open SAs over a threshold). */
  readonly required: () => boolean;
}

/** IkeResponderOptions configure the side that answers, for every peer it may meet. */
export interface IkeResponderOptions extends IkeSessionOptions {
  readonly role: 'responder';
  /** peers are matched by the IDi they present; the first match's PSK and prefixes apply. */
  readonly peers: readonly IkePeer[];
  readonly cookies?: IkeCookiePolicy;
}

/** ChildSaDirection is one ESP SA: its SPI and key material (key || 4-octet salt, src/esp/aead.ts). */
export interface ChildSaDirection {
  readonly spi: number;
  readonly keyMaterial: Uint8Array;
}

/**
 * ChildSa is a negotiated Child SA as the data path needs it: build an OutboundSa from
 * `outbound` and an InboundSa from `inbound` with `algorithm` (src/esp/sa.ts). The key
 * material is the session's only copy handed out; the session keeps none.
 */
export interface ChildSa {
  /** peer is the IkePeer name. */
  readonly peer: string;
  /** algorithm is the ESP AEAD, e.g. 'aes256gcm16'. */
  readonly algorithm: AeadName;
  /** esn is always false (No ESN is the only value offered or accepted). */
  readonly esn: boolean;
  /** inbound is what we receive: our SPI, the key the peer seals with. */
  readonly inbound: ChildSaDirection;
  /** outbound is what we send: the peer's SPI, the key we seal with. */
  readonly outbound: ChildSaDirection;
  /** localTs are the selectors on our side (TSi for the initiator, TSr for the responder), narrowed. */
  readonly localTs: readonly AddressRangeSelector[];
  /** remoteTs are the selectors on the peer's side, narrowed. */
  readonly remoteTs: readonly AddressRangeSelector[];
  /**
   * encap, when set, says the Child SA runs over UDP (RFC 3948, NAT traversal): ESP is sent from
   * local UDP port 4500 to the peer's address at remotePort, and arrives on local port 4500.
   */
  readonly encap?: { readonly remotePort: number };
}

/** IkeCloseReason says why an IKE SA closed. */
export type IkeCloseReason =
  | 'timeout'            // a request went unanswered through every retransmission
  | 'no-proposal-chosen' // IKE_SA_INIT answered NO_PROPOSAL_CHOSEN (acted on after the grace period)
  | 'peer-error'         // IKE_SA_INIT answered with another error notify (notifyType says which)
  | 'auth-failed'        // the peer's AUTH (or identity) did not verify: we refused it
  | 'peer-auth-failed'   // the peer refused ours (AUTHENTICATION_FAILED)
  | 'ike-auth-refused'   // IKE_AUTH answered with another error and no AUTH (notifyType says which)
  | 'syntax'             // IKE_AUTH, authenticated, but malformed (INVALID_SYNTAX)
  | 'half-open-timeout'  // responder: no IKE_AUTH within halfOpenTimeoutMs
  | 'deleted'            // we deleted it (close())
  | 'deleted-by-peer'    // the peer sent Delete for the IKE SA
  | 'rekeyed'            // replaced by a rekeyed IKE SA (its Child SAs moved there), then deleted
  | 'redundant';         // the new IKE SA of a simultaneous rekey that lost the nonce rule (§2.8.2), deleted

/** IkeEvent is what the driver acts on. */
export type IkeEvent =
  | {
    readonly type: 'established';
    readonly spiI: bigint;
    readonly spiR: bigint;
    /** peer is the IkePeer name. */
    readonly peer: string;
    readonly peerId: IkeIdentity;
    /** initialContact is set when the peer (as initiator) sent INITIAL_CONTACT: drop its older IKE SAs. */
    readonly initialContact: boolean;
    /** nat is the NAT detection result, undefined when the peer sent no NAT-D notifies. */
    readonly nat: NatStatus | undefined;
    readonly encryption: SkCipherName;
    readonly dhGroup: number;
  }
  | {
    readonly type: 'child-sa';
    readonly child: ChildSa;
    /** rekeyOf is the inbound SPI of the Child SA this one replaces (CREATE_CHILD_SA with REKEY_SA). */
    readonly rekeyOf?: number;
    /**
     * deferOutbound: install the inbound half only; 'child-sa-outbound' says when to send on it
     * (a rekey responder keeps sending on the old SA until the initiator deletes it, as strongSwan does).
     */
    readonly deferOutbound?: boolean;
  }
  | { readonly type: 'child-sa-outbound'; readonly inboundSpi: number }
  | {
    readonly type: 'child-sa-failed';
    /** reason: 'refused' (the peer answered notifyType), 'no-proposal', 'ts-unacceptable', 'bad-answer', 'not-requested'. */
    readonly reason: 'refused' | 'no-proposal' | 'ts-unacceptable' | 'bad-answer' | 'not-requested';
    readonly notifyType?: number;
  }
  | {
    readonly type: 'child-sa-deleted';
    readonly inboundSpi: number;
    readonly outboundSpi: number;
    /**
     * reason: 'local' (deleteChildSa answered), 'peer' (the peer's Delete), 'ike-closed',
     * 'rekeyed' (replaced by a rekey, or the redundant SA of a simultaneous rekey: packets may
     * still be in flight on it, so its inbound half may linger a moment).
     */
    readonly reason: 'local' | 'peer' | 'ike-closed' | 'rekeyed';
  }
  | {
    readonly type: 'rekey-failed';
    readonly what: 'child' | 'ike';
    /** inboundSpi names the Child SA whose rekey failed (what 'child'). */
    readonly inboundSpi?: number;
    /** reason: 'refused' (notifyType says why), 'bad-answer', 'gone' (the SA went meanwhile). */
    readonly reason: 'refused' | 'bad-answer' | 'gone';
    readonly notifyType?: number;
  }
  | {
    /** ike-rekeyed: `next` is the new IKE SA; every Child SA moved there. This session only waits for its Delete. */
    readonly type: 'ike-rekeyed';
    readonly next: IkeSession;
  }
  | {
    /**
     * ike-redundant: simultaneous IKE SA rekeys (RFC 7296 §2.8.2) made two new IKE SAs and `sa`
     * is the one that lost the nonce rule. It has no Child SAs and is never used; it only waits
     * to be deleted: by us (its Delete is already on its way, in this output) when we initiated
     * it, by the peer otherwise. Keep it (route its messages, run its timer) until it closes
     * ('closed', reason 'redundant'); one that waits for a Delete that never comes may be
     * forgotten after a while. Comes with the 'ike-rekeyed' of the surviving SA.
     */
    readonly type: 'ike-redundant';
    readonly sa: IkeSession;
  }
  | {
    /** path-changed: an authenticated message came on another port (NAT-T float or a NAT rebinding, §2.23). */
    readonly type: 'path-changed';
    readonly remotePort: number;
    readonly localPort: number;
  }
  | { readonly type: 'peer-alive' }
  | { readonly type: 'closed'; readonly reason: IkeCloseReason; readonly notifyType?: number };

/** IkeOutput is the result of every call: datagrams for the peer, in order, and events. */
export interface IkeOutput {
  readonly messages: Uint8Array[];
  readonly events: IkeEvent[];
  /** dropped names why handle() discarded the datagram (also counted in drops). */
  readonly dropped?: IkeDropReason;
  /** refused says why an API call (start, sendDpd, ...) did nothing. */
  readonly refused?: string;
}

/** IkeState is the session's state (see the module diagram). */
export type IkeState = 'idle' | 'init-sent' | 'auth-sent' | 'init-done' | 'established' | 'deleting' | 'closed';

/** IkeSessionStats counts what a session did besides drops. */
export interface IkeSessionStats {
  requestsSent: number;
  retransmits: number;
  responsesSent: number;
  /** responsesReplayed counts stored responses resent for retransmitted requests. */
  responsesReplayed: number;
  cookiesSent: number;
  cookieRounds: number;
  invalidKeSent: number;
  invalidKeRetries: number;
  noProposalSent: number;
  /** errorNotifies counts unprotected error notifies received in IKE_SA_INIT responses. */
  errorNotifies: number;
  /** livenessAnswered counts empty INFORMATIONAL requests answered. */
  livenessAnswered: number;
}
