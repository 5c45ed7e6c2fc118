// hop-util.h: the clocks of the bench/hop tools (esp-hop.c, esp-gso.c).
#ifndef ESPGATE_BENCH_HOP_UTIL_H_
#define ESPGATE_BENCH_HOP_UTIL_H_

#include <stdint.h>
#include <sys/resource.h>
#include <time.h>

// now_ns: CLOCK_MONOTONIC in nanoseconds (comparable between processes of one machine).
static inline int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// cpu_ns: this process's CPU time so far (user + system), in nanoseconds.
static inline int64_t cpu_ns(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return ((int64_t)u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000000 + ((int64_t)u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000;
}

#endif  // ESPGATE_BENCH_HOP_UTIL_H_
