// mlp.h: the SwiGLU MLP (docs/model.md §4.5): dense layer 0, the shared expert and each
// routed expert all have this form.
//
//   MLP(u) = ( SiLU(u·W_gateᵀ) ⊙ (u·W_upᵀ) ) · W_downᵀ,    SiLU(z) = z / (1 + e^(−z))
// Shapes: u [T, H], W_gate and W_up [I, H], W_down [H, I] -> [T, H]. No biases.
// Accumulation: S (double in exact/hf, float in fp32), via linear().
#pragma once
#include <cmath>

#include "util/tensor.h"

namespace hyoracle {

template <class S>
struct MlpWeights {
  Tensor<S> gate, up, down;
};

template <class S>
Tensor<S> swiglu_mlp(const Tensor<S>& u, const MlpWeights<S>& w, int threads);

// SiLU(z) = z·σ(z), computed as z / (1 + exp(−z)) in S.
template <class S>
inline S silu(S z) { return z / (S(1) + std::exp(-z)); }

}  // namespace hyoracle
