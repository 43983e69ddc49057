#include "compare/teacher_forcing.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "reference/attention.h"
#include "reference/fp8_activation.h"
#include "reference/dataflow.h"
#include "reference/embedding.h"
#include "reference/matmul.h"
#include "reference/mlp.h"
#include "reference/moe.h"
#include "reference/names.h"
#include "reference/rms_norm.h"
#include "reference/rope.h"
#include "compare/routing.h"
#include "compare/tolerance.h"

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

// One value of the composition: exact, and (when a recomputed intermediate lies upstream) the same
// computed from perturbed intermediates.
struct TeacherForcing::Val {
  Tensor<double> x, xn;
  bool noisy = false;
  const Tensor<double>& n() const { return noisy ? xn : x; }
};

struct TeacherForcing::Ctx {
  std::vector<std::string> read, composed;
  int depth = 0;
  void note(std::vector<std::string>& v, const std::string& s) {
    if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
  }
};

namespace {

// FNV-1a: a seed that depends on the tensor's name only (replayable across runs and machines).
uint64_t name_seed(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Relative rel-L2 per row of (a − b) against b, and whole.
double rel_rows(const Tensor<double>& a, const Tensor<double>& b, std::vector<double>* rows) {
  const int64_t R = b.shape.empty() ? 1 : b.dim(0), C = R ? b.numel() / R : 0;
  double ee = 0, rr = 0;
  if (rows) rows->assign(size_t(R), 0.0);
  for (int64_t i = 0; i < R; ++i) {
    double e = 0, r = 0;
    for (int64_t j = 0; j < C; ++j) {
      const double d = a.data[size_t(i * C + j)] - b.data[size_t(i * C + j)];
      e += d * d;
      r += b.data[size_t(i * C + j)] * b.data[size_t(i * C + j)];
    }
    ee += e;
    rr += r;
    if (rows) (*rows)[size_t(i)] = r > 0 ? std::sqrt(e / r) : (e > 0 ? INFINITY : 0.0);
  }
  return rr > 0 ? std::sqrt(ee / rr) : (ee > 0 ? INFINITY : 0.0);
}

}  // namespace

TeacherForcing::TeacherForcing(const std::string& model_dir, const Dump& target, std::vector<int64_t> prefill_positions,
                               int threads, bool fp8_activations, std::unique_ptr<ReplayDevice> device)
    : ck_(model_dir), dev_(device ? std::move(device) : make_cpu_replay_device(threads)), t_(target), prefill_pos_(std::move(prefill_positions)), threads_(threads), fp8_(fp8_activations) {
  u_run_ = unit_roundoff(t_.producer("dtype")).value_or(0x1p-24);
}

TeacherForcing::~TeacherForcing() = default;

const LayerWeights<double>& TeacherForcing::layer(int64_t L) {
  if (loaded_ != L) {
    dev_->release_weights();      // the device's copies of the previous layer's weights go first
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

Tensor<double> TeacherForcing::embedding_rows(const std::vector<int64_t>& ids) {
  // Only the rows asked for are decoded: the table of a real checkpoint is GBs in double.
  const ModelConfig& c = ck_.config();
  const WeightRef r = ck_.ref("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
  Tensor<double> x({int64_t(ids.size()), c.hidden_size});
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= c.vocab_size)
      fail(t_.dir() + ": token id " + std::to_string(ids[i]) + " outside the vocabulary [0, " +
           std::to_string(c.vocab_size) + ")");
    for (int64_t h = 0; h < c.hidden_size; ++h)
      x.data[i * size_t(c.hidden_size) + size_t(h)] =
          element_as_double(r.file->data(*r.info), r.info->dtype, ids[i] * c.hidden_size + h);
  }
  return x;
}

std::vector<double> TeacherForcing::expert_bias(int64_t L) {
  if (L < 0 || L >= config().num_hidden_layers || config().is_dense(L)) return {};
  return layer(L).expert_bias.data;
}

bool TeacherForcing::moe(int64_t L) const { return L >= 0 && L < config().num_hidden_layers && !config().is_dense(L); }

dataflow::LayerKind TeacherForcing::kind(int64_t L) const { return {moe(L), !config().owns_kv(L)}; }

int64_t TeacherForcing::rows_of(int64_t step) const { return step > 0 ? 1 : int64_t(prefill_pos_.size()); }

std::vector<int64_t> TeacherForcing::positions_of(int64_t step) const {
  if (step == 0) return prefill_pos_;
  return {(prefill_pos_.empty() ? 0 : prefill_pos_.back() + 1) + step - 1};
}

std::vector<int64_t> TeacherForcing::expected_shape(const std::string& full) const {
  int64_t step = 0;
  const std::string n = strip_step(full, &step);
  const ModelConfig& c = config();
  const int64_t T = rows_of(step);
  if (n == "embed" || n == "final_norm") return {T, c.hidden_size};
  if (n == "logits") return {T, c.vocab_size};
  if (n == "input_ids") return {T};
  const int64_t L = layer_of_name(n);
  if (L < 0 || L >= c.num_hidden_layers) return {};
  const dataflow::Step* st = dataflow::find_step(c.family, n.substr(n.find('.', 7) + 1), kind(L));
  if (!st) return {};
  using S = dataflow::Shape;
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  switch (st->shape) {
    case S::T_H: return {T, c.hidden_size};
    case S::T_nq_d: return {T, nq, d};
    case S::T_nkv_d: return {T, nkv, d};
    case S::T_nqd: return {T, nq * d};
    case S::T_E: return {T, c.num_experts};
    case S::T_k: return {T, c.num_experts_per_tok};
    case S::T: return {T};
  }
  return {};
}

Tensor<double> TeacherForcing::read_checked(const std::string& name) const {
  const std::vector<int64_t> want = expected_shape(name);
  const TensorInfo& ti = t_.info(name);
  if (!want.empty() && ti.shape != want)
    fail(t_.file_of(name) + ": tensor \"" + name + "\" has shape " + shape_str(ti.shape) + "; expected " +
         shape_str(want) + " from " + ck_.dir() + "/config.json and the dump's " + std::to_string(rows_of(0)) +
         " prompt tokens");
  return t_.read(name);
}

std::vector<int64_t> TeacherForcing::read_ids_checked(const std::string& name) const {
  return checked_ids(t_, name, expected_shape(name), config().num_experts);
}

// A value for `full`: the target's own tensor when it dumped it, else the reference's
// recomputation from the target's nearest tensors, perturbed by the honest noise of its step.
std::optional<TeacherForcing::Val> TeacherForcing::value(const std::string& full, Ctx& ctx) {
  if (t_.has(full)) {
    ctx.note(ctx.read, full);
    Val v;
    const int64_t L = layer_of_name(full);
    const std::string n = strip_step(full);
    if (L >= 0 && n.substr(n.find('.', 7) + 1) == "moe.topk_ids") {
      const std::vector<int64_t> ids = read_ids_checked(full);
      v.x = Tensor<double>(expected_shape(full));
      for (size_t i = 0; i < ids.size(); ++i) v.x.data[i] = double(ids[i]);
    } else {
      v.x = read_checked(full);
    }
    return v;
  }
  if (auto it = kv_memo_.find(full); it != kv_memo_.end()) {
    ctx.note(ctx.composed, full);
    return *it->second;
  }
  if (ctx.depth > 64) return std::nullopt;  // no chain of the table is this long
  Replay meta;
  ++ctx.depth;
  std::optional<Val> v = compute(full, ctx, &meta);
  --ctx.depth;
  if (!v) return std::nullopt;
  ctx.note(ctx.composed, full);
  // The honest error an engine's own computation of this step would carry: its derived local
  // budget without the safety factor (tolerance.h), as a relative perturbation per element.
  BudgetInputs bi;
  bi.op = op_of(config().family, full);
  bi.u_target = u_run_;
  bi.numel = v->x.numel();
  bi.reduction_k = meta.reduction_k;
  bi.gain = meta.gain;
  bi.experts_per_token = config().num_experts_per_tok;
  const double rms = derived_local_budget(bi).limit / safety_factor(u_run_, bi.numel);
  if (!v->noisy) v->xn = v->x;
  std::mt19937_64 rng(name_seed(full));
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  for (double& y : v->xn.data) y *= 1.0 + std::sqrt(3.0) * rms * uni(rng);
  v->noisy = true;
  const std::string n = strip_step(full);
  if (n.size() > 11 && (n.ends_with(std::string(".") + dataflow::cached_key_step(config().family)) || n.ends_with(".attn.v")))
    kv_memo_[full] = std::make_unique<Val>(*v);
  return v;
}

std::optional<Replay> TeacherForcing::replay(const std::string& full) {
  Ctx ctx;
  Replay r;
  std::optional<Val> v = compute(full, ctx, &r);
  if (!v) return std::nullopt;
  r.value = std::move(v->x);
  r.read = std::move(ctx.read);
  r.composed = std::move(ctx.composed);
  if (v->noisy) r.composed_noise = rel_rows(v->xn, r.value, &r.composed_noise_tokens);
  return r;
}

// The reference function of one step (a row of the dataflow table) on values of its inputs.
std::optional<TeacherForcing::Val> TeacherForcing::compute(const std::string& full, Ctx& ctx, Replay* meta) {
  int64_t step = 0;
  const std::string name = strip_step(full, &step);
  const std::string pre = step > 0 ? names::step(step, "") : "";
  const std::vector<int64_t> pos = positions_of(step);
  const ModelConfig& c = config();
  const double eps = c.rms_norm_eps;
  const Numerics num{Precision::exact, threads_};
  const int64_t L = layer_of_name(name);
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;

  // Values of the inputs, by full name.
  std::vector<Val> in;
  auto get = [&](const std::string& n) {
    std::optional<Val> v = value(n, ctx);
    if (!v) return false;
    in.push_back(std::move(*v));
    return true;
  };
  const std::string src = dataflow::kKvSource;
  auto layer_name = [&](const std::string& s) {
    if (s == dataflow::kPrevOut) return pre + (L == 0 ? std::string("embed") : names::layer(L - 1, "out"));
    if (s.rfind(src, 0) == 0) return pre + names::layer(c.kv_source(L), s.substr(src.size()));
    return pre + names::layer(L, s);
  };
  // f on the exact inputs and, when one of them carries perturbation, on the perturbed ones.
  auto both = [&](const auto& f) {
    Val out;
    std::vector<const Tensor<double>*> a;
    bool noisy = false;
    for (const Val& v : in) a.push_back(&v.x), noisy = noisy || v.noisy;
    out.x = f(a);
    if (noisy) {
      a.clear();
      for (const Val& v : in) a.push_back(&v.n());
      out.xn = f(a);
      out.noisy = true;
    }
    return std::optional<Val>(std::move(out));
  };
  // y = x·Wᵀ, with x quantized to FP8 first in the W8A8 mode when the weight has an input scale.
  auto lin = [&](const Tensor<double>& w, std::vector<int64_t> shape, double input_scale = 0) {
    meta->reduction_k = w.cols();
    auto f = [&, shape, input_scale](const std::vector<const Tensor<double>*>& a) {
      Tensor<double> y = fp8_ && input_scale > 0 ? dev_->linear(quantize_activation_fp8(*a[0], input_scale), w)
                                                 : dev_->linear(*a[0], w);
      y.shape = shape;
      return y;
    };
    auto v = both(f);
    if (ctx.depth == 0)  // the judged step: its conditioning sets the accumulation budget
      meta->kappa = dev_->dot_conditioning(in[0].x, w);
    return v;
  };
  auto norm = [&](const Tensor<double>& w, int64_t width) {
    return both([&](const std::vector<const Tensor<double>*>& a) {
      Tensor<double> x = *a[0];
      const auto shape = x.shape;
      x.shape = {x.numel() / width, width};
      Tensor<double> y = rms_norm(x, w, eps, num);
      y.shape = shape;
      return y;
    });
  };
  auto add = [&]() {
    return both([&](const std::vector<const Tensor<double>*>& a) {
      Tensor<double> y = *a[0];
      for (size_t i = 0; i < y.data.size(); ++i) y.data[i] += a[1]->data[i];
      return y;
    });
  };

  if (name == "embed") {
    std::vector<int64_t> ids;
    if (t_.has(pre + "input_ids")) ids = t_.read_ints(pre + "input_ids"), ctx.note(ctx.read, pre + "input_ids");
    else if (step == 0) ids = t_.token_ids();
    else if (t_.has("generate.tokens")) {
      const std::vector<int64_t> g = t_.read_ints("generate.tokens");
      if (int64_t(g.size()) < step) return std::nullopt;
      ids = {g[size_t(step - 1)]};
      ctx.note(ctx.read, "generate.tokens");
    } else {
      return std::nullopt;
    }
    if (int64_t(ids.size()) != rows_of(step)) return std::nullopt;
    Val v;
    v.x = embedding_rows(ids);
    return v;
  }
  if (name == "final_norm") {
    if (!get(pre + names::layer(c.num_hidden_layers - 1, "out"))) return std::nullopt;
    load_head();
    return norm(final_norm_, c.hidden_size);
  }
  if (name == "logits") {
    if (!get(pre + "final_norm")) return std::nullopt;
    load_head();
    return lin(lm_head_, {rows_of(step), c.vocab_size});
  }
  if (L < 0 || L >= c.num_hidden_layers) return std::nullopt;
  const std::string s = name.substr(name.find('.', 7) + 1);
  const dataflow::Step* st = dataflow::find_step(c.family, s, kind(L));
  if (!st || st->role != dataflow::Role::activation) return std::nullopt;  // ids: judged as routing
  if (s == "attn.context") {
    // The cache: this step's rows for the prefill; prefill rows then steps 1..S for a decode step.
    // Keys are the layer's own cached rows (the table's cached_key_step); values are attn.v of
    // the layer's KV source (itself, or for a cross layer the layer whose K/V it reads).
    if (!get(layer_name(st->inputs[0]))) return std::nullopt;
    std::vector<int64_t> kpos;
    Val k, v;
    for (int64_t s2 = 0; s2 <= step; ++s2) {
      const std::string p2 = s2 > 0 ? names::step(s2, "") : "";
      std::optional<Val> ks = value(p2 + names::layer(L, dataflow::cached_key_step(c.family)), ctx);
      std::optional<Val> vs = value(p2 + names::layer(c.kv_source(L), "attn.v"), ctx);
      if (!ks || !vs) return std::nullopt;
      for (int64_t p : positions_of(s2)) kpos.push_back(p);
      if (s2 == 0) {
        k = std::move(*ks), v = std::move(*vs);
        continue;
      }
      for (auto [dst, src] : {std::pair{&k, &*ks}, std::pair{&v, &*vs}}) {
        if (src->noisy && !dst->noisy) dst->xn = dst->x, dst->noisy = true;
        append_rows(dst->x, src->x);
        if (dst->noisy) append_rows(dst->xn, src->n());
      }
    }
    if (step == 0) kpos = pos;
    in.push_back(std::move(k));
    in.push_back(std::move(v));
    meta->gain = dev_->attention_gain(in[0].x, in[1].x, in[2].x, pos, kpos);
    // P·V sums over up to Tk keys (and Q·K over d): accumulation error grows like √K·u_acc,
    // which the rounding gain above does not cover (it matters for fp32 targets at long T).
    meta->reduction_k = std::max<int64_t>(in[1].x.dim(0), d);
    return both([&](const std::vector<const Tensor<double>*>& a) {
      return dev_->attention(*a[0], *a[1], *a[2], pos, kpos);
    });
  }
  for (const std::string& i : st->inputs)
    if (!get(layer_name(i))) return std::nullopt;
  const int64_t T = rows_of(step);
  if (s == "input_norm") return norm(layer(L).input_norm, c.hidden_size);
  if (s == "attn.q") return lin(layer(L).wq, {T, nq, d}, layer(L).wq_in);
  if (s == "attn.k") return lin(layer(L).wk, {T, nkv, d}, layer(L).wk_in);
  if (s == "attn.v") return lin(layer(L).wv, {T, nkv, d}, layer(L).wv_in);
  if (s == "attn.q_norm") return norm(layer(L).q_norm, d);
  if (s == "attn.k_norm") return norm(layer(L).k_norm, d);
  if (s == "attn.q_rope" || s == "attn.k_rope") {
    const RopeTable<double> table = rope_table<double>(pos, d, c.rope_base(), num);
    return both([&](const std::vector<const Tensor<double>*>& a) {
      Tensor<double> y = *a[0];
      apply_rope(y, table);
      return y;
    });
  }
  if (s == "attn.out") {
    std::optional<Val> y = lin(layer(L).wo, {T, c.hidden_size}, layer(L).wo_in);
    if (ctx.depth == 0) meta->inputs.push_back(std::move(in[0].x));
    return y;
  }
  if (s == "resid_mid" || s == "out" || (s == "mlp.out" && moe(L))) return add();
  if (s == "post_norm") return norm(layer(L).post_norm, c.hidden_size);
  if (s == "mlp.out") {
    meta->reduction_k = c.intermediate_size;
    return both([&](const std::vector<const Tensor<double>*>& a) { return dev_->mlp(*a[0], layer(L).mlp, fp8_); });
  }
  if (s == "moe.router_logits") return lin(layer(L).router, {T, c.num_experts});
  if (s == "moe.scores" && c.router == RouterKind::softmax)
    return both([&](const std::vector<const Tensor<double>*>& a) {
      Tensor<double> y = *a[0];
      const int64_t E = c.num_experts;
      for (int64_t i = 0; i < y.numel() / E; ++i) {
        double* r = y.data.data() + i * E;
        const double mx = *std::max_element(r, r + E);
        double sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += r[e] = std::exp(r[e] - mx);
        for (int64_t e = 0; e < E; ++e) r[e] /= sum;
      }
      return y;
    });
  if (s == "moe.scores")
    return both([&](const std::vector<const Tensor<double>*>& a) {
      Tensor<double> y = *a[0];
      for (double& x : y.data) x = 1.0 / (1.0 + std::exp(-x));
      return y;
    });
  if (s == "moe.shared_out") {
    if (c.shared_width() == 0) return std::nullopt;
    meta->reduction_k = c.shared_width();
    return both([&](const std::vector<const Tensor<double>*>& a) { return dev_->mlp(*a[0], layer(L).shared, fp8_); });
  }
  const int64_t k = c.num_experts_per_tok, E = c.num_experts;
  if (s == "moe.topk_weights")
    return both([&](const std::vector<const Tensor<double>*>& a) {
      const Tensor<double>& sc = *a[0];
      const Tensor<double>& ids = *a[1];
      Tensor<double> y({T, k});
      for (int64_t i = 0; i < T; ++i) {
        double sum = 0;
        for (int64_t j = 0; j < k; ++j) sum += sc.data[size_t(i * E + int64_t(ids.data[size_t(i * k + j)]))];
        // hy_v3 adds 1e-20 to the sum (docs/model.md §4.6); the softmax router divides by it alone.
        const double denom = !c.route_norm ? 1.0 : c.router == RouterKind::softmax ? sum : sum + 1e-20;
        for (int64_t j = 0; j < k; ++j)
          y.data[size_t(i * k + j)] =
              sc.data[size_t(i * E + int64_t(ids.data[size_t(i * k + j)]))] / denom * c.router_scaling_factor;
      }
      return y;
    });
  if (s == "moe.routed_out") {
    meta->reduction_k = c.moe_intermediate_size;
    std::optional<Val> y = both([&](const std::vector<const Tensor<double>*>& a) {
      RouterOutput<double> ro;
      for (double x : a[1]->data) ro.ids.push_back(int64_t(x));
      ro.weights = *a[2];
      ro.k = k;
      return dev_->routed_experts(*a[0], ro, layer(L).experts, fp8_);
    });
    if (ctx.depth == 0)
      for (Val& v : in) meta->inputs.push_back(std::move(v.x));
    return y;
  }
  return std::nullopt;
}

// Part scales (part_scale.h). attn.out: C_h = context[:, h·d:(h+1)·d] · W_o[:, h·d:(h+1)·d]ᵀ;
// moe.routed_out: C_e[t] = w[t, j] · Expert_e(u_t) for every (t, j) with ids[t, j] = e.
std::vector<PartScale> TeacherForcing::part_scales(const std::string& full, const Replay& rp, const Tensor<double>& target) {
  const std::string name = strip_step(full);
  const int64_t L = layer_of_name(name);
  if (L < 0 || target.numel() != rp.value.numel()) return {};
  const std::string s = name.substr(name.find('.', 7) + 1);  // after "layers.L."
  const ModelConfig& c = config();
  const int64_t H = c.hidden_size;
  Tensor<double> e({target.numel() / H, H});
  for (size_t i = 0; i < e.data.size(); ++i) e.data[i] = target.data[i] - rp.value.data[i];
  const int64_t T = e.rows();
  auto composed = [&](int64_t t) {
    return size_t(t) < rp.composed_noise_tokens.size() ? rp.composed_noise_tokens[size_t(t)] : 0.0;
  };
  if (s == "attn.out" && rp.inputs.size() == 1) {
    const int64_t nq = c.num_attention_heads, d = c.head_dim;
    const Tensor<double>& ctx = rp.inputs[0];
    if (ctx.numel() != T * nq * d) return {};
    const Tensor<double>& wo = layer(L).wo;  // [H, nq·d]
    PartScaleFit fit(nq, e);
    for (int64_t h = 0; h < nq; ++h) {
      Tensor<double> xh({T, d}), wh({H, d});
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < d; ++i) xh.data[size_t(t * d + i)] = ctx.data[size_t(t * nq * d + h * d + i)];
      for (int64_t o = 0; o < H; ++o)
        for (int64_t i = 0; i < d; ++i) wh.data[size_t(o * d + i)] = wo.data[size_t(o * nq * d + h * d + i)];
      const Tensor<double> ch = dev_->linear_once(xh, wh);
      for (int64_t t = 0; t < T; ++t) fit.add(h, t, ch.row(t), composed(t));
    }
    return fit.fits();
  }
  if (s == "moe.routed_out" && rp.inputs.size() == 3) {
    const int64_t k = c.num_experts_per_tok, E = c.num_experts;
    const Tensor<double>& u = rp.inputs[0];
    const Tensor<double>& ids = rp.inputs[1];
    const Tensor<double>& w = rp.inputs[2];
    if (u.numel() != T * H || ids.numel() != T * k || w.numel() != T * k) return {};
    PartScaleFit fit(E, e);
    for (int64_t ex = 0; ex < E; ++ex) {
      std::vector<std::pair<int64_t, double>> rows;  // (token, weight)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < k; ++j)
          if (int64_t(ids.data[size_t(t * k + j)]) == ex) rows.push_back({t, w.data[size_t(t * k + j)]});
      if (rows.empty()) continue;
      Tensor<double> x({int64_t(rows.size()), H});
      for (size_t r = 0; r < rows.size(); ++r) std::copy_n(u.row(rows[r].first), H, x.row(int64_t(r)));
      const Tensor<double> y = dev_->expert(x, layer(L).experts, ex, fp8_);
      std::vector<double> cr(static_cast<size_t>(H));
      for (size_t r = 0; r < rows.size(); ++r) {
        for (int64_t i = 0; i < H; ++i) cr[size_t(i)] = rows[r].second * y.row(int64_t(r))[i];
        fit.add(ex, rows[r].first, cr.data(), composed(rows[r].first));
      }
    }
    return fit.fits();
  }
  return {};
}

}  // namespace hyoracle::compare
