/**
 * ike-link.ts: the in-memory twin of an IKE path, for tests (like wireguard-go's
 * conn/bindtest): two IkeSessions wired back to back, a clock the test moves, a deterministic
 * random source, and a hook on every datagram in flight (drop, mutate, duplicate, replay).
 *
 *   initiator --(messages)--> [ in flight ] --(deliver)--> responder
 *       ^                                                      |
 *       +---------------------(messages)-----------------------+
 *
 * After an IKE SA rekey ('ike-rekeyed', and 'ike-redundant' for the loser of simultaneous
 * rekeys) a side has several sessions; a datagram goes to the one whose SPIi it carries (the
 * newest that is not redundant if none matches). Nothing here touches the network or real time.
 */
import { createHash } from 'node:crypto';
import type { IkeEvent, IkeOutput, IkeSession } from './session.js';

/** seededRandom returns a deterministic byte source: SHA-256(seed | counter) blocks. */
export function seededRandom(seed: string): (n: number) => Uint8Array {
  let counter = 0;
  return (n: number): Uint8Array => {
    const out = new Uint8Array(n);
    for (let off = 0; off < n; off += 32) {
      const block = createHash('sha256').update(seed).update(String(counter++)).digest();
      out.set(block.subarray(0, Math.min(32, n - off)), off);
    }
    return out;
  };
}

/** Side names the two ends of a link. */
export type Side = 'initiator' | 'responder';

/** Datagram is one message in flight, with its sequence number on the link (from 0). */
export interface Datagram {
  readonly seq: number;
  readonly to: Side;
  readonly bytes: Uint8Array;
}

/**
 * Tamper decides the fate of a datagram about to be delivered: the bytes to deliver instead
 * (the same array to pass it through), or undefined to lose it.
 */
export type Tamper = (d: Datagram) => Uint8Array | undefined;

/** IkeLink runs two sessions against each other. */
export class IkeLink {
  /** now is the link's clock in ms; tests move it with advance(). */
  now = 1_000_000;
  /** events collects every event each side emitted, in order. */
  readonly events: Record<Side, IkeEvent[]> = { initiator: [], responder: [] };
  /** sent records every datagram each side emitted (what went on the wire from it). */
  readonly sent: Record<Side, Uint8Array[]> = { initiator: [], responder: [] };
  /** inFlight holds datagrams not yet delivered. */
  inFlight: Datagram[] = [];
  /** sessions lists each side's sessions, oldest first: the original, then each rekeyed (or redundant) IKE SA. */
  readonly sessions: Record<Side, IkeSession[]>;
  #seq = 0;

  constructor(readonly initiator: IkeSession, readonly responder: IkeSession) {
    this.sessions = { initiator: [initiator], responder: [responder] };
  }

  /** session returns the original session at one side. */
  session(side: Side): IkeSession {
    return side === 'initiator' ? this.initiator : this.responder;
  }

  /** current returns a side's newest session that is not redundant (the rekeyed IKE SA after a rekey). */
  current(side: Side): IkeSession {
    const l = this.sessions[side];
    for (let i = l.length - 1; i >= 0; i--) {
      const s = l[i];
      if (s !== undefined && !s.redundant) return s;
    }
    return this.session(side);
  }

  /** sessionFor picks the session of `side` that a datagram is for, by its SPIi. */
  sessionFor(side: Side, bytes: Uint8Array): IkeSession {
    if (bytes.length >= 8) {
      const spiI = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
      const s = this.sessions[side].find((x) => x.spiI === spiI);
      if (s !== undefined) return s;
    }
    return this.current(side);
  }

  /** take records an output of side `from`: its messages go in flight to the other side. */
  take(from: Side, out: IkeOutput): IkeOutput {
    const to: Side = from === 'initiator' ? 'responder' : 'initiator';
    this.events[from].push(...out.events);
    for (const e of out.events) {
      if (e.type === 'ike-rekeyed') this.sessions[from].push(e.next);
      if (e.type === 'ike-redundant') this.sessions[from].push(e.sa);
    }
    for (const m of out.messages) {
      this.sent[from].push(m);
      this.inFlight.push({ seq: this.#seq++, to, bytes: m });
    }
    return out;
  }

  /** start starts the initiator. */
  start(): IkeOutput {
    return this.take('initiator', this.initiator.start(this.now));
  }

  /** deliver hands one datagram to its side (through tamper) and records the answer. */
  deliver(d: Datagram, tamper?: Tamper): IkeOutput | undefined {
    const bytes = tamper === undefined ? d.bytes : tamper(d);
    if (bytes === undefined) return undefined;
    return this.take(d.to, this.sessionFor(d.to, bytes).handle(bytes, this.now));
  }

  /**
   * run delivers datagrams in order until none is in flight or maxSteps were delivered, and
   * returns how many were delivered. Bounded: a loop between the sides ends at maxSteps.
   */
  run(tamper?: Tamper, maxSteps = 64): number {
    let n = 0;
    while (this.inFlight.length > 0 && n < maxSteps) {
      const d = this.inFlight.shift();
      if (d === undefined) break;
      this.deliver(d, tamper);
      n++;
    }
    return n;
  }

  /** advance moves the clock by ms and fires both sessions' timers that are due. */
  advance(ms: number): void {
    this.now += ms;
    for (const side of ['initiator', 'responder'] as const) {
      for (const s of [...this.sessions[side]]) {
        const t = s.nextTimeout(this.now);
        if (t === 0) this.take(side, s.onTimeout(this.now));
      }
    }
  }

  /** eventsOf returns one side's events of one type. */
  eventsOf<T extends IkeEvent['type']>(side: Side, type: T): Extract<IkeEvent, { type: T }>[] {
    return this.events[side].filter((e): e is Extract<IkeEvent, { type: T }> => e.type === type);
  }

  /** lastChildren returns the newest Child SA each side reported ('child-sa' events), undefined where none. */
  lastChildren(): { nci: Extract<IkeEvent, { type: 'child-sa' }>['child'] | undefined; ncr: Extract<IkeEvent, { type: 'child-sa' }>['child'] | undefined } {
    const ni = this.eventsOf('initiator', 'child-sa');
    const nr = this.eventsOf('responder', 'child-sa');
    return { nci: ni[ni.length - 1]?.child, ncr: nr[nr.length - 1]?.child };
  }
}
