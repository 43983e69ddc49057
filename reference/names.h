// names.h: canonical dump tensor names (docs/DUMP_FORMAT.md) for the reference, the CUDA path,
// compare and the engine helpers; the per-layer names come from the dataflow table (dataflow.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "reference/dataflow.h"

namespace hyoracle::names {

inline std::string layer(int64_t L, const std::string& what) { return "layers." + std::to_string(L) + "." + what; }
inline std::string step(int64_t S, const std::string& name) { return "steps." + std::to_string(S) + "." + name; }

inline const char* kInputIds = "input_ids";
inline const char* kEmbed = "embed";
inline const char* kFinalNorm = "final_norm";
inline const char* kLogits = "logits";
inline const char* kGenerateTokens = "generate.tokens";
inline const char* kGenerateLogits = "generate.logits";

// Per-layer suffixes in execution order (dataflow.h's rows, each name once). moe.* apply to MoE
// layers only. moe.topk_margin is a hyoracle extension: the k-th minus (k+1)-th corrected router
// score per token, [T].
inline const std::vector<std::string>& layer_suffixes(Family f) {
  auto make = [](Family g) {
    std::vector<std::string> out;
    for (const auto& s : dataflow::layer_steps(g))
      if (out.empty() || out.back() != s.name) out.push_back(s.name);
    return out;
  };
  static const std::vector<std::string> hy = make(Family::hy_v3), hun = make(Family::hunyuan_v1);
  return f == Family::hy_v3 ? hy : hun;
}

}  // namespace hyoracle::names
