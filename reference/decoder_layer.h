// decoder_layer.h: one pre-norm hy_v3 decoder layer (docs/model.md §4.4, §4.9).
//
//   a     = RMSNorm(x; input_layernorm)                         x [T, H]
//   q,k,v = a·W_qᵀ, a·W_kᵀ, a·W_vᵀ, split head-major            [T, nq, d], [T, nkv, d]
//   q,k   = RMSNorm per head (q_norm, k_norm; d wide), BEFORE RoPE
//   q,k   = RoPE_neox(q, k; θ, positions)                       k (normed, rotated), v -> cache
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
  Tensor<S> input_norm, wq, wk, wv, wo, q_norm, k_norm, post_norm;
  bool dense = true;
  MlpWeights<S> mlp;                 // dense layers
  Tensor<S> router, expert_bias;     // MoE layers: [E, H], [E]
  MlpWeights<S> shared;              // MoE layers, width I_e · num_shared_experts
  ExpertStore<S> experts;            // MoE layers
};

// One layer's KV cache: normalised, rotated keys and raw values, [Tc, nkv, d], with positions.
template <class S>
struct LayerCache {
  Tensor<S> k, v;
  std::vector<int64_t> positions;
};

// The attention half: h = x + attention(RMSNorm(x)) · W_oᵀ (records input_norm .. resid_mid).
template <class S>
Tensor<S> attention_block(const Tensor<S>& x, int64_t layer, const LayerWeights<S>& w, const ModelConfig& c,
                          const std::vector<int64_t>& positions, LayerCache<S>& cache, const Numerics& num,
                          const Recorder& rec);

// The FFN half: out = h + FFN(RMSNorm(h)), FFN dense or MoE (records post_norm .. out).
template <class S>
Tensor<S> ffn_block(const Tensor<S>& h, int64_t layer, const LayerWeights<S>& w, const ModelConfig& c,
                    const Numerics& num, const Recorder& rec);

// Runs layer `layer` on x [T, H] at `positions` [T], appending this step's k and v to `cache`.
template <class S>
Tensor<S> decoder_layer(const Tensor<S>& x, int64_t layer, const LayerWeights<S>& w, const ModelConfig& c,
                        const std::vector<int64_t>& positions, LayerCache<S>& cache, const Numerics& num,
                        const Recorder& rec);

// Appends rows [T, n, d] to a cache tensor [Tc, n, d].
template <class S>
void append_rows(Tensor<S>& cache, const Tensor<S>& rows);

}  // namespace hyoracle
