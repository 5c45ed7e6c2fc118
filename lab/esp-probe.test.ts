// esp-probe.test.ts: the lab's independent ESP sealer (no root needed).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ESP_HEADER_LEN,
  GCM_ICV_LEN,
  GCM_IV_LEN,
  NEXT_HEADER_IPV4,
  NEXT_HEADER_IPV6,
  buildEchoRequest,
  openEspProbe,
  sealEspProbe,
  sealEspProbeWith,
} from './esp-probe.js';

const KEY128 = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
const KEY256 = Uint8Array.from({ length: 36 }, (_, i) => 0xa0 + i);
const IV = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

/** sum16 is the ones'-complement sum; a buffer with a correct checksum sums to 0xffff. */
function sum16(buf: Uint8Array): number {
  let s = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) s += ((buf[i] ?? 0) << 8) | (buf[i + 1] ?? 0);
  if (buf.length % 2 === 1) s += (buf[buf.length - 1] ?? 0) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

describe('buildEchoRequest', () => {
  it('case 1: IPv4 header and ICMP checksums verify; fields in place', () => {
    const p = buildEchoRequest({ src: '198.18.0.1', dst: '198.18.0.2', id: 0x1234, seq: 7, payload: Uint8Array.from([9, 9, 9]) });
    assert.equal(p.length, 20 + 8 + 3);
    assert.equal(p[0], 0x45);
    assert.equal(p[9], 1);
    assert.deepEqual([...p.subarray(12, 20)], [198, 18, 0, 1, 198, 18, 0, 2]);
    assert.equal(sum16(p.subarray(0, 20)), 0xffff);
    assert.equal(sum16(p.subarray(20)), 0xffff);
    assert.equal(p[20], 8);
    assert.equal((p[24] ?? 0) * 256 + (p[25] ?? 0), 0x1234);
  });

  it('case 2: IPv6 ICMPv6 checksum verifies over the pseudo-header', () => {
    const p = buildEchoRequest({ src: '2001:db8:0:1::1', dst: '2001:db8:0:1::2', id: 1, seq: 1, payload: Uint8Array.from([1, 2, 3, 4, 5]) });
    assert.equal(p[0] >> 4, 6);
    assert.equal(p[6], 58);
    const icmp = p.subarray(40);
    const pseudo = new Uint8Array(40 + icmp.length);
    pseudo.set(p.subarray(8, 40), 0);
    new DataView(pseudo.buffer).setUint32(32, icmp.length);
    pseudo[39] = 58;
    pseudo.set(icmp, 40);
    assert.equal(sum16(pseudo), 0xffff);
    assert.equal(icmp[0], 128);
  });

  it('case 3: mixed families are refused', () => {
    assert.throws(() => buildEchoRequest({ src: '198.18.0.1', dst: '2001:db8::1', id: 1, seq: 1, payload: new Uint8Array(0) }));
  });
});

describe('sealEspProbe / openEspProbe', () => {
  // Inner lengths 28..35 cover every padding length 0..3 twice.
  const cases = Array.from({ length: 8 }, (_, i) => ({ n: i + 1, payload: i, v6: i % 2 === 1, key: i < 4 ? KEY128 : KEY256 }));
  for (const c of cases) {
    it(`case ${c.n}: round trip, ${c.v6 ? 'IPv6' : 'IPv4'} inner, ${c.payload}-byte payload, AES-${c.key.length === 20 ? 128 : 256}`, () => {
      const inner = c.v6
        ? buildEchoRequest({ src: '2001:db8:0:1::1', dst: '2001:db8:0:1::2', id: 1, seq: c.n, payload: new Uint8Array(c.payload).fill(0x55) })
        : buildEchoRequest({ src: '198.18.0.1', dst: '198.18.0.2', id: 1, seq: c.n, payload: new Uint8Array(c.payload).fill(0x55) });
      const sa = { spi: 0x1002, keymat: c.key };
      const esp = sealEspProbe(sa, 0x01020304 + c.n, IV, inner);
      const padLen = (4 - ((inner.length + 2) % 4)) % 4;
      assert.equal(esp.length, ESP_HEADER_LEN + GCM_IV_LEN + inner.length + padLen + 2 + GCM_ICV_LEN);
      assert.equal((esp.length - ESP_HEADER_LEN - GCM_IV_LEN - GCM_ICV_LEN) % 4, 0);
      assert.deepEqual([...esp.subarray(0, 4)], [0, 0, 0x10, 0x02]);
      assert.deepEqual([...esp.subarray(ESP_HEADER_LEN, ESP_HEADER_LEN + GCM_IV_LEN)], [...IV]);
      // Open from a subarray with a non-zero byteOffset.
      const backing = new Uint8Array(esp.length + 5);
      backing.set(esp, 3);
      const opened = openEspProbe(sa, backing.subarray(3, 3 + esp.length));
      assert.equal(opened.spi, 0x1002);
      assert.equal(opened.seq, 0x01020304 + c.n);
      assert.equal(opened.nextHeader, c.v6 ? NEXT_HEADER_IPV6 : NEXT_HEADER_IPV4);
      assert.deepEqual([...opened.inner], [...inner]);
    });
  }

  it('case 9: a flipped ciphertext bit, a changed SPI or sequence number fails authentication', () => {
    const inner = buildEchoRequest({ src: '198.18.0.1', dst: '198.18.0.2', id: 1, seq: 1, payload: new Uint8Array(4) });
    const sa = { spi: 0x2001, keymat: KEY128 };
    const esp = sealEspProbe(sa, 1, IV, inner);
    for (const at of [ESP_HEADER_LEN + GCM_IV_LEN + 3, 2, 7, esp.length - 1]) {
      const bad = Uint8Array.from(esp);
      bad[at] = (bad[at] ?? 0) ^ 0x01;
      assert.throws(() => openEspProbe(sa, bad), `byte ${at}`);
    }
    assert.throws(() => openEspProbe({ spi: 0x2001, keymat: KEY256 }, esp));
  });

  it('case 10: bad key material and bad IV lengths are refused', () => {
    const inner = buildEchoRequest({ src: '198.18.0.1', dst: '198.18.0.2', id: 1, seq: 1, payload: new Uint8Array(0) });
    assert.throws(() => sealEspProbe({ spi: 0x100, keymat: new Uint8Array(16) }, 1, IV, inner));
    assert.throws(() => sealEspProbe({ spi: 0x100, keymat: KEY128 }, 1, new Uint8Array(12), inner));
  });
});

