// gcm.cc: AES-GCM for ESP (RFC 4106) through the OpenSSL that Node itself links and exports.
//
// Why native: node:crypto cannot re-nonce a cipher object, so every packet pays a
// createCipheriv/createDecipheriv (~4 us here) plus setAAD/update/final/getAuthTag crossings
// and a fresh output Buffer. Here one GcmKey keeps two EVP_CIPHER_CTX (encrypt, decrypt) keyed
// once; per packet only the 12-byte nonce is set (EVP_*Init_ex with cipher and key NULL), the
// AAD and data are processed in place in the caller's Buffer, and the tag is written or checked.
// One JS -> C++ crossing per packet, no allocation.
//
// Contract (the same as src/esp/aead.ts's Aead, which stays the reference implementation; both
// run the same vectors in src/esp/aead.test.ts):
//   seal(nonce, aad, aadLen, src, srcOff, srcLen, dst, dstOff) -> srcLen + 16
//       ciphertext at dst[dstOff..] then the 16-byte ICV; dst may be src (same offset).
//   open(nonce, aad, aadLen, src, srcOff, ctLen, dst, dstOff) -> 1 | 0
//       the ICV follows the ciphertext in src. Plaintext is written to dst only when the ICV
//       verifies (decrypted into a scratch buffer first), so a forgery leaves dst untouched.
// Arguments are bounds-checked here (a RangeError is a caller bug, never packet data).
// Threading: an instance is used by one thread at a time (one SA's owner).

#include <napi.h>
#include <openssl/evp.h>

#include <string.h>

#include <memory>
#include <vector>

namespace {

constexpr int kNonceLen = 12;
constexpr int kTagLen = 16;
// kScratch bounds one open(): the largest ESP payload NFQUEUE delivers is below 64 KiB.
constexpr size_t kScratch = 65536;

bool View(const Napi::Value& v, uint8_t** data, size_t* len) {
  if (!v.IsTypedArray()) return false;
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) return false;
  Napi::Uint8Array u = v.As<Napi::Uint8Array>();
  *data = u.Data();
  *len = u.ByteLength();
  return true;
}

// Range checks off + len <= total without overflow.
bool Range(int64_t off, int64_t len, size_t total) {
  return off >= 0 && len >= 0 && static_cast<uint64_t>(off) + static_cast<uint64_t>(len) <= total;
}

