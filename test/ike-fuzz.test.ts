/**
 * ike-fuzz.test.ts: the IKEv2 message codec (src/ike) under hostile input.
 *
 * Part 1, parse: 100,000 messages made by mutating a corpus (two captured IKE_SA_INIT messages,
 * two captured encrypted INFORMATIONAL messages, a synthesized message holding every payload
 * type, an SK-sealed IKE_AUTH): bit flips, byte overwrites, truncations (with and without the
 * Length field following), extensions, Length field lies, Payload Length lies (0 included: the
 * would-be loop), Next Payload lies, critical unknown payloads, long chains of empty payloads,
 * huge counts written into payload bodies (Num Transforms, Number of TSs, Num of SPIs, SPI
 * sizes), splices of other messages, random bodies behind a valid header. Asserted:
 *   - parseIkeMessage never throws, for any input, at any offset of a view with a byteOffset;
 *   - a refusal is one of IKE_PARSE_REASONS (never an SK reason: parsing does not decrypt);
 *   - whatever parses is encodable, and re-parsing the encoding gives the same message (checked
 *     byte for byte every time and field by field on every 16th), so parse and serialize agree;
 *   - every input is accounted for (outcomes sum to the iterations).
 * Part 2, SK: 20,000 mutations of SK-sealed messages (AES-GCM 128/256, ChaCha20-Poly1305),
 * including truncations and extensions with both the IKE Length and the SK Payload Length fixed
 * up, header-only changes, IV swaps and SK bodies transplanted from other messages. Every one
 * that still parses must fail openIkeMessage ('sk-auth' for almost all): a mutated message
 * never authenticates. Unmutated messages open, as a control.
 * Part 3, sessions: 3 x 4,000 mutations of genuine CREATE_CHILD_SA messages between two
 * established sessions (a Child SA rekey request with PFS, an IKE SA rekey request, a Child SA
 * rekey response) handed to the session they are for, on a new UDP path. Asserted: handle never
 * throws and never hits 'internal-error'; every mutated message is dropped with no answer, no
 * event, and no change of state, Child SAs, timers or path; afterwards the genuine messages
 * complete their exchanges.
 * Time is bounded by the test timeout, not asserted. The PRNG is seeded (IKE_FUZZ_SEED
 * overrides); a failure names the seed, step and input in hex.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTH_METHOD, CFG_ATTR, CFG_TYPE, DH, ENCR, EXCHANGE, ID, NOTIFY, PAYLOAD, PRF, PROTOCOL, TRANSFORM, TS_TYPE } from '../src/ike/constants.js';
import { IKE_HEADER_LEN, IKE_PARSE_REASONS, isIkeParseError, parseIkeMessage, serializeIkeMessage } from '../src/ike/message.js';
import type { IkeHeader, IkeParseReason } from '../src/ike/message.js';
import { notify, spi32, transform } from '../src/ike/payloads.js';
import type { Payload } from '../src/ike/payloads.js';
import { SkKey, openIkeMessage, sealIkeMessage, skKeyMaterialLength } from '../src/ike/sk.js';
import type { SkCipherName } from '../src/ike/sk.js';
import { established, pair } from '../src/ike/sa/ike-fixtures.js';
import type { IkeSession } from '../src/ike/sa/session.js';
import { hex, toHex } from './support/vectors/load.js';

const SEED = Number(process.env.IKE_FUZZ_SEED ?? 0x1ce2f022) >>> 0;
const PARSE_ITERATIONS = 100_000;
const SK_ITERATIONS = 20_000;

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): { u32(): number; int(n: number): number; pick<T>(a: readonly T[]): T; bytes(n: number): Uint8Array } {
  let a = seed >>> 0;
  const u32 = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const int = (n: number): number => u32() % n;
  return {
    u32,
    int,
    pick: <T>(arr: readonly T[]): T => arr[int(arr.length)],
    bytes: (n: number) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = u32() & 0xff;
      return b;
    },
  };
}
type Rng = ReturnType<typeof prng>;

// Wireshark test/captures/ikev2-decrypt-aes128ccm12.pcap frames 1-4, as in src/ike/message.test.ts.
const CAPTURED = [
  'ea684d21597afd3600000000000000002120220800000000000000f82200002800000024010100030300000c0100000f800e008003000008020000050000000804000013' +
  '280000480013000032c6dffe5c43b0d5811f7eaaa84c9f78bf99b9069c2b072e0b82f46bf6f66dd45f97ef89ee285fd5df527a44776b529fc9d8a909d842a6fb59b96a0953956172' +
  '29000024b655462d6f4b66f872ccd7f0f4b4857732921339cbaa5237edba244f262b68232900001c00004004949c9db5739d75a974a49c184618369b34b7f942' +
  '2900001c000040053e721b46be07d53111425d7f80d2c6e220c6072e000000100000402f0001000200030004',
  'ea684d21597afd36d9fe2ab22dac23ac2120222000000000000000f02200002800000024010100030300000c0100000f800e008003000008020000050000000804000013' +
  '28000048001300002c66beadb6ce8535d6218cb401aa5a1eb4035b97caddaf36374a979c0446b8800506bf9d6f950952326bf3011913da93bb8e40f815376be1a06801c0a63e3b54' +
  '290000249e5d267379e681e7d38d81c710d383401de7e3607b926d90a9958adcb52831aa2900001c000040047a0785273d59203829a697550f31cbb94eb72b43' +
  '2900001c00004005c3e58a8cc9933ce0b78f2a50e8de80134e12ce310000000800004014',
  'ea684d21597afd36d9fe2ab22dac23ac2e202508000000020000003d2a000021cca0b35de5abc51c9987cbf1f5ecff210eb767cdb85179383b964d78e2',
  'ea684d21597afd36d9fe2ab22dac23ac2e202520000000020000003500000019a80c957bac15c3f8afdf315a81cc4b7c40e8660d44',
];

function header(messageId = 1, exchangeType: number = EXCHANGE.IKE_AUTH): IkeHeader {
  return { spiI: 0x0123456789abcdefn, spiR: 0xfedcba9876543210n, exchangeType, initiator: true, response: false, higherVersion: false, messageId };
}

/** EVERY_PAYLOAD holds every payload kind the codec decodes, plus two kept raw. */
const EVERY_PAYLOAD: Payload[] = [
  { kind: 'sa', proposals: [
    { num: 1, protocol: PROTOCOL.IKE, spi: new Uint8Array(0), transforms: [transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256), transform(TRANSFORM.PRF, PRF.HMAC_SHA2_256), transform(TRANSFORM.DH, DH.CURVE25519)] },
    { num: 2, protocol: PROTOCOL.ESP, spi: spi32(0xc0de0001), transforms: [{ type: TRANSFORM.ENCR, id: ENCR.AES_CBC, attributes: [{ type: 17, value: hex('0102') }, { type: 14, value: 128 }] }, transform(TRANSFORM.ESN, 1)] },
  ] },
  { kind: 'ke', group: DH.ECP_256, data: new Uint8Array(64).fill(0x42) },
  { kind: 'idi', idType: ID.FQDN, data: Uint8Array.from(Buffer.from('a.example')) },
  { kind: 'idr', idType: ID.IPV6_ADDR, data: hex('20010db8000000000000000000000001') },
  { kind: 'auth', method: AUTH_METHOD.SHARED_KEY_MIC, data: new Uint8Array(32).fill(3) },
  { kind: 'nonce', data: new Uint8Array(32).fill(5) },
  { kind: 'notify', protocol: PROTOCOL.ESP, spi: spi32(0xc0de0002), notifyType: NOTIFY.REKEY_SA, data: new Uint8Array(0) },
  notify(NOTIFY.NAT_DETECTION_SOURCE_IP, new Uint8Array(20).fill(9)),
  { kind: 'delete', protocol: PROTOCOL.ESP, spiSize: 4, spis: [spi32(1), spi32(2), spi32(3)] },
  { kind: 'vendor', data: hex('6573706761746500') },
  { kind: 'tsi', selectors: [
    { kind: 'range', tsType: TS_TYPE.IPV4_ADDR_RANGE, ipProtocol: 6, startPort: 1, endPort: 1024, startAddress: hex('c6120000'), endAddress: hex('c612ffff') },
    { kind: 'raw', tsType: 10, bytes: hex('0a000008deadbeef') },
  ] },
  { kind: 'tsr', selectors: [{ kind: 'range', tsType: TS_TYPE.IPV6_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535,
    startAddress: hex('20010db8000000000000000000000000'), endAddress: hex('20010db800000000ffffffffffffffff') }] },
  { kind: 'cp', cfgType: CFG_TYPE.REPLY, attributes: [{ type: CFG_ATTR.INTERNAL_IP4_ADDRESS, value: hex('c6120007') }, { type: CFG_ATTR.INTERNAL_IP4_DNS, value: new Uint8Array(0) }] },
  { kind: 'raw', type: PAYLOAD.CERTREQ, critical: false, body: hex('04') },
  { kind: 'raw', type: 222, critical: false, body: hex('0102030405') },
];

