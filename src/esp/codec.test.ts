import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DropReason } from '../drops.js';
import { DROP_REASONS } from '../drops.js';
import { createAead } from './aead.js';
import type { AeadName } from './aead.js';
import {
  ESP_HEADER_LEN, ESP_MAX_OVERHEAD, ESP_MIN_LEN, ESP_OFFSET_PAYLOAD, ESP_TRAILER_LEN, GCM_ICV_LEN, GCM_IV_LEN,
  NEXT_HEADER_DUMMY, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, espPadLength, espSealedLength, openEsp, openEspPayload,
  parseEspHeader, sealEsp, sealEspPayload,
} from './codec.js';
import type { EspOpened } from './codec.js';
import { FixedIvGenerator } from './nonce.js';
import { InboundSa, OutboundSa } from './sa.js';
import { hex, loadDraftVectors, offsetView, toHex } from '../../test/support/vectors/load.js';

const KEY20 = hex('4c80cdefbb5d10da906ac73c3613a634 2e443b68');
const KEY36 = hex('6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961 7475726e');
const SPI = 0xc0de0102;

function keyFor(alg: AeadName): Uint8Array {
  return alg === 'aes128gcm16' ? KEY20 : alg === 'aes256gcm16' ? KEY36 : hex('00112233445566778899aabbccddeeff0011223344556677 01020304');
}

function pair(alg: AeadName = 'aes128gcm16', esn = false, extra: { initialSeq?: bigint; window?: number } = {}): { out: OutboundSa; inn: InboundSa } {
  const keyMaterial = keyFor(alg);
  return {
    out: new OutboundSa({ spi: SPI, algorithm: alg, keyMaterial, esn, ...(extra.initialSeq === undefined ? {} : { initialSeq: extra.initialSeq }) }),
    inn: new InboundSa({
      spi: SPI, algorithm: alg, keyMaterial, esn, replayWindow: extra.window ?? 1024,
      ...(extra.initialSeq === undefined || extra.initialSeq <= 1n ? {} : { replayInitialTop: extra.initialSeq - 1n }),
    }),
  };
}

/** innerPacket builds a recognisable IPv4 (20+ bytes) or IPv6 (40+ bytes) packet of len bytes. */
function innerPacket(version: 4 | 6, len: number, salt = 0): Uint8Array {
  const p = new Uint8Array(len);
  for (let i = 0; i < len; i++) p[i] = (i * 31 + salt * 7 + 11) & 0xff;
  if (version === 4) {
    p[0] = 0x45;
    p[2] = len >> 8;
    p[3] = len & 0xff;
  } else {
    p[0] = 0x60;
    p[4] = (len - 40) >> 8;
    p[5] = (len - 40) & 0xff;
  }
  return p;
}

function seal(out: OutboundSa, inner: Uint8Array): Uint8Array {
  const buf = new Uint8Array(inner.length + ESP_MAX_OVERHEAD + 11);
  const n = sealEsp(out, inner, 0, inner.length, buf, 3);
  assert.equal(typeof n, 'number', `seal failed: ${String(n)}`);
  return buf.subarray(3, 3 + (n as number));
}

function opened(r: EspOpened | DropReason | 'dummy'): EspOpened {
  if (typeof r === 'string') assert.fail(`expected an opened packet, got ${r}`);
  return r;
}

function dropsOf(sa: OutboundSa | InboundSa): Partial<Record<DropReason, number>> {
  const o: Partial<Record<DropReason, number>> = {};
  for (const r of DROP_REASONS) if (sa.drops.counts[r] !== 0) o[r] = sa.drops.counts[r];
  return o;
}

