# binding.gyp: the espgate TUN addon (src/io/native/tun.cc), built by `npm run build:native`.
# Output: src/io/native/build/Release/espgate_tun.node, loaded by src/io/tun-native.ts.
{
  "targets": [
    {
      "target_name": "espgate_tun",
      "sources": ["tun.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2", "-fno-exceptions", "-std=c++17"]
    }
  ]
}
