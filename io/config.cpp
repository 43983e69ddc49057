#include "io/config.h"

#include <cmath>

#include "io/config_reader.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "util/error.h"

namespace hyoracle {

using nlohmann::json;

double ModelConfig::rope_base() const {
  if (rope_alpha == 0) return rope_theta;
  const double d = double(head_dim);
  return rope_theta * std::pow(rope_alpha, d / (d - 2));
}

namespace config_detail {

// hy_v3 (docs/model.md §2): every semantic field explicit.
void parse_hy_v3(const Reader& r, ModelConfig& c) {
  const json& j = r.j;

  c.vocab_size = r.integer("vocab_size", 1, int64_t(1) << 22);
  c.hidden_size = r.integer("hidden_size", 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", 1, 4096);
  c.num_attention_heads = r.integer("num_attention_heads", 1, 4096);
  c.num_key_value_heads = r.integer("num_key_value_heads", 1, 4096);
  c.head_dim = r.integer("head_dim", 2, 4096);
  if (c.head_dim % 2) r.bad("head_dim", "is " + std::to_string(c.head_dim) + ", RoPE needs an even head_dim");
  if (c.num_attention_heads % c.num_key_value_heads)
    r.bad("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) + ") must divide num_attention_heads (" +
                                     std::to_string(c.num_attention_heads) + ")");
  c.intermediate_size = r.integer("intermediate_size", 1);

  // Expert width: moe_intermediate_size (transformers, SGLang) and/or expert_hidden_dim (vLLM).
  if (r.has("moe_intermediate_size") && r.has("expert_hidden_dim")) {
    c.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
    const int64_t e = r.integer("expert_hidden_dim", 1);
    if (e != c.moe_intermediate_size)
      r.bad("expert_hidden_dim", "is " + std::to_string(e) + " but moe_intermediate_size is " +
                                     std::to_string(c.moe_intermediate_size) + "; they must agree");
  } else if (r.has("expert_hidden_dim")) {
    c.moe_intermediate_size = r.integer("expert_hidden_dim", 1);
  } else {
    c.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
  }

  // Expert count: num_experts, or num_local_experts (transformers' attribute_map); must agree.
  if (r.has("num_experts") && r.has("num_local_experts")) {
    c.num_experts = r.integer("num_experts", 1, 65536);
    if (r.integer("num_local_experts", 1, 65536) != c.num_experts)
      r.bad("num_local_experts", "disagrees with num_experts");
  } else if (r.has("num_local_experts")) {
    c.num_experts = r.integer("num_local_experts", 1, 65536);
  } else {
    c.num_experts = r.integer("num_experts", 1, 65536);
  }
  c.num_experts_per_tok = r.integer("num_experts_per_tok", 1, 65536);
  if (c.num_experts_per_tok > c.num_experts)
    r.bad("num_experts_per_tok", "is " + std::to_string(c.num_experts_per_tok) + ", larger than num_experts (" +
                                     std::to_string(c.num_experts) + ")");
  c.num_shared_experts = r.integer("num_shared_experts", 0, 64);

  // Bounds every position and so the prompt plus the generated tokens (`hyoracle run`).
  if (r.has("max_position_embeddings")) c.max_position_embeddings = r.integer("max_position_embeddings", 1, int64_t(1) << 24);

  // FP8 checkpoints (per-tensor weight_scale, block-wise weight_scale_inv) are dequantized exactly
  // by the loader (io/quant.h); any other quantization is refused by parse_quantization_config.
  // compression_config (compressed-tensors' older key) is refused outright.
  if (r.has("quantization_config")) c.quant = parse_quantization_config(j["quantization_config"], r.src);
  if (r.has("compression_config"))
    r.bad("compression_config", "is set; hyoracle reads unquantized and \"fp8\" quantization_config checkpoints only");

  c.rms_norm_eps = r.positive("rms_norm_eps");
  c.router_scaling_factor = r.positive("router_scaling_factor");

  // RoPE: rope_parameters {"rope_theta", "rope_type"} (transformers 5) or the older rope_theta.
  if (r.has("rope_parameters")) {
    const json& rp = j["rope_parameters"];
    if (!rp.is_object()) r.bad("rope_parameters", "must be an object");
    if (rp.contains("rope_type") && rp["rope_type"] != "default")
      r.bad("rope_parameters.rope_type", "is " + shown(rp["rope_type"]) + "; only \"default\" (plain RoPE) is hy_v3");
    if (!rp.contains("rope_theta")) r.bad("rope_parameters.rope_theta", "is missing");
    c.rope_theta = r.number(rp["rope_theta"], "rope_parameters.rope_theta");
    if (r.has("rope_theta") && r.number(j["rope_theta"], "rope_theta") != c.rope_theta)
      r.bad("rope_theta", "disagrees with rope_parameters.rope_theta");
  } else if (r.has("rope_theta")) {
    c.rope_theta = r.number(j["rope_theta"], "rope_theta");
  } else {
    r.bad("rope_parameters", "is missing (neither rope_parameters nor rope_theta given)");
  }
  if (!(c.rope_theta > 1)) r.bad("rope_theta", "must be > 1");
  // A rope_scaling next to rope_parameters would be read by some engines and not others.
  if (r.has("rope_scaling"))
    r.bad("rope_scaling", "is set; hy_v3 uses plain RoPE and hyoracle implements no scaling");

  // Semantics flags. Engines default these differently (docs/model.md §2.4), so they must be given.
  c.route_norm = r.boolean("route_norm");
  if (!r.boolean("qk_norm"))
    r.bad("qk_norm", "is false; transformers applies q/k norms regardless and vLLM skips them, so the model is ambiguous");
  if (!r.boolean_or("moe_router_use_sigmoid", true))
    r.bad("moe_router_use_sigmoid", "is false; only sigmoid routing is hy_v3");
  if (r.has("attention_bias") && r.boolean("attention_bias")) r.bad("attention_bias", "is true; hy_v3 has no biases");
  if (r.has("hidden_act") && j["hidden_act"] != "silu") r.bad("hidden_act", "is " + shown(j["hidden_act"]) + ", expected \"silu\"");
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.enable_moe_fp32_combine = r.boolean_or("enable_moe_fp32_combine", false);
  c.enable_lm_head_fp32 = r.boolean_or("enable_lm_head_fp32", false);

  // Dense vs MoE layers: mlp_layer_types (transformers) and/or first_k_dense_replace (others).
  const int64_t L = c.num_hidden_layers;
  std::vector<bool> from_k, from_types;
  if (r.has("first_k_dense_replace")) {
    const int64_t k = r.integer("first_k_dense_replace", 0, L);
    for (int64_t l = 0; l < L; ++l) from_k.push_back(l < k);
  }
  if (r.has("mlp_layer_types")) {
    const json& t = j["mlp_layer_types"];
    if (!t.is_array() || int64_t(t.size()) != L)
      r.bad("mlp_layer_types", "must be an array of num_hidden_layers (" + std::to_string(L) + ") strings");
    for (const json& s : t) {
      if (s != "dense" && s != "sparse") r.bad("mlp_layer_types", "entries must be \"dense\" or \"sparse\", got " + shown(s));
      from_types.push_back(s == "dense");
    }
  }
  if (!from_k.empty() && !from_types.empty() && from_k != from_types)
    r.bad("mlp_layer_types", "disagrees with first_k_dense_replace");
  if (from_k.empty() && from_types.empty())
    r.bad("first_k_dense_replace", "is missing (and no mlp_layer_types); SGLang would make every layer MoE");
  c.dense_layer = from_types.empty() ? from_k : from_types;
  c.shared_intermediate_size = c.moe_intermediate_size * c.num_shared_experts;
}

}  // namespace config_detail

ModelConfig parse_config(const json& j, const std::string& src) {
  if (!j.is_object()) fail(src + ": config must be a JSON object");
  config_detail::Reader r{j, src};
  ModelConfig c;
  c.source = src;
  if (!r.has("model_type") || !j["model_type"].is_string()) r.bad("model_type", "is missing");
  c.model_type = j["model_type"].get<std::string>();
  const std::optional<Family> f = family_of_model_type(c.model_type);
  if (!f)
    r.bad("model_type", "is " + printable_quoted(c.model_type) +
                            ", expected \"hy_v3\", \"hunyuan_v1_moe\", \"hunyuan_v1_dense\" or \"hunyuan\"");
  c.family = *f;
  if (c.family == Family::hy_v3)
    config_detail::parse_hy_v3(r, c);
  else
    config_detail::parse_hunyuan_v1(r, c);
  return c;
}

ModelConfig parse_config_text(const std::string& bytes, const std::string& source) {
  ModelConfig c = parse_config(parse_json_strict(bytes, source), source);
  c.sha256 = sha256_hex(bytes);
  return c;
}

ModelConfig load_config(const std::string& path) {
  return parse_config_text(read_text_file(path, kConfigFileLimit, "config.json"), path);
}

}  // namespace hyoracle
