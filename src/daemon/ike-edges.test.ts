/**
 * ike-edges.test.ts: the driver's real edges. Case 1: Child SAs from a negotiated pair go into
 * real Sadbs through the daemon's SaFactory and carry ESP (sealEsp -> openEsp). Case 2: the
 * UDP transport carries a datagram on loopback (port 0: no privileges needed).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { openEsp, sealEsp } from '../esp/codec.js';
import { Sadb } from '../esp/sadb.js';
import { established, innerPacket, pair } from '../ike/sa/ike-fixtures.js';
import { openUdpTransport, sadbSink } from './ike-edges.js';
import { staticSaFactory } from './sa-factory.js';

describe('ike edges', () => {
  test('case 1: sadbSink installs Child SAs via the SaFactory; they carry ESP; removal leaves none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'egt-ike-edges-'));
    try {
      const { ci, cr } = established(pair({ seed: 'edges' }));
      const sadbA = new Sadb(); const sadbB = new Sadb();
      const sasA = staticSaFactory(join(dir, 'a')); const sasB = staticSaFactory(join(dir, 'b'));
      const a = sadbSink(() => sadbA, sasA, () => 1024);
      const b = sadbSink(() => sadbB, sasB, () => 1024);
      a.addInbound('gw-b', '192.0.2.2', ci); a.setOutbound('gw-b', ci);
      b.addInbound('gw-a', '192.0.2.1', cr); b.setOutbound('gw-a', cr);
      assert.equal(a.spiInUse(ci.inbound.spi), true);
      assert.equal(a.spiInUse(cr.inbound.spi), false);
      const out = sadbA.outbound('gw-b');
      const inb = sadbB.inbound(ci.outbound.spi);
      assert.ok(out !== undefined && inb !== undefined);
      const inner = innerPacket(3);
      const wire = new Uint8Array(300);
      const n = sealEsp(out, inner, 0, inner.length, wire, 16);
      assert.equal(typeof n, 'number');
      const r = openEsp(inb, wire, 16, n as number);
      assert.ok(typeof r === 'object');
      assert.deepEqual(Buffer.from(wire.subarray(r.innerOff, r.innerOff + r.innerLen)), Buffer.from(inner));
      a.removeInbound(ci.inbound.spi); a.setOutbound('gw-b', undefined);
      assert.equal(sadbA.outbound('gw-b'), undefined);
      assert.equal(sadbA.inboundSas().length, 0);
      sasA.close?.(); sasB.close?.();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('case 2: the UDP transport delivers a datagram with its source address and port', async () => {
    let resolveGot: (v: { bytes: Uint8Array; address: string; port: number }) => void = () => {};
    const got = new Promise<{ bytes: Uint8Array; address: string; port: number }>((r) => { resolveGot = r; });
    const rx = await openUdpTransport(new Set([4]), (bytes, address, port) => { resolveGot({ bytes, address, port }); }, 0, { v4: '127.0.0.1' });
    const tx = await openUdpTransport(new Set([4]), () => {}, 0, { v4: '127.0.0.1' });
    try {
      tx.send(Uint8Array.from([1, 2, 3, 4]), '127.0.0.1', rx.port);
      const m = await got;
      assert.deepEqual([...m.bytes], [1, 2, 3, 4]);
      assert.equal(m.address, '127.0.0.1');
      assert.equal(m.port, tx.port);
    } finally {
      rx.close(); tx.close();
    }
  });
});
