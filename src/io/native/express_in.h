// express_in.h: the express path for inbound ESP, inside the NFQUEUE addon.
//
// The inbound twin of express.h (read its comment first). When the queue becomes readable the
// addon reads the batch itself and takes it from the first packet on, for as long as each packet
// belongs to a flow the engine has already opened and delivered (src/datapath/express.ts) and
// passes every check: it opens it, checks it, maps it and hands it to a GRO batch (gro.h, the
// twin of vnet.ts GroBatch) that writes the batch to the TUN as the engine would, without
// entering JavaScript. The first packet it does not take, and every packet after it, is left to
// JavaScript unchanged and in order: each ESP is decrypted into its own arena slot, so the packet
// in the batch is still the ciphertext the engine's path expects, and the engine counts a drop
// exactly as before.
//
// What it takes (the engine's esp/codec.ts openInternal and engine.ts #inboundEsp, success only):
//   - outer IPv4 (no fragment) or IPv6 (ESP right after the fixed header), total length within
//     what was queued; ESP of a learned SA (SPI), from that SA's outer source, 32-bit sequence
//     numbers (no ESN), not seen and not too old for the SA's replay window;
//   - AES-GCM (RFC 4106) verifies: AAD = SPI || seq, nonce = salt || IV;
//   - padding 1, 2, 3, ... and next header 4 or 41 matching the inner version; the inner packet's
//     length field says exactly its length;
//   - inner packet of a learned (SA, inner source, inner destination) flow: TCP, UDP or ICMP echo,
//     not fragmented, no IPv6 extension headers. The flow carries the fake source; the rewrite
//     folds the change into the IPv4 header and pseudo-header checksums (RFC 1624).
// Then, in this order (engine.ts flushInbound's): the replay window accepts each number; each
// SA's top, when it advanced in the batch, is written to the SA's replay file (8 bytes at offset
// 0 per SA per batch, as esp/replay-store.ts save: a store into a shared mapping of the file, or
// one pwrite when it cannot be mapped); the batch is written to the TUN. Budgets (packets and bytes
// short of the SA's soft and hard limits) and counters live in the SA's Float64Array, folded by
// the engine like the outbound path's.
//
// Layout of an inbound SA's state array (keep in step with src/datapath/express.ts IN_*).

#ifndef ESPGATE_EXPRESS_IN_H_
#define ESPGATE_EXPRESS_IN_H_

#include <fcntl.h>
#include <napi.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <memory>

#include "gro.h"
#include "packet_util.h"
#include "replay_map.h"

