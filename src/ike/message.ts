/**
 * message.ts: the IKEv2 message (RFC 7296 §3.1, §3.2): the fixed header and the chain of
 * generic payloads. Pure functions; no sockets, no state, no keys (sk.ts opens the Encrypted
 * payload, the state machine decides what a message means).
 *
 * IKE header (28 bytes):
 *
 *                        1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  IKE_OFFSET_SPI_I = 0
 *   |                       IKE SA Initiator's SPI                  |
 *   |                                                               |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  IKE_OFFSET_SPI_R = 8
 *   |                       IKE SA Responder's SPI                  |
 *   |                                                               |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  IKE_OFFSET_NEXT_PAYLOAD = 16
 *   |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |  (version 17, exchange 18, flags 19)
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  IKE_OFFSET_MESSAGE_ID = 20
 *   |                          Message ID                           |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  IKE_OFFSET_LENGTH = 24
 *   |                            Length                             |  (whole message, header included)
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   Flags:  |X|X|R|V|I|X|X|X|   R response, V higher version, I sent by the original initiator
 *
 * Each payload starts with the generic payload header (4 bytes):
 *
 *   | Next Payload  |C|  RESERVED   |         Payload Length        |  (length includes these 4 bytes)
 *
 * The header's Next Payload names the first payload, each payload's Next Payload the one after
 * it, 0 ends the chain. The Encrypted payload (SK) must be last; its Next Payload field names
 * the first payload *inside* it instead.
 *
 * parseIkeMessage checks, in this order, and returns the first failure as an IkeParseError
 * value (it never throws on packet bytes):
 *   1. at least 28 bytes                                                   -> 'truncated'
 *   2. major version 2 (minor version ignored, RFC 7296 §2.5)               -> 'bad-version'
 *   3. Length field equals the bytes given (one message per datagram)       -> 'truncated' / 'bad-length'
 *   4. the chain, payload by payload:
 *        at most IKE_MAX_PAYLOADS payloads                                   -> 'too-many-payloads'
 *        a 4-byte header is there when Next Payload promised one           -> 'truncated-chain'
 *        Payload Length >= 4 and inside the message                        -> 'bad-payload-length'
 *        SK ends exactly where the message does                            -> 'sk-not-last'
 *        a decoded type's body is well formed (payloads.ts)                -> 'malformed'
 *        an undecoded type with the critical bit set                       -> 'unsupported-critical'
 *        (undecoded, not critical: kept as a RawPayload and skipped)
 *   5. nothing after the payload whose Next Payload is 0                    -> 'trailing-bytes'
 * Payload Length >= 4 means every step moves forward: the chain cannot loop, and the work is
 * linear in the message length. sk.ts adds 'no-sk', 'sk-truncated', 'sk-auth',
 * 'sk-bad-padding', and parses the decrypted chain with parsePayloadChain ('nested-sk' for an
 * SK inside an SK).
 */
import { copyBytes, readU16, readU32, writeU16, writeU32 } from '../packet/bytes.js';
import { NOTIFY, PAYLOAD } from './constants.js';
import { decodePayloadBody, encodePayloadBody, isDecodedType, payloadBodyLength, payloadTypeOf } from './payloads.js';
import type { Payload } from './payloads.js';

