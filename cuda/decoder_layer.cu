#include "decoder_layer.h"

#include "attention.h"
#include "elementwise.h"
#include "names.h"
#include "record.h"
#include "rms_norm.h"
#include "rope.h"

namespace hyoracle::cuda {

namespace {
// cache[pos[t], :] = rows[t, :] for t < T (row j of the cache holds position j; row_elems = nkv·d).
// The positions are read on the device, so a captured decode step writes where the step is.
// A position outside [0, capacity) is never written (the host checks capacity before a step).
template <class T>
__global__ void scatter_rows_at_positions(T* cache, const int64_t* pos, const T* rows, int64_t row_elems, int64_t capacity) {
  const int64_t t = blockIdx.x, p = pos[t];
  if (p < 0 || p >= capacity) return;
  for (int64_t i = threadIdx.x; i < row_elems; i += blockDim.x) cache[p * row_elems + i] = rows[t * row_elems + i];
}

template <class T>
void write_cache_rows(DeviceTensor<T>& cache, const DeviceTensor<int64_t>& positions, const DeviceTensor<T>& rows) {
  const int64_t T_ = rows.dim(0), row_elems = cache.numel() / cache.dim(0);
  if (!T_) return;
  scatter_rows_at_positions<<<unsigned(T_), 256, 0, gpu().stream>>>(cache.data(), positions.data(), rows.data(), row_elems,
                                                                     cache.dim(0));
  check_launch("KV cache write");
}
}  // namespace

template <class T>
DeviceTensor<T> decoder_layer_at(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                                 const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, int64_t key_bound,
                                 const Recorder& rec) {
  using names::layer;
  const int64_t T_ = x.rows(), H = c.hidden_size, nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  const double eps = c.rms_norm_eps;

  DeviceTensor<T> a({T_, H});
  rms_norm(x, w.input_norm, eps, a);
  record(rec, layer(L, "input_norm"), a);
  DeviceTensor<T> q({T_, nq, d}), k({T_, nkv, d}), v({T_, nkv, d});
  linear(a, w.wq, q);
  linear(a, w.wk, k);
  linear(a, w.wv, v);
  record(rec, layer(L, "attn.q"), q);
  record(rec, layer(L, "attn.k"), k);
  record(rec, layer(L, "attn.v"), v);
  DeviceTensor<T> qr({T_, nq, d}), kr({T_, nkv, d});
  rms_norm(q, w.q_norm, eps, qr);
  rms_norm(k, w.k_norm, eps, kr);
  record(rec, layer(L, "attn.q_norm"), qr);
  record(rec, layer(L, "attn.k_norm"), kr);
  apply_rope(qr, positions, c.rope_theta);
  apply_rope(kr, positions, c.rope_theta);
  record(rec, layer(L, "attn.q_rope"), qr);
  record(rec, layer(L, "attn.k_rope"), kr);

  write_cache_rows(cache.k, positions, kr);
  write_cache_rows(cache.v, positions, v);
  DeviceTensor<T> ctx({T_, nq * d});
  attention(qr, cache.k, cache.v, key_bound, positions, ctx);
  record(rec, layer(L, "attn.context"), ctx);
  DeviceTensor<T> attn_out({T_, H});
  linear(ctx, w.wo, attn_out);
  record(rec, layer(L, "attn.out"), attn_out);

  DeviceTensor<T> h({T_, H});
  add(x, attn_out, h);
  record(rec, layer(L, "resid_mid"), h);
  DeviceTensor<T> f({T_, H});
  rms_norm(h, w.post_norm, eps, f);
  record(rec, layer(L, "post_norm"), f);

  DeviceTensor<T> ffn({T_, H});
  if (w.dense) {
    swiglu_mlp(f, w.mlp, ffn);
  } else {
    MoeOutput<T> m = moe_block(f, w.router, w.expert_bias, w.experts, w.shared, c.num_experts_per_tok,
                               c.router_scaling_factor, c.route_norm);
    record(rec, layer(L, "moe.router_logits"), m.router.logits);
    record(rec, layer(L, "moe.scores"), m.router.scores);
    record_ints(rec, layer(L, "moe.topk_ids"), m.router.ids);
    record(rec, layer(L, "moe.topk_weights"), m.router.weights);
    record(rec, layer(L, "moe.topk_margin"), m.router.margin);
    record(rec, layer(L, "moe.routed_out"), m.routed);
    record(rec, layer(L, "moe.shared_out"), m.shared);
    ffn = m.out;
  }
  record(rec, layer(L, "mlp.out"), ffn);
  DeviceTensor<T> out({T_, H});
  add(h, ffn, out);
  record(rec, layer(L, "out"), out);
  return out;
}

template <class T>
DeviceTensor<T> decoder_layer(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                              const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, const Recorder& rec) {
  const int64_t capacity = cache.k.dim(0);
  if (cache.length + x.rows() > capacity)
    fail("cuda KV cache: " + std::to_string(cache.length + x.rows()) + " positions exceed its capacity " +
         std::to_string(capacity));
  // Keys bounded by the capacity, not the length: attention masks by position (key j visible to
  // query t iff j <= positions[t]) and skips keys past the last position, so the result is the
  // same, and an eager step runs exactly the launches a captured one (model.h) does.
  DeviceTensor<T> out = decoder_layer_at(x, L, w, c, positions, cache, capacity, rec);
  cache.length += x.rows();
  return out;
}

template DeviceTensor<float> decoder_layer_at<float>(const DeviceTensor<float>&, int64_t, const LayerWeights<float>&,
                                                   const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<float>&, int64_t,
                                                   const Recorder&);
template DeviceTensor<float> decoder_layer<float>(const DeviceTensor<float>&, int64_t, const LayerWeights<float>&,
                                                  const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<float>&,
                                                  const Recorder&);
template DeviceTensor<bf16> decoder_layer_at<bf16>(const DeviceTensor<bf16>&, int64_t, const LayerWeights<bf16>&,
                                                   const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<bf16>&, int64_t,
                                                   const Recorder&);
template DeviceTensor<bf16> decoder_layer<bf16>(const DeviceTensor<bf16>&, int64_t, const LayerWeights<bf16>&,
                                                const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<bf16>&,
                                                const Recorder&);
template DeviceTensor<fp16> decoder_layer_at<fp16>(const DeviceTensor<fp16>&, int64_t, const LayerWeights<fp16>&,
                                                   const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<fp16>&, int64_t,
                                                   const Recorder&);
template DeviceTensor<fp16> decoder_layer<fp16>(const DeviceTensor<fp16>&, int64_t, const LayerWeights<fp16>&,
                                                const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<fp16>&,
                                                const Recorder&);

}  // namespace hyoracle::cuda