const IKE_AUTH_INNER: Payload[] = [
  { kind: 'idi', idType: ID.IPV4_ADDR, data: hex('c6336401') },
  { kind: 'auth', method: AUTH_METHOD.SHARED_KEY_MIC, data: new Uint8Array(32).fill(1) },
  { kind: 'sa', proposals: [{ num: 1, protocol: PROTOCOL.ESP, spi: spi32(0xc0de0003), transforms: [transform(TRANSFORM.ENCR, ENCR.AES_GCM_16, 256), transform(TRANSFORM.ESN, 0)] }] },
  { kind: 'tsi', selectors: [{ kind: 'range', tsType: TS_TYPE.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: hex('c6120000'), endAddress: hex('c612ffff') }] },
  { kind: 'tsr', selectors: [{ kind: 'range', tsType: TS_TYPE.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: hex('c6130000'), endAddress: hex('c613ffff') }] },
];

/** Where each payload of a (valid) message sits: its generic header, and the byte that announces its type. */
interface PayloadSpot { off: number; len: number; typeAt: number }

function spotsOf(m: Uint8Array): PayloadSpot[] {
  const out: PayloadSpot[] = [];
  let typeAt = 16;
  let type = m[typeAt];
  let p = IKE_HEADER_LEN;
  while (type !== 0 && p + 4 <= m.length) {
    const len = (m[p + 2] << 8) | m[p + 3];
    out.push({ off: p, len, typeAt });
    if (type === PAYLOAD.SK) break;
    typeAt = p;
    type = m[p];
    p += len;
  }
  return out;
}

