/**
 * payloads.ts: the IKEv2 payload bodies (RFC 7296 §3.3-§3.15) as typed values, each with the
 * triple payloadBodyLength / encodePayloadBody / decodePayloadBody. A body is what follows the
 * 4-byte generic payload header; the header and the chain are message.ts's job.
 *
 * Decoding is pure and never throws for any bytes: it returns the typed payload or a string
 * saying what is wrong (message.ts turns that into an 'malformed' parse error, which is an
 * INVALID_SYNTAX for the peer). Counts on the wire (transforms, selectors, SPIs) are checked
 * against the bytes that are really there before anything is allocated for them. RESERVED
 * fields are ignored on receipt and written as zero. Decoded byte fields are views into the
 * buffer given (parseIkeMessage hands in its own copy of the message, never the caller's).
 *
 * Encoding is control-plane: a payload whose fields do not fit the wire (a 300-byte nonce, a
 * 5-byte IPv4 address, a port above 65535) throws RangeError; nothing is truncated silently.
 *
 * The payloads the codec does not decode (CERT, CERTREQ, EAP, anything unknown) are RawPayload:
 * kept with their critical bit and body, written back as they came.
 */
import { readU16, readU32, writeU16, writeU32 } from '../packet/bytes.js';
import { ID, PAYLOAD, TRANSFORM_ATTR, TS_TYPE } from './constants.js';

// ---------------------------------------------------------------------------------------------
// Types

/**
 * A TransformAttribute is one attribute of a transform (RFC 7296 §3.3.5). A number value is the
 * 2-byte TV form (AF = 1, e.g. Key Length); a byte value is the TLV form (AF = 0).
 */
export interface TransformAttribute {
  type: number;
  value: number | Uint8Array;
}

/** A Transform is one algorithm offered in a proposal (RFC 7296 §3.3.2). */
export interface Transform {
  /** type is a TRANSFORM value (ENCR, PRF, INTEG, DH, ESN). */
  type: number;
  /** id is the algorithm within that type (e.g. ENCR.AES_GCM_16). */
  id: number;
  attributes: TransformAttribute[];
}

/** A Proposal is one proposal substructure (RFC 7296 §3.3.1). */
export interface Proposal {
  /** num is the Proposal Num (1, 2, ... in an offer; the chosen one's number in a reply). */
  num: number;
  /** protocol is a PROTOCOL value (IKE or ESP). */
  protocol: number;
  /** spi is empty for a first IKE SA, 8 bytes when rekeying one, 4 bytes for ESP. */
  spi: Uint8Array;
  transforms: Transform[];
}

/** SaPayload is the Security Association payload (SA, type 33). */
export interface SaPayload {
  kind: 'sa';
  proposals: Proposal[];
}

/** KePayload is the Key Exchange payload (KE, type 34). */
export interface KePayload {
  kind: 'ke';
  /** group is a DH value (e.g. DH.ECP_256, DH.CURVE25519). */
  group: number;
  data: Uint8Array;
}

/** IdPayload is the Identification payload of the initiator (IDi, 35) or responder (IDr, 36). */
export interface IdPayload {
  kind: 'idi' | 'idr';
  /** idType is an ID value; ID_IPV4_ADDR data is 4 bytes, ID_IPV6_ADDR 16, the others 1 or more. */
  idType: number;
  data: Uint8Array;
}

/** AuthPayload is the Authentication payload (AUTH, type 39). */
export interface AuthPayload {
  kind: 'auth';
  /** method is an AUTH_METHOD value. */
  method: number;
  data: Uint8Array;
}

/** NoncePayload is the Nonce payload (Ni/Nr, type 40): 16 to 256 bytes (RFC 7296 §3.9). */
export interface NoncePayload {
  kind: 'nonce';
  data: Uint8Array;
}

/** NotifyPayload is the Notify payload (N, type 41). */
export interface NotifyPayload {
  kind: 'notify';
  /** protocol is a PROTOCOL value; NONE (0) when spi is empty. */
  protocol: number;
  /** spi is the SA the notify is about (empty for the IKE SA itself, 4 bytes for ESP). */
  spi: Uint8Array;
  /** notifyType is a NOTIFY value. */
  notifyType: number;
  data: Uint8Array;
}

/** DeletePayload is the Delete payload (D, type 42). */
export interface DeletePayload {
  kind: 'delete';
  /** protocol is PROTOCOL.IKE (with no SPIs) or PROTOCOL.ESP / AH (4-byte SPIs). */
  protocol: number;
  /** spiSize is the length of every SPI (0 for IKE, 4 for ESP); kept since spis may be empty. */
  spiSize: number;
  spis: Uint8Array[];
}

/** VendorIdPayload is the Vendor ID payload (V, type 43). */
export interface VendorIdPayload {
  kind: 'vendor';
  data: Uint8Array;
}

/**
 * An AddressRangeSelector is a TS_IPV4_ADDR_RANGE (4-byte addresses) or TS_IPV6_ADDR_RANGE
 * (16-byte addresses) traffic selector (RFC 7296 §3.13.1). Protocol 0 and ports 0-65535 mean any.
 */
export interface AddressRangeSelector {
  kind: 'range';
  tsType: typeof TS_TYPE.IPV4_ADDR_RANGE | typeof TS_TYPE.IPV6_ADDR_RANGE;
  ipProtocol: number;
  startPort: number;
  endPort: number;
  startAddress: Uint8Array;
  endAddress: Uint8Array;
}

/**
 * A RawSelector is a traffic selector of a type the codec does not decode (e.g. TS_SECLABEL):
 * bytes is the whole selector as received, TS Type through its end, written back unchanged.
 */