/** IKE_HEADER_LEN is the fixed IKE header. */
export const IKE_HEADER_LEN = 28;
/** IKE_OFFSET_SPI_I is the initiator's SPI (8 bytes). */
export const IKE_OFFSET_SPI_I = 0;
/** IKE_OFFSET_SPI_R is the responder's SPI (8 bytes, zero in the first IKE_SA_INIT request). */
export const IKE_OFFSET_SPI_R = 8;
/** IKE_OFFSET_NEXT_PAYLOAD is the type of the first payload. */
export const IKE_OFFSET_NEXT_PAYLOAD = 16;
/** IKE_OFFSET_VERSION is MjVer (high nibble) and MnVer (low nibble). */
export const IKE_OFFSET_VERSION = 17;
/** IKE_OFFSET_EXCHANGE is the exchange type. */
export const IKE_OFFSET_EXCHANGE = 18;
/** IKE_OFFSET_FLAGS is the flags byte. */
export const IKE_OFFSET_FLAGS = 19;
/** IKE_OFFSET_MESSAGE_ID is the 32-bit message ID. */
export const IKE_OFFSET_MESSAGE_ID = 20;
/** IKE_OFFSET_LENGTH is the 32-bit length of the whole message. */
export const IKE_OFFSET_LENGTH = 24;
/** IKE_SPI_LEN is the length of an IKE SA SPI. */
export const IKE_SPI_LEN = 8;
/** IKE_MAJOR_VERSION is the major version this codec speaks. */
export const IKE_MAJOR_VERSION = 2;
/** IKE_VERSION_BYTE is MjVer 2, MnVer 0 as written. */
export const IKE_VERSION_BYTE = 0x20;
/** FLAG_RESPONSE (R) marks a response. */
export const FLAG_RESPONSE = 0x20;
/** FLAG_VERSION (V) says the sender could speak a higher major version. */
export const FLAG_VERSION = 0x10;
/** FLAG_INITIATOR (I) marks a message sent by the original initiator of the IKE SA. */
export const FLAG_INITIATOR = 0x08;

/** GENERIC_HEADER_LEN is the generic payload header. */
export const GENERIC_HEADER_LEN = 4;
/** PAYLOAD_OFFSET_NEXT is the Next Payload field of the generic header. */
export const PAYLOAD_OFFSET_NEXT = 0;
/** PAYLOAD_OFFSET_FLAGS holds the critical bit. */
export const PAYLOAD_OFFSET_FLAGS = 1;
/** PAYLOAD_OFFSET_LENGTH is the 16-bit Payload Length (header included). */
export const PAYLOAD_OFFSET_LENGTH = 2;
/** PAYLOAD_CRITICAL is the C bit. */
export const PAYLOAD_CRITICAL = 0x80;

/**
 * IKE_MAX_PAYLOADS bounds the payloads of one chain (outer or inside SK). A real IKE_SA_INIT
 * has about ten, an IKE_AUTH with certificates about fifteen; 128 leaves room for vendor IDs
 * and many Delete/Notify payloads while stopping a 64 KB message of 4-byte payloads early.
 */
export const IKE_MAX_PAYLOADS = 128;

/** IkeHeader is the IKE header without the fields the codec derives (next payload, length). */
export interface IkeHeader {
  /** spiI is the initiator's SPI (never 0 on the wire). */
  spiI: bigint;
  /** spiR is the responder's SPI (0 in the first IKE_SA_INIT request). */
  spiR: bigint;
  /** exchangeType is an EXCHANGE value. */
  exchangeType: number;
  /** initiator is the I flag: sent by the original initiator of the IKE SA. */
  initiator: boolean;
  /** response is the R flag. */
  response: boolean;
  /** higherVersion is the V flag (false for this implementation's own messages). */
  higherVersion: boolean;
  messageId: number;
}

/** IkeMessage is a header and its payloads, in order. An SK payload, if any, is last. */
export interface IkeMessage {
  header: IkeHeader;
  payloads: Payload[];
}

/**
 * ParsedIkeMessage is what parseIkeMessage returns. All byte fields (of the payloads too) are
 * views into `bytes`, parseIkeMessage's own copy of the message: never into the caller's buffer,
 * which may be reused for the next datagram as soon as parseIkeMessage returns.
 */
export interface ParsedIkeMessage extends IkeMessage {
  /** bytes is the whole message as received (the IKE_SA_INIT message signed by AUTH; the SK AAD). */
  bytes: Uint8Array;
  /** bodies[i] is payloads[i]'s body exactly as received (RESERVED bytes included: AUTH signs the ID body). */
  bodies: Uint8Array[];
  /** skOffset is where the SK payload's generic header starts in bytes, or -1 if there is none. */
  skOffset: number;
}

/** PayloadChain is a parsed chain of payloads (a message's, or the inside of an SK payload). */
export interface PayloadChain {
  payloads: Payload[];
  bodies: Uint8Array[];
  /** skOffset is the SK payload's offset in the buffer parsed, or -1. */
  skOffset: number;
}

