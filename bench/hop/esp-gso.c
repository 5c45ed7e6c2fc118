// esp-gso.c: what small ESP packets cost the kernel per packet, sent and received four ways, for
// the design note on ESP-in-UDP with GSO/GRO (docs/performance.md, ninth session). No crypto:
// the payload is opaque bytes of an ESP packet's size, so only the kernel's share is measured.
// bench/hop/esp-gso.sh runs it in two namespaces of its own.
//
//   esp-gso send raw|udp|gso DST SECONDS SIZE   blast SIZE-byte datagrams at DST for SECONDS:
//       raw  protocol-50 raw socket, sendmmsg of 64 (espgate's sender today)
//       udp  UDP to port 4500, sendmmsg of 64 (ESP in UDP, RFC 3948, one datagram per packet)
//       gso  UDP to port 4500, one sendmsg per 64 datagrams with UDP_SEGMENT (Linux 4.18);
//            fewer for large ones, so that a train stays under 64 KiB
//   esp-gso recv raw|udp|gro SECONDS            count what arrives for SECONDS (stops early
//                                                after 1 s of silence once something came):
//       raw  raw IPPROTO_ESP socket, recvmmsg of 64
//       udp  UDP port 4500, recvmmsg of 64
//       gro  UDP port 4500 with UDP_GRO (Linux 5.0), recvmsg into 64 KiB; a train counts as
//            len / gso_size datagrams (+1 for a short tail)
// Each prints one line: packets, packets/s over its active time, and its CPU time per packet
// (user + system, ns). Bounded by SECONDS (and a 1 s idle stop on the receiver).
#define _GNU_SOURCE  // sendmmsg, recvmmsg
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hop-util.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

enum { kBatch = 64, kPort = 4500, kMaxSize = 1400 };

static void report(const char* what, uint64_t n, int64_t wall, int64_t cpu) {
  printf("%s packets %llu kpps %.1f cpu_ns_per_packet %.0f\n", what, (unsigned long long)n, wall > 0 ? n * 1e6 / wall : 0.0,
         n > 0 ? (double)cpu / n : 0.0);
}

static int do_send(const char* mode, const char* dst, int seconds, int size) {
  int raw = strcmp(mode, "raw") == 0, gso = strcmp(mode, "gso") == 0;
  int fd = raw ? socket(AF_INET, SOCK_RAW, IPPROTO_ESP) : socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return perror("socket"), 1;
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = raw ? 0 : htons(kPort)};
  if (inet_pton(AF_INET, dst, &to.sin_addr) != 1) return fprintf(stderr, "bad address %s\n", dst), 1;
  if (connect(fd, (struct sockaddr*)&to, sizeof(to)) != 0) return perror("connect"), 1;
  static uint8_t buf[kBatch * kMaxSize];
  memset(buf, 0xa5, sizeof(buf));
  struct mmsghdr msgs[kBatch];
  struct iovec iovs[kBatch];
  for (int i = 0; i < kBatch; i++) {
    iovs[i] = (struct iovec){buf + i * size, (size_t)size};
    msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iovs[i], .msg_iovlen = 1}};
  }
  // A train is one UDP datagram to the stack: at most 64 segments and under 64 KiB in all.
  const int seg = size * kBatch <= 65000 ? kBatch : 65000 / size;
  struct iovec whole = {buf, (size_t)size * seg};
  char ctl[CMSG_SPACE(sizeof(uint16_t))];
  struct msghdr gm = {.msg_iov = &whole, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
  struct cmsghdr* c = CMSG_FIRSTHDR(&gm);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  *(uint16_t*)CMSG_DATA(c) = (uint16_t)size;
  uint64_t sent = 0, errs = 0;
  int lastErr = 0;
  int64_t t0 = now_ns(), c0 = cpu_ns(), end = t0 + (int64_t)seconds * 1000000000;
  while (now_ns() < end) {
    if (gso) {
      ssize_t r = sendmsg(fd, &gm, 0);
      if (r > 0) sent += seg; else errs++, lastErr = errno;
    } else {
      int r = sendmmsg(fd, msgs, kBatch, 0);
      if (r > 0) sent += r; else errs++, lastErr = errno;
    }
  }
  report(mode, sent, now_ns() - t0, cpu_ns() - c0);
  if (errs > 0) fprintf(stderr, "send errors: %llu calls, the last %s\n", (unsigned long long)errs, strerror(lastErr));
  return 0;
}

static int do_recv(const char* mode, int seconds) {
  int raw = strcmp(mode, "raw") == 0, gro = strcmp(mode, "gro") == 0;
  int fd = raw ? socket(AF_INET, SOCK_RAW, IPPROTO_ESP) : socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return perror("socket"), 1;
  int rcvbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  if (!raw) {
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(kPort), .sin_addr = {htonl(INADDR_ANY)}};
    if (bind(fd, (struct sockaddr*)&me, sizeof(me)) != 0) return perror("bind"), 1;
  }
  int one = 1;
  if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) != 0) return perror("UDP_GRO"), 1;
  static uint8_t buf[kBatch * 2048];
  static uint8_t big[65536];
  struct mmsghdr msgs[kBatch];
  struct iovec iovs[kBatch];
  for (int i = 0; i < kBatch; i++) {
    iovs[i] = (struct iovec){buf + i * 2048, 2048};
    msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iovs[i], .msg_iovlen = 1}};
  }
  printf("ready\n");
  fflush(stdout);
  uint64_t n = 0;
  int64_t start = now_ns(), first = 0, last = 0, c0 = 0, end = start + (int64_t)seconds * 1000000000;
  struct pollfd p = {fd, POLLIN, 0};
  while (now_ns() < end) {
    if (poll(&p, 1, 100) <= 0) {
      if (first != 0 && now_ns() - last > 1000000000) break;
      continue;
    }
    if (first == 0) first = now_ns(), c0 = cpu_ns();
    if (gro) {
      char ctl[CMSG_SPACE(sizeof(int))];
      struct iovec v = {big, sizeof(big)};
      struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
      for (int k = 0; k < kBatch; k++) {
        m.msg_controllen = sizeof(ctl);
        ssize_t r = recvmsg(fd, &m, MSG_DONTWAIT);
        if (r <= 0) break;
        int seg = 0;
        for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) memcpy(&seg, CMSG_DATA(c), sizeof(seg));
        n += seg > 0 ? (uint64_t)(r / seg + (r % seg != 0)) : 1;
      }
    } else {
      int r = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, NULL);
      if (r > 0) n += r;
    }
    last = now_ns();
  }
  report(mode, n, last - first, first != 0 ? cpu_ns() - c0 : 0);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 6 && strcmp(argv[1], "send") == 0) {
    int size = atoi(argv[5]);
    if (size < 16 || size > kMaxSize) return fprintf(stderr, "size 16..%d\n", kMaxSize), 2;
    return do_send(argv[2], argv[3], atoi(argv[4]), size);
  }
  if (argc == 4 && strcmp(argv[1], "recv") == 0) return do_recv(argv[2], atoi(argv[3]));
  fprintf(stderr, "usage: esp-gso send raw|udp|gso DST SECONDS SIZE | esp-gso recv raw|udp|gro SECONDS\n");
  return 2;
}
