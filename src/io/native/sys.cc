// sys.cc: the small system calls Node has no API for.
//
//   sdNotify(socketPath, message) -> 0 | -errno
//       one datagram to systemd's notification socket ($NOTIFY_SOCKET: a filesystem path, or an
//       abstract socket when it starts with '@'), as sd_notify(3) does: "READY=1", "STOPPING=1",
//       "RELOADING=1", "WATCHDOG=1", "STATUS=...". Node's dgram module has no AF_UNIX sockets,
//       and linking libsystemd for one sendto is not worth a dependency.
//
// Threading: any thread; no state.

#include <napi.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

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

}  // namespace

Napi::Object InitSys(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  return exports;
}

NODE_API_MODULE(espgate_sys, InitSys)
