/**
 * identity.ts: the IKE identities espgate authenticates with PSKs (RFC 7296 §3.5): ID_IPV4_ADDR,
 * ID_IPV6_ADDR, ID_FQDN and ID_KEY_ID, between their config form (IkeIdentity), their wire form
 * (IdentityWire: ID Type and Identification Data, what an IDi/IDr payload carries) and text.
 *
 * Matching is on the wire form: same ID Type and the same data, except that an FQDN compares
 * without regard to ASCII case (DNS names are case-insensitive; strongSwan does the same).
 * The other ID types (RFC822_ADDR, DER_ASN1_DN, ...) decode to undefined: a peer presenting one
 * matches no configured peer.
 *
 * Pure; parseIdentity and encodeIdentity validate config text and throw GatewayError
 * ERR_CONFIG, everything that reads peer data returns undefined instead.
 */
import { GatewayError } from '../../errors.js';
import { formatIpv4Address, formatIpv6Address, parseIpv4Address, parseIpv6Address } from '../../packet/address.js';
import { ID } from '../constants.js';
import { IPV4_ID_LEN, IPV6_ID_LEN } from '../payloads.js';

/** IkeIdentity is one identity as configured: an address, a DNS name or an opaque key ID. */
export type IkeIdentity =
  | { readonly kind: 'ipv4'; readonly address: string }
  | { readonly kind: 'ipv6'; readonly address: string }
  | { readonly kind: 'fqdn'; readonly name: string }
  | { readonly kind: 'key-id'; readonly keyId: Uint8Array };

/** IdentityWire is an identity as an ID payload carries it (RFC 7296 §3.5). */
export interface IdentityWire {
  /** idType is an ID value. */
  readonly idType: number;
  readonly data: Uint8Array;
}

/** FQDN_MAX_LEN is the longest DNS name accepted (RFC 1035 §2.3.4: 255 octets). */
export const FQDN_MAX_LEN = 255;
/** KEY_ID_MAX_LEN bounds a configured key ID (well inside a payload). */
export const KEY_ID_MAX_LEN = 1024;

const FQDN_TEXT = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;
const HEX = /^(?:[0-9a-fA-F]{2})+$/;

/**
 * parseIdentity reads the strongSwan-style text form: an IPv4 or IPv6 address literal, "@#hex"
 * for a key ID, "@name" or a bare dotted name for an FQDN. Throws GatewayError ERR_CONFIG.
 */
export function parseIdentity(text: string): IkeIdentity {
  if (parseIpv4Address(text) !== undefined) return { kind: 'ipv4', address: text };
  if (parseIpv6Address(text) !== undefined) return { kind: 'ipv6', address: text };
  if (text.startsWith('@#')) {
    const hex = text.slice(2);
    if (!HEX.test(hex)) throw new GatewayError('ERR_CONFIG', `identity ${JSON.stringify(text)}: a key ID is @# followed by hex octets`);
    return checked({ kind: 'key-id', keyId: Uint8Array.from(Buffer.from(hex, 'hex')) });
  }
  const name = text.startsWith('@') ? text.slice(1) : text;
  return checked({ kind: 'fqdn', name });
}

/** checked returns id after encodeIdentity accepted it (so a parsed identity always encodes). */
function checked(id: IkeIdentity): IkeIdentity {
  encodeIdentity(id);
  return id;
}

/** encodeIdentity turns a configured identity into its wire form. Throws GatewayError ERR_CONFIG. */
export function encodeIdentity(id: IkeIdentity): IdentityWire {
  switch (id.kind) {
    case 'ipv4': {
      const b = parseIpv4Address(id.address);
      if (b === undefined) throw new GatewayError('ERR_CONFIG', `identity: ${JSON.stringify(id.address)} is not an IPv4 address`);
      return { idType: ID.IPV4_ADDR, data: b };
    }
    case 'ipv6': {
      const b = parseIpv6Address(id.address);
      if (b === undefined) throw new GatewayError('ERR_CONFIG', `identity: ${JSON.stringify(id.address)} is not an IPv6 address`);
      return { idType: ID.IPV6_ADDR, data: b };
    }
    case 'fqdn': {
      if (id.name.length === 0 || id.name.length > FQDN_MAX_LEN || !FQDN_TEXT.test(id.name)) {
        throw new GatewayError('ERR_CONFIG', `identity: ${JSON.stringify(id.name)} is not a DNS name (letters, digits, - _ .; at most ${FQDN_MAX_LEN})`);
      }
      return { idType: ID.FQDN, data: Uint8Array.from(Buffer.from(id.name, 'ascii')) };
    }
    case 'key-id':
      if (id.keyId.length === 0 || id.keyId.length > KEY_ID_MAX_LEN) {
        throw new GatewayError('ERR_CONFIG', `identity: a key ID has 1..${KEY_ID_MAX_LEN} octets, not ${id.keyId.length}`);
      }
      return { idType: ID.KEY_ID, data: Uint8Array.from(id.keyId) };
  }
}

/**
 * decodeIdentity reads an ID payload's type and data as an IkeIdentity, or undefined for the
 * types espgate does not authenticate (and for an address of the wrong length, which the codec
 * already refuses). Never throws.
 */
export function decodeIdentity(w: IdentityWire): IkeIdentity | undefined {
  switch (w.idType) {
    case ID.IPV4_ADDR:
      return w.data.length === IPV4_ID_LEN ? { kind: 'ipv4', address: formatIpv4Address(w.data) } : undefined;
    case ID.IPV6_ADDR:
      return w.data.length === IPV6_ID_LEN ? { kind: 'ipv6', address: formatIpv6Address(w.data) } : undefined;
    case ID.FQDN:
      return w.data.length > 0 ? { kind: 'fqdn', name: Buffer.from(w.data).toString('latin1') } : undefined;
    case ID.KEY_ID:
      return w.data.length > 0 ? { kind: 'key-id', keyId: Uint8Array.from(w.data) } : undefined;
    default:
      return undefined;
  }
}

/** identityMatches says whether two wire identities name the same identity (FQDN: ASCII case-insensitive). */
export function identityMatches(a: IdentityWire, b: IdentityWire): boolean {
  if (a.idType !== b.idType || a.data.length !== b.data.length) return false;
  const fold = a.idType === ID.FQDN;
  for (let i = 0; i < a.data.length; i++) {
    let x = a.data[i];
    let y = b.data[i];
    if (fold) { x = asciiLower(x); y = asciiLower(y); }
    if (x !== y) return false;
  }
  return true;
}

function asciiLower(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
}

/** formatIdentity is the text form parseIdentity reads (for logs and status). */
export function formatIdentity(id: IkeIdentity): string {
  switch (id.kind) {
    case 'ipv4':
    case 'ipv6':
      return id.address;
    case 'fqdn':
      return `@${id.name}`;
    case 'key-id':
      return `@#${Buffer.from(id.keyId).toString('hex')}`;
  }
}

/** formatWireIdentity formats a received identity for a log line, whatever its type. */
export function formatWireIdentity(w: IdentityWire): string {
  const id = decodeIdentity(w);
  return id === undefined ? `id-type-${w.idType}:${Buffer.from(w.data).toString('hex')}` : formatIdentity(id);
}
