import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../errors.js';
import { InboundSa, OutboundSa } from './sa.js';
import { Sadb, parseOuterAddress } from './sadb.js';

const common = { algorithm: 'aes128gcm16', keyMaterial: new Uint8Array(20) } as const;

test('sadb: inbound by SPI with the expected outer source', () => {
  const db = new Sadb();
  const a = new InboundSa({ ...common, spi: 0x1001, peer: 'a', outerSource: parseOuterAddress('198.51.100.1') });
  const b = new InboundSa({ ...common, spi: 0x1002, peer: 'b', outerSource: parseOuterAddress('2001:db8::2') });
  db.addInbound(a);
  db.addInbound(b);
  assert.throws(() => db.addInbound(new InboundSa({ ...common, spi: 0x1001 })), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG');
  const v4 = Uint8Array.from([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 50, 0, 0, 198, 51, 100, 1, 198, 51, 100, 9]);
  const v6src = parseOuterAddress('2001:db8::2');
  const cases: [number, Uint8Array, number, number, InboundSa | string][] = [
    [0x1001, v4, 12, 4, a],
    [0x1001, v4, 16, 4, 'wrong-source'],
    [0x1002, v6src, 0, 16, b],
    [0x1002, v4, 12, 4, 'wrong-source'],
    [0x1003, v4, 12, 4, 'unknown-spi'],
  ];
  for (const [i, [spi, buf, off, len, want]] of cases.entries()) {
    assert.equal(db.lookupInbound(spi, buf, off, len), want, `case ${i + 1}`);
  }
  assert.equal(db.inbound(0x1002), b);
  assert.equal(db.removeInbound(0x1002), true);
  assert.equal(db.removeInbound(0x1002), false);
  assert.equal(db.lookupInbound(0x1002, v6src, 0, 16), 'unknown-spi');
  assert.deepEqual(db.inboundSas(), [a]);
});

test('sadb: outbound by peer, replaced on rekey, peers removed with their inbound SAs', () => {
  const db = new Sadb();
  const o1 = new OutboundSa({ ...common, spi: 0x2001 });
  const o2 = new OutboundSa({ ...common, spi: 0x2002 });
  assert.equal(db.setOutbound('a', o1), undefined);
  assert.equal(db.outbound('a'), o1);
  assert.equal(db.setOutbound('a', o2), o1);
  assert.equal(db.outbound('a'), o2);
  assert.equal(db.outbound('b'), undefined);
  db.addInbound(new InboundSa({ ...common, spi: 0x3001, peer: 'a' }));
  db.addInbound(new InboundSa({ ...common, spi: 0x3002, peer: 'a' }));
  db.addInbound(new InboundSa({ ...common, spi: 0x3003, peer: 'b' }));
  assert.equal(db.removePeer('a'), 3);
  assert.equal(db.outbound('a'), undefined);
  assert.deepEqual(db.inboundSas().map((s) => s.spi), [0x3003]);
  assert.deepEqual(db.outboundSas(), []);
  assert.equal(db.removeOutbound('a'), false);
});

test('sadb: parseOuterAddress', () => {
  const ok: [string, string][] = [
    ['192.0.2.1', 'c0000201'],
    ['2001:db8::1', '20010db8000000000000000000000001'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
  ];
  for (const [i, [text, want]] of ok.entries()) {
    assert.equal(Buffer.from(parseOuterAddress(text)).toString('hex'), want, `ok case ${i + 1}: ${text}`);
  }
  const bad = ['', '192.0.2', '192.0.2.256', '2001:db8:::1', 'example.org', ' 192.0.2.1'];
  for (const [i, text] of bad.entries()) {
    assert.throws(() => parseOuterAddress(text), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG', `bad case ${i + 1}: ${text}`);
  }
});

test('sadb: UDP encapsulation rides on the outbound SA; outbound SAs are found by SPI', () => {
  const db = new Sadb();
  const plain = new OutboundSa({ ...common, spi: 0x4001 });
  const made = new OutboundSa({ ...common, spi: 0x4002, encap: { remotePort: 4500 } });
  const later = new OutboundSa({ ...common, spi: 0x4003 });
  // [case, action, encap of the SA afterwards, outboundBySpi lookups]
  db.setOutbound('a', plain);
  assert.equal(db.outbound('a')?.encap, null, 'case 1: plain ESP by default');
  db.setOutbound('b', made);
  assert.deepEqual(db.outbound('b')?.encap, { remotePort: 4500 }, 'case 2: encap given at creation');
  assert.equal(db.setOutbound('b', later, { remotePort: 31000 }), made);
  assert.deepEqual(later.encap, { remotePort: 31000 }, 'case 3: encap given at installation');
  assert.equal(db.outboundBySpi(0x4002), undefined, 'case 4: the replaced SA is no longer found by SPI');
  assert.equal(db.outboundBySpi(0x4003), later, 'case 5: its successor is');
  assert.equal(db.outboundBySpi(0x4001), plain, 'case 6');
  assert.equal(db.removeOutbound('a'), true);
  assert.equal(db.outboundBySpi(0x4001), undefined, 'case 7: removed with its peer entry');
  assert.equal(db.removePeer('b'), 1);
  assert.equal(db.outboundBySpi(0x4003), undefined, 'case 8: removePeer removes the SPI entry too');
  for (const [i, bad] of [0, 65536, 1.5, -1].entries()) {
    assert.throws(() => db.setOutbound('c', new OutboundSa({ ...common, spi: 0x4010 + i }), { remotePort: bad }),
      (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG', `case ${9 + i}: port ${bad} refused`);
  }
  assert.throws(() => new OutboundSa({ ...common, spi: 0x4020, encap: { remotePort: 0 } }), /1\.\.65535/, 'case 13: at creation too');
});