test('codec: constants', () => {
  assert.equal(ESP_HEADER_LEN, 8);
  assert.equal(GCM_IV_LEN, 8);
  assert.equal(GCM_ICV_LEN, 16);
  assert.equal(ESP_TRAILER_LEN, 2);
  assert.equal(NEXT_HEADER_IPV4, 4);
  assert.equal(NEXT_HEADER_IPV6, 41);
  assert.equal(NEXT_HEADER_DUMMY, 59);
  assert.equal(ESP_MIN_LEN, 36);
  assert.equal(ESP_MAX_OVERHEAD, 37);
  // RFC 4303 §2.4: payload + pad + 2 is a multiple of 4; pad is the minimum.
  const pads: [number, number][] = [[0, 2], [1, 1], [2, 0], [3, 3], [4, 2], [20, 2], [21, 1], [22, 0], [23, 3], [1400, 2]];
  for (const [i, [len, pad]] of pads.entries()) assert.equal(espPadLength(len), pad, `pad case ${i + 1}: ${len}`);
});

test('codec: draft-mcgrew-gcm-test-01 packets, sealed byte for byte with the IV injected', () => {
  let n = 0;
  for (const [i, v] of loadDraftVectors().entries()) {
    const label = `case ${i + 1} (${v.name})`;
    const spi = parseInt(v.spi, 16);
    if (spi < 256) continue; // case 4 uses SPI 0, which no SA may have (RFC 4303 §2.1); it is checked at the AEAD level
    const pt = hex(v.plaintext);
    const nh = pt[pt.length - 1];
    const payloadLen = pt.length - ESP_TRAILER_LEN - pt[pt.length - 2];
    const sa = new OutboundSa({
      spi, algorithm: v.algorithm, keyMaterial: hex(v.key + v.salt), esn: v.esn,
      initialSeq: BigInt('0x' + v.seq), ivGenerator: new FixedIvGenerator([hex(v.iv)]),
    });
    const out = new Uint8Array(hex(v.packet).length + 10);
    const w = sealEspPayload(sa, nh, offsetView(pt.subarray(0, payloadLen)), 0, payloadLen, out, 4);
    assert.equal(w, hex(v.packet).length, label);
    assert.equal(toHex(out.subarray(4, 4 + w)), v.packet, label);
    assert.equal(sa.stats.packets, 1, label);
    n++;
  }
  assert.equal(n, 15);
});

test('codec: draft-mcgrew-gcm-test-01 packets opened (an independent sender), window below and above', () => {
  let n = 0;
  for (const [i, v] of loadDraftVectors().entries()) {
    const spi = parseInt(v.spi, 16);
    if (spi < 256) continue;
    const seq = BigInt('0x' + v.seq);
    const pt = hex(v.plaintext);
    const payloadLen = pt.length - ESP_TRAILER_LEN - pt[pt.length - 2];
    // Window positions: fresh / just below the packet / 100 above it (the packet is then a late arrival).
    const tops: (bigint | undefined)[] = [undefined, seq > 1n ? seq - 1n : undefined, seq + 100n < (1n << 64n) && (v.esn || seq + 100n < 1n << 32n) ? seq + 100n : undefined];
    for (const [j, top] of tops.entries()) {
      if (j > 0 && top === undefined) continue;
      if (j === 0 && v.esn && seq > 0xffffffffn) continue; // a fresh ESN window cannot place a high-half packet
      const label = `case ${i + 1}.${j + 1} (${v.name}, top ${String(top)})`;
      const mk = (): InboundSa => new InboundSa({
        spi, algorithm: v.algorithm, keyMaterial: hex(v.key + v.salt), esn: v.esn, replayWindow: 1024,
        ...(top === undefined ? {} : { replayInitialTop: top }),
      });
      const sa = mk();
      const buf = offsetView(hex(v.packet));
      const r = opened(openEspPayload(sa, buf, 0, buf.length));
      assert.equal(r.nextHeader, pt[pt.length - 1], label);
      assert.equal(r.innerOff, 16, label);
      assert.equal(toHex(buf.subarray(r.innerOff, r.innerOff + r.innerLen)), toHex(pt.subarray(0, payloadLen)), label);
      // The same packet again is a replay.
      assert.equal(openEspPayload(sa, offsetView(hex(v.packet)), 0, buf.length), 'replay', label);
      // Through the tunnel-mode policy: authenticated, but next header 1 is not IP-in-IP.
      const sa2 = mk();
      const buf2 = offsetView(hex(v.packet));
      assert.equal(openEsp(sa2, buf2, 0, buf2.length), 'bad-next-header', label);
      assert.deepEqual(dropsOf(sa2), { 'bad-next-header': 1 }, label);
      n++;
    }
  }
  assert.ok(n >= 30, `only ${n} openings`);
});

