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
//
// With a pre hook (SetPre: the addon's express batch) the poller can also hand its fd to the
// express loop's thread (Offload; express_loop.h says why and how ownership passes):
//   Offload(env, api, ready)  attach to the loop; from then on, after each callback (and after
//                             each event the pre hook settled on the main thread), the fd goes
//                             to the loop's thread whenever ready(arg) says the express path
//                             can take what comes (flows known, nothing left for JS).
//   Lock() / Unlock()         the source's lock: the loop thread holds it while pre runs; the
//                             addon's methods that change express state take it, and JS takes
//                             it (the addons' lock()/unlock()) around reading or writing the
//                             state arrays that pre also writes.
#ifndef ESPGATE_UV_POLLER_H_
#define ESPGATE_UV_POLLER_H_

#include <napi.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "express_loop.h"

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
      fd_ = fd;
      asyncContext_ = std::make_unique<Napi::AsyncContext>(env, resourceName);
    }
    started_ = true;
    if (async_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
    if (loopOwns_.load(std::memory_order_acquire)) return true;  // the loop thread watches it
    int rc = uv_poll_start(poll_, UV_READABLE, OnReadable);
    if (rc != 0) {
      Napi::Error::New(env, std::string("uv_poll_start: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
      return false;
    }
    // Packets the loop thread left for JS while we were stopped.
    if (pendingHandoff_ && async_ != nullptr) uv_async_send(async_);
    return true;
  }

  // Offload attaches the fd (Start first) to the express loop behind api; ready(arg) says when
  // the loop may take it. On failure a JS exception is pending and it returns false.
  bool Offload(Napi::Env env, ExpressLoopApi* api, bool (*ready)(void*)) {
    if (api == nullptr || api->version != kExpressLoopApiVersion) {
      Napi::TypeError::New(env, "offload: not an express loop of this build").ThrowAsJavaScriptException();
      return false;
    }
    if (poll_ == nullptr || pre_ == nullptr) {
      Napi::Error::New(env, "offload: poll and the express slots first").ThrowAsJavaScriptException();
      return false;
    }
    if (api_ != nullptr) return true;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "no libuv loop").ThrowAsJavaScriptException();
      return false;
    }
    uv_async_t* a = new uv_async_t;
    if (uv_async_init(loop, a, OnHandoff) != 0) {
      delete a;
      Napi::Error::New(env, "offload: uv_async_init failed").ThrowAsJavaScriptException();
      return false;
    }
    a->data = this;
    if (!started_) uv_unref(reinterpret_cast<uv_handle_t*>(a));
    int slot = api->attach(api->self, fd_, &UvPoller::OnLoopEvent, this);
    if (slot < 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(a), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
      Napi::Error::New(env, std::string("offload: ") + strerror(-slot)).ThrowAsJavaScriptException();
      return false;
    }
    api->ref(api->self);
    api_ = api;
    slot_ = slot;
    async_ = a;
    ready_ = ready;
    MaybeOffload();
    return true;
  }

  // The addons' JS methods offload(loop), lock(), unlock() and the offloaded accessor (tun.cc and
  // nfq.cc forward theirs here). offload takes the External from the TUN addon's
  // ExpressLoop.api; lock()/unlock() bracket JS reads and writes of the state the loop thread's
  // pre writes too (datapath/express.ts).
  Napi::Value OffloadJs(const Napi::CallbackInfo& info, bool (*ready)(void*)) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(env, "offload(loop: External)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Offload(env, info[0].As<Napi::External<ExpressLoopApi>>().Data(), ready);
    return env.Undefined();
  }
  Napi::Value LockJs(const Napi::CallbackInfo& info) {
    Lock();
    return info.Env().Undefined();
  }
  Napi::Value UnlockJs(const Napi::CallbackInfo& info) {
    Unlock();
    return info.Env().Undefined();
  }
  Napi::Value OffloadedJs(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), offloaded()); }

  void Lock() { mu_.lock(); }
  void Unlock() { mu_.unlock(); }
  std::recursive_timed_mutex& mu() { return mu_; }
  bool offloaded() const { return loopOwns_.load(std::memory_order_acquire); }

  // SetPre installs a hook that runs on each readable event before the JS callback; when it
  // returns true the event is settled and the callback is not called (tun.cc's express path).
  void SetPre(bool (*pre)(void*), void* arg) {
    pre_ = pre;
    preArg_ = arg;
  }

  void Stop() {
    started_ = false;
    if (poll_ != nullptr) uv_poll_stop(poll_);
    if (async_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(async_));
    if (loopOwns_.load(std::memory_order_acquire)) {
      // Take the fd back: the loop thread runs pre only while loopOwns_ (checked under mu_); an
      // event already armed finds it false and does nothing.
      std::lock_guard<std::recursive_timed_mutex> g(mu_);
      loopOwns_.store(false, std::memory_order_release);
    }
  }

  void Close() {
    closing_.store(true, std::memory_order_release);  // a waiting OnLoopEvent gives up
    Stop();
    if (api_ != nullptr) {
      api_->detach(api_->self, slot_);  // after this the loop thread never calls us again
      api_->unref(api_->self);
      api_ = nullptr;
      slot_ = -1;
    }
    if (async_ != nullptr) {
      async_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
      async_ = nullptr;
    }
    pendingHandoff_ = false;
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
    if (status == 0 && self->pre_ != nullptr && self->pre_(self->preArg_)) {
      self->MaybeOffload();
      return;
    }
    if (!self->CallJs(status)) return;
    self->MaybeOffload();
  }

  // CallJs runs the JS callback; false when the poller was closed or stopped meanwhile.
  bool CallJs(int status) {
    Napi::Env env = callback_.Env();
    {
      Napi::HandleScope scope(env);
      callback_.MakeCallback(env.Global(), {Napi::Number::New(env, status)}, *asyncContext_);
      if (env.IsExceptionPending()) {
        // No JS frame is below us: hand the exception to process 'uncaughtException'.
        Napi::Error e = env.GetAndClearPendingException();
        napi_fatal_exception(env, e.Value());
      }
    }
    return poll_ != nullptr && started_;
  }

  // MaybeOffload hands the fd to the loop thread when the express path is ready (main thread,
  // while we own the fd). True when it did.
  bool MaybeOffload() {
    if (api_ == nullptr || !started_ || poll_ == nullptr || loopOwns_.load(std::memory_order_acquire)) return false;
    if (ready_ == nullptr || !ready_(preArg_)) return false;
    uv_poll_stop(poll_);
    loopOwns_.store(true, std::memory_order_release);
    if (api_->arm(api_->self, slot_) != 0) {
      loopOwns_.store(false, std::memory_order_release);
      uv_poll_start(poll_, UV_READABLE, OnReadable);
      return false;
    }
    return true;
  }

  // OnLoopEvent runs on the loop thread when the fd is readable. It waits for the source's lock
  // (JS may hold it for a moment) unless the source is closing: Close holds it while it detaches.
  static void OnLoopEvent(void* arg) {
    UvPoller* self = static_cast<UvPoller*>(arg);
    for (;;) {
      if (self->closing_.load(std::memory_order_acquire)) return;
      if (self->mu_.try_lock_for(std::chrono::microseconds(200))) break;
    }
    std::lock_guard<std::recursive_timed_mutex> g(self->mu_, std::adopt_lock);
    if (!self->loopOwns_.load(std::memory_order_acquire)) return;
    if (self->pre_(self->preArg_) && self->api_->arm(self->api_->self, self->slot_) == 0) return;
    // Packets for JS, no flows any more, or the arm failed: back to the main loop.
    self->loopOwns_.store(false, std::memory_order_release);
    uv_async_send(self->async_);
  }

  // OnHandoff runs on the main loop after the loop thread gave the fd back: JS reads what it
  // left (readBatch takes the stash first), then the fd goes back to the loop or to our uv_poll.
  static void OnHandoff(uv_async_t* handle) {
    UvPoller* self = static_cast<UvPoller*>(handle->data);
    if (self == nullptr || self->poll_ == nullptr || self->loopOwns_.load(std::memory_order_acquire)) return;
    if (!self->started_) {
      self->pendingHandoff_ = true;
      return;
    }
    self->pendingHandoff_ = false;
    if (self->callback_.IsEmpty() || !self->asyncContext_) return;
    if (!self->CallJs(0)) return;
    if (!self->MaybeOffload()) uv_poll_start(self->poll_, UV_READABLE, OnReadable);
  }

  uv_poll_t* poll_ = nullptr;
  int fd_ = -1;
  bool started_ = false;
  bool (*pre_)(void*) = nullptr;
  void* preArg_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  // Offload (express_loop.h).
  ExpressLoopApi* api_ = nullptr;
  int slot_ = -1;
  uv_async_t* async_ = nullptr;
  bool (*ready_)(void*) = nullptr;
  bool pendingHandoff_ = false;
  std::atomic<bool> loopOwns_{false};
  std::atomic<bool> closing_{false};
  // Recursive: JS may hold it (lock()) and call a method that takes it again (expressClear).
  std::recursive_timed_mutex mu_;
};

}  // namespace espgate

#endif  // ESPGATE_UV_POLLER_H_
