import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildIpPacket, udpDatagram } from './build.js';
import { checkIpPacket, ipDstOffset, ipPacketLength, ipSrcOffset, ipVersion } from './ip.js';
import type { IpCheck } from './ip.js';
import { PROTO_UDP } from './offsets.js';
import type { IpFamily } from './offsets.js';
import { embedAt } from './testing.js';

const v4 = buildIpPacket({ src: '198.18.0.1', dst: '198.18.0.2', protocol: PROTO_UDP, payload: udpDatagram(1, 2, Buffer.alloc(10)) });
const v6 = buildIpPacket({ src: '2001:db8:1::1', dst: '2001:db8:1::2', protocol: PROTO_UDP, payload: udpDatagram(1, 2, Buffer.alloc(10)) });

const cases: [string, Uint8Array, number, IpFamily | undefined, IpCheck][] = [
  ['v4 ok', v4, v4.length, undefined, 'ok'],
  ['v6 ok', v6, v6.length, undefined, 'ok'],
  ['v4 ok with trailing bytes', Buffer.concat([v4, Buffer.alloc(4)]), v4.length + 4, 4, 'ok'],
  ['v4 where v6 was announced', v4, v4.length, 6, 'bad-version'],
  ['v6 where v4 was announced', v6, v6.length, 4, 'bad-version'],
  ['version 5', Uint8Array.from([0x50, ...new Array<number>(39).fill(0)]), 40, undefined, 'bad-version'],
  ['empty', v4, 0, undefined, 'truncated'],
  ['v4 cut', v4, v4.length - 1, undefined, 'truncated'],
  ['v6 cut', v6, v6.length - 1, undefined, 'truncated'],
];
for (const [i, [name, pkt, len, family, want]] of cases.entries()) {
  test(`ip ${i + 1}. ${name} -> ${want}`, () => {
    const b = embedAt(pkt, 3);
    assert.equal(checkIpPacket(b, 0, len, family), want);
  });
}

test('ip 10. declared length, version and address offsets', () => {
  const b = embedAt(Buffer.concat([Buffer.alloc(2), v6, Buffer.alloc(5)]), 1);
  assert.equal(ipVersion(b, 2), 6);
  assert.equal(ipVersion(b, b.length), 0);
  assert.equal(ipPacketLength(b, 2), v6.length);
  assert.equal(ipPacketLength(v4, 0), v4.length);
  assert.deepEqual([ipSrcOffset(4), ipDstOffset(4), ipSrcOffset(6), ipDstOffset(6)], [12, 16, 8, 24]);
});