export interface RawSelector {
  kind: 'raw';
  tsType: number;
  bytes: Uint8Array;
}

/** A TrafficSelector is one selector of a TSi/TSr payload. */
export type TrafficSelector = AddressRangeSelector | RawSelector;

/** TsPayload is the Traffic Selector payload of the initiator (TSi, 44) or responder (TSr, 45). */
export interface TsPayload {
  kind: 'tsi' | 'tsr';
  selectors: TrafficSelector[];
}

/** A CfgAttribute is one Configuration attribute (RFC 7296 §3.15.1); value may be empty. */
export interface CfgAttribute {
  /** type is a CFG_ATTR value (15 bits). */
  type: number;
  value: Uint8Array;
}

/** CpPayload is the Configuration payload (CP, type 47). */
export interface CpPayload {
  kind: 'cp';
  /** cfgType is a CFG_TYPE value. */
  cfgType: number;
  attributes: CfgAttribute[];
}

/**
 * SkPayload is the Encrypted payload (SK, type 46) as an opaque container: innerType is the
 * type of the first payload inside (the SK header's Next Payload field) and body is
 * IV || ciphertext || ICV. sk.ts builds and opens it; message.ts only carries it.
 */
export interface SkPayload {
  kind: 'sk';
  innerType: number;
  body: Uint8Array;
}

/** RawPayload is a payload the codec keeps undecoded (CERT, CERTREQ, EAP, unknown types). */
export interface RawPayload {
  kind: 'raw';
  type: number;
  critical: boolean;
  body: Uint8Array;
}

/** A Payload is any payload of a message's chain. */
export type Payload =
  | SaPayload | KePayload | IdPayload | AuthPayload | NoncePayload | NotifyPayload | DeletePayload
  | VendorIdPayload | TsPayload | CpPayload | SkPayload | RawPayload;

/** DecodedPayload is every payload decodePayloadBody returns (all but 'sk' and 'raw'). */
export type DecodedPayload = Exclude<Payload, SkPayload | RawPayload>;

// ---------------------------------------------------------------------------------------------
// Layouts: offsets inside a payload body (after the 4-byte generic header).

/*
 * SA payload body: proposals, each followed by its transforms (RFC 7296 §3.3.1, §3.3.2).
 *
 *                        1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   | Last Substruc |   RESERVED    |         Proposal Length       |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   ~                        SPI (variable)                         ~
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   ~                        <Transforms>                           ~
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 *   Transform:
 *   | Last Substruc |   RESERVED    |        Transform Length       |
 *   |Transform Type |   RESERVED    |          Transform ID         |
 *   ~                      Transform Attributes                     ~
 *
 *   Attribute:
 *   |A|       Attribute Type        |    AF=0  Attribute Length     |
 *   |                             |    AF=1  Attribute Value      |
 *   |                   AF=0  Attribute Value (TLV only)            |
 *
 * Last Substruc is 0 on the last proposal (transform) and 2 (3) on every other one.
 */

/** PROPOSAL_HEADER_LEN is a proposal substructure without SPI and transforms. */
export const PROPOSAL_HEADER_LEN = 8;
const PROPOSAL_OFFSET_LAST = 0;
const PROPOSAL_OFFSET_LENGTH = 2;
const PROPOSAL_OFFSET_NUM = 4;
const PROPOSAL_OFFSET_PROTOCOL = 5;
const PROPOSAL_OFFSET_SPI_SIZE = 6;
const PROPOSAL_OFFSET_NUM_TRANSFORMS = 7;
const PROPOSAL_OFFSET_SPI = 8;
/** SUBSTRUC_LAST marks the last proposal or transform. */
export const SUBSTRUC_LAST = 0;
/** SUBSTRUC_MORE_PROPOSALS is Last Substruc of a proposal that has another after it. */
export const SUBSTRUC_MORE_PROPOSALS = 2;
/** SUBSTRUC_MORE_TRANSFORMS is Last Substruc of a transform that has another after it. */
export const SUBSTRUC_MORE_TRANSFORMS = 3;

/** TRANSFORM_HEADER_LEN is a transform substructure without attributes. */
export const TRANSFORM_HEADER_LEN = 8;
const TRANSFORM_OFFSET_LAST = 0;
const TRANSFORM_OFFSET_LENGTH = 2;
const TRANSFORM_OFFSET_TYPE = 4;
const TRANSFORM_OFFSET_ID = 6;

/** ATTR_HEADER_LEN is an attribute's type + length/value words. */
export const ATTR_HEADER_LEN = 4;
/** ATTR_FORMAT_TV is the AF bit: set for the 2-byte TV form. */
export const ATTR_FORMAT_TV = 0x8000;
const ATTR_TYPE_MASK = 0x7fff;

/*
 * KE, IDi/IDr, AUTH, CP bodies start with a one- or two-byte field and pad to 4 with RESERVED:
 *
 *   KE:    | Diffie-Hellman Group Num      |           RESERVED            |  Key Exchange Data ...
 *   ID:    |   ID Type     |                 RESERVED                      |  Identification Data ...
 *   AUTH:  | Auth Method   |                 RESERVED                      |  Authentication Data ...
 *   CP:    |   CFG Type    |                 RESERVED                      |  Configuration Attributes ...
 *   TS:    | Number of TSs |                 RESERVED                      |  Traffic Selectors ...
 *   N:     |  Protocol ID  |   SPI Size    |      Notify Message Type      |  SPI, Notification Data ...
 *   D:     |  Protocol ID  |   SPI Size    |           Num of SPIs         |  SPIs ...
 */

