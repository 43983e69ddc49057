// model.h: the whole hy_v3 model (docs/model.md §4.11): weights, prefill, incremental decode
// with the KV cache, and greedy generation.
//
//   x = Embed(ids);  for L in 0..num_hidden_layers-1: x = decoder_layer(x, L)
//   logits = RMSNorm(x; model.norm) · W_lmᵀ          (untied unless tie_word_embeddings)
// Layers >= num_hidden_layers (the Hy3 MTP layer) are never loaded.
#pragma once
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "reference/decoder_layer.h"

namespace hyoracle {

template <class S>
struct ModelWeights {
  ModelConfig config;
  Tensor<S> embed;       // [V, H]
  Tensor<S> final_norm;  // [H]
  Tensor<S> lm_head;     // [V, H]
  std::vector<LayerWeights<S>> layers;
};

struct LoadOptions {
  bool resident_experts = true;  // expand every expert now (fast decode) or on use (bounded memory)
  int64_t first_layer = 0;       // load layers [first_layer, last_layer); others stay empty
  int64_t last_layer = -1;       // -1: num_hidden_layers
  bool embed_and_head = true;    // load embed_tokens, model.norm, lm_head
};

// On-disk (HF original layout) tensor names, docs/model.md §3.1.
std::string hf_layer_name(int64_t L, const std::string& what);

template <class S>
LayerWeights<S> load_layer(const Checkpoint& ck, int64_t L, bool resident_experts);

template <class S>
ModelWeights<S> load_model(const Checkpoint& ck, const LoadOptions& opt = {});

template <class S>
struct KVCache {
  std::vector<LayerCache<S>> layers;
  int64_t length() const { return layers.empty() ? 0 : int64_t(layers[0].positions.size()); }
};

template <class S>
KVCache<S> make_cache(const ModelConfig& c) {
  KVCache<S> kv;
  kv.layers.resize(size_t(c.num_hidden_layers));
  return kv;
}

// Runs `ids` at positions cache.length() .. cache.length()+T-1 through the model, appending to
// the cache: prefill when the cache is empty, decode otherwise. Returns logits [T, V].
template <class S>
Tensor<S> forward(const ModelWeights<S>& m, const std::vector<int64_t>& ids, KVCache<S>& cache, const Numerics& num,
                  const Recorder& rec);

// Index of the largest of row[0..n); exact ties to the lower index.
template <class S>
int64_t argmax(const S* row, int64_t n);

template <class S>
struct Generation {
  std::vector<int64_t> tokens;  // [N]
  Tensor<S> logits;             // [N, V]; row 0 is the last prefill row
};

// Greedy generation of n tokens after a prefill whose logits are `prefill_logits` and whose
// KV cache is `cache`. Decode step s (1..n-1) feeds token s-1 and, when `steps` records,
// writes its activations as "steps.s.<name>".
template <class S>
Generation<S> generate_greedy(const ModelWeights<S>& m, const Tensor<S>& prefill_logits, KVCache<S>& cache, int64_t n,
                              const Numerics& num, ActivationSink* steps);

}  // namespace hyoracle