/** IKE_PARSE_REASONS names every reason a message is refused; see the module comment for the order. */
export const IKE_PARSE_REASONS = [
  'truncated',            // fewer than 28 bytes, or fewer than the Length field says
  'bad-version',          // major version is not 2
  'bad-length',           // Length field < 28 or shorter than the datagram (bytes after the message)
  'too-many-payloads',    // more than IKE_MAX_PAYLOADS payloads in one chain
  'truncated-chain',      // Next Payload announces a payload but the message (or SK plaintext) has ended
  'bad-payload-length',   // Payload Length < 4 or past the end of the message
  'trailing-bytes',       // bytes after the last payload (Next Payload 0)
  'sk-not-last',          // payloads or bytes after the Encrypted payload
  'nested-sk',            // an Encrypted payload inside an Encrypted payload
  'malformed',            // a decoded payload type whose body breaks its own layout (payloads.ts)
  'unsupported-critical', // unknown payload type with the critical bit set (RFC 7296 §2.5)
  'no-sk',                // sk.ts: the message has no Encrypted payload to open
  'sk-truncated',         // sk.ts: SK body shorter than IV + pad length + ICV
  'sk-auth',              // sk.ts: ICV did not verify (wrong key, or any bit of the message changed)
  'sk-bad-padding',       // sk.ts: Pad Length larger than the decrypted plaintext
] as const;

/** IkeParseReason is one of IKE_PARSE_REASONS. */
export type IkeParseReason = (typeof IKE_PARSE_REASONS)[number];

/** IkeParseError is a refused message: a value, never thrown. */
export interface IkeParseError {
  readonly reason: IkeParseReason;
  /** payloadType is the payload the reason is about (0 for header-level reasons). */
  readonly payloadType: number;
  /** detail is one line for the log. */
  readonly detail: string;
  /** header is the message's header when the 28 bytes were there (for an answer, a log line). */
  readonly header?: IkeHeader;
  /** majorVersion is the version received, for 'bad-version'. */
  readonly majorVersion?: number;
}

/** isIkeParseError tells a refused message from a parsed one. */
export function isIkeParseError(r: object): r is IkeParseError {
  return 'reason' in r;
}

function fail(reason: IkeParseReason, payloadType: number, detail: string, header?: IkeHeader, majorVersion?: number): IkeParseError {
  const e: { -readonly [K in keyof IkeParseError]: IkeParseError[K] } = { reason, payloadType, detail };
  if (header !== undefined) e.header = header;
  if (majorVersion !== undefined) e.majorVersion = majorVersion;
  return e;
}

/** IkeWireHeader is the header with the fields as they were on the wire. */
export interface IkeWireHeader {
  header: IkeHeader;
  nextPayload: number;
  majorVersion: number;
  minorVersion: number;
  /** length is the Length field (not checked against anything here). */
  length: number;
}

/**
 * parseIkeHeader reads the 28-byte header at buf[off] of a datagram of len bytes, without
 * checking the version or the length: for a dispatcher that needs the SPIs first.
 * Returns 'truncated' (as an IkeParseError) when fewer than 28 bytes are there.
 */
export function parseIkeHeader(buf: Uint8Array, off: number, len: number): IkeWireHeader | IkeParseError {
  if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len < 0 || off + len > buf.length) {
    return fail('truncated', 0, 'span outside the buffer');
  }
  if (len < IKE_HEADER_LEN) return fail('truncated', 0, `${len} bytes, shorter than the ${IKE_HEADER_LEN}-byte header`);
  const flags = buf[off + IKE_OFFSET_FLAGS];
  const version = buf[off + IKE_OFFSET_VERSION];
  return {
    header: {
      spiI: readU64(buf, off + IKE_OFFSET_SPI_I),
      spiR: readU64(buf, off + IKE_OFFSET_SPI_R),
      exchangeType: buf[off + IKE_OFFSET_EXCHANGE],
      initiator: (flags & FLAG_INITIATOR) !== 0,
      response: (flags & FLAG_RESPONSE) !== 0,
      higherVersion: (flags & FLAG_VERSION) !== 0,
      messageId: readU32(buf, off + IKE_OFFSET_MESSAGE_ID),
    },
    nextPayload: buf[off + IKE_OFFSET_NEXT_PAYLOAD],
    majorVersion: version >>> 4,
    minorVersion: version & 0x0f,
    length: readU32(buf, off + IKE_OFFSET_LENGTH),
  };
}

