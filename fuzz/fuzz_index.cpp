// Fuzzes the model.safetensors.index.json reader. Every shard name it accepts must be a plain
// file name: no path separator, no control byte (a NUL would cut the path short at open()).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/checkpoint.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto map = hyoracle::parse_checkpoint_index(std::string(reinterpret_cast<const char*>(data), size),
                                                      "fuzz/model.safetensors.index.json");
    for (const auto& [name, file] : map) {
      if (file.empty() || file == "." || file == "..") std::abort();
      for (const char ch : file)
        if (ch == '/' || static_cast<unsigned char>(ch) < 0x20) std::abort();
    }
  } catch (const hyoracle::Error&) {
  }
  return 0;
}
