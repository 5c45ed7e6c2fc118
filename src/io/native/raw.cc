// raw.cc: the raw ESP sender (SOCK_RAW, IPPROTO_ESP, no IP_HDRINCL: the kernel builds the outer
// IPv4/IPv6 header). Same socket recipe as src/io/rawsock.ts (the npm raw-socket path):
// *_MTU_DISCOVER = *_PMTUDISC_PROBE, SO_RCVBUF minimal, receive shut down, never read.
//
//   open(family: 4 | 6, pmtuProbe: boolean) -> fd | -errno
//   send(fd, family, dst: string, buf: Buffer, offset, length) -> 0 | -errno
//   sendBatch(fd, family, dsts: string[], bufs: Buffer[], offsets: Uint32Array,
//             lengths: Uint32Array, count, errnos: Int32Array) -> packets the kernel took
//       one sendmmsg(2) for up to RAW_BATCH_MAX packets, each to its own destination. The
//       kernel has copied every payload before it returns, so buffers may be reused at once.
//       sendmmsg stops at the first failing packet: that packet's errno goes into errnos[i]
//       (0 = sent) and the call goes on after it, so one EAGAIN/ENOBUFS costs one packet.
//       A bad address or range is -EINVAL in errnos[i] without a system call.
//   close(fd) -> 0 | -errno
//
// Threading: main thread; no state besides the caller's fds.

#include <napi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace {

constexpr int kIpprotoEsp = 50;
constexpr uint32_t kBatchMax = 256;
constexpr uint32_t kSendMaxBytes = 65515;

union SockAddr {
  sockaddr_in v4;
  sockaddr_in6 v6;
};

// FillAddr parses dst into sa for family; false on a bad address.
bool FillAddr(int family, const char* dst, SockAddr* sa, socklen_t* len) {
  memset(sa, 0, sizeof(*sa));
  if (family == 4) {
    sa->v4.sin_family = AF_INET;
    *len = sizeof(sa->v4);
    return inet_pton(AF_INET, dst, &sa->v4.sin_addr) == 1;
  }
  sa->v6.sin6_family = AF_INET6;
  *len = sizeof(sa->v6);
  return inet_pton(AF_INET6, dst, &sa->v6.sin6_addr) == 1;
}

bool FillAddr(int family, const std::string& dst, SockAddr* sa, socklen_t* len) {
  return FillAddr(family, dst.c_str(), sa, len);
}

// kAddrTextMax bounds an address text (INET6_ADDRSTRLEN is 46); longer is not an address.
constexpr size_t kAddrTextMax = 64;

// AddrCache parses destination texts for one sendBatch call without a heap allocation per
// packet, and parses a text only when it differs from the previous packet's (a batch usually
// goes to few peers, often in runs).
struct AddrCache {
  char last[kAddrTextMax] = {0};
  size_t lastLen = 0;
  bool lastOk = false;
  SockAddr lastAddr;
  socklen_t lastSaLen = 0;

