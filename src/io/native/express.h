// express.h: the express path for lone outbound packets, inside the TUN addon.
//
// Why: a ping, a DNS query or a lone ACK wakes the daemon for one packet. Through JavaScript that
// one packet cost ~75 us of CPU per hop at 2 ms intervals and more at 10 ms (docs/performance.md,
// "Ping RTT": V8's runtime, inline caches and N-API glue touching memory that went cold between
// packets), where the same packet in a 64-packet batch costs ~5 us. Here, when the TUN becomes
// readable, the addon reads one packet and, if it belongs to a flow the JavaScript path has
// already sent and approved, rewrites, seals and sends it without entering JavaScript at all.
//
// What it does, and nothing more (everything else goes to JavaScript, untouched):
//   - flows: exact (family, inner source, fake destination) triples that the engine learned from
//     a packet it sent itself (src/datapath/express.ts), each with the real destination and the
//     outbound SA to use. Policy (source in local.protect, destination -> peer) and the fake ->
//     real mapping are functions of these addresses and the tables, so a learned triple is
//     approved until the tables change; then the engine clears every flow.
//   - packets: IPv4 without fragmentation, IPv6 without extension headers; TCP, UDP, ICMP echo;
//     a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM) is completed first, as vnet.ts
//     completeChecksum does. Total length must equal what was read.
//   - TCP super-packets (TSO: GSO_TCPV4/GSO_TCPV6, with or without GSO_ECN) are cut into
//     segments exactly as vnet.ts gsoSplit cuts them (IPv4 id + k, sequence number + k * MSS,
//     FIN/PSH on the last only, CWR on the first only, full TCP checksum), each carrying the real
//     destination; the whole super-packet is taken or left (its segments' sequence numbers and
//     inner bytes must all fit the budget).
//   - sealed packets wait in a queue of kQueueMax slots owned here and leave with one sendmmsg
//     per Flush (the TUN addon flushes before every return to the event loop and before it
//     leaves a packet to JavaScript, so packets of a flow leave in the order they were read).
//   - the rewrite is steer/rewrite.ts's for these packets: destination fake -> real, IPv4 header
//     checksum and the pseudo-header checksum folded with RFC 1624 (a UDP "no checksum" stays 0,
//     a computed 0 becomes 0xFFFF).
//   - the seal is esp/codec.ts sealInternal with AES-GCM (RFC 4106): 32-bit sequence numbers
//     (no ESN), IV = the 64-bit sequence number, AAD = SPI || seq, padding 1, 2, 3.
//   - every decision that needs state the JavaScript side owns is a budget it hands over in the
//     SA's Float64Array: the highest sequence number the express path may use (the reserved
//     mark, the end of the sequence space, the soft and hard packet limits), and how many inner
//     bytes it may still seal before a soft or hard byte limit. Past a budget it hands the packet
//     to JavaScript, which settles the SA (reserve, expire) and hands out a new budget.
//   - counters go to the same array and are folded into the SA, peer and engine counters by the
//     engine (Engine.syncExpress): nothing is counted twice or lost.
// All checks run before the first byte changes: a packet handed to JavaScript is as it was read.
//
// Layout of an SA's state array (keep in step with src/datapath/express.ts ST_*).

#ifndef ESPGATE_EXPRESS_H_
#define ESPGATE_EXPRESS_H_

#include <napi.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/socket.h>

#include <memory>

#include "packet_util.h"

