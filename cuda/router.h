// router.h: the MoE routers on the GPU: hy_v3's sigmoid router with selection bias (docs/model.md
// §4.6, R11: fp32 throughout) and the Hunyuan v1 softmax router (docs/hunyuan_v1.md), as
// reference/router.h.
//
// RouterKind::sigmoid_bias:
//   logits[t, e] = fp32(u[t, :]) · W_r[e, :]              u [T, H] (T), W_r [E, H] fp32 (exact bf16
//                                                         values), plain fp32 FMA (no TF32): cuBLAS
//                                                         pedantic for T > 16, an own kernel for
//                                                         T <= 16 (decode: one launch; a different
//                                                         but fixed summation order)
//   s[t, e]      = 1 / (1 + e^(−logit))                   fp32
//   c[t, e]      = s[t, e] + b[e]                         b = expert_bias (F32), selection only
//   K[t]         = the k experts with the largest c, exact ties to the LOWER index, by c desc
//   w[t, j]      = fp32(s[t, K_j] / fp32(Σ_j' s[t, K_j'] + 1e-20)) · scaling   (sum in rank order)
//   margin[t]    = c[t, K_k] − (k+1)-th largest c  (+inf when k == E)
// RouterKind::softmax (no bias: `expert_bias` is not read):
//   logits       as above (fp32 from the F32 gate; double on the fp64 path)
//   m            = max_e logits[t, e]                     one warp per token (butterfly)
//   s[t, e]      = x_e / Σ_e' x_e',  x_e = exp(logits[t, e] − m)   in A; Σ added in ascending e
//                                                         (the reference's order), by one lane
//   K[t]         = the k largest s, exact ties to the LOWER index, by s desc
//   w[t, j]      = (renormalize ? s[t, K_j] / Σ_j' s[t, K_j'] : s[t, K_j]) · scaling   (no 1e-20;
//                  renormalize false with k = 1 is Tencent's p_max weight)
//   margin[t]    = s[t, K_k] − (k+1)-th largest s
// T = double (the fp64 path): the reference's exact mode: logits = u · double(W_r)ᵀ by DGEMM,
// s = 1 / (1 + e^(−logit)), c = s + b, w = (s / (Σ s + 1e-20)) · scaling, margin, all in double
// (the router's outputs are then double: RouterOutputOf<double>).
// One warp per token for the selection. A NaN score (from a NaN router input) is ranked below
// every real one, lower index first: the ids stay inside [0, E) and the NaN shows in the weights
// and the block's output instead of becoming an out-of-range expert id.
#pragma once
#include "cuda/device.h"
#include "io/family.h"

namespace hyoracle::cuda {

// A = acc_t<T>: float, or double on the fp64 path.
template <class A>
struct RouterOutputOf {
  DeviceTensor<A> logits;       // [T, E]
  DeviceTensor<A> scores;       // [T, E]
  DeviceTensor<int32_t> ids;    // [T, k]
  DeviceTensor<A> weights;      // [T, k]
  DeviceTensor<A> margin;       // [T]
  int64_t k = 0;
};
using RouterOutput = RouterOutputOf<float>;

template <class T>
RouterOutputOf<acc_t<T>> route(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& expert_bias,
                   int64_t k, double scaling, bool renormalize, RouterKind kind = RouterKind::sigmoid_bias);

// Decode (1 <= T <= kRouteSortMaxT): route() and the experts' token sort (expert_sort.cuh; moe.h's
// sort_by_expert) in one launch: one block per expert computes its logits (the small-T kernel
// above, same sums), the last block to finish selects the top-k of every token and writes the sort
// into `sort` (buffers allocated by moe.cu). Same results as route() followed by sort_by_expert.
// The "last block" ticket is one device counter, so calls must not run concurrently: every launch
// of this path is on the one stream of gpu() (also inside a captured graph, which runs in order).
struct SortTargets;
constexpr int64_t kRouteSortMaxT = 16;
template <class T>
RouterOutput route_and_sort(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& expert_bias,
                            int64_t k, double scaling, bool renormalize, const SortTargets& sort,
                            RouterKind kind = RouterKind::sigmoid_bias);

// The selection step alone, on given logits [T, E] (fp32, or double for the fp64 path; tests feed
// it exact ties).
template <class A>
RouterOutputOf<A> route_from_logits(const DeviceTensor<A>& logits, const DeviceTensor<float>& expert_bias, int64_t k,
                                    double scaling, bool renormalize, RouterKind kind = RouterKind::sigmoid_bias);

}  // namespace hyoracle::cuda
