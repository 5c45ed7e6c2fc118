/**
 * constants.ts: the IANA numbers IKEv2 puts on the wire (RFC 7296 §3, the "Internet Key Exchange
 * Version 2 (IKEv2) Parameters" registry), in one place. Byte offsets and sizes are not here:
 * they sit next to the layout they describe (message.ts for the header and the generic payload
 * header, payloads.ts for each payload body, sk.ts for the Encrypted payload).
 *
 * Each registry is a frozen object from RFC name (without its common prefix) to number, so
 * `ENCR.AES_GCM_16` is ENCR_AES_GCM_16 = 20 and `NOTIFY.NO_PROPOSAL_CHOSEN` is 14. nameOf turns a
 * number back into a name for logs. Only what espgate needs, or may meet from a peer, is listed;
 * any other value still parses (as a number) and is kept.
 */

/** PAYLOAD is the Next Payload registry (RFC 7296 §3.2). */
export const PAYLOAD = {
  NONE: 0,
  SA: 33,
  KE: 34,
  IDI: 35,
  IDR: 36,
  CERT: 37,
  CERTREQ: 38,
  AUTH: 39,
  NONCE: 40,
  NOTIFY: 41,
  DELETE: 42,
  VENDOR_ID: 43,
  TSI: 44,
  TSR: 45,
  SK: 46,
  CP: 47,
  EAP: 48,
  /** SKF is the Encrypted Fragment payload (RFC 7383); this codec keeps it raw. */
  SKF: 53,
} as const;

/** EXCHANGE is the Exchange Type registry (RFC 7296 §3.1). */
export const EXCHANGE = {
  IKE_SA_INIT: 34,
  IKE_AUTH: 35,
  CREATE_CHILD_SA: 36,
  INFORMATIONAL: 37,
} as const;

/** TRANSFORM is the Transform Type registry (RFC 7296 §3.3.2); DH is "Key Exchange Method" since RFC 9370. */
export const TRANSFORM = {
  ENCR: 1,
  PRF: 2,
  INTEG: 3,
  DH: 4,
  ESN: 5,
} as const;

/** ENCR lists Transform Type 1 IDs (ENCR_*). The AEAD ones take a Key Length attribute. */
export const ENCR = {
  AES_CBC: 12,
  AES_CTR: 13,
  AES_CCM_8: 14,
  AES_CCM_12: 15,
  AES_CCM_16: 16,
  AES_GCM_8: 18,
  AES_GCM_12: 19,
  /** AES_GCM_16 is ENCR_AES_GCM_16 (RFC 5282): 16-byte ICV, 8-byte IV, 4-byte salt. */
  AES_GCM_16: 20,
  /** CHACHA20_POLY1305 is ENCR_CHACHA20_POLY1305 (RFC 7634), same Encrypted payload shape. */
  CHACHA20_POLY1305: 28,
} as const;

/** PRF lists Transform Type 2 IDs (PRF_*). */
export const PRF = {
  HMAC_MD5: 1,
  HMAC_SHA1: 2,
  AES128_XCBC: 4,
  HMAC_SHA2_256: 5,
  HMAC_SHA2_384: 6,
  HMAC_SHA2_512: 7,
} as const;

/** INTEG lists Transform Type 3 IDs (AUTH_*); NONE is what goes with an AEAD, or is left out. */
export const INTEG = {
  NONE: 0,
  HMAC_SHA1_96: 2,
  AES_XCBC_96: 5,
  HMAC_SHA2_256_128: 12,
  HMAC_SHA2_384_192: 13,
  HMAC_SHA2_512_256: 14,
} as const;

/** DH lists Transform Type 4 IDs (Diffie-Hellman groups, RFC 7296 §3.3.2, RFC 5903, RFC 8031). */
export const DH = {
  NONE: 0,
  MODP_2048: 14,
  MODP_3072: 15,
  MODP_4096: 16,
  ECP_256: 19,
  ECP_384: 20,
  ECP_521: 21,
  CURVE25519: 31,
  CURVE448: 32,
} as const;

/** ESN lists Transform Type 5 IDs (Extended Sequence Numbers). */
export const ESN = {
  NO_ESN: 0,
  ESN: 1,
} as const;

/** TRANSFORM_ATTR lists transform attribute types (RFC 7296 §3.3.5); Key Length is TV, in bits. */
export const TRANSFORM_ATTR = {
  KEY_LENGTH: 14,
} as const;

/** PROTOCOL is the Protocol ID of proposals, Notify and Delete payloads (RFC 7296 §3.3.1). */
export const PROTOCOL = {
  /** NONE is what a Notify about no particular SA carries (SPI Size 0). */
  NONE: 0,
  IKE: 1,
  AH: 2,
  ESP: 3,
} as const;

