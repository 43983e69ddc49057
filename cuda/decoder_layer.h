// decoder_layer.h: one pre-norm decoder layer on the GPU of the hy_v3 (docs/model.md §4.4, §4.9)
// or Hunyuan v1 (docs/hunyuan_v1.md) family, as reference/decoder_layer.h.
//
//   a     = RMSNorm(x; input_layernorm)                         x [T, H]
//   q,k,v = a·W_qᵀ, a·W_kᵀ, a·W_vᵀ, split head-major            [T, nq, d], [T, nkv, d]
//           (a cross layer, !c.owns_kv(L), computes q only; its k, v are the raw projections of
//           this step of its KV source layer c.kv_source(L): that cache's step_k, step_v)
//   q,k   = hy_v3:      RoPE_neox(RMSNorm_head(q)), RoPE_neox(RMSNorm_head(k))   norms BEFORE RoPE
//           hunyuan_v1: RMSNorm_head(RoPE_neox(q)), RMSNorm_head(RoPE_neox(k))   norms AFTER
//           (c.qk_norm_after_rope; per-head norms of width d; RoPE at base c.rope_base())
//   k (normed and rotated), v -> this layer's cache (every layer keeps its own, cross layers too)
//   h     = T(x + T(attention(q, cache.k, cache.v) · W_oᵀ))
//   f     = RMSNorm(h; post_attention_layernorm)
//   out   = T(h + (dense layer ? SwiGLU(f) : MoE(f)))      MoE with the router c.router
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
  DeviceTensor<weight_t<T>> wq, wk, wv, wo;   // wk, wv empty in a cross layer
  bool dense = true;
  MlpWeights<T> mlp;                          // dense layers
  DeviceTensor<float> router, expert_bias;    // MoE layers: [E, H] (F32 values), [E] (zeros: softmax router)
  MlpWeights<T> shared;                       // MoE layers
  ExpertWeights<T> experts;                   // MoE layers
};

// One layer's KV cache: rows [0, length) of k and v [capacity, nkv, d]; row j is position j.
// `step_k`, `step_v` are the raw projections of the last step ([T, nkv, d]), kept when cross
// layers read this layer's K/V (c.cla_share_factor > 1).
template <class T>
struct LayerCache {
  DeviceTensor<T> k, v;
  int64_t length = 0;
  DeviceTensor<T> step_k, step_v;
};

// Runs layer L on x [T, H] at positions (device, [T]; positions = cache.length + 0..T-1),
// appending this step's k and v to `cache` (cache.length grows by T). `kv_source` is the cache of
// layer c.kv_source(L) when L is a cross layer (its step_k, step_v of this step are read).
template <class T>
DeviceTensor<T> decoder_layer(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                              const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, const Recorder& rec,
                              const LayerCache<T>* kv_source = nullptr);

// The same layer with nothing read on the host: k and v of row t go to cache row positions[t]
// (device), attention reads cache rows [0, key_bound) masked by position (key j visible to query t
// iff j <= positions[t]); cache.length is left to the caller. A captured decode step (model.h)
// passes key_bound = capacity, so one graph serves every position. Rows past the positions
// written so far are never read (attention skips keys past the largest position).
template <class T>
DeviceTensor<T> decoder_layer_at(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                                 const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, int64_t key_bound,
                                 const Recorder& rec, const LayerCache<T>* kv_source = nullptr);

}  // namespace hyoracle::cuda
