/**
 * ike-edges.test.ts: the driver's real edges. Case 1: Child SAs from a negotiated pair go into
 * real Sadbs through the daemon's SaFactory and carry ESP (sealEsp -> openEsp). Case 2: the
 * UDP transport carries a datagram on loopback (port 0: no privileges needed). Case 3: a Child
 * SA's UDP encapsulation reaches the outbound SA, and usage() reports the larger direction.
 * Case 4: IKE over the port-4500 socket, marker added and stripped, replies by the same way.
 * Case 5: wireUdpEncap joins the socket and the engine, with keepalives on a fake clock.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { openEsp, sealEsp } from '../esp/codec.js';
import { Sadb } from '../esp/sadb.js';
import { established, innerPacket, pair } from '../ike/sa/ike-fixtures.js';
import { UDP_ENCAP_PORT, UdpEncapSocket } from '../io/udp-encap.js';
import type { DatagramPort, KeepaliveTimers } from '../io/udp-encap.js';
import type { Family } from '../io/types.js';
import { Engine } from '../datapath/engine.js';
import type { EngineTables, PeerRuntime } from '../datapath/engine.js';
import { PrefixTable } from '../datapath/prefix-table.js';
import { InboundSa, OutboundSa } from '../esp/sa.js';
import { OffsetMap } from '../steer/fake-offset.js';
import { FakeTun } from '../../test/support/fakes.js';
import type { ChildSa } from '../ike/sa/types.js';
import { openUdpTransport, sadbSink, wireUdpEncap } from './ike-edges.js';
import { IKE_PORT, NAT_T_PORT } from './ike-driver.js';
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

  test('case 3: sadbSink passes child.encap to the outbound SA; usage is the larger of the two directions', () => {
    const dir = mkdtempSync(join(tmpdir(), 'egt-ike-edges-'));
    try {
      const sadb = new Sadb();
      const sas = staticSaFactory(join(dir, 'a'));
      const sink = sadbSink(() => sadb, sas, () => 1024);
      const child = (inSpi: number, outSpi: number, encap?: { remotePort: number }): ChildSa => ({
        peer: 'gw-b', algorithm: 'aes128gcm16', esn: false,
        inbound: { spi: inSpi, keyMaterial: new Uint8Array(20).fill(1) },
        outbound: { spi: outSpi, keyMaterial: new Uint8Array(20).fill(2) },
        localTs: [], remoteTs: [],
        ...(encap === undefined ? {} : { encap }),
      });
      const natted = child(0x5001, 0x6001, { remotePort: 31000 });
      const plain = child(0x5002, 0x6002);
      assert.equal(sink.usage?.(0x5001, 0x6001), undefined, '3.1: nothing installed yet');
      sink.addInbound('gw-b', '192.0.2.2', natted);
      sink.setOutbound('gw-b', natted);
      assert.deepEqual(sadb.outbound('gw-b')?.encap, { remotePort: 31000 }, '3.2: encapsulated');
      const out = sadb.outbound('gw-b');
      const inb = sadb.inbound(0x5001);
      assert.ok(out !== undefined && inb !== undefined);
      out.countPacket(1000); out.countPacket(1000); // 2 packets, 2000 bytes out
      inb.countPacket(3000); // 1 packet, 3000 bytes in
      assert.deepEqual(sink.usage?.(0x5001, 0x6001), { packets: 2, bytes: 3000 }, '3.3: max per measure');
      sink.addInbound('gw-b', '192.0.2.2', plain);
      sink.setOutbound('gw-b', plain);
      assert.equal(sadb.outbound('gw-b')?.encap, null, '3.4: a Child SA without encap is plain ESP');
      assert.deepEqual(sink.usage?.(0x5001, 0x6001), { packets: 1, bytes: 3000 }, '3.5: the replaced outbound SA no longer counts');
      sink.removeInbound(0x5001);
      assert.equal(sink.usage?.(0x5001, 0x6001), undefined, '3.6: neither installed');
      assert.deepEqual(sink.usage?.(0x5002, 0x6002), { packets: 0, bytes: 0 }, '3.7');
      // The peer's NAT rebinds: the same Child SA again with a new port. The installed SA is
      // updated in place, so its sequence numbers carry on (a new one would reuse GCM nonces).
      const cur = sadb.outbound('gw-b');
      assert.ok(cur !== undefined);
      cur.countPacket(10);
      const seqBefore = cur.seqLo;
      sink.setOutbound('gw-b', { ...plain, encap: { remotePort: 40000 } });
      assert.equal(sadb.outbound('gw-b'), cur, '3.8: the same OutboundSa object');
      assert.deepEqual(cur.encap, { remotePort: 40000 }, '3.9: with the new port');
      assert.equal(cur.seqLo, seqBefore, '3.10: its sequence state untouched');
      assert.equal(cur.stats.packets, 1, '3.11: and its counters');
      sas.close?.();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('case 4: IKE on the 4500 socket: marker stripped on receive, replies leave from 4500 with the marker', async () => {
    assert.equal(NAT_T_PORT, UDP_ENCAP_PORT, '4.0: the driver and the socket agree on the port');
    type Got = { bytes: number[]; address: string; port: number; localPort: number };
    const inbox = (): { list: Got[]; next: () => Promise<Got>; push: (g: Got) => void } => {
      const list: Got[] = [];
      let waiter: ((g: Got) => void) | undefined;
      return {
        list,
        push: (g) => { list.push(g); const w = waiter; waiter = undefined; w?.(g); },
        next: () => new Promise<Got>((resolve, reject) => {
          const t = setTimeout(() => { reject(new Error('no datagram within 5 s')); }, 5000);
          waiter = (g) => { clearTimeout(t); resolve(g); };
        }),
      };
    };
    const ia = inbox();
    const ib = inbox();
    const a = await openUdpTransport(new Set([4]), (bytes, address, port, localPort) => { ia.push({ bytes: [...bytes], address, port, localPort }); }, 0, { v4: '127.0.0.1' });
    const b = await openUdpTransport(new Set([4]), (bytes, address, port, localPort) => { ib.push({ bytes: [...bytes], address, port, localPort }); }, 0, { v4: '127.0.0.1' });
    try {
      // The peer's NAT-T port is not 4500 here (port 0 in tests): as behind a NAT, a reply to where
      // a 4500 message came from must leave from 4500 too.
      let got = ib.next();
      a.encap.sendIke(Uint8Array.from([0x21, 0x20, 0x22, 0x08]), '127.0.0.1', b.encap.port);
      const m1 = await got;
      assert.deepEqual(m1, { bytes: [0x21, 0x20, 0x22, 0x08], address: '127.0.0.1', port: a.encap.port, localPort: NAT_T_PORT }, '4.1: marker stripped, localPort 4500');
      got = ia.next();
      b.send(Uint8Array.from([0x2e]), m1.address, m1.port);
      const m2 = await got;
      assert.deepEqual(m2, { bytes: [0x2e], address: '127.0.0.1', port: b.encap.port, localPort: NAT_T_PORT }, '4.2: the reply came from 4500 with the marker');
      assert.equal(b.encap.stats.ikeOut, 1);
      got = ia.next();
      b.send(Uint8Array.from([0x2f]), '127.0.0.1', a.port);
      const m3 = await got;
      assert.deepEqual(m3, { bytes: [0x2f], address: '127.0.0.1', port: b.port, localPort: IKE_PORT }, '4.3: to any other port: from the 500 socket, no marker');
      b.send(Uint8Array.from([0x30]), '127.0.0.1', NAT_T_PORT);
      assert.equal(b.encap.stats.ikeOut, 2, '4.4: to port 4500: through the 4500 socket');
      assert.equal(ia.list.length, 2);
    } finally {
      a.close(); b.close();
    }
    assert.equal(a.encap.sendIke(Uint8Array.from([1]), '127.0.0.1', 4500), false, '4.5: an encap socket the transport opened is closed with it');
  });

  test('case 5: wireUdpEncap: ESP in both directions through the socket, keepalives to encapsulated peers only', () => {
    const sent: { bytes: number[]; port: number; address: string }[] = [];
    const port: DatagramPort = {
      send: (buf, off, len, p, address) => { sent.push({ bytes: [...buf.subarray(off, off + len)], port: p, address }); },
      queued: () => 0, localPort: () => 4500, close: () => {},
    };
    const encap = new UdpEncapSocket(new Map<Family, DatagramPort>([[4, port]]));
    const peer = (name: string, endpoint: string): PeerRuntime => ({
      name, endpoint, endpointFamily: 4, protect4: new PrefixTable<true>(4), protect6: new PrefixTable<true>(6),
      stats: { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, lastRxMs: 0, lastTxMs: 0 },
    });
    const sadb = new Sadb();
    const key = new Uint8Array(20).fill(3);
    sadb.setOutbound('natted', new OutboundSa({ spi: 0x7001, algorithm: 'aes128gcm16', keyMaterial: key }), { remotePort: 31000 });
    sadb.setOutbound('plain', new OutboundSa({ spi: 0x7002, algorithm: 'aes128gcm16', keyMaterial: key }));
    sadb.addInbound(new InboundSa({ spi: 0x7003, algorithm: 'aes128gcm16', keyMaterial: key, peer: 'natted' }));
    const natted = peer('natted', '192.0.2.7');
    const peerByDst4 = new PrefixTable<PeerRuntime>(4);
    peerByDst4.insert(Uint8Array.from([198, 18, 0, 7]), 32, natted);
    const local4 = new PrefixTable<true>(4);
    local4.insert(Uint8Array.from([198, 18, 0, 1]), 32, true);
    const tables: EngineTables = {
      offsets: new OffsetMap([{ real: '198.18.0.0/24', fake: '198.19.0.0/24' }]),
      peerByDst4, peerByDst6: new PrefixTable<PeerRuntime>(6), local4, local6: new PrefixTable<true>(6), sadb,
      peers: new Map([['natted', natted], ['plain', peer('plain', '192.0.2.8')]]),
    };
    const engine = new Engine(tables, new FakeTun(), { send: () => true, close: () => {} }, { start: () => {}, close: () => {} });
    const ticks: (() => void)[] = [];
    let cancelled = 0;
    const timers: KeepaliveTimers = { every: (fn) => { ticks.push(fn); return fn; }, cancel: () => { cancelled++; } };
    const undo = wireUdpEncap(encap, engine, timers);
    // Inbound: ESP on the socket reaches the engine (an unknown SPI here: counted there).
    encap.receive(Buffer.from('0000999900000001' + '00'.repeat(40), 'hex'), 4, '192.0.2.7', 31000);
    assert.equal(engine.totals.espUdpReceived, 1, '5.1: the engine got the datagram');
    assert.equal(engine.drops.counts['unknown-spi'], 1);
    // Outbound: the engine's UDP sender is the socket.
    const mk = (): Buffer => { // headroom, a UDP packet to 198.19.0.7 (fake of 198.18.0.7), tailroom for sealEsp
      const b = Buffer.alloc(64 + 28 + 64);
      b.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 19, 0, 7, 0x9c, 0x40, 0, 53, 0, 8, 0, 0], 64);
      return b;
    };
    assert.equal(engine.handleOutbound(mk(), 64, 28), 'ok', '5.2: sealed and sent');
    assert.equal(sent.length, 1);
    assert.deepEqual([sent[0]?.port, sent[0]?.address, sent[0]?.bytes.slice(0, 4)], [31000, '192.0.2.7', [0, 0, 0x70, 0x01]], '5.3: ESP (SPI 0x7001) to the NAT-mapped port');
    ticks[0]?.();
    assert.deepEqual(sent.slice(1), [{ bytes: [0xff], port: 31000, address: '192.0.2.7' }], '5.4: one keepalive, to the encapsulated peer only');
    undo();
    assert.equal(cancelled, 1, '5.5: undo stops the keepalives');
    encap.receive(Buffer.from('0000999900000002' + '00'.repeat(40), 'hex'), 4, '192.0.2.7', 31000);
    assert.equal(engine.totals.espUdpReceived, 1, '5.6: and detaches the engine');
    assert.equal(engine.handleOutbound(mk(), 64, 28), 'send-error', '5.7: no UDP sender any more');
  });
});
