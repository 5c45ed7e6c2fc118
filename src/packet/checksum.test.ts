import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readU16, writeU16 } from './bytes.js';
import {
  checksumAdjust, checksumReplaceAddress, checksumReplaceWord, checksumUpdateField, fold16, internetChecksum,
  onesSum, pseudoHeaderSum,
} from './checksum.js';
import { embedAt, Rng } from './testing.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

/** naiveChecksum is an independent reference: sum words in a loop, fold at each step. */
function naiveChecksum(b: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i < b.length; i += 2) {
    s += (b[i] << 8) + (i + 1 < b.length ? b[i + 1] : 0);
    if (s > 0xffff) s = (s & 0xffff) + 1;
  }
  return ~s & 0xffff;
}

const sums: { name: string; data: string; sum: number; csum: number }[] = [
  { name: 'RFC 1071 §3 example 00 01 f2 03 f4 f5 f6 f7', data: '0001f203f4f5f6f7', sum: 0xddf2, csum: 0x220d },
  { name: 'IPv4 header with its checksum b861 sums to 0xffff', data: '450000730000400040 11b861c0a80001c0a800c7', sum: 0xffff, csum: 0x0000 },
  { name: 'IPv4 header with checksum field zero', data: '4500007300004000401100 00c0a80001c0a800c7', sum: 0x479e, csum: 0xb861 },
  { name: 'odd length pads a zero byte', data: '01', sum: 0x0100, csum: 0xfeff },
  { name: 'odd length 3', data: 'ffff01', sum: 0x0100, csum: 0xfeff },
  { name: 'empty', data: '', sum: 0, csum: 0xffff },
  { name: 'all zero', data: '00000000', sum: 0, csum: 0xffff },
  { name: 'end-around carry ffff + 0001', data: 'ffff0001', sum: 0x0001, csum: 0xfffe },
];

for (const [i, c] of sums.entries()) {
  test(`checksum ${i + 1}. ${c.name}`, () => {
    const b = embedAt(hex(c.data), 5);
    assert.equal(onesSum(b, 0, b.length), c.sum);
    assert.equal(internetChecksum(b, 0, b.length), c.csum);
    assert.equal(internetChecksum(b, 0, b.length), naiveChecksum(hex(c.data)));
  });
}

test('checksum 9. offsets inside a view are relative to the view, with an initial sum', () => {
  const data = hex('0001f203f4f5f6f7');
  const b = embedAt(data, 3);
  // Sum the second half starting from the folded sum of the first half.
  assert.equal(onesSum(b, 4, 4, onesSum(b, 0, 4)), 0xddf2);
  assert.equal(internetChecksum(b, 2, 6), naiveChecksum(data.subarray(2)));
});

test('checksum 10. fold16 folds repeatedly', () => {
  assert.equal(fold16(0x1ffff), 0x0001);
  assert.equal(fold16(0x2ddf0), 0xddf2);
  assert.equal(fold16(0xffff), 0xffff);
  assert.equal(fold16(0xffff * 0xffff), 0xffff);
  assert.equal(fold16(2 ** 40 + 5), fold16(fold16(2 ** 40) + 5));
});

// RFC 1624 §4: the other header words sum to 0xCD7A and a field m = 0x5555 becomes m' = 0x3285.
test('checksum 11. RFC 1624 §4: HC = 0xDD2F by full computation', () => {
  const b = embedAt(hex('cd7a 5555 0000'), 4);
  assert.equal(internetChecksum(b, 0, 6), 0xdd2f);
});

test('checksum 12. RFC 1624 §4: eqn. 3 gives 0x0000, as a full recompute does', () => {
  assert.equal(checksumAdjust(0xdd2f, 0x5555, 0x3285), 0x0000);
  const b = embedAt(hex('cd7a 3285 0000'), 4);
  assert.equal(internetChecksum(b, 0, 6), 0x0000);
  // In place: the field at offset 4 holds HC, the word at 2 changes.
  const p = embedAt(hex('cd7a 5555 dd2f'), 2);
  checksumReplaceWord(p, 2, 0x3285, 4);
  assert.equal(readU16(p, 4), 0x0000);
  assert.equal(onesSum(p, 0, 6), 0xffff, 'the updated header verifies');
});

