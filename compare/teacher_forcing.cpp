#include "teacher_forcing.h"

#include <cmath>

#include "attention.h"
#include "matmul.h"
#include "names.h"
#include "rms_norm.h"
#include "rope.h"
#include "tolerance.h"

namespace hyoracle::compare {

double dot_conditioning(const Tensor<double>& a, const Tensor<double>& w, int threads) {
  Tensor<double> aa = a, ww = w;
  for (double& x : aa.data) x = std::fabs(x);
  for (double& x : ww.data) x = std::fabs(x);
  aa.shape = {a.rows(), a.cols()};
  const Tensor<double> y = linear(Tensor<double>({a.rows(), a.cols()}, a.data), w, threads);
  const Tensor<double> yabs = linear(aa, ww, threads);
  double n_abs = 0, n_y = 0;
  for (double x : yabs.data) n_abs += x * x;
  for (double x : y.data) n_y += x * x;
  if (n_y == 0) return n_abs == 0 ? 1.0 : 1e6;
  return std::max(1.0, std::sqrt(n_abs / n_y));
}

double attention_rounding_gain(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                               const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos) {
  const int64_t T = q.dim(0), nq = q.dim(1), d = q.dim(2), Tk = k.dim(0), nkv = k.dim(1), g = nq / nkv;
  const double scale = 1.0 / std::sqrt(double(d));
  double score_term = 0, prob_term = 0, ctx_term = 0;
  std::vector<double> s(static_cast<size_t>(Tk)), p(static_cast<size_t>(Tk)), ctx(static_cast<size_t>(d));
  for (int64_t n = 0; n < nq; ++n) {
    const int64_t m = n / g;
    for (int64_t i = 0; i < T; ++i) {
      const double* qi = q.data.data() + (i * nq + n) * d;
      double mx = -INFINITY;
      for (int64_t j = 0; j < Tk; ++j) {
        if (kpos[size_t(j)] > pos[size_t(i)]) { s[size_t(j)] = -INFINITY; continue; }
        const double* kj = k.data.data() + (j * nkv + m) * d;
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += qi[c] * kj[c];
        s[size_t(j)] = dot * scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      double z = 0;
      for (int64_t j = 0; j < Tk; ++j) z += (p[size_t(j)] = std::isinf(s[size_t(j)]) ? 0.0 : std::exp(s[size_t(j)] - mx));
      std::fill(ctx.begin(), ctx.end(), 0.0);
      for (int64_t j = 0; j < Tk; ++j) {
        p[size_t(j)] /= z;
        const double* vj = v.data.data() + (j * nkv + m) * d;
        for (int64_t c = 0; c < d; ++c) ctx[size_t(c)] += p[size_t(j)] * vj[c];
      }
      for (int64_t c = 0; c < d; ++c) ctx_term += ctx[size_t(c)] * ctx[size_t(c)];
      for (int64_t j = 0; j < Tk; ++j) {
        if (p[size_t(j)] == 0) continue;
        const double* vj = v.data.data() + (j * nkv + m) * d;
        double dv = 0, vv = 0;
        for (int64_t c = 0; c < d; ++c) {
          dv += (vj[c] - ctx[size_t(c)]) * (vj[c] - ctx[size_t(c)]);
          vv += vj[c] * vj[c];
        }
        const double pp = p[size_t(j)] * p[size_t(j)];
        score_term += pp * s[size_t(j)] * s[size_t(j)] * dv;
        prob_term += pp * vv;
      }
    }
  }
  if (ctx_term == 0) return 2.0;
  return std::sqrt(1.0 + (2.0 * score_term + prob_term) / ctx_term);
}

TeacherForcing::TeacherForcing(const std::string& model_dir, int threads) : ck_(model_dir), threads_(threads) {}

const LayerWeights<double>& TeacherForcing::layer(int64_t L) {
  if (loaded_ != L) {
    w_ = LayerWeights<double>{};  // free the previous layer first: one layer's weights at a time
    loaded_ = -1;
    w_ = load_layer<double>(ck_, L, /*resident_experts=*/false);
    loaded_ = L;
  }
  return w_;
}

void TeacherForcing::load_head() {
  if (head_loaded_) return;
  const ModelConfig& c = ck_.config();
  final_norm_ = ck_.load<double>("model.norm.weight", {c.hidden_size});
  lm_head_ = ck_.load<double>(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight",
                              {c.vocab_size, c.hidden_size});
  head_loaded_ = true;
}

std::vector<double> TeacherForcing::expert_bias(int64_t L) {
  if (L < 0 || L >= config().num_hidden_layers || config().is_dense(L)) return {};
  const auto& w = layer(L);
  return w.expert_bias.data;
}

std::optional<Replay> TeacherForcing::replay(const std::string& full, const Dump& t,
                                             const std::vector<int64_t>& prefill_pos) {
  // Decode step S (steps.S.*) is one token at position prefill_end + S - 1; its attention reads
  // the target's cache: prefill k_rope/v rows followed by those of steps 1..S.
  int64_t step = 0;
  const std::string name = strip_step(full, &step);
  const std::string pre = step > 0 ? names::step(step, "") : "";
  std::vector<int64_t> pos = prefill_pos;
  if (step > 0) pos = {(prefill_pos.empty() ? 0 : prefill_pos.back() + 1) + step - 1};
  const ModelConfig& c = config();
  const double eps = c.rms_norm_eps;
  const Numerics num{Precision::exact, threads_};
  const int64_t L = layer_of_name(name);
  auto in = [&](const std::string& s) { return t.read(pre + names::layer(L, s)); };
  auto have = [&](std::initializer_list<std::string> ss) {
    for (const auto& s : ss)
      if (!t.has(pre + names::layer(L, s))) return false;
    return true;
  };
  auto lin = [&](const Tensor<double>& a, const Tensor<double>& w, std::vector<int64_t> shape) {
    Replay r;
    Tensor<double> a2({a.rows(), a.cols()}, a.data);
    r.value = linear(a2, w, threads_);
    r.value.shape = std::move(shape);
    r.reduction_k = a.cols();
    r.kappa = dot_conditioning(a2, w, threads_);
    return r;
  };
  auto sum2 = [&](const Tensor<double>& a, const Tensor<double>& b) {
    Replay r;
    r.value = a;
    for (int64_t i = 0; i < a.numel(); ++i) r.value.data[i] += b.data[i];
    return r;
  };
  auto head_norm = [&](const std::string& src, const Tensor<double>& w) {
    Tensor<double> x = in(src);
    const auto shape = x.shape;
    x.shape = {x.numel() / c.head_dim, c.head_dim};
    Replay r;
    r.value = rms_norm(x, w, eps, num);
    r.value.shape = shape;
    return r;
  };

  if (name == "final_norm") {
    const std::string last = pre + names::layer(c.num_hidden_layers - 1, "out");
    if (!t.has(last)) return std::nullopt;
    load_head();
    Replay r;
    r.value = rms_norm(t.read(last), final_norm_, eps, num);
    return r;
  }
  if (name == "logits") {
    if (!t.has(pre + "final_norm")) return std::nullopt;
    load_head();
    const Tensor<double> h = t.read(pre + "final_norm");
    return lin(h, lm_head_, {h.rows(), c.vocab_size});
  }
  if (L < 0 || L >= c.num_hidden_layers) return std::nullopt;
  const std::string s = name.substr(name.find('.', 7) + 1);
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  if (s == "input_norm") {
    const std::string src = pre + (L == 0 ? "embed" : names::layer(L - 1, "out"));
    if (!t.has(src)) return std::nullopt;
    Replay r;
    r.value = rms_norm(t.read(src), layer(L).input_norm, eps, num);
    return r;
  }
  if (s == "attn.q" || s == "attn.k" || s == "attn.v") {
    if (!have({"input_norm"})) return std::nullopt;
    const auto& w = layer(L);
    const Tensor<double> a = in("input_norm");
    const int64_t T = a.rows();
    if (s == "attn.q") return lin(a, w.wq, {T, nq, d});
    return lin(a, s == "attn.k" ? w.wk : w.wv, {T, nkv, d});
  }
  if (s == "attn.q_norm" && have({"attn.q"})) return head_norm("attn.q", layer(L).q_norm);
  if (s == "attn.k_norm" && have({"attn.k"})) return head_norm("attn.k", layer(L).k_norm);
  if ((s == "attn.q_rope" && have({"attn.q_norm"})) || (s == "attn.k_rope" && have({"attn.k_norm"}))) {
    Replay r;
    r.value = in(s == "attn.q_rope" ? "attn.q_norm" : "attn.k_norm");
    apply_rope(r.value, rope_table<double>(pos, d, c.rope_theta, num));
    return r;
  }
  if (s == "attn.context" && have({"attn.q_rope", "attn.k_rope", "attn.v"})) {
    const Tensor<double> q = in("attn.q_rope");
    Tensor<double> k = in("attn.k_rope"), v = in("attn.v");
    std::vector<int64_t> kpos = pos;
    if (step > 0) {  // the cache: prefill rows, then steps 1..S
      kpos = prefill_pos;
      const std::string kn = names::layer(L, "attn.k_rope"), vn = names::layer(L, "attn.v");
      if (!t.has(kn) || !t.has(vn)) return std::nullopt;
      k = t.read(kn);
      v = t.read(vn);
      for (int64_t s2 = 1; s2 <= step; ++s2) {
        const std::string p2 = names::step(s2, "");
        if (!t.has(p2 + kn) || !t.has(p2 + vn)) return std::nullopt;
        append_rows(k, t.read(p2 + kn));
        append_rows(v, t.read(p2 + vn));
        kpos.push_back(kpos.empty() ? 0 : kpos.back() + 1);
      }
    }
    Replay r;
    r.value = attention(q, k, v, pos, kpos, num);
    r.gain = attention_rounding_gain(q, k, v, pos, kpos);
    // P·V sums over up to Tk keys (and Q·K over d): accumulation error grows like √K·u_acc,
    // which the rounding gain above does not cover (it matters for fp32 targets at long T).
    r.reduction_k = std::max<int64_t>(k.dim(0), q.dim(2));
    return r;
  }
  if (s == "attn.out" && have({"attn.context"})) {
    const Tensor<double> ctx = in("attn.context");
    return lin(ctx, layer(L).wo, {ctx.rows(), c.hidden_size});
  }
  if (s == "resid_mid" && have({"attn.out"})) {
    const std::string src = pre + (L == 0 ? "embed" : names::layer(L - 1, "out"));
    if (!t.has(src)) return std::nullopt;
    return sum2(t.read(src), in("attn.out"));
  }
  if (s == "post_norm" && have({"resid_mid"})) {
    Replay r;
    r.value = rms_norm(in("resid_mid"), layer(L).post_norm, eps, num);
    return r;
  }
  if (s == "out" && have({"resid_mid", "mlp.out"})) return sum2(in("resid_mid"), in("mlp.out"));
  const bool dense = c.is_dense(L);
  if (s == "mlp.out") {
    if (dense && have({"post_norm"})) {
      Replay r;
      const Tensor<double> f = in("post_norm");
      r.value = swiglu_mlp(f, layer(L).mlp, threads_);
      r.reduction_k = c.intermediate_size;
      return r;
    }
    if (!dense && have({"moe.routed_out", "moe.shared_out"})) return sum2(in("moe.routed_out"), in("moe.shared_out"));
    return std::nullopt;
  }
  if (dense) return std::nullopt;
  if (s == "moe.router_logits" && have({"post_norm"})) {
    const Tensor<double> f = in("post_norm");
    return lin(f, layer(L).router, {f.rows(), c.num_experts});
  }
  if (s == "moe.scores" && have({"moe.router_logits"})) {
    Replay r;
    r.value = in("moe.router_logits");
    for (double& x : r.value.data) x = 1.0 / (1.0 + std::exp(-x));
    return r;
  }
  if (s == "moe.shared_out" && have({"post_norm"})) {
    if (c.shared_width() == 0) return std::nullopt;
    Replay r;
    r.value = swiglu_mlp(in("post_norm"), layer(L).shared, threads_);
    r.reduction_k = c.shared_width();
    return r;
  }
  if (s == "moe.topk_weights" && have({"moe.scores", "moe.topk_ids"})) {
    const Tensor<double> sc = in("moe.scores");
    const std::vector<int64_t> ids = t.read_ints(pre + names::layer(L, "moe.topk_ids"));
    const int64_t T = sc.rows(), E = sc.cols(), k = int64_t(ids.size()) / std::max<int64_t>(T, 1);
    Replay r;
    r.value = Tensor<double>({T, k});
    for (int64_t i = 0; i < T; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += sc.data[i * E + ids[i * k + j]];
      const double denom = c.route_norm ? sum + 1e-20 : 1.0;
      for (int64_t j = 0; j < k; ++j)
        r.value.data[i * k + j] = sc.data[i * E + ids[i * k + j]] / denom * c.router_scaling_factor;
    }
    return r;
  }
  if (s == "moe.routed_out" && have({"post_norm", "moe.topk_ids", "moe.topk_weights"})) {
    const Tensor<double> f = in("post_norm");
    RouterOutput<double> ro;
    ro.ids = t.read_ints(pre + names::layer(L, "moe.topk_ids"));
    ro.weights = in("moe.topk_weights");
    ro.k = ro.weights.cols();
    Replay r;
    r.value = routed_experts(f, ro, layer(L).experts, threads_);
    r.reduction_k = c.moe_intermediate_size;
    return r;
  }
  return std::nullopt;
}

}  // namespace hyoracle::compare
