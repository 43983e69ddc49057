// moe.h: routed experts as a grouped GEMM over token-sorted experts, the shared expert and the
// MoE block on the GPU (docs/model.md §4.7-4.8).
//
//   sort:    the T·k (token, slot) pairs are counted per expert and scattered into expert order
//            (rows of one expert are contiguous; order inside an expert does not matter: every
//            row's arithmetic is independent of its position, grouped_gemm.h). One block.
//   gate_up + act: A[r, :] = swiglu(u[token(r), :] · W_gate_up[e(r)]ᵀ)    one grouped GEMM with
//            the SwiGLU epilogue (grouped_gemm.h; gate/up outputs, SiLU and product each rounded
//            to T as in R10), [T·k, I]
//   down:    Y[r, :] = A[r, :] · W_down[e(r)]ᵀ                     grouped GEMM, [T·k, H]
//   routed:  routed[t] = T( Σ_j w[t, j] · Y[row(t, j)] )  fp32 sum over the k slots taken in
//            ascending expert index (HF's loop order; HF rounds to bf16 after every add, R12,
//            here the sum is rounded once)
//   shared:  SwiGLU of width I_e · num_shared_experts, no gate, no 2.826. When that width is I_e
//            (one shared expert: Hy3 and Hy-MT2) it runs as one more group of the same two grouped
//            GEMMs, over all T tokens (rows T·k .. T·k+T−1); otherwise through mlp.h.
//   MoE(u) = T(routed + shared)                                    (R13), in the combine kernel
// Router: router.h, sigmoid + bias (hy_v3) or softmax (Hunyuan v1) by `kind` (T <= 16 tokens use its own fp32 logits kernel, more use cuBLAS).
// Decode (T <= 16, shared expert folded): 4 launches: route_and_sort (router.h: logits, top-k and
// the sort in one kernel), gate_up+SwiGLU GEMV, down GEMV, combine. Larger T: route (convert,
// cuBLAS logits, top-k), sort (three chunked launches past 8192 slots), the two tensor-core grouped
// GEMMs (wgmma on compute capability 9.0), combine.
// No host synchronisation anywhere: the block can be captured in a CUDA graph.
// T = double (the fp64 path, the reference's exact mode): the same steps in double with nothing
// rounded: router in double (router.h), experts and shared expert held as bf16 (weight_t) and run
// as per-group DGEMMs on their expanded weights (grouped_gemm.h's fp64 overload: it reads the
// layout back to the host, so this block synchronises once and is not graph-capturable),
// routed[t] = Σ_j w[t, j] · Y[row(t, j)] in double in ascending expert index (the reference's
// order), out = routed + shared.
#pragma once
#include "cuda/matmul.h"
#include "cuda/mlp.h"
#include "cuda/router.h"

namespace hyoracle::cuda {

template <class T>
struct ExpertWeights {
  DeviceTensor<weight_t<T>> gate_up;  // [E, 2I, H], per expert gate rows first
  DeviceTensor<weight_t<T>> down;     // [E, H, I]
  int64_t count() const { return gate_up.empty() ? 0 : gate_up.dim(0); }
};

// Token-sorted order of the router's choices.
struct ExpertSort {
  GroupLayout layout;
  DeviceTensor<int32_t> token;     // [T·k + extra] token of sorted row r
  DeviceTensor<int32_t> row_of;    // [T·k] sorted row of (t, j)
};
// extra_rows > 0 adds group E with rows T·k .. T·k + extra_rows − 1, token(T·k + t) = t (the
// shared expert over all tokens); layout.groups is then E + 1.
template <class A>
ExpertSort sort_by_expert(const RouterOutputOf<A>& r, int64_t num_experts, int64_t extra_rows = 0);

template <class T>
void routed_experts(const DeviceTensor<T>& u, const RouterOutputOf<acc_t<T>>& r, const ExpertWeights<T>& experts,
                    DeviceTensor<T>& out);

template <class T>
struct MoeOutput {
  RouterOutputOf<acc_t<T>> router;
  DeviceTensor<T> routed;  // [T, H]
  DeviceTensor<T> shared;  // [T, H]
  DeviceTensor<T> out;     // [T, H]
};

template <class T>
MoeOutput<T> moe_block(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& expert_bias,
                       const ExpertWeights<T>& experts, const MlpWeights<T>& shared, int64_t k, double scaling,
                       bool renormalize, RouterKind kind = RouterKind::sigmoid_bias);

}  // namespace hyoracle::cuda
