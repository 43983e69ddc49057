// The Hunyuan v1 family's config.json (docs/hunyuan_v1.md): transformers' hunyuan_v1_moe /
// hunyuan_v1_dense ("hf" semantics) and Tencent's original "hunyuan" configs ("tencent").
//
// Where transformers, Tencent's code and vLLM read one field differently, a config whose value
// would make them compute different things is refused with the field named; the value that
// makes them agree (or the one the named class fixes) is accepted.
#include <cmath>

#include "io/config_reader.h"
#include "io/safetensors.h"

namespace hyoracle::config_detail {

namespace {

// An integer field that may also be a per-layer list of one value (Tencent's A13B config gives
// moe_topk and num_shared_expert as [8, 8, ...]); lists with different values are refused.
int64_t uniform_integer(const Reader& r, const std::string& f, int64_t lo, int64_t hi, int64_t layers) {
  if (!r.has(f) || !r.j[f].is_array()) return r.integer(f, lo, hi);
  const json& a = r.j[f];
  if (int64_t(a.size()) != layers)
    r.bad(f, "is a list of " + std::to_string(a.size()) + " entries, expected one per layer (" + std::to_string(layers) + ")");
  int64_t v = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const json one = {{f, a[i]}};
    const int64_t x = Reader{one, r.src}.integer(f, lo, hi);
    if (i > 0 && x != v) r.bad(f, "differs between layers (" + shown(a) + "); hyoracle needs one value for every layer");
    v = x;
  }
  return v;
}

// RoPE: rope_parameters (transformers 5) or rope_theta + rope_scaling (Tencent, transformers 4).
// "default" is plain RoPE; "dynamic" with "alpha" is NTK-alpha (θ' = θ·α^(d/(d−2))). Factor-based
// dynamic NTK (no alpha) changes with the sequence length and is refused, as is any other type.
void parse_rope(const Reader& r, ModelConfig& c) {
  const json& j = r.j;
  auto scaling = [&](const json& o, const std::string& where) {
    // Tencent's code reads "type", transformers "rope_type": both present must agree.
    if (o.contains("rope_type") && o.contains("type") && o["rope_type"] != o["type"])
      r.bad(where, "has rope_type " + shown(o["rope_type"]) + " and type " + shown(o["type"]) +
                       "; engines read one or the other");
    const std::string tkey = o.contains("rope_type") ? "rope_type" : "type";
    if (o.contains(tkey) && !o[tkey].is_string()) r.bad(where + "." + tkey, "must be a string, got " + shown(o[tkey]));
    const std::string type = o.contains(tkey) ? o[tkey].get<std::string>() : "default";
    if (type == "default") return;
    if (type != "dynamic")
      r.bad(where + "." + tkey, "is " + shown(o[tkey]) + "; hyoracle implements \"default\" and \"dynamic\" with alpha");
    if (!o.contains("alpha") || o["alpha"].is_null())
      r.bad(where + ".alpha", "is missing: \"dynamic\" without alpha is length-dependent NTK scaling, which hyoracle does not implement");
    c.rope_alpha = r.number(o["alpha"], where + ".alpha");
    if (!(c.rope_alpha > 0)) r.bad(where + ".alpha", "must be > 0");
  };
  if (r.has("rope_parameters")) {
    const json& rp = j["rope_parameters"];
    if (!rp.is_object()) r.bad("rope_parameters", "must be an object");
    if (!rp.contains("rope_theta")) r.bad("rope_parameters.rope_theta", "is missing");
    c.rope_theta = r.number(rp["rope_theta"], "rope_parameters.rope_theta");
    if (r.has("rope_theta") && r.number(j["rope_theta"], "rope_theta") != c.rope_theta)
      r.bad("rope_theta", "disagrees with rope_parameters.rope_theta");
    if (r.has("rope_scaling") && j["rope_scaling"] != rp)
      r.bad("rope_scaling", "is set next to rope_parameters and differs from it; engines read one or the other");
    scaling(rp, "rope_parameters");
  } else {
    if (!r.has("rope_theta")) r.bad("rope_theta", "is missing (neither rope_parameters nor rope_theta given)");
    c.rope_theta = r.number(j["rope_theta"], "rope_theta");
    if (r.has("rope_scaling")) {
      if (!j["rope_scaling"].is_object()) r.bad("rope_scaling", "must be an object or null");
      scaling(j["rope_scaling"], "rope_scaling");
    }
  }
  if (!(c.rope_theta > 1)) r.bad("rope_theta", "must be > 1");
}

}  // namespace