/** FIXED_BODY_LEN is the fixed first word of the KE, ID, AUTH, N, D, TS and CP bodies. */
export const FIXED_BODY_LEN = 4;
const KE_OFFSET_GROUP = 0;
const ID_OFFSET_TYPE = 0;
const AUTH_OFFSET_METHOD = 0;
const NOTIFY_OFFSET_PROTOCOL = 0;
const NOTIFY_OFFSET_SPI_SIZE = 1;
const NOTIFY_OFFSET_TYPE = 2;
const DELETE_OFFSET_PROTOCOL = 0;
const DELETE_OFFSET_SPI_SIZE = 1;
const DELETE_OFFSET_NUM_SPIS = 2;
const TS_OFFSET_COUNT = 0;
const CP_OFFSET_TYPE = 0;

/** NONCE_MIN_LEN is the shortest nonce RFC 7296 §3.9 allows (16 bytes). */
export const NONCE_MIN_LEN = 16;
/** NONCE_MAX_LEN is the longest nonce RFC 7296 §3.9 allows (256 bytes). */
export const NONCE_MAX_LEN = 256;

/** IPV4_ID_LEN is the data length of an ID_IPV4_ADDR identification. */
export const IPV4_ID_LEN = 4;
/** IPV6_ID_LEN is the data length of an ID_IPV6_ADDR identification. */
export const IPV6_ID_LEN = 16;

/*
 * Traffic selector (RFC 7296 §3.13.1):
 *
 *   |   TS Type     |IP Protocol ID*|       Selector Length         |
 *   |           Start Port*         |           End Port*           |
 *   ~                         Starting Address*                     ~
 *   ~                         Ending Address*                       ~
 *
 * (* for TS_IPV4_ADDR_RANGE and TS_IPV6_ADDR_RANGE; other types only share TS Type and length.)
 */

/** SELECTOR_HEADER_LEN is TS Type, one byte and Selector Length, common to every selector type. */
export const SELECTOR_HEADER_LEN = 4;
const SELECTOR_OFFSET_TYPE = 0;
const SELECTOR_OFFSET_PROTOCOL = 1;
const SELECTOR_OFFSET_LENGTH = 2;
const SELECTOR_OFFSET_START_PORT = 4;
const SELECTOR_OFFSET_END_PORT = 6;
const SELECTOR_OFFSET_START_ADDR = 8;
/** TS_IPV4_LEN is the Selector Length of a TS_IPV4_ADDR_RANGE (16 bytes). */
export const TS_IPV4_LEN = 16;
/** TS_IPV6_LEN is the Selector Length of a TS_IPV6_ADDR_RANGE (40 bytes). */
export const TS_IPV6_LEN = 40;

/*
 * Configuration attribute (RFC 7296 §3.15.1):
 *
 *   |R|         Attribute Type      |            Length             |
 *   ~                             Value                             ~
 */

/** CFG_ATTR_HEADER_LEN is a configuration attribute's type + length. */
export const CFG_ATTR_HEADER_LEN = 4;
const CFG_ATTR_TYPE_MASK = 0x7fff;

/** MAX_BODY_LEN is the largest body a payload can carry (16-bit Payload Length minus its header). */
export const MAX_BODY_LEN = 0xffff - 4;

// ---------------------------------------------------------------------------------------------
// Payload kind <-> wire type

/** payloadTypeOf is the Next Payload value announcing p. */
export function payloadTypeOf(p: Payload): number {
  switch (p.kind) {
    case 'sa': return PAYLOAD.SA;
    case 'ke': return PAYLOAD.KE;
    case 'idi': return PAYLOAD.IDI;
    case 'idr': return PAYLOAD.IDR;
    case 'auth': return PAYLOAD.AUTH;
    case 'nonce': return PAYLOAD.NONCE;
    case 'notify': return PAYLOAD.NOTIFY;
    case 'delete': return PAYLOAD.DELETE;
    case 'vendor': return PAYLOAD.VENDOR_ID;
    case 'tsi': return PAYLOAD.TSI;
    case 'tsr': return PAYLOAD.TSR;
    case 'cp': return PAYLOAD.CP;
    case 'sk': return PAYLOAD.SK;
    case 'raw': return p.type;
  }
}

/**
 * isDecodedType says whether decodePayloadBody understands payload type t, i.e. whether the
 * critical bit of such a payload is ignored (RFC 7296 §3.2). SK is understood too but is
 * message.ts's business.
 */
