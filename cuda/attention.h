// attention.h: GQA causal attention over a KV cache on the GPU (MODEL_SPEC.md §4.4, steps 5-9),
// one kernel for prefill and decode.
//
//   S[n, i, j] = (q[i, n, :] · k[j, m, :]) · d^(-1/2),   m = n / g,  g = nq / nkv   (fp32)
//   P[n, i, :] = softmax_j(S[n, i, j]) over keys j with j <= q_pos[i]               (fp32)
//   context[i, n·d + c] = T( Σ_j P[n, i, j] · v[j, m, c] )                          (fp32 sum)
// q [T, nq, d] (after q_norm and RoPE), k and v: the first Tc rows of the cache [cap, nkv, d]
// (row j holds position j), q_pos [T] -> context [T, nq·d], heads concatenated.
// Online (flash-style) softmax; scores and probabilities stay fp32 (not rounded to T as HF's
// eager path does, R5-R6). Long caches are split over blocks (flash-decoding) and the partial
// results merged in fp32. Requires d % 32 == 0, d <= 256 and g <= 32.
#pragma once
#include "device.h"

namespace hyoracle::cuda {
template <class T>
void attention(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
               const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context);
}  // namespace hyoracle::cuda
