// uv_poller.h: the readiness watch shared by espgate's addons (tun.cc, nfq.cc): a libuv
// uv_poll_t on one fd that calls one JS callback on the main thread when the fd is readable
// (level-triggered: the JS side drains it, or it fires again).
//
//   Start(env, fd, cb, name)  begin (or resume) watching; replaces the callback. On failure a JS
//                             exception is pending and it returns false.
//   Stop()                    stop watching; the callback is kept, Start resumes.
//   Close()                   stop and free the handle (uv_close is asynchronous: the handle is
//                             deleted in its close callback; libuv requires the stop first) and
//                             drop the callback. Call before closing the fd. Idempotent.
//
// The callback runs through MakeCallback so that promise jobs and nextTicks it queues run before
// libuv goes on; an exception it throws goes to process 'uncaughtException'.
#ifndef ESPGATE_UV_POLLER_H_
#define ESPGATE_UV_POLLER_H_

#include <napi.h>
#include <uv.h>

#include <memory>
#include <string>

namespace espgate {

class UvPoller {
 public:
  UvPoller() = default;
  UvPoller(const UvPoller&) = delete;
  UvPoller& operator=(const UvPoller&) = delete;
  ~UvPoller() { Close(); }

  bool Start(Napi::Env env, int fd, Napi::Function cb, const char* resourceName) {
    callback_ = Napi::Persistent(cb);
    if (poll_ == nullptr) {
      uv_loop_t* loop = nullptr;
      if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
        Napi::Error::New(env, "no libuv loop").ThrowAsJavaScriptException();
        return false;
      }
      poll_ = new uv_poll_t;
      int rc = uv_poll_init(loop, poll_, fd);
      if (rc != 0) {
        delete poll_;
        poll_ = nullptr;
        Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
        return false;
      }
      poll_->data = this;
      asyncContext_ = std::make_unique<Napi::AsyncContext>(env, resourceName);
    }
    int rc = uv_poll_start(poll_, UV_READABLE, OnReadable);
    if (rc != 0) {
      Napi::Error::New(env, std::string("uv_poll_start: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  // SetPre installs a hook that runs on each readable event before the JS callback; when it
  // returns true the event is settled and the callback is not called (tun.cc's express path).
  void SetPre(bool (*pre)(void*), void* arg) {
    pre_ = pre;
    preArg_ = arg;
  }

  void Stop() {
    if (poll_ != nullptr) uv_poll_stop(poll_);
  }

  void Close() {
    if (poll_ != nullptr) {
      uv_poll_stop(poll_);
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    callback_.Reset();
    asyncContext_.reset();
  }

 private:
  static void OnReadable(uv_poll_t* handle, int status, int /*events*/) {
    UvPoller* self = static_cast<UvPoller*>(handle->data);
    if (self == nullptr || self->callback_.IsEmpty() || !self->asyncContext_) return;
    if (status == 0 && self->pre_ != nullptr && self->pre_(self->preArg_)) return;
    Napi::Env env = self->callback_.Env();
    Napi::HandleScope scope(env);
    self->callback_.MakeCallback(env.Global(), {Napi::Number::New(env, status)}, *self->asyncContext_);
    if (env.IsExceptionPending()) {
      // No JS frame is below us: hand the exception to process 'uncaughtException'.
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  uv_poll_t* poll_ = nullptr;
  bool (*pre_)(void*) = nullptr;
  void* preArg_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
};

}  // namespace espgate

#endif  // ESPGATE_UV_POLLER_H_
