#include "io/config.h"

#include <cmath>

#include "util/error.h"
#include "io/safetensors.h"
#include "io/sha256.h"

namespace hyoracle {

using nlohmann::json;

namespace {

// Upper bound on any size field: large enough for any real model, small enough that products
// of two sizes stay far from int64 overflow.
constexpr int64_t kMaxDim = int64_t(1) << 24;

// A JSON value for a one-line message: ASCII only, at most 80 characters.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

struct Reader {
  const json& j;
  const std::string& src;

  [[noreturn]] void bad(const std::string& field, const std::string& why) const {
    fail(src + ": field \"" + field + "\" " + why);
  }
  bool has(const std::string& f) const { return j.contains(f) && !j[f].is_null(); }

  int64_t integer(const std::string& f, int64_t lo, int64_t hi = kMaxDim) const {
    if (!has(f)) bad(f, "is missing (it changes the computation; hyoracle uses no defaults)");
    const json& v = j[f];
    if (!v.is_number_integer() && !v.is_number_unsigned()) bad(f, "must be an integer, got " + shown(v));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi))
      bad(f, "is " + shown(v) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) bad(f, "is " + std::to_string(x) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  double number(const json& v, const std::string& f) const {
    if (!v.is_number()) bad(f, "must be a number, got " + shown(v));
    const double x = v.get<double>();
    if (!std::isfinite(x)) bad(f, "must be finite");
    return x;
  }
  double positive(const std::string& f) const {
    if (!has(f)) bad(f, "is missing (it changes the computation; hyoracle uses no defaults)");
    const double x = number(j[f], f);
    if (!(x > 0)) bad(f, "must be > 0, got " + shown(j[f]));
    return x;
  }
  bool boolean(const std::string& f) const {
    if (!has(f)) bad(f, "is missing (engines disagree on its default; hyoracle uses none)");
    if (!j[f].is_boolean()) bad(f, "must be true or false, got " + shown(j[f]));
    return j[f].get<bool>();
  }
  bool boolean_or(const std::string& f, bool dflt) const { return has(f) ? boolean(f) : dflt; }
};

}  // namespace

ModelConfig parse_config(const json& j, const std::string& src) {
  if (!j.is_object()) fail(src + ": config must be a JSON object");
  Reader r{j, src};
  ModelConfig c;
  c.source = src;
  if (!r.has("model_type") || !j["model_type"].is_string()) r.bad("model_type", "is missing");
  c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "hy_v3") r.bad("model_type", "is " + printable_quoted(c.model_type) + ", expected \"hy_v3\"");

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
  if (r.has("quantization_config")) c.quant = parse_quantization_config(j["quantization_config"], src);
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