test('codec: round trips, IPv4 and IPv6 inner packets 20..1500 bytes, all key sizes, ESN on and off', () => {
  const algs: AeadName[] = ['aes128gcm16', 'aes192gcm16', 'aes256gcm16'];
  let count = 0;
  for (const alg of algs) {
    for (const esn of [false, true]) {
      // Start ESN SAs just below 2^32 so the run crosses the low-half wrap.
      const { out, inn } = pair(alg, esn, esn ? { initialSeq: 0xffffff80n } : {});
      const step = alg === 'aes128gcm16' && !esn ? 1 : 13;
      for (let len = 20; len <= 1500; len += step) {
        for (const version of [4, 6] as const) {
          if (version === 6 && len < 40) continue;
          const label = `${alg} esn=${esn} v${version} len ${len}`;
          const inner = innerPacket(version, len, count);
          const wire = seal(out, offsetView(inner));
          assert.equal(wire.length, espSealedLength(out, len), label);
          assert.equal((wire.length - ESP_HEADER_LEN - GCM_IV_LEN - GCM_ICV_LEN) % 4, 0, label);
          // Header: SPI, low sequence number, IV = 64-bit sequence number.
          assert.equal(toHex(wire.subarray(0, 4)), SPI.toString(16), label);
          assert.equal(toHex(wire.subarray(4, 8)), toHex(wire.subarray(12, 16)), label);
          const buf = offsetView(wire);
          const r = opened(openEsp(inn, buf, 0, buf.length));
          assert.equal(r.nextHeader, version === 4 ? 4 : 41, label);
          assert.equal(r.innerLen, len, label);
          assert.equal(toHex(buf.subarray(r.innerOff, r.innerOff + r.innerLen)), toHex(inner), label);
          count++;
        }
      }
      assert.equal(inn.stats.packets, out.stats.packets);
      assert.equal(inn.stats.bytes, out.stats.bytes);
      assert.equal(inn.drops.total() + out.drops.total(), 0);
      if (esn) assert.equal(out.seqHi, 1, `${alg}: the ESN run crossed 2^32`);
    }
  }
  assert.ok(count > 1700, `${count} round trips`);
});

test('codec: seal in place (inner read at ESP_OFFSET_PAYLOAD) and from overlapping placements', () => {
  const inner = innerPacket(4, 84);
  const placements = [ESP_OFFSET_PAYLOAD, 0, 5, 40, 16 + 3];
  for (const [i, at] of placements.entries()) {
    const { out, inn } = pair();
    const buf = new Uint8Array(300);
    buf.set(inner, 10 + at);
    const n = sealEsp(out, buf, 10 + at, inner.length, buf, 10);
    if (typeof n === 'string') assert.fail(`case ${i + 1}: ${n}`);
    assert.equal(n, espSealedLength(out, inner.length), `case ${i + 1}`);
    const wire = Uint8Array.from(buf.subarray(10, 10 + n));
    const r = opened(openEsp(inn, wire, 0, wire.length));
    assert.equal(toHex(wire.subarray(r.innerOff, r.innerOff + r.innerLen)), toHex(inner), `case ${i + 1}: inner at +${at}`);
  }
});

test('codec: parseEspHeader', () => {
  const pkt = hex('c0de0102 00000007 0000000000000007');
  const cases: [Uint8Array, number, number, string][] = [
    [pkt, 0, 16, 'c0de0102/7'],
    [offsetView(pkt), 0, 8, 'c0de0102/7'],
    [pkt, 0, 7, 'truncated'],
    [pkt, 10, 8, 'truncated'],
    [pkt, -1, 8, 'truncated'],
    [pkt, 0, -8, 'truncated'],
  ];
  for (const [i, [buf, off, len, want]] of cases.entries()) {
    const r = parseEspHeader(buf, off, len);
    assert.equal(typeof r === 'string' ? r : `${r.spi.toString(16)}/${r.seqLow}`, want, `case ${i + 1}`);
  }
});

