{
  "targets": [
    {
      "target_name": "spillway_native",
      "sources": ["native/addon.cc", "native/crc32c.cc", "native/file_calls.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "_FILE_OFFSET_BITS=64"
      ],
      "cflags!": ["-O0", "-O1", "-O2", "-Os"],
      "cflags_cc!": ["-O0", "-O1", "-O2", "-Os"],
      "cflags": ["-O3", "-Wall", "-Wextra"],
      "cflags_cc": ["-O3", "-Wall", "-Wextra"],
      "xcode_settings": {
        "GCC_OPTIMIZATION_LEVEL": "3",
        "CLANG_CXX_LIBRARY": "libc++",
        "MACOSX_DEPLOYMENT_TARGET": "11.0"
      }
    }
  ]
}
