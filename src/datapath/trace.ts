/**
 * datapath/trace.ts: `espgate trace`: follow packets of one host or peer through the data path's
 * stages, with the drop reason where one stops.
 *
 *   out: read from the TUN (inner src > fake dst) -> unmapped to the real dst -> sealed
 *        (SPI, sequence) -> sent to the peer's endpoint          | or dropped: reason
 *   in:  ESP from the endpoint (SPI, sequence) -> opened (inner src > dst) -> policy ok ->
 *        reinjected with the fake source                          | or dropped: reason
 *
 * A trace is bounded: at most `count` events and `seconds` of time; events wait in a ring of
 * TRACE_RING entries for the CLI to read them (a slow reader loses the oldest, and is told).
 * Without a trace the engine pays one undefined check per packet.
 *
 * The filter matches when the host address is the inner source or destination (real or fake
 * form) or the outer endpoint, or when the packet belongs to the named peer (its SA or its
 * endpoint). ESP that fails before decryption has no inner addresses: it matches by endpoint.
 */
import type { DropReason } from '../drops.js';
import { formatIpAddress } from '../packet/address.js';

/** TRACE_RING bounds the events kept for the reader. */
export const TRACE_RING = 1000;
/** TRACE_MAX_COUNT and TRACE_MAX_SECONDS bound one trace. */
export const TRACE_MAX_COUNT = 10_000;
export const TRACE_MAX_SECONDS = 600;

/** TraceFilter says which packets to follow. */
export interface TraceFilter {
  /** host: an address (inner, either form, or an outer endpoint). */
  readonly host?: string;
  /** peer: a peer name. */
  readonly peer?: string;
}

/** TraceEvent is one packet's way through the data path. */
export interface TraceEvent {
  readonly n: number;
  readonly ms: number;
  readonly dir: 'in' | 'out';
  readonly peer: string | null;
  /** stages passed, in order, as human-readable steps. */
  readonly stages: readonly string[];
  /** outcome: 'ok' or the drop reason. */
  readonly outcome: DropReason | 'ok';
}

/** Tracer collects events for one trace. */
export class Tracer {
  readonly filter: TraceFilter;
  readonly #count: number;
  readonly #until: number;
  readonly #start: number;
  readonly #ring: TraceEvent[] = [];
  #n = 0;
  #lost = 0;

  constructor(filter: TraceFilter, count: number, seconds: number, now = Date.now()) {
    this.filter = filter;
    this.#count = Math.min(Math.max(1, Math.floor(count)), TRACE_MAX_COUNT);
    this.#start = now;
    this.#until = now + Math.min(Math.max(0.1, seconds), TRACE_MAX_SECONDS) * 1000;
  }

  /** done: the count or the time is used up. */
  done(now = Date.now()): boolean {
    return this.#n >= this.#count || now >= this.#until;
  }

  /** matches tells whether a packet with these addresses / peer is followed. */
  matches(addresses: readonly string[], peer: string | null): boolean {
    const f = this.filter;
    if (f.peer !== undefined && peer === f.peer) return true;
    if (f.host !== undefined && addresses.includes(f.host)) return true;
    return f.peer === undefined && f.host === undefined;
  }

  /** record adds one event (if the trace is not done). */
  record(dir: 'in' | 'out', peer: string | null, stages: readonly string[], outcome: DropReason | 'ok', now = Date.now()): void {
    if (this.done(now)) return;
    this.#n++;
    this.#ring.push({ n: this.#n, ms: now - this.#start, dir, peer, stages, outcome });
    if (this.#ring.length > TRACE_RING) {
      this.#ring.shift();
      this.#lost++;
    }
  }

  /** read returns events numbered above `since`, whether the trace is done, and how many the ring lost. */
  read(since: number, now = Date.now()): { events: TraceEvent[]; done: boolean; lost: number } {
    return { events: this.#ring.filter((e) => e.n > since), done: this.done(now), lost: this.#lost };
  }
}

/** addr formats the address at buf[off] for family 4 or 6 (trace only; allocates). */
export function addr(buf: Uint8Array, off: number, family: 4 | 6): string {
  return formatIpAddress(buf, off, family);
}

/** formatTraceEvent renders one event for a terminal. */
export function formatTraceEvent(e: TraceEvent): string {
  const head = `#${e.n} +${(e.ms / 1000).toFixed(3)}s ${e.dir === 'out' ? 'out' : 'in '} ${e.peer ?? '-'}`;
  const tail = e.outcome === 'ok' ? 'ok' : `DROPPED: ${e.outcome}`;
  return `${head}: ${[...e.stages, tail].join(' -> ')}`;
}