namespace espgate {

enum ExpressInSt : int {
  kInPktsLeft = 0,     // packets the express path may still open on this SA
  kInBytesLeft = 1,    // inner bytes it may still open
  kInSaPackets = 2,    // opened here, not yet folded (SA stats)
  kInSaBytes = 3,
  kInRxPackets = 4,    // written to the TUN here (peer stats, engine tunWritten)
  kInRxBytes = 5,
  kInLastMs = 6,       // Date.now() of the last packet opened here
  kInEspReceived = 7,  // ESP packets taken here (engine espReceived)
  kInTunErrors = 8,    // opened but refused by the TUN ('tun-write' drops)
  kInPersistErrors = 9,  // the replay top could not be written (the engine saves it again)
  kInLen = 10,
};

constexpr int kInSas = 32;
constexpr int kInFlows = 128;

struct InSa {
  bool used = false;
  Napi::Reference<Napi::Float64Array> stRef;
  Napi::Reference<Napi::Uint32Array> wordsRef;
  Napi::Reference<Napi::Uint32Array> topRef;
  double* st = nullptr;
  uint32_t* words = nullptr;
  uint32_t wordMask = 0;
  uint32_t bitMask = 0;
  uint32_t window = 0;
  uint32_t* top = nullptr;  // [high, low]
  uint32_t spi = 0;
  uint8_t outer[16] = {0};
  size_t outerLen = 0;  // 0: any source (the SA names none)
  uint8_t salt[4] = {0};
  EVP_CIPHER_CTX* ctx = nullptr;
  int replayFd = -1;
  // replayMap: the replay file's first page, mapped shared (nullptr: pwrite). A store there is in
  // the page cache at once, like a pwrite, so kill -9 loses nothing; the daemon's fdatasync of
  // the fd writes it back, as it does a pwrite's. At ping rates a pwrite of 8 bytes to ext4 cost
  // ~22 us here (mtime, journal handle, cold caches); the store costs a page fault once after
  // each writeback.
  uint8_t* replayMap = nullptr;
  int replaySlot = -1;  // its slot in replay_map's registry
  bool mapTried = false;
  int tunFd = -1;
  bool dirty = false;  // its replay top moved in the batch under way
  bool vnet = false;
};

struct InFlow {
  bool used = false;
  int sa = -1;
  uint8_t family = 0;
  uint8_t src[16] = {0};   // real inner source, as the peer sent it
  uint8_t dst[16] = {0};
  uint8_t fake[16] = {0};  // what the source becomes
  uint32_t oldSum = 0;
  uint32_t newSum = 0;
};

class ExpressIn {
 public:
  // UDP is coalesced unless ESPGATE_UDP_GRO=0 (vnet.ts defaultUdpGro).
  // The replay top goes through a shared mapping unless ESPGATE_REPLAY_MMAP=0.
  ExpressIn() {
    const char* v = getenv("ESPGATE_UDP_GRO");
    gro_.udp = v == nullptr || strcmp(v, "0") != 0;
    const char* m = getenv("ESPGATE_REPLAY_MMAP");
    mapAllowed_ = m == nullptr || strcmp(m, "0") != 0;
  }
  ExpressIn(const ExpressIn&) = delete;
  ExpressIn& operator=(const ExpressIn&) = delete;
  ~ExpressIn() { Clear(); }

  bool Armed() const { return flows_ > 0; }
  // MappedTops: SAs whose replay top is written through the shared mapping.
  int MappedTops() const {
    int n = 0;
    for (const auto& s : sas_) n += s.used && s.replayMap != nullptr ? 1 : 0;
    return n;
  }
  int Flows() const { return flows_; }

  void Clear() {
    for (auto& s : sas_) {
      if (s.ctx != nullptr) EVP_CIPHER_CTX_free(s.ctx);
      s.ctx = nullptr;
      Unmap(s);
      CloseFds(s);
      s.stRef.Reset();
      s.wordsRef.Reset();
      s.topRef.Reset();
      s.st = nullptr;
      s.words = nullptr;
      s.top = nullptr;
      s.used = false;
    }
    for (auto& f : flows_v_) f.used = false;
    flows_ = 0;
  }

  const char* AddSa(int slot, Napi::Float64Array st, uint32_t spi, const uint8_t* key, size_t keyLen, const uint8_t* salt,
                    const uint8_t* outer, size_t outerLen, Napi::Uint32Array words, Napi::Uint32Array top, uint32_t window,
                    int replayFd, int tunFd, bool vnet) {
    if (slot < 0 || slot >= kInSas) return "SA slot out of range";
    if (st.ElementLength() < kInLen) return "state array too short";
    size_t n = words.ElementLength();
    if (n == 0 || (n & (n - 1)) != 0 || top.ElementLength() < 2) return "replay window arrays malformed";
    if (window == 0 || window > n * 32 || (outerLen != 0 && outerLen != 4 && outerLen != 16)) return "bad window or outer source";
    const char* err = nullptr;
    EVP_CIPHER_CTX* ctx = NewGcmContext(key, keyLen, false, &err);
    if (ctx == nullptr) return err;
    InSa& s = sas_[slot];
    if (s.ctx != nullptr) EVP_CIPHER_CTX_free(s.ctx);
    s.ctx = ctx;
    s.stRef = Napi::Persistent(st);
    s.wordsRef = Napi::Persistent(words);
    s.topRef = Napi::Persistent(top);
    s.st = st.Data();
    s.words = words.Data();
    s.wordMask = static_cast<uint32_t>(n - 1);
    s.bitMask = static_cast<uint32_t>(n * 32 - 1);
    s.window = window;
    s.top = top.Data();
    s.spi = spi;
    memcpy(s.outer, outer, outerLen);
    s.outerLen = outerLen;
    memcpy(s.salt, salt, 4);
    Unmap(s);
    CloseFds(s);
    // Our own descriptors: the engine's may be closed (the TUN gone, the SA's file closed) while
    // the express thread still holds this SA, and a number reused by then must never receive a
    // decrypted packet or a replay record. Clear closes them.
    s.replayFd = replayFd >= 0 ? fcntl(replayFd, F_DUPFD_CLOEXEC, 0) : -1;
    s.tunFd = fcntl(tunFd, F_DUPFD_CLOEXEC, 0);
    if (s.tunFd < 0 || (replayFd >= 0 && s.replayFd < 0)) {
      CloseFds(s);
      EVP_CIPHER_CTX_free(s.ctx);
      s.ctx = nullptr;
      s.used = false;
      return "cannot duplicate the TUN or replay file descriptor";
    }
    MapTop(s);
    s.vnet = vnet;
    s.used = true;
    return nullptr;
  }

