// random_checkpoint.h: seeded random-weight checkpoints in the original HF layout: hy_v3
// (docs/model.md §3.1: config.json with the real field set, BF16 weights, F32 expert_bias,
// per-expert tensor names) or the Hunyuan v1 family (docs/hunyuan_v1.md: transformers'
// hunyuan_v1_moe / hunyuan_v1_dense configs, or Tencent's "hunyuan" config with cross-layer
// attention, F32 router `mlp.gate.wg`, optionally Tencent's fused qkv_proj / gate_and_up_proj),
// optionally sharded with model.safetensors.index.json.
//
// Deterministic to the byte on any machine: the generator is splitmix64 and normal variates are
// Irwin-Hall sums of 12 uniforms on a 2^-32 grid, exact in double (no libm in the path).
// Scales keep activations O(1) through many layers: embeddings N(0,1), linear weights
// N(0, gain²/fan_in), norm weights 1 + 0.1·N(0,1), router N(0, router_gain²/H), bias 0.05·N(0,1)
// kept in F32 (values that bf16 cannot hold, so a loader that rounds the bias is caught).
//
// With `quant` set the linear weights (q/k/v/o and every gate/up/down `*_proj.weight`, not the
// MTP eh_proj, embeddings, router or lm_head) are written as FP8 E4M3 quantized from those same
// BF16 values (the generator draws the same numbers, so the BF16 checkpoint of the seed holds the
// unquantized weights): scale s = fp32(amax / 448) per tensor or per weight_block_size block,
// q = E4M3(w / s) rounded to nearest even and saturated at ±448, and config.json gets the
// quantization_config the real checkpoints carry (docs/fp8.md).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "io/quant.h"

namespace hyoracle {

struct CheckpointSpec {
  // "hy_v3", or a Hunyuan v1 model_type: "hunyuan_v1_moe", "hunyuan_v1_dense" (transformers'
  // semantics) or "hunyuan" (Tencent's). Hunyuan v1 routed experts and the shared MLP have width
  // intermediate_size (× num_shared_experts for "hunyuan"); moe_intermediate_size is unused.
  std::string model_type = "hy_v3";
  int64_t cla_share_factor = 1;   // "hunyuan": > 1 writes use_cla (cross layers store q_proj only)
  double rope_alpha = 0;          // Hunyuan v1: NTK-alpha RoPE (rope type "dynamic"); 0: plain
  bool tie_word_embeddings = false;  // Hunyuan v1: no lm_head.weight is written when true
  bool fused = false;             // "hunyuan": Tencent's fused qkv_proj and gate_and_up_proj layout
  int64_t vocab_size = 256;
  int64_t hidden_size = 64;
  int64_t intermediate_size = 96;
  int64_t moe_intermediate_size = 24;
  int64_t num_hidden_layers = 3;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 2;
  int64_t head_dim = 32;
  int64_t num_experts = 8;
  int64_t num_experts_per_tok = 3;
  int64_t num_shared_experts = 1;
  int64_t first_k_dense_replace = 1;
  double rope_theta = 11158840.0;
  double rms_norm_eps = 1e-5;
  double router_scaling_factor = 2.826;
  uint64_t seed = 1;
  int shards = 1;              // > 1: model-0000i-of-0000K.safetensors + index
  int64_t mtp_layers = 0;      // extra layers at index >= num_hidden_layers (ignored by loaders)
  double linear_gain = 1.0;
  double router_gain = 3.0;
  double bias_scale = 0.05;
  // FP8 linear weights: None (BF16), Fp8PerTensor (`weight_scale` [1] and, the scheme being
  // static, `input_scale` [1] = fp8_input_scale, as Tencent's Hy3-FP8) or Fp8Block
  // (`weight_scale_inv` [⌈O/b0⌉, ⌈I/b1⌉], activation_scheme dynamic, as DeepSeek-V3).
  QuantKind quant = QuantKind::None;
  int64_t fp8_block_rows = 128, fp8_block_cols = 128;
  // A stand-in static activation scale (no calibration is run): 8 / 448, the scale of inputs
  // whose largest magnitude is 8.
  double fp8_input_scale = 8.0 / 448.0;
};

// The config.json content for `s` (model_type hy_v3, every semantic field explicit).
nlohmann::ordered_json checkpoint_config_json(const CheckpointSpec& s);

// Writes config.json and the safetensors file(s) into dir (created if needed).
void write_random_checkpoint(const CheckpointSpec& s, const std::string& dir);

// Deterministic generator: splitmix64 with exact Irwin-Hall normals.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();  // [0, 1) on a 2^-32 grid
  double normal();   // mean 0, variance 1 (Irwin-Hall, 12 terms)
 private:
  uint64_t state_;
};

}  // namespace hyoracle
