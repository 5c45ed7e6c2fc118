// nfq.cc: a batched NFQUEUE receiver over a raw NETLINK_NETFILTER socket (no libnetfilter_queue).
//
// Why native and why not the `nfqueue` npm package: that binding makes one recv(2), one JS call
// with a 12-property object and one verdict sendto(2) per packet (~18 us per packet here, the
// inbound ceiling). This one moves up to a batch of packets per JS -> C++ transition:
//
//   readBatch  recvmmsg(2) of up to N netlink datagrams straight into slots of one caller-owned
//              Buffer, parse each (NFQNL_MSG_PACKET: packet id, payload), then ONE
//              NFQNL_MSG_VERDICT_BATCH "drop everything up to the highest id" for the batch.
//              Returns the count; offsets[i] / lengths[i] locate packet i's bytes (outer IP
//              header first) inside the Buffer.
//   poll       a libuv uv_poll_t on the socket that calls one JS callback on the main thread.
//   close      unbind the queue (NFQNL_CFG_CMD_UNBIND) and close the socket: the npm binding
//              has no close at all.
//
// The verdict is NF_DROP for every packet, given as soon as the batch is copied out: espgate
// consumes ESP; the decrypted inner packet goes to the TUN. A packet the kernel could not hand
// to us (queue full, socket buffer full) is dropped by the kernel and counted in
// /proc/net/netfilter/nfnetlink_queue. Fail-open is never set: when espgate is slow or gone,
// ESP waits or is dropped, never passed on.
//
// Netlink protocol (linux/netfilter/nfnetlink_queue.h, net/netfilter/nfnetlink_queue.c):
//   nlmsghdr | nfgenmsg (family, version, res_id = queue number, big endian) | attributes
//   config:  NFQA_CFG_CMD {u8 cmd, u8 pad, be16 pf}; NFQA_CFG_PARAMS {be32 range, u8 mode};
//            NFQA_CFG_QUEUE_MAXLEN be32
//   packet:  NFQA_PACKET_HDR {be32 id, be16 hw_protocol, u8 hook}; NFQA_PAYLOAD bytes;
//            NFQA_CAP_LEN be32 (present when the payload was cut to the copy range)
//   verdict: NFQNL_MSG_VERDICT_BATCH with NFQA_VERDICT_HDR {be32 verdict, be32 id}: applies to
//            every queued packet of ours with an id <= id.
//
// Socket mode (new NfqSocket(q, rcvbuf, maxlen, false, true[, fd4, fd6]); `inbound: socket`, an
// option; the queue is the default and measured faster for small packets, docs/io.md): no
// queue at all. Two raw IPPROTO_ESP sockets (AF_INET, AF_INET6) take every ESP packet addressed
// to this host after the stack's own input hooks (the rules notrack it in raw PREROUTING and
// accept it in filter INPUT; fd4/fd6 are the sender's sockets, shared: see OpenSockets); fd is
// an epoll fd over both, so the poller, the express thread and readBatch see one source. The
// slots come out exactly as the queue's would: an IPv4 packet as the kernel hands it (header
// included); an IPv6 raw socket strips its header, so the payload is received 40 bytes into the
// slot and an IPv6 header is written in front of it (source from msg_name, destination from
// IPV6_PKTINFO, next header 50). No verdicts. What the kernel dropped
// at the sockets' full receive buffers is read when asked (SO_MEMINFO's drop count, current even
// when nothing arrived since): stats().socketDrops.
// While no daemon holds such a socket, the kernel (without an ESP protocol of its own) answers
// ESP with ICMP "protocol unreachable", which the rules drop on its way out to a peer endpoint.
//
// Errors: constructor failures throw an Error with .code = errno name. Per-batch results are
// return values: readBatch returns the count, or -errno for a socket error other than EAGAIN
// (ENOBUFS is counted and not returned: it only says the kernel dropped some packets).
// Threading: main thread only.

#include <napi.h>
#include <uv.h>

#include "express_in.h"
#include "uv_poller.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