interface Seed { bytes: Uint8Array; spots: PayloadSpot[] }

function corpus(): Seed[] {
  const key = new SkKey('aes256gcm16', new Uint8Array(36).fill(7));
  const msgs: Uint8Array[] = [
    ...CAPTURED.map((h) => hex(h)),
    serializeIkeMessage({ header: header(0, EXCHANGE.IKE_SA_INIT), payloads: EVERY_PAYLOAD }),
    sealIkeMessage(header(), IKE_AUTH_INNER, key, new Uint8Array(8).fill(1)),
    sealIkeMessage(header(2, EXCHANGE.INFORMATIONAL), [], key, new Uint8Array(8).fill(2), { outer: [{ kind: 'vendor', data: hex('01') }] }),
  ];
  return msgs.map((b) => {
    const r = parseIkeMessage(b, 0, b.length);
    assert.ok(!isIkeParseError(r), `corpus message does not parse: ${isIkeParseError(r) ? r.detail : ''}`);
    return { bytes: Uint8Array.from(b), spots: spotsOf(b) };
  });
}

const INTERESTING8 = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xfe, 0xff];
const INTERESTING16 = [0, 1, 3, 4, 5, 8, 0x7fff, 0x8000, 0xfffe, 0xffff];
const TYPES = [0, 1, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 53, 99, 255];

