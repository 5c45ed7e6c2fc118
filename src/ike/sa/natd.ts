/**
 * natd.ts: NAT detection (RFC 7296 §2.23). Each IKE_SA_INIT message carries two Notify payloads
 * whose data is a SHA-1 hash over the SPIs and one end of the UDP path:
 *
 *   NAT_DETECTION_SOURCE_IP       = SHA-1(SPIi | SPIr | source IP | source port)
 *   NAT_DETECTION_DESTINATION_IP  = SHA-1(SPIi | SPIr | destination IP | destination port)
 *
 *   SPIi, SPIr  8 octets each, as in the IKE header (SPIr is zero in the request)
 *   IP          4 or 16 octets, network order;  port  2 octets, network order
 *
 * The receiver hashes the addresses it actually saw: if no SOURCE_IP hash matches the packet's
 * source, the peer is behind a NAT; if the DESTINATION_IP hash does not match its own address,
 * it is itself behind one. Either way (§2.23) the initiator moves IKE to port 4500 from
 * IKE_AUTH on, behind a four-octet zero non-ESP marker, and the Child SAs are UDP-encapsulated
 * (RFC 3948) on that path (session.ts acts on it; the transport adds and strips the marker).
 */
import { createHash } from 'node:crypto';

/** NAT_T_PORT is the UDP port IKE moves to when a NAT is detected, shared with UDP-encapsulated ESP (RFC 3948). */
export const NAT_T_PORT = 4500;

/** NATD_HASH_LEN is the length of a NAT detection hash (SHA-1). */
export const NATD_HASH_LEN = 20;

/** natDetectionHash computes SHA-1(SPIi | SPIr | IP | port). */
export function natDetectionHash(spiI: bigint, spiR: bigint, address: Uint8Array, port: number): Uint8Array {
  const head = new Uint8Array(16);
  const v = new DataView(head.buffer);
  v.setBigUint64(0, spiI);
  v.setBigUint64(8, spiR);
  const p = Uint8Array.of((port >>> 8) & 0xff, port & 0xff);
  return Uint8Array.from(createHash('sha1').update(head).update(address).update(p).digest());
}

/** NatStatus is what the NAT detection notifies of one IKE_SA_INIT message said. */
export interface NatStatus {
  /** local is true when the peer saw another address or port than ours: we are behind a NAT. */
  readonly local: boolean;
  /** remote is true when the peer's claimed source is not what we saw: the peer is behind a NAT. */
  readonly remote: boolean;
}

/**
 * natStatus evaluates the hashes a peer sent (sourceHashes may be several, §2.23; destination
 * one) against the path as we saw it: the peer's address/port and ours. undefined when the peer
 * sent none of them (no NAT-T support); a missing half counts as matching.
 */
export function natStatus(spiI: bigint, spiR: bigint, sourceHashes: readonly Uint8Array[], destinationHashes: readonly Uint8Array[],
  peer: { address: Uint8Array; port: number }, local: { address: Uint8Array; port: number }): NatStatus | undefined {
  if (sourceHashes.length === 0 && destinationHashes.length === 0) return undefined;
  const peerHash = natDetectionHash(spiI, spiR, peer.address, peer.port);
  const localHash = natDetectionHash(spiI, spiR, local.address, local.port);
  const eq = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
  return {
    remote: sourceHashes.length > 0 && !sourceHashes.some((h) => eq(h, peerHash)),
    local: destinationHashes.length > 0 && !destinationHashes.some((h) => eq(h, localHash)),
  };
}