test('checksum 13. RFC 1624 §4: RFC 1141 eqn. 2 would give 0xFFFF (-0), which eqn. 3 avoids', () => {
  const eqn2 = fold16(0xdd2f + 0x5555 + (~0x3285 & 0xffff)); // HC' = HC + m + ~m'
  assert.equal(eqn2, 0xffff);
  assert.notEqual(checksumAdjust(0xdd2f, 0x5555, 0x3285), eqn2);
});

test('checksum 14. incremental word replacement == full recompute over random buffers', () => {
  const rng = new Rng(1624);
  for (let n = 0; n < 2000; n++) {
    const len = 4 + 2 * rng.int(100);
    const b = embedAt(rng.bytes(len), 1 + rng.int(5));
    const csumAt = 2 * rng.int(len / 2);
    writeU16(b, csumAt, 0);
    writeU16(b, csumAt, internetChecksum(b, 0, len));
    let wordAt = 2 * rng.int(len / 2);
    if (wordAt === csumAt) wordAt = (wordAt + 2) % len;
    checksumReplaceWord(b, wordAt, rng.int(0x10000), csumAt);
    const got = readU16(b, csumAt);
    writeU16(b, csumAt, 0);
    assert.equal(got, internetChecksum(b, 0, len), `case ${n}`);
  }
});

test('checksum 15. incremental 4- and 16-byte address replacement == full recompute', () => {
  const rng = new Rng(4291);
  for (let n = 0; n < 2000; n++) {
    const addrLen = n % 2 === 0 ? 4 : 16;
    const len = 40 + 2 * rng.int(60);
    const b = embedAt(rng.bytes(len), 3);
    const csumAt = 0;
    const addrAt = 2 + 2 * rng.int((len - addrLen - 2) / 2);
    writeU16(b, csumAt, 0);
    writeU16(b, csumAt, internetChecksum(b, 0, len));
    const fresh = embedAt(rng.bytes(addrLen + 2), 1);
    checksumReplaceAddress(b, addrAt, fresh, 1, addrLen, csumAt);
    assert.deepEqual(b.subarray(addrAt, addrAt + addrLen), fresh.subarray(1, 1 + addrLen));
    const got = readU16(b, csumAt);
    writeU16(b, csumAt, 0);
    assert.equal(got, internetChecksum(b, 0, len), `case ${n}`);
  }
});

test('checksum 16. checksumUpdateField with folded sums of an address == full recompute', () => {
  const b = embedAt(hex('0000 c612 0007 aaaa bbbb'), 6);
  writeU16(b, 0, internetChecksum(b, 0, 10));
  const oldSum = onesSum(b, 2, 4);
  b[3] = 0x13; // 198.18.0.7 -> 198.19.0.7
  checksumUpdateField(b, 0, oldSum, onesSum(b, 2, 4));
  const got = readU16(b, 0);
  writeU16(b, 0, 0);
  assert.equal(got, internetChecksum(b, 0, 10));
});

test('checksum 17. pseudoHeaderSum equals the sum of a built pseudo-header (IPv4 and IPv6)', () => {
  const rng = new Rng(793);
  for (const addrLen of [4, 16]) {
    for (const l4Len of [8, 1480, 65535, 70000]) {
      const hdr = embedAt(rng.bytes(2 * addrLen + 8), 9);
      const srcAt = 4;
      const dstAt = 4 + addrLen;
      const pseudo = new Uint8Array(2 * addrLen + (addrLen === 4 ? 4 : 8));
      pseudo.set(hdr.subarray(srcAt, srcAt + 2 * addrLen), 0);
      if (addrLen === 4) {
        pseudo[2 * addrLen + 1] = 17;
        writeU16(pseudo, 2 * addrLen + 2, l4Len & 0xffff);
      } else {
        writeU16(pseudo, 2 * addrLen, l4Len >>> 16);
        writeU16(pseudo, 2 * addrLen + 2, l4Len & 0xffff);
        pseudo[2 * addrLen + 7] = 17;
      }
      if (addrLen === 4 && l4Len > 0xffff) continue; // IPv4 lengths are 16 bits
      assert.equal(pseudoHeaderSum(hdr, srcAt, dstAt, addrLen, 17, l4Len), onesSum(pseudo, 0, pseudo.length), `addrLen ${addrLen} l4Len ${l4Len}`);
    }
  }
});
