// express_loop.h: one thread of our own that carries the express paths' packets, off the main
// event loop.
//
// Why: a lone packet of a learned flow needs no JavaScript (express.h, express_in.h), but on the
// main loop it still pays for the loop: Node polls twice per wake-up (UV_METRICS_IDLE_TIME: once
// with timeout 0, then for real) and runs its immediate check, which enters V8 and allocates an
// object on every iteration. On a cold CPU that is much of a hop (docs/performance.md, "Ping":
// per round trip the daemon touched 196 KB of heap against OpenVPN's 48 KB). Here one thread
// waits in its own epoll on the TUN and NFQUEUE fds and runs the same express code there; the
// main loop sleeps through it. A GC pause or a long IKE computation on the main thread no longer
// holds up packets of learned flows either.
//
// Ownership: at any moment exactly one side reads a source's fd. The main loop watches it with
// its uv_poll and runs the JS callback as before; after a callback, when the express path is
// ready (flows known, nothing left for JS), it stops the uv_poll and hands the fd to this loop
// (EPOLLIN | EPOLLONESHOT). The loop thread runs the source's pre (the express batch) with the
// source's lock held; settled, it arms the fd again; not settled (packets left for JS, or no
// flows), it hands the fd back with uv_async_send and the main loop runs the JS callback.
// uv_poller.h implements the source side.
//
// The two addons are separate shared objects; the loop lives in the TUN addon, and the NFQUEUE
// addon reaches it through ExpressLoopApi, a table of function pointers (an External in JS):
// whichever addon calls, the creator's code runs. The loop is reference-counted (the JS object,
// and each attached source); the thread stops when the last reference goes.
#ifndef ESPGATE_EXPRESS_LOOP_H_
#define ESPGATE_EXPRESS_LOOP_H_

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

namespace espgate {

constexpr uint32_t kExpressLoopApiVersion = 1;

struct ExpressLoopApi {
  uint32_t version;  // kExpressLoopApiVersion: a table from another build is refused
  void* self;
  void (*ref)(void* self);
  void (*unref)(void* self);
  // attach registers fd (not yet watched); onEvent(arg) runs on the loop thread when it is
  // readable after an arm. Returns a slot (>= 0) or -errno.
  int (*attach)(void* self, int fd, void (*onEvent)(void* arg), void* arg);
  // arm watches slot's fd for one readable event. Returns 0 or -errno. Any thread.
  int (*arm)(void* self, int slot);
  // detach forgets slot: once it returns, onEvent is not running and never runs for it again.
  // Main thread. A running onEvent must return without waiting on anything the caller holds
  // (uv_poller.h's gives up its wait for the source's lock when the source is closing).
  void (*detach)(void* self, int slot);
};

class ExpressLoop {
 public:
  // Create starts the thread. nullptr and *err set when it cannot.
  static ExpressLoop* Create(const char** err) {
    ExpressLoop* l = new ExpressLoop();
    l->epfd_ = epoll_create1(EPOLL_CLOEXEC);
    l->evfd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kStopKey;
    if (l->epfd_ < 0 || l->evfd_ < 0 || epoll_ctl(l->epfd_, EPOLL_CTL_ADD, l->evfd_, &ev) != 0) {
      *err = "express loop: epoll/eventfd failed";
      l->CloseFds();
      delete l;
      return nullptr;
    }
    // The thread takes no asynchronous signals (they stay with the main thread, where Node
    // handles them); faults (SIGBUS from replay_map.h, SIGSEGV, ...) are synchronous and still
    // reach it.
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    std::lock_guard<std::mutex> g(LiveMu());
    int at = -1;
    for (int i = 0; i < kLive; i++) {
      if (Live()[i] == nullptr) {
        at = i;
        break;
      }
    }
    if (at < 0) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      *err = "express loop: too many loops";
      l->CloseFds();
      delete l;
      return nullptr;
    }
    int rc = pthread_create(&l->thread_, nullptr, &ExpressLoop::Main, l);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (rc != 0) {
      *err = "express loop: pthread_create failed";
      l->CloseFds();
      delete l;
      return nullptr;
    }
    // Named, so that top -H, ps -L, perf and /proc/<pid>/task/*/comm tell it from Node's threads
    // (at most 15 characters). A failure only leaves the name "node".
    pthread_setname_np(l->thread_, "espgate-express");
    Live()[at] = l;
    // A process that exits without closing its queues (a fatal error, process.exit) must not
    // leave the thread sealing while exit() runs OpenSSL's and the C++ runtime's cleanup: the
    // first loop registers a handler that stops and joins every live loop first.
    static bool registered = atexit(&ExpressLoop::StopAllAtExit) == 0;
    (void)registered;
    return l;
  }

