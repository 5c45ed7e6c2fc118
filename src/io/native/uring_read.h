// uring_read.h: many reads of one non-blocking fd for one system call, through io_uring.
//
// Why: a TUN fd hands over one packet per read(2), and on the machines this project is measured
// on a system call costs ~1 us by itself (a paravirtualised guest: a loop of getppid(2),
// docs/performance.md, "System calls"). At 64-byte packets the sending daemon spent one read per
// packet; here one io_uring_enter(2) carries up to kUringMaxReads readv requests, each executed
// at once (RWF_NOWAIT: a read with nothing to read completes with -EAGAIN instead of waiting),
// and their results are in the completion ring when the call returns.
//
// What it is not: an event loop. Readiness still comes from libuv's poll on the fd; no request
// is ever left in flight between calls (each call waits for all of its completions, and if the
// kernel ever left one pending it is cancelled and the reader turns itself off).
//
// Fallback: Open() returns false when io_uring is unavailable (old kernel, seccomp, the
// kernel.io_uring_disabled sysctl, ESPGATE_TUN_URING=0); the caller then reads with readv(2)
// exactly as before. A reader that meets anything unexpected also turns itself off (Ok() false).
//
// Threading: one reader per fd, used only on the JS main thread.
#ifndef ESPGATE_URING_READ_H_
#define ESPGATE_URING_READ_H_

#include <errno.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

namespace espgate {

constexpr unsigned kUringMaxReads = 64;

class UringReader {
 public:
  UringReader() = default;
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;
  ~UringReader() { Close(); }

  // Open sets up a ring for reads of fd (registered as fixed file 0). false: use readv.
  bool Open(int fd) {
    Close();
    const char* env = getenv("ESPGATE_TUN_URING");
    if (env != nullptr && strcmp(env, "0") == 0) return false;
    io_uring_params p;
    memset(&p, 0, sizeof p);
    // SUBMIT_ALL (5.18): submit every request even if one fails to start; COOP_TASKRUN (5.19):
    // no interrupt to run completion work (we wait for it in the same call anyway).
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    int rfd = static_cast<int>(syscall(__NR_io_uring_setup, kUringMaxReads, &p));
    if (rfd < 0) return false;
    ringFd_ = rfd;
    if ((p.features & IORING_FEAT_SINGLE_MMAP) == 0 || p.sq_entries < kUringMaxReads ||
        p.cq_entries < kUringMaxReads) {
      Close();
      return false;
    }
    size_t sqLen = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cqLen = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    ringLen_ = sqLen > cqLen ? sqLen : cqLen;
    void* ring = mmap(nullptr, ringLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQ_RING);
    if (ring == MAP_FAILED) {
      Close();
      return false;
    }
    ring_ = static_cast<uint8_t*>(ring);
    sqesLen_ = p.sq_entries * sizeof(io_uring_sqe);
    void* sqes = mmap(nullptr, sqesLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) {
      Close();
      return false;
    }
    sqes_ = static_cast<io_uring_sqe*>(sqes);
    sqHead_ = reinterpret_cast<unsigned*>(ring_ + p.sq_off.head);
    sqTail_ = reinterpret_cast<unsigned*>(ring_ + p.sq_off.tail);
    sqMask_ = *reinterpret_cast<unsigned*>(ring_ + p.sq_off.ring_mask);
    unsigned* array = reinterpret_cast<unsigned*>(ring_ + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++) array[i] = i;  // slot i is SQE i, always
    cqHead_ = reinterpret_cast<unsigned*>(ring_ + p.cq_off.head);
    cqTail_ = reinterpret_cast<unsigned*>(ring_ + p.cq_off.tail);
    cqMask_ = *reinterpret_cast<unsigned*>(ring_ + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(ring_ + p.cq_off.cqes);
    // A fixed file: no file lookup per request.
    int fds[1] = {fd};
    fixed_ = syscall(__NR_io_uring_register, rfd, IORING_REGISTER_FILES, fds, 1) == 0;
    fd_ = fd;
    ok_ = true;
    return true;
  }

  bool Ok() const { return ok_; }

  void Close() {
    if (sqes_ != nullptr) munmap(sqes_, sqesLen_);
    if (ring_ != nullptr) munmap(ring_, ringLen_);
    if (ringFd_ >= 0) close(ringFd_);
    sqes_ = nullptr;
    ring_ = nullptr;
    ringFd_ = -1;
    fd_ = -1;
    ok_ = false;
    fixed_ = false;
  }

  // ReadMany reads up to n (<= kUringMaxReads) packets, read i into iov[i * per, (i + 1) * per):
  // res[i] is the byte count or -errno (-EAGAIN: nothing was there). Returns false when the
  // reader could not run the reads (then nothing was read and Ok() may have turned false: the
  // caller reads with readv). Every read has completed when it returns true.
  bool ReadMany(const iovec* iov, unsigned per, unsigned n, int32_t* res) {
    if (!ok_ || n == 0 || n > kUringMaxReads) return false;
    unsigned tail = *sqTail_;
    for (unsigned i = 0; i < n; i++) {
      io_uring_sqe* sqe = &sqes_[(tail + i) & sqMask_];
      memset(sqe, 0, sizeof *sqe);
      sqe->opcode = IORING_OP_READV;
      sqe->fd = fixed_ ? 0 : fd_;
      sqe->flags = fixed_ ? IOSQE_FIXED_FILE : 0;
      sqe->addr = reinterpret_cast<uint64_t>(iov + i * per);
      sqe->len = per;
      sqe->off = static_cast<uint64_t>(-1);  // the file position: none for a TUN or a socket
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = i;
      res[i] = -EAGAIN;
    }
    __atomic_store_n(sqTail_, tail + n, __ATOMIC_RELEASE);
    long r = syscall(__NR_io_uring_enter, ringFd_, n, 0, 0, nullptr, 0);
    unsigned head = __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE);
    if (head != tail + n) {
      // Not all submitted (r < n, or an error before submission): take back the rest so that a
      // later call does not submit them with stale buffers.
      __atomic_store_n(sqTail_, head, __ATOMIC_RELEASE);
    }
    unsigned submitted = head - tail;
    unsigned done = Reap(res, n);
    if (done < submitted) {
      // A read is still in flight (the kernel did not honour RWF_NOWAIT): cancel it, wait for
      // it, and stop using io_uring for this fd.
      CancelAndWait(submitted - done, res, n);
      ok_ = false;
    }
    if (r < 0 && submitted == 0) {
      if (errno != EINTR && errno != EAGAIN && errno != EBUSY) ok_ = false;
      return false;
    }
    bool anyRead = false, refused = false;
    for (unsigned i = 0; i < n; i++) {
      anyRead = anyRead || res[i] >= 0;
      refused = refused || res[i] == -EOPNOTSUPP || res[i] == -EINVAL;
    }
    if (!anyRead && refused) {
      // RWF_NOWAIT or readv refused for this file: readv(2) from now on (it reads again now, and
      // reports the error itself if it was the device's).
      ok_ = false;
      return false;
    }
    return submitted > 0;
  }

