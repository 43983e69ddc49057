// numerics.h: precision modes (docs/model.md §8) and the rounding helpers they use.
//
//   exact: every operation in double (S = double), RoPE angles and router included.
//   hf:    double (S = double), except where HF transformers computes in fp32 even for a wider
//          model: RoPE inv_freq / angles / cos / sin, router logits and sigmoid and weights,
//          RMSNorm internals, attention softmax.
//   fp32:  everything in float (S = float), like HF transformers run in float32.
#pragma once
#include <string>

#include "util/error.h"

namespace hyoracle {

enum class Precision { exact, hf, fp32 };

inline std::string precision_name(Precision p) {
  return p == Precision::exact ? "exact" : p == Precision::hf ? "hf" : "fp32";
}
inline Precision parse_precision(const std::string& s) {
  if (s == "exact") return Precision::exact;
  if (s == "hf") return Precision::hf;
  if (s == "fp32") return Precision::fp32;
  fail("--precision: \"" + s + "\" is not one of exact, hf, fp32");
}

struct Numerics {
  Precision precision = Precision::exact;
  int threads = 1;  // results are bit-identical for every value (see parallel.h)
  // W8A8: quantize the input of every linear layer that has a static FP8 input scale
  // (reference/fp8_activation.h); off: the model as stored (dequantized weights, exact inputs).
  bool fp8_activations = false;
  // True where HF's hard-coded fp32 steps apply (hf and fp32 modes).
  bool fp32_steps() const { return precision != Precision::exact; }
};

// x rounded to the nearest float, returned in the same type.
template <class S>
inline S round_f32(S x) { return S(float(x)); }

// The tie-break rule of every top-k in hyoracle (router, greedy argmax): the larger value wins;
// among exactly equal values the lower index wins.
inline constexpr const char* kTieBreakRule = "larger score first; exact ties to the lower index";

}  // namespace hyoracle
