// decoder_layer.h: one pre-norm decoder layer of the hy_v3 (docs/model.md §4.4, §4.9) or
// Hunyuan v1 (docs/hunyuan_v1.md) family.
//
//   a     = RMSNorm(x; input_layernorm)                         x [T, H]
//   q,k,v = a·W_qᵀ, a·W_kᵀ, a·W_vᵀ, split head-major            [T, nq, d], [T, nkv, d]
//           (a cross layer of cross-layer attention computes q only and takes k, v = the raw
//           projections of this step from its KV source layer c.kv_source(L))
//   q,k   = hy_v3:      RoPE_neox(RMSNorm_head(q), RMSNorm_head(k))   norms BEFORE RoPE
//           hunyuan_v1: RMSNorm_head(RoPE_neox(q)), RMSNorm_head(RoPE_neox(k))   norms AFTER
//           (per-head norms of width d; RoPE at base c.rope_base(), the positions)
//   k, v  -> this layer's cache (every layer keeps its own, cross layers too)
//   h     = x + attention(q, cache.k, cache.v) · W_oᵀ
//   f     = RMSNorm(h; post_attention_layernorm)
//   out   = h + (dense layer ? SwiGLU(f) : MoE(f))
#pragma once
#include <vector>

#include "io/config.h"
#include "reference/moe.h"
#include "reference/numerics.h"
#include "io/sink.h"
#include "util/tensor.h"

namespace hyoracle {

template <class S>
struct LayerWeights {
  Tensor<S> input_norm, wq, wk, wv, wo, q_norm, k_norm, post_norm;  // wk, wv empty in a cross layer
  double wq_in = 0, wk_in = 0, wv_in = 0, wo_in = 0;  // static FP8 input scales of q/k/v/o (0: none)
  bool dense = true;
  MlpWeights<S> mlp;                 // dense layers
  Tensor<S> router, expert_bias;     // MoE layers: [E, H], [E]
  MlpWeights<S> shared;              // MoE layers, width I_e · num_shared_experts
  ExpertStore<S> experts;            // MoE layers
};

// One layer's KV cache: the keys attention reads (normed and rotated, in the family's order) and
// raw values, [Tc, nkv, d], with positions. `step_k`, `step_v` are the raw projections of the last
// step ([T, nkv, d]), which the cross layers reading this layer's K/V take.
template <class S>
struct LayerCache {
  Tensor<S> k, v;
  std::vector<int64_t> positions;
  Tensor<S> step_k, step_v;
};

// The attention half: h = x + attention(RMSNorm(x)) · W_oᵀ (records input_norm .. resid_mid).
// `kv_source` is the cache of layer c.kv_source(layer) when `layer` is a cross layer (its
// step_k, step_v of this step are read); unused otherwise.
template <class S>
Tensor<S> attention_block(const Tensor<S>& x, int64_t layer, const LayerWeights<S>& w, const ModelConfig& c,
                          const std::vector<int64_t>& positions, LayerCache<S>& cache, const Numerics& num,
                          const Recorder& rec, const LayerCache<S>* kv_source = nullptr);

// The FFN half: out = h + FFN(RMSNorm(h)), FFN dense or MoE (records post_norm .. out).
template <class S>
Tensor<S> ffn_block(const Tensor<S>& h, int64_t layer, const LayerWeights<S>& w, const ModelConfig& c,
                    const Numerics& num, const Recorder& rec);

// Runs layer `layer` on x [T, H] at `positions` [T], appending this step's k and v to `cache`.
template <class S>
Tensor<S> decoder_layer(const Tensor<S>& x, int64_t layer, const LayerWeights<S>& w, const ModelConfig& c,
                        const std::vector<int64_t>& positions, LayerCache<S>& cache, const Numerics& num,
                        const Recorder& rec, const LayerCache<S>* kv_source = nullptr);

// Appends rows [T, n, d] to a cache tensor [Tc, n, d].
template <class S>
void append_rows(Tensor<S>& cache, const Tensor<S>& rows);

}  // namespace hyoracle