describe('sealEspProbeWith: tweaks for hostile-input tests', () => {
  const sa = { spi: 0x3002, keymat: KEY128 };
  // 28-byte inner: 28 + 2 = 30, so the natural padding is 2 bytes (1, 2).
  const inner = buildEchoRequest({ src: '198.18.0.3', dst: '198.18.0.2', id: 1, seq: 1, payload: new Uint8Array(0) });
  const plainEsp = sealEspProbe(sa, 5, IV, inner);

  it('case 1: no tweaks: byte for byte what sealEspProbe seals; natural padding 1, 2', () => {
    assert.deepEqual([...sealEspProbeWith(sa, 5, IV, inner, {})], [...plainEsp]);
    assert.deepEqual([...openEspProbe(sa, plainEsp).padding], [1, 2]);
  });

  it('case 2: nextHeader replaces the trailer\'s next header; the ICV still verifies', () => {
    const opened = openEspProbe(sa, sealEspProbeWith(sa, 5, IV, inner, { nextHeader: 17 }));
    assert.equal(opened.nextHeader, 17);
    assert.deepEqual([...opened.inner], [...inner]);
  });

  it('case 3: padding replaces the padding bytes (same length: same size on the wire)', () => {
    const esp = sealEspProbeWith(sa, 5, IV, inner, { padding: Uint8Array.from([0, 0]) });
    assert.equal(esp.length, plainEsp.length);
    const opened = openEspProbe(sa, esp);
    assert.deepEqual([...opened.padding], [0, 0]);
    assert.deepEqual([...opened.inner], [...inner]);
  });

  it('case 4: padding of another length changes the size (6 bytes: still 4-aligned)', () => {
    const esp = sealEspProbeWith(sa, 5, IV, inner, { padding: Uint8Array.from([1, 2, 3, 4, 5, 6]) });
    assert.equal(esp.length, plainEsp.length + 4);
    assert.equal((esp.length - ESP_HEADER_LEN - GCM_IV_LEN - GCM_ICV_LEN) % 4, 0);
    assert.deepEqual([...openEspProbe(sa, esp).padding], [1, 2, 3, 4, 5, 6]);
  });

  it('case 5: padLength larger than the payload: authenticated, and the opener refuses the padding', () => {
    const esp = sealEspProbeWith(sa, 5, IV, inner, { padLength: 200 });
    assert.equal(esp.length, plainEsp.length);
    assert.throws(() => openEspProbe(sa, esp), /bad padding/);
  });

  it('case 6: flipIcvBit changes only the last byte, and authentication fails', () => {
    const esp = sealEspProbeWith(sa, 5, IV, inner, { flipIcvBit: true });
    assert.deepEqual([...esp.subarray(0, esp.length - 1)], [...plainEsp.subarray(0, plainEsp.length - 1)]);
    assert.equal(esp[esp.length - 1], (plainEsp[plainEsp.length - 1] ?? 0) ^ 1);
    assert.throws(() => openEspProbe(sa, esp));
  });

  it('case 7: cutBytes truncates the end; out-of-range cuts are refused', () => {
    const esp = sealEspProbeWith(sa, 5, IV, inner, { cutBytes: 3 });
    assert.deepEqual([...esp], [...plainEsp.subarray(0, plainEsp.length - 3)]);
    assert.equal(sealEspProbeWith(sa, 5, IV, inner, { cutBytes: plainEsp.length }).length, 0);
    assert.throws(() => sealEspProbeWith(sa, 5, IV, inner, { cutBytes: plainEsp.length + 1 }));
    assert.throws(() => sealEspProbeWith(sa, 5, IV, inner, { cutBytes: -1 }));
  });

  it('case 8: a non-IP inner payload gets next header 4 (the sealer only looks at the version nibble)', () => {
    const junk = Uint8Array.from({ length: 30 }, (_, i) => (i === 0 ? 0x00 : i));
    const opened = openEspProbe(sa, sealEspProbeWith(sa, 9, IV, junk, {}));
    assert.equal(opened.nextHeader, NEXT_HEADER_IPV4);
    assert.deepEqual([...opened.inner], [...junk]);
  });
});
