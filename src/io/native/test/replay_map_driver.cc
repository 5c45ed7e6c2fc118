// replay_map_driver.cc: drives replay_map.h's SIGBUS guard in a process of its own, for
// src/io/replay-map.test.ts (a guard that misbehaves kills or hangs the process, not the tests).
//   replay_map_driver DIR ours     a registered page loses its file: the store is caught, Store
//                                  says false, and the process carries on (exit 0)
//   replay_map_driver DIR kill     kill -BUS: not a fault, not ours: dies of SIGBUS as without the guard
//   replay_map_driver DIR foreign  a fault in someone else's mapping: dies of SIGBUS, no loop
#include <fcntl.h>
#include <stdio.h>
#include <string>

#include "../replay_map.h"

static int OpenEight(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  uint8_t z[8] = {0};
  if (fd < 0 || write(fd, z, 8) != 8) return -1;
  return fd;
}

int main(int argc, char** argv) {
  if (argc < 3) return 64;
  std::string dir = argv[1];
  std::string mode = argv[2];
  int fd = OpenEight(dir + "/ours");
  if (fd < 0) return 65;
  int slot = -1;
  bool later = false;
  uint8_t* p = espgate::replay_map::Map(fd, &slot, &later);
  if (p == nullptr) return 66;
  uint8_t rec[8] = {0, 0, 0, 0, 0, 0, 0, 42};
  if (!espgate::replay_map::Store(p, slot, rec)) return 67;  // a whole file: no fault
  if (mode == "ours") {
    if (ftruncate(fd, 0) != 0) return 68;
    bool kept = espgate::replay_map::Store(p, slot, rec);
    espgate::replay_map::Unmap(p, slot);
    printf("store after truncate: %s\n", kept ? "kept" : "caught");
    return kept ? 69 : 0;
  }
  if (mode == "kill") {
    kill(getpid(), SIGBUS);
    return 70;  // not reached: the default action ends the process
  }
  if (mode == "foreign") {
    int g = OpenEight(dir + "/foreign");
    if (g < 0) return 65;
    volatile uint8_t* q = static_cast<volatile uint8_t*>(mmap(nullptr, 8, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0));
    if (q == MAP_FAILED || ftruncate(g, 0) != 0) return 68;
    q[0] = 1;
    return 71;  // not reached
  }
  return 64;
}
