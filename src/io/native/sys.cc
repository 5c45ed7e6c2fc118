// sys.cc: the small system calls Node has no API for.
//
//   sdNotify(socketPath, message) -> 0 | -errno
//       one datagram to systemd's notification socket ($NOTIFY_SOCKET: a filesystem path, or an
//       abstract socket when it starts with '@'), as sd_notify(3) does: "READY=1", "STOPPING=1",
//       "RELOADING=1", "WATCHDOG=1", "STATUS=...". Node's dgram module has no AF_UNIX sockets,
//       and linking libsystemd for one sendto is not worth a dependency.
//
//   spawn(file, args, env) -> [pid, stdinFd, stdoutFd, stderrFd] | -errno
//       posix_spawnp(3) with three pipes. glibc starts the child with clone(CLONE_VM |
//       CLONE_VFORK): the daemon's page tables are not copied and its thread waits only until
//       the child's exec, where child_process.spawn's fork(2) of a ~100 MB process stopped the
//       event loop 1-2 ms per program and left copy-on-write faults behind (the periodic gate
//       check starts nine). The parent's pipe ends are non-blocking and close-on-exec.
//   waitpid(pid) -> exit code (0..255) | 256 + signal | -1 still running | -2 no such child
//       waitpid(2) with WNOHANG, for the children spawn started (libuv reaps only its own).
//
//   nftGeneration() -> generation id (0..2^32-1) | -errno
//       the nf_tables ruleset generation of the caller's network namespace (NFT_MSG_GETGEN over
//       NETLINK_NETFILTER): the kernel bumps it on every committed change of any nf_tables
//       table, which is every change iptables-nft, ip6tables-nft or nft make. The daemon's gate
//       check runs the listing tools (nine programs) only when it moved (src/daemon/system.ts).
//
// Threading: any thread; no state.

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <spawn.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "sdNotify(socketPath: string, message: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string msg = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) {
    return Napi::Number::New(env, -EINVAL);
  }
  memcpy(sa.sun_path, path.data(), path.size());
  if (path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  ssize_t n = sendto(fd, msg.data(), msg.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len);
  int err = n < 0 ? errno : 0;
  close(fd);
  return Napi::Number::New(env, -err);
}

bool StringArray(const Napi::Value& v, std::vector<std::string>* out) {
  if (!v.IsArray()) return false;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) return false;
    out->push_back(e.As<Napi::String>().Utf8Value());
  }
  return true;
}

Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::string> args, envs;
  if (info.Length() < 3 || !info[0].IsString() || !StringArray(info[1], &args) || !StringArray(info[2], &envs)) {
    Napi::TypeError::New(env, "spawn(file: string, args: string[], env: string[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string file = info[0].As<Napi::String>().Utf8Value();
  std::vector<char*> argv, envp;
  argv.push_back(const_cast<char*>(file.c_str()));
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  auto closeAll = [&]() {
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) {
      if (fd >= 0) close(fd);
    }
  };
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    int e = errno;
    closeAll();
    return Napi::Number::New(env, -e);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // dup2 onto 0, 1, 2 clears close-on-exec there; every other pipe end closes at exec.
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child starts with default signal dispositions and an empty mask (Node blocks or
  // handles some signals in its own threads).
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, file.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  in[0] = out[1] = err[1] = -1;
  if (rc != 0) {
    closeAll();
    return Napi::Number::New(env, -rc);
  }
  for (int fd : {in[1], out[0], err[0]}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  Napi::Array r = Napi::Array::New(env, 4);
  r.Set(static_cast<uint32_t>(0), Napi::Number::New(env, pid));
  r.Set(static_cast<uint32_t>(1), Napi::Number::New(env, in[1]));
  r.Set(static_cast<uint32_t>(2), Napi::Number::New(env, out[0]));
  r.Set(static_cast<uint32_t>(3), Napi::Number::New(env, err[0]));
  return r;
}

// NftGenerationOf asks the kernel for the nf_tables generation id: >= 0, or -errno.
long NftGenerationOf() {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return -errno;
  struct {
    nlmsghdr nh;
    nfgenmsg nf;
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = 1;
  req.nf.nfgen_family = AF_UNSPEC;
  req.nf.version = NFNETLINK_V0;
  sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  // The answer is immediate; bounded by a 1 s poll all the same.
  pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 1000) <= 0) {
    close(fd);
    return -ETIMEDOUT;
  }
  alignas(nlmsghdr) char buf[512];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  int e = errno;
  close(fd);
  if (n < 0) return -e;
  const nlmsghdr* nh = reinterpret_cast<const nlmsghdr*>(buf);
  if (!NLMSG_OK(nh, static_cast<unsigned>(n))) return -EPROTO;
  if (nh->nlmsg_type == NLMSG_ERROR) {
    const nlmsgerr* err = static_cast<const nlmsgerr*>(NLMSG_DATA(nh));
    return err->error < 0 ? err->error : -EPROTO;
  }
  if (nh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) return -EPROTO;
  // Attributes follow the nfgenmsg: NFTA_GEN_ID is a big-endian u32.
  size_t at = NLMSG_ALIGN(sizeof(nlmsghdr)) + NLMSG_ALIGN(sizeof(nfgenmsg));
  while (at + sizeof(nlattr) <= nh->nlmsg_len) {
    const nlattr* a = reinterpret_cast<const nlattr*>(buf + at);
    if (a->nla_len < sizeof(nlattr) || at + a->nla_len > nh->nlmsg_len) break;
    if ((a->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID && a->nla_len >= sizeof(nlattr) + 4) {
      const uint8_t* v = reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN;
      return (static_cast<long>(v[0]) << 24) | (static_cast<long>(v[1]) << 16) | (static_cast<long>(v[2]) << 8) | v[3];
    }
    at += NLA_ALIGN(a->nla_len);
  }
  return -EPROTO;
}

Napi::Value NftGeneration(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(NftGenerationOf()));
}

Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "waitpid(pid: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  pid_t pid = info[0].As<Napi::Number>().Int32Value();
  if (pid <= 0) return Napi::Number::New(env, -2);
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return Napi::Number::New(env, -1);
  if (r < 0) return Napi::Number::New(env, -2);
  if (WIFEXITED(status)) return Napi::Number::New(env, WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return Napi::Number::New(env, 256 + WTERMSIG(status));
  return Napi::Number::New(env, -1);
}

}  // namespace

Napi::Object InitSys(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  exports.Set("waitpid", Napi::Function::New(env, WaitPid, "waitpid"));
  exports.Set("nftGeneration", Napi::Function::New(env, NftGeneration, "nftGeneration"));
  return exports;
}

NODE_API_MODULE(espgate_sys, InitSys)