export function isDecodedType(t: number): boolean {
  return t === PAYLOAD.SA || t === PAYLOAD.KE || t === PAYLOAD.IDI || t === PAYLOAD.IDR || t === PAYLOAD.AUTH ||
    t === PAYLOAD.NONCE || t === PAYLOAD.NOTIFY || t === PAYLOAD.DELETE || t === PAYLOAD.VENDOR_ID ||
    t === PAYLOAD.TSI || t === PAYLOAD.TSR || t === PAYLOAD.CP;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * decodePayloadBody decodes the body buf[off, off+len) of a payload of type `type` (one that
 * isDecodedType accepts). Returns the payload, or a one-line description of what is malformed.
 * Never throws; the result's byte fields are views into buf.
 */
export function decodePayloadBody(type: number, buf: Uint8Array, off: number, len: number): DecodedPayload | string {
  if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len < 0 || off + len > buf.length) {
    return 'body outside the buffer';
  }
  switch (type) {
    case PAYLOAD.SA: return decodeSa(buf, off, len);
    case PAYLOAD.KE: {
      if (len < FIXED_BODY_LEN) return `KE: ${len} bytes, shorter than its fixed part`;
      return { kind: 'ke', group: readU16(buf, off + KE_OFFSET_GROUP), data: buf.subarray(off + FIXED_BODY_LEN, off + len) };
    }
    case PAYLOAD.IDI:
    case PAYLOAD.IDR: return decodeId(type === PAYLOAD.IDI ? 'idi' : 'idr', buf, off, len);
    case PAYLOAD.AUTH: {
      if (len < FIXED_BODY_LEN) return `AUTH: ${len} bytes, shorter than its fixed part`;
      return { kind: 'auth', method: buf[off + AUTH_OFFSET_METHOD], data: buf.subarray(off + FIXED_BODY_LEN, off + len) };
    }
    case PAYLOAD.NONCE: {
      if (len < NONCE_MIN_LEN || len > NONCE_MAX_LEN) return `Nonce: ${len} bytes, not ${NONCE_MIN_LEN}..${NONCE_MAX_LEN}`;
      return { kind: 'nonce', data: buf.subarray(off, off + len) };
    }
    case PAYLOAD.NOTIFY: return decodeNotify(buf, off, len);
    case PAYLOAD.DELETE: return decodeDelete(buf, off, len);
    case PAYLOAD.VENDOR_ID: return { kind: 'vendor', data: buf.subarray(off, off + len) };
    case PAYLOAD.TSI:
    case PAYLOAD.TSR: return decodeTs(type === PAYLOAD.TSI ? 'tsi' : 'tsr', buf, off, len);
    case PAYLOAD.CP: return decodeCp(buf, off, len);
    default: return `payload type ${type} is not decoded here`;
  }
}

function decodeSa(buf: Uint8Array, off: number, len: number): SaPayload | string {
  const proposals: Proposal[] = [];
  const end = off + len;
  let p = off;
  if (len === 0) return 'SA: no proposals';
  while (p < end) {
    const i = proposals.length + 1;
    if (end - p < PROPOSAL_HEADER_LEN) return `SA: proposal ${i}: ${end - p} bytes left, shorter than a proposal header`;
    const last = buf[p + PROPOSAL_OFFSET_LAST];
    const plen = readU16(buf, p + PROPOSAL_OFFSET_LENGTH);
    const spiSize = buf[p + PROPOSAL_OFFSET_SPI_SIZE];
    const numTransforms = buf[p + PROPOSAL_OFFSET_NUM_TRANSFORMS];
    if (plen < PROPOSAL_HEADER_LEN + spiSize || plen > end - p) {
      return `SA: proposal ${i}: length ${plen} does not fit (SPI size ${spiSize}, ${end - p} bytes left)`;
    }
    const isLast = p + plen === end;
    if (last !== (isLast ? SUBSTRUC_LAST : SUBSTRUC_MORE_PROPOSALS)) {
      return `SA: proposal ${i}: Last Substruc ${last} but ${isLast ? 'it is the last' : 'more follow'}`;
    }
    const transforms = decodeTransforms(buf, p + PROPOSAL_OFFSET_SPI + spiSize, p + plen, numTransforms, i);
    if (typeof transforms === 'string') return transforms;
    proposals.push({
      num: buf[p + PROPOSAL_OFFSET_NUM],
      protocol: buf[p + PROPOSAL_OFFSET_PROTOCOL],
      spi: buf.subarray(p + PROPOSAL_OFFSET_SPI, p + PROPOSAL_OFFSET_SPI + spiSize),
      transforms,
    });
    p += plen;
  }
  return { kind: 'sa', proposals };
}

function decodeTransforms(buf: Uint8Array, off: number, end: number, count: number, proposal: number): Transform[] | string {
  const out: Transform[] = [];
  let p = off;
  while (p < end) {
    const i = out.length + 1;
    if (i > count) return `SA: proposal ${proposal}: more transforms than Num Transforms ${count}`;
    if (end - p < TRANSFORM_HEADER_LEN) return `SA: proposal ${proposal} transform ${i}: ${end - p} bytes left, shorter than a transform header`;
    const last = buf[p + TRANSFORM_OFFSET_LAST];
    const tlen = readU16(buf, p + TRANSFORM_OFFSET_LENGTH);
    if (tlen < TRANSFORM_HEADER_LEN || tlen > end - p) {
      return `SA: proposal ${proposal} transform ${i}: length ${tlen} does not fit (${end - p} bytes left)`;
    }
    const isLast = p + tlen === end;
    if (last !== (isLast ? SUBSTRUC_LAST : SUBSTRUC_MORE_TRANSFORMS)) {
      return `SA: proposal ${proposal} transform ${i}: Last Substruc ${last} but ${isLast ? 'it is the last' : 'more follow'}`;
    }
    const attributes = decodeAttributes(buf, p + TRANSFORM_HEADER_LEN, p + tlen);
    if (typeof attributes === 'string') return `SA: proposal ${proposal} transform ${i}: ${attributes}`;
    out.push({ type: buf[p + TRANSFORM_OFFSET_TYPE], id: readU16(buf, p + TRANSFORM_OFFSET_ID), attributes });
    p += tlen;
  }
  if (out.length !== count) return `SA: proposal ${proposal}: ${out.length} transforms but Num Transforms ${count}`;
  return out;
}

function decodeAttributes(buf: Uint8Array, off: number, end: number): TransformAttribute[] | string {
  const out: TransformAttribute[] = [];
  let p = off;
  while (p < end) {
    if (end - p < ATTR_HEADER_LEN) return `attribute: ${end - p} bytes left, shorter than an attribute header`;
    const word = readU16(buf, p);
    const type = word & ATTR_TYPE_MASK;
    if ((word & ATTR_FORMAT_TV) !== 0) {
      out.push({ type, value: readU16(buf, p + 2) });
      p += ATTR_HEADER_LEN;
    } else {
      const alen = readU16(buf, p + 2);
      if (alen > end - p - ATTR_HEADER_LEN) return `attribute ${type}: length ${alen} runs past the transform`;
      out.push({ type, value: buf.subarray(p + ATTR_HEADER_LEN, p + ATTR_HEADER_LEN + alen) });
      p += ATTR_HEADER_LEN + alen;
    }
  }
  return out;
}

