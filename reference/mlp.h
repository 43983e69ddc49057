// mlp.h: the SwiGLU MLP (docs/model.md §4.5): dense layer 0, the shared expert and each
// routed expert all have this form.
//
//   MLP(u) = ( SiLU(u·W_gateᵀ) ⊙ (u·W_upᵀ) ) · W_downᵀ,    SiLU(z) = z / (1 + e^(−z))
// Shapes: u [T, H], W_gate and W_up [I, H], W_down [H, I] -> [T, H]. No biases.
// Accumulation: S (double in exact/hf, float in fp32), via linear(). In the W8A8 mode each
// product's input is first quantized to FP8 with that weight's static input scale.
#pragma once
#include <cmath>

#include "util/tensor.h"

namespace hyoracle {

template <class S>
struct MlpWeights {
  Tensor<S> gate, up, down;
  double gate_in = 0, up_in = 0, down_in = 0;  // static FP8 input scales (0: none)
};

// `fp8_activations`: quantize each product's input with its input scale (fp8_activation.h).
template <class S>
Tensor<S> swiglu_mlp(const Tensor<S>& u, const MlpWeights<S>& w, int threads, bool fp8_activations = false);

// SiLU(z) = z·σ(z), computed as z / (1 + exp(−z)) in S.
template <class S>
inline S silu(S z) { return z / (S(1) + std::exp(-z)); }

}  // namespace hyoracle
