import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatewayError } from '../errors.js';
import { OutboundSa } from './sa.js';
import { FileSeqReserver } from './seq-store.js';

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'espgate-seq-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const isStoreError = (e: unknown): boolean => GatewayError.isGatewayError(e) && e.code === 'ERR_SEQ_STORE';

test('seq-store: reserve then load, one file per SPI, no temp files left', () => {
  withDir((dir) => {
    const r = new FileSeqReserver(join(dir, 'state'));
    assert.equal(r.load(0xc0de), 0);
    r.reserve(0xc0de, 65536);
    r.reserve(0xbeef, 7);
    r.reserve(0xc0de, 131072);
    assert.equal(r.load(0xc0de), 131072);
    assert.equal(r.load(0xbeef), 7);
    assert.equal(readFileSync(r.pathFor(0xc0de), 'utf8'), '131072\n');
    assert.deepEqual(readdirSync(join(dir, 'state')).sort(), ['spi-0000beef.seq', 'spi-0000c0de.seq']);
    assert.equal(r.writes, 3);
    r.forget(0xbeef);
    r.forget(0xbeef);
    assert.equal(r.load(0xbeef), 0);
  });
});

test('seq-store: marks up to 2^64 survive exactly or rounded up', () => {
  withDir((dir) => {
    const r = new FileSeqReserver(dir);
    const cases: [number, string, number][] = [
      [2 ** 53, '9007199254740992\n', 2 ** 53],
      [2 ** 60 + 256, '1152921504606847232\n', 2 ** 60 + 256],
      [2 ** 64, '18446744073709551615\n', 2 ** 64], // the end of the space, stored as 2^64 - 1
    ];
    for (const [i, [mark, text, back]] of cases.entries()) {
      r.reserve(0x100 + i, mark);
      assert.equal(readFileSync(r.pathFor(0x100 + i), 'utf8'), text, `case ${i + 1}`);
      assert.equal(r.load(0x100 + i), back, `case ${i + 1}`);
    }
  });
});

test('seq-store: a restarted daemon never reuses a (SPI, sequence number) pair', () => {
  withDir((dir) => {
    const used = new Set<bigint>();
    let last = 0n;
    for (let run = 0; run < 4; run++) {
      const sa = new OutboundSa({ spi: 0xc0de, algorithm: 'aes128gcm16', keyMaterial: new Uint8Array(20), reserver: new FileSeqReserver(dir), reserveBlock: 100 });
      const n = [5, 100, 250, 1][run];
      for (let i = 0; i < n; i++) {
        assert.equal(sa.takeSeq(), null);
        const s = BigInt(sa.seqLo);
        assert.ok(!used.has(s), `run ${run + 1}: ${s} reused`);
        assert.ok(s > last, `run ${run + 1}: monotonic`);
        used.add(s);
        last = s;
      }
    }
    // Skipped at most one block per restart.
    assert.ok(last <= 5n + 100n + 250n + 1n + 4n * 100n, `last ${last}`);
  });
});

test('seq-store: errors are ERR_SEQ_STORE', () => {
  withDir((dir) => {
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    assert.throws(() => new FileSeqReserver(join(file, 'sub')), isStoreError, 'case 1: directory under a file');
    const r = new FileSeqReserver(dir);
    const corrupt = ['', 'abc\n', '-1\n', '12 34\n', '18446744073709551616\n', '1e6\n', '0x10\n'];
    for (const [i, text] of corrupt.entries()) {
      writeFileSync(r.pathFor(0x300 + i), text);
      assert.throws(() => r.load(0x300 + i), isStoreError, `corrupt case ${i + 1}: ${JSON.stringify(text)}`);
    }
    for (const [i, mark] of [-1, 1.5, Number.NaN, 2 ** 65].entries()) {
      assert.throws(() => r.reserve(0x400, mark), isStoreError, `bad mark case ${i + 1}`);
    }
    // The directory vanishes under a running reserver.
    const gone = new FileSeqReserver(join(dir, 'gone'));
    rmSync(join(dir, 'gone'), { recursive: true });
    assert.throws(() => gone.reserve(0x500, 10), isStoreError, 'directory removed');
    assert.equal(existsSync(join(dir, 'gone')), false);
    // An SA with a failing store refuses to send rather than send unreserved numbers.
    const sa = new OutboundSa({ spi: 0x500, algorithm: 'aes128gcm16', keyMaterial: new Uint8Array(20), reserver: gone });
    assert.equal(sa.takeSeq(), 'seq-store');
    assert.ok(isStoreError(sa.lastReserveError));
  });
});