function setU16(b: Uint8Array, at: number, v: number): void {
  if (at + 1 < b.length) { b[at] = (v >>> 8) & 0xff; b[at + 1] = v & 0xff; }
}

function setLength(b: Uint8Array, v: number): void {
  b[24] = v >>> 24; b[25] = (v >>> 16) & 0xff; b[26] = (v >>> 8) & 0xff; b[27] = v & 0xff;
}

/** mutate makes one hostile message from a corpus seed; `kind` names the mutation for the stats. */
function mutate(rnd: Rng, seeds: Seed[], s: Seed): { bytes: Uint8Array; kind: string } {
  const src = s.bytes;
  const spot = s.spots.length > 0 ? rnd.pick(s.spots) : undefined;
  const b = Uint8Array.from(src);
  switch (rnd.int(13)) {
    case 0: {
      const n = 1 + rnd.int(8);
      for (let i = 0; i < n; i++) { const bit = rnd.int(b.length * 8); b[bit >> 3] ^= 1 << (bit & 7); }
      return { bytes: b, kind: 'bit-flips' };
    }
    case 1: {
      const n = 1 + rnd.int(4);
      for (let i = 0; i < n; i++) b[rnd.int(b.length)] = rnd.int(2) === 0 ? rnd.pick(INTERESTING8) : rnd.int(256);
      return { bytes: b, kind: 'byte-sets' };
    }
    case 2:
      return { bytes: b.subarray(0, rnd.int(b.length)), kind: 'truncate' };
    case 3: {
      const cut = Uint8Array.from(b.subarray(0, IKE_HEADER_LEN + rnd.int(b.length - IKE_HEADER_LEN + 1)));
      setLength(cut, cut.length);
      return { bytes: cut, kind: 'truncate-fixed' };
    }
    case 4: {
      const extra = rnd.bytes(1 + rnd.int(64));
      const out = new Uint8Array(b.length + extra.length);
      out.set(b);
      out.set(extra, b.length);
      if (rnd.int(2) === 0) setLength(out, out.length);
      return { bytes: out, kind: 'extend' };
    }
    case 5:
      setLength(b, rnd.pick([0, 1, 27, 28, b.length - 1, b.length + 1, b.length + 4096, rnd.u32(), 0xffffffff]));
      return { bytes: b, kind: 'length-lie' };
    case 6:
      if (spot === undefined) return { bytes: b, kind: 'none' };
      setU16(b, spot.off + 2, rnd.pick([0, 1, 2, 3, 4, spot.len - 1, spot.len + 1, spot.len - 4, spot.len + 4, rnd.int(0x10000), 0xffff]));
      return { bytes: b, kind: 'payload-length-lie' };
    case 7:
      if (spot === undefined) return { bytes: b, kind: 'none' };
      b[rnd.int(2) === 0 ? spot.typeAt : spot.off] = rnd.int(2) === 0 ? rnd.pick(TYPES) : rnd.int(256);
      return { bytes: b, kind: 'next-payload-lie' };
    case 8:
      if (spot === undefined) return { bytes: b, kind: 'none' };
      b[spot.off + 1] ^= 0x80;
      if (rnd.int(2) === 0) b[spot.typeAt] = 100 + rnd.int(150);
      return { bytes: b, kind: 'critical' };
    case 9: {
      // A long chain of empty Vendor ID payloads (or of zero-length ones: the would-be loop).
      const n = 1 + rnd.int(300);
      const zero = rnd.int(4) === 0;
      const out = new Uint8Array(IKE_HEADER_LEN + 4 * n);
      out.set(src.subarray(0, IKE_HEADER_LEN));
      out[16] = PAYLOAD.VENDOR_ID;
      for (let i = 0; i < n; i++) {
        const p = IKE_HEADER_LEN + 4 * i;
        out[p] = i === n - 1 && rnd.int(2) === 0 ? 0 : PAYLOAD.VENDOR_ID;
        out[p + 3] = zero ? 0 : 4;
      }
      setLength(out, out.length);
      return { bytes: out, kind: 'chain' };
    }
    case 10: {
      // Huge counts and sizes: a u8 or u16 written into the first 12 bytes of a payload body,
      // where the counts (Num Transforms, Number of TSs, Num of SPIs) and SPI sizes live.
      if (spot === undefined || spot.len <= 4) return { bytes: b, kind: 'none' };
      const at = spot.off + 4 + rnd.int(Math.min(12, spot.len - 4));
      if (rnd.int(2) === 0) b[at] = rnd.pick(INTERESTING8);
      else setU16(b, at, rnd.pick(INTERESTING16));
      return { bytes: b, kind: 'counts' };
    }
    case 11: {
      const other = rnd.pick(seeds).bytes;
      const from = rnd.int(other.length);
      const chunk = other.subarray(from, from + 1 + rnd.int(64));
      const at = rnd.int(b.length);
      const out = new Uint8Array(at + chunk.length + (rnd.int(2) === 0 ? b.length - at : 0));
      out.set(b.subarray(0, at));
      out.set(chunk, at);
      if (out.length > at + chunk.length) out.set(b.subarray(at), at + chunk.length);
      if (out.length >= IKE_HEADER_LEN && rnd.int(2) === 0) setLength(out, out.length);
      return { bytes: out, kind: 'splice' };
    }
    default: {
      const out = new Uint8Array(IKE_HEADER_LEN + rnd.int(200));
      out.set(src.subarray(0, IKE_HEADER_LEN));
      out.set(rnd.bytes(out.length - IKE_HEADER_LEN), IKE_HEADER_LEN);
      out[16] = rnd.pick(TYPES);
      setLength(out, out.length);
      return { bytes: out, kind: 'random-body' };
    }
  }
}