/** craft encrypts an arbitrary ESP plaintext (payload || pad || padLen || nh) for sa's key with an independent AEAD instance. */
function craft(alg: AeadName, spi: number, seqHi: number, seqLo: number, esn: boolean, plaintext: Uint8Array): Uint8Array {
  const aead = createAead(alg, keyFor(alg));
  const pkt = new Uint8Array(16 + plaintext.length + 16);
  const dv = new DataView(pkt.buffer);
  dv.setUint32(0, spi);
  dv.setUint32(4, seqLo);
  dv.setUint32(8, seqHi);
  dv.setUint32(12, seqLo);
  const aad = new Uint8Array(esn ? 12 : 8);
  const adv = new DataView(aad.buffer);
  adv.setUint32(0, spi);
  if (esn) { adv.setUint32(4, seqHi); adv.setUint32(8, seqLo); } else adv.setUint32(4, seqLo);
  aead.seal(pkt, 8, aad, plaintext, 0, plaintext.length, pkt, 16);
  return pkt;
}

test('codec: every inbound rejection from a crafted packet, each returned and counted once', () => {
  const ip = innerPacket(4, 24);
  const trailer = (payload: Uint8Array, pad: number[], nh: number): Uint8Array => Uint8Array.from([...payload, ...pad, pad.length, nh]);
  type Case = [name: string, want: DropReason | 'dummy', run: (inn: InboundSa, out: OutboundSa) => EspOpened | DropReason | 'dummy'];
  const cases: Case[] = [
    ['shorter than the minimum', 'truncated', (inn) => openEsp(inn, new Uint8Array(35), 0, 35)],
    ['header only', 'truncated', (inn) => openEsp(inn, new Uint8Array(8), 0, 8)],
    ['misaligned ciphertext', 'truncated', (inn, out) => { const w = seal(out, ip); return openEsp(inn, Uint8Array.from([...w, 0]), 0, w.length + 1); }],
    ['length past the buffer', 'truncated', (inn, out) => { const w = seal(out, ip); return openEsp(inn, w, 0, w.length + 4); }],
    ['negative offset', 'truncated', (inn, out) => { const w = seal(out, ip); return openEsp(inn, w, -4, w.length); }],
    ['another SPI', 'unknown-spi', (inn, out) => { const w = Uint8Array.from(seal(out, ip)); w[3] ^= 1; return openEsp(inn, w, 0, w.length); }],
    ['replayed packet', 'replay', (inn, out) => { const w = seal(out, ip); openEsp(inn, Uint8Array.from(w), 0, w.length); return openEsp(inn, Uint8Array.from(w), 0, w.length); }],
    ['sequence number 0', 'too-old', (inn, out) => { const w = Uint8Array.from(seal(out, ip)); w.fill(0, 4, 8); return openEsp(inn, w, 0, w.length); }],
    ['left of the window', 'too-old', (inn, out) => {
      const first = seal(out, ip).slice();
      for (let i = 0; i < 1024; i++) { const w = seal(out, ip); openEsp(inn, Uint8Array.from(w), 0, w.length); }
      return openEsp(inn, first, 0, first.length);
    }],
    ['flipped ciphertext bit', 'auth', (inn, out) => { const w = Uint8Array.from(seal(out, ip)); w[20] ^= 0x10; return openEsp(inn, w, 0, w.length); }],
    ['flipped ICV bit', 'auth', (inn, out) => { const w = Uint8Array.from(seal(out, ip)); w[w.length - 1] ^= 0x80; return openEsp(inn, w, 0, w.length); }],
    ['flipped IV bit', 'auth', (inn, out) => { const w = Uint8Array.from(seal(out, ip)); w[9] ^= 1; return openEsp(inn, w, 0, w.length); }],
    ['sequence number changed (AAD)', 'auth', (inn, out) => { const w = Uint8Array.from(seal(out, ip)); w[7] ^= 2; return openEsp(inn, w, 0, w.length); }],
    ['pad bytes not 1,2,3', 'bad-padding', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, trailer(ip.subarray(0, 23), [1, 3, 3], 4)), 0, 60)],
    ['pad bytes zero', 'bad-padding', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, trailer(ip.subarray(0, 20), [0, 0], 4)), 0, 56)],
    ['pad length beyond the payload', 'bad-padding', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, Uint8Array.from([1, 0xff, 4, 4])), 0, 36)],
    ['pad length = payload + 1', 'bad-padding', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, Uint8Array.from([1, 2, 3, 4])), 0, 36)],
    ['next header 6 (transport TCP)', 'bad-next-header', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, trailer(ip, [1, 2], 6)), 0, 60)],
    ['next header 0', 'bad-next-header', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, trailer(ip, [1, 2], 0)), 0, 60)],
    ['next header 255', 'bad-next-header', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, trailer(ip, [1, 2], 255)), 0, 60)],
    ['dummy packet (next header 59)', 'dummy', (inn) => openEsp(inn, craft('aes128gcm16', SPI, 0, 1, false, trailer(new Uint8Array(0), [1, 2], 59)), 0, 36)],
  ];
  for (const [i, [name, want, run]] of cases.entries()) {
    const { out, inn } = pair();
    const before = inn.drops.total();
    const got = run(inn, out);
    assert.equal(got, want, `case ${i + 1}: ${name}`);
    if (want === 'dummy') {
      assert.equal(inn.drops.total(), before, `case ${i + 1}: a dummy is not a drop`);
      assert.equal(inn.stats.dummyPackets, 1, `case ${i + 1}`);
    } else {
      assert.equal(inn.drops.counts[want], 1, `case ${i + 1}: ${name} counted`);
      assert.equal(inn.drops.total(), 1, `case ${i + 1}: nothing else counted`);
    }
  }
});

