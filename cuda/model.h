// model.h: the whole model on the GPU, hy_v3 (docs/model.md §4.11) or Hunyuan v1
// (docs/hunyuan_v1.md): weights in GPU memory, prefill, incremental decode with the KV cache,
// greedy generation.
//
//   x = Embed(ids);  for L in 0..num_hidden_layers-1: x = decoder_layer(x, L)   (a cross layer
//       reads the step's raw k/v of layer c.kv_source(L): the layers run in order, so the source
//       has always run first)
//   logits = fp32( RMSNorm(x; model.norm) · W_lmᵀ )   (T inputs, fp32 accumulate and output: the
//            "fp32 lm_head" of enable_lm_head_fp32, computed from the T-rounded final norm)
// Weights are loaded with the reference's loader (reference/model.h load_layer: every family's
// tensor names and layouts) or generated on the GPU.
// T = double (the fp64 path, the reference's exact mode): every layer in double (decoder_layer.h),
// logits = RMSNorm(x) · double(W_lm)ᵀ in double; the large matrices stay bf16 on the GPU (weight_t),
// so a 48-layer Hy-MT2 needs ~61 GB, not 4x that. Prefill, eager decode and greedy generation;
// no captured decode step (its MoE block synchronises with the host).
#pragma once
#include <memory>
#include <vector>

#include "io/checkpoint.h"
#include "cuda/decoder_layer.h"

namespace hyoracle::cuda {

template <class T>
struct ModelWeights {
  ModelConfig config;
  DeviceTensor<weight_t<T>> embed;    // [V, H]
  DeviceTensor<T> final_norm;         // [H]
  DeviceTensor<weight_t<T>> lm_head;  // [V, H]
  std::vector<LayerWeights<T>> layers;
};

// Every bf16 weight rounded to T (exact for bf16 and fp32); router and expert_bias in fp32. For
// T = double the large matrices are held as bf16 and a value bf16 cannot hold is an Error (the
// fp64 path does not round a weight); the norms are loaded in double.
template <class T>
ModelWeights<T> load_model(const Checkpoint& ck);

// Random weights built directly in GPU memory, with the fixture generator's scales
// (random_checkpoint.h: embeddings N(0,1), linear N(0, 1/fan_in), norms 1 + 0.1·N(0,1), router
// N(0, 9/H), bias 0.05·N(0,1)); values are rounded to bf16 first, then to T. Each tensor's values
// are a counter-based hash of (seed, tensor name, index): the same seed gives the same model on
// any GPU, but not the same values as the fixture file of that seed.
template <class T>
ModelWeights<T> random_model(const ModelConfig& c, uint64_t seed);

template <class T>
struct KVCache {
  std::vector<LayerCache<T>> layers;
  int64_t length() const { return layers.empty() ? 0 : layers[0].length; }
};
template <class T>
KVCache<T> make_cache(const ModelConfig& c, int64_t capacity);

// Runs ids at positions cache.length() .. +T-1, appending to the cache. Returns logits [T, V]
// (fp32, or double on the fp64 path).
template <class T>
DeviceTensor<acc_t<T>> forward(const ModelWeights<T>& m, const std::vector<int64_t>& ids, KVCache<T>& cache,
                            const Recorder& rec);

// Index of the largest of each row of x [R, n]; exact ties to the lower index.
std::vector<int64_t> argmax_rows(const DeviceTensor<float>& x);
std::vector<int64_t> argmax_rows(const DeviceTensor<double>& x);

template <class A>
struct GenerationOf {
  std::vector<int64_t> tokens;  // [N]
  Tensor<A> logits;             // [N, V]; row 0 is the last prefill row
};
using Generation = GenerationOf<float>;

// Greedy generation of n tokens after a prefill (its logits and cache); decode step s feeds
// token s-1 and, when `steps` is set, records its activations as "steps.s.<name>".
template <class T>
GenerationOf<acc_t<T>> generate_greedy(const ModelWeights<T>& m, const DeviceTensor<acc_t<T>>& prefill_logits,
                                       KVCache<T>& cache, int64_t n, ActivationSink* steps);

// One greedy decode step captured as a CUDA graph; it reads its token and position from device
// memory and writes the next ones back, so n replays generate n tokens with no host work between:
//   x = Embed(token);  x = decoder_layer_at(x, L, ..., positions = {position}, key_bound = capacity)
//   logits = fp32(RMSNorm(x) · W_lmᵀ);  token = argmax(logits) (ties to the lower index)
//   history[step] = token;  step += 1;  position += 1
// The same layer kernels in the same order as forward() on one token (decoder_layer also bounds
// the keys by the capacity; only the token gather reads a device id and the argmax is fused with
// the advance), so its logits equal the eager step's bit for bit (tests/cuda). Once captured, the
// cache belongs to the graph: the position lives on the device, so an eager forward() on the same
// cache between replays would be overwritten by the next replay (the host keeps cache.length()
// only to refuse replays past the capacity).
template <class T>
struct DecodeGraph {
  DeviceTensor<int64_t> token;     // [1] the token the next replay feeds
  DeviceTensor<int64_t> position;  // [1] its position (= the cache rows written so far)
  DeviceTensor<int64_t> step;      // [1] replays so far
  DeviceTensor<int64_t> history;   // [capacity] history[s] = the token chosen by replay s
  DeviceTensor<float> logits;      // [1, V] the last replay's logits
  DeviceTensor<int32_t> bad_id;    // [1] set when a fed token lies outside the vocabulary
  cudaGraphExec_t exec = nullptr;
  DecodeGraph() = default;
  DecodeGraph(const DecodeGraph&) = delete;
  DecodeGraph& operator=(const DecodeGraph&) = delete;
  ~DecodeGraph();
};

// Captures the step for `m` over `cache` (its capacity bounds every replay), starting from
// `token` at position cache.length(). Nothing runs until replayed.
template <class T>
std::unique_ptr<DecodeGraph<T>> capture_decode_step(const ModelWeights<T>& m, KVCache<T>& cache, int64_t token);

// Replays the step once (asynchronously) and advances cache.length() by one; refuses to pass the
// cache capacity.
template <class T>
void replay_decode_step(DecodeGraph<T>& g, KVCache<T>& cache);

// generate_greedy without recording, through the captured step: the same tokens and logits.
// `keep_logits` = false skips the per-step logits download (Generation::logits stays empty), so the
// n - 1 replays run back to back.
template <class T>
Generation generate_greedy_graph(const ModelWeights<T>& m, const DeviceTensor<float>& prefill_logits, KVCache<T>& cache,
                                 int64_t n, bool keep_logits = true);

}  // namespace hyoracle::cuda
