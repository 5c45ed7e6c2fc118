// gro.h: the native twin of io/vnet.ts GroBatch, for the inbound express path (express_in.h).
//
// It coalesces the TCP segments (and UDP datagrams) of one receive batch into super-packets for
// a TUN with IFF_VNET_HDR, with exactly GroBatch's rules (read its comment in vnet.ts: which
// packets join which item, when an item closes, how a super-packet's headers are made). Packets
// are added in order as pointers to complete IP packets that stay put until Header/the write;
// an item of one packet is written as it is. express.test.ts compares what the express path
// writes with what the engine's GroBatch writes, byte for byte, headers included.
//
// Not thread-safe; allocation-free.

#ifndef ESPGATE_GRO_H_
#define ESPGATE_GRO_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "packet_util.h"

namespace espgate {

constexpr int kGroMax = 256;             // packets per batch (nfq.cc kMaxBatch)
constexpr int kGroScanItems = 8;         // GRO_SCAN_ITEMS
constexpr size_t kGroMaxBytes = 65535;   // GRO_MAX_BYTES
constexpr int kGroUdpMaxSegments = 64;   // GRO_UDP_MAX_SEGMENTS
constexpr size_t kGroHdrMax = 40 + 60;   // IPv6 header + the longest TCP header

class Gro {
 public:
  bool udp = true;  // coalesce UDP datagrams too

  void Reset() {
    n_ = 0;
    items_ = 0;
  }
  int Packets() const { return n_; }
  int Items() const { return items_; }
  int Count(int k) const { return count_[k]; }
  int First(int k) const { return first_[k]; }
  int Next(int i) const { return next_[i]; }
  const uint8_t* Pkt(int i) const { return ptr_[i]; }
  size_t Len(int i) const { return len_[i]; }
  bool IsUdp(int k) const { return isUdp_[k] != 0; }
  // HdrLen is item k's header length (IP + TCP/UDP): payloads start there in every packet.
  size_t HdrLen(int k) const { return static_cast<size_t>(l4_[k] + th_[k]); }

  // Add appends packet i = Packets() (p[0, len): a complete IP packet). false: the batch is full.
  bool Add(const uint8_t* p, size_t len) {
    if (n_ == kGroMax) return false;
    const int i = n_++;
    ptr_[i] = p;
    len_[i] = len;
    next_[i] = -1;
    const int plain = PlainL4(p, len);
    const int proto = plain == 20 ? p[9] : plain == 40 ? p[6] : -1;
    if (udp && proto == 17 && AddUdp(i, p, len, plain)) return true;
    int l4 = proto == 6 && len >= static_cast<size_t>(plain) + 20 ? plain : -1;
    int th = 0;
    int payload = 0;
    int flags = 0;
    if (l4 > 0) {
      th = (p[l4 + 12] >> 4) * 4;
      if (th < 20 || static_cast<size_t>(l4 + th) > len) {
        l4 = -1;
      } else {
        payload = static_cast<int>(len) - l4 - th;
        flags = p[l4 + 13];
      }
    }
    const bool candidate = l4 > 0 && payload > 0 && (flags & ~(0x10 | 0x08)) == 0 && (flags & 0x10) != 0;
    const uint32_t seq = l4 > 0 ? Be32(p + l4 + 4) : 0;
    if (l4 > 0) {
      for (int k = items_ - 1; k >= 0 && k >= items_ - kGroScanItems; k--) {
        if (isUdp_[k] != 0 || l4_[k] != l4 || !SameFlow(k, p, l4)) continue;
        if (candidate && open_[k] != 0 && CanJoin(k, p, l4, th, payload, seq)) {
          Join(k, i, payload);
          nextSeq_[k] = seq + static_cast<uint32_t>(payload);
          if (payload < gso_[k] || (flags & 0x08) != 0) open_[k] = 0;
          return true;
        }
        break;
      }
    }
    StartItem(i, payload, seq + static_cast<uint32_t>(payload), candidate && (flags & 0x08) == 0, false, l4, th);
    return true;
  }

  // Header writes item k's (two or more packets) super-packet headers to out (kGroHdrMax bytes)
  // and its virtio_net_hdr to vh (10 bytes), as GroBatch.build does; the payloads follow as they
  // are in each packet, from HdrLen(k). Returns the super-packet's length.
  size_t Header(int k, uint8_t* out, uint8_t* vh) const {
    const int l4 = l4_[k];
    const size_t hdrLen = HdrLen(k);
    const size_t total = hdrLen + static_cast<size_t>(payload_[k]);
    const bool isUdp = isUdp_[k] != 0;
    memcpy(out, ptr_[first_[k]], hdrLen);
    uint8_t lastFlags = 0;
    if (!isUdp) lastFlags = ptr_[last_[k]][l4 + 13];
    const bool v4 = l4 == 20;
    SetIpLength(out, static_cast<size_t>(l4), v4, total);
    uint8_t* t = out + l4;
    const uint32_t l4Len = static_cast<uint32_t>(total) - static_cast<uint32_t>(l4);
    const uint32_t ph = PseudoSum(out + (v4 ? 12 : 8), v4 ? 4 : 16, isUdp ? 17 : 6, l4Len);
    const int csumOffset = isUdp ? 6 : 16;
    if (isUdp) {
      PutBe16(t + 4, l4Len);
    } else {
      t[13] = static_cast<uint8_t>(t[13] | (lastFlags & 0x08));
    }
    PutBe16(t + csumOffset, ph);
    vh[0] = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
    vh[1] = isUdp ? 5 : v4 ? 1 : 4;
    vh[2] = static_cast<uint8_t>(hdrLen);
    vh[3] = static_cast<uint8_t>(hdrLen >> 8);
    vh[4] = static_cast<uint8_t>(gso_[k]);
    vh[5] = static_cast<uint8_t>(gso_[k] >> 8);
    vh[6] = static_cast<uint8_t>(l4);
    vh[7] = 0;
    vh[8] = static_cast<uint8_t>(csumOffset);
    vh[9] = 0;
    return total;
  }

