# binding.gyp: the espgate native addons, built by `npm run build:native`.
#   espgate_tun: the TUN device (tun.cc), loaded by src/io/tun-native.ts
#   espgate_nfq: the batched NFQUEUE receiver (nfq.cc), loaded by src/io/nfq-native.ts
#   espgate_gcm: AES-GCM through Node's own OpenSSL (gcm.cc), loaded by src/esp/aead-native.ts
#   espgate_sys: sd_notify (sys.cc), loaded by src/daemon/sd-notify.ts
#   espgate_raw: the raw ESP sender with sendmmsg (raw.cc), loaded by src/io/raw-native.ts
# Output: src/io/native/build/Release/<target>.node
{
  "targets": [
    {
      "target_name": "espgate_tun",
      "sources": ["tun.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2", "-fno-exceptions", "-std=c++17"]
    },
    {
      "target_name": "espgate_nfq",
      "sources": ["nfq.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2", "-fno-exceptions", "-std=c++17"]
    },
    {
      "target_name": "espgate_gcm",
      "sources": ["gcm.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2", "-fno-exceptions", "-std=c++17"]
    },
    {
      "target_name": "espgate_raw",
      "sources": ["raw.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2", "-fno-exceptions", "-std=c++17"]
    },
    {
      "target_name": "espgate_sys",
      "sources": ["sys.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2", "-fno-exceptions", "-std=c++17"]
    }
  ]
}