  // Fill writes the address of the JS string v into sa; false when it is not an address.
  bool Fill(napi_env env, napi_value v, int family, SockAddr* sa, socklen_t* salen) {
    char text[kAddrTextMax];
    size_t n = 0;
    if (napi_get_value_string_utf8(env, v, text, sizeof(text), &n) != napi_ok || n + 1 >= sizeof(text)) return false;
    if (!(n == lastLen && memcmp(text, last, n) == 0 && lastSaLen != 0)) {
      lastOk = FillAddr(family, text, &lastAddr, &lastSaLen);
      memcpy(last, text, n + 1);
      lastLen = n;
      if (!lastOk) lastSaLen = 0;
    }
    if (!lastOk) return false;
    *sa = lastAddr;
    *salen = lastSaLen;
    return true;
  }
};

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
    Napi::TypeError::New(env, "open(family: 4 | 6, pmtuProbe: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int family = info[0].As<Napi::Number>().Int32Value();
  bool probe = info[1].As<Napi::Boolean>().Value();
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpprotoEsp);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int one = 1;
  int probeVal = family == 4 ? IP_PMTUDISC_PROBE : IPV6_PMTUDISC_PROBE;
  bool ok = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one)) == 0;
  if (ok && probe) {
    ok = family == 4 ? setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &probeVal, sizeof(probeVal)) == 0
                     : setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &probeVal, sizeof(probeVal)) == 0;
  }
  if (!ok) {
    int err = errno;
    close(fd);
    return Napi::Number::New(env, -err);
  }
  // Not read here. No shutdown(SHUT_RD): with `inbound: socket` the receiver reads this very
  // socket through a dup() (nfq.cc OpenSockets), and a read-shut socket polls readable forever.
  // The one-byte buffer (the kernel's minimum) bounds what it holds until then.
  return Napi::Number::New(env, fd);
}

Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsString() || !info[3].IsBuffer() ||
      !info[4].IsNumber() || !info[5].IsNumber()) {
    Napi::TypeError::New(env, "send(fd, family, dst, buf, offset, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int family = info[1].As<Napi::Number>().Int32Value();
  auto buf = info[3].As<Napi::Buffer<uint8_t>>();
  int64_t off = info[4].As<Napi::Number>().Int64Value();
  int64_t len = info[5].As<Napi::Number>().Int64Value();
  SockAddr sa;
  socklen_t salen;
  if (off < 0 || len <= 0 || len > kSendMaxBytes || static_cast<uint64_t>(off + len) > buf.Length() ||
      !FillAddr(family, info[2].As<Napi::String>().Utf8Value(), &sa, &salen)) {
    return Napi::Number::New(env, -EINVAL);
  }
  ssize_t n = sendto(fd, buf.Data() + off, static_cast<size_t>(len), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), salen);
  return Napi::Number::New(env, n < 0 ? -errno : 0);
}

Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsArray() || !info[3].IsArray() ||
      !info[4].IsTypedArray() || !info[5].IsTypedArray() || !info[6].IsNumber() || !info[7].IsTypedArray()) {
    Napi::TypeError::New(env, "sendBatch(fd, family, dsts, bufs, offsets, lengths, count, errnos)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int family = info[1].As<Napi::Number>().Int32Value();
  Napi::Array dsts = info[2].As<Napi::Array>();
  Napi::Array bufs = info[3].As<Napi::Array>();
  auto offsets = info[4].As<Napi::Uint32Array>();
  auto lengths = info[5].As<Napi::Uint32Array>();
  auto errnos = info[7].As<Napi::Int32Array>();
  uint32_t count = info[6].As<Napi::Number>().Uint32Value();
  if (count > kBatchMax || count > dsts.Length() || count > bufs.Length() || count > offsets.ElementLength() ||
      count > lengths.ElementLength() || count > errnos.ElementLength()) {
    Napi::RangeError::New(env, "sendBatch: count exceeds an array or RAW_BATCH_MAX").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  static SockAddr addrs[kBatchMax];
  static iovec iovs[kBatchMax];
  static mmsghdr msgs[kBatchMax];
  static uint32_t index[kBatchMax];  // msgs[j] carries packet index[j]
  uint32_t m = 0;
  AddrCache cache;
  for (uint32_t i = 0; i < count; i++) {
    errnos[i] = 0;
    Napi::Value b = bufs.Get(i);
    Napi::Value d = dsts.Get(i);
    uint32_t off = offsets[i];
    uint32_t len = lengths[i];
    socklen_t salen = 0;
    if (!b.IsBuffer() || !d.IsString() || len == 0 || len > kSendMaxBytes ||
        static_cast<uint64_t>(off) + len > b.As<Napi::Buffer<uint8_t>>().Length() ||
        !cache.Fill(env, d, family, &addrs[m], &salen)) {
      errnos[i] = -EINVAL;
      continue;
    }
    iovs[m].iov_base = b.As<Napi::Buffer<uint8_t>>().Data() + off;
    iovs[m].iov_len = len;
    memset(&msgs[m], 0, sizeof(msgs[m]));
    msgs[m].msg_hdr.msg_name = &addrs[m];
    msgs[m].msg_hdr.msg_namelen = salen;
    msgs[m].msg_hdr.msg_iov = &iovs[m];
    msgs[m].msg_hdr.msg_iovlen = 1;
    index[m] = i;
    m++;
  }
  uint32_t sent = 0;
  uint32_t at = 0;
  // Bounded: every round either sends >= 1 packet or marks one failed.
  while (at < m) {
    int n = sendmmsg(fd, &msgs[at], m - at, MSG_DONTWAIT);
    if (n < 0) {
      errnos[index[at]] = -errno;
      at++;
      continue;
    }
    sent += static_cast<uint32_t>(n);
    at += static_cast<uint32_t>(n);
    if (n == 0) {  // not expected; do not spin
      errnos[index[at]] = -EAGAIN;
      at++;
    }
  }
  return Napi::Number::New(env, sent);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "close(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, close(info[0].As<Napi::Number>().Int32Value()) == 0 ? 0 : -errno);
}

}  // namespace

Napi::Object InitRaw(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("send", Napi::Function::New(env, Send, "send"));
  exports.Set("sendBatch", Napi::Function::New(env, SendBatch, "sendBatch"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("RAW_BATCH_MAX", Napi::Number::New(env, kBatchMax));
  return exports;
}

NODE_API_MODULE(espgate_raw, InitRaw)
