import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../../errors.js';
import { ID } from '../constants.js';
import { decodeIdentity, encodeIdentity, formatIdentity, formatWireIdentity, identityMatches, parseIdentity } from './identity.js';
import type { IkeIdentity } from './identity.js';

test('identity: text -> identity -> wire -> identity -> text round trips', () => {
  const cases: [string, IkeIdentity, number, string][] = [
    ['192.0.2.1', { kind: 'ipv4', address: '192.0.2.1' }, ID.IPV4_ADDR, 'c0000201'],
    ['2001:db8::1', { kind: 'ipv6', address: '2001:db8::1' }, ID.IPV6_ADDR, '20010db8000000000000000000000001'],
    ['@gw.example', { kind: 'fqdn', name: 'gw.example' }, ID.FQDN, Buffer.from('gw.example').toString('hex')],
    ['gw-b.example', { kind: 'fqdn', name: 'gw-b.example' }, ID.FQDN, Buffer.from('gw-b.example').toString('hex')],
    ['@#0a0b0c', { kind: 'key-id', keyId: Uint8Array.of(10, 11, 12) }, ID.KEY_ID, '0a0b0c'],
  ];
  for (const [i, [text, id, idType, dataHex]] of cases.entries()) {
    const label = `case ${i + 1} (${text})`;
    const parsed = parseIdentity(text);
    assert.deepEqual(parsed, id, label);
    const w = encodeIdentity(parsed);
    assert.equal(w.idType, idType, label);
    assert.equal(Buffer.from(w.data).toString('hex'), dataHex, label);
    assert.deepEqual(decodeIdentity(w), id, label);
    assert.equal(parseIdentity(formatIdentity(id)).kind, id.kind, label);
    assert.ok(identityMatches(w, encodeIdentity(parseIdentity(formatIdentity(id)))), label);
  }
});

test('identity: matching is exact except FQDN case', () => {
  const w = (t: string): ReturnType<typeof encodeIdentity> => encodeIdentity(parseIdentity(t));
  const cases: [string, string, boolean][] = [
    ['@GW.Example', '@gw.example', true],
    ['@gw.example', '@gw.example.', false],
    ['192.0.2.1', '192.0.2.2', false],
    ['@#0a0b', '@#0A0B', true], // same octets
    ['@#0a0b', '@#0a0c', false],
    ['@gw', '@#6777', false],   // same octets ("gw"), different ID types
    ['2001:db8::1', '2001:DB8:0::1', true],
  ];
  for (const [i, [a, b, want]] of cases.entries()) {
    assert.equal(identityMatches(w(a), w(b)), want, `case ${i + 1}: ${a} vs ${b}`);
  }
});

test('identity: bad config text is ERR_CONFIG; unknown wire types decode to undefined', () => {
  const bad = ['@', '@#', '@#abc', '@#zz', 'two words', '@bad/name', '-lead.example', `@${'a'.repeat(256)}`];
  for (const [i, t] of bad.entries()) {
    assert.throws(() => parseIdentity(t), (e: unknown) => GatewayError.isGatewayError(e) && e.code === 'ERR_CONFIG', `case ${i + 1}: ${t}`);
  }
  assert.throws(() => encodeIdentity({ kind: 'ipv4', address: '2001:db8::1' }), GatewayError);
  assert.throws(() => encodeIdentity({ kind: 'key-id', keyId: new Uint8Array(0) }), GatewayError);
  assert.equal(decodeIdentity({ idType: ID.RFC822_ADDR, data: Uint8Array.of(0x61) }), undefined);
  assert.equal(decodeIdentity({ idType: ID.DER_ASN1_DN, data: Uint8Array.of(0x30, 0) }), undefined);
  assert.equal(decodeIdentity({ idType: ID.IPV4_ADDR, data: Uint8Array.of(1, 2, 3) }), undefined);
  assert.equal(formatWireIdentity({ idType: ID.RFC822_ADDR, data: Uint8Array.of(0x61) }), 'id-type-3:61');
});
