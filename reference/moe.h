// moe.h: routed experts, the shared expert and the MoE block (docs/model.md §4.7-4.8; the
// Hunyuan v1 MoE is the same block with the softmax router, docs/hunyuan_v1.md).
//
//   routed(u)[t] = Σ_j w[t, j] · Expert_{K[t, j]}(u[t])      Expert_e = SwiGLU of width I_e
//   shared(u)    = SwiGLU of the config's shared width, always on, no gate, no 2.826
//   MoE(u)       = routed(u) + shared(u)
// Shapes: u [T, H] -> [T, H]. Tokens are grouped per expert (one GEMM per expert on its
// gathered rows) and added into the output in ascending expert index; accumulation in S.
// Experts are expanded to S one at a time unless held resident, so a full-size layer never
// holds more than one expanded expert.
#pragma once
#include <array>
#include <vector>

#include "io/checkpoint.h"
#include "reference/mlp.h"
#include "reference/router.h"

namespace hyoracle {

// The routed experts of one layer: either resident (expanded to S) or references into the
// checkpoint's mmapped shards, expanded on use. References must not outlive the Checkpoint.
template <class S>
struct ExpertStore {
  std::vector<MlpWeights<S>> resident;            // all E, or empty
  std::vector<std::array<WeightRef, 3>> refs;     // gate, up, down per expert
  int64_t count() const { return int64_t(resident.empty() ? refs.size() : resident.size()); }
  // Expert e's weights; `scratch` holds the expansion when not resident.
  const MlpWeights<S>& get(int64_t e, MlpWeights<S>& scratch) const;
};

template <class S>
struct MoeOutput {
  RouterOutput<S> router;
  Tensor<S> routed;  // [T, H]
  Tensor<S> shared;  // [T, H]
  Tensor<S> out;     // [T, H] routed + shared
};

template <class S>
Tensor<S> routed_experts(const Tensor<S>& u, const RouterOutput<S>& r, const ExpertStore<S>& experts, int threads,
                         bool fp8_activations = false);

template <class S>
MoeOutput<S> moe_block(const Tensor<S>& u, const Tensor<S>& w_router, const Tensor<S>& expert_bias,
                       const ExpertStore<S>& experts, const MlpWeights<S>& shared, int64_t k, double scaling,
                       bool renormalize, const Numerics& num, RouterKind kind = RouterKind::sigmoid_bias);

}  // namespace hyoracle