test('codec: authenticated padding and next-header failures and dummies still move the window; forgeries do not', () => {
  const { out, inn } = pair();
  const ip = innerPacket(4, 24);
  // 1: forged packet with a high sequence number: 'auth', and the window does not move.
  assert.equal(openEsp(inn, craft('aes128gcm16', SPI, 0, 5000, false, Uint8Array.from([...ip, 1, 2, 2, 4])).map((b, i) => (i === 20 ? b ^ 1 : b)), 0, 60), 'auth');
  assert.equal(inn.replay.topLo, 0);
  // 2: bad padding at seq 7 is authenticated: seq 7 is used up.
  assert.equal(openEsp(inn, craft('aes128gcm16', SPI, 0, 7, false, Uint8Array.from([...ip, 2, 1, 2, 4])), 0, 60), 'bad-padding');
  assert.equal(openEsp(inn, craft('aes128gcm16', SPI, 0, 7, false, Uint8Array.from([...ip, 1, 2, 2, 4])), 0, 60), 'replay');
  // 3: dummy at seq 8, then the same dummy again.
  const dummy = craft('aes128gcm16', SPI, 0, 8, false, Uint8Array.from([1, 2, 2, 59]));
  assert.equal(openEsp(inn, Uint8Array.from(dummy), 0, 36), 'dummy');
  assert.equal(openEsp(inn, Uint8Array.from(dummy), 0, 36), 'replay');
  // 4: a replayed packet with a broken ICV is reported as a replay: the window is checked first.
  const w = Uint8Array.from(seal(out, ip));
  assert.ok(typeof openEsp(inn, Uint8Array.from(w), 0, w.length) === 'object');
  w[w.length - 1] ^= 1;
  assert.equal(openEsp(inn, w, 0, w.length), 'replay');
  assert.deepEqual(dropsOf(inn), { auth: 1, 'bad-padding': 1, replay: 3 });
});

