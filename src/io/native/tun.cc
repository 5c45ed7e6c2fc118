// tun.cc: the smallest native piece of espgate. One TunQueue object owns one file descriptor of
// /dev/net/tun attached to a TUN interface (IFF_TUN | IFF_NO_PI, optionally IFF_MULTI_QUEUE).
//
// What lives here, and why it is native:
//   - open + ioctl(TUNSETIFF) + ioctl(TUNSETPERSIST): plain syscalls, done once.
//   - readBatch: loops read() on the non-blocking fd until EAGAIN or the batch is full, so one
//     JS -> C++ transition moves up to bufs.length packets.
//   - write / writeBatch: one write() per packet (a TUN fd takes exactly one packet per write).
//   - IFF_VNET_HDR (open flag 4) + setOffload(TUN_F_*): every packet crosses the fd behind a
//     10-byte virtio_net_hdr. readBatch then reads with readv(2): the header into hdrs[10 * i],
//     the packet at bufs[i] + offset (so headroom and the packet stay where a plain TUN puts
//     them); writes put a zero header (no GSO, checksum complete) in front with writev(2).
//     With TSO offered, one read may return a TCP super-packet of up to 64 KiB that the data
//     path splits (src/io/vnet.ts).
//   - poll: a libuv uv_poll_t on the fd that calls one JS callback on the main thread when the
//     fd becomes readable; the JS side then drains it with synchronous readBatch calls.
//
// Error policy (see src/io/tun-native.ts): open-time failures throw a JS Error whose `code` is
// the errno name ("EPERM", "ENOENT", ...). Per-packet results are return values, never
// exceptions: readBatch returns the count (or -errno when the very first read failed with
// something other than EAGAIN), write returns 1 (sent), 0 (refused: EAGAIN/ENOBUFS/EINVAL...)
// or -errno (the device is gone).
//
// Threading: every method runs on the JS main thread; the object is not shared with workers.

#include <napi.h>
#include <uv.h>

#include "express.h"
#include "uring_read.h"
#include "uv_poller.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <memory>
#include <string>

namespace {

// ErrnoName returns "EPERM" for EPERM etc. (glibc >= 2.32), or "E<number>".
std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  if (n != nullptr) return n;
  return "E" + std::to_string(err);
}

// ThrowErrno throws Error("<what>: <ENAME> (<strerror>)") with .code, .errno and .syscall set,
// the same shape as Node's own system errors.
void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& what) {
  std::string name = ErrnoName(err);
  Napi::Error e = Napi::Error::New(env, what + ": " + name + " (" + strerror(err) + ")");
  e.Set("code", Napi::String::New(env, name));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

// BufferView returns the bytes of a Buffer/Uint8Array argument (honouring its byteOffset).
bool BufferView(Napi::Value v, uint8_t** data, size_t* len) {
  if (!v.IsTypedArray()) return false;
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) return false;
  Napi::Uint8Array u8 = v.As<Napi::Uint8Array>();
  *data = u8.Data();
  *len = u8.ByteLength();
  return true;
}

// Open flags passed from JS (bit set), kept apart from the kernel's IFF_* values.
constexpr uint32_t kOpenMultiQueue = 1;  // IFF_MULTI_QUEUE
constexpr uint32_t kOpenExclusive = 2;   // IFF_TUN_EXCL: fail with EBUSY if the name exists
constexpr uint32_t kOpenVnetHdr = 4;     // IFF_VNET_HDR: a virtio_net_hdr in front of every packet
// kOpenStandIn: no device. The queue is one end of an AF_UNIX SOCK_SEQPACKET socketpair, which
// frames like a TUN fd (one packet per read and per write, the virtio_net_hdr in front with
// kOpenVnetHdr); the other end is peerFd, for the caller to feed and drain. Same class, same
// methods, no kernel interface: the data-path warm-up (src/datapath/warmup.ts) runs the real
// code over it, and tests use it without root. path is ignored; setOffload answers ENOTTY.
constexpr uint32_t kOpenStandIn = 8;

// kVnetHdrLen is sizeof(struct virtio_net_hdr), the kernel's default TUNSETVNETHDRSZ.
constexpr size_t kVnetHdrLen = 10;
// kZeroVnetHdr is the header of every packet we write: no GSO, checksum complete.
const uint8_t kZeroVnetHdr[kVnetHdrLen] = {0};

}  // namespace