namespace {

std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  if (n != nullptr) return n;
  return "E" + std::to_string(err);
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& what) {
  std::string name = ErrnoName(err);
  Napi::Error e = Napi::Error::New(env, what + ": " + name + " (" + strerror(err) + ")");
  e.Set("code", Napi::String::New(env, name));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

// kMaxBatch bounds the datagrams taken per readBatch (and the mmsghdr arrays).
constexpr int kMaxBatch = 256;
// kCopyRange is the payload bytes asked for (the kernel clamps it to 0xffff - 4).
constexpr uint32_t kCopyRange = 0xffff;
// kMsgBuf is the size of a config/verdict message buffer.
constexpr size_t kMsgBuf = 256;

// MsgBuilder builds one nfnetlink message: header, nfgenmsg, attributes.
class MsgBuilder {
 public:
  MsgBuilder(uint16_t type, uint16_t flags, uint16_t queue, uint32_t seq) {
    memset(buf_, 0, sizeof(buf_));
    nlh_ = reinterpret_cast<nlmsghdr*>(buf_);
    nlh_->nlmsg_len = NLMSG_LENGTH(sizeof(nfgenmsg));
    nlh_->nlmsg_type = static_cast<uint16_t>((NFNL_SUBSYS_QUEUE << 8) | type);
    nlh_->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
    nlh_->nlmsg_seq = seq;
    nfgenmsg* g = reinterpret_cast<nfgenmsg*>(NLMSG_DATA(nlh_));
    g->nfgen_family = AF_UNSPEC;
    g->version = NFNETLINK_V0;
    g->res_id = htons(queue);
  }
  void Attr(uint16_t type, const void* data, size_t len) {
    size_t off = NLMSG_ALIGN(nlh_->nlmsg_len);
    nlattr* a = reinterpret_cast<nlattr*>(buf_ + off);
    a->nla_type = type;
    a->nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
    memcpy(buf_ + off + NLA_HDRLEN, data, len);
    nlh_->nlmsg_len = static_cast<uint32_t>(off + NLA_ALIGN(a->nla_len));
  }
  const uint8_t* data() const { return buf_; }
  size_t size() const { return nlh_->nlmsg_len; }

 private:
  alignas(nlmsghdr) uint8_t buf_[kMsgBuf];
  nlmsghdr* nlh_;
};

class NfqSocket : public Napi::ObjectWrap<NfqSocket> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(
        env, "NfqSocket",
        {
            InstanceMethod<&NfqSocket::ReadBatch>("readBatch"),
            InstanceMethod<&NfqSocket::Stats>("stats"),
            InstanceMethod<&NfqSocket::Poll>("poll"),
            InstanceMethod<&NfqSocket::Unpoll>("unpoll"),
            InstanceMethod<&NfqSocket::Close>("close"),
            InstanceMethod<&NfqSocket::ExpressSlots>("expressSlots"),
            InstanceMethod<&NfqSocket::ExpressSa>("expressSa"),
            InstanceMethod<&NfqSocket::ExpressFlow>("expressFlow"),
            InstanceMethod<&NfqSocket::ExpressClear>("expressClear"),
            InstanceMethod<&NfqSocket::Offload>("offload"),
            InstanceMethod<&NfqSocket::Lock>("lock"),
            InstanceMethod<&NfqSocket::Unlock>("unlock"),
            InstanceAccessor<&NfqSocket::GetOffloaded>("offloaded"),
            InstanceAccessor<&NfqSocket::Fd>("fd"),
            InstanceAccessor<&NfqSocket::PeerFd>("peerFd"),
        });
    exports.Set("NfqSocket", ctor);
    exports.Set("MAX_BATCH", Napi::Number::New(env, kMaxBatch));
    return exports;
  }

  // new NfqSocket(queueNum, rcvbufBytes, queueMaxLen): socket, bind, NFQUEUE bind + copy mode.
  explicit NfqSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NfqSocket>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
      Napi::TypeError::New(env, "new NfqSocket(queueNum, rcvbufBytes, queueMaxLen)").ThrowAsJavaScriptException();
      return;
    }
    int64_t q = info[0].As<Napi::Number>().Int64Value();
    if (q < 0 || q > 65535) {
      Napi::RangeError::New(env, "queueNum must be in 0..65535").ThrowAsJavaScriptException();
      return;
    }
    queue_ = static_cast<uint16_t>(q);
    int rcvbuf = info[1].As<Napi::Number>().Int32Value();
    uint32_t maxlen = info[2].As<Napi::Number>().Uint32Value();

    if (info.Length() >= 4 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value()) {
      // A stand-in (tests): one end of an AF_UNIX SOCK_SEQPACKET pair instead of the netlink
      // socket; the test writes NFQNL_MSG_PACKET messages into peerFd, verdicts go there too
      // (a seqpacket socket ignores the netlink address). No queue is bound: no root needed.
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        ThrowErrno(env, errno, "socketpair", "stand-in queue");
        return;
      }
      fd_ = sv[0];
      peerFd_ = sv[1];
      return;
    }

    if (info.Length() >= 5 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value()) {
      int share4 = info.Length() >= 6 && info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : -1;
      int share6 = info.Length() >= 7 && info[6].IsNumber() ? info[6].As<Napi::Number>().Int32Value() : -1;
      int err = OpenSockets(rcvbuf, share4, share6);
      if (err != 0) {
        CloseFd();
        ThrowErrno(env, err, "socket", "raw ESP socket");
      }
      return;
    }
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd_ < 0) {
      ThrowErrno(env, errno, "socket", "netlink socket");
      return;
    }
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN (which binding a queue needs anyway); fall back quietly.
    if (rcvbuf > 0 && setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    // ENOBUFS would only tell us that the kernel dropped packets; it counts them itself.
    int one = 1;
    setsockopt(fd_, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      int err = errno;
      CloseFd();
      ThrowErrno(env, err, "bind", "netlink bind");
      return;
    }

    nfqnl_msg_config_cmd cmd{};
    cmd.command = NFQNL_CFG_CMD_BIND;
    cmd.pf = htons(AF_INET);
    MsgBuilder bindMsg(NFQNL_MSG_CONFIG, NLM_F_ACK, queue_, ++seq_);
    bindMsg.Attr(NFQA_CFG_CMD, &cmd, sizeof(cmd));
    int err = Request(bindMsg);
    if (err != 0) {
      CloseFd();
      ThrowErrno(env, err, "NFQNL_CFG_CMD_BIND", "bind NFQUEUE " + std::to_string(queue_));
      return;
    }
    bound_ = true;

    uint8_t params[5];
    uint32_t range = htonl(kCopyRange);
    memcpy(params, &range, 4);
    params[4] = NFQNL_COPY_PACKET;
    MsgBuilder paramMsg(NFQNL_MSG_CONFIG, NLM_F_ACK, queue_, ++seq_);
    paramMsg.Attr(NFQA_CFG_PARAMS, params, sizeof(params));
    if (maxlen > 0) {
      uint32_t ml = htonl(maxlen);
      paramMsg.Attr(NFQA_CFG_QUEUE_MAXLEN, &ml, sizeof(ml));
    }
    err = Request(paramMsg);
    if (err != 0) {
      CloseFd();
      ThrowErrno(env, err, "NFQNL_CFG_PARAMS", "configure NFQUEUE " + std::to_string(queue_));
      return;
    }
  }

  ~NfqSocket() override { CloseFd(); }

 private:
  // OpenSockets opens socket mode's raw ESP sockets and the epoll fd over them: 0 or an errno.
  // share4/share6 (>= 0): the sender's raw ESP socket of that family, taken over with dup()
  // instead of opening a second one: the kernel hands every raw socket of protocol 50 its own
  // clone of each inbound packet, so a second socket would double that work (the sender's own
  // socket never reads; its copies were dropped at a full buffer, one clone per packet wasted).
  // A family the kernel does not offer (IPv6 disabled: EAFNOSUPPORT) is left out; both missing
  // is an error.
  int OpenSockets(int rcvbuf, int share4, int share6) {
    socket_ = true;
    int one = 1;
    for (int fam = 0; fam < 2; fam++) {
      int share = fam == 0 ? share4 : share6;
      int fd = share >= 0 ? fcntl(share, F_DUPFD_CLOEXEC, 0)
                          : socket(fam == 0 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ESP);
      if (fd < 0) {
        if (share < 0 && errno == EAFNOSUPPORT) continue;
        return errno;
      }
      (fam == 0 ? fd4_ : fd6_) = fd;
      if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
      }
      if (fam == 1 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) != 0) return errno;
    }
    if (fd4_ < 0 && fd6_ < 0) return EAFNOSUPPORT;
    fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (fd_ < 0) return errno;
    for (int fd : {fd4_, fd6_}) {
      if (fd < 0) continue;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return errno;
    }
    return 0;
  }

  // RecvRaw is one recvmmsg of socket mode's family socket into slots [first, first + count):
  // the number of packets placed at o/l[placed..] (*got: slots the kernel filled, cut ones
  // included), or -errno (EAGAIN included).
  int RecvRaw(int family, uint8_t* base, size_t first, size_t count, size_t slotLen, int32_t* o, int32_t* l, int placed, size_t* filled) {
    int fd = family == 4 ? fd4_ : fd6_;
    if (fd < 0 || count == 0) return -EAGAIN;
    size_t head = family == 6 ? kIp6HeaderLen : 0;
    for (size_t i = 0; i < count; i++) {
      size_t slot = first + i;
      rawIovs_[i].iov_base = base + slot * slotLen + head;
      rawIovs_[i].iov_len = slotLen - head;
      memset(&rawMsgs_[i], 0, sizeof(rawMsgs_[i]));
      rawMsgs_[i].msg_hdr.msg_iov = &rawIovs_[i];
      rawMsgs_[i].msg_hdr.msg_iovlen = 1;
      if (family == 6) {
        rawMsgs_[i].msg_hdr.msg_control = rawCtl_[i];
        rawMsgs_[i].msg_hdr.msg_controllen = sizeof(rawCtl_[i]);
        rawMsgs_[i].msg_hdr.msg_name = &rawNames_[i];
        rawMsgs_[i].msg_hdr.msg_namelen = sizeof(rawNames_[i]);
      }
    }
    int got = recvmmsg(fd, rawMsgs_, static_cast<unsigned>(count), MSG_DONTWAIT, nullptr);
    if (got < 0) return -errno;
    *filled = static_cast<size_t>(got);
    batches_++;
    int n = placed;
    for (int i = 0; i < got; i++) {
      received_++;
      msghdr& h = rawMsgs_[i].msg_hdr;
      bool haveDst = false;
      in6_addr dst{};
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
          in6_pktinfo pi;
          memcpy(&pi, CMSG_DATA(c), sizeof(pi));
          dst = pi.ipi6_addr;
          haveDst = true;
        }
      }
      uint32_t len = rawMsgs_[i].msg_len;
      if ((h.msg_flags & MSG_TRUNC) != 0 || (family == 6 && (!haveDst || h.msg_namelen < sizeof(sockaddr_in6) || len > 0xffff))) {
        truncated_++;  // cut to the slot, or an IPv6 packet we cannot give its header back: never delivered half
        continue;
      }
      uint8_t* slot = base + (first + static_cast<size_t>(i)) * slotLen;
      if (family == 6) {
        // The IPv6 header the raw socket took off: version 6, no traffic class or flow label,
        // payload length, next header ESP, hop limit 64 (nobody downstream reads it), addresses.
        slot[0] = 0x60;
        slot[1] = slot[2] = slot[3] = 0;
        slot[4] = static_cast<uint8_t>(len >> 8);
        slot[5] = static_cast<uint8_t>(len);
        slot[6] = IPPROTO_ESP;
        slot[7] = 64;
        memcpy(slot + 8, &rawNames_[i].sin6_addr, 16);
        memcpy(slot + 24, &dst, 16);
        len += kIp6HeaderLen;
      }
      o[n] = static_cast<int32_t>(slot - base);
      l[n] = static_cast<int32_t>(len);
      n++;
    }
    return n - placed;
  }

  // ReadRaw is ReadCore in socket mode: the IPv4 socket first, then the IPv6 socket into the
  // slots left. Returns what was placed, 0 with *eagain when neither had anything, or -errno.
  int ReadRaw(uint8_t* base, size_t slots, size_t slotLen, int32_t* o, int32_t* l, bool* eagain) {
    if (slots > static_cast<size_t>(kMaxBatch)) slots = kMaxBatch;
    int placed = 0;
    size_t used = 0;
    bool empty = true;
    for (int family : {4, 6}) {
      size_t filled = 0;
      int r = RecvRaw(family, base, used, slots - used, slotLen, o, l, placed, &filled);
      if (r < 0) {
        if (r == -EAGAIN || r == -EINTR) continue;
        if (r == -ENOBUFS) {
          enobufs_++;
          continue;
        }
        return r;
      }
      empty = false;
      used += filled;  // the next family starts after every slot this one filled, cut ones too
      placed += r;
      if (used >= slots) break;
    }
    lastShort_ = used < slots;
    *eagain = empty;
    return placed;
  }

  // SocketDrops is what the kernel dropped at socket mode's sockets (receive buffer full), now.
  double SocketDrops() const {
    double n = 0;
    for (int fd : {fd4_, fd6_}) {
      if (fd < 0) continue;
      uint32_t mem[SK_MEMINFO_VARS] = {};
      socklen_t len = sizeof(mem);
      if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 && len > SK_MEMINFO_DROPS * sizeof(uint32_t)) n += mem[SK_MEMINFO_DROPS];
    }
    return n;
  }

  // Request sends one config message and waits (bounded) for its ack; returns 0 or an errno.
  int Request(const MsgBuilder& m) {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd_, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return errno;
    alignas(nlmsghdr) uint8_t buf[8192];
    // The socket is non-blocking: poll for the ack for at most ~2 s (200 x 10 ms).
    for (int tries = 0; tries < 200; tries++) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          usleep(10000);
          continue;
        }
        return errno;
      }
      int len = static_cast<int>(n);
      for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == seq_) {
          nlmsgerr* e = reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h));
          return -e->error;
        }
      }
    }
    return ETIMEDOUT;
  }

  // SendVerdictBatch drops every queued packet of ours with an id <= maxId. Returns 0 or errno.
  int SendVerdictBatch(uint32_t maxId) {
    nfqnl_msg_verdict_hdr vh{};
    vh.verdict = htonl(NF_DROP);
    vh.id = htonl(maxId);
    MsgBuilder m(NFQNL_MSG_VERDICT_BATCH, 0, queue_, ++seq_);
    m.Attr(NFQA_VERDICT_HDR, &vh, sizeof(vh));
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    for (int tries = 0; tries < 3; tries++) {
      if (sendto(fd_, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) >= 0) return 0;
      if (errno != EINTR && errno != EAGAIN && errno != ENOBUFS) return errno;
    }
    return errno;
  }

  // readBatch(buf: Buffer, offsets: Int32Array, lengths: Int32Array): number
  // Receives up to offsets.length (<= MAX_BATCH) queued packets into equal slots of buf and gives
  // them the verdict NF_DROP. Returns how many packets were placed (offsets/lengths filled), 0
  // when nothing was pending, or -errno.
  // BatchSlots is how readBatch and expressSlots cut buf into slots: one per offsets/lengths
  // entry (at most kMaxBatch), *slotLen bytes each; 0 when that leaves less than 2048 bytes a slot.
  static size_t BatchSlots(const Napi::Uint8Array& buf, const Napi::Int32Array& offs, const Napi::Int32Array& lens, size_t* slotLen) {
    size_t slots = offs.ElementLength();
    if (lens.ElementLength() < slots) slots = lens.ElementLength();
    if (slots > static_cast<size_t>(kMaxBatch)) slots = kMaxBatch;
    if (slots == 0 || buf.ByteLength() / slots < 2048) return 0;
    *slotLen = buf.ByteLength() / slots;
    return slots;
  }

  Napi::Value ReadBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray()) {
      Napi::TypeError::New(env, "readBatch(buf: Buffer, offsets: Int32Array, lengths: Int32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
    Napi::Int32Array offs = info[1].As<Napi::Int32Array>();
    Napi::Int32Array lens = info[2].As<Napi::Int32Array>();
    size_t slotLen = 0;
    size_t slots = BatchSlots(buf, offs, lens, &slotLen);
    if (offs.ElementLength() == 0 || lens.ElementLength() == 0) return Napi::Number::New(env, 0);
    if (slots == 0) {
      Napi::RangeError::New(env, "readBatch: buf too small for that many slots").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (stashPending_) {
      // The express path read this batch (and gave its verdict) and left it to us.
      stashPending_ = false;
      int n = stashCount_;
      if (n <= 0) return Napi::Number::New(env, n);
      if (buf.Data() != exBase_ || offs.Data() != exOffs_ || lens.Data() != exLens_) {
        // Other arrays than the registered ones: copy what fits (never happens with nfq-native.ts).
        int placed = 0;
        for (int i = 0; i < n && static_cast<size_t>(placed) < slots; i++) {
          size_t at = static_cast<size_t>(exOffs_[i]);
          size_t len = static_cast<size_t>(exLens_[i]);
          if (at + len > buf.ByteLength()) continue;
          memmove(buf.Data() + at, exBase_ + at, len);
          offs.Data()[placed] = exOffs_[i];
          lens.Data()[placed] = exLens_[i];
          placed++;
        }
        n = placed;
      }
      return Napi::Number::New(env, n);
    }
    bool eagain = false;
    return Napi::Number::New(env, ReadCore(buf.Data(), slots, slotLen, offs.Data(), lens.Data(), &eagain));
  }

  // ReadCore is one recvmmsg of up to `slots` netlink datagrams into base (slotLen bytes each),
  // parsed, with one verdict batch: the number of whole packets placed (o[i], l[i] locate them),
  // 0 with *eagain when nothing was queued, or -errno. With `defer`, the verdict is not sent
  // but left for SendDeferredVerdict (the express path sends it after its TUN write: the
  // verdict is the queue's bookkeeping, not on the packet's way, and the packet was already
  // copied out; a daemon that dies before sending it loses the queue, and the kernel drops
  // what was in it).
  int ReadCore(uint8_t* base, size_t slots, size_t slotLen, int32_t* o, int32_t* l, bool* eagain, bool defer = false) {
    if (socket_) return ReadRaw(base, slots, slotLen, o, l, eagain);
    mmsghdr msgs[kMaxBatch];
    iovec iovs[kMaxBatch];
    for (size_t i = 0; i < slots; i++) {
      iovs[i].iov_base = base + i * slotLen;
      iovs[i].iov_len = slotLen;
      memset(&msgs[i], 0, sizeof(msgs[i]));
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(fd_, msgs, static_cast<unsigned>(slots), MSG_DONTWAIT, nullptr);
    lastShort_ = got >= 0 && static_cast<size_t>(got) < slots;
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        *eagain = errno == EAGAIN;
        return 0;
      }
      if (errno == ENOBUFS) {
        enobufs_++;
        return 0;
      }
      return -errno;
    }
    batches_++;

    int placed = 0;
    bool haveId = false;
    uint32_t maxId = 0;
    for (int i = 0; i < got; i++) {
      uint8_t* slot = base + static_cast<size_t>(i) * slotLen;
      int len = static_cast<int>(msgs[i].msg_len);
      bool cut = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
      for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(slot); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if ((h->nlmsg_type >> 8) != NFNL_SUBSYS_QUEUE || (h->nlmsg_type & 0xff) != NFQNL_MSG_PACKET) continue;
        uint8_t* p = reinterpret_cast<uint8_t*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(nfgenmsg));
        int attrLen = static_cast<int>(h->nlmsg_len) - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(nfgenmsg)));
        bool hasId = false;
        uint32_t id = 0;
        uint8_t* payload = nullptr;
        uint32_t payloadLen = 0;
        uint32_t capLen = 0;
        while (attrLen >= static_cast<int>(NLA_HDRLEN)) {
          nlattr* a = reinterpret_cast<nlattr*>(p);
          if (a->nla_len < NLA_HDRLEN || a->nla_len > attrLen) break;
          uint16_t type = a->nla_type & NLA_TYPE_MASK;
          uint8_t* d = p + NLA_HDRLEN;
          uint32_t dlen = a->nla_len - NLA_HDRLEN;
          if (type == NFQA_PACKET_HDR && dlen >= sizeof(nfqnl_msg_packet_hdr)) {
            uint32_t be;
            memcpy(&be, d, 4);
            id = ntohl(be);
            hasId = true;
          } else if (type == NFQA_PAYLOAD) {
            payload = d;
            payloadLen = dlen;
          } else if (type == NFQA_CAP_LEN && dlen >= 4) {
            uint32_t be;
            memcpy(&be, d, 4);
            capLen = ntohl(be);
          }
          int step = static_cast<int>(NLA_ALIGN(a->nla_len));
          p += step;
          attrLen -= step;
        }
        if (!hasId) continue;
        received_++;
        if (!haveId || static_cast<int32_t>(id - maxId) > 0) maxId = id;
        haveId = true;
        if (payload == nullptr || cut || (capLen != 0 && capLen > payloadLen)) {
          truncated_++;  // cut to the copy range or to the slot: never delivered half
          continue;
        }
        o[placed] = static_cast<int32_t>(payload - base);
        l[placed] = static_cast<int32_t>(payloadLen);
        placed++;
      }
    }
    if (haveId) {
      deferredId_ = maxId;
      deferred_ = true;
      if (!defer) SendDeferredVerdict();
    }
    return placed;
  }

  // SendDeferredVerdict sends the verdict ReadCore left, if any.
  void SendDeferredVerdict() {
    if (!deferred_) return;
    deferred_ = false;
    int err = SendVerdictBatch(deferredId_);
    if (err != 0) {
      verdictErrors_++;
      lastVerdictErrno_ = err;
    }
  }

  // --- the express path (express_in.h) ------------------------------------------------------
  // expressSlots(buf, offsets, lengths): the arrays nfq-native.ts reads batches into; the express
  // path reads into the same ones, so a batch it leaves is where readBatch would have put it.
  Napi::Value ExpressSlots(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      Napi::TypeError::New(env, "expressSlots(buf: Uint8Array, offsets: Int32Array, lengths: Int32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
    Napi::Int32Array offs = info[1].As<Napi::Int32Array>();
    Napi::Int32Array lens = info[2].As<Napi::Int32Array>();
    size_t slotLen = 0;
    size_t slots = BatchSlots(buf, offs, lens, &slotLen);
    if (slots == 0) {
      Napi::RangeError::New(env, "expressSlots: buf too small for that many slots").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());  // the express thread reads into these
    exBufRef_ = Napi::Persistent(buf);
    exOffsRef_ = Napi::Persistent(offs);
    exLensRef_ = Napi::Persistent(lens);
    exBase_ = buf.Data();
    exOffs_ = offs.Data();
    exLens_ = lens.Data();
    exSlots_ = slots;
    exSlotLen_ = slotLen;
    poller_.SetPre(&NfqSocket::ExpressPre, this);
    return env.Undefined();
  }

  // expressSa(slot, state: Float64Array, spi, key, salt, outer: Uint8Array (0, 4 or 16 bytes),
  // words: Uint32Array, top: Uint32Array, window, replayFd, tunFd, vnet: boolean)
  Napi::Value ExpressSa(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto u8 = [](const Napi::Value& v) {
      return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array;
    };
    auto u32 = [](const Napi::Value& v) {
      return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array;
    };
    if (info.Length() < 12 || !info[0].IsNumber() || !info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || !info[2].IsNumber() || !u8(info[3]) ||
        !u8(info[4]) || !u8(info[5]) || !u32(info[6]) || !u32(info[7]) || !info[8].IsNumber() || !info[9].IsNumber() ||
        !info[10].IsNumber() || !info[11].IsBoolean()) {
      Napi::TypeError::New(env, "expressSa(slot, state, spi, key, salt, outer, words, top, window, replayFd, tunFd, vnet)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array key = info[3].As<Napi::Uint8Array>();
    Napi::Uint8Array salt = info[4].As<Napi::Uint8Array>();
    Napi::Uint8Array outer = info[5].As<Napi::Uint8Array>();
    if (salt.ByteLength() != 4) {
      Napi::RangeError::New(env, "salt must be 4 bytes").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());
    const char* err = express_.AddSa(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Float64Array>(),
                                     info[2].As<Napi::Number>().Uint32Value(), key.Data(), key.ByteLength(), salt.Data(),
                                     outer.Data(), outer.ByteLength(), info[6].As<Napi::Uint32Array>(), info[7].As<Napi::Uint32Array>(),
                                     info[8].As<Napi::Number>().Uint32Value(), info[9].As<Napi::Number>().Int32Value(),
                                     info[10].As<Napi::Number>().Int32Value(), info[11].As<Napi::Boolean>().Value());
    if (err != nullptr) Napi::Error::New(env, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // expressFlow(slot, family, src, dst, fake): 1 learned, 0 already known or no room.
  Napi::Value ExpressFlow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto u8 = [](const Napi::Value& v) {
      return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array;
    };
    if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsNumber() || !u8(info[2]) || !u8(info[3]) || !u8(info[4])) {
      Napi::TypeError::New(env, "expressFlow(slot, family, src, dst, fake)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int family = info[1].As<Napi::Number>().Int32Value();
    size_t alen = family == 4 ? 4 : family == 6 ? 16 : 0;
    Napi::Uint8Array src = info[2].As<Napi::Uint8Array>();
    Napi::Uint8Array dst = info[3].As<Napi::Uint8Array>();
    Napi::Uint8Array fake = info[4].As<Napi::Uint8Array>();
    if (alen == 0 || src.ByteLength() < alen || dst.ByteLength() < alen || fake.ByteLength() < alen) {
      Napi::RangeError::New(env, "expressFlow: addresses shorter than the family's").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());
    return Napi::Number::New(env, express_.AddFlow(info[0].As<Napi::Number>().Int32Value(), family, src.Data(), dst.Data(), fake.Data()));
  }

  Napi::Value ExpressClear(const Napi::CallbackInfo& info) {
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());
    express_.Clear();
    return info.Env().Undefined();
  }

  // offload(loop), lock(), unlock(), offloaded: the express thread (express_loop.h, uv_poller.h).
  // poll and expressSlots first.
  Napi::Value Offload(const Napi::CallbackInfo& info) { return poller_.OffloadJs(info, &NfqSocket::ExpressReady); }
  Napi::Value Lock(const Napi::CallbackInfo& info) { return poller_.LockJs(info); }
  Napi::Value Unlock(const Napi::CallbackInfo& info) { return poller_.UnlockJs(info); }
  Napi::Value GetOffloaded(const Napi::CallbackInfo& info) { return poller_.OffloadedJs(info); }

  // ExpressReady: the loop thread may take the fd (flows known, slots set, nothing stashed).
  static bool ExpressReady(void* arg) {
    NfqSocket* q = static_cast<NfqSocket*>(arg);
    return q->express_.Armed() && q->exBase_ != nullptr && q->fd_ >= 0 && !q->stashPending_;
  }

  // ExpressPre runs before the JS callback on each readable event while flows are known: it
  // reads a batch into the registered arrays and lets the express path take it from the first
  // packet on (express_in.h Batch); the packets it leaves stay where readBatch would have put
  // them, for JS. true: the event is settled (the queue is drained, or the round budget is
  // spent: the poll is level-triggered, so the loop comes back after its other work).
  static bool ExpressPre(void* arg) {
    NfqSocket* q = static_cast<NfqSocket*>(arg);
    if (!q->express_.Armed() || q->exBase_ == nullptr || q->fd_ < 0 || q->stashPending_) return false;
    for (int round = 0; round < kExpressPerEvent; round++) {
      bool eagain = false;
      int placed = q->ReadCore(q->exBase_, q->exSlots_, q->exSlotLen_, q->exOffs_, q->exLens_, &eagain, true);
      if (placed <= 0) q->SendDeferredVerdict();  // cut packets only: still dropped at once
      if (placed < 0) return false;  // JS sees the error
      if (placed == 0) {
        if (eagain) return true;
        continue;  // only cut packets (counted), ENOBUFS (counted) or EINTR: read again
      }
      uint8_t* pkts[kMaxBatch];
      for (int i = 0; i < placed; i++) pkts[i] = q->exBase_ + q->exOffs_[i];
      int taken = q->express_.Batch(pkts, q->exLens_, placed, q->exSlotLen_);
      q->SendDeferredVerdict();  // after the TUN write: off the packet's way
      q->expressTaken_ += taken;
      // A short batch drained the queue (recvmmsg stops at the first EAGAIN): settled without
      // a read that would only say EAGAIN. What arrived since makes the poll fire again.
      if (taken == placed) {
        if (q->lastShort_) return true;
        continue;
      }
      // The rest of the batch is JavaScript's: moved to the front of the arrays, in order.
      for (int i = taken; i < placed; i++) {
        q->exOffs_[i - taken] = q->exOffs_[i];
        q->exLens_[i - taken] = q->exLens_[i];
      }
      q->stashPending_ = true;
      q->stashCount_ = placed - taken;
      return false;
    }
    return true;
  }

  // stats(): { received, truncated, batches, enobufs, verdictErrors, lastVerdictErrno }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());  // the loop thread counts too
    o.Set("received", Napi::Number::New(env, static_cast<double>(received_)));
    o.Set("truncated", Napi::Number::New(env, static_cast<double>(truncated_)));
    o.Set("batches", Napi::Number::New(env, static_cast<double>(batches_)));
    o.Set("enobufs", Napi::Number::New(env, static_cast<double>(enobufs_)));
    o.Set("verdictErrors", Napi::Number::New(env, static_cast<double>(verdictErrors_)));
    o.Set("lastVerdictErrno", Napi::Number::New(env, lastVerdictErrno_));
    o.Set("expressTaken", Napi::Number::New(env, expressTaken_));
    o.Set("replayMapped", Napi::Number::New(env, express_.MappedTops()));
    o.Set("socketDrops", Napi::Number::New(env, SocketDrops()));
    return o;
  }

  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  // peerFd is a stand-in's other end (-1 for a real queue).
  Napi::Value PeerFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), peerFd_); }

  // poll(cb): watch the socket for readability (level-triggered); cb(status) on the main thread.
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, "poll(cb: function)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) {
      ThrowErrno(env, EBADF, "uv_poll_start", "poll NFQUEUE");
      return env.Undefined();
    }
    poller_.Start(env, fd_, info[0].As<Napi::Function>(), "espgate:nfqueue");
    return env.Undefined();
  }

  Napi::Value Unpoll(const Napi::CallbackInfo& info) {
    poller_.Stop();
    return info.Env().Undefined();
  }

  // close(): unbind the queue, stop polling, close the socket. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseFd();
    return info.Env().Undefined();
  }

  void CloseFd() {
    poller_.Close();
    express_.Clear();
    stashPending_ = false;
    if (fd_ >= 0) {
      if (bound_) {
        // Packets still queued for us are dropped by the kernel when the queue goes away.
        nfqnl_msg_config_cmd cmd{};
        cmd.command = NFQNL_CFG_CMD_UNBIND;
        MsgBuilder m(NFQNL_MSG_CONFIG, 0, queue_, ++seq_);
        m.Attr(NFQA_CFG_CMD, &cmd, sizeof(cmd));
        sockaddr_nl kernel{};
        kernel.nl_family = AF_NETLINK;
        sendto(fd_, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
        bound_ = false;
      }
      close(fd_);
      fd_ = -1;
    }
    if (peerFd_ >= 0) {
      close(peerFd_);
      peerFd_ = -1;
    }
    for (int* fd : {&fd4_, &fd6_}) {
      if (*fd >= 0) {
        close(*fd);
        *fd = -1;
      }
    }
  }

  int fd_ = -1;  // the netlink socket, the stand-in's socketpair end, or socket mode's epoll fd
  // Socket mode: the raw ESP sockets (-1: that family is not offered) and recvmmsg's arrays
  // (ReadCore runs on one thread at a time, under the poller's lock).
  static constexpr size_t kIp6HeaderLen = 40;
  bool socket_ = false;
  int fd4_ = -1;
  int fd6_ = -1;
  mmsghdr rawMsgs_[kMaxBatch];
  iovec rawIovs_[kMaxBatch];
  sockaddr_in6 rawNames_[kMaxBatch];
  alignas(cmsghdr) uint8_t rawCtl_[kMaxBatch][CMSG_SPACE(sizeof(in6_pktinfo))];
  uint16_t queue_ = 0;
  uint32_t seq_ = 0;
  bool bound_ = false;
  bool deferred_ = false;  // a verdict ReadCore left for SendDeferredVerdict
  bool lastShort_ = false;  // ReadCore's recvmmsg filled fewer slots than it offered
  uint32_t deferredId_ = 0;
  uint64_t received_ = 0;
  uint64_t truncated_ = 0;
  uint64_t batches_ = 0;
  uint64_t enobufs_ = 0;
  uint64_t verdictErrors_ = 0;
  int lastVerdictErrno_ = 0;
  int peerFd_ = -1;
  espgate::UvPoller poller_;
  // The express path: SAs and flows, the arrays it reads into, a batch it left for readBatch.
  static constexpr int kExpressPerEvent = 16;
  espgate::ExpressIn express_;
  Napi::Reference<Napi::Uint8Array> exBufRef_;
  Napi::Reference<Napi::Int32Array> exOffsRef_;
  Napi::Reference<Napi::Int32Array> exLensRef_;
  uint8_t* exBase_ = nullptr;
  int32_t* exOffs_ = nullptr;
  int32_t* exLens_ = nullptr;
  size_t exSlots_ = 0;
  size_t exSlotLen_ = 0;
  bool stashPending_ = false;
  int stashCount_ = 0;
  double expressTaken_ = 0;
};

}  // namespace

Napi::Object InitNfq(Napi::Env env, Napi::Object exports) { return NfqSocket::Init(env, exports); }

NODE_API_MODULE(espgate_nfq, InitNfq)