function decodeId(kind: 'idi' | 'idr', buf: Uint8Array, off: number, len: number): IdPayload | string {
  const name = kind === 'idi' ? 'IDi' : 'IDr';
  if (len < FIXED_BODY_LEN) return `${name}: ${len} bytes, shorter than its fixed part`;
  const idType = buf[off + ID_OFFSET_TYPE];
  const data = buf.subarray(off + FIXED_BODY_LEN, off + len);
  const bad = idDataProblem(idType, data.length);
  if (bad !== undefined) return `${name}: ${bad}`;
  return { kind, idType, data };
}

/** idDataProblem says why identification data of this type and length is invalid, if it is. */
function idDataProblem(idType: number, dataLen: number): string | undefined {
  if (idType === ID.IPV4_ADDR && dataLen !== IPV4_ID_LEN) return `ID_IPV4_ADDR with ${dataLen} bytes`;
  if (idType === ID.IPV6_ADDR && dataLen !== IPV6_ID_LEN) return `ID_IPV6_ADDR with ${dataLen} bytes`;
  if (dataLen === 0) return `ID type ${idType} with no data`;
  return undefined;
}

function decodeNotify(buf: Uint8Array, off: number, len: number): NotifyPayload | string {
  if (len < FIXED_BODY_LEN) return `Notify: ${len} bytes, shorter than its fixed part`;
  const spiSize = buf[off + NOTIFY_OFFSET_SPI_SIZE];
  if (spiSize > len - FIXED_BODY_LEN) return `Notify: SPI size ${spiSize} runs past the payload`;
  const spiEnd = off + FIXED_BODY_LEN + spiSize;
  return {
    kind: 'notify',
    protocol: buf[off + NOTIFY_OFFSET_PROTOCOL],
    spi: buf.subarray(off + FIXED_BODY_LEN, spiEnd),
    notifyType: readU16(buf, off + NOTIFY_OFFSET_TYPE),
    data: buf.subarray(spiEnd, off + len),
  };
}

function decodeDelete(buf: Uint8Array, off: number, len: number): DeletePayload | string {
  if (len < FIXED_BODY_LEN) return `Delete: ${len} bytes, shorter than its fixed part`;
  const spiSize = buf[off + DELETE_OFFSET_SPI_SIZE];
  const num = readU16(buf, off + DELETE_OFFSET_NUM_SPIS);
  if (spiSize === 0 && num !== 0) return `Delete: ${num} SPIs of size 0`;
  if (FIXED_BODY_LEN + spiSize * num !== len) {
    return `Delete: ${num} SPIs of ${spiSize} bytes do not fill ${len - FIXED_BODY_LEN} bytes`;
  }
  const spis: Uint8Array[] = [];
  for (let i = 0, p = off + FIXED_BODY_LEN; i < num; i++, p += spiSize) spis.push(buf.subarray(p, p + spiSize));
  return { kind: 'delete', protocol: buf[off + DELETE_OFFSET_PROTOCOL], spiSize, spis };
}

function decodeTs(kind: 'tsi' | 'tsr', buf: Uint8Array, off: number, len: number): TsPayload | string {
  const name = kind === 'tsi' ? 'TSi' : 'TSr';
  if (len < FIXED_BODY_LEN) return `${name}: ${len} bytes, shorter than its fixed part`;
  const count = buf[off + TS_OFFSET_COUNT];
  if (count === 0) return `${name}: Number of TSs is 0`;
  const end = off + len;
  const selectors: TrafficSelector[] = [];
  let p = off + FIXED_BODY_LEN;
  while (p < end) {
    const i = selectors.length + 1;
    if (i > count) return `${name}: more selectors than Number of TSs ${count}`;
    if (end - p < SELECTOR_HEADER_LEN) return `${name}: selector ${i}: ${end - p} bytes left, shorter than a selector header`;
    const tsType = buf[p + SELECTOR_OFFSET_TYPE];
    const slen = readU16(buf, p + SELECTOR_OFFSET_LENGTH);
    if (slen < SELECTOR_HEADER_LEN || slen > end - p) return `${name}: selector ${i}: length ${slen} does not fit (${end - p} bytes left)`;
    if (tsType === TS_TYPE.IPV4_ADDR_RANGE || tsType === TS_TYPE.IPV6_ADDR_RANGE) {
      const want = tsType === TS_TYPE.IPV4_ADDR_RANGE ? TS_IPV4_LEN : TS_IPV6_LEN;
      if (slen !== want) return `${name}: selector ${i}: type ${tsType} with length ${slen}, not ${want}`;
      const alen = (want - SELECTOR_OFFSET_START_ADDR) / 2;
      const a = p + SELECTOR_OFFSET_START_ADDR;
      selectors.push({
        kind: 'range',
        tsType,
        ipProtocol: buf[p + SELECTOR_OFFSET_PROTOCOL],
        startPort: readU16(buf, p + SELECTOR_OFFSET_START_PORT),
        endPort: readU16(buf, p + SELECTOR_OFFSET_END_PORT),
        startAddress: buf.subarray(a, a + alen),
        endAddress: buf.subarray(a + alen, a + 2 * alen),
      });
    } else {
      selectors.push({ kind: 'raw', tsType, bytes: buf.subarray(p, p + slen) });
    }
    p += slen;
  }
  if (selectors.length !== count) return `${name}: ${selectors.length} selectors but Number of TSs ${count}`;
  return { kind, selectors };
}

