// config.h: the model description, read from an HF config.json: the sizes and the semantic
// choices of one model of a known family (io/family.h). hy_v3 (Hy3-preview, Hy-MT2-30B-A3B):
// docs/model.md §2; the Hunyuan v1 family (Hunyuan-Large, Hunyuan-A13B, dense Hunyuan):
// docs/hunyuan_v1.md. Everything the reference, the CUDA path, compare and the fixtures need to
// know about a model's structure is a field or method here.
//
// Values come from the file only, never from any engine's class defaults (except where the class
// the config names fixes a value, which the family's parser says). A field that changes the
// computation and is missing, out of range or inconsistent is an Error naming the file and the
// field.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/family.h"
#include "io/quant.h"

namespace hyoracle {

struct ModelConfig {
  std::string source;        // path of the config.json (for messages)
  std::string sha256;        // sha256 of the config.json bytes
  std::string model_type;    // "hy_v3", "hunyuan_v1_moe", "hunyuan_v1_dense", "hunyuan"
  Family family = Family::hy_v3;
  std::string semantics = "hy_v3";  // whose code the config follows: "hy_v3", "hf" or "tencent" (io/family.h)
  int64_t vocab_size = 0;             // V
  int64_t hidden_size = 0;            // H
  int64_t intermediate_size = 0;      // I_d, dense layers only
  int64_t moe_intermediate_size = 0;  // I_e, one routed expert (== expert_hidden_dim)
  int64_t shared_intermediate_size = 0;  // width of the always-on shared MLP of an MoE layer (0: none)
  int64_t num_hidden_layers = 0;      // L, excludes MTP layers
  int64_t num_attention_heads = 0;    // n_q
  int64_t num_key_value_heads = 0;    // n_kv
  int64_t head_dim = 0;               // d
  int64_t num_experts = 0;            // E (num_experts or num_local_experts)
  int64_t num_experts_per_tok = 0;    // k
  int64_t num_shared_experts = 0;     // hy_v3: shared width = I_e * num_shared_experts
  int64_t max_position_embeddings = 0;  // longest sequence (prompt + generated); 0: not given
  double rms_norm_eps = 0;            // one eps for every norm
  double rope_theta = 0;              // θ as the config gives it
  double rope_alpha = 0;              // NTK-alpha (rope type "dynamic" with alpha); 0: plain RoPE
  double router_scaling_factor = 0;   // multiplies the renormalised top-k weights
  bool route_norm = true;             // renormalise the top-k weights (hy_v3: +1e-20 in the sum)
  RouterKind router = RouterKind::sigmoid_bias;
  bool qk_norm_after_rope = false;    // per-head q/k RMSNorm after RoPE (hunyuan_v1) or before (hy_v3)
  int64_t cla_share_factor = 1;       // cross-layer attention: layer L reads layer L − L % f's K/V
  bool tie_word_embeddings = false;   // lm_head shares embed_tokens when true
  bool enable_moe_fp32_combine = false;  // recorded; affects only bf16 rounding emulation
  bool enable_lm_head_fp32 = false;      // recorded; affects only bf16 rounding emulation
  std::vector<bool> dense_layer;      // per layer: dense SwiGLU (true) or MoE (false)
  QuantConfig quant;                  // quantization_config (io/quant.h); kind None when absent

  int64_t gqa_group() const { return num_attention_heads / num_key_value_heads; }
  int64_t q_width() const { return num_attention_heads * head_dim; }    // A
  int64_t kv_width() const { return num_key_value_heads * head_dim; }   // Kv
  int64_t shared_width() const { return shared_intermediate_size; }
  // RoPE's base: θ, or with NTK-alpha θ' = θ · α^(d / (d − 2)) (independent of the length).
  double rope_base() const;
  // The layer whose K/V layer L attends with: itself, or for a cross layer (cross-layer
  // attention) the most recent layer that computes its own.
  int64_t kv_source(int64_t layer) const { return layer - layer % cla_share_factor; }
  bool owns_kv(int64_t layer) const { return kv_source(layer) == layer; }
  bool has_expert_bias() const { return router == RouterKind::sigmoid_bias; }
  bool is_dense(int64_t layer) const { return dense_layer.at(size_t(layer)); }
};

// Reads and validates `path` (a config.json file).
ModelConfig load_config(const std::string& path);
// Parses and validates config.json bytes (strict JSON: no duplicate keys); `source` names the
// file in messages. load_config is read_text_file + parse_config_text.
ModelConfig parse_config_text(const std::string& bytes, const std::string& source);
// Validates an already-parsed config; `source` names the file in messages.
ModelConfig parse_config(const nlohmann::json& j, const std::string& source);

}  // namespace hyoracle