test('codec: every outbound rejection, each returned and counted once', () => {
  const ip = innerPacket(4, 60);
  type Case = [name: string, want: DropReason, mk: () => OutboundSa, run: (sa: OutboundSa) => number | DropReason];
  const plain = (): OutboundSa => pair().out;
  const buf = new Uint8Array(2048);
  const cases: Case[] = [
    ['version 5 inner', 'bad-inner', plain, (sa) => sealEsp(sa, Uint8Array.from([0x55, ...ip.subarray(1)]), 0, 60, buf, 0)],
    ['empty inner', 'bad-inner', plain, (sa) => sealEsp(sa, ip, 0, 0, buf, 0)],
    ['inner span past its buffer', 'bad-inner', plain, (sa) => sealEsp(sa, ip, 10, 60, buf, 0)],
    ['output too small', 'too-big', plain, (sa) => sealEsp(sa, ip, 0, 60, new Uint8Array(60 + 35), 0)],
    ['output offset too far', 'too-big', plain, (sa) => sealEsp(sa, ip, 0, 60, buf, 2048 - 95)],
    ['32-bit space used up', 'seq-exhausted', () => pair('aes128gcm16', false, { initialSeq: 0xffffffffn }).out, (sa) => {
      assert.equal(typeof sealEsp(sa, ip, 0, 60, buf, 0), 'number'); // 2^32 - 1 is the last number sent
      assert.equal(sa.seqLo, 0xffffffff);
      return sealEsp(sa, ip, 0, 60, buf, 0);
    }],
    ['64-bit space used up', 'seq-exhausted', () => pair('aes256gcm16', true, { initialSeq: (1n << 64n) - 1n }).out, (sa) => {
      assert.equal(typeof sealEsp(sa, ip, 0, 60, buf, 0), 'number');
      assert.equal(toHex(buf.subarray(8, 16)), 'ffffffffffffffff'); // IV = 2^64 - 1
      return sealEsp(sa, ip, 0, 60, buf, 0);
    }],
    ['hard packet lifetime', 'no-sa', () => new OutboundSa({ spi: SPI, algorithm: 'aes128gcm16', keyMaterial: KEY20, lifetime: { hardPackets: 1 } }), (sa) => {
      assert.equal(typeof sealEsp(sa, ip, 0, 60, buf, 0), 'number');
      return sealEsp(sa, ip, 0, 60, buf, 0);
    }],
  ];
  for (const [i, [name, want, mk, run]] of cases.entries()) {
    const sa = mk();
    assert.equal(run(sa), want, `case ${i + 1}: ${name}`);
    assert.equal(sa.drops.counts[want], 1, `case ${i + 1}: counted`);
    assert.equal(sa.drops.total(), 1, `case ${i + 1}: counted once`);
  }
});

test('codec: exhaustion is sticky and a refused packet consumes no sequence number', () => {
  const { out } = pair('aes128gcm16', false, { initialSeq: 0xfffffffen });
  const ip = innerPacket(6, 80);
  const small = new Uint8Array(50);
  assert.equal(sealEsp(out, ip, 0, 80, small, 0), 'too-big');
  const big = new Uint8Array(200);
  assert.equal(sealEsp(out, ip, 0, 80, big, 0), espSealedLength(out, 80));
  assert.equal(espSealedLength(out, 80), 8 + 8 + 80 + espPadLength(80) + 2 + 16);
  assert.equal(out.seqLo, 0xfffffffe);
  assert.equal(typeof sealEsp(out, ip, 0, 80, big, 0), 'number');
  for (let i = 0; i < 3; i++) assert.equal(sealEsp(out, ip, 0, 80, big, 0), 'seq-exhausted');
  assert.equal(out.drops.counts['seq-exhausted'], 3);
  assert.equal(out.stats.packets, 2);
});

test('codec: ESN SA with a hard-expired inbound SA is unknown', () => {
  const { out, inn } = pair('aes128gcm16', true);
  const w = seal(out, innerPacket(4, 40));
  inn.hardExpired = true;
  assert.equal(openEsp(inn, Uint8Array.from(w), 0, w.length), 'unknown-spi');
});