  static void CloseFds(InSa& s) {
    if (s.replayFd >= 0) close(s.replayFd);
    if (s.tunFd >= 0) close(s.tunFd);
    s.replayFd = -1;
    s.tunFd = -1;
  }

  int AddFlow(int slot, int family, const uint8_t* src, const uint8_t* dst, const uint8_t* fake) {
    if (slot < 0 || slot >= kInSas || !sas_[slot].used) return 0;
    size_t alen = family == 4 ? 4 : 16;
    InFlow* freeSlot = nullptr;
    for (auto& f : flows_v_) {
      if (!f.used) {
        if (freeSlot == nullptr) freeSlot = &f;
        continue;
      }
      if (f.sa == slot && f.family == family && memcmp(f.src, src, alen) == 0 && memcmp(f.dst, dst, alen) == 0) return 0;
    }
    if (freeSlot == nullptr) return 0;
    InFlow& f = *freeSlot;
    f.sa = slot;
    f.family = static_cast<uint8_t>(family);
    memcpy(f.src, src, alen);
    memcpy(f.dst, dst, alen);
    memcpy(f.fake, fake, alen);
    f.oldSum = OnesSum(src, alen);
    f.newSum = OnesSum(fake, alen);
    f.used = true;
    flows_++;
    return 1;
  }

  // Batch takes the packets of one receive batch (pkts[i][0, lens[i]), outer IP header first)
  // from the first on, for as long as each passes every check: each is opened into its own slot
  // of the arena (the queued packet stays as it was), mapped, and added to a GRO batch. Then, in
  // engine.ts flushInbound's order, every SA's replay top that advanced is written to its file
  // (one pwrite per SA per batch, as esp/replay-store.ts save) and the batch goes to the TUN,
  // coalesced as GroBatch would. Returns how many packets it took: those after are JavaScript's,
  // unchanged, in order.
  int Batch(uint8_t* const* pkts, const int32_t* lens, int n, size_t slotCap) {
    if (n > kGroMax) n = kGroMax;
    if (n <= 0) return 0;
    if (!arena_ || arenaSlots_ < n || arenaSlot_ != slotCap) {
      // Virtual size only: a slot's pages are touched as far as its packet reaches.
      arena_.reset(new uint8_t[static_cast<size_t>(n) * slotCap]);
      arenaSlots_ = n;
      arenaSlot_ = slotCap;
    }
    gro_.Reset();
    nowMs_ = NowMs();  // one clock read per batch: the packets' "last used" stamp
    int taken = 0;
    int dirty = 0;
    for (; taken < n; taken++) {
      uint8_t* out = arena_.get() + static_cast<size_t>(taken) * arenaSlot_;
      int slot = -1;
      bool advanced = false;
      size_t innerLen = Take(pkts[taken], static_cast<size_t>(lens[taken]), out, arenaSlot_, &slot, &advanced);
      if (innerLen == 0) break;
      pktSa_[taken] = slot;
      if (advanced && !sas_[slot].dirty) {
        sas_[slot].dirty = true;
        dirtyList_[dirty++] = slot;
      }
      gro_.Add(out, innerLen);
    }
    if (taken == 0) return 0;
    // Persist before the packets are delivered: a restarted receiver must not accept them again.
    for (int j = 0; j < dirty; j++) {
      InSa& sa = sas_[dirtyList_[j]];
      sa.dirty = false;
      if (sa.replayFd < 0) continue;
      uint32_t top = sa.top[1];
      uint8_t rec[8] = {0, 0, 0, 0, static_cast<uint8_t>(top >> 24), static_cast<uint8_t>(top >> 16),
                        static_cast<uint8_t>(top >> 8), static_cast<uint8_t>(top)};
      if (sa.replayMap != nullptr) {
        if (replay_map::Store(sa.replayMap, sa.replaySlot, rec)) continue;
        // The page lost its file (SIGBUS, caught): from now on pwrite, which says why.
        Unmap(sa);
        sa.mapTried = true;
      }
      ssize_t w;
      int tries = 0;
      do {
        w = pwrite(sa.replayFd, rec, 8, 0);
      } while (w < 0 && errno == EINTR && ++tries < 8);
      if (w != 8) {
        sa.st[kInPersistErrors] += 1;
      } else if (!sa.mapTried) {
        MapTop(sa);  // the file is 8 bytes long now
      }
    }
    WriteGro();
    return taken;
  }