const PARSE_REASONS = new Set<IkeParseReason>(IKE_PARSE_REASONS.filter((r) => !['no-sk', 'sk-truncated', 'sk-auth', 'sk-bad-padding'].includes(r)));

test('ike fuzz: 100,000 mutated messages through parseIkeMessage: no throw, only known reasons, parse/serialize agree', { timeout: 300_000 }, (t) => {
  const rnd = prng(SEED);
  const seeds = corpus();
  const outcomes: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  let ok = 0;
  let deepChecked = 0;
  const count = (k: string): void => { outcomes[k] = (outcomes[k] ?? 0) + 1; };
  for (let step = 0; step < PARSE_ITERATIONS; step++) {
    const { bytes, kind } = mutate(rnd, seeds, rnd.pick(seeds));
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    // Somewhere inside a larger buffer that is itself a view with a non-zero byteOffset.
    const lead = 1 + rnd.int(16);
    const backing = new Uint8Array(lead + bytes.length + 8 + rnd.int(8)).fill(0xa5);
    const view = backing.subarray(3);
    view.set(bytes, lead);
    const where = `seed ${SEED} step ${step} (${kind}): ${toHex(bytes)}`;
    let r: ReturnType<typeof parseIkeMessage>;
    try {
      r = parseIkeMessage(view, lead, bytes.length);
    } catch (e) {
      assert.fail(`parseIkeMessage threw ${String(e)} at ${where}`);
    }
    if (isIkeParseError(r)) {
      assert.ok(PARSE_REASONS.has(r.reason), `unexpected reason ${r.reason} at ${where}`);
      count(r.reason);
      continue;
    }
    ok++;
    count('parsed');
    let wire: Buffer;
    try {
      wire = serializeIkeMessage(r);
    } catch (e) {
      assert.fail(`a parsed message does not encode (${String(e)}) at ${where}`);
    }
    const again = parseIkeMessage(wire, 0, wire.length);
    if (isIkeParseError(again)) assert.fail(`the encoding of a parsed message does not parse (${again.reason}: ${again.detail}) at ${where}`);
    assert.equal(toHex(serializeIkeMessage(again)), toHex(wire), `encoding is not a fixed point at ${where}`);
    if ((ok & 15) === 0) {
      assert.deepEqual(again.header, r.header, where);
      assert.deepEqual(again.payloads, r.payloads, where);
      deepChecked++;
    }
  }
  const total = Object.values(outcomes).reduce((a, b) => a + b, 0);
  assert.equal(total, PARSE_ITERATIONS, 'every input accounted for');
  // The corpus and mutators must exercise the codec, not just its first check.
  assert.ok(ok > PARSE_ITERATIONS / 20, `only ${ok} mutated messages parsed`);
  assert.ok(deepChecked > 100);
  for (const r of ['truncated', 'bad-length', 'truncated-chain', 'bad-payload-length', 'trailing-bytes', 'malformed', 'unsupported-critical', 'too-many-payloads', 'sk-not-last']) {
    assert.ok((outcomes[r] ?? 0) > 0, `no mutation produced '${r}'`);
  }
  t.diagnostic(`seed ${SEED}: outcomes ${JSON.stringify(outcomes)}`);
  t.diagnostic(`mutations ${JSON.stringify(kinds)}`);
});

