// esp-hop.c: what one receiving hop costs, by the way a daemon takes inbound ESP: an NFQUEUE
// reader that gives every packet a verdict (espgate today), a raw IPPROTO_ESP socket (the
// candidate), or a UDP socket (what OpenVPN and wireguard-go read). bench/hop/esp-hop.sh runs it
// in two namespaces of its own; docs/performance.md has the numbers.
//
//   esp-hop send DST COUNT INTERVAL_US udp|esp   send COUNT packets, one every INTERVAL_US,
//                                                each carrying CLOCK_MONOTONIC at sending
//   esp-hop recv nfq|raw|udp COUNT TIMEOUT_S     take COUNT packets (or stop after TIMEOUT_S)
//                                                and print one line: the one-way latency from
//                                                the sender's clock reading to the packet in
//                                                our hands (median, p90, p99, us), and our CPU
//                                                time per packet (user + system, us)
//
// Both ends run on one machine, so their CLOCK_MONOTONIC readings compare. The receiver blocks
// in poll(2) between packets (as a daemon waits in epoll), so the latency includes its wake-up.
// nfq: queue 7 (esp-hop.sh adds the rule), copy mode, verdict NF_DROP per packet (what espgate
// gives a packet it consumed). Bounded: COUNT packets or TIMEOUT_S seconds, whichever is first.
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <netinet/in.h>
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

enum { kPayload = 64, kMaxCount = 100000, kQueue = 7, kPort = 4500 };

static int64_t lat[kMaxCount];
static int got = 0;
static int want = 0;

// take records the latency of a packet whose sender timestamp sits at p[8..16) (after what
// would be the SPI and sequence number).
static void take(const uint8_t* p, size_t len) {
  if (len < 16 || got >= want) return;
  int64_t ts;
  memcpy(&ts, p + 8, sizeof ts);
  lat[got++] = now_ns() - ts;
}

static int cmp(const void* a, const void* b) {
  int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
  return x < y ? -1 : x > y;
}

static int nfq_cb(struct nfq_q_handle* qh, struct nfgenmsg* msg, struct nfq_data* nfa, void* data) {
  (void)msg;
  (void)data;
  struct nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
  uint32_t id = ph != NULL ? ntohl(ph->packet_id) : 0;
  unsigned char* pkt = NULL;
  int n = nfq_get_payload(nfa, &pkt);
  if (n >= 20) {
    size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
    if ((size_t)n > ihl) take(pkt + ihl, (size_t)n - ihl);
  }
  return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
}

static int do_send(const char* dst, int count, int interval_us, int udp) {
  int fd = udp ? socket(AF_INET, SOCK_DGRAM, 0) : socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(udp ? kPort : 0)};
  if (inet_pton(AF_INET, dst, &to.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", dst);
    return 2;
  }
  uint8_t buf[kPayload];
  memset(buf, 0, sizeof buf);
  uint32_t spi = htonl(0x1001);
  memcpy(buf, &spi, 4);
  for (int i = 0; i < count; i++) {
    uint32_t seq = htonl((uint32_t)i + 1);
    memcpy(buf + 4, &seq, 4);
    int64_t ts = now_ns();
    memcpy(buf + 8, &ts, sizeof ts);
    if (sendto(fd, buf, sizeof buf, 0, (struct sockaddr*)&to, sizeof to) < 0) perror("sendto");
    usleep((useconds_t)interval_us);
  }
  close(fd);
  return 0;
}

static int do_recv(const char* mode, int count, int timeout_s) {
  want = count;
  struct nfq_handle* h = NULL;
  struct nfq_q_handle* qh = NULL;
  int fd;
  if (strcmp(mode, "nfq") == 0) {
    h = nfq_open();
    if (h == NULL || (qh = nfq_create_queue(h, kQueue, nfq_cb, NULL)) == NULL || nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0) {
      fprintf(stderr, "nfq: cannot bind queue %d\n", kQueue);
      return 1;
    }
    fd = nfq_fd(h);
  } else if (strcmp(mode, "raw") == 0) {
    fd = socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
  } else if (strcmp(mode, "udp") == 0) {
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(kPort), .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (fd >= 0 && bind(fd, (struct sockaddr*)&a, sizeof a) < 0) {
      perror("bind");
      return 1;
    }
  } else {
    fprintf(stderr, "mode: nfq, raw or udp\n");
    return 2;
  }
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  int64_t cpu0 = cpu_ns();
  int64_t end = now_ns() + (int64_t)timeout_s * 1000000000;
  uint8_t buf[65536];
  while (got < want && now_ns() < end) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) continue;
      perror("recv");
      break;
    }
    if (h != NULL) {
      nfq_handle_packet(h, (char*)buf, (int)n);
    } else if (strcmp(mode, "raw") == 0) {
      size_t ihl = (size_t)(buf[0] & 0x0f) * 4;  // IPv4 raw sockets deliver the IP header
      if ((size_t)n > ihl) take(buf + ihl, (size_t)n - ihl);
    } else {
      take(buf, (size_t)n);
    }
  }
  double cpu = (cpu_ns() - cpu0) / 1e3;
  if (got == 0) {
    printf("%s: nothing received\n", mode);
    return 1;
  }
  qsort(lat, (size_t)got, sizeof lat[0], cmp);
  printf("%s packets=%d lat_us p50=%.1f p90=%.1f p99=%.1f cpu_us_per_pkt=%.1f\n", mode, got, lat[got / 2] / 1e3,
         lat[got * 9 / 10] / 1e3, lat[got * 99 / 100] / 1e3, cpu / got);
  if (qh != NULL) nfq_destroy_queue(qh);
  if (h != NULL) nfq_close(h);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 6 && strcmp(argv[1], "send") == 0) {
    return do_send(argv[2], atoi(argv[3]), atoi(argv[4]), strcmp(argv[5], "udp") == 0);
  }
  if (argc == 5 && strcmp(argv[1], "recv") == 0) {
    int count = atoi(argv[3]);
    if (count < 1 || count > kMaxCount) count = kMaxCount;
    return do_recv(argv[2], count, atoi(argv[4]));
  }
  fprintf(stderr, "usage: esp-hop send DST COUNT INTERVAL_US udp|esp | esp-hop recv nfq|raw|udp COUNT TIMEOUT_S\n");
  return 2;
}
