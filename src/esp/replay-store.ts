/**
 * replay-store.ts: FileReplayStore, the inbound half of sequence-number persistence.
 *
 *   <dir>/replay-0000c0de.top     8 bytes: top high 32 bits, top low 32 bits (big-endian)
 *
 * Each inbound SA keeps its file open; save() is one pwrite(2) of 8 bytes at offset 0 each time
 * the window's top advances. The page cache outlives the process, so after kill -9 (or any
 * daemon crash) a restarted receiver resumes from the exact top and accepts no replay. flush()
 * (fdatasync, called once a second by the daemon) bounds what a power loss could lose: at most
 * that second's advance, a window through which old packets could be replayed once.
 *
 * Like seq-store.ts this is a persistence edge, the only other module in src/esp that imports
 * node:fs. One process owns a directory.
 */
import { closeSync, existsSync, fdatasync, fdatasyncSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { GatewayError } from '../errors.js';
import type { ReplayStore } from './sa.js';

const RECORD_LEN = 8;

/** FileReplayStore persists inbound replay-window tops, one small file per SPI, in `dir`. */
export class FileReplayStore implements ReplayStore {
  readonly dir: string;
  readonly #fds = new Map<number, number>();
  /** #dirty: SPIs saved since the last flush (only those need an fdatasync). */
  readonly #dirty = new Set<number>();
  readonly #buf = Buffer.alloc(RECORD_LEN);
  #flushing = false;

  constructor(dir: string) {
    this.dir = dir;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new GatewayError('ERR_SEQ_STORE', `cannot create replay state directory ${dir}`, { cause });
    }
  }

  /** pathOf is the file of one SPI. */
  pathOf(spi: number): string {
    return join(this.dir, `replay-${(spi >>> 0).toString(16).padStart(8, '0')}.top`);
  }

  #fd(spi: number): number {
    let fd = this.#fds.get(spi);
    if (fd === undefined) {
      const p = this.pathOf(spi);
      try {
        fd = openSync(p, existsSync(p) ? 'r+' : 'w+', 0o600);
      } catch (cause) {
        throw new GatewayError('ERR_SEQ_STORE', `cannot open replay state ${p}`, { cause });
      }
      this.#fds.set(spi, fd);
    }
    return fd;
  }

  /** fdOf is the open file of spi (opened on first use), for the express path's pwrite of the top. */
  fdOf(spi: number): number {
    return this.#fd(spi);
  }

  /** load returns the saved top for spi, 0n when none (or a short, half-written file). */
  load(spi: number): bigint {
    const fd = this.#fd(spi);
    const b = Buffer.alloc(RECORD_LEN);
    const n = readSync(fd, b, 0, RECORD_LEN, 0);
    if (n < RECORD_LEN) return 0n;
    return (BigInt(b.readUInt32BE(0)) << 32n) | BigInt(b.readUInt32BE(4));
  }

  /** save records the top (hi, lo) for spi: one pwrite. Throws ERR_SEQ_STORE on failure. */
  save(spi: number, hi: number, lo: number): void {
    const b = this.#buf;
    b.writeUInt32BE(hi >>> 0, 0);
    b.writeUInt32BE(lo >>> 0, 4);
    try {
      writeSync(this.#fd(spi), b, 0, RECORD_LEN, 0);
      this.#dirty.add(spi);
    } catch (cause) {
      throw new GatewayError('ERR_SEQ_STORE', `cannot save replay state for SPI 0x${spi.toString(16)}`, { cause });
    }
  }

  /**
   * flush makes the tops saved since the last flush durable (fdatasync of those files only: with
   * 10,000 SAs, syncing every file each second stalled the event loop for 0.3-0.7 s on ext4);
   * errors are returned, not thrown, and a failed file stays dirty for the next flush.
   */
  flush(): unknown[] {
    const errors: unknown[] = [];
    for (const spi of this.#dirty) {
      const fd = this.#fds.get(spi);
      if (fd === undefined) { this.#dirty.delete(spi); continue; }
      try {
        fdatasyncSync(fd);
        this.#dirty.delete(spi);
      } catch (e) {
        errors.push(e);
      }
    }
    return errors;
  }

  /**
   * flushAsync is flush with each fdatasync on libuv's thread pool: the daemon's once-a-second
   * flush must not stop the event loop (and the express paths that run in it) for the 0.5-3 ms
   * an fdatasync takes here. The SPIs are taken off the dirty set first; a save while the sync
   * runs marks its SPI dirty again, and a failed sync puts it back. One flush at a time: a call
   * while one runs resolves at once with no errors.
   */
  async flushAsync(): Promise<unknown[]> {
    if (this.#flushing) return [];
    this.#flushing = true;
    const errors: unknown[] = [];
    try {
      const jobs: Promise<void>[] = [];
      for (const spi of [...this.#dirty]) {
        const fd = this.#fds.get(spi);
        this.#dirty.delete(spi);
        if (fd === undefined) continue;
        jobs.push(new Promise<void>((resolve) => {
          fdatasync(fd, (e) => {
            if (e !== null && this.#fds.get(spi) === fd) {
              errors.push(e);
              this.#dirty.add(spi);
            }
            resolve();
          });
        }));
      }
      await Promise.all(jobs);
    } finally {
      this.#flushing = false;
    }
    return errors;
  }

  /** dirtyCount is how many SPIs wait for the next flush (tests, status). */
  get dirtyCount(): number {
    return this.#dirty.size;
  }

  /** close closes every file. Idempotent. */
  close(): void {
    for (const fd of this.#fds.values()) {
      try { closeSync(fd); } catch { /* already closed */ }
    }
    this.#fds.clear();
    this.#dirty.clear();
  }
}
