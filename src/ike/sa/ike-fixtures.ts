/**
 * ike-fixtures.ts: what the IKE session tests share, beside the twin it drives (ike-link.ts):
 * a pair of sessions with a default two-gateway policy (overridable per side), forged
 * unprotected IKE_SA_INIT answers, and a check that a Child SA's keys really carry ESP traffic
 * through src/esp. Test code only; nothing in the daemon imports it.
 *
 *   gateway A 192.0.2.1:500, @a.example, protects 198.18.1.0/24   (initiator)
 *   gateway B 192.0.2.2:500, @b.example, protects 198.18.2.0/24   (responder)
 */
import { openEsp, sealEsp } from '../../esp/codec.js';
import { InboundSa, OutboundSa } from '../../esp/sa.js';
import { EXCHANGE } from '../constants.js';
import { isIkeParseError, parseIkeMessage, serializeIkeMessage } from '../message.js';
import type { ParsedIkeMessage } from '../message.js';
import { notify } from '../payloads.js';
import { IkeLink, seededRandom } from './ike-link.js';
import { IkeSession } from './session.js';
import type { ChildSa, IkeInitiatorOptions, IkeResponderOptions } from './session.js';

export const PSK = Uint8Array.from(Buffer.from('espgate test key, not a secret'));
export const A = { address: '192.0.2.1', port: 500 };
export const B = { address: '192.0.2.2', port: 500 };

/** PairOptions override the default policy of either side. */
export interface PairOptions {
  readonly i?: Partial<IkeInitiatorOptions>;
  readonly r?: Partial<IkeResponderOptions>;
  readonly seed?: string;
}

/** initiatorOptions is gateway A's default policy towards B. */
export function initiatorOptions(seed: string, o: Partial<IkeInitiatorOptions> = {}): IkeInitiatorOptions {
  return {
    role: 'initiator', local: A, remote: B,
    localId: { kind: 'fqdn', name: 'a.example' }, localProtect: ['198.18.1.0/24'],
    peer: { name: 'gw-b', id: { kind: 'fqdn', name: 'b.example' }, psk: PSK, protect: ['198.18.2.0/24'] },
    random: seededRandom(`${seed}/i`),
    ...o,
  };
}

/** responderOptions is gateway B's default policy, knowing A. */
export function responderOptions(seed: string, o: Partial<IkeResponderOptions> = {}): IkeResponderOptions {
  return {
    role: 'responder', local: B, remote: A,
    localId: { kind: 'fqdn', name: 'b.example' }, localProtect: ['198.18.2.0/24'],
    peers: [{ name: 'gw-a', id: { kind: 'fqdn', name: 'a.example' }, psk: PSK, protect: ['198.18.1.0/24'] }],
    random: seededRandom(`${seed}/r`),
    ...o,
  };
}

/** pair makes a link between an initiator and a responder with the default policy and overrides. */
export function pair(o: PairOptions = {}): IkeLink {
  const seed = o.seed ?? 'pair';
  return new IkeLink(new IkeSession(initiatorOptions(seed, o.i)), new IkeSession(responderOptions(seed, o.r)));
}

/** established runs a pair until quiet and returns both Child SAs; throws unless both sides established one. */
export function established(link: IkeLink): { ci: ChildSa; cr: ChildSa } {
  link.start();
  link.run();
  const ci = link.eventsOf('initiator', 'child-sa')[0] as { child: ChildSa } | undefined;
  const cr = link.eventsOf('responder', 'child-sa')[0] as { child: ChildSa } | undefined;
  if (link.initiator.state !== 'established' || link.responder.state !== 'established' || ci === undefined || cr === undefined) {
    throw new Error(`not established: ${link.initiator.state}/${link.responder.state}, Child SAs ${ci !== undefined}/${cr !== undefined}`);
  }
  return { ci: ci.child, cr: cr.child };
}

/** parsed parses a message the sessions produced; throws if it does not parse. */
export function parsed(bytes: Uint8Array): ParsedIkeMessage {
  const m = parseIkeMessage(bytes, 0, bytes.length);
  if (isIkeParseError(m)) throw new Error(`${m.reason}: ${m.detail}`);
  return m;
}

/** forgedInitAnswer is an unprotected IKE_SA_INIT response HDR(spiI, spiR), N(type, data), as anyone on the path can send. */
export function forgedInitAnswer(spiI: bigint, notifyType: number, data: Uint8Array = new Uint8Array(0), spiR = 0n): Uint8Array {
  const header = { spiI, spiR, exchangeType: EXCHANGE.IKE_SA_INIT, initiator: false, response: true, higherVersion: false, messageId: 0 };
  return serializeIkeMessage({ header, payloads: [notify(notifyType, data)] });
}

/** innerPacket is a small IPv4-looking packet (version nibble 4) for ESP round trips. */
export function innerPacket(tag: number): Uint8Array {
  const p = new Uint8Array(60);
  p[0] = 0x45;
  for (let i = 1; i < p.length; i++) p[i] = (i * 7 + tag) & 0xff;
  return p;
}

/**
 * espCarries seals a packet with the sender's outbound SA (src/esp OutboundSa + sealEsp) and
 * opens it with the receiver's inbound SA (InboundSa + openEsp); returns whether the packet
 * came out intact.
 */
export function espCarries(sender: ChildSa, receiver: ChildSa, tag = 1): boolean {
  const out = new OutboundSa({ spi: sender.outbound.spi, algorithm: sender.algorithm, keyMaterial: sender.outbound.keyMaterial, aeadImpl: 'node' });
  const inb = new InboundSa({ spi: receiver.inbound.spi, algorithm: receiver.algorithm, keyMaterial: receiver.inbound.keyMaterial, aeadImpl: 'node' });
  const inner = innerPacket(tag);
  const wire = new Uint8Array(256);
  const n = sealEsp(out, inner, 0, inner.length, wire, 0);
  if (typeof n !== 'number') return false;
  const r = openEsp(inb, wire, 0, n);
  if (typeof r !== 'object') return false;
  return Buffer.from(wire.subarray(r.innerOff, r.innerOff + r.innerLen)).equals(inner);
}