test('ike fuzz: 20,000 mutated SK messages never authenticate', { timeout: 300_000 }, (t) => {
  const rnd = prng(SEED ^ 0x5a5a5a5a);
  const ciphers: SkCipherName[] = ['aes128gcm16', 'aes256gcm16', 'chacha20poly1305'];
  const keys = ciphers.map((c) => new SkKey(c, rnd.bytes(skKeyMaterialLength(c))));
  const inners: Payload[][] = [IKE_AUTH_INNER, [], [notify(NOTIFY.INITIAL_CONTACT)], EVERY_PAYLOAD.filter((p) => p.kind !== 'raw')];
  interface Legit { bytes: Uint8Array; key: SkKey; skOffset: number }
  const legit: Legit[] = [];
  let iv = 0;
  for (const key of keys) {
    for (const inner of inners) {
      for (const outer of [[], [{ kind: 'vendor', data: hex('0102') } as Payload]]) {
        const ivb = new Uint8Array(8);
        new DataView(ivb.buffer).setUint32(4, ++iv);
        const bytes = sealIkeMessage(header(iv), inner, key, ivb, { outer, padLength: rnd.int(4) === 0 ? rnd.int(256) : 0 });
        const m = parseIkeMessage(bytes, 0, bytes.length);
        assert.ok(!isIkeParseError(m));
        const o = openIkeMessage(m, key);
        assert.ok(!isIkeParseError(o), 'control: an unmutated message opens');
        legit.push({ bytes: Uint8Array.from(bytes), key, skOffset: m.skOffset });
      }
    }
  }
  const outcomes: Record<string, number> = {};
  const count = (k: string): void => { outcomes[k] = (outcomes[k] ?? 0) + 1; };
  for (let step = 0; step < SK_ITERATIONS; step++) {
    const l = rnd.pick(legit);
    let b = Uint8Array.from(l.bytes);
    const fixLengths = (x: Uint8Array): void => {
      setLength(x, x.length);
      setU16(x, l.skOffset + 2, Math.min(0xffff, Math.max(0, x.length - l.skOffset)));
    };
    let kind: string;
    switch (rnd.int(8)) {
      case 0: {
        const n = 1 + rnd.int(4);
        for (let i = 0; i < n; i++) { const bit = rnd.int(b.length * 8); b[bit >> 3] ^= 1 << (bit & 7); }
        kind = 'bit-flips';
        break;
      }
      case 1:
        b[rnd.int(b.length)] = rnd.int(256);
        kind = 'byte-set';
        break;
      case 2: // truncated, IKE Length and SK Payload Length following
        b = Uint8Array.from(b.subarray(0, l.skOffset + 4 + rnd.int(b.length - l.skOffset - 4)));
        fixLengths(b);
        kind = 'truncate-fixed';
        break;
      case 3: { // extended, both lengths following
        const out = new Uint8Array(b.length + 1 + rnd.int(32));
        out.set(b);
        out.set(rnd.bytes(out.length - b.length), b.length);
        b = out;
        fixLengths(b);
        kind = 'extend-fixed';
        break;
      }
      case 4: // header only: message ID, flags, exchange type, SPIs
        b[rnd.pick([3, 11, 18, 19, 20, 23])] ^= 1 + rnd.int(255);
        kind = 'header';
        break;
      case 5: { // the IV of another message
        const o = rnd.pick(legit);
        b.set(o.bytes.subarray(o.skOffset + 4, o.skOffset + 12), l.skOffset + 4);
        kind = 'iv-swap';
        break;
      }
      case 6: { // the whole SK body of another message (another key, header or length)
        const o = rnd.pick(legit);
        const body = o.bytes.subarray(o.skOffset + 4);
        const out = new Uint8Array(l.skOffset + 4 + body.length);
        out.set(b.subarray(0, l.skOffset + 4));
        out.set(body, l.skOffset + 4);
        b = out;
        fixLengths(b);
        kind = 'sk-transplant';
        break;
      }
      default: // the SK header's Next Payload (the inner type, in the AAD)
        b[l.skOffset] = rnd.pick(TYPES);
        kind = 'inner-type';
        break;
    }
    if (b.length === l.bytes.length && toHex(b) === toHex(l.bytes)) { count('unchanged'); continue; }
    const where = `seed ${SEED} SK step ${step} (${kind}): ${toHex(b)}`;
    let m: ReturnType<typeof parseIkeMessage>;
    try {
      m = parseIkeMessage(b, 0, b.length);
    } catch (e) {
      assert.fail(`parseIkeMessage threw ${String(e)} at ${where}`);
    }
    if (isIkeParseError(m)) { count(`parse:${m.reason}`); continue; }
    let r: ReturnType<typeof openIkeMessage>;
    try {
      r = openIkeMessage(m, l.key);
    } catch (e) {
      assert.fail(`openIkeMessage threw ${String(e)} at ${where}`);
    }
    if (!isIkeParseError(r)) assert.fail(`a mutated message AUTHENTICATED at ${where}`);
    assert.ok(r.reason === 'sk-auth' || r.reason === 'sk-truncated' || r.reason === 'no-sk', `unexpected ${r.reason} at ${where}`);
    count(`open:${r.reason}`);
  }
  const total = Object.values(outcomes).reduce((a, b) => a + b, 0);
  assert.equal(total, SK_ITERATIONS, 'every input accounted for');
  assert.ok((outcomes['open:sk-auth'] ?? 0) > SK_ITERATIONS / 2, `only ${outcomes['open:sk-auth'] ?? 0} mutations reached the ICV check`);
  t.diagnostic(`seed ${SEED}: ${JSON.stringify(outcomes)}`);
});