/**
 * parseIkeMessage parses the IKE message buf[off, off+len) (the UDP payload, after any non-ESP
 * marker). Returns the message, or an IkeParseError saying why not. Never throws for any bytes;
 * the result does not alias buf (see ParsedIkeMessage).
 */
export function parseIkeMessage(buf: Uint8Array, off: number, len: number): ParsedIkeMessage | IkeParseError {
  const w = parseIkeHeader(buf, off, len);
  if (isIkeParseError(w)) return w;
  const h = w.header;
  if (w.majorVersion !== IKE_MAJOR_VERSION) {
    return fail('bad-version', 0, `major version ${w.majorVersion}`, h, w.majorVersion);
  }
  if (w.length > len) return fail('truncated', 0, `Length field ${w.length}, only ${len} bytes`, h);
  if (w.length < IKE_HEADER_LEN || w.length < len) return fail('bad-length', 0, `Length field ${w.length} in a ${len}-byte datagram`, h);
  const bytes = copyBytes(buf, off, off + len);
  const chain = parsePayloadChain(bytes, IKE_HEADER_LEN, len - IKE_HEADER_LEN, w.nextPayload, true);
  if (isIkeParseError(chain)) return fail(chain.reason, chain.payloadType, chain.detail, h);
  return { header: h, payloads: chain.payloads, bytes, bodies: chain.bodies, skOffset: chain.skOffset };
}

/**
 * parsePayloadChain parses the payloads in buf[off, off+len), the first of type firstType (0:
 * none). allowSk says whether an SK payload may end the chain (not inside an SK). The result's
 * byte fields are views into buf. Never throws.
 */
export function parsePayloadChain(buf: Uint8Array, off: number, len: number, firstType: number, allowSk: boolean): PayloadChain | IkeParseError {
  if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len < 0 || off + len > buf.length) {
    return fail('truncated-chain', firstType, 'span outside the buffer');
  }
  const end = off + len;
  const payloads: Payload[] = [];
  const bodies: Uint8Array[] = [];
  let p = off;
  let type = firstType;
  while (type !== PAYLOAD.NONE) {
    if (payloads.length === IKE_MAX_PAYLOADS) return fail('too-many-payloads', type, `more than ${IKE_MAX_PAYLOADS} payloads`);
    if (end - p < GENERIC_HEADER_LEN) {
      return fail('truncated-chain', type, `payload ${payloads.length + 1} (type ${type}) announced, ${end - p} bytes left`);
    }
    const next = buf[p + PAYLOAD_OFFSET_NEXT];
    const critical = (buf[p + PAYLOAD_OFFSET_FLAGS] & PAYLOAD_CRITICAL) !== 0;
    const plen = readU16(buf, p + PAYLOAD_OFFSET_LENGTH);
    if (plen < GENERIC_HEADER_LEN || plen > end - p) {
      return fail('bad-payload-length', type, `payload ${payloads.length + 1} (type ${type}): length ${plen}, ${end - p} bytes left`);
    }
    const bodyOff = p + GENERIC_HEADER_LEN;
    const bodyLen = plen - GENERIC_HEADER_LEN;
    const body = buf.subarray(bodyOff, bodyOff + bodyLen);
    if (type === PAYLOAD.SK) {
      if (!allowSk) return fail('nested-sk', type, 'an Encrypted payload inside an Encrypted payload');
      if (p + plen !== end) return fail('sk-not-last', type, `${end - p - plen} bytes after the Encrypted payload`);
      payloads.push({ kind: 'sk', innerType: next, body });
      bodies.push(body);
      return { payloads, bodies, skOffset: p };
    }
    if (isDecodedType(type)) {
      const d = decodePayloadBody(type, buf, bodyOff, bodyLen);
      if (typeof d === 'string') return fail('malformed', type, d);
      payloads.push(d);
    } else if (critical) {
      return fail('unsupported-critical', type, `payload type ${type} is critical and not understood`);
    } else {
      payloads.push({ kind: 'raw', type, critical, body });
    }
    bodies.push(body);
    p += plen;
    type = next;
  }
  if (p !== end) return fail('trailing-bytes', 0, `${end - p} bytes after the last payload`);
  return { payloads, bodies, skOffset: -1 };
}