function decodeCp(buf: Uint8Array, off: number, len: number): CpPayload | string {
  if (len < FIXED_BODY_LEN) return `CP: ${len} bytes, shorter than its fixed part`;
  const attributes: CfgAttribute[] = [];
  const end = off + len;
  let p = off + FIXED_BODY_LEN;
  while (p < end) {
    if (end - p < CFG_ATTR_HEADER_LEN) return `CP: attribute ${attributes.length + 1}: ${end - p} bytes left, shorter than its header`;
    const type = readU16(buf, p) & CFG_ATTR_TYPE_MASK;
    const alen = readU16(buf, p + 2);
    if (alen > end - p - CFG_ATTR_HEADER_LEN) return `CP: attribute ${type}: length ${alen} runs past the payload`;
    attributes.push({ type, value: buf.subarray(p + CFG_ATTR_HEADER_LEN, p + CFG_ATTR_HEADER_LEN + alen) });
    p += CFG_ATTR_HEADER_LEN + alen;
  }
  return { kind: 'cp', cfgType: buf[off + CP_OFFSET_TYPE], attributes };
}

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * payloadBodyLength is the number of bytes encodePayloadBody writes for p. Throws RangeError if
 * p cannot be encoded (see checkPayload).
 */
export function payloadBodyLength(p: Payload): number {
  checkPayload(p);
  return bodyLength(p);
}

/**
 * encodePayloadBody writes p's body at buf[off] and returns its length. Throws RangeError if p
 * cannot be encoded or buf has no room; on a throw, buf may be partly written.
 */
export function encodePayloadBody(p: Payload, buf: Uint8Array, off: number): number {
  const n = payloadBodyLength(p);
  if (!Number.isInteger(off) || off < 0 || off + n > buf.length) throw new RangeError(`no room for a ${n}-byte ${p.kind} body at ${off}`);
  switch (p.kind) {
    case 'sa': {
      let q = off;
      p.proposals.forEach((pr, i) => {
        const plen = proposalLength(pr);
        buf[q + PROPOSAL_OFFSET_LAST] = i === p.proposals.length - 1 ? SUBSTRUC_LAST : SUBSTRUC_MORE_PROPOSALS;
        buf[q + 1] = 0;
        writeU16(buf, q + PROPOSAL_OFFSET_LENGTH, plen);
        buf[q + PROPOSAL_OFFSET_NUM] = pr.num;
        buf[q + PROPOSAL_OFFSET_PROTOCOL] = pr.protocol;
        buf[q + PROPOSAL_OFFSET_SPI_SIZE] = pr.spi.length;
        buf[q + PROPOSAL_OFFSET_NUM_TRANSFORMS] = pr.transforms.length;
        buf.set(pr.spi, q + PROPOSAL_OFFSET_SPI);
        let t = q + PROPOSAL_OFFSET_SPI + pr.spi.length;
        pr.transforms.forEach((tr, j) => {
          const tlen = transformLength(tr);
          buf[t + TRANSFORM_OFFSET_LAST] = j === pr.transforms.length - 1 ? SUBSTRUC_LAST : SUBSTRUC_MORE_TRANSFORMS;
          buf[t + 1] = 0;
          writeU16(buf, t + TRANSFORM_OFFSET_LENGTH, tlen);
          buf[t + TRANSFORM_OFFSET_TYPE] = tr.type;
          buf[t + TRANSFORM_OFFSET_TYPE + 1] = 0;
          writeU16(buf, t + TRANSFORM_OFFSET_ID, tr.id);
          let a = t + TRANSFORM_HEADER_LEN;
          for (const at of tr.attributes) {
            if (typeof at.value === 'number') {
              writeU16(buf, a, ATTR_FORMAT_TV | at.type);
              writeU16(buf, a + 2, at.value);
              a += ATTR_HEADER_LEN;
            } else {
              writeU16(buf, a, at.type);
              writeU16(buf, a + 2, at.value.length);
              buf.set(at.value, a + ATTR_HEADER_LEN);
              a += ATTR_HEADER_LEN + at.value.length;
            }
          }
          t += tlen;
        });
        q += plen;
      });
      break;
    }
    case 'ke':
      writeU32(buf, off, 0);
      writeU16(buf, off + KE_OFFSET_GROUP, p.group);
      buf.set(p.data, off + FIXED_BODY_LEN);
      break;
    case 'idi':
    case 'idr':
      writeU32(buf, off, 0);
      buf[off + ID_OFFSET_TYPE] = p.idType;
      buf.set(p.data, off + FIXED_BODY_LEN);
      break;
    case 'auth':
      writeU32(buf, off, 0);
      buf[off + AUTH_OFFSET_METHOD] = p.method;
      buf.set(p.data, off + FIXED_BODY_LEN);
      break;
    case 'nonce':
    case 'vendor':
      buf.set(p.data, off);
      break;
    case 'notify':
      buf[off + NOTIFY_OFFSET_PROTOCOL] = p.protocol;
      buf[off + NOTIFY_OFFSET_SPI_SIZE] = p.spi.length;
      writeU16(buf, off + NOTIFY_OFFSET_TYPE, p.notifyType);
      buf.set(p.spi, off + FIXED_BODY_LEN);
      buf.set(p.data, off + FIXED_BODY_LEN + p.spi.length);
      break;
    case 'delete': {
      buf[off + DELETE_OFFSET_PROTOCOL] = p.protocol;
      buf[off + DELETE_OFFSET_SPI_SIZE] = p.spiSize;
      writeU16(buf, off + DELETE_OFFSET_NUM_SPIS, p.spis.length);
      let q = off + FIXED_BODY_LEN;
      for (const s of p.spis) { buf.set(s, q); q += s.length; }
      break;
    }
    case 'tsi':
    case 'tsr': {
      writeU32(buf, off, 0);
      buf[off + TS_OFFSET_COUNT] = p.selectors.length;
      let q = off + FIXED_BODY_LEN;
      for (const s of p.selectors) {
        if (s.kind === 'raw') {
          buf.set(s.bytes, q);
          q += s.bytes.length;
          continue;
        }
        const slen = s.tsType === TS_TYPE.IPV4_ADDR_RANGE ? TS_IPV4_LEN : TS_IPV6_LEN;
        buf[q + SELECTOR_OFFSET_TYPE] = s.tsType;
        buf[q + SELECTOR_OFFSET_PROTOCOL] = s.ipProtocol;
        writeU16(buf, q + SELECTOR_OFFSET_LENGTH, slen);
        writeU16(buf, q + SELECTOR_OFFSET_START_PORT, s.startPort);
        writeU16(buf, q + SELECTOR_OFFSET_END_PORT, s.endPort);
        buf.set(s.startAddress, q + SELECTOR_OFFSET_START_ADDR);
        buf.set(s.endAddress, q + SELECTOR_OFFSET_START_ADDR + s.startAddress.length);
        q += slen;
      }
      break;
    }
    case 'cp': {
      writeU32(buf, off, 0);
      buf[off + CP_OFFSET_TYPE] = p.cfgType;
      let q = off + FIXED_BODY_LEN;
      for (const a of p.attributes) {
        writeU16(buf, q, a.type);
        writeU16(buf, q + 2, a.value.length);
        buf.set(a.value, q + CFG_ATTR_HEADER_LEN);
        q += CFG_ATTR_HEADER_LEN + a.value.length;
      }
      break;
    }
    case 'sk':
    case 'raw':
      buf.set(p.body, off);
      break;
  }
  return n;
}