 private:
  // MapTop maps the first page of sa's replay file shared, once the file holds a whole record
  // (a store past the end of a file would be SIGBUS; a shorter file waits for the first pwrite).
  // Off with ESPGATE_REPLAY_MMAP=0, or when the fd is not a regular file. A page that loses its
  // file later is caught by replay_map.h's SIGBUS guard and the SA goes back to pwrite.
  void MapTop(InSa& sa) {
    if (sa.replayFd < 0 || sa.replayMap != nullptr || !mapAllowed_) return;
    bool later = false;
    sa.replayMap = replay_map::Map(sa.replayFd, &sa.replaySlot, &later);
    sa.mapTried = !later;
  }

  static void Unmap(InSa& sa) {
    replay_map::Unmap(sa.replayMap, sa.replaySlot);
    sa.replayMap = nullptr;
    sa.replaySlot = -1;
    sa.mapTried = false;
  }

  // Take runs every check on the queued ESP packet pkt[0, len) and, when all pass, opens it into
  // out (cap bytes), accepts its sequence number, counts it and maps its source: returns the
  // inner packet's length (its SA slot in *saSlot; *advanced when the replay top moved). 0: left
  // to JavaScript, and nothing (replay window, counters, budgets) changed.
  size_t Take(const uint8_t* pkt, size_t len, uint8_t* out, size_t cap, int* saSlot, bool* advanced) {
    if (len < 20) return 0;
    int ov = pkt[0] >> 4;
    size_t espOff, espEnd;
    const uint8_t* osrc;
    size_t olen;
    if (ov == 4) {
      size_t ihl = static_cast<size_t>(pkt[0] & 0x0f) * 4;
      size_t total = Be16(pkt + 2);
      if (ihl < 20 || total < ihl || total > len || (Be16(pkt + 6) & 0x3fff) != 0 || pkt[9] != 50) return 0;
      espOff = ihl;
      espEnd = total;
      osrc = pkt + 12;
      olen = 4;
    } else if (ov == 6) {
      if (len < 40) return 0;
      size_t payload = Be16(pkt + 4);
      if (40 + payload > len || pkt[6] != 50) return 0;
      espOff = 40;
      espEnd = 40 + payload;
      osrc = pkt + 8;
      olen = 16;
    } else {
      return 0;
    }
    const uint8_t* esp = pkt + espOff;
    size_t espLen = espEnd - espOff;
    if (espLen < 8 + 8 + 4 + 16) return 0;
    size_t ctLen = espLen - 8 - 8 - 16;
    if (ctLen < 2 || ctLen % 4 != 0 || ctLen > cap) return 0;
    uint32_t spi = Be32(esp);
    int slot = -1;
    for (int i = 0; i < kInSas; i++) {
      if (sas_[i].used && sas_[i].spi == spi) {
        slot = i;
        break;
      }
    }
    if (slot < 0) return 0;
    InSa& sa = sas_[slot];
    if (sa.outerLen != 0 && (sa.outerLen != olen || memcmp(sa.outer, osrc, olen) != 0)) return 0;
    double* st = sa.st;
    if (!(st[kInPktsLeft] >= 1)) return 0;
    // Replay check (replay.ts check, high half 0).
    uint32_t seq = Be32(esp + 4);
    if (seq == 0 || sa.top[0] != 0) return 0;
    uint32_t topLo = sa.top[1];
    int64_t d = static_cast<int64_t>(seq) - static_cast<int64_t>(topLo);
    if (d <= 0) {
      if (-d >= static_cast<int64_t>(sa.window)) return 0;
      uint32_t idx = seq & sa.bitMask;
      if ((sa.words[idx >> 5] & (1u << (idx & 31))) != 0) return 0;
    }
    // Open into out: the queued packet stays as it was.
    uint8_t nonce[12];
    memcpy(nonce, sa.salt, 4);
    memcpy(nonce + 4, esp + 8, 8);
    const uint8_t* ct = esp + 16;
    uint8_t tag[16];
    memcpy(tag, ct + ctLen, 16);
    int outl = 0;
    int finl = 0;
    uint8_t* pt = out;
    if (EVP_DecryptInit_ex(sa.ctx, nullptr, nullptr, nullptr, nonce) != 1 ||
        EVP_DecryptUpdate(sa.ctx, nullptr, &outl, esp, 8) != 1 ||
        EVP_DecryptUpdate(sa.ctx, pt, &outl, ct, static_cast<int>(ctLen)) != 1 ||
        EVP_CIPHER_CTX_ctrl(sa.ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
        EVP_DecryptFinal_ex(sa.ctx, pt + outl, &finl) != 1) {
      return 0;
    }
    size_t padLen = pt[ctLen - 2];
    int nh = pt[ctLen - 1];
    if (padLen + 2 > ctLen) return 0;
    size_t innerLen = ctLen - 2 - padLen;
    for (size_t i = 0; i < padLen; i++) {
      if (pt[innerLen + i] != i + 1) return 0;
    }
    if (!(static_cast<double>(innerLen) <= st[kInBytesLeft])) return 0;
    // The inner packet: version (as next header says) and length, then the simple shapes only.
    PlainIp ip;
    if (!ParsePlainIp(pt, innerLen, &ip) || nh != (ip.family == 4 ? 4 : 41)) return 0;
    const int iv = ip.family;
    const size_t alen = ip.alen;
    int csumAt = SimpleShape(pt, innerLen, iv, ip.l4, ip.proto);
    if (csumAt == -2) return 0;
    const InFlow* flow = nullptr;
    for (const auto& f : flows_v_) {
      if (f.used && f.sa == slot && f.family == iv && memcmp(f.src, ip.src, alen) == 0 && memcmp(f.dst, ip.dst, alen) == 0) {
        flow = &f;
        break;
      }
    }
    if (flow == nullptr) return 0;

    // Committed. Replay accept (replay.ts accept, high half 0).
    if (d > 0) {
      uint32_t nwords = sa.wordMask + 1;
      if (static_cast<uint64_t>(d) >= static_cast<uint64_t>(nwords) * 32) {
        memset(sa.words, 0, nwords * 4);
      } else {
        uint32_t oldBlock = topLo >> 5;
        uint32_t blocks = ((seq >> 5) - oldBlock) & 0x7ffffff;
        if (blocks >= nwords) {
          memset(sa.words, 0, nwords * 4);
        } else {
          for (uint32_t i = 1; i <= blocks; i++) sa.words[(oldBlock + i) & sa.wordMask] = 0;
        }
      }
      sa.top[1] = seq;
    }
    uint32_t idx = seq & sa.bitMask;
    sa.words[idx >> 5] |= 1u << (idx & 31);
    st[kInEspReceived] += 1;
    st[kInPktsLeft] -= 1;
    st[kInBytesLeft] -= static_cast<double>(innerLen);
    st[kInSaPackets] += 1;
    st[kInSaBytes] += static_cast<double>(innerLen);
    st[kInLastMs] = nowMs_;
    // Map the source real -> fake (rewrite.ts, inbound).
    MapAddress(pt, iv, ip.l4, ip.proto, csumAt, ip.src, flow->fake, alen, flow->oldSum, flow->newSum);
    *saSlot = slot;
    *advanced = d > 0;
    return innerLen;
  }

  // WriteGro writes the GRO batch to the TUN, an item per write (engine.ts flushInbound), and
  // settles each packet's counters: written, or refused ('tun-write' drops). A coalesced UDP
  // write the kernel refuses (before Linux 6.2) is written datagram by datagram, and UDP is not
  // coalesced here again.
  void WriteGro() {
    const InSa& first = sas_[pktSa_[0]];
    const int fd = first.tunFd;
    const bool vnet = first.vnet;
    static const uint8_t kZeroHdr[10] = {0};
    for (int k = 0; k < gro_.Items(); k++) {
      const int count = gro_.Count(k);
      const int f = gro_.First(k);
      if (count == 1 || !vnet) {
        for (int i = f; i >= 0; i = gro_.Next(i)) Settle(i, WriteOne(fd, vnet, kZeroHdr, gro_.Pkt(i), gro_.Len(i)));
        continue;
      }
      uint8_t vh[10];
      gro_.Header(k, hdr_, vh);
      const size_t hdrLen = gro_.HdrLen(k);
      iovec iov[2 + kGroMax];
      iov[0] = {vh, 10};
      iov[1] = {hdr_, hdrLen};
      int m = 2;
      for (int i = f; i >= 0; i = gro_.Next(i)) iov[m++] = {const_cast<uint8_t*>(gro_.Pkt(i)) + hdrLen, gro_.Len(i) - hdrLen};
      ssize_t r;
      int tries = 0;
      do {
        r = writev(fd, iov, m);
      } while (r < 0 && errno == EINTR && ++tries < 8);
      if (r < 0 && gro_.IsUdp(k)) {
        gro_.udp = false;
        for (int i = f; i >= 0; i = gro_.Next(i)) Settle(i, WriteOne(fd, vnet, kZeroHdr, gro_.Pkt(i), gro_.Len(i)));
        continue;
      }
      for (int i = f; i >= 0; i = gro_.Next(i)) Settle(i, r >= 0);
    }
  }

  static bool WriteOne(int fd, bool vnet, const uint8_t* hdr, const uint8_t* p, size_t len) {
    ssize_t r;
    int tries = 0;
    do {
      if (vnet) {
        iovec iov[2] = {{const_cast<uint8_t*>(hdr), 10}, {const_cast<uint8_t*>(p), len}};
        r = writev(fd, iov, 2);
      } else {
        r = write(fd, p, len);
      }
    } while (r < 0 && errno == EINTR && ++tries < 8);
    return r >= 0;
  }

  void Settle(int i, bool written) {
    double* st = sas_[pktSa_[i]].st;
    if (written) {
      st[kInRxPackets] += 1;
      st[kInRxBytes] += static_cast<double>(gro_.Len(i));
    } else {
      st[kInTunErrors] += 1;
    }
  }

  InSa sas_[kInSas];
  InFlow flows_v_[kInFlows];
  int flows_ = 0;
  // The batch: each taken packet's inner bytes in its arena slot, its SA, the SAs whose replay
  // top moved, the GRO state and one super-packet's headers.
  std::unique_ptr<uint8_t[]> arena_;
  int arenaSlots_ = 0;
  size_t arenaSlot_ = 0;
  int pktSa_[kGroMax] = {0};
  int dirtyList_[kInSas] = {0};
  double nowMs_ = 0;
  Gro gro_;
  bool mapAllowed_ = true;
  uint8_t hdr_[kGroHdrMax] = {0};
};

}  // namespace espgate

#endif  // ESPGATE_EXPRESS_IN_H_