/** readU64 reads a big-endian 64-bit value at buf[off] (index relative to the view). */
function readU64(buf: Uint8Array, off: number): bigint {
  return (BigInt(readU32(buf, off)) << 32n) | BigInt(readU32(buf, off + 4));
}

/** writeU64 writes v (0 <= v < 2^64) big-endian at buf[off]. */
function writeU64(buf: Uint8Array, off: number, v: bigint): void {
  writeU32(buf, off, Number(v >> 32n));
  writeU32(buf, off + 4, Number(v & 0xffffffffn));
}

// ---------------------------------------------------------------------------------------------
// Encoding (control plane: RangeError for values that do not fit)

/** checkHeader throws RangeError unless every header field fits its wire field. */
export function checkHeader(h: IkeHeader): void {
  for (const [name, v] of [['spiI', h.spiI], ['spiR', h.spiR]] as const) {
    if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`${name} ${String(v)} is not 64-bit`);
  }
  if (!Number.isInteger(h.exchangeType) || h.exchangeType < 0 || h.exchangeType > 0xff) throw new RangeError(`exchange type ${h.exchangeType}`);
  if (!Number.isInteger(h.messageId) || h.messageId < 0 || h.messageId > 0xffffffff) throw new RangeError(`message ID ${h.messageId}`);
}

/**
 * writeIkeHeader writes the 28-byte header at buf[off] with the given Next Payload and Length.
 * Throws RangeError if a field does not fit or buf has no room.
 */
export function writeIkeHeader(h: IkeHeader, nextPayload: number, length: number, buf: Uint8Array, off: number): void {
  checkHeader(h);
  if (!Number.isInteger(length) || length < IKE_HEADER_LEN || length > 0xffffffff) throw new RangeError(`message length ${length}`);
  if (!Number.isInteger(off) || off < 0 || off + IKE_HEADER_LEN > buf.length) throw new RangeError(`no room for the IKE header at ${off}`);
  writeU64(buf, off + IKE_OFFSET_SPI_I, h.spiI);
  writeU64(buf, off + IKE_OFFSET_SPI_R, h.spiR);
  buf[off + IKE_OFFSET_NEXT_PAYLOAD] = nextPayload;
  buf[off + IKE_OFFSET_VERSION] = IKE_VERSION_BYTE;
  buf[off + IKE_OFFSET_EXCHANGE] = h.exchangeType;
  buf[off + IKE_OFFSET_FLAGS] = (h.response ? FLAG_RESPONSE : 0) | (h.higherVersion ? FLAG_VERSION : 0) | (h.initiator ? FLAG_INITIATOR : 0);
  writeU32(buf, off + IKE_OFFSET_MESSAGE_ID, h.messageId);
  writeU32(buf, off + IKE_OFFSET_LENGTH, length);
}

/** payloadChainLength is the encoded length of a chain: generic headers plus bodies. Throws RangeError like encodePayloadBody. */
export function payloadChainLength(payloads: readonly Payload[]): number {
  let n = 0;
  for (const p of payloads) n += GENERIC_HEADER_LEN + payloadBodyLength(p);
  return n;
}

/**
 * encodePayloadChain writes payloads at buf[off] with their generic headers, chained by Next
 * Payload, and returns the bytes written. allowSk false refuses an SK payload (inside an SK);
 * an SK payload anywhere but last is refused too. Only a RawPayload's critical bit is written
 * (RFC 7296 §3.2: zero for the payload types RFC 7296 defines). Throws RangeError.
 */
