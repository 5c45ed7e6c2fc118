/**
 * Two daemons keyed by IKEv2 over fake Systems whose IKE transports are linked in memory: the
 * daemon starts the driver, Child SAs land in both engines' SADBs (each side's outbound SPI is
 * the other's inbound), `keys` lists them, a reload with unchanged IKE settings keeps them, a
 * changed PSK renegotiates, and stop removes them on both sides (Delete). No sockets, no root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Daemon, type System } from '../src/daemon/daemon.js';
import { staticSaFactory } from '../src/daemon/sa-factory.js';
import { parseConfig, type Config } from '../src/config/load.js';
import type { IkeTransport } from '../src/daemon/ike-driver.js';
import { requestControl } from '../src/daemon/control.js';
import { FakeTun } from './support/fakes.js';

const IKE_PORT = 500;

/** IkeWire delivers datagrams between the daemons' transports, asynchronously, by address. */
class IkeWire {
  readonly #ends = new Map<string, (bytes: Uint8Array, address: string, port: number, localPort: number) => void>();
  delivered = 0;
  transport(me: string, onMessage: (bytes: Uint8Array, address: string, port: number, localPort: number) => void): IkeTransport {
    this.#ends.set(me, onMessage);
    return {
      send: (bytes, address, port) => {
        const copy = Uint8Array.from(bytes);
        setImmediate(() => {
          const to = this.#ends.get(address);
          if (to === undefined) return;
          this.delivered++;
          to(copy, me, port === IKE_PORT ? IKE_PORT : port, port);
        });
      },
      close: () => { this.#ends.delete(me); },
    };
  }
}

function config(dir: string, me: 'alice' | 'bob', psk = 'correct horse battery staple'): Config {
  const [myIp, peer, peerIp] = me === 'alice' ? ['198.18.0.1', 'bob', '198.18.0.2'] : ['198.18.0.2', 'alice', '198.18.0.1'];
  return parseConfig(`
name: ${me}
stateDir: ${join(dir, me)}
local: { protect: [${myIp}/32] }
prefixes: [{ real: 198.18.0.0/24, fake: 198.19.0.0/24 }]
peers:
  - name: ${peer}
    endpoint: ${peerIp}
    protect: [${peerIp}/32]
    ike: { psk: "${psk}", initiate: ${String(me === 'alice')} }
`, `${me}.yaml`);
}

function fakeSystem(wire: IkeWire, me: string): System {
  return {
    openTun: () => new FakeTun(),
    configureTun: () => Promise.resolve(),
    linkMtuTowards: () => Promise.resolve(1500),
    localAddresses: () => Promise.resolve([me]),
    openSender: () => ({ send: () => true, close: () => {} }),
    openReceiver: () => ({ start: () => {}, close: () => {} }),
    gateInstalled: () => Promise.resolve(false),
    installGate: () => Promise.resolve(),
    removeGate: () => Promise.resolve(),
    openIkeTransport: (_families, onMessage) => Promise.resolve(wire.transport(me, onMessage)),
    sourceTowards: () => Promise.resolve(me),
  };
}

const silent = pino({ level: 'silent' });

async function until(probe: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !probe(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(probe(), `timed out waiting for ${what}`);
}

/** paired says each side's outbound SPI is installed inbound on the other side. */
function paired(a: Daemon, b: Daemon): boolean {
  const ao = a.engine?.tables.sadb.outbound('bob');
  const bo = b.engine?.tables.sadb.outbound('alice');
  return ao !== undefined && bo !== undefined
    && b.engine?.tables.sadb.inbound(ao.spi) !== undefined && a.engine?.tables.sadb.inbound(bo.spi) !== undefined;
}

test('daemon with IKE peers: negotiate, keys, reload, stop (numbered steps)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'egd-ike-'));
  const wire = new IkeWire();
  const prev = process.env.ESPGATE_WARMUP;
  process.env.ESPGATE_WARMUP = '0';
  const cfgA = config(dir, 'alice');
  const cfgB = config(dir, 'bob');
  const a = new Daemon(cfgA, fakeSystem(wire, '198.18.0.1'), silent, staticSaFactory(cfgA.stateDir));
  const b = new Daemon(cfgB, fakeSystem(wire, '198.18.0.2'), silent, staticSaFactory(cfgB.stateDir));
  try {
    await b.start();
    await a.start();
    await until(() => paired(a, b), 'the first Child SA');
    assert.equal(a.ikeStatus('bob')?.state, 'established', '1: alice established');
    assert.equal(b.ikeStatus('alice')?.state, 'established', '2: bob established');
    const outA = a.engine?.tables.sadb.outbound('bob');
    assert.equal(outA?.algorithm, 'aes256gcm16', '3: the preferred ESP AEAD');
    assert.equal(a.status().peers[0]?.sas.length, 2, '4: status lists the negotiated SAs');

    // keys: the live Child SAs as esp_sa lines, both directions, with the addresses.
    const keys = await keysOf(a);
    assert.equal(keys.length, 2, '5: two esp_sa lines');
    assert.ok(keys.some((l) => l.startsWith('"IPv4","198.18.0.1","198.18.0.2"') && l.includes(`0x${outA?.spi.toString(16).padStart(8, '0') ?? ''}`)), '6: outbound line');

    await a.reload(config(dir, 'alice'));
    assert.equal(a.engine?.tables.sadb.outbound('bob'), outA, '7: a reload with the same IKE settings keeps the negotiated SA object');
    assert.ok(paired(a, b), '8: still paired');

    await a.reload(config(dir, 'alice', 'another key, just as long'));
    await b.reload(config(dir, 'bob', 'another key, just as long'));
    await until(() => paired(a, b) && a.engine?.tables.sadb.outbound('bob') !== outA, 'renegotiation after the PSK changed');
    assert.notEqual(a.engine?.tables.sadb.outbound('bob')?.spi, outA?.spi, '9: a new Child SA after the PSK changed');

    await a.stop();
    await until(() => b.engine?.tables.sadb.outbound('alice') === undefined, 'bob to remove the SA after alice deleted it');
    assert.equal(b.engine?.tables.sadb.inboundSas().length, 0, '10: bob has no inbound SA left: fail closed');
  } finally {
    await a.stop();
    await b.stop();
    if (prev === undefined) delete process.env.ESPGATE_WARMUP; else process.env.ESPGATE_WARMUP = prev;
    rmSync(dir, { recursive: true, force: true });
  }
});

/** keysOf asks a daemon's control socket for the live esp_sa lines. */
async function keysOf(d: Daemon): Promise<string[]> {
  const r = (await requestControl(d.controlPath, { cmd: 'keys' })) as { lines?: string[] };
  return r.lines ?? [];
}
