#include "io/random_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "io/dtype.h"
#include "util/error.h"
#include "io/safetensors.h"
#include "io/quant.h"

namespace hyoracle {

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
double Rng::uniform() { return double(next() >> 32) * 0x1p-32; }
double Rng::normal() {
  double s = 0;
  for (int i = 0; i < 12; ++i) s += uniform();
  return s - 6.0;
}

namespace {

// config.json of a Hunyuan v1 spec: the field set transformers 5 writes for its hunyuan_v1_*
// classes, or that of Tencent's original configs (model_type "hunyuan").
nlohmann::ordered_json hunyuan_config_json(const CheckpointSpec& s) {
  const bool tencent = s.model_type == "hunyuan", dense = s.model_type == "hunyuan_v1_dense";
  nlohmann::ordered_json j;
  j["architectures"] = {tencent ? "HunYuanForCausalLM" : dense ? "HunYuanDenseV1ForCausalLM" : "HunYuanMoEV1ForCausalLM"};
  j["model_type"] = s.model_type;
  j["dtype"] = "bfloat16";
  j["vocab_size"] = s.vocab_size;
  j["hidden_size"] = s.hidden_size;
  j["intermediate_size"] = s.intermediate_size;
  j["num_hidden_layers"] = s.num_hidden_layers;
  j["num_attention_heads"] = s.num_attention_heads;
  j["num_key_value_heads"] = s.num_key_value_heads;
  if (!tencent) j["head_dim"] = s.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = 32768;
  j["rms_norm_eps"] = s.rms_norm_eps;
  nlohmann::ordered_json rope = s.rope_alpha > 0
      ? nlohmann::ordered_json{{"rope_type", "dynamic"}, {"alpha", s.rope_alpha}, {"factor", 1.0}}
      : nlohmann::ordered_json{{"rope_type", "default"}};
  if (tencent) {
    j["rope_theta"] = s.rope_theta;
    if (s.rope_alpha > 0) j["rope_scaling"] = {{"type", "dynamic"}, {"alpha", s.rope_alpha}, {"factor", 1.0}};
    else j["rope_scaling"] = nullptr;
  } else {
    rope["rope_theta"] = s.rope_theta;
    j["rope_parameters"] = rope;
  }
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["use_qk_norm"] = true;
  if (tencent) {
    j["use_cla"] = s.cla_share_factor > 1;
    j["cla_share_factor"] = std::max<int64_t>(s.cla_share_factor, 1);
  }
  if (!dense) {
    j["num_experts"] = s.num_experts;
    j["moe_topk"] = s.num_experts_per_tok;
    if (tencent) {
      j["use_mixed_mlp_moe"] = true;
      j["num_shared_expert"] = s.num_shared_experts;
    }
  }
  j["tie_word_embeddings"] = s.tie_word_embeddings;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  j["pad_token_id"] = 0;
  j["use_cache"] = true;
  return j;
}

}  // namespace

nlohmann::ordered_json checkpoint_config_json(const CheckpointSpec& s) {
  if (s.model_type != "hy_v3") return hunyuan_config_json(s);
  nlohmann::ordered_json j;
  j["architectures"] = {"HYV3ForCausalLM"};
  j["model_type"] = "hy_v3";
  j["dtype"] = "bfloat16";
  j["vocab_size"] = s.vocab_size;
  j["hidden_size"] = s.hidden_size;
  j["intermediate_size"] = s.intermediate_size;
  j["moe_intermediate_size"] = s.moe_intermediate_size;
  j["expert_hidden_dim"] = s.moe_intermediate_size;
  j["num_hidden_layers"] = s.num_hidden_layers;
  j["num_attention_heads"] = s.num_attention_heads;
  j["num_key_value_heads"] = s.num_key_value_heads;
  j["head_dim"] = s.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = 262144;
  j["rms_norm_eps"] = s.rms_norm_eps;
  j["rope_parameters"] = {{"rope_theta", s.rope_theta}, {"rope_type", "default"}};
  j["qk_norm"] = true;
  j["attention_bias"] = false;
  j["num_experts"] = s.num_experts;
  j["num_experts_per_tok"] = s.num_experts_per_tok;
  j["num_shared_experts"] = s.num_shared_experts;
  j["first_k_dense_replace"] = s.first_k_dense_replace;
  j["moe_router_use_sigmoid"] = true;
  j["moe_router_enable_expert_bias"] = true;
  j["route_norm"] = true;
  j["router_scaling_factor"] = s.router_scaling_factor;
  j["enable_moe_fp32_combine"] = false;
  j["enable_lm_head_fp32"] = true;
  j["enable_attention_fp32_softmax"] = false;
  j["tie_word_embeddings"] = false;
  j["num_nextn_predict_layers"] = s.mtp_layers;
  j["use_cache"] = true;
  // The quantization_config of the real checkpoints, key for key: AngelSlim's per-tensor writer
  // (tools/fp8_quant_with_vllm_activation.py) and DeepSeek-V3's block-wise config.
  if (s.quant == QuantKind::Fp8PerTensor)
    j["quantization_config"] = {{"activation_scheme", "static"},
                                {"ignored_layers", {"lm_head", "model.embed_tokens"}},
                                {"quant_method", "fp8"}};
  else if (s.quant == QuantKind::Fp8Block)
    j["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {s.fp8_block_rows, s.fp8_block_cols}}};
  return j;
}

namespace {

struct Pending {
  RawTensor t;
  int shard;
};

RawTensor random_bf16(Rng& rng, const std::string& name, std::vector<int64_t> shape, double mean, double stddev) {
  const int64_t n = numel_of(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = mean + stddev * rng.normal();
  return {name, DType::BF16, std::move(shape), encode_values(v.data(), n, DType::BF16)};
}

RawTensor random_f32(Rng& rng, const std::string& name, std::vector<int64_t> shape, double stddev) {
  const int64_t n = numel_of(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = stddev * rng.normal();
  return {name, DType::F32, std::move(shape), encode_values(v.data(), n, DType::F32)};
}

// One scale per block of `w` [O, I] (the whole tensor when b0 = O and b1 = I): fp32(amax / 448),
// or 1 for an all-zero block (a scale must be positive). Returned row-major over the block grid.
std::vector<double> fp8_scales(const std::vector<double>& w, int64_t O, int64_t I, int64_t b0, int64_t b1) {
  const int64_t gr = (O + b0 - 1) / b0, gc = (I + b1 - 1) / b1;
  std::vector<double> amax(static_cast<size_t>(gr * gc), 0.0);
  for (int64_t r = 0; r < O; ++r)
    for (int64_t c = 0; c < I; ++c) {
      double& m = amax[size_t((r / b0) * gc + c / b1)];
      m = std::max(m, std::fabs(w[size_t(r * I + c)]));
    }
  for (double& m : amax) m = m > 0 ? double(float(m / 448.0)) : 1.0;
  return amax;
}

// The FP8 form of a BF16 linear weight `t` [O, I]: the E4M3 weight and its F32 scale tensor
// (`<name>_scale` [1] per tensor, `<name>_scale_inv` [⌈O/b0⌉, ⌈I/b1⌉] per block).
std::pair<RawTensor, RawTensor> quantize_fp8(const RawTensor& t, const CheckpointSpec& s) {
  const int64_t O = t.shape.at(0), I = t.shape.at(1);
  std::vector<double> w(static_cast<size_t>(O * I));
  for (size_t i = 0; i < w.size(); ++i) w[i] = element_as_double(t.bytes.data(), DType::BF16, int64_t(i));
  const bool block = s.quant == QuantKind::Fp8Block;
  const int64_t b0 = block ? s.fp8_block_rows : O, b1 = block ? s.fp8_block_cols : I;
  const std::vector<double> sc = fp8_scales(w, O, I, b0, b1);
  const int64_t gc = (I + b1 - 1) / b1;
  RawTensor q{t.name, DType::F8_E4M3, t.shape, std::vector<uint8_t>(w.size())};
  for (int64_t r = 0; r < O; ++r)
    for (int64_t c = 0; c < I; ++c)
      q.bytes[size_t(r * I + c)] = quantize_e4m3(w[size_t(r * I + c)], sc[size_t((r / b0) * gc + c / b1)]);
  std::vector<int64_t> scale_shape = block ? std::vector<int64_t>{(O + b0 - 1) / b0, gc} : std::vector<int64_t>{1};
  RawTensor scale{t.name + (block ? kWeightScaleInvSuffix : kWeightScaleSuffix), DType::F32, std::move(scale_shape),
                  encode_values(sc.data(), int64_t(sc.size()), DType::F32)};
  return {std::move(q), std::move(scale)};
}

// Rows of BF16 tensors stacked into one tensor `name` (fused layouts), in the order given.
RawTensor stack_rows(const std::string& name, const std::vector<const RawTensor*>& parts) {
  RawTensor out{name, DType::BF16, {0, parts.at(0)->shape.at(1)}, {}};
  for (const RawTensor* p : parts) {
    out.shape[0] += p->shape[0];
    out.bytes.insert(out.bytes.end(), p->bytes.begin(), p->bytes.end());
  }
  return out;
}

// The layers of a Hunyuan v1 checkpoint (docs/hunyuan_v1.md). The random values are drawn in the
// same order whatever the layout, so the fused and separate checkpoints of one seed hold the
// same weights.
template <class Add>
void write_hunyuan_layers(const CheckpointSpec& s, Rng& rng, const Add& add) {
  const int64_t H = s.hidden_size, d = s.head_dim, nkv = s.num_key_value_heads, g = s.num_attention_heads / nkv;
  const int64_t A = s.num_attention_heads * d, Kv = nkv * d, I = s.intermediate_size;
  const bool tencent = s.model_type == "hunyuan", dense = s.model_type == "hunyuan_v1_dense" ||
                                                          (tencent && s.num_experts <= 1);
  const bool fused = tencent && s.fused;
  const int64_t f = tencent ? std::max<int64_t>(s.cla_share_factor, 1) : 1;
  auto w = [&](const std::string& name, int64_t out, int64_t in) {
    return random_bf16(rng, name, {out, in}, 0.0, s.linear_gain / std::sqrt(double(in)));
  };
  auto mlp = [&](const std::string& p, int64_t width, int64_t L) {
    RawTensor gate = w(p + "gate_proj.weight", width, H), up = w(p + "up_proj.weight", width, H);
    if (fused) add(stack_rows(p + "gate_and_up_proj.weight", {&up, &gate}), L);  // Tencent: [up; gate]
    else add(std::move(gate), L), add(std::move(up), L);
    add(w(p + "down_proj.weight", H, width), L);
  };
  for (int64_t L = 0; L < s.num_hidden_layers; ++L) {
    const std::string p = "model.layers." + std::to_string(L) + ".";
    add(random_bf16(rng, p + "input_layernorm.weight", {H}, 1.0, 0.1), L);
    RawTensor q = w(p + "self_attn.q_proj.weight", A, H);
    if (L % f != 0) {
      add(std::move(q), L);  // a cross layer: its K/V come from layer L − L % f
    } else {
      RawTensor k = w(p + "self_attn.k_proj.weight", Kv, H), v = w(p + "self_attn.v_proj.weight", Kv, H);
      if (fused) {
        // Per KV group m: its g query heads, its key head, its value head ([nkv, g + 2, d, H]).
        RawTensor qkv{p + "self_attn.qkv_proj.weight", DType::BF16, {A + 2 * Kv, H}, {}};
        const size_t head = size_t(d * H * 2);
        for (int64_t m = 0; m < nkv; ++m) {
          auto put = [&](const RawTensor& t, int64_t h0, int64_t n) {
            qkv.bytes.insert(qkv.bytes.end(), t.bytes.begin() + h0 * head, t.bytes.begin() + (h0 + n) * head);
          };
          put(q, m * g, g);
          put(k, m, 1);
          put(v, m, 1);
        }
        add(std::move(qkv), L);
      } else {
        add(std::move(q), L), add(std::move(k), L), add(std::move(v), L);
      }
    }
    add(w(p + "self_attn.o_proj.weight", H, A), L);
    add(random_bf16(rng, p + "self_attn.query_layernorm.weight", {d}, 1.0, 0.1), L);
    add(random_bf16(rng, p + "self_attn.key_layernorm.weight", {d}, 1.0, 0.1), L);
    add(random_bf16(rng, p + "post_attention_layernorm.weight", {H}, 1.0, 0.1), L);
    if (dense) {
      mlp(p + "mlp.", I, L);
      continue;
    }
    add(random_f32(rng, p + "mlp.gate.wg.weight", {s.num_experts, H}, s.router_gain / std::sqrt(double(H))), L);
    mlp(p + "mlp.shared_mlp.", I * (tencent ? s.num_shared_experts : 1), L);
    for (int64_t e = 0; e < s.num_experts; ++e) mlp(p + "mlp.experts." + std::to_string(e) + ".", I, L);
  }
}

}  // namespace

void write_random_checkpoint(const CheckpointSpec& s, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(dir + ": cannot create directory: " + ec.message());
  if (s.model_type != "hy_v3" && s.quant != QuantKind::None)
    fail("fixture: FP8 Hunyuan v1 fixtures are not written (FP8 fixtures are hy_v3 only)");
  Rng rng(s.seed);
  const int64_t H = s.hidden_size, A = s.num_attention_heads * s.head_dim, Kv = s.num_key_value_heads * s.head_dim;
  const int K = std::max(1, s.shards);
  std::vector<Pending> all;
  auto add = [&](RawTensor t, int64_t layer) {
    const int shard = layer < 0 ? (t.name == "lm_head.weight" ? K - 1 : 0) : int(layer % K);
    all.push_back({std::move(t), shard});
  };
  auto linear = [&](const std::string& name, int64_t out, int64_t in, int64_t layer) {
    RawTensor t = random_bf16(rng, name, {out, in}, 0.0, s.linear_gain / std::sqrt(double(in)));
    const bool eh = name.size() >= 14 && name.compare(name.size() - 14, 14, "eh_proj.weight") == 0;
    if (s.quant == QuantKind::None || !may_be_fp8(name) || eh) return add(std::move(t), layer);
    auto [q, scale] = quantize_fp8(t, s);
    add(std::move(q), layer);
    add(std::move(scale), layer);
    if (s.quant == QuantKind::Fp8PerTensor) {
      const double in_scale = double(float(s.fp8_input_scale));
      add({input_scale_of(name), DType::F32, {1}, encode_values(&in_scale, 1, DType::F32)}, layer);
    }
  };
  auto norm = [&](const std::string& name, int64_t n, int64_t layer) { add(random_bf16(rng, name, {n}, 1.0, 0.1), layer); };

  add(random_bf16(rng, "model.embed_tokens.weight", {s.vocab_size, H}, 0.0, 1.0), -1);
  if (s.model_type != "hy_v3") {
    write_hunyuan_layers(s, rng, add);
  } else {
  const int64_t total_layers = s.num_hidden_layers + s.mtp_layers;
  for (int64_t L = 0; L < total_layers; ++L) {
    const std::string p = "model.layers." + std::to_string(L) + ".";
    if (L >= s.num_hidden_layers) {  // MTP-style extra layer: present on disk, never used
      linear(p + "eh_proj.weight", H, 2 * H, L);
      norm(p + "enorm.weight", H, L);
      norm(p + "hnorm.weight", H, L);
    }
    norm(p + "input_layernorm.weight", H, L);
    linear(p + "self_attn.q_proj.weight", A, H, L);
    linear(p + "self_attn.k_proj.weight", Kv, H, L);
    linear(p + "self_attn.v_proj.weight", Kv, H, L);
    linear(p + "self_attn.o_proj.weight", H, A, L);
    norm(p + "self_attn.q_norm.weight", s.head_dim, L);
    norm(p + "self_attn.k_norm.weight", s.head_dim, L);
    norm(p + "post_attention_layernorm.weight", H, L);
    if (L < s.first_k_dense_replace) {
      linear(p + "mlp.gate_proj.weight", s.intermediate_size, H, L);
      linear(p + "mlp.up_proj.weight", s.intermediate_size, H, L);
      linear(p + "mlp.down_proj.weight", H, s.intermediate_size, L);
      continue;
    }
    add(random_bf16(rng, p + "mlp.router.gate.weight", {s.num_experts, H}, 0.0, s.router_gain / std::sqrt(double(H))), L);
    add(random_f32(rng, p + "mlp.expert_bias", {s.num_experts}, s.bias_scale), L);
    const int64_t I = s.moe_intermediate_size, Is = I * s.num_shared_experts;
    if (Is > 0) {
      linear(p + "mlp.shared_mlp.gate_proj.weight", Is, H, L);
      linear(p + "mlp.shared_mlp.up_proj.weight", Is, H, L);
      linear(p + "mlp.shared_mlp.down_proj.weight", H, Is, L);
    }
    for (int64_t e = 0; e < s.num_experts; ++e) {
      const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
      linear(q + "gate_proj.weight", I, H, L);
      linear(q + "up_proj.weight", I, H, L);
      linear(q + "down_proj.weight", H, I, L);
    }
  }
  }
  norm("model.norm.weight", H, -1);
  if (!(s.model_type != "hy_v3" && s.tie_word_embeddings)) linear("lm_head.weight", s.vocab_size, H, -1);

  write_output_file(dir + "/config.json", checkpoint_config_json(s).dump(2) + "\n");
  if (K == 1) {
    std::vector<RawTensor> ts;
    for (auto& p : all) ts.push_back(std::move(p.t));
    write_safetensors(dir + "/model.safetensors", ts, {{"format", "pt"}});
    return;
  }
  nlohmann::ordered_json index;
  uint64_t total = 0;
  for (const auto& p : all) total += p.t.bytes.size();
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = nlohmann::ordered_json::object();
  for (int k = 0; k < K; ++k) {
    char fname[64];
    std::snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", k + 1, K);
    std::vector<RawTensor> ts;
    for (auto& p : all)
      if (p.shard == k) {
        index["weight_map"][p.t.name] = fname;
        ts.push_back(p.t);
      }
    write_safetensors(dir + "/" + fname, ts, {{"format", "pt"}});
  }
  write_output_file(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace hyoracle
