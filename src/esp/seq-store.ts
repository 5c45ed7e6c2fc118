/**
 * seq-store.ts: FileSeqReserver, the durable SeqReserver (sa.ts). It is the only module in
 * src/esp (with replay-store.ts, its inbound twin) that touches the file system: the persistence edge.
 *
 * One small file per SPI in a state directory, holding the highest reserved sequence number
 * in decimal:
 *
 *   <dir>/spi-0000c0de.seq      "131072\n"
 *
 * A reservation is durable before reserve() returns: write a temp file, fsync it, rename it
 * over the old one, fsync the directory. A crash at any point leaves either the old or the
 * new mark, never a torn one. After a restart an OutboundSa asks load() and starts above the
 * stored mark, so no (SPI, sequence number) pair, and so no (key, IV) pair, is used twice.
 * The cost is at most one reservation block of skipped numbers per restart.
 *
 * Calls are synchronous (the data path calls reserve() once per block, 2^16 packets by
 * default, and a few milliseconds there are acceptable); one process owns a directory.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { GatewayError } from '../errors.js';
import type { SeqReserver } from './sa.js';
import { u64FromBigInt, u64ToNumberCeil } from './u64.js';

/** FileSeqReserver persists reservation marks, one file per SPI, in `dir`. */
export class FileSeqReserver implements SeqReserver {
  /** dir is the state directory (created 0700 if missing). */
  readonly dir: string;
  /** writes counts durable reservations made (for tests and status). */
  writes = 0;

  constructor(dir: string) {
    this.dir = dir;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new GatewayError('ERR_SEQ_STORE', `cannot create sequence state directory ${dir}`, { cause });
    }
  }

  /** pathFor is the file holding spi's mark. */
  pathFor(spi: number): string {
    return join(this.dir, `spi-${(spi >>> 0).toString(16).padStart(8, '0')}.seq`);
  }

  /**
   * load returns the stored mark for spi, 0 if there is no file. A file that exists but does
   * not hold a decimal number in 0..2^64-1 throws ERR_SEQ_STORE: guessing could reuse IVs.
   */
  load(spi: number): number {
    let text: string;
    try {
      text = readFileSync(this.pathFor(spi), 'utf8');
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw new GatewayError('ERR_SEQ_STORE', `cannot read ${this.pathFor(spi)}`, { cause });
    }
    const m = /^([0-9]{1,20})\n?$/.exec(text);
    const v = m === null ? -1n : BigInt(m[1]);
    if (v < 0n || v >= 1n << 64n) {
      throw new GatewayError('ERR_SEQ_STORE', `corrupt sequence reservation in ${this.pathFor(spi)}: ${JSON.stringify(text.slice(0, 40))}`);
    }
    const [hi, lo] = u64FromBigInt(v);
    return u64ToNumberCeil(hi, lo);
  }

  /** reserve durably records upTo as spi's mark (temp file, fsync, rename, fsync dir). Throws ERR_SEQ_STORE. */
  reserve(spi: number, upTo: number): void {
    if (!Number.isInteger(upTo) || upTo < 0 || upTo > 2 ** 64) {
      throw new GatewayError('ERR_SEQ_STORE', `reservation mark out of range: ${upTo}`);
    }
    const path = this.pathFor(spi);
    const tmp = `${path}.tmp-${process.pid}`;
    // 2^64 (a rounded-up 2^64 - 1) is stored as 2^64 - 1, the true end of the space.
    const text = `${upTo >= 2 ** 64 ? (1n << 64n) - 1n : BigInt(upTo)}\n`;
    try {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      const dfd = openSync(this.dir, 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch (cause) {
      throw new GatewayError('ERR_SEQ_STORE', `cannot persist sequence reservation to ${path}`, { cause });
    }
    this.writes++;
  }

  /** forget deletes spi's file, once the SA is gone for good (its key will never be used again). */
  forget(spi: number): void {
    try {
      unlinkSync(this.pathFor(spi));
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new GatewayError('ERR_SEQ_STORE', `cannot remove ${this.pathFor(spi)}`, { cause });
      }
    }
  }
}