  ExpressLoopApi* api() { return &api_; }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }

  // Unref drops a reference; the last one stops and joins the thread and frees the loop.
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    {
      std::lock_guard<std::mutex> g(LiveMu());
      for (int i = 0; i < kLive; i++) {
        if (Live()[i] == this) Live()[i] = nullptr;
      }
    }
    StopAndJoin();
    CloseFds();
    delete this;
  }

  int Attach(int fd, void (*onEvent)(void*), void* arg) {
    std::lock_guard<std::mutex> g(mu_);
    for (int i = 0; i < kSlots; i++) {
      Slot& s = slots_[i];
      if (s.used) continue;
      epoll_event ev{};
      // Registered, not watched until Arm. EPOLLONESHOT: the kernel reports EPOLLERR/EPOLLHUP
      // even when no event is asked for; once only, then nothing until Arm (no spin on a TUN
      // that went away before any flow was learned).
      ev.events = EPOLLONESHOT;
      ev.data.u64 = Key(i, s.gen + 1);
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) return -errno;
      s.used = true;
      s.gen++;
      s.fd = fd;
      s.onEvent = onEvent;
      s.arg = arg;
      return i;
    }
    return -ENOSPC;
  }

  int Arm(int slot) {
    if (slot < 0 || slot >= kSlots) return -EINVAL;
    // used, fd and gen change only in Attach/Detach on the main thread. Arm runs on the main
    // thread, or on the loop thread inside onEvent under the source's lock, and a source takes
    // that lock (Stop) before it detaches: reading them here needs no lock.
    const Slot& s = slots_[slot];
    if (!s.used) return -EBADF;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = Key(slot, s.gen);
    return epoll_ctl(epfd_, EPOLL_CTL_MOD, s.fd, &ev) == 0 ? 0 : -errno;
  }

  void Detach(int slot) {
    if (slot < 0 || slot >= kSlots) return;
    {
      std::lock_guard<std::mutex> g(mu_);
      Slot& s = slots_[slot];
      if (!s.used) return;
      epoll_ctl(epfd_, EPOLL_CTL_DEL, s.fd, nullptr);
      s.used = false;
      s.onEvent = nullptr;
      s.arg = nullptr;
      s.fd = -1;
    }
    // An onEvent that started before the slot went is still running: wait for it (it is short).
    while (running_.load(std::memory_order_acquire) == slot) sched_yield();
  }

 private:
  static constexpr int kSlots = 8;
  static constexpr uint64_t kStopKey = ~0ull;
  struct Slot {
    bool used = false;
    uint32_t gen = 0;
    int fd = -1;
    void (*onEvent)(void*) = nullptr;
    void* arg = nullptr;
  };

  ExpressLoop() {
    api_.version = kExpressLoopApiVersion;
    api_.self = this;
    api_.ref = [](void* s) { static_cast<ExpressLoop*>(s)->Ref(); };
    api_.unref = [](void* s) { static_cast<ExpressLoop*>(s)->Unref(); };
    api_.attach = [](void* s, int fd, void (*cb)(void*), void* arg) { return static_cast<ExpressLoop*>(s)->Attach(fd, cb, arg); };
    api_.arm = [](void* s, int slot) { return static_cast<ExpressLoop*>(s)->Arm(slot); };
    api_.detach = [](void* s, int slot) { static_cast<ExpressLoop*>(s)->Detach(slot); };
  }

  static constexpr int kLive = 16;
  static std::mutex& LiveMu() {
    static std::mutex mu;
    return mu;
  }
  static ExpressLoop** Live() {
    static ExpressLoop* live[kLive] = {};
    return live;
  }

  void StopAndJoin() {
    if (joined_) return;
    uint64_t one = 1;
    ssize_t w = write(evfd_, &one, sizeof(one));
    (void)w;
    pthread_join(thread_, nullptr);
    joined_ = true;
  }

  // StopAllAtExit: the atexit handler. Handlers run in reverse order of registration, so this
  // one (registered long after Node's start-up) runs before OpenSSL's cleanup.
  static void StopAllAtExit() {
    std::lock_guard<std::mutex> g(LiveMu());
    for (int i = 0; i < kLive; i++) {
      if (Live()[i] != nullptr) Live()[i]->StopAndJoin();
    }
  }

  static uint64_t Key(int slot, uint32_t gen) { return (static_cast<uint64_t>(gen) << 8) | static_cast<uint64_t>(slot); }

  void CloseFds() {
    if (epfd_ >= 0) close(epfd_);
    if (evfd_ >= 0) close(evfd_);
    epfd_ = evfd_ = -1;
  }

  static void* Main(void* arg) {
    static_cast<ExpressLoop*>(arg)->Run();
    return nullptr;
  }

  void Run() {
    epoll_event evs[kSlots + 1];
    for (;;) {
      int n = epoll_wait(epfd_, evs, kSlots + 1, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // cannot happen with a valid epfd; the sources' fds then stay unread (see Unref)
      }
      for (int i = 0; i < n; i++) {
        uint64_t key = evs[i].data.u64;
        if (key == kStopKey) return;
        int slot = static_cast<int>(key & 0xff);
        uint32_t gen = static_cast<uint32_t>(key >> 8);
        if (slot >= kSlots) continue;
        void (*cb)(void*) = nullptr;
        void* cbArg = nullptr;
        {
          std::lock_guard<std::mutex> g(mu_);
          const Slot& s = slots_[slot];
          if (!s.used || s.gen != gen || s.onEvent == nullptr) continue;  // detached since
          cb = s.onEvent;
          cbArg = s.arg;
          running_.store(slot, std::memory_order_release);  // before Detach can see the slot gone
        }
        cb(cbArg);
        running_.store(-1, std::memory_order_release);
      }
    }
  }

  std::mutex mu_;  // slots_
  Slot slots_[kSlots];
  std::atomic<int> running_{-1};  // the slot whose onEvent runs now (Detach waits for it)
  int epfd_ = -1;
  int evfd_ = -1;
  pthread_t thread_{};
  std::atomic<int> refs_{1};
  bool joined_ = false;  // the thread was stopped and joined (Unref, or the atexit handler)
  ExpressLoopApi api_{};
};

}  // namespace espgate

#endif  // ESPGATE_EXPRESS_LOOP_H_
