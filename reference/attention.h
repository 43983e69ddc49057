// attention.h: GQA causal attention over a KV cache (docs/model.md §4.4, steps 5-9).
//
//   S[n, i, j] = (q[i, n, :] · k[j, m, :]) · d^(-1/2),   m = n / g,  g = nq / nkv
//   P[n, i, :] = softmax_j(S[n, i, j]) over keys j with pos_k[j] <= pos_q[i] (others -> 0)
//   context[i, n·d + c] = Σ_j P[n, i, j] · v[j, m, c]
// Shapes: q [T, nq, d] (after q_norm and RoPE), k and v [Tc, nkv, d] (the whole cache, this
// step's rows included), q_pos [T], k_pos [Tc] -> context [T, nq·d], heads concatenated.
// Accumulation: S (double in exact/hf, float in fp32), by OpenBLAS GEMMs per head. Softmax: in S for exact; in hf mode the
// scores are rounded to fp32 and the softmax is computed in fp32, as HF's eager path does.
// Heads are independent and run in parallel (deterministic: one head, one task).
#pragma once
#include <vector>

#include "reference/numerics.h"
#include "util/tensor.h"

namespace hyoracle {

template <class S>
Tensor<S> attention(const Tensor<S>& q, const Tensor<S>& k, const Tensor<S>& v, const std::vector<int64_t>& q_pos,
                    const std::vector<int64_t>& k_pos, const Numerics& num);

// softmax over the first n entries of `scores` into `probs` (entries equal to -inf give 0).
// fp32: compute in float from float-rounded scores (HF's softmax(dtype=float32)).
template <class S>
void softmax_row(const S* scores, S* probs, int64_t n, bool fp32);

}  // namespace hyoracle
