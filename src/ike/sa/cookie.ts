/**
 * cookie.ts: stateless IKE_SA_INIT cookies (RFC 7296 §2.6), for a responder under a flood of
 * half-open SAs. The responder answers a request without a valid cookie with N(COOKIE) and keeps
 * nothing; a genuine initiator repeats its request with that notify first, and only then does
 * the responder spend a DH computation and memory on it.
 *
 *   Cookie = <VersionIDofSecret> | HMAC-SHA-256(<secret>, Ni | IPi | SPIi)      33 octets
 *            1 octet               32 octets
 *
 * This is §2.6's suggested construction with a keyed MAC in place of Hash(... | <secret>). The
 * version octet names the secret; rotate() makes a new one and keeps the previous one valid, so
 * cookies handed out just before a rotation still verify. A cookie binds the initiator's nonce,
 * address and SPI, so it cannot be replayed for another request or another source.
 *
 * One IkeCookieJar serves every responder session of a daemon; the driver decides when cookies
 * are required (a count of half-open SAs over a threshold) and when to rotate (e.g. every few
 * minutes while they are). Not safe for concurrent use from several threads (there are none).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** COOKIE_SECRET_LEN is the secret's length (the HMAC-SHA-256 key). */
export const COOKIE_SECRET_LEN = 32;
/** COOKIE_LEN is the cookie: version octet + HMAC-SHA-256. */
export const COOKIE_LEN = 1 + 32;
/** COOKIE_MIN_LEN and COOKIE_MAX_LEN bound the COOKIE notify data any peer may send (§3.10.1). */
export const COOKIE_MIN_LEN = 1;
export const COOKIE_MAX_LEN = 64;

/** IkeCookieJar makes and checks cookies under a rotating secret. */
export class IkeCookieJar {
  readonly #random: (n: number) => Uint8Array;
  #version = 0;
  #secret: Uint8Array;
  #previous: { version: number; secret: Uint8Array } | undefined;

  /** The constructor takes the randomness for the secrets (default node:crypto randomBytes). */
  constructor(random: (n: number) => Uint8Array = randomBytes) {
    this.#random = random;
    this.#secret = Uint8Array.from(random(COOKIE_SECRET_LEN));
  }

  /** rotate makes a new secret; cookies of the one before stay valid until the next rotation. */
  rotate(): void {
    this.#previous = { version: this.#version, secret: this.#secret };
    this.#version = (this.#version + 1) & 0xff;
    this.#secret = Uint8Array.from(this.#random(COOKIE_SECRET_LEN));
  }

  /** make returns the cookie for an initiator's nonce, address (4 or 16 octets) and SPI. */
  make(ni: Uint8Array, initiatorAddress: Uint8Array, spiI: bigint): Uint8Array {
    return cookieFor(this.#version, this.#secret, ni, initiatorAddress, spiI);
  }

  /** verify says whether cookie is one this jar made for these inputs under the current or previous secret. */
  verify(cookie: Uint8Array, ni: Uint8Array, initiatorAddress: Uint8Array, spiI: bigint): boolean {
    if (cookie.length !== COOKIE_LEN) return false;
    const v = cookie[0];
    let secret: Uint8Array | undefined;
    if (v === this.#version) secret = this.#secret;
    else if (this.#previous !== undefined && v === this.#previous.version) secret = this.#previous.secret;
    if (secret === undefined) return false;
    return timingSafeEqual(cookie, cookieFor(v, secret, ni, initiatorAddress, spiI));
  }
}

function cookieFor(version: number, secret: Uint8Array, ni: Uint8Array, address: Uint8Array, spiI: bigint): Uint8Array {
  const spi = new Uint8Array(8);
  new DataView(spi.buffer).setBigUint64(0, spiI);
  const mac = createHmac('sha256', secret).update(ni).update(address).update(spi).digest();
  const out = new Uint8Array(COOKIE_LEN);
  out[0] = version;
  out.set(mac, 1);
  return out;
}