class GcmKey : public Napi::ObjectWrap<GcmKey> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "GcmKey", {
        InstanceMethod<&GcmKey::Seal>("seal"),
        InstanceMethod<&GcmKey::Open>("open"),
    });
    exports.Set("GcmKey", ctor);
    return exports;
  }

  // new GcmKey(key: Uint8Array) with a 16-, 24- or 32-byte AES key (the salt stays in JS).
  explicit GcmKey(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GcmKey>(info) {
    Napi::Env env = info.Env();
    uint8_t* key = nullptr;
    size_t keyLen = 0;
    if (info.Length() < 1 || !View(info[0], &key, &keyLen)) {
      Napi::TypeError::New(env, "new GcmKey(key: Uint8Array)").ThrowAsJavaScriptException();
      return;
    }
    const EVP_CIPHER* cipher = keyLen == 16 ? EVP_aes_128_gcm() : keyLen == 24 ? EVP_aes_192_gcm() : keyLen == 32 ? EVP_aes_256_gcm() : nullptr;
    if (cipher == nullptr) {
      Napi::RangeError::New(env, "AES-GCM key must be 16, 24 or 32 bytes").ThrowAsJavaScriptException();
      return;
    }
    enc_ = EVP_CIPHER_CTX_new();
    dec_ = EVP_CIPHER_CTX_new();
    if (enc_ == nullptr || dec_ == nullptr ||
        EVP_EncryptInit_ex(enc_, cipher, nullptr, nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(enc_, EVP_CTRL_GCM_SET_IVLEN, kNonceLen, nullptr) != 1 ||
        EVP_EncryptInit_ex(enc_, nullptr, nullptr, key, nullptr) != 1 ||
        EVP_DecryptInit_ex(dec_, cipher, nullptr, nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(dec_, EVP_CTRL_GCM_SET_IVLEN, kNonceLen, nullptr) != 1 ||
        EVP_DecryptInit_ex(dec_, nullptr, nullptr, key, nullptr) != 1) {
      Napi::Error::New(env, "OpenSSL: AES-GCM context setup failed").ThrowAsJavaScriptException();
      return;
    }
  }

  ~GcmKey() override {
    if (enc_ != nullptr) EVP_CIPHER_CTX_free(enc_);
    if (dec_ != nullptr) EVP_CIPHER_CTX_free(dec_);
  }

 private:
  struct Args {
    uint8_t* nonce;
    uint8_t* aad;
    int aadLen;
    uint8_t* src;
    uint8_t* dst;
    int len;
  };

  // Parse reads (nonce, aad, aadLen, src, srcOff, len, dst, dstOff) and checks every range;
  // dstExtra is what is written past dst[dstOff + len) (the tag on seal), srcExtra what is read
  // past src[srcOff + len) (the tag on open).
  bool Parse(const Napi::CallbackInfo& info, int srcExtra, int dstExtra, Args* a) {
    Napi::Env env = info.Env();
    uint8_t *nonce, *aad, *src, *dst;
    size_t nonceLen, aadTotal, srcTotal, dstTotal;
    if (info.Length() < 8 || !View(info[0], &nonce, &nonceLen) || !View(info[1], &aad, &aadTotal) ||
        !View(info[3], &src, &srcTotal) || !View(info[6], &dst, &dstTotal) || !info[2].IsNumber() ||
        !info[4].IsNumber() || !info[5].IsNumber() || !info[7].IsNumber()) {
      Napi::TypeError::New(env, "(nonce, aad, aadLen, src, srcOff, len, dst, dstOff)").ThrowAsJavaScriptException();
      return false;
    }
    int64_t aadLen = info[2].As<Napi::Number>().Int64Value();
    int64_t srcOff = info[4].As<Napi::Number>().Int64Value();
    int64_t len = info[5].As<Napi::Number>().Int64Value();
    int64_t dstOff = info[7].As<Napi::Number>().Int64Value();
    if (nonceLen != kNonceLen || !Range(0, aadLen, aadTotal) || !Range(srcOff, len + srcExtra, srcTotal) ||
        !Range(dstOff, len + dstExtra, dstTotal) || len > static_cast<int64_t>(kScratch)) {
      Napi::RangeError::New(env, "AES-GCM: argument out of range").ThrowAsJavaScriptException();
      return false;
    }
    a->nonce = nonce;
    a->aad = aad;
    a->aadLen = static_cast<int>(aadLen);
    a->src = src + srcOff;
    a->dst = dst + dstOff;
    a->len = static_cast<int>(len);
    return true;
  }

  Napi::Value Seal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Args a;
    if (!Parse(info, 0, kTagLen, &a)) return env.Undefined();
    int outl = 0;
    int finl = 0;
    // memmove semantics are not given by OpenSSL for partially overlapping buffers: only exact
    // in-place (dst == src) or disjoint ranges are allowed.
    if (a.src != a.dst && a.dst < a.src + a.len && a.src < a.dst + a.len + kTagLen) {
      Napi::RangeError::New(env, "AES-GCM seal: src and dst overlap partially").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (EVP_EncryptInit_ex(enc_, nullptr, nullptr, nullptr, a.nonce) != 1 ||
        (a.aadLen > 0 && EVP_EncryptUpdate(enc_, nullptr, &outl, a.aad, a.aadLen) != 1) ||
        EVP_EncryptUpdate(enc_, a.dst, &outl, a.src, a.len) != 1 ||
        EVP_EncryptFinal_ex(enc_, a.dst + outl, &finl) != 1 ||
        EVP_CIPHER_CTX_ctrl(enc_, EVP_CTRL_GCM_GET_TAG, kTagLen, a.dst + a.len) != 1) {
      Napi::Error::New(env, "OpenSSL: AES-GCM seal failed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, a.len + kTagLen);
  }

  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Args a;
    if (!Parse(info, kTagLen, 0, &a)) return env.Undefined();
    // One scratch buffer per thread, not per SA: 10,000 SAs must not cost 640 MB.
    thread_local std::vector<uint8_t> scratch(kScratch);
    uint8_t* tmp = scratch.data();
    uint8_t tag[kTagLen];
    memcpy(tag, a.src + a.len, kTagLen);
    int outl = 0;
    int finl = 0;
    if (EVP_DecryptInit_ex(dec_, nullptr, nullptr, nullptr, a.nonce) != 1 ||
        (a.aadLen > 0 && EVP_DecryptUpdate(dec_, nullptr, &outl, a.aad, a.aadLen) != 1) ||
        EVP_DecryptUpdate(dec_, tmp, &outl, a.src, a.len) != 1 ||
        EVP_CIPHER_CTX_ctrl(dec_, EVP_CTRL_GCM_SET_TAG, kTagLen, tag) != 1) {
      Napi::Error::New(env, "OpenSSL: AES-GCM open failed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (EVP_DecryptFinal_ex(dec_, tmp + outl, &finl) != 1) return Napi::Boolean::New(env, false);
    memcpy(a.dst, tmp, static_cast<size_t>(a.len));
    return Napi::Boolean::New(env, true);
  }

  EVP_CIPHER_CTX* enc_ = nullptr;
  EVP_CIPHER_CTX* dec_ = nullptr;
};

}  // namespace

Napi::Object InitGcm(Napi::Env env, Napi::Object exports) { return GcmKey::Init(env, exports); }

NODE_API_MODULE(espgate_gcm, InitGcm)
