// packet_util.h: the few packet helpers both express paths need (express.h, express_in.h), each
// the C++ twin of a TypeScript function that stays the reference (named below), and the AES-GCM
// context setup they share with gcm.cc's.

#ifndef ESPGATE_PACKET_UTIL_H_
#define ESPGATE_PACKET_UTIL_H_

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmath>

namespace espgate {

inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void PutBe16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// OnesSum is packet/checksum.ts onesSum: 16-bit big-endian words, an odd byte padded, folded.
inline uint32_t OnesSum(const uint8_t* p, size_t len) {
  uint64_t s = 0;
  size_t i = 0;
  for (; i + 1 < len; i += 2) s += Be16(p + i);
  if (i < len) s += static_cast<uint32_t>(p[i]) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

// Fold folds a ones' complement sum to 16 bits.
inline uint32_t Fold(uint64_t s) {
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

// PseudoSum is checksum.ts pseudoHeaderSum, folded: the addresses at addrs (source, then the
// destination right after it, as in both IP headers), the protocol and the transport length.
inline uint32_t PseudoSum(const uint8_t* addrs, size_t alen, int proto, uint32_t l4Len) {
  return Fold(static_cast<uint64_t>(proto) + (l4Len >> 16) + (l4Len & 0xffff) + OnesSum(addrs, 2 * alen));
}

// SetIpLength is vnet.ts setIpLength: IPv4 total length and a fresh header checksum over the l4
// header bytes, or the IPv6 payload length.
inline void SetIpLength(uint8_t* p, size_t l4, bool v4, size_t total) {
  if (!v4) {
    PutBe16(p + 4, static_cast<uint32_t>(total - 40));
    return;
  }
  PutBe16(p + 2, static_cast<uint32_t>(total));
  PutBe16(p + 10, 0);
  PutBe16(p + 10, ~OnesSum(p, l4) & 0xffff);
}

// NowMs is Date.now(): wall-clock milliseconds, as the engine stamps "last used".
inline double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::floor(static_cast<double>(ts.tv_sec) * 1000.0 + static_cast<double>(ts.tv_nsec) / 1e6);
}

// UpdateField is checksumUpdateField: HC' = ~(~HC + ~m + m') (RFC 1624 eqn. 3).
inline void UpdateField(uint8_t* field, uint32_t oldSum, uint32_t newSum) {
  uint32_t s = (~static_cast<uint32_t>(Be16(field)) & 0xffff) + (~oldSum & 0xffff) + (newSum & 0xffff);
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  PutBe16(field, ~s & 0xffff);
}

// PlainIp is the IP header check both express paths make of the packet p[0, len) (len >= 20):
// IPv4 not fragmented, or IPv6 (its next header taken as the transport: extension headers then
// fail SimpleShape), with the header's length field saying exactly len. Fills the transport
// offset, the protocol and the two addresses; false for anything else.
struct PlainIp {
  int family;
  size_t l4;
  int proto;
  uint8_t* src;
  uint8_t* dst;
  size_t alen;
};
inline bool ParsePlainIp(uint8_t* p, size_t len, PlainIp* o) {
  if (len < 20) return false;
  o->family = p[0] >> 4;
  if (o->family == 4) {
    size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > len || Be16(p + 2) != len || (Be16(p + 6) & 0x3fff) != 0) return false;
    o->l4 = ihl;
    o->proto = p[9];
    o->src = p + 12;
    o->dst = p + 16;
    o->alen = 4;
    return true;
  }
  if (o->family == 6) {
    if (len < 40 || static_cast<size_t>(Be16(p + 4)) + 40 != len) return false;
    o->l4 = 40;
    o->proto = p[6];
    o->src = p + 8;
    o->dst = p + 24;
    o->alen = 16;
    return true;
  }
  return false;
}

// SimpleShape is what the express paths take of an IP packet p[0, len) whose IP header they
// have checked (l4: where the transport header starts): TCP, UDP, ICMP or ICMPv6 echo, long
// enough for its header. Returns the offset of the pseudo-header checksum in the transport
// header (-1: none, ICMPv4), or -2 for anything else (errors quote addresses: the engine's).
inline int SimpleShape(const uint8_t* p, size_t len, int family, size_t l4, int proto) {
  size_t l4len = len - l4;
  if (proto == 6) return l4len >= 20 ? 16 : -2;
  if (proto == 17) return l4len >= 8 ? 6 : -2;
  if (family == 4 && proto == 1) return l4len >= 8 && (p[l4] == 0 || p[l4] == 8) ? -1 : -2;
  if (family == 6 && proto == 58) return l4len >= 8 && (p[l4] == 128 || p[l4] == 129) ? 2 : -2;
  return -2;
}

// MapAddress is steer/rewrite.ts for a SimpleShape packet: the address at addr (inside p)
// becomes to[0, alen), and the change (oldSum -> newSum, the two addresses' ones' sums) is
// folded into the IPv4 header checksum and the pseudo-header checksum at l4 + csumAt; a UDP
// "no checksum" stays 0 and a computed 0 becomes 0xFFFF.
inline void MapAddress(uint8_t* p, int family, size_t l4, int proto, int csumAt, uint8_t* addr, const uint8_t* to,
                       size_t alen, uint32_t oldSum, uint32_t newSum) {
  memcpy(addr, to, alen);
  if (family == 4) UpdateField(p + 10, oldSum, newSum);
  if (csumAt < 0) return;
  uint8_t* field = p + l4 + csumAt;
  if (proto == 17 && Be16(field) == 0) return;
  UpdateField(field, oldSum, newSum);
  if (proto == 17 && Be16(field) == 0) PutBe16(field, 0xffff);
}

// NewGcmContext returns an OpenSSL context keyed for AES-GCM with 12-byte nonces (as gcm.cc's
// GcmKey), for encryption or decryption; nullptr with *err set when the key length is not 16, 24
// or 32 bytes or OpenSSL refuses. Per packet only the nonce is set (EVP_*Init_ex with NULLs).
inline EVP_CIPHER_CTX* NewGcmContext(const uint8_t* key, size_t keyLen, bool encrypt, const char** err) {
  const EVP_CIPHER* cipher = keyLen == 16 ? EVP_aes_128_gcm() : keyLen == 24 ? EVP_aes_192_gcm()
                           : keyLen == 32 ? EVP_aes_256_gcm() : nullptr;
  if (cipher == nullptr) {
    *err = "AES-GCM key must be 16, 24 or 32 bytes";
    return nullptr;
  }
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  bool ok = ctx != nullptr && EVP_CipherInit_ex(ctx, cipher, nullptr, nullptr, nullptr, encrypt ? 1 : 0) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_CipherInit_ex(ctx, nullptr, nullptr, key, nullptr, encrypt ? 1 : 0) == 1;
  if (!ok) {
    if (ctx != nullptr) EVP_CIPHER_CTX_free(ctx);
    *err = "OpenSSL: AES-GCM context setup failed";
    return nullptr;
  }
  return ctx;
}

}  // namespace espgate

#endif  // ESPGATE_PACKET_UTIL_H_
