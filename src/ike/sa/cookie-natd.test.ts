import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { COOKIE_LEN, IkeCookieJar } from './cookie.js';
import { seededRandom } from './ike-link.js';
import { natDetectionHash, natStatus } from './natd.js';

test('cookie: binds Ni, the address and SPIi; survives one rotation, not two', () => {
  const jar = new IkeCookieJar(seededRandom('cookie'));
  const ni = new Uint8Array(32).fill(7);
  const ip = Uint8Array.of(192, 0, 2, 1);
  const c = jar.make(ni, ip, 0x1122334455667788n);
  assert.equal(c.length, COOKIE_LEN);
  const flipped = Uint8Array.from(c);
  flipped[20] ^= 1;
  const cases: [string, Uint8Array, Uint8Array, Uint8Array, bigint, boolean][] = [
    ['1 as made', c, ni, ip, 0x1122334455667788n, true],
    ['2 other nonce', c, new Uint8Array(32).fill(8), ip, 0x1122334455667788n, false],
    ['3 other address', c, ni, Uint8Array.of(192, 0, 2, 2), 0x1122334455667788n, false],
    ['4 other SPI', c, ni, ip, 0x1122334455667789n, false],
    ['5 a bit flipped', flipped, ni, ip, 0x1122334455667788n, false],
    ['6 truncated', c.subarray(0, 32), ni, ip, 0x1122334455667788n, false],
    ['7 empty', new Uint8Array(0), ni, ip, 0x1122334455667788n, false],
  ];
  for (const [name, cookie, n, a, spi, want] of cases) assert.equal(jar.verify(cookie, n, a, spi), want, name);
  jar.rotate();
  assert.equal(jar.verify(c, ni, ip, 0x1122334455667788n), true, 'valid after one rotation');
  assert.notDeepEqual(jar.make(ni, ip, 0x1122334455667788n), c, 'a new secret makes another cookie');
  jar.rotate();
  assert.equal(jar.verify(c, ni, ip, 0x1122334455667788n), false, 'invalid after two rotations');
});

test('natd: SHA-1(SPIi | SPIr | IP | port), and what a mismatch means (RFC 7296 §2.23)', () => {
  // Hand-laid input: SPIi, SPIr (zero in the request), 192.0.2.1, port 500.
  const input = Buffer.from('0102030405060708' + '0000000000000000' + 'c0000201' + '01f4', 'hex');
  const want = createHash('sha1').update(input).digest('hex');
  assert.equal(Buffer.from(natDetectionHash(0x0102030405060708n, 0n, Uint8Array.of(192, 0, 2, 1), 500)).toString('hex'), want);
  const v6 = Buffer.from('0102030405060708' + '1112131415161718' + '20010db8000000000000000000000001' + '1194', 'hex');
  assert.equal(Buffer.from(natDetectionHash(0x0102030405060708n, 0x1112131415161718n, Buffer.from('20010db8000000000000000000000001', 'hex'), 4500)).toString('hex'),
    createHash('sha1').update(v6).digest('hex'));

  const me = { address: Uint8Array.of(192, 0, 2, 2), port: 500 };
  const peer = { address: Uint8Array.of(192, 0, 2, 1), port: 500 };
  const h = (e: { address: Uint8Array; port: number }): Uint8Array => natDetectionHash(1n, 0n, e.address, e.port);
  const nat = { address: Uint8Array.of(203, 0, 113, 9), port: 4500 };
  const cases: [string, Uint8Array[], Uint8Array[], { local: boolean; remote: boolean } | undefined][] = [
    ['1 no NAT', [h(peer)], [h(me)], { local: false, remote: false }],
    ['2 the peer is behind a NAT', [h(nat)], [h(me)], { local: false, remote: true }],
    ['3 we are behind a NAT', [h(peer)], [h(nat)], { local: true, remote: false }],
    ['4 one of several source hashes matches', [h(nat), h(peer)], [h(me)], { local: false, remote: false }],
    ['5 no NAT-D at all', [], [], undefined],
  ];
  for (const [name, src, dst, want] of cases) assert.deepEqual(natStatus(1n, 0n, src, dst, peer, me), want, name);
});