namespace espgate {

enum ExpressSt : int {
  kStLastSeq = 0,      // the last sequence number used (shared: JS writes it back after its own seals)
  kStMaxSeq = 1,       // the highest sequence number the express path may use
  kStBytesLeft = 2,    // inner bytes the express path may still seal
  kStSaPackets = 3,    // sealed here, not yet folded (SA stats)
  kStSaBytes = 4,
  kStTxPackets = 5,    // sent here, not yet folded (peer stats, engine espSent)
  kStTxBytes = 6,
  kStSendErrors = 7,   // sealed here but refused by the socket ('send-error' drops)
  kStLastMs = 8,       // Date.now() of the last seal here
  kStTunRead = 9,      // TUN packets handled here (engine tunRead)
  kStLen = 10,
};

constexpr int kExpressSas = 32;
constexpr int kExpressFlows = 128;
constexpr size_t kEspHeadroom = 16;  // SPI, sequence number, 8-byte IV
constexpr size_t kEspTailroom = 3 + 2 + 16;
constexpr int kQueueMax = 64;  // sealed packets per sendmmsg (a 64 KiB super-packet at MSS 1,388 is 48)
constexpr size_t kQueueSlot = kEspHeadroom + 9216 + kEspTailroom;  // the largest inner packet (MTU 9000) sealed
constexpr int kGsoTcpV4 = 1;
constexpr int kGsoTcpV6 = 4;
constexpr int kGsoEcn = 0x80;

struct ExpressSa {
  bool used = false;
  Napi::Reference<Napi::Float64Array> ref;  // keeps the state array alive
  double* st = nullptr;
  uint32_t spi = 0;
  uint8_t salt[4] = {0};
  EVP_CIPHER_CTX* ctx = nullptr;
  int fd = -1;
  sockaddr_storage ep{};
  socklen_t epLen = 0;
};

struct ExpressFlow {
  bool used = false;
  uint8_t family = 0;
  uint8_t src[16] = {0};
  uint8_t fake[16] = {0};
  uint8_t real[16] = {0};
  uint32_t oldSum = 0;  // ones' sum of the fake destination
  uint32_t newSum = 0;  // ones' sum of the real destination
  int sa = -1;
};

class Express {
 public:
  Express() = default;
  Express(const Express&) = delete;
  Express& operator=(const Express&) = delete;
  ~Express() { Clear(); }

  bool Armed() const { return flows_ > 0; }

  // Clear forgets every flow and SA (the engine folds the counters first).
  void Clear() {
    for (auto& s : sas_) {
      if (s.ctx != nullptr) EVP_CIPHER_CTX_free(s.ctx);
      s.ctx = nullptr;
      s.ref.Reset();
      s.st = nullptr;
      s.used = false;
    }
    for (auto& f : flows_v_) f.used = false;
    flows_ = 0;
    qn_ = 0;  // always empty here: the addon flushes before it returns to the event loop
  }

  // AddSa registers an SA in slot `slot` (0..kExpressSas-1). Returns an error text or nullptr.
  const char* AddSa(int slot, Napi::Float64Array st, uint32_t spi, const uint8_t* key, size_t keyLen,
                    const uint8_t* salt, int fd, int family, const uint8_t* ep) {
    if (slot < 0 || slot >= kExpressSas) return "SA slot out of range";
    if (st.ElementLength() < kStLen) return "state array too short";
    const char* err = nullptr;
    EVP_CIPHER_CTX* ctx = NewGcmContext(key, keyLen, true, &err);
    if (ctx == nullptr) return err;
    ExpressSa& s = sas_[slot];
    if (s.ctx != nullptr) EVP_CIPHER_CTX_free(s.ctx);
    s.ctx = ctx;
    s.ref = Napi::Persistent(st);
    s.st = st.Data();
    s.spi = spi;
    memcpy(s.salt, salt, 4);
    s.fd = fd;
    memset(&s.ep, 0, sizeof(s.ep));
    if (family == 4) {
      auto* a = reinterpret_cast<sockaddr_in*>(&s.ep);
      a->sin_family = AF_INET;
      memcpy(&a->sin_addr, ep, 4);
      s.epLen = sizeof(sockaddr_in);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&s.ep);
      a->sin6_family = AF_INET6;
      memcpy(&a->sin6_addr, ep, 16);
      s.epLen = sizeof(sockaddr_in6);
    }
    s.used = true;
    return nullptr;
  }

  // AddFlow learns (family, src, fake) -> (real, SA slot). Returns 1 added, 0 known or full.
  int AddFlow(int family, const uint8_t* src, const uint8_t* fake, const uint8_t* real, int slot) {
    if (slot < 0 || slot >= kExpressSas || !sas_[slot].used) return 0;
    size_t alen = family == 4 ? 4 : 16;
    ExpressFlow* freeSlot = nullptr;
    for (auto& f : flows_v_) {
      if (!f.used) {
        if (freeSlot == nullptr) freeSlot = &f;
        continue;
      }
      if (f.family == family && memcmp(f.fake, fake, alen) == 0 && memcmp(f.src, src, alen) == 0) return 0;
    }
    if (freeSlot == nullptr) return 0;
    ExpressFlow& f = *freeSlot;
    f.family = static_cast<uint8_t>(family);
    memcpy(f.src, src, alen);
    memcpy(f.fake, fake, alen);
    memcpy(f.real, real, alen);
    f.oldSum = OnesSum(fake, alen);
    f.newSum = OnesSum(real, alen);
    f.sa = slot;
    f.used = true;
    flows_++;
    return 1;
  }

