// Fuzzes the compare rules-file parser (compare/tolerance.h: parse_rules), which compiles the
// file's "match" patterns with Pattern (compare/pattern.h, linear-time matching). An accepted
// file's rules must each carry "max" or "scale" (docs/compare.md), and looking names up must not
// crash or take long (libFuzzer's -timeout reports a slow input).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "util/error.h"
#include "compare/tolerance.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const hyoracle::compare::Rules r =
        hyoracle::compare::parse_rules(std::string(reinterpret_cast<const char*>(data), size), "fuzz/rules.json");
    for (const auto& rule : r.rules)
      if (!rule.max && !rule.scale) std::abort();
    r.find("layers.3.attn.out");
    r.find("steps.799.layers.79.moe.routed_out" + std::string(200, 'a'));
  } catch (const hyoracle::Error&) {
  }
  return 0;
}
