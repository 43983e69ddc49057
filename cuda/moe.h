// moe.h: routed experts as a grouped GEMM over token-sorted experts, the shared expert and the
// MoE block on the GPU (MODEL_SPEC.md §4.7-4.8).
//
//   sort:    the T·k (token, slot) pairs are counted per expert and scattered into expert order
//            (rows of one expert are contiguous; order inside an expert does not matter)
//   gate_up: G[r, :] = u[token(r), :] · W_gate_up[e(r)]ᵀ          grouped GEMM, [T·k, 2I]
//   act:     A = swiglu(G)                                         [T·k, I]
//   down:    Y[r, :] = A[r, :] · W_down[e(r)]ᵀ                     grouped GEMM, [T·k, H]
//   routed:  routed[t] = T( Σ_j w[t, j] · Y[row(t, j)] )  fp32 sum over the k slots taken in
//            ascending expert index (HF's loop order; HF rounds to bf16 after every add, R12,
//            here the sum is rounded once)
//   shared:  SwiGLU of width I_e · num_shared_experts (mlp.h), no gate, no 2.826
//   MoE(u) = T(routed + shared)                                    (R13)
// No host synchronisation anywhere: the block can be captured in a CUDA graph.
#pragma once
#include "matmul.h"
#include "mlp.h"
#include "router.h"

namespace hyoracle::cuda {

template <class T>
struct ExpertWeights {
  DeviceTensor<T> gate_up;  // [E, 2I, H], per expert gate rows first
  DeviceTensor<T> down;     // [E, H, I]
  int64_t count() const { return gate_up.empty() ? 0 : gate_up.dim(0); }
};

// Token-sorted order of the router's choices.
struct ExpertSort {
  GroupLayout layout;
  DeviceTensor<int32_t> token;     // [T·k] token of sorted row r
  DeviceTensor<int32_t> row_of;    // [T·k] sorted row of (t, j)
};
ExpertSort sort_by_expert(const RouterOutput& r, int64_t num_experts);

template <class T>
void routed_experts(const DeviceTensor<T>& u, const RouterOutput& r, const ExpertWeights<T>& experts, DeviceTensor<T>& out);

template <class T>
struct MoeOutput {
  RouterOutput router;
  DeviceTensor<T> routed;  // [T, H]
  DeviceTensor<T> shared;  // [T, H]
  DeviceTensor<T> out;     // [T, H]
};

template <class T>
MoeOutput<T> moe_block(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& expert_bias,
                       const ExpertWeights<T>& experts, const MlpWeights<T>& shared, int64_t k, double scaling,
                       bool renormalize);

}  // namespace hyoracle::cuda
