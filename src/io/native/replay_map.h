// replay_map.h: shared mappings of replay files (express_in.h), and the SIGBUS guard they need.
//
// The inbound express path stores each SA's replay top into the first page of its replay file,
// mapped MAP_SHARED, instead of a pwrite per batch. A store into a mapping is a SIGBUS when the
// page no longer has file behind it: someone truncated the file under the daemon, or the file
// system refused to make the page writable again after a writeback (read-only after an error).
// A pwrite would have failed with an errno that the engine counts; the daemon must not die
// instead. So:
//
//   Map(fd, &slot, &later)  maps the first page of a regular file of at least 8 bytes and
//                        registers the page; nullptr when it cannot (*later: only because the
//                        file is still shorter than a record, so a later try may succeed).
//   Unmap(p, slot)       unregisters and unmaps it.
//   Store(p, slot, rec)  writes the 8-byte record; false when the page faulted (the guard replaced
//                        it with anonymous memory, so the store completed harmlessly there): the
//                        caller unmaps it and falls back to pwrite, which reports the real error.
//
// The guard is a process-wide SIGBUS handler, installed on the first Map. For an address in a
// registered page it maps an anonymous page over it (mmap is async-signal-safe as a system
// call) and marks the slot faulted; the faulting store is then restarted and lands there. Any
// other SIGBUS goes to the handler that was installed before ours, or takes the default action.
#ifndef ESPGATE_REPLAY_MAP_H_
#define ESPGATE_REPLAY_MAP_H_

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

namespace espgate {
namespace replay_map {

constexpr int kSlots = 256;
constexpr uintptr_t kFaulted = 1;  // low bit of a slot: the page faulted and is anonymous now

inline std::atomic<uintptr_t> gSlots[kSlots];
inline struct sigaction gPrevious;

// Previous passes a SIGBUS that is not ours on as if we were not there: to the handler installed
// before ours (its sa_mask and flags are not reproduced), or the default action: for a fault,
// returning re-runs the access, which then kills; a sent signal (kill -BUS) is raised again
// after SIG_DFL, or dropped when it was ignored.
inline void Previous(int sig, siginfo_t* si, void* uc) {
  if ((gPrevious.sa_flags & SA_SIGINFO) != 0) {
    if (gPrevious.sa_sigaction != nullptr) {
      gPrevious.sa_sigaction(sig, si, uc);
      return;
    }
  } else if (gPrevious.sa_handler != SIG_DFL && gPrevious.sa_handler != SIG_IGN) {
    gPrevious.sa_handler(sig);
    return;
  }
  bool sent = si->si_code <= 0;
  if (sent && gPrevious.sa_handler == SIG_IGN && (gPrevious.sa_flags & SA_SIGINFO) == 0) return;
  signal(SIGBUS, SIG_DFL);
  if (sent) raise(SIGBUS);  // delivered, with the default action, when this handler returns
}

inline void OnBus(int sig, siginfo_t* si, void* uc) {
  if (si == nullptr || si->si_code <= 0) {  // sent, not a fault: no address to look at
    Previous(sig, si, uc);
    return;
  }
  uintptr_t page = reinterpret_cast<uintptr_t>(si->si_addr) & ~static_cast<uintptr_t>(4095);
  for (int i = 0; i < kSlots; i++) {
    uintptr_t v = gSlots[i].load(std::memory_order_acquire);
    if (v != 0 && (v & ~kFaulted) == page) {
      void* m = mmap(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) break;  // cannot make the store harmless: die as without the guard
      gSlots[i].store(page | kFaulted, std::memory_order_release);
      return;  // the store is restarted and completes in the anonymous page
    }
  }
  Previous(sig, si, uc);
}

inline bool DoInstall() {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = OnBus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGBUS, &sa, &gPrevious) == 0;
}

// Install installs the handler once per process (a function-local static: thread-safe).
inline bool Install() {
  static const bool installed = DoInstall();
  return installed;
}

inline uint8_t* Map(int fd, int* slotOut, bool* later) {
  *later = false;
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  if (st.st_size < 8) {  // a store past the end of a file would be SIGBUS
    *later = true;
    return nullptr;
  }
  if (sysconf(_SC_PAGESIZE) != 4096 || !Install()) return nullptr;
  void* m = mmap(nullptr, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return nullptr;
  uintptr_t want = reinterpret_cast<uintptr_t>(m);
  for (int i = 0; i < kSlots; i++) {
    uintptr_t empty = 0;
    if (gSlots[i].compare_exchange_strong(empty, want, std::memory_order_acq_rel)) {
      *slotOut = i;
      return static_cast<uint8_t*>(m);
    }
  }
  munmap(m, 8);  // the registry is full: this SA keeps pwrite
  return nullptr;
}

inline void Unmap(uint8_t* p, int slot) {
  if (p == nullptr) return;
  if (slot >= 0 && slot < kSlots) gSlots[slot].store(0, std::memory_order_release);
  munmap(p, 8);
}

// Store writes rec[0, 8) at p; false when the page faulted during (or before) the store. (A file
// cut to 1-7 bytes faults nothing: the record's bytes past the end are not kept until the
// engine's own save, a pwrite, makes the file whole again.)
inline bool Store(uint8_t* p, int slot, const uint8_t* rec) {
  memcpy(p, rec, 8);
  // The handler runs inside the store: keep the compiler from moving the store past this check.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  return (gSlots[slot].load(std::memory_order_acquire) & kFaulted) == 0;
}

}  // namespace replay_map
}  // namespace espgate

#endif  // ESPGATE_REPLAY_MAP_H_
