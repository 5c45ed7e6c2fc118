/**
 * daemon/sa-factory.ts: makes the SA objects for static SAs from the config, with sequence
 * reservations persisted in stateDir (FileSeqReserver: fsync before use), so that a crash or a
 * restart never reuses a (SPI, sequence number) pair, hence never an IV under the same key.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { InboundSa, OutboundSa } from '../esp/sa.js';
import { FileSeqReserver } from '../esp/seq-store.js';
import { FileReplayStore } from '../esp/replay-store.js';
import { parseIpAddress } from '../packet/address.js';
import { GatewayError } from '../errors.js';
import type { AeadName } from '../esp/aead.js';
import type { SaConfig, SaFactory } from './tables.js';

/** algorithmOf maps the config's aead name and key length to the ESP layer's algorithm name. */
export function algorithmOf(sa: SaConfig): AeadName {
  return sa.key.length === 36 ? 'aes256gcm16' : 'aes128gcm16';
}

/** fingerprint identifies key material without keeping a second copy of the key around. */
function fingerprint(sa: SaConfig): string {
  return `${sa.spi}:${sa.aead}:${sa.esn}:${createHash('sha256').update(sa.key).digest('hex')}`;
}

function endpointBytes(endpoint: string): Uint8Array {
  const a = parseIpAddress(endpoint);
  if (a === undefined) throw new GatewayError('ERR_CONFIG', `peer endpoint ${endpoint} is not an IP address`);
  return a.bytes;
}

/**
 * staticSaFactory creates SAs whose outbound sequence numbers are reserved in `stateDir/seq`
 * and whose inbound replay windows resume from `stateDir/replay` after a restart.
 */
export function staticSaFactory(stateDir: string): SaFactory {
  const reserver = new FileSeqReserver(join(stateDir, 'seq'));
  const replayStore = new FileReplayStore(join(stateDir, 'replay'));
  const made = new WeakMap<object, string>();
  return {
    outbound(_peer, sa) {
      const o = new OutboundSa({ spi: sa.spi, algorithm: algorithmOf(sa), keyMaterial: sa.key, esn: sa.esn, reserver });
      made.set(o, fingerprint(sa));
      return o;
    },
    inbound(peer, endpoint, sa, replayWindow) {
      const i = new InboundSa({ spi: sa.spi, algorithm: algorithmOf(sa), keyMaterial: sa.key, esn: sa.esn, replayWindow, peer, outerSource: endpointBytes(endpoint), replayStore });
      made.set(i, fingerprint(sa));
      return i;
    },
    sameKey(existing, sa) {
      return made.get(existing) === fingerprint(sa);
    },
    flush: () => replayStore.flush(),
    flushAsync: () => replayStore.flushAsync(),
    close: () => replayStore.close(),
  };
}