// TunQueue is one open queue (fd) of a TUN interface. JS: new TunQueue(path, name, flags).
class TunQueue : public Napi::ObjectWrap<TunQueue> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(
        env, "TunQueue",
        {
            InstanceAccessor<&TunQueue::GetName>("name"),
            InstanceAccessor<&TunQueue::GetFd>("fd"),
            InstanceAccessor<&TunQueue::GetPeerFd>("peerFd"),
            InstanceAccessor<&TunQueue::GetVnetHdr>("vnetHdr"),
            InstanceAccessor<&TunQueue::GetBatchedReads>("batchedReads"),
            InstanceMethod<&TunQueue::SetOffload>("setOffload"),
            InstanceMethod<&TunQueue::ReadBatch>("readBatch"),
            InstanceMethod<&TunQueue::Write>("write"),
            InstanceMethod<&TunQueue::WriteBatch>("writeBatch"),
            InstanceMethod<&TunQueue::WriteVnet>("writeVnet"),
            InstanceMethod<&TunQueue::SetPersist>("setPersist"),
            InstanceMethod<&TunQueue::Poll>("poll"),
            InstanceMethod<&TunQueue::Unpoll>("unpoll"),
            InstanceMethod<&TunQueue::Close>("close"),
            InstanceMethod<&TunQueue::ExpressSlot>("expressSlot"),
            InstanceMethod<&TunQueue::ExpressSa>("expressSa"),
            InstanceMethod<&TunQueue::ExpressFlow>("expressFlow"),
            InstanceMethod<&TunQueue::ExpressClear>("expressClear"),
            InstanceMethod<&TunQueue::Offload>("offload"),
            InstanceMethod<&TunQueue::Lock>("lock"),
            InstanceMethod<&TunQueue::Unlock>("unlock"),
            InstanceAccessor<&TunQueue::GetOffloaded>("offloaded"),
        });
    exports.Set("TunQueue", ctor);
    return exports;
  }

  // TunQueue(path, name, flags) opens path (normally /dev/net/tun) non-blocking and attaches it
  // to the TUN interface `name`, creating the interface if it does not exist.
  explicit TunQueue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TunQueue>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber()) {
      Napi::TypeError::New(env, "TunQueue(path: string, name: string, flags: number)")
          .ThrowAsJavaScriptException();
      return;
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    std::string name = info[1].As<Napi::String>().Utf8Value();
    uint32_t flags = info[2].As<Napi::Number>().Uint32Value();
    if (name.size() >= IFNAMSIZ) {
      Napi::RangeError::New(env, "interface name longer than 15 bytes").ThrowAsJavaScriptException();
      return;
    }

    if (flags & kOpenStandIn) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        ThrowErrno(env, errno, "socketpair", "stand-in queue " + name);
        return;
      }
      fd_ = sv[0];
      peerFd_ = sv[1];
      vnet_ = (flags & kOpenVnetHdr) != 0;
      name_ = name;
      return;
    }

    int fd = open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      ThrowErrno(env, errno, "open", "open " + path);
      return;
    }

    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, name.data(), name.size());
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (flags & kOpenMultiQueue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    if (flags & kOpenExclusive) ifr.ifr_flags |= IFF_TUN_EXCL;
    if (flags & kOpenVnetHdr) ifr.ifr_flags |= IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      close(fd);
      ThrowErrno(env, err, "ioctl", "TUNSETIFF " + name);
      return;
    }
    fd_ = fd;
    vnet_ = (flags & kOpenVnetHdr) != 0;
    name_.assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  }

  ~TunQueue() override { CloseFd(); }

 private:
  // name is the interface name the kernel chose (equal to the requested one unless it had %d).
  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }

  // fd is the file descriptor, or -1 after close().
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  // peerFd is a stand-in queue's other socket end (-1 for a real queue, and after close()).
  // The queue owns it: close() closes both ends.
  Napi::Value GetPeerFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), peerFd_); }

  // vnetHdr is true when the queue was opened with IFF_VNET_HDR.
  Napi::Value GetVnetHdr(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), vnet_); }
  // batchedReads: whether reads go through io_uring (uring_read.h), tried now if not yet.
  Napi::Value GetBatchedReads(const Napi::CallbackInfo& info) {
    if (!uringTried_ && fd_ >= 0) {
      uringTried_ = true;
      uring_.Open(fd_);
    }
    return Napi::Boolean::New(info.Env(), uring_.Ok());
  }

  // setOffload(flags: number): number — ioctl(TUNSETOFFLOAD, TUN_F_* bits): 0, or -errno
  // (EINVAL: a bit this kernel does not know). Offloads other than 0 need IFF_VNET_HDR.
  Napi::Value SetOffload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "setOffload(flags: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    unsigned long flags = info[0].As<Napi::Number>().Uint32Value();
    if (flags != 0 && !vnet_) return Napi::Number::New(env, -EINVAL);
    return Napi::Number::New(env, ioctl(fd_, TUNSETOFFLOAD, flags) < 0 ? -errno : 0);
  }

  // readBatch(bufs: Uint8Array[], sizes: Int32Array, offset: number, hdrs?: Uint8Array): number
  // Reads packets into bufs[i] at `offset` until EAGAIN or min(bufs.length, sizes.length) packets.
  // sizes[i] gets the number of bytes read. A packet longer than bufs[i].length - offset is
  // truncated by the kernel to exactly that length (read(2) does not report the full size), so
  // the caller compares the IP header's declared length with sizes[i] and drops short ones.
  // Returns the count, or -errno when the first read fails with anything but EAGAIN (gone).
  // With IFF_VNET_HDR, hdrs is required: packet i's virtio_net_hdr goes to hdrs[10 * i], and
  // the batch is also bounded by hdrs.length / 10; sizes[i] counts the packet without it.
  Napi::Value ReadBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
      Napi::TypeError::New(env, "readBatch(bufs: Buffer[], sizes: Int32Array, offset: number)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    Napi::Array bufs = info[0].As<Napi::Array>();
    Napi::TypedArray sizesTa = info[1].As<Napi::TypedArray>();
    if (sizesTa.TypedArrayType() != napi_int32_array) {
      Napi::TypeError::New(env, "sizes must be an Int32Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int32_t* sizes = sizesTa.As<Napi::Int32Array>().Data();
    size_t offset = info[2].As<Napi::Number>().Uint32Value();
    uint32_t limit = bufs.Length();
    if (sizesTa.ElementLength() < limit) limit = static_cast<uint32_t>(sizesTa.ElementLength());
    uint8_t* hdrs = nullptr;
    if (vnet_) {
      size_t hdrsLen = 0;
      if (info.Length() < 4 || !BufferView(info[3], &hdrs, &hdrsLen)) {
        Napi::TypeError::New(env, "readBatch on an IFF_VNET_HDR queue needs hdrs: Uint8Array")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
      if (hdrsLen / kVnetHdrLen < limit) limit = static_cast<uint32_t>(hdrsLen / kVnetHdrLen);
    }

    uint32_t n = 0;
    if (stashN_ > 0 && limit > 0) {
      // The express path read these packets and left them to us, in order: they come first.
      uint32_t take = stashN_ < limit ? stashN_ : limit;
      for (uint32_t j = 0; j < take; j++) {
        uint8_t* data;
        size_t len;
        if (!BufferView(bufs.Get(j), &data, &len) || len <= offset) {
          Napi::RangeError::New(env, "bufs[i] must be a Buffer longer than offset").ThrowAsJavaScriptException();
          return env.Undefined();
        }
        uint32_t p = stashAt_ + j;
        size_t keep = static_cast<size_t>(exSizes_[p]);
        if (keep > len - offset) keep = len - offset;  // as read(2) would have truncated it
        // Slots are taken in increasing order and j <= p: a move never overwrites a packet
        // still to be moved (the engine passes the same buffers, so usually j == p or below).
        if (data + offset != exDatas_[p]) memmove(data + offset, exDatas_[p], keep);
        if (vnet_ && hdrs + kVnetHdrLen * j != exHdrs_ + kVnetHdrLen * p) memmove(hdrs + kVnetHdrLen * j, exHdrs_ + kVnetHdrLen * p, kVnetHdrLen);
        sizes[j] = static_cast<int32_t>(keep);
      }
      stashAt_ += take;
      stashN_ -= take;
      n = take;
      if (stashN_ > 0) return Napi::Number::New(env, n);
    }
    uint8_t* datas[espgate::kUringMaxReads];
    size_t caps[espgate::kUringMaxReads];
    while (n < limit) {
      uint32_t k = limit - n;
      if (k > want_) k = want_;
      for (uint32_t i = 0; i < k; i++) {
        uint8_t* data;
        size_t len;
        if (!BufferView(bufs.Get(n + i), &data, &len) || len <= offset) {
          Napi::RangeError::New(env, "bufs[i] must be a Buffer longer than offset")
              .ThrowAsJavaScriptException();
          return env.Undefined();
        }
        datas[i] = data + offset;
        caps[i] = len - offset;
      }
      bool drained = false;
      int err = 0;
      uint32_t m = ReadInto(datas, caps, vnet_ ? hdrs + kVnetHdrLen * n : nullptr, k, sizes + n, &drained, &err);
      n += m;
      if (err != 0) {
        if (n == 0) return Napi::Number::New(env, -err);
        break;  // report what we have; the next call sees the error again
      }
      if (drained) break;
    }
    return Napi::Number::New(env, n);
  }

  // ReadInto reads up to k packets: packet i into datas[i] (caps[i] bytes), its virtio_net_hdr
  // (with IFF_VNET_HDR) at hdrs + 10 * i. The packets read are compacted to the front in the
  // order they were read; sizes[i] is packet i's length without the header. Returns how many.
  // *drained: the fd ran out (EAGAIN); *err: an errno other than EAGAIN stopped the reading (the
  // next read sees it again). One io_uring_enter for the whole batch when io_uring is up (see
  // uring_read.h), else one readv(2) per packet as before.
  uint32_t ReadInto(uint8_t* const* datas, const size_t* caps, uint8_t* hdrs, uint32_t k, int32_t* sizes, bool* drained, int* err) {
    if (!uringTried_ && fd_ >= 0) {
      uringTried_ = true;
      uring_.Open(fd_);
    }
    uint32_t m = 0;
    int32_t* res = res_;
    bool batched = false;
    if (k >= 2 && uring_.Ok()) {
      for (uint32_t i = 0; i < k; i++) {
        if (hdrs != nullptr) {
          iovs_[2 * i] = {hdrs + kVnetHdrLen * i, kVnetHdrLen};
          iovs_[2 * i + 1] = {datas[i], caps[i]};
        } else {
          iovs_[i] = {datas[i], caps[i]};
        }
      }
      batched = uring_.ReadMany(iovs_, hdrs != nullptr ? 2 : 1, k, res);
    }
    if (!batched) {
      // readv(2), one packet at a time, until the first that fails (the rest: not attempted).
      uint32_t i = 0;
      while (i < k) {
        ssize_t r;
        if (hdrs != nullptr) {
          iovec iov[2] = {{hdrs + kVnetHdrLen * i, kVnetHdrLen}, {datas[i], caps[i]}};
          r = readv(fd_, iov, 2);
        } else {
          r = read(fd_, datas[i], caps[i]);
        }
        if (r < 0 && errno == EINTR) continue;
        res[i] = r < 0 ? -errno : static_cast<int32_t>(r);
        i++;
        if (r < 0) break;
      }
      for (; i < k; i++) res[i] = -EAGAIN;
    }
    *drained = false;
    *err = 0;
    for (uint32_t i = 0; i < k; i++) {
      int32_t r = res[i];
      if (r < 0) {
        if (r == -EAGAIN) {
          *drained = true;
        } else if (*err == 0) {
          *err = -r;
        }
        continue;
      }
      size_t len = static_cast<size_t>(r);
      if (hdrs != nullptr) len = len < kVnetHdrLen ? 0 : len - kVnetHdrLen;
      if (m != i) {
        if (len > caps[m]) len = caps[m];
        // A read after one that found nothing got a packet that arrived meanwhile: it follows
        // the packets before it.
        memmove(datas[m], datas[i], len);
        if (hdrs != nullptr) memmove(hdrs + kVnetHdrLen * m, hdrs + kVnetHdrLen * i, kVnetHdrLen);
      }
      sizes[m++] = static_cast<int32_t>(len);
    }
    // The next batch: double while the fd keeps the batch full, else what came plus one (the
    // one that finds the fd empty). At least 2, so a lone packet costs one call, not two.
    if (!*drained && *err == 0 && m == k) {
      want_ = want_ * 2 > espgate::kUringMaxReads ? espgate::kUringMaxReads : want_ * 2;
    } else {
      want_ = m + 1 < 2 ? 2 : m + 1 > espgate::kUringMaxReads ? espgate::kUringMaxReads : m + 1;
    }
    return m;
  }

  // WriteOne writes one packet: 1 = sent, 0 = refused (queue full or malformed), -errno = gone.
  // With IFF_VNET_HDR the packet goes behind hdr (kVnetHdrLen bytes), or a zero header.
  int WriteOne(const uint8_t* data, size_t len, const uint8_t* hdr = kZeroVnetHdr) {
    for (;;) {
      ssize_t r;
      if (vnet_) {
        iovec iov[2] = {{const_cast<uint8_t*>(hdr), kVnetHdrLen}, {const_cast<uint8_t*>(data), len}};
        r = writev(fd_, iov, 2);
      } else {
        r = write(fd_, data, len);
      }
      if (r >= 0) return 1;
      switch (errno) {
        case EINTR:
          continue;
        case EAGAIN:
        case ENOBUFS:
        case ENOMEM:
        case EINVAL:    // not an IPv4/IPv6 packet (IFF_NO_PI takes the version nibble)
        case EMSGSIZE:
        case EFAULT:
          return 0;
        default:
          return -errno;  // EBADFD / EIO / EBADF: the interface is gone
      }
    }
  }

  // write(buf: Uint8Array, offset: number, length: number): number (see WriteOne)
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data;
    size_t len;
    if (info.Length() < 3 || !BufferView(info[0], &data, &len) || !info[1].IsNumber() ||
        !info[2].IsNumber()) {
      Napi::TypeError::New(env, "write(buf: Buffer, offset: number, length: number)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t off = info[1].As<Napi::Number>().Uint32Value();
    size_t n = info[2].As<Napi::Number>().Uint32Value();
    if (off + n > len) {
      Napi::RangeError::New(env, "offset + length beyond the buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    return Napi::Number::New(env, WriteOne(data + off, n));
  }

  // writeVnet(hdr: Uint8Array, buf: Uint8Array, offset: number, length: number): number
  // Like write, behind the given virtio_net_hdr (hdr[0, 10)): a GSO super-packet built by the
  // data path (src/io/vnet.ts GroBatch). Only on an IFF_VNET_HDR queue (refused, 0, otherwise).
  Napi::Value WriteVnet(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* hdr;
    size_t hdrLen;
    uint8_t* data;
    size_t len;
    if (info.Length() < 4 || !BufferView(info[0], &hdr, &hdrLen) || !BufferView(info[1], &data, &len) ||
        !info[2].IsNumber() || !info[3].IsNumber()) {
      Napi::TypeError::New(env, "writeVnet(hdr: Uint8Array, buf: Buffer, offset: number, length: number)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t off = info[2].As<Napi::Number>().Uint32Value();
    size_t n = info[3].As<Napi::Number>().Uint32Value();
    if (off + n > len || hdrLen < kVnetHdrLen) {
      Napi::RangeError::New(env, "offset + length beyond the buffer, or hdr shorter than 10 bytes").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    if (!vnet_) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, WriteOne(data + off, n, hdr));
  }

  // writeBatch(bufs: Uint8Array[], offset: number, sizes: Int32Array, count: number): number
  // Writes packet i from bufs[i] at `offset`, sizes[i] bytes, for i < count. Returns how many
  // the kernel took (refused ones are skipped and not counted), or -errno if the device is gone.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsTypedArray() ||
        !info[3].IsNumber()) {
      Napi::TypeError::New(env, "writeBatch(bufs: Buffer[], offset: number, sizes: Int32Array, count: number)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array bufs = info[0].As<Napi::Array>();
    size_t offset = info[1].As<Napi::Number>().Uint32Value();
    Napi::TypedArray sizesTa = info[2].As<Napi::TypedArray>();
    if (sizesTa.TypedArrayType() != napi_int32_array) {
      Napi::TypeError::New(env, "sizes must be an Int32Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int32_t* sizes = sizesTa.As<Napi::Int32Array>().Data();
    uint32_t count = info[3].As<Napi::Number>().Uint32Value();
    if (count > bufs.Length() || count > sizesTa.ElementLength()) {
      Napi::RangeError::New(env, "count exceeds bufs or sizes").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    int32_t sent = 0;
    for (uint32_t i = 0; i < count; i++) {
      uint8_t* data;
      size_t len;
      if (!BufferView(bufs.Get(i), &data, &len) || sizes[i] < 0 ||
          offset + static_cast<size_t>(sizes[i]) > len) {
        Napi::RangeError::New(env, "bufs[i] shorter than offset + sizes[i]").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      int r = WriteOne(data + offset, static_cast<size_t>(sizes[i]));
      if (r < 0) return Napi::Number::New(env, r);
      sent += r;
    }
    return Napi::Number::New(env, sent);
  }

  // setPersist(on: boolean): TUNSETPERSIST, so the interface outlives this fd (and the process).
  Napi::Value SetPersist(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int on = info.Length() > 0 && info[0].ToBoolean().Value() ? 1 : 0;
    if (fd_ < 0) {
      ThrowErrno(env, EBADF, "ioctl", "TUNSETPERSIST " + name_);
      return env.Undefined();
    }
    if (ioctl(fd_, TUNSETPERSIST, on) < 0) {
      ThrowErrno(env, errno, "ioctl", "TUNSETPERSIST " + name_);
      return env.Undefined();
    }
    return env.Undefined();
  }

  // --- the express path (express.h) ---------------------------------------------------------
  // expressSlot(bufs: Uint8Array[], hdrs: Uint8Array | null): the buffers the express path reads
  // into (the engine passes its TUN slots and its header array, so packets left to JavaScript
  // are already where readBatch would have put them). Packets are read at bufs[i][16] (the ESP
  // headroom), header i at hdrs[10 * i]. Installs the pre-read hook on the poller.
  Napi::Value ExpressSlot(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* hdr = nullptr;
    size_t hdrLen = 0;
    if (info.Length() < 2 || !info[0].IsArray() || (vnet_ && (!BufferView(info[1], &hdr, &hdrLen)))) {
      Napi::TypeError::New(env, "expressSlot(bufs: Uint8Array[], hdrs: Uint8Array | null)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array bufs = info[0].As<Napi::Array>();
    uint32_t count = bufs.Length();
    if (count > espgate::kUringMaxReads) count = espgate::kUringMaxReads;
    if (vnet_ && hdrLen / kVnetHdrLen < count) count = static_cast<uint32_t>(hdrLen / kVnetHdrLen);
    if (count == 0) {
      Napi::RangeError::New(env, "expressSlot: no buffers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());  // the express thread reads into these
    for (uint32_t i = 0; i < count; i++) {
      uint8_t* buf = nullptr;
      size_t bufLen = 0;
      if (!BufferView(bufs.Get(i), &buf, &bufLen) || bufLen <= espgate::kEspHeadroom + espgate::kEspTailroom + 40) {
        Napi::TypeError::New(env, "expressSlot: bufs[i] must be a Uint8Array with room for a packet").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      exSlots_[i] = buf;
      exCaps_[i] = bufLen;
      exDatas_[i] = buf + espgate::kEspHeadroom;
      exRooms_[i] = bufLen - espgate::kEspHeadroom;
    }
    exBufsRef_ = Napi::Persistent(bufs);
    if (vnet_) exHdrRef_ = Napi::Persistent(info[1].As<Napi::Uint8Array>());
    exHdrs_ = hdr;
    exCount_ = count;
    stashN_ = 0;
    poller_.SetPre(&TunQueue::ExpressPre, this);
    return env.Undefined();
  }

  // expressSa(slot, state: Float64Array, spi, key: Uint8Array, salt: Uint8Array, fd, family,
  // endpoint: Uint8Array): an outbound SA for express flows (AES-GCM, 32-bit sequence numbers).
  Napi::Value ExpressSa(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t *key, *salt, *ep;
    size_t keyLen, saltLen, epLen;
    if (info.Length() < 8 || !info[0].IsNumber() || !info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || !info[2].IsNumber() ||
        !BufferView(info[3], &key, &keyLen) || !BufferView(info[4], &salt, &saltLen) || saltLen != 4 ||
        !info[5].IsNumber() || !info[6].IsNumber() || !BufferView(info[7], &ep, &epLen)) {
      Napi::TypeError::New(env, "expressSa(slot, state, spi, key, salt, fd, family, endpoint)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int family = info[6].As<Napi::Number>().Int32Value();
    if ((family != 4 || epLen != 4) && (family != 6 || epLen != 16)) {
      Napi::RangeError::New(env, "endpoint must be 4 bytes (family 4) or 16 (family 6)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());
    const char* err = express_.AddSa(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Float64Array>(),
                                     info[2].As<Napi::Number>().Uint32Value(), key, keyLen, salt,
                                     info[5].As<Napi::Number>().Int32Value(), family, ep);
    if (err != nullptr) Napi::Error::New(env, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // expressFlow(family, src, fake, real, slot): 1 learned, 0 already known or no room.
  Napi::Value ExpressFlow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t *src, *fake, *real;
    size_t srcLen, fakeLen, realLen;
    if (info.Length() < 5 || !info[0].IsNumber() || !BufferView(info[1], &src, &srcLen) ||
        !BufferView(info[2], &fake, &fakeLen) || !BufferView(info[3], &real, &realLen) || !info[4].IsNumber()) {
      Napi::TypeError::New(env, "expressFlow(family, src, fake, real, slot)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int family = info[0].As<Napi::Number>().Int32Value();
    size_t alen = family == 4 ? 4 : family == 6 ? 16 : 0;
    if (alen == 0 || srcLen < alen || fakeLen < alen || realLen < alen) {
      Napi::RangeError::New(env, "expressFlow: addresses shorter than the family's").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());
    return Napi::Number::New(env, express_.AddFlow(family, src, fake, real, info[4].As<Napi::Number>().Int32Value()));
  }

  // expressClear(): forget every flow and SA (tables changed, a trace started, the SA rekeyed).
  Napi::Value ExpressClear(const Napi::CallbackInfo& info) {
    std::lock_guard<std::recursive_timed_mutex> g(poller_.mu());
    express_.Clear();
    return info.Env().Undefined();
  }

  // offload(loop), lock(), unlock(), offloaded: the express thread (express_loop.h, uv_poller.h).
  // poll and expressSlot first.
  Napi::Value Offload(const Napi::CallbackInfo& info) { return poller_.OffloadJs(info, &TunQueue::ExpressReady); }
  Napi::Value Lock(const Napi::CallbackInfo& info) { return poller_.LockJs(info); }
  Napi::Value Unlock(const Napi::CallbackInfo& info) { return poller_.UnlockJs(info); }
  Napi::Value GetOffloaded(const Napi::CallbackInfo& info) { return poller_.OffloadedJs(info); }

  // ExpressReady: the loop thread may take the fd (flows known, slots set, nothing stashed).
  static bool ExpressReady(void* arg) {
    TunQueue* q = static_cast<TunQueue*>(arg);
    return q->express_.Armed() && q->exCount_ > 0 && q->fd_ >= 0 && q->stashN_ == 0;
  }

  // ExpressPre runs before the JS callback on each readable event: while flows are known it
  // reads packets into the express slots (a batch per system call, ReadInto) and queues those
  // express.h takes (TCP super-packets as their segments), up to kExpressPerEvent packets, and
  // sends the queue with one sendmmsg before it returns. true: the event is settled and JS is
  // not needed (the fd is drained, or the read budget is spent: the poll is level-triggered, so
  // the loop comes back after its other work); false: call JS (packets are stashed for
  // readBatch: the first one the express path left and every one read after it, in order; or a
  // read failed and JS should see it).
  static bool ExpressPre(void* arg) {
    TunQueue* q = static_cast<TunQueue*>(arg);
    if (!q->express_.Armed() || q->exCount_ == 0 || q->fd_ < 0 || q->stashN_ > 0) return false;
    bool settled = true;
    uint32_t total = 0;
    while (total < kExpressPerEvent) {
      uint32_t k = q->want_;
      if (k > q->exCount_) k = q->exCount_;
      if (k > kExpressPerEvent - total) k = kExpressPerEvent - total;
      bool drained = false;
      int err = 0;
      uint32_t m = q->ReadInto(q->exDatas_, q->exRooms_, q->vnet_ ? q->exHdrs_ : nullptr, k, q->exSizes_, &drained, &err);
      total += m;
      uint32_t i = 0;
      while (i < m && q->express_.Try(q->exSlots_[i], espgate::kEspHeadroom, static_cast<size_t>(q->exSizes_[i]), q->exCaps_[i],
                                      q->vnet_ ? q->exHdrs_ + kVnetHdrLen * i : nullptr)) {
        i++;
      }
      if (i < m) {
        q->stashAt_ = i;
        q->stashN_ = m - i;
        settled = false;
        break;
      }
      if (err != 0) {
        settled = false;  // JavaScript reads again and sees it
        break;
      }
      if (drained || m == 0) break;
    }
    // What was queued leaves before JavaScript handles anything read after it.
    q->express_.Flush();
    return settled;
  }

  // poll(cb: (status: number) => void): start watching the fd for readability. cb runs on the main
  // thread each time libuv sees the fd readable (level-triggered: drain it, or it fires again).
  // status is 0, or a negative libuv error code. Calling poll again replaces the callback.
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, "poll(cb: function)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) {
      ThrowErrno(env, EBADF, "uv_poll_start", "poll " + name_);
      return env.Undefined();
    }
    poller_.Start(env, fd_, info[0].As<Napi::Function>(), "espgate:tun");
    return env.Undefined();
  }

  // unpoll(): stop watching (the callback is kept; poll(cb) starts again).
  Napi::Value Unpoll(const Napi::CallbackInfo& info) {
    poller_.Stop();
    return info.Env().Undefined();
  }

  // close(): stop polling, release the callback and close the fd. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseFd();
    return info.Env().Undefined();
  }

  // CloseFd stops and frees the poll handle (uv_close is asynchronous; the handle is deleted in
  // its close callback), then closes the fd. libuv requires the poll to stop before the close.
  void CloseFd() {
    poller_.Close();
    express_.Clear();
    stashN_ = 0;
    uring_.Close();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    if (peerFd_ >= 0) {
      close(peerFd_);
      peerFd_ = -1;
    }
  }

  int fd_ = -1;
  int peerFd_ = -1;
  bool vnet_ = false;
  std::string name_;
  espgate::UvPoller poller_;
  // The express path: flows and SAs, the slots it reads into, the packets it left for readBatch.
  static constexpr int kExpressPerEvent = 64;
  espgate::Express express_;
  Napi::Reference<Napi::Array> exBufsRef_;
  Napi::Reference<Napi::Uint8Array> exHdrRef_;
  uint8_t* exSlots_[espgate::kUringMaxReads] = {};  // slot i (the ESP headroom in front)
  size_t exCaps_[espgate::kUringMaxReads] = {};
  uint8_t* exDatas_[espgate::kUringMaxReads] = {};  // where packet i is read: slot i + 16
  size_t exRooms_[espgate::kUringMaxReads] = {};
  int32_t exSizes_[espgate::kUringMaxReads] = {};
  uint8_t* exHdrs_ = nullptr;
  uint32_t exCount_ = 0;
  // Packets the express path read and left to readBatch: slots [stashAt_, stashAt_ + stashN_).
  uint32_t stashAt_ = 0;
  uint32_t stashN_ = 0;
  // Batched reads (uring_read.h): the ring, tried once per fd; the next batch's size.
  espgate::UringReader uring_;
  bool uringTried_ = false;
  uint32_t want_ = 2;
  iovec iovs_[2 * espgate::kUringMaxReads];
  int32_t res_[espgate::kUringMaxReads];
};

// ExpressLoop: the express paths' thread (express_loop.h), shared by this TUN's queue and the
// NFQUEUE socket through `api`. close() drops the JS object's reference (idempotent); the thread
// stops when the queues that use it have closed too.
class ExpressLoopWrap : public Napi::ObjectWrap<ExpressLoopWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "ExpressLoop",
                                      {
                                          InstanceAccessor<&ExpressLoopWrap::GetApi>("api"),
                                          InstanceMethod<&ExpressLoopWrap::Close>("close"),
                                      });
    exports.Set("ExpressLoop", ctor);
    return exports;
  }

  explicit ExpressLoopWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ExpressLoopWrap>(info) {
    const char* err = nullptr;
    loop_ = espgate::ExpressLoop::Create(&err);
    if (loop_ == nullptr) Napi::Error::New(info.Env(), err != nullptr ? err : "express loop failed").ThrowAsJavaScriptException();
  }

  ~ExpressLoopWrap() override { Release(); }

 private:
  Napi::Value GetApi(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (loop_ == nullptr) {
      Napi::Error::New(env, "express loop closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::External<espgate::ExpressLoopApi>::New(env, loop_->api());
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() {
    if (loop_ != nullptr) loop_->Unref();
    loop_ = nullptr;
  }

  espgate::ExpressLoop* loop_ = nullptr;
};

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("IFNAMSIZ", Napi::Number::New(env, IFNAMSIZ));
  ExpressLoopWrap::Init(env, exports);
  return TunQueue::Init(env, exports);
}

NODE_API_MODULE(espgate_tun, InitAll)