 private:
  unsigned Reap(int32_t* res, unsigned n) {
    unsigned head = *cqHead_;
    unsigned tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
    unsigned got = 0;
    for (; head != tail; head++) {
      const io_uring_cqe& c = cqes_[head & cqMask_];
      if (c.user_data < n) {
        res[c.user_data] = c.res;
        got++;
      }
    }
    __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);
    return got;
  }

  void CancelAndWait(unsigned pending, int32_t* res, unsigned n) {
    unsigned tail = *sqTail_;
    io_uring_sqe* sqe = &sqes_[tail & sqMask_];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = fixed_ ? 0 : fd_;
    sqe->flags = 0;
    sqe->cancel_flags = IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD | (fixed_ ? IORING_ASYNC_CANCEL_FD_FIXED : 0);
    sqe->user_data = kUringMaxReads + 1;  // not a read: Reap ignores it
    __atomic_store_n(sqTail_, tail + 1, __ATOMIC_RELEASE);
    // Bounded: at most 8 waits of at most 100 ms each; the cancel completes them all.
    __kernel_timespec ts = {0, 100 * 1000 * 1000};
    io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof arg);
    arg.ts = reinterpret_cast<uint64_t>(&ts);
    for (int round = 0; round < 8 && pending > 0; round++) {
      long r = syscall(__NR_io_uring_enter, ringFd_, round == 0 ? 1 : 0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
      unsigned got = Reap(res, n);
      pending = got >= pending ? 0 : pending - got;
      if (r < 0 && errno != EINTR) break;
    }
  }

  int ringFd_ = -1;
  int fd_ = -1;
  bool ok_ = false;
  bool fixed_ = false;
  uint8_t* ring_ = nullptr;
  size_t ringLen_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqesLen_ = 0;
  unsigned* sqHead_ = nullptr;
  unsigned* sqTail_ = nullptr;
  unsigned sqMask_ = 0;
  unsigned* cqHead_ = nullptr;
  unsigned* cqTail_ = nullptr;
  unsigned cqMask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
};

}  // namespace espgate

#endif  // ESPGATE_URING_READ_H_