/** ID lists Identification types (RFC 7296 §3.5). */
export const ID = {
  IPV4_ADDR: 1,
  FQDN: 2,
  RFC822_ADDR: 3,
  IPV6_ADDR: 5,
  DER_ASN1_DN: 9,
  DER_ASN1_GN: 10,
  KEY_ID: 11,
} as const;

/** AUTH_METHOD lists Authentication methods (RFC 7296 §3.8, RFC 4754, RFC 7427). */
export const AUTH_METHOD = {
  RSA_SIG: 1,
  SHARED_KEY_MIC: 2,
  DSS_SIG: 3,
  ECDSA_SHA256_P256: 9,
  ECDSA_SHA384_P384: 10,
  ECDSA_SHA512_P521: 11,
  DIGITAL_SIGNATURE: 14,
} as const;

/**
 * NOTIFY lists Notify Message Types (RFC 7296 §3.10.1 and the registry). Types below 16384 are
 * errors, from 16384 up status (NOTIFY_STATUS_MIN); an unrecognised error type in a response
 * means the request failed, an unrecognised status type is ignored.
 */
export const NOTIFY = {
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  INVALID_IKE_SPI: 4,
  INVALID_MAJOR_VERSION: 5,
  INVALID_SYNTAX: 7,
  INVALID_MESSAGE_ID: 9,
  INVALID_SPI: 11,
  NO_PROPOSAL_CHOSEN: 14,
  INVALID_KE_PAYLOAD: 17,
  AUTHENTICATION_FAILED: 24,
  SINGLE_PAIR_REQUIRED: 34,
  NO_ADDITIONAL_SAS: 35,
  INTERNAL_ADDRESS_FAILURE: 36,
  FAILED_CP_REQUIRED: 37,
  TS_UNACCEPTABLE: 38,
  INVALID_SELECTORS: 39,
  TEMPORARY_FAILURE: 43,
  CHILD_SA_NOT_FOUND: 44,
  INITIAL_CONTACT: 16384,
  SET_WINDOW_SIZE: 16385,
  ADDITIONAL_TS_POSSIBLE: 16386,
  IPCOMP_SUPPORTED: 16387,
  NAT_DETECTION_SOURCE_IP: 16388,
  NAT_DETECTION_DESTINATION_IP: 16389,
  COOKIE: 16390,
  USE_TRANSPORT_MODE: 16391,
  HTTP_CERT_LOOKUP_SUPPORTED: 16392,
  REKEY_SA: 16393,
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  MOBIKE_SUPPORTED: 16396,
  MULTIPLE_AUTH_SUPPORTED: 16404,
  IKEV2_FRAGMENTATION_SUPPORTED: 16430,
  SIGNATURE_HASH_ALGORITHMS: 16431,
} as const;

/** NOTIFY_STATUS_MIN is the first status Notify type; smaller types are errors. */
export const NOTIFY_STATUS_MIN = 16384;

/** TS_TYPE lists Traffic Selector types (RFC 7296 §3.13.1). */
export const TS_TYPE = {
  IPV4_ADDR_RANGE: 7,
  IPV6_ADDR_RANGE: 8,
} as const;

/** CFG_TYPE lists Configuration payload types (RFC 7296 §3.15). */
export const CFG_TYPE = {
  REQUEST: 1,
  REPLY: 2,
  SET: 3,
  ACK: 4,
} as const;

/** CFG_ATTR lists the Configuration attributes of RFC 7296 §3.15.1. */
export const CFG_ATTR = {
  INTERNAL_IP4_ADDRESS: 1,
  INTERNAL_IP4_NETMASK: 2,
  INTERNAL_IP4_DNS: 3,
  INTERNAL_IP4_NBNS: 4,
  INTERNAL_IP4_DHCP: 6,
  APPLICATION_VERSION: 7,
  INTERNAL_IP6_ADDRESS: 8,
  INTERNAL_IP6_DNS: 10,
  INTERNAL_IP6_DHCP: 12,
  INTERNAL_IP4_SUBNET: 13,
  SUPPORTED_ATTRIBUTES: 14,
  INTERNAL_IP6_SUBNET: 15,
} as const;

/** A Registry is one of the tables above: RFC name -> number. */
export type Registry = Readonly<Record<string, number>>;

/** nameOf is the RFC name of value in registry, or the number as text ("#99") when it is not listed. */
export function nameOf(registry: Registry, value: number): string {
  for (const [k, v] of Object.entries(registry)) if (v === value) return k;
  return `#${value}`;
}
