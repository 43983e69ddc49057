#include "reference/decoder_layer.h"

#include "reference/attention.h"
#include "reference/fp8_activation.h"
#include "reference/matmul.h"
#include "reference/names.h"
#include "reference/rms_norm.h"
#include "reference/rope.h"

namespace hyoracle {

template <class S>
void append_rows(Tensor<S>& cache, const Tensor<S>& rows) {
  if (cache.shape.empty()) {
    cache = rows;
    return;
  }
  cache.data.insert(cache.data.end(), rows.data.begin(), rows.data.end());
  cache.shape[0] += rows.shape[0];
}

template <class S>
Tensor<S> attention_block(const Tensor<S>& x, int64_t L, const LayerWeights<S>& w, const ModelConfig& c,
                          const std::vector<int64_t>& positions, LayerCache<S>& cache, const Numerics& num,
                          const Recorder& rec, const LayerCache<S>* kv_source) {
  using names::layer;
  const int64_t T = x.rows(), nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  const double eps = c.rms_norm_eps;

  const Tensor<S> a = rms_norm(x, w.input_norm, eps, num);
  rec(layer(L, "input_norm"), a);
  const bool fp8 = num.fp8_activations;
  Tensor<S> q = linear_input_quantized(a, w.wq, w.wq_in, fp8, num.threads);
  q.shape = {T, nq, d};
  rec(layer(L, "attn.q"), q);
  Tensor<S> k, v;
  if (c.owns_kv(L)) {
    k = linear_input_quantized(a, w.wk, w.wk_in, fp8, num.threads);
    v = linear_input_quantized(a, w.wv, w.wv_in, fp8, num.threads);
    k.shape = {T, nkv, d};
    v.shape = {T, nkv, d};
    rec(layer(L, "attn.k"), k);
    rec(layer(L, "attn.v"), v);
    cache.step_k = k;
    cache.step_v = v;
  } else {
    if (!kv_source || kv_source->step_k.shape.empty() || kv_source->step_k.dim(0) != T)
      fail("layer " + std::to_string(L) + " is a cross layer and needs layer " + std::to_string(c.kv_source(L)) +
           "'s K/V of this step, which was not computed");
    k = kv_source->step_k;
    v = kv_source->step_v;
  }
  const RopeTable<S> rope = rope_table<S>(positions, d, c.rope_base(), num);
  auto norm = [&](Tensor<S>& t, const Tensor<S>& wn, const char* name) {
    t = rms_norm(t, wn, eps, num);
    rec(layer(L, name), t);
  };
  auto rotate = [&](Tensor<S>& t, const char* name) {
    apply_rope(t, rope);
    rec(layer(L, name), t);
  };
  if (c.qk_norm_after_rope) {
    rotate(q, "attn.q_rope");
    rotate(k, "attn.k_rope");
    norm(q, w.q_norm, "attn.q_norm");
    norm(k, w.k_norm, "attn.k_norm");
  } else {
    norm(q, w.q_norm, "attn.q_norm");
    norm(k, w.k_norm, "attn.k_norm");
    rotate(q, "attn.q_rope");
    rotate(k, "attn.k_rope");
  }

  append_rows(cache.k, k);
  append_rows(cache.v, v);
  cache.positions.insert(cache.positions.end(), positions.begin(), positions.end());
  const Tensor<S> ctx = attention(q, cache.k, cache.v, positions, cache.positions, num);
  rec(layer(L, "attn.context"), ctx);
  const Tensor<S> attn_out = linear_input_quantized(ctx, w.wo, w.wo_in, fp8, num.threads);
  rec(layer(L, "attn.out"), attn_out);

  Tensor<S> h = x;
  for (int64_t i = 0; i < h.numel(); ++i) h.data[i] += attn_out.data[i];
  rec(layer(L, "resid_mid"), h);
  return h;
}

template <class S>
Tensor<S> ffn_block(const Tensor<S>& resid_mid, int64_t L, const LayerWeights<S>& w, const ModelConfig& c,
                    const Numerics& num, const Recorder& rec) {
  using names::layer;
  Tensor<S> h = resid_mid;
  const Tensor<S> f = rms_norm(h, w.post_norm, c.rms_norm_eps, num);
  const int64_t T = h.rows();
  rec(layer(L, "post_norm"), f);

  Tensor<S> ffn;
  if (w.dense) {
    ffn = swiglu_mlp(f, w.mlp, num.threads, num.fp8_activations);
  } else {
    MoeOutput<S> m = moe_block(f, w.router, w.expert_bias, w.experts, w.shared, c.num_experts_per_tok,
                               c.router_scaling_factor, c.route_norm, num, c.router);
    rec(layer(L, "moe.router_logits"), m.router.logits);
    rec(layer(L, "moe.scores"), m.router.scores);
    rec.ints(layer(L, "moe.topk_ids"), {T, m.router.k}, m.router.ids, dataflow::int_dtype_of(layer(L, "moe.topk_ids")));
    rec(layer(L, "moe.topk_weights"), m.router.weights);
    rec(layer(L, "moe.topk_margin"), m.router.margin);
    rec(layer(L, "moe.routed_out"), m.routed);
    rec(layer(L, "moe.shared_out"), m.shared);
    ffn = std::move(m.out);
  }
  rec(layer(L, "mlp.out"), ffn);
  for (int64_t i = 0; i < h.numel(); ++i) h.data[i] += ffn.data[i];
  rec(layer(L, "out"), h);
  return h;
}

template <class S>
Tensor<S> decoder_layer(const Tensor<S>& x, int64_t L, const LayerWeights<S>& w, const ModelConfig& c,
                        const std::vector<int64_t>& positions, LayerCache<S>& cache, const Numerics& num,
                        const Recorder& rec, const LayerCache<S>* kv_source) {
  return ffn_block(attention_block(x, L, w, c, positions, cache, num, rec, kv_source), L, w, c, num, rec);
}

template void append_rows<double>(Tensor<double>&, const Tensor<double>&);
template void append_rows<float>(Tensor<float>&, const Tensor<float>&);
template Tensor<double> attention_block<double>(const Tensor<double>&, int64_t, const LayerWeights<double>&,
                                                const ModelConfig&, const std::vector<int64_t>&, LayerCache<double>&,
                                                const Numerics&, const Recorder&, const LayerCache<double>*);
template Tensor<float> attention_block<float>(const Tensor<float>&, int64_t, const LayerWeights<float>&,
                                              const ModelConfig&, const std::vector<int64_t>&, LayerCache<float>&,
                                              const Numerics&, const Recorder&, const LayerCache<float>*);
template Tensor<double> ffn_block<double>(const Tensor<double>&, int64_t, const LayerWeights<double>&,
                                          const ModelConfig&, const Numerics&, const Recorder&);
template Tensor<float> ffn_block<float>(const Tensor<float>&, int64_t, const LayerWeights<float>&, const ModelConfig&,
                                        const Numerics&, const Recorder&);
template Tensor<double> decoder_layer<double>(const Tensor<double>&, int64_t, const LayerWeights<double>&,
                                              const ModelConfig&, const std::vector<int64_t>&, LayerCache<double>&,
                                              const Numerics&, const Recorder&, const LayerCache<double>*);
template Tensor<float> decoder_layer<float>(const Tensor<float>&, int64_t, const LayerWeights<float>&, const ModelConfig&,
                                            const std::vector<int64_t>&, LayerCache<float>&, const Numerics&,
                                            const Recorder&, const LayerCache<float>*);

}  // namespace hyoracle
