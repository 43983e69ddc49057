// decoder_layer.h: one pre-norm hy_v3 decoder layer on the GPU (docs/model.md §4.4, §4.9).
//
//   a     = RMSNorm(x; input_layernorm)                         x [T, H]
//   q,k,v = a·W_qᵀ, a·W_kᵀ, a·W_vᵀ, split head-major            [T, nq, d], [T, nkv, d]
//   q,k   = RMSNorm per head (q_norm, k_norm; d wide), BEFORE RoPE
//   q,k   = RoPE_neox(q, k; θ, positions)                       k (normed, rotated), v -> cache
//   h     = T(x + T(attention(q, cache.k, cache.v) · W_oᵀ))
//   f     = RMSNorm(h; post_attention_layernorm)
//   out   = T(h + (dense layer ? SwiGLU(f) : MoE(f)))
// Every intermediate is stored in T; accumulation fp32 (see each layer's header). T = double (the
// fp64 path): every step in double with no intermediate rounding, the reference's exact mode
// operation for operation (summation orders differ); the large matrices held as bf16 (weight_t)
// and expanded to double per product; the norm weights held in double.
#pragma once
#include "io/config.h"
#include "cuda/moe.h"
#include "io/sink.h"

namespace hyoracle::cuda {

template <class T>
struct LayerWeights {
  DeviceTensor<T> input_norm, q_norm, k_norm, post_norm;
  DeviceTensor<weight_t<T>> wq, wk, wv, wo;
  bool dense = true;
  MlpWeights<T> mlp;                          // dense layers
  DeviceTensor<float> router, expert_bias;    // MoE layers: [E, H] (exact bf16 values), [E]
  MlpWeights<T> shared;                       // MoE layers
  ExpertWeights<T> experts;                   // MoE layers
};

// One layer's KV cache: rows [0, length) of k and v [capacity, nkv, d]; row j is position j.
template <class T>
struct LayerCache {
  DeviceTensor<T> k, v;
  int64_t length = 0;
};

// Runs layer L on x [T, H] at positions (device, [T]; positions = cache.length + 0..T-1),
// appending this step's k and v to `cache` (cache.length grows by T).
template <class T>
DeviceTensor<T> decoder_layer(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                              const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, const Recorder& rec);

// The same layer with nothing read on the host: k and v of row t go to cache row positions[t]
// (device), attention reads cache rows [0, key_bound) masked by position (key j visible to query t
// iff j <= positions[t]); cache.length is left to the caller. A captured decode step (model.h)
// passes key_bound = capacity, so one graph serves every position. Rows past the positions
// written so far are never read (attention skips keys past the largest position).
template <class T>
DeviceTensor<T> decoder_layer_at(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                                 const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, int64_t key_bound,
                                 const Recorder& rec);

}  // namespace hyoracle::cuda