function proposalLength(pr: Proposal): number {
  let n = PROPOSAL_HEADER_LEN + pr.spi.length;
  for (const t of pr.transforms) n += transformLength(t);
  return n;
}

function transformLength(t: Transform): number {
  let n = TRANSFORM_HEADER_LEN;
  for (const a of t.attributes) n += ATTR_HEADER_LEN + (typeof a.value === 'number' ? 0 : a.value.length);
  return n;
}

function bodyLength(p: Payload): number {
  switch (p.kind) {
    case 'sa': {
      let n = 0;
      for (const pr of p.proposals) n += proposalLength(pr);
      return n;
    }
    case 'ke':
    case 'idi':
    case 'idr':
    case 'auth': return FIXED_BODY_LEN + p.data.length;
    case 'nonce':
    case 'vendor': return p.data.length;
    case 'notify': return FIXED_BODY_LEN + p.spi.length + p.data.length;
    case 'delete': return FIXED_BODY_LEN + p.spiSize * p.spis.length;
    case 'tsi':
    case 'tsr': {
      let n = FIXED_BODY_LEN;
      for (const s of p.selectors) {
        n += s.kind === 'raw' ? s.bytes.length : s.tsType === TS_TYPE.IPV4_ADDR_RANGE ? TS_IPV4_LEN : TS_IPV6_LEN;
      }
      return n;
    }
    case 'cp': {
      let n = FIXED_BODY_LEN;
      for (const a of p.attributes) n += CFG_ATTR_HEADER_LEN + a.value.length;
      return n;
    }
    case 'sk':
    case 'raw': return p.body.length;
  }
}

function u8(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${what} ${v} is not 0..255`);
}

function u16(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${what} ${v} is not 0..65535`);
}

function bytes(v: unknown, what: string): void {
  if (!(v instanceof Uint8Array)) throw new RangeError(`${what} is not bytes`);
}

/**
 * checkPayload throws RangeError unless every field of p fits its wire field and the payload's
 * own rules (counts, Nonce 16..256 bytes, address lengths, substructure lengths, and a body of
 * at most MAX_BODY_LEN bytes).
 */
