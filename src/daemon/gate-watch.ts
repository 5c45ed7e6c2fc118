/**
 * daemon/gate-watch.ts: when the daemon's periodic gate check needs the listing tools.
 *
 * The full check (iptables-save and ip6tables-save with their --version, ipset list, two nft
 * listings, the routes) starts nine programs; at every 10 s in each daemon that is most of what
 * an idle host running 65 lab daemons on 2 vCPUs does (load above 100 in the hub benchmark).
 * The rules live in nf_tables (iptables-nft or our nft table), and the kernel bumps one
 * generation id on every committed change of any nf_tables table: while it has not moved since
 * a full check found the gate installed, the rules are as that check saw them, and only the
 * blackhole routes (not in nf_tables) are looked at, from /proc. A full check still runs every
 * `fullEvery` checks, and whenever the generation cannot be read or the rules are not all in
 * nf_tables (iptables-legacy): there nothing cheap says "unchanged".
 */

/** GateProbe is what GateWatch needs from the system; tests pass fakes. */
export interface GateProbe {
  /** generation: the nf_tables generation id of our network namespace, or < 0 when unknown. */
  generation(): number;
  /** inNfTables: every rule of ours lives in nf_tables (so the generation covers it). */
  inNfTables(): Promise<boolean>;
  /** full: the whole check (rules, sets, routes). */
  full(): Promise<boolean>;
  /** routes: the blackhole routes alone. */
  routes(): Promise<boolean>;
}

/** GateWatch runs the periodic gate check: full when something may have changed, else routes only. */
export class GateWatch {
  readonly #probe: GateProbe;
  readonly #fullEvery: number;
  /** The generation read just before the last full check that found the gate installed. */
  #goodGen: number | undefined;
  #sinceFull = 0;
  /** Counters for status and tests: checks done each way. */
  fullChecks = 0;
  quickChecks = 0;

  constructor(probe: GateProbe, fullEvery = 30) {
    this.#probe = probe;
    this.#fullEvery = fullEvery;
  }

  /** check returns whether the gate is installed. */
  async check(): Promise<boolean> {
    // Read before the check: a change during the full check moves it past what we keep.
    const gen = this.#probe.generation();
    if (gen >= 0 && gen === this.#goodGen && this.#sinceFull < this.#fullEvery - 1) {
      this.#sinceFull++;
      this.quickChecks++;
      const ok = await this.#probe.routes();
      if (!ok) this.#goodGen = undefined; // the next check is a full one
      return ok;
    }
    this.#sinceFull = 0;
    this.fullChecks++;
    const ok = await this.#probe.full();
    this.#goodGen = ok && gen >= 0 && (await this.#probe.inNfTables()) ? gen : undefined;
    return ok;
  }
}