  int Flows() const { return flows_; }

  // Try handles the packet at slot[headroom, +len) (slot has kEspTailroom after it), read with
  // virtio_net_hdr vh (nullptr without IFF_VNET_HDR). Returns true when the packet was consumed
  // (queued for Flush, or counted as a send error); false when JavaScript must take it,
  // unchanged. The caller must Flush before it returns to the event loop or hands a packet to
  // JavaScript.
  bool Try(uint8_t* slot, size_t headroom, size_t len, size_t cap, const uint8_t* vh) {
    if (headroom != kEspHeadroom || headroom + len + kEspTailroom > cap) return false;
    uint8_t* p = slot + headroom;
    bool needCsum = false;
    size_t csumStart = 0, csumOffset = 0;
    if (vh != nullptr) {
      if (vh[1] != 0) return TryGso(p, len, vh);
      needCsum = (vh[0] & 1) != 0;
      csumStart = static_cast<size_t>(vh[6]) | (static_cast<size_t>(vh[7]) << 8);
      csumOffset = static_cast<size_t>(vh[8]) | (static_cast<size_t>(vh[9]) << 8);
      if (needCsum && (csumStart + csumOffset + 2 > len || (csumOffset & 1) != 0)) return false;
    }
    if (len + kEspHeadroom + kEspTailroom > kQueueSlot) return false;
    PlainIp ip;
    if (!ParsePlainIp(p, len, &ip)) return false;
    const int family = ip.family;
    const size_t alen = ip.alen;
    int csumAt = SimpleShape(p, len, family, ip.l4, ip.proto);
    if (csumAt == -2) return false;
    const ExpressFlow* flow = Find(family, ip.src, ip.dst, alen);
    if (flow == nullptr) return false;
    ExpressSa& sa = sas_[flow->sa];
    if (!sa.used || sa.ctx == nullptr) return false;
    double* st = sa.st;
    double seq = st[kStLastSeq] + 1;
    if (!(seq <= st[kStMaxSeq]) || seq > 4294967295.0 || !(static_cast<double>(len) <= st[kStBytesLeft])) return false;

    // Committed: nothing below hands the packet back.
    if (needCsum) {
      uint8_t* field = p + csumStart + csumOffset;
      PutBe16(field, ~OnesSum(p + csumStart, len - csumStart) & 0xffff);
    }
    MapAddress(p, family, ip.l4, ip.proto, csumAt, ip.dst, flow->real, alen, flow->oldSum, flow->newSum);
    st[kStTunRead] += 1;
    uint8_t* q = Reserve(sa.fd);
    memcpy(q + kEspHeadroom, p, len);
    SealAndQueue(flow->sa, q, len, family, seq);
    StampLast(st);
    return true;
  }

