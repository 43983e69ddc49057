// router.h: the MoE routers: hy_v3's sigmoid router with selection bias (HYV3TopKRouter;
// docs/model.md §4.6) and the Hunyuan v1 softmax router (docs/hunyuan_v1.md).
//
// RouterKind::sigmoid_bias:
//   logits[t, e] = u[t, :] · W_r[e, :]                      u [T, H], W_r [E, H]
//   s[t, e]      = σ(logits[t, e]) = 1 / (1 + e^(−logit))
//   c[t, e]      = s[t, e] + b[e]                            b = expert_bias (F32), selection only
//   K[t]         = the k experts with the largest c, ties to the lower index, ordered by c desc
//   w[t, j]      = scaling · s[t, K_j] / (Σ_j' s[t, K_j'] + 1e-20)   (renormalise when route_norm)
//   margin[t]    = c[t, K_k] − (k+1)-th largest c  (+inf when k == E)
// RouterKind::softmax (no bias; `expert_bias` ignored):
//   s[t, :]      = softmax(logits[t, :])                     (the "scores" are probabilities)
//   K[t]         = the k largest s, ties to the lower index
//   w[t, j]      = renormalise ? s[t, K_j] / Σ_j' s[t, K_j'] : s[t, K_j]     (· scaling)
//   margin[t]    = s[t, K_k] − (k+1)-th largest s
// Precision: exact: all in S = double. hf: logits rounded to fp32, σ, c, w computed in fp32
// (HF's `F.linear(u.float(), W.float())` and fp32 routing; the softmax in fp32 as
// `softmax(dtype=float32)`). fp32: all in float.
#pragma once
#include <cstdint>
#include <vector>

#include "io/family.h"
#include "reference/numerics.h"
#include "util/tensor.h"

namespace hyoracle {

template <class S>
struct RouterOutput {
  Tensor<S> logits;             // [T, E]
  Tensor<S> scores;             // [T, E], sigmoid(logits) or softmax(logits)
  std::vector<int64_t> ids;     // [T, k] chosen experts, by descending c
  Tensor<S> weights;            // [T, k], in `ids` order
  Tensor<S> margin;             // [T]
  int64_t k = 0;
};

template <class S>
RouterOutput<S> route(const Tensor<S>& u, const Tensor<S>& w_router, const Tensor<S>& expert_bias, int64_t k,
                      double scaling, bool renormalize, const Numerics& num,
                      RouterKind kind = RouterKind::sigmoid_bias);

// Indices of the k largest values of c[0..n), largest first, exact ties to the lower index.
std::vector<int64_t> top_k_indices(const double* c, int64_t n, int64_t k);

}  // namespace hyoracle
