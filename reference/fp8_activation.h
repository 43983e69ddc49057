// fp8_activation.h: static FP8 activation quantization, what a W8A8 engine does at the input of
// each FP8 linear layer of a checkpoint with quantization_config.activation_scheme "static"
// (docs/fp8.md, "Two reference modes").
//
//   x̂[i] = s · E4M3(x[i] / s)       s = the layer's input_scale (F32 [1] in the checkpoint)
// E4M3 rounds to nearest, ties to even, and saturates at ±448 (io/quant.h quantize_e4m3, the
// rule the fixtures' weights were quantized with). Every E4M3 value times an F32 scale is exact in
// double, so x̂ is exact in S = double and rounded once in S = float. Shapes: x [.., K] -> same.
#pragma once
#include "io/quant.h"
#include "reference/matmul.h"
#include "util/tensor.h"

namespace hyoracle {

template <class S>
Tensor<S> quantize_activation_fp8(const Tensor<S>& x, double scale);

// y = x̂·Wᵀ when `quantize` and input_scale > 0 (a layer with an input scale, in the W8A8 mode);
// y = x·Wᵀ otherwise. Accumulation as linear().
template <class S>
Tensor<S> linear_input_quantized(const Tensor<S>& x, const Tensor<S>& w, double input_scale, bool quantize, int threads) {
  if (!quantize || !(input_scale > 0)) return linear(x, w, threads);
  return linear(quantize_activation_fp8(x, input_scale), w, threads);
}

}  // namespace hyoracle
