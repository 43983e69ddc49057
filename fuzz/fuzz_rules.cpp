// Fuzzes the compare rules-file parser (compare/tolerance.h: parse_rules), which compiles the
// file's "match" patterns as std::regex. An accepted file's rules must each carry "max" or
// "scale" (docs/compare.md), and looking a name up must not crash.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "error.h"
#include "tolerance.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const hyoracle::compare::Rules r =
        hyoracle::compare::parse_rules(std::string(reinterpret_cast<const char*>(data), size), "fuzz/rules.json");
    for (const auto& rule : r.rules)
      if (!rule.max && !rule.scale) std::abort();
    r.find("layers.3.attn.out");
  } catch (const hyoracle::Error&) {
  }
  return 0;
}
