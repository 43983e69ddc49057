#include "reference/model.h"

#include <array>
#include <cmath>

#include "reference/embedding.h"
#include "reference/matmul.h"
#include "reference/names.h"
#include "reference/rms_norm.h"

namespace hyoracle {

std::string hf_layer_name(int64_t L, const std::string& what) {
  return "model.layers." + std::to_string(L) + "." + what;
}

namespace {

// The checkpoint names that differ between families (docs/model.md §3.1, docs/hunyuan_v1.md).
struct FamilyNames {
  const char* q_norm;
  const char* k_norm;
  const char* router;
  const char* expert_bias;  // nullptr: the family's router has no bias
};

FamilyNames family_names(Family f) {
  if (f == Family::hy_v3)
    return {"self_attn.q_norm.weight", "self_attn.k_norm.weight", "mlp.router.gate.weight", "mlp.expert_bias"};
  return {"self_attn.query_layernorm.weight", "self_attn.key_layernorm.weight", "mlp.gate.wg.weight", nullptr};
}

// Tencent's fused tensors (qkv_proj, gate_and_up_proj) belong to checkpoints of Tencent's code;
// transformers' classes and hy_v3 do not load them.
void require_fused_layout(const Checkpoint& ck, const std::string& name) {
  if (ck.config().semantics != "tencent")
    fail(ck.file_of(name) + ": tensor \"" + name + "\" is Tencent's fused layout, but " + ck.config().source +
         " has model_type \"" + ck.config().model_type + "\" (fused tensors need model_type \"hunyuan\")");
}

// A SwiGLU block `prefix`{gate,up,down}_proj, or Tencent's fused `prefix`gate_and_up_proj whose
// first I rows are UP and last I rows GATE (the reverse of transformers' fused gate_up_proj).
std::array<WeightRef, 3> mlp_refs(const Checkpoint& ck, const std::string& prefix, int64_t I, int64_t H) {
  const std::string fused = prefix + "gate_and_up_proj.weight";
  WeightRef down = ck.ref(prefix + "down_proj.weight", {H, I});
  if (ck.has(fused)) {
    require_fused_layout(ck, fused);
    for (const std::string& x : {prefix + "gate_proj.weight", prefix + "up_proj.weight"})
      if (ck.has(x))
        fail(ck.file_of(x) + ": tensor \"" + x + "\" is stored next to \"" + fused + "\"; expected one layout");
    return {ck.ref_rows(fused, {2 * I, H}, I, I), ck.ref_rows(fused, {2 * I, H}, 0, I), down};
  }
  return {ck.ref(prefix + "gate_proj.weight", {I, H}), ck.ref(prefix + "up_proj.weight", {I, H}), down};
}

template <class S>
MlpWeights<S> load_mlp(const Checkpoint& ck, const std::string& prefix, int64_t I, int64_t H) {
  const std::array<WeightRef, 3> r = mlp_refs(ck, prefix, I, H);
  return {Checkpoint::decode<S>(r[0]), Checkpoint::decode<S>(r[1]), Checkpoint::decode<S>(r[2]),
          r[0].input_scale,           r[1].input_scale,           r[2].input_scale};
}

// A weight and, for an FP8 weight of a static-scheme checkpoint, its input scale.
template <class S>
Tensor<S> load_linear(const Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape, double* input_scale) {
  const WeightRef r = ck.ref(name, shape);
  *input_scale = r.input_scale;
  return Checkpoint::decode<S>(r);
}

// q, k, v projections. A layer that owns its K/V stores q/k/v_proj, or Tencent's fused qkv_proj
// whose rows, per KV group m, hold that group's g query heads, then its key head, then its value
// head ([nkv, g + 2, d, H]). A cross layer (cross-layer attention) stores q_proj only.
template <class S>
void load_qkv(const Checkpoint& ck, const ModelConfig& c, int64_t L, LayerWeights<S>& w) {
  const int64_t H = c.hidden_size, A = c.q_width(), Kv = c.kv_width(), d = c.head_dim, g = c.gqa_group();
  auto n = [&](const std::string& x) { return hf_layer_name(L, x); };
  const std::string fused = n("self_attn.qkv_proj.weight");
  if (!c.owns_kv(L)) {
    for (const char* x : {"self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.qkv_proj.weight"})
      if (ck.has(n(x)))
        fail(ck.file_of(n(x)) + ": tensor \"" + n(x) + "\" is stored, but layer " + std::to_string(L) +
             " is a cross layer reading layer " + std::to_string(c.kv_source(L)) + "'s K/V (use_cla, cla_share_factor " +
             std::to_string(c.cla_share_factor) + " in " + c.source + "); the checkpoint does not match its config");
    w.wq = load_linear<S>(ck, n("self_attn.q_proj.weight"), {A, H}, &w.wq_in);
    return;
  }
  if (!ck.has(fused)) {
    w.wq = load_linear<S>(ck, n("self_attn.q_proj.weight"), {A, H}, &w.wq_in);
    w.wk = load_linear<S>(ck, n("self_attn.k_proj.weight"), {Kv, H}, &w.wk_in);
    w.wv = load_linear<S>(ck, n("self_attn.v_proj.weight"), {Kv, H}, &w.wv_in);
    return;
  }
  require_fused_layout(ck, fused);
  for (const char* x : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"})
    if (ck.has(n(x)))
      fail(ck.file_of(n(x)) + ": tensor \"" + n(x) + "\" is stored next to \"" + fused + "\"; expected one layout");
  double in = 0;
  const Tensor<S> f = load_linear<S>(ck, fused, {A + 2 * Kv, H}, &in);
  w.wq_in = w.wk_in = w.wv_in = in;  // one input, one scale
  w.wq = Tensor<S>({A, H});
  w.wk = Tensor<S>({Kv, H});
  w.wv = Tensor<S>({Kv, H});
  const int64_t nkv = c.num_key_value_heads, block = (g + 2) * d * H;
  for (int64_t m = 0; m < nkv; ++m) {
    const S* src = f.data.data() + m * block;
    std::copy(src, src + g * d * H, w.wq.data.begin() + m * g * d * H);
    std::copy(src + g * d * H, src + (g + 1) * d * H, w.wk.data.begin() + m * d * H);
    std::copy(src + (g + 1) * d * H, src + block, w.wv.data.begin() + m * d * H);
  }
}

}  // namespace

template <class S>
LayerWeights<S> load_layer(const Checkpoint& ck, int64_t L, bool resident_experts) {
  const ModelConfig& c = ck.config();
  if (L < 0 || L >= c.num_hidden_layers)
    fail("layer " + std::to_string(L) + " is out of range: " + c.source + " has num_hidden_layers " +
         std::to_string(c.num_hidden_layers));
  const int64_t H = c.hidden_size, A = c.q_width(), d = c.head_dim;
  const FamilyNames fn = family_names(c.family);
  auto n = [&](const std::string& w) { return hf_layer_name(L, w); };
  LayerWeights<S> w;
  w.input_norm = ck.load<S>(n("input_layernorm.weight"), {H});
  load_qkv(ck, c, L, w);
  w.wo = load_linear<S>(ck, n("self_attn.o_proj.weight"), {H, A}, &w.wo_in);
  w.q_norm = ck.load<S>(n(fn.q_norm), {d});
  w.k_norm = ck.load<S>(n(fn.k_norm), {d});
  w.post_norm = ck.load<S>(n("post_attention_layernorm.weight"), {H});
  w.dense = c.is_dense(L);
  if (w.dense) {
    w.mlp = load_mlp<S>(ck, n("mlp."), c.intermediate_size, H);
    return w;
  }
  const int64_t E = c.num_experts, I = c.moe_intermediate_size, Is = c.shared_width();
  w.router = ck.load<S>(n(fn.router), {E, H});
  if (fn.expert_bias) {
    // The bias decides the expert selection; a non-finite entry would make the top-k order
    // meaningless (and std::sort's comparisons undefined) without any visible error.
    const WeightRef r = ck.ref(n(fn.expert_bias), {E}, /*f32_only=*/true);
    w.expert_bias = Checkpoint::decode<S>(r);
    for (int64_t e = 0; e < E; ++e)
      if (!std::isfinite(double(w.expert_bias.data[size_t(e)])))
        fail(r.file->path() + ": tensor \"" + n(fn.expert_bias) + "\" holds a non-finite value at expert " +
             std::to_string(e) + " (expected finite fp32 biases)");
  } else {
    w.expert_bias = Tensor<S>({E});  // no bias: selection by the scores alone
  }
  if (Is > 0) w.shared = load_mlp<S>(ck, n("mlp.shared_mlp."), Is, H);
  for (int64_t e = 0; e < E; ++e) w.experts.refs.push_back(mlp_refs(ck, n("mlp.experts." + std::to_string(e) + "."), I, H));
  if (resident_experts) {
    std::vector<MlpWeights<S>> all(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) w.experts.get(e, all[e]);
    w.experts.resident = std::move(all);
    w.experts.refs.clear();
  }
  return w;
}

template <class S>
ModelWeights<S> load_model(const Checkpoint& ck, const LoadOptions& opt) {
  ModelWeights<S> m;
  m.config = ck.config();
  const ModelConfig& c = m.config;
  const int64_t last = opt.last_layer < 0 ? c.num_hidden_layers : opt.last_layer;
  if (opt.embed_and_head) {
    m.embed = ck.load<S>("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
    m.final_norm = ck.load<S>("model.norm.weight", {c.hidden_size});
    m.lm_head = c.tie_word_embeddings ? m.embed : ck.load<S>("lm_head.weight", {c.vocab_size, c.hidden_size});
  }
  m.layers.resize(size_t(c.num_hidden_layers));
  for (int64_t L = opt.first_layer; L < last; ++L) m.layers[L] = load_layer<S>(ck, L, opt.resident_experts);
  return m;
}

template <class S>
int64_t argmax(const S* row, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;
  return best;
}

template <class S>
Tensor<S> forward(const ModelWeights<S>& m, const std::vector<int64_t>& ids, KVCache<S>& cache, const Numerics& num,
                  const Recorder& rec) {
  const ModelConfig& c = m.config;
  std::vector<int64_t> positions(ids.size());
  for (size_t t = 0; t < ids.size(); ++t) positions[t] = cache.length() + int64_t(t);
  rec.ints(names::kInputIds, {int64_t(ids.size())}, ids, dataflow::int_dtype_of(names::kInputIds));
  Tensor<S> x = embedding(m.embed, ids);
  rec(names::kEmbed, x);
  for (int64_t L = 0; L < c.num_hidden_layers; ++L)
    x = decoder_layer(x, L, m.layers[L], c, positions, cache.layers[L], num, rec, &cache.layers[c.kv_source(L)]);
  const Tensor<S> h = rms_norm(x, m.final_norm, c.rms_norm_eps, num);
  rec(names::kFinalNorm, h);
  Tensor<S> logits = linear(h, m.lm_head, num.threads);
  rec(names::kLogits, logits);
  return logits;
}

template <class S>
Generation<S> generate_greedy(const ModelWeights<S>& m, const Tensor<S>& prefill_logits, KVCache<S>& cache, int64_t n,
                              const Numerics& num, ActivationSink* steps) {
  const int64_t V = m.config.vocab_size;
  Generation<S> g;
  g.logits = Tensor<S>({n, V});
  const S* row = prefill_logits.row(prefill_logits.rows() - 1);
  for (int64_t s = 0; s < n; ++s) {
    if (s > 0) {
      Recorder rec{steps, names::step(s, "")};
      const Tensor<S> l = forward(m, {g.tokens.back()}, cache, num, rec);
      std::copy_n(l.row(0), V, g.logits.row(s));
    } else {
      std::copy_n(row, V, g.logits.row(0));
    }
    g.tokens.push_back(argmax(g.logits.row(s), V));
  }
  return g;
}

template LayerWeights<double> load_layer<double>(const Checkpoint&, int64_t, bool);
template ModelWeights<double> load_model<double>(const Checkpoint&, const LoadOptions&);
template int64_t argmax<double>(const double*, int64_t);
template Tensor<double> forward<double>(const ModelWeights<double>&, const std::vector<int64_t>&, KVCache<double>&, const Numerics&,
                                  const Recorder&);
template Generation<double> generate_greedy<double>(const ModelWeights<double>&, const Tensor<double>&, KVCache<double>&, int64_t,
                                              const Numerics&, ActivationSink*);
template LayerWeights<float> load_layer<float>(const Checkpoint&, int64_t, bool);
template ModelWeights<float> load_model<float>(const Checkpoint&, const LoadOptions&);
template int64_t argmax<float>(const float*, int64_t);
template Tensor<float> forward<float>(const ModelWeights<float>&, const std::vector<int64_t>&, KVCache<float>&, const Numerics&,
                                  const Recorder&);
template Generation<float> generate_greedy<float>(const ModelWeights<float>&, const Tensor<float>&, KVCache<float>&, int64_t,
                                              const Numerics&, ActivationSink*);

}  // namespace hyoracle