export function checkPayload(p: Payload): void {
  switch (p.kind) {
    case 'sa':
      if (p.proposals.length === 0) throw new RangeError('SA: no proposals');
      for (const pr of p.proposals) {
        u8(pr.num, 'SA: proposal num');
        u8(pr.protocol, 'SA: protocol');
        bytes(pr.spi, 'SA: SPI');
        u8(pr.spi.length, 'SA: SPI size');
        u8(pr.transforms.length, 'SA: transform count');
        for (const t of pr.transforms) {
          u8(t.type, 'SA: transform type');
          u16(t.id, 'SA: transform id');
          for (const a of t.attributes) {
            if (!Number.isInteger(a.type) || a.type < 0 || a.type > ATTR_TYPE_MASK) throw new RangeError(`SA: attribute type ${a.type} is not 0..32767`);
            if (typeof a.value === 'number') u16(a.value, 'SA: TV attribute value');
            else { bytes(a.value, 'SA: TLV attribute value'); u16(a.value.length, 'SA: TLV attribute length'); }
          }
          u16(transformLength(t), 'SA: transform length');
        }
        u16(proposalLength(pr), 'SA: proposal length');
      }
      break;
    case 'ke':
      u16(p.group, 'KE: group');
      bytes(p.data, 'KE: data');
      break;
    case 'idi':
    case 'idr': {
      u8(p.idType, 'ID: type');
      bytes(p.data, 'ID: data');
      const bad = idDataProblem(p.idType, p.data.length);
      if (bad !== undefined) throw new RangeError(`ID: ${bad}`);
      break;
    }
    case 'auth':
      u8(p.method, 'AUTH: method');
      bytes(p.data, 'AUTH: data');
      break;
    case 'nonce':
      bytes(p.data, 'Nonce');
      if (p.data.length < NONCE_MIN_LEN || p.data.length > NONCE_MAX_LEN) {
        throw new RangeError(`Nonce: ${p.data.length} bytes, not ${NONCE_MIN_LEN}..${NONCE_MAX_LEN}`);
      }
      break;
    case 'notify':
      u8(p.protocol, 'Notify: protocol');
      bytes(p.spi, 'Notify: SPI');
      u8(p.spi.length, 'Notify: SPI size');
      u16(p.notifyType, 'Notify: type');
      bytes(p.data, 'Notify: data');
      break;
    case 'delete':
      u8(p.protocol, 'Delete: protocol');
      u8(p.spiSize, 'Delete: SPI size');
      u16(p.spis.length, 'Delete: SPI count');
      if (p.spiSize === 0 && p.spis.length !== 0) throw new RangeError(`Delete: ${p.spis.length} SPIs of size 0`);
      for (const s of p.spis) {
        bytes(s, 'Delete: SPI');
        if (s.length !== p.spiSize) throw new RangeError(`Delete: a ${s.length}-byte SPI with SPI size ${p.spiSize}`);
      }
      break;
    case 'vendor':
      bytes(p.data, 'Vendor ID');
      break;
    case 'tsi':
    case 'tsr':
      if (p.selectors.length === 0) throw new RangeError('TS: no selectors');
      u8(p.selectors.length, 'TS: selector count');
      for (const s of p.selectors) {
        if (s.kind === 'raw') {
          bytes(s.bytes, 'TS: raw selector');
          if (s.bytes.length < SELECTOR_HEADER_LEN || s.bytes[SELECTOR_OFFSET_TYPE] !== s.tsType ||
            readU16(s.bytes, SELECTOR_OFFSET_LENGTH) !== s.bytes.length ||
            s.tsType === TS_TYPE.IPV4_ADDR_RANGE || s.tsType === TS_TYPE.IPV6_ADDR_RANGE) {
            throw new RangeError(`TS: raw selector of type ${s.tsType} is not a whole selector of an undecoded type`);
          }
          continue;
        }
        const alen = s.tsType === TS_TYPE.IPV4_ADDR_RANGE ? IPV4_ID_LEN : s.tsType === TS_TYPE.IPV6_ADDR_RANGE ? IPV6_ID_LEN : -1;
        if (alen < 0) throw new RangeError(`TS: range selector of type ${String(s.tsType)}`);
        u8(s.ipProtocol, 'TS: IP protocol');
        u16(s.startPort, 'TS: start port');
        u16(s.endPort, 'TS: end port');
        bytes(s.startAddress, 'TS: start address');
        bytes(s.endAddress, 'TS: end address');
        if (s.startAddress.length !== alen || s.endAddress.length !== alen) {
          throw new RangeError(`TS: type ${s.tsType} needs ${alen}-byte addresses`);
        }
      }
      break;
    case 'cp':
      u8(p.cfgType, 'CP: type');
      for (const a of p.attributes) {
        if (!Number.isInteger(a.type) || a.type < 0 || a.type > CFG_ATTR_TYPE_MASK) throw new RangeError(`CP: attribute type ${a.type} is not 0..32767`);
        bytes(a.value, 'CP: attribute value');
        u16(a.value.length, 'CP: attribute length');
      }
      break;
    case 'sk':
      u8(p.innerType, 'SK: inner type');
      bytes(p.body, 'SK: body');
      break;
    case 'raw':
      u8(p.type, 'payload type');
      if (p.type === PAYLOAD.SK || isDecodedType(p.type)) throw new RangeError(`raw payload of decoded type ${p.type}`);
      bytes(p.body, 'payload body');
      break;
  }
  const n = bodyLength(p);
  if (n > MAX_BODY_LEN) throw new RangeError(`${p.kind}: body of ${n} bytes exceeds ${MAX_BODY_LEN}`);
}

// ---------------------------------------------------------------------------------------------
// Helpers for building and reading payloads

/** keyLengthOf is a transform's Key Length attribute in bits, or undefined when it has none. */
export function keyLengthOf(t: Transform): number | undefined {
  for (const a of t.attributes) if (a.type === TRANSFORM_ATTR.KEY_LENGTH && typeof a.value === 'number') return a.value;
  return undefined;
}

/** transform builds a Transform, with a Key Length attribute (TV, bits) when keyLengthBits is given. */
export function transform(type: number, id: number, keyLengthBits?: number): Transform {
  return { type, id, attributes: keyLengthBits === undefined ? [] : [{ type: TRANSFORM_ATTR.KEY_LENGTH, value: keyLengthBits }] };
}

/** notify builds a Notify about the IKE SA (protocol NONE, no SPI) with optional data. */
export function notify(notifyType: number, data: Uint8Array = new Uint8Array(0)): NotifyPayload {
  return { kind: 'notify', protocol: 0, spi: new Uint8Array(0), notifyType, data };
}

/** readSpi32 reads a 4-byte SPI (ESP/AH) as an unsigned number, or undefined for another size. */
export function readSpi32(spi: Uint8Array): number | undefined {
  return spi.length === 4 ? readU32(spi, 0) : undefined;
}

/** spi32 encodes an ESP/AH SPI number as 4 bytes. */
export function spi32(spi: number): Uint8Array {
  if (!Number.isInteger(spi) || spi < 0 || spi > 0xffffffff) throw new RangeError(`SPI ${spi} is not 32-bit`);
  const b = new Uint8Array(4);
  writeU32(b, 0, spi);
  return b;
}
