import { test } from 'node:test';
import assert from 'node:assert/strict';
import { established, pair } from './ike-fixtures.js';
import { routeIkeDatagram } from './dispatch.js';
import type { IkeRoute } from './dispatch.js';

test('dispatch: every message of an exchange routes to the session that must handle it', () => {
  const link = pair({ seed: 'dispatch' });
  established(link);
  link.take('responder', link.responder.sendDpd(link.now));
  link.run();
  const spiI = link.initiator.spiI;
  const spiR = link.responder.spiR;
  const at = (b: Uint8Array): IkeRoute => {
    const big = new Uint8Array(b.length + 9);
    big.set(b, 5);
    return routeIkeDatagram(big.subarray(2), 3, b.length);
  };
  const cases: [string, Uint8Array, IkeRoute][] = [
    ['1 IKE_SA_INIT request', link.sent.initiator[0], { kind: 'init-request', spiI }],
    ['2 IKE_SA_INIT response', link.sent.responder[0], { kind: 'initiator', spi: spiI }],
    ['3 IKE_AUTH request', link.sent.initiator[1], { kind: 'responder', spi: spiR }],
    ['4 IKE_AUTH response', link.sent.responder[1], { kind: 'initiator', spi: spiI }],
    ['5 INFORMATIONAL request from the responder', link.sent.responder[2], { kind: 'initiator', spi: spiI }],
    ['6 its response from the initiator', link.sent.initiator[2], { kind: 'responder', spi: spiR }],
    ['7 short', Uint8Array.of(1, 2, 3), { kind: 'drop', reason: 'truncated' }],
    ['8 IKEv1', (() => { const b = Uint8Array.from(link.sent.initiator[0]); b[17] = 0x10; return b; })(), { kind: 'drop', reason: 'bad-version' }],
    ['9 SPIi zero', (() => { const b = Uint8Array.from(link.sent.initiator[0]); b.fill(0, 0, 8); return b; })(), { kind: 'drop', reason: 'zero-spi' }],
    ['10 IKE_AUTH with SPIr zero', (() => { const b = Uint8Array.from(link.sent.initiator[1]); b.fill(0, 8, 16); return b; })(), { kind: 'drop', reason: 'zero-spi' }],
  ];
  for (const [name, bytes, want] of cases) assert.deepEqual(at(bytes), want, name);
});