const SESSION_ITERATIONS = 4_000;

test('ike fuzz: mutated CREATE_CHILD_SA messages change no session state', { timeout: 300_000 }, (t) => {
  const rnd = prng(SEED ^ 0x0c0c0c0c);
  const link = pair({ seed: `fuzz-${SEED}` });
  established(link);
  const snapshot = (s: IkeSession): string => JSON.stringify({
    state: s.state, spiI: s.spiI.toString(16), spiR: s.spiR.toString(16), children: s.children, timeout: s.nextTimeout(link.now),
    remote: s.remote, localPort: s.localPort, drops: s.drops.counts['internal-error'], rekeyed: s.rekeyedTo !== undefined,
  });
  const mutate = (orig: Uint8Array): Uint8Array => {
    let b = Uint8Array.from(orig);
    const fix = (x: Uint8Array): void => { setLength(x, x.length); setU16(x, IKE_HEADER_LEN + 2, Math.min(0xffff, x.length - IKE_HEADER_LEN)); };
    switch (rnd.int(6)) {
      case 0: { const n = 1 + rnd.int(4); for (let i = 0; i < n; i++) { const bit = rnd.int(b.length * 8); b[bit >> 3] ^= 1 << (bit & 7); } break; }
      case 1: b[rnd.int(b.length)] = rnd.int(256); break;
      case 2: b = Uint8Array.from(b.subarray(0, rnd.int(b.length))); if (b.length >= IKE_HEADER_LEN + 4) fix(b); break;
      case 3: { const out = new Uint8Array(b.length + 1 + rnd.int(32)); out.set(b); out.set(rnd.bytes(out.length - b.length), b.length); b = out; fix(b); break; }
      case 4: b[rnd.pick([3, 11, 16, 17, 18, 19, 20, 23])] ^= 1 + rnd.int(255); break;
      default: b[IKE_HEADER_LEN] = rnd.pick(TYPES); break;
    }
    return b;
  };
  const hammer = (name: string, to: IkeSession, genuine: Uint8Array): number => {
    const before = snapshot(to);
    let changed = 0;
    for (let step = 0; step < SESSION_ITERATIONS; step++) {
      const b = mutate(genuine);
      if (b.length === genuine.length && toHex(b) === toHex(genuine)) continue;
      changed++;
      const where = `seed ${SEED} ${name} step ${step}: ${toHex(b)}`;
      let out: ReturnType<IkeSession['handle']>;
      try {
        out = to.handle(b, link.now, { remotePort: 9_999, localPort: 4500 });
      } catch (e) {
        assert.fail(`handle threw ${String(e)} at ${where}`);
      }
      assert.ok(out.dropped !== undefined && out.dropped !== 'internal-error', `not dropped (${String(out.dropped)}) at ${where}`);
      assert.equal(out.messages.length + out.events.length, 0, `answered or acted on at ${where}`);
    }
    assert.equal(snapshot(to), before, `${name}: no state change`);
    return changed;
  };
  // 1. A Child SA rekey request (PFS) to the responder.
  const rekey = link.initiator.rekeyChildSa(link.now);
  const req = rekey.messages[0];
  assert.ok(req !== undefined);
  let n = hammer('child-request', link.responder, req);
  const answer = link.responder.handle(req, link.now);
  assert.equal(answer.events[0]?.type, 'child-sa', 'the genuine request still works');
  // 2. Its response to the initiator, whose request is outstanding.
  const resp = answer.messages[0];
  assert.ok(resp !== undefined);
  n += hammer('child-response', link.initiator, resp);
  link.take('initiator', link.initiator.handle(resp, link.now));
  link.run();
  assert.deepEqual([link.initiator.children.length, link.responder.children.length], [1, 1], 'the rekey completed');
  // 3. An IKE SA rekey request to the responder.
  const ike = link.initiator.rekeyIkeSa(link.now).messages[0];
  assert.ok(ike !== undefined);
  n += hammer('ike-request', link.responder, ike);
  link.take('responder', link.responder.handle(ike, link.now));
  link.run();
  assert.equal(link.eventsOf('initiator', 'ike-rekeyed').length, 1, 'the genuine IKE SA rekey completed');
  assert.equal(link.initiator.drops.counts['internal-error'] + link.responder.drops.counts['internal-error'], 0);
  t.diagnostic(`seed ${SEED}: ${n} mutated CREATE_CHILD_SA messages dropped without effect`);
});
