// names.h: canonical dump tensor names (DUMP_FORMAT.md), the one source of truth for the
// reference, the CUDA path, compare and the engine helpers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hyoracle::names {

inline std::string layer(int64_t L, const std::string& what) { return "layers." + std::to_string(L) + "." + what; }
inline std::string step(int64_t S, const std::string& name) { return "steps." + std::to_string(S) + "." + name; }

inline const char* kInputIds = "input_ids";
inline const char* kEmbed = "embed";
inline const char* kFinalNorm = "final_norm";
inline const char* kLogits = "logits";
inline const char* kGenerateTokens = "generate.tokens";
inline const char* kGenerateLogits = "generate.logits";

// Per-layer suffixes in execution order. moe.* apply to MoE layers only. moe.topk_margin is a
// hyoracle extension: the k-th minus (k+1)-th corrected router score per token, [T].
inline const std::vector<std::string>& layer_suffixes() {
  static const std::vector<std::string> v = {
      "input_norm",       "attn.q",        "attn.k",         "attn.v",         "attn.q_norm",
      "attn.k_norm",      "attn.q_rope",   "attn.k_rope",    "attn.context",   "attn.out",
      "resid_mid",        "post_norm",     "moe.router_logits", "moe.scores",  "moe.topk_ids",
      "moe.topk_weights", "moe.topk_margin", "moe.routed_out", "moe.shared_out", "mlp.out",
      "out"};
  return v;
}

}  // namespace hyoracle::names
