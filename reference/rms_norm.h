// rms_norm.h: RMSNorm with LlamaRMSNorm semantics (docs/model.md §4.2).
//
//   y[r, j] = w[j] · u[r, j] / sqrt( (1/n) Σ_i u[r, i]² + eps )      u [R, n], w [n] -> y [R, n]
//
// Used for input_layernorm, post_attention_layernorm, model.norm (n = H) and per head for
// q_norm / k_norm (n = head_dim; pass u viewed as [T·heads, d]).
// Accumulation: Σ u² in double (long double for exact) then the mode's rounding:
//   exact: all in S;  hf/fp32: r = fp32(mean(fp32(u)²)), s = fp32(rsqrt(r + eps)),
//   v = fp32(fp32(u)·s), then y = w·v in S (HF normalises in fp32 and multiplies after).
#pragma once
#include "reference/numerics.h"
#include "util/tensor.h"

namespace hyoracle {
template <class S>
Tensor<S> rms_norm(const Tensor<S>& u, const Tensor<S>& w, double eps, const Numerics& num);
}  // namespace hyoracle
