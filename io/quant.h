// quant.h: FP8 (E4M3FN) checkpoints: the `quantization_config` of config.json, the names and
// shapes of their scale tensors, and exact dequantization into double (docs/fp8.md).
//
// Two layouts are read, the two that public FP8 checkpoints of this model line use:
//
//   per-tensor   quant_method "fp8", no weight_block_size (Tencent's Hy3-FP8, written by
//                AngelSlim): `<m>.weight` F8_E4M3 [O, I], `<m>.weight_scale` F32 [] or [1],
//                and with activation_scheme "static" `<m>.input_scale` F32 [] or [1].
//                w[r, c] = q[r, c] · s.
//   block        quant_method "fp8", weight_block_size [b0, b1] (DeepSeek-V3 style):
//                `<m>.weight` F8_E4M3 [O, I], `<m>.weight_scale_inv` F32 [⌈O/b0⌉, ⌈I/b1⌉].
//                w[r, c] = q[r, c] · s[⌊r/b0⌋, ⌊c/b1⌋] (multiplied despite the "_inv" name).
//
// Every E4M3 value has a 4-bit significand and every F32 scale a 24-bit one, so q · s is exact
// in double: the dequantized weights are the checkpoint's, not an approximation of them.
// Anything else (another quant_method, per-channel scales, E5M2 weights, BF16 scales) is refused
// with one line naming the file and the field or tensor.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "util/tensor.h"

namespace hyoracle {

enum class QuantKind { None, Fp8PerTensor, Fp8Block };

// The validated quantization_config (QuantKind::None when config.json has none).
struct QuantConfig {
  QuantKind kind = QuantKind::None;
  std::string activation_scheme;            // "static" or "dynamic" (recorded; exact mode ignores it)
  int64_t block_rows = 0, block_cols = 0;   // weight_block_size [b0, b1] (Fp8Block only)
  std::vector<std::string> ignored_layers;  // ignored_layers or modules_to_not_convert (recorded)
  bool quantized() const { return kind != QuantKind::None; }
};

// "none", "fp8 per-tensor (activation_scheme static)", "fp8 block 128x128 (...)": for messages.
std::string quant_description(const QuantConfig& q);

// Validates config.json's "quantization_config" object (`v`); `src` names the file. Errors name
// the field and its key (field "quantization_config" key "quant_method" ...) and say what is
// accepted.
QuantConfig parse_quantization_config(const nlohmann::json& v, const std::string& src);

// The suffixes a quantized checkpoint adds next to `<m>.weight`.
inline constexpr const char* kWeightScaleSuffix = "_scale";          // <m>.weight_scale
inline constexpr const char* kWeightScaleInvSuffix = "_scale_inv";   // <m>.weight_scale_inv
// True for `<m>.weight_scale`, `<m>.weight_scale_inv` and `<m>.input_scale`.
bool is_fp8_scale_name(const std::string& name);
// For a scale name, the weight it belongs to (`<m>.weight`); "" otherwise.
std::string scaled_weight_of(const std::string& scale_name);
// `<m>.input_scale` for the weight `<m>.weight`.
std::string input_scale_of(const std::string& weight_name);
// True for names the FP8 checkpoints quantize: linear weights `*_proj.weight` (q/k/v/o, gate/up/
// down of dense, shared and routed MLPs). Embeddings, norms, the router, expert_bias and lm_head
// stay unquantized in every source (docs/fp8.md).
bool may_be_fp8(const std::string& weight_name);

// The scale shape a weight of shape `w` [O, I] needs under `q`: [⌈O/b0⌉, ⌈I/b1⌉] for Fp8Block;
// for Fp8PerTensor either [] or [1] is accepted (scale_shape_ok).
std::vector<int64_t> block_scale_shape(const QuantConfig& q, const std::vector<int64_t>& w);
bool scale_shape_ok(const QuantConfig& q, const std::vector<int64_t>& w, const std::vector<int64_t>& scale);

// Checks a stored scale (weight_scale, weight_scale_inv or input_scale): F32, and every value
// finite and > 0. Error naming the file and tensor otherwise.
void check_scale_values(const SafetensorsFile& f, const TensorInfo& s);

// Dequantizes an F8_E4M3 weight [O, I] with its F32 scale into S. The product q · s is formed in
// double (exact) and then converted to S (one rounding when S is float). block_rows/cols = 0:
// one scale for the whole tensor. Shapes and values must have been checked by the caller.
template <class S>
Tensor<S> dequantize_fp8(const SafetensorsFile& wf, const TensorInfo& w, const SafetensorsFile& sf,
                         const TensorInfo& s, int64_t block_rows, int64_t block_cols);

// Quantization as the writers do it (for fixtures): each value divided by its scale in double,
// rounded to E4M3FN (nearest, ties to even), saturated at ±448.
uint8_t quantize_e4m3(double value, double scale);

}  // namespace hyoracle