void parse_hunyuan_v1(const Reader& r, ModelConfig& c) {
  const json& j = r.j;
  const bool tencent = c.model_type == "hunyuan";
  c.semantics = tencent ? "tencent" : "hf";
  c.qk_norm_after_rope = true;  // every implementation of the family rotates first, then normalises
  c.router = RouterKind::softmax;
  c.router_scaling_factor = 1.0;

  c.vocab_size = r.integer("vocab_size", 1, int64_t(1) << 22);
  c.hidden_size = r.integer("hidden_size", 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", 1, 4096);
  c.num_attention_heads = r.integer("num_attention_heads", 1, 4096);
  c.num_key_value_heads = r.integer("num_key_value_heads", 1, 4096);
  if (c.num_attention_heads % c.num_key_value_heads)
    r.bad("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) + ") must divide num_attention_heads (" +
                                     std::to_string(c.num_attention_heads) + ")");
  c.intermediate_size = r.integer("intermediate_size", 1);
  c.rms_norm_eps = r.positive("rms_norm_eps");
  if (r.has("max_position_embeddings")) c.max_position_embeddings = r.integer("max_position_embeddings", 1, int64_t(1) << 24);

  // Head width. Tencent's code always uses hidden_size / num_attention_heads; transformers reads
  // head_dim when given (and falls back to the same quotient).
  const bool divides = c.hidden_size % c.num_attention_heads == 0;
  const int64_t quotient = c.hidden_size / c.num_attention_heads;
  for (const char* f : {"head_dim", "attention_head_dim"}) {
    if (!r.has(f)) continue;
    const int64_t d = r.integer(f, 2, 4096);
    if (tencent && (!divides || d != quotient))
      r.bad(f, "is " + std::to_string(d) + " but Tencent's code uses hidden_size / num_attention_heads (" +
                   std::to_string(c.hidden_size) + " / " + std::to_string(c.num_attention_heads) + ")");
    if (c.head_dim && d != c.head_dim) r.bad(f, "disagrees with head_dim");
    c.head_dim = d;
  }
  if (!c.head_dim) {
    if (!divides)
      r.bad("num_attention_heads", "does not divide hidden_size and no head_dim is given");
    c.head_dim = quotient;
  }
  if (c.head_dim % 2) r.bad("head_dim", "is " + std::to_string(c.head_dim) + ", RoPE needs an even head_dim");
  parse_rope(r, c);
  if (c.rope_alpha > 0 && c.head_dim <= 2) r.bad("head_dim", "must be > 2 for NTK-alpha RoPE");

  if (r.has("quantization_config")) c.quant = parse_quantization_config(j["quantization_config"], r.src);
  if (r.has("compression_config"))
    r.bad("compression_config", "is set; hyoracle reads unquantized and \"fp8\" quantization_config checkpoints only");
  for (const char* f : {"attention_bias", "mlp_bias"})
    if (r.has(f) && r.boolean(f)) r.bad(f, "is true; the Hunyuan v1 models hyoracle implements have no biases");
  if (r.has("hidden_act") && j["hidden_act"] != "silu") r.bad("hidden_act", "is " + shown(j["hidden_act"]) + ", expected \"silu\"");
  // Both configuration classes default tie_word_embeddings to false.
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);

  // Q/K norms: transformers applies them always, Tencent's code and vLLM only with use_qk_norm.
  if (tencent ? !r.boolean("use_qk_norm") : (r.has("use_qk_norm") && !r.boolean("use_qk_norm")))
    r.bad("use_qk_norm", tencent ? "is false; hyoracle implements the Hunyuan v1 models with q/k norms only"
                                 : "is false, but transformers' class applies the q/k norms regardless (vLLM would skip them)");

  // Cross-layer attention exists only in Tencent's code (and vLLM); transformers builds q/k/v in
  // every layer, so a CLA checkpoint under its classes would miss the cross layers' k/v.
  if (tencent) {
    if (r.boolean("use_cla")) {
      c.cla_share_factor = r.integer("cla_share_factor", 1, 4096);
    }
  } else if (r.has("use_cla") && r.boolean("use_cla")) {
    r.bad("use_cla", "is true, but transformers' " + c.model_type +
                         " has no cross-layer attention; a CLA checkpoint needs model_type \"hunyuan\" (Tencent's code)");
  }

  const int64_t L = c.num_hidden_layers;
  const bool moe = tencent ? (r.has("num_experts") && uniform_integer(r, "num_experts", 1, 65536, L) > 1)
                           : c.model_type == "hunyuan_v1_moe";
  c.dense_layer.assign(size_t(L), !moe);
  if (!moe) return;

  c.num_experts = uniform_integer(r, "num_experts", 1, 65536, L);
  c.num_experts_per_tok = uniform_integer(r, "moe_topk", 1, 65536, L);
  if (c.num_experts_per_tok > c.num_experts)
    r.bad("moe_topk", "is " + std::to_string(c.num_experts_per_tok) + ", larger than num_experts (" +
                          std::to_string(c.num_experts) + ")");
  // Both codes size the routed experts by intermediate_size; vLLM uses moe_intermediate_size
  // when given, so a different value is ambiguous.
  c.moe_intermediate_size = c.intermediate_size;
  if (r.has("moe_intermediate_size") && uniform_integer(r, "moe_intermediate_size", 1, kMaxDim, L) != c.intermediate_size)
    r.bad("moe_intermediate_size", "differs from intermediate_size; " + std::string(tencent ? "Tencent's code" : "transformers") +
                                       " sizes the experts by intermediate_size and vLLM by moe_intermediate_size");
  if (tencent) {
    // Shared MLP of intermediate_size × num_shared_expert; top-1 weight is the raw probability,
    // top-k (k > 1) renormalised.
    if (!r.boolean("use_mixed_mlp_moe"))
      r.bad("use_mixed_mlp_moe", "is false; hyoracle implements the Hunyuan v1 MoE models with their shared MLP only");
    c.num_shared_experts = uniform_integer(r, "num_shared_expert", 1, 64, L);
    c.route_norm = c.num_experts_per_tok > 1;
    if (c.num_experts_per_tok > 1 && r.has("norm_topk_prob") && !r.boolean("norm_topk_prob"))
      r.bad("norm_topk_prob", "is false; Tencent's Hunyuan-Large code renormalises top-k weights regardless, later code does not");
  } else {
    // transformers: one shared MLP of intermediate_size, weights always renormalised (top-1 gives 1.0).
    if (r.has("use_mixed_mlp_moe") && !r.boolean("use_mixed_mlp_moe"))
      r.bad("use_mixed_mlp_moe", "is false, but transformers' class always adds the shared MLP");
    if (r.has("num_shared_expert") && uniform_integer(r, "num_shared_expert", 1, 64, L) != 1)
      r.bad("num_shared_expert", "is not 1; transformers' class has one shared MLP of intermediate_size and vLLM multiplies it");
    c.num_shared_experts = 1;
    c.route_norm = true;
  }
  c.shared_intermediate_size = c.intermediate_size * c.num_shared_experts;
  if (r.has("routed_scaling_factor") && r.number(j["routed_scaling_factor"], "routed_scaling_factor") != 1.0)
    r.bad("routed_scaling_factor", "is not 1.0; only some Hunyuan code reads it, so the model is ambiguous");
  if (r.has("moe_drop_tokens") && r.boolean("moe_drop_tokens"))
    r.bad("moe_drop_tokens", "is true; hyoracle computes every token's experts (no capacity dropping)");
}

}  // namespace hyoracle::config_detail
