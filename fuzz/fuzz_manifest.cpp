// Fuzzes the dump manifest reader (format, version, files, file_checks, input). An accepted
// manifest must name only relative files inside the dump and carry version 1.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/dump.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nlohmann::json m =
        hyoracle::parse_dump_manifest(std::string(reinterpret_cast<const char*>(data), size), "fuzz/manifest.json");
    if (m["version"] != hyoracle::kDumpVersion) std::abort();
    for (const auto& f : m["files"]) {
      const std::string name = f.get<std::string>();
      // No absolute path and no component ".." (a name like "acts..v1.safetensors" is fine).
      if (name.empty() || name[0] == '/' || name == ".." || name.rfind("../", 0) == 0 ||
          name.find("/../") != std::string::npos || (name.size() >= 3 && name.compare(name.size() - 3, 3, "/..") == 0))
        std::abort();
    }
  } catch (const hyoracle::Error&) {
  }
  return 0;
}