 private:
  static int PlainL4(const uint8_t* p, size_t len) {
    if (len < 20) return -1;
    if (p[0] == 0x45) return (Be16(p + 6) & 0x3fff) == 0 && Be16(p + 2) == len ? 20 : -1;
    return p[0] >> 4 == 6 && len >= 40 && static_cast<size_t>(Be16(p + 4)) + 40 == len ? 40 : -1;
  }

  void Join(int k, int i, int payload) {
    next_[last_[k]] = i;
    last_[k] = i;
    count_[k]++;
    payload_[k] += payload;
  }

  void StartItem(int i, int payload, uint32_t nextSeq, bool open, bool isUdp, int l4, int th) {
    const int k = items_++;
    first_[k] = i;
    last_[k] = i;
    count_[k] = 1;
    payload_[k] = payload;
    gso_[k] = payload;
    nextSeq_[k] = nextSeq;
    open_[k] = open ? 1 : 0;
    isUdp_[k] = isUdp ? 1 : 0;
    l4_[k] = l4;
    th_[k] = th;
  }

  bool AddUdp(int i, const uint8_t* p, size_t len, int l4) {
    if (len <= static_cast<size_t>(l4) + 8 || Be16(p + l4 + 4) != len - static_cast<size_t>(l4)) return false;
    const int payload = static_cast<int>(len) - l4 - 8;
    for (int k = items_ - 1; k >= 0 && k >= items_ - kGroScanItems; k--) {
      if (isUdp_[k] != 1 || l4_[k] != l4 || !SameFlow(k, p, l4)) continue;
      if (open_[k] != 0 && CanJoinUdp(k, p, l4, payload)) {
        Join(k, i, payload);
        if (payload < gso_[k] || count_[k] == kGroUdpMaxSegments) open_[k] = 0;
        return true;
      }
      break;
    }
    StartItem(i, payload, 0, true, true, l4, 8);
    return true;
  }

  bool CanJoinUdp(int k, const uint8_t* p, int l4, int payload) const {
    if (payload > gso_[k] || static_cast<size_t>(l4 + 8 + payload_[k] + payload) > kGroMaxBytes) return false;
    const uint8_t* h = ptr_[first_[k]];
    if (l4 == 20) return h[1] == p[1] && (h[6] & 0x40) == (p[6] & 0x40) && h[8] == p[8];
    return memcmp(h, p, 4) == 0 && h[7] == p[7];
  }

  bool SameFlow(int k, const uint8_t* p, int l4) const {
    const uint8_t* h = ptr_[first_[k]];
    const int a = l4 == 20 ? 12 : 8;
    return memcmp(h + a, p + a, static_cast<size_t>(l4 - a)) == 0 && memcmp(h + l4, p + l4, 4) == 0;
  }

  bool CanJoin(int k, const uint8_t* p, int l4, int th, int payload, uint32_t seq) const {
    if (th != th_[k] || seq != nextSeq_[k] || payload > gso_[k]) return false;
    if (static_cast<size_t>(l4 + th + payload_[k] + payload) > kGroMaxBytes) return false;
    const uint8_t* h = ptr_[first_[k]];
    if (l4 == 20) {
      if (h[1] != p[1] || (h[6] & 0x40) != (p[6] & 0x40) || h[8] != p[8]) return false;
    } else {
      if (memcmp(h, p, 4) != 0 || h[7] != p[7]) return false;
    }
    const uint8_t* t = h + l4;
    const uint8_t* u = p + l4;
    if (memcmp(t + 8, u + 8, 4) != 0) return false;
    if (t[12] != u[12] || t[14] != u[14] || t[15] != u[15]) return false;
    return memcmp(t + 20, u + 20, static_cast<size_t>(th - 20)) == 0;
  }

  int n_ = 0;
  int items_ = 0;
  const uint8_t* ptr_[kGroMax] = {nullptr};
  size_t len_[kGroMax] = {0};
  int next_[kGroMax] = {0};
  int first_[kGroMax] = {0};
  int last_[kGroMax] = {0};
  int count_[kGroMax] = {0};
  int payload_[kGroMax] = {0};
  int gso_[kGroMax] = {0};
  uint32_t nextSeq_[kGroMax] = {0};
  uint8_t open_[kGroMax] = {0};
  uint8_t isUdp_[kGroMax] = {0};
  int l4_[kGroMax] = {0};
  int th_[kGroMax] = {0};
};

}  // namespace espgate

#endif  // ESPGATE_GRO_H_