  // Flush sends the queue with sendmmsg and settles each packet's counters: sent, or refused by
  // the socket (a 'send-error' drop for the engine; one failing packet costs only itself).
  void Flush() {
    int at = 0;
    // Bounded: every round sends >= 1 packet or marks one failed.
    while (at < qn_) {
      int n = sendmmsg(qfd_, &msgs_[at], static_cast<unsigned int>(qn_ - at), MSG_DONTWAIT);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) n = 0;  // counted as refused: never spin
        Settle(at, false);
        at++;
        continue;
      }
      for (int k = at; k < at + n; k++) Settle(k, true);
      at += n;
    }
    qn_ = 0;
  }

 private:
  const ExpressFlow* Find(int family, const uint8_t* src, const uint8_t* dst, size_t alen) const {
    for (const auto& f : flows_v_) {
      if (f.used && f.family == family && memcmp(f.fake, dst, alen) == 0 && memcmp(f.src, src, alen) == 0) return &f;
    }
    return nullptr;
  }

  // TryGso takes a TCP super-packet at p[0, len) (vh: its virtio_net_hdr) whole, or leaves it.
  // The checks are vnet.ts gsoSplit's; any it refuses goes to JavaScript, which drops and counts it.
  bool TryGso(uint8_t* p, size_t len, const uint8_t* vh) {
    const int type = vh[1] & ~kGsoEcn;
    if (type != kGsoTcpV4 && type != kGsoTcpV6) return false;
    const bool v4 = type == kGsoTcpV4;
    const size_t l4 = static_cast<size_t>(vh[6]) | (static_cast<size_t>(vh[7]) << 8);
    const size_t mss = static_cast<size_t>(vh[4]) | (static_cast<size_t>(vh[5]) << 8);
    if (len < 40) return false;
    if (v4) {
      // Not a fragment (a TSO packet never is; the engine's path judges anything else).
      if (p[0] >> 4 != 4 || l4 != static_cast<size_t>(p[0] & 0x0f) * 4 || l4 < 20 || p[9] != 6) return false;
      if (Be16(p + 2) != len || (Be16(p + 6) & 0x3fff) != 0) return false;
    } else {
      if (p[0] >> 4 != 6 || l4 != 40 || p[6] != 6 || static_cast<size_t>(Be16(p + 4)) + 40 != len) return false;
    }
    if (l4 + 20 > len) return false;
    const size_t hdrLen = l4 + static_cast<size_t>(p[l4 + 12] >> 4) * 4;
    if (hdrLen < l4 + 20 || hdrLen >= len || mss == 0) return false;
    const size_t n = (len - hdrLen + mss - 1) / mss;
    if (n > static_cast<size_t>(kQueueMax) || hdrLen + mss + kEspHeadroom + kEspTailroom > kQueueSlot) return false;
    const int family = v4 ? 4 : 6;
    const size_t alen = v4 ? 4 : 16;
    uint8_t* src = p + (v4 ? 12 : 8);
    uint8_t* dst = p + (v4 ? 16 : 24);
    const ExpressFlow* flow = Find(family, src, dst, alen);
    if (flow == nullptr) return false;
    ExpressSa& sa = sas_[flow->sa];
    if (!sa.used || sa.ctx == nullptr) return false;
    double* st = sa.st;
    const double first = st[kStLastSeq] + 1;
    const double last = st[kStLastSeq] + static_cast<double>(n);
    const double inner = static_cast<double>(n * hdrLen + (len - hdrLen));
    if (!(last <= st[kStMaxSeq]) || last > 4294967295.0 || !(inner <= st[kStBytesLeft])) return false;

    // Committed. The real destination goes into the headers every segment copies; the IPv4
    // header checksum and each TCP checksum are computed whole per segment below.
    memcpy(dst, flow->real, alen);
    st[kStTunRead] += 1;
    const uint32_t id = v4 ? Be16(p + 4) : 0;
    const uint32_t tcpSeq = Be32(p + l4 + 4);
    const uint8_t flags = p[l4 + 13];
    for (size_t k = 0; k < n; k++) {
      const size_t dataOff = hdrLen + k * mss;
      const size_t dataLen = len - dataOff < mss ? len - dataOff : mss;
      const size_t segLen = hdrLen + dataLen;
      uint8_t* q = Reserve(sa.fd);
      uint8_t* s = q + kEspHeadroom;
      memcpy(s, p, hdrLen);
      memcpy(s + hdrLen, p + dataOff, dataLen);
      if (v4) PutBe16(s + 4, (id + static_cast<uint32_t>(k)) & 0xffff);
      SetIpLength(s, l4, v4, segLen);
      uint8_t* t = s + l4;
      PutBe32(t + 4, tcpSeq + static_cast<uint32_t>(k * mss));
      uint8_t f = flags;
      if (k != n - 1) f &= static_cast<uint8_t>(~0x09);  // FIN, PSH
      if (k != 0) f &= static_cast<uint8_t>(~0x80);      // CWR
      t[13] = f;
      PutBe16(t + 16, 0);
      const size_t tcpLen = segLen - l4;
      const uint32_t sum = Fold(static_cast<uint64_t>(PseudoSum(s + (src - p), alen, 6, static_cast<uint32_t>(tcpLen))) + OnesSum(t, tcpLen));
      PutBe16(t + 16, ~sum & 0xffff);
      SealAndQueue(flow->sa, q, segLen, family, first + static_cast<double>(k));
    }
    StampLast(st);
    return true;
  }

  // Reserve returns the next queue slot for a packet to be sent on fd, flushing first when the
  // queue is full or holds packets for another socket.
  uint8_t* Reserve(int fd) {
    if (!arena_) arena_.reset(new uint8_t[static_cast<size_t>(kQueueMax) * kQueueSlot]);
    if (qn_ == kQueueMax || (qn_ > 0 && qfd_ != fd)) Flush();
    qfd_ = fd;
    return arena_.get() + static_cast<size_t>(qn_) * kQueueSlot;
  }

  // SealAndQueue seals the inner packet at q[kEspHeadroom, +len) in place with SA `slot` and
  // sequence number seq (codec.ts sealInternal: trailer, header, IV, AAD, AES-GCM) and queues it
  // (the slot Reserve returned). A failed seal is counted as a send error and not queued.
  void SealAndQueue(int slot, uint8_t* q, size_t len, int family, double seq) {
    ExpressSa& sa = sas_[slot];
    double* st = sa.st;
    uint8_t* p = q + kEspHeadroom;
    uint32_t seqLo = static_cast<uint32_t>(seq);
    size_t pad = (4 - ((len + 2) % 4)) % 4;
    size_t ptLen = len + pad + 2;
    uint8_t* t = p + len;
    for (size_t i = 1; i <= pad; i++) *t++ = static_cast<uint8_t>(i);
    *t++ = static_cast<uint8_t>(pad);
    *t = family == 4 ? 4 : 41;
    PutBe32(q, sa.spi);
    PutBe32(q + 4, seqLo);
    PutBe32(q + 8, 0);
    PutBe32(q + 12, seqLo);
    uint8_t nonce[12];
    memcpy(nonce, sa.salt, 4);
    memcpy(nonce + 4, q + 8, 8);
    int outl = 0;
    bool ok = EVP_EncryptInit_ex(sa.ctx, nullptr, nullptr, nullptr, nonce) == 1 &&
              EVP_EncryptUpdate(sa.ctx, nullptr, &outl, q, 8) == 1 &&
              EVP_EncryptUpdate(sa.ctx, p, &outl, p, static_cast<int>(ptLen)) == 1 &&
              EVP_EncryptFinal_ex(sa.ctx, p + outl, &outl) == 1 &&
              EVP_CIPHER_CTX_ctrl(sa.ctx, EVP_CTRL_GCM_GET_TAG, 16, p + ptLen) == 1;
    st[kStLastSeq] = seq;
    st[kStBytesLeft] -= static_cast<double>(len);
    st[kStSaPackets] += 1;
    st[kStSaBytes] += static_cast<double>(len);
    if (!ok) {
      st[kStSendErrors] += 1;
      return;
    }
    const int k = qn_++;
    iovs_[k].iov_base = q;
    iovs_[k].iov_len = kEspHeadroom + ptLen + 16;
    memset(&msgs_[k], 0, sizeof(msgs_[k]));
    msgs_[k].msg_hdr.msg_name = &sa.ep;
    msgs_[k].msg_hdr.msg_namelen = sa.epLen;
    msgs_[k].msg_hdr.msg_iov = &iovs_[k];
    msgs_[k].msg_hdr.msg_iovlen = 1;
    qSa_[k] = slot;
    qInner_[k] = static_cast<uint32_t>(len);
  }

  void Settle(int k, bool sent) {
    double* st = sas_[qSa_[k]].st;
    if (sent) {
      st[kStTxPackets] += 1;
      st[kStTxBytes] += static_cast<double>(qInner_[k]);
    } else {
      st[kStSendErrors] += 1;
    }
  }

  static void StampLast(double* st) { st[kStLastMs] = NowMs(); }

  ExpressSa sas_[kExpressSas];
  ExpressFlow flows_v_[kExpressFlows];
  int flows_ = 0;
  // The send queue: kQueueMax slots of kQueueSlot bytes (allocated on first use), one mmsghdr
  // each, all for socket qfd_; qSa_/qInner_ say whose counters a packet settles.
  std::unique_ptr<uint8_t[]> arena_;
  mmsghdr msgs_[kQueueMax];
  iovec iovs_[kQueueMax];
  int qSa_[kQueueMax] = {0};
  uint32_t qInner_[kQueueMax] = {0};
  int qn_ = 0;
  int qfd_ = -1;
};

}  // namespace espgate

#endif  // ESPGATE_EXPRESS_H_