export function encodePayloadChain(payloads: readonly Payload[], buf: Uint8Array, off: number, allowSk: boolean): number {
  if (payloads.length > IKE_MAX_PAYLOADS) throw new RangeError(`${payloads.length} payloads, more than ${IKE_MAX_PAYLOADS}`);
  let p = off;
  payloads.forEach((pl, i) => {
    if (pl.kind === 'sk' && (!allowSk || i !== payloads.length - 1)) {
      throw new RangeError(allowSk ? 'the Encrypted payload must be last' : 'an Encrypted payload inside an Encrypted payload');
    }
    if (!Number.isInteger(p) || p < 0 || p + GENERIC_HEADER_LEN > buf.length) throw new RangeError(`no room for a payload header at ${p}`);
    const n = encodePayloadBody(pl, buf, p + GENERIC_HEADER_LEN);
    const following: Payload | undefined = payloads[i + 1];
    buf[p + PAYLOAD_OFFSET_NEXT] = pl.kind === 'sk' ? pl.innerType : following === undefined ? PAYLOAD.NONE : payloadTypeOf(following);
    buf[p + PAYLOAD_OFFSET_FLAGS] = pl.kind === 'raw' && pl.critical ? PAYLOAD_CRITICAL : 0;
    writeU16(buf, p + PAYLOAD_OFFSET_LENGTH, GENERIC_HEADER_LEN + n);
    p += GENERIC_HEADER_LEN + n;
  });
  return p - off;
}

/** ikeMessageLength is the encoded length of m. Throws RangeError like encodeIkeMessage. */
export function ikeMessageLength(m: IkeMessage): number {
  return IKE_HEADER_LEN + payloadChainLength(m.payloads);
}

/** encodeIkeMessage writes m at buf[off] and returns its length. Throws RangeError if m does not fit the wire or buf. */
export function encodeIkeMessage(m: IkeMessage, buf: Uint8Array, off: number): number {
  const len = ikeMessageLength(m);
  if (!Number.isInteger(off) || off < 0 || off + len > buf.length) throw new RangeError(`no room for a ${len}-byte message at ${off}`);
  const first: Payload | undefined = m.payloads[0];
  writeIkeHeader(m.header, first === undefined ? PAYLOAD.NONE : payloadTypeOf(first), len, buf, off);
  encodePayloadChain(m.payloads, buf, off + IKE_HEADER_LEN, true);
  return len;
}

/** serializeIkeMessage encodes m into a new Buffer of exactly its length. Throws RangeError like encodeIkeMessage. */
export function serializeIkeMessage(m: IkeMessage): Buffer {
  const b = Buffer.alloc(ikeMessageLength(m));
  encodeIkeMessage(m, b, 0);
  return b;
}

/** ErrorNotify is the Notify a refused request may be answered with. */
export interface ErrorNotify {
  notifyType: number;
  data: Uint8Array;
}

/**
 * notifyForParseError is the Notify RFC 7296 suggests for a refused request, or undefined when
 * it should be dropped without an answer: UNSUPPORTED_CRITICAL_PAYLOAD (data: the one-byte
 * payload type, §3.10.1), INVALID_MAJOR_VERSION for a *higher* major version (§2.5; IKEv1 is
 * just dropped), INVALID_SYNTAX for the structural reasons (inside an authenticated SK too),
 * nothing for 'truncated' (no header to answer), 'no-sk', 'sk-truncated' and 'sk-auth'
 * (unauthenticated: discard silently, §2.21.2). Whether an
 * answer may be sent at all (only to requests; protected once the IKE SA exists, §2.21) is the
 * state machine's call.
 */
export function notifyForParseError(e: IkeParseError): ErrorNotify | undefined {
  switch (e.reason) {
    case 'unsupported-critical':
      return { notifyType: NOTIFY.UNSUPPORTED_CRITICAL_PAYLOAD, data: Uint8Array.of(e.payloadType & 0xff) };
    case 'bad-version':
      return e.majorVersion !== undefined && e.majorVersion > IKE_MAJOR_VERSION
        ? { notifyType: NOTIFY.INVALID_MAJOR_VERSION, data: new Uint8Array(0) } : undefined;
    case 'truncated':
    case 'no-sk':
    case 'sk-truncated':
    case 'sk-auth':
      return undefined;
    case 'bad-length':
    case 'too-many-payloads':
    case 'truncated-chain':
    case 'bad-payload-length':
    case 'trailing-bytes':
    case 'sk-not-last':
    case 'nested-sk':
    case 'malformed':
    case 'sk-bad-padding':
      return { notifyType: NOTIFY.INVALID_SYNTAX, data: new Uint8Array(0) };
  }
}
