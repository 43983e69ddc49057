// compare.cpp: the walk over two dumps in execution order (COMPARE.md §5-6, §10).
#include "compare/compare.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "reference/dataflow.h"
#include "compare/graph.h"
#include "compare/logits.h"
#include "reference/names.h"
#include "compare/pattern.h"
#include "compare/routing.h"
#include "compare/stream.h"
#include "compare/teacher_forcing.h"

namespace hyoracle::compare {

std::string verdict_name(Verdict v) {
  switch (v) {
    case Verdict::pass: return "pass";
    case Verdict::fail: return "fail";
    case Verdict::incomplete: return "incomplete";
    case Verdict::skipped: return "skipped";
  }
  return "?";
}

int exit_code(const Report& r) {
  if (!r.error.empty()) return 2;
  if (r.verdict == Verdict::fail) return 1;
  if (r.verdict == Verdict::pass) return 0;
  return 2;
}

namespace {

std::string coord(const std::vector<int64_t>& c) { return shape_str(c); }

std::string fmtg(double x, const char* f = "%.3g") {
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

// One-line error for a NaN in a dump: `count` NaN values, the first at `first`.
// A NaN in a dump. In the baseline it is bad input (exit 2); in the target it is the engine's
// failure, judged at that tensor (Walk::run catches it: verdict fail, exit 1).
struct NanInDump : Error {
  NanInDump(const Dump& d, const std::string& tensor, const std::string& message)
      : Error(message), dump(&d), tensor(tensor) {}
  const Dump* dump;
  std::string tensor;
};

void reject_nan(const Dump& d, const std::string& name, int64_t count, const std::vector<int64_t>& first) {
  if (count > 0)
    throw NanInDump(d, name, d.file_of(name) + ": tensor \"" + name + "\" has NaN at " + coord(first) + " (" +
                                 std::to_string(count) + " NaN value(s))");
}

// The same for a tensor read whole.
void reject_nan(const Dump& d, const std::string& name, const Tensor<double>& x) {
  for (int64_t i = 0; i < x.numel(); ++i)
    if (std::isnan(x.data[i])) {
      int64_t count = 0;
      for (double v : x.data) count += std::isnan(v);
      throw NanInDump(d, name, d.file_of(name) + ": tensor \"" + name + "\" has NaN at " + coord(unravel(i, x.shape)) +
                                   " (" + std::to_string(count) + " NaN value(s))");
    }
}

// The unit roundoff a side computed `name` in: the stored dtype, widened to the run's activation
// dtype (an engine that computes in bf16 and stores F32 still rounded to bf16), except for the
// router's tensors, which HF computes in fp32 whatever the model dtype (docs/model.md §4.6).
double effective_u(const Dump& d, const std::string& name, Family family) {
  const double stored = unit_roundoff(dtype_name(d.info(name).dtype)).value_or(0x1p-53);
  // Tensors every implementation computes in fp32 or wider (the router; the table's wide column)
  // carry the rounding of the dtype they are stored in, not that of the run.
  const dataflow::Step* s = dataflow::step_of_name(family, name);
  if (s && s->wide) return stored;
  const auto run = unit_roundoff(d.producer("dtype"));
  return std::max(stored, run.value_or(stored));
}

double judged_value(const Metrics& m, const std::string& metric) {
  if (metric == "max_abs") return m.max_abs;
  if (metric == "nmse") return m.nmse;
  if (metric == "diff") return m.diff;
  if (metric == "cosine_distance") return 1.0 - m.cosine;
  return m.rel_l2;
}

// Target rows of the k chosen experts re-ordered to the baseline's id order for tokens whose
// sets agree; other tokens take the baseline's values (left out of the metric, counted).
Tensor<double> align_weights(const std::vector<int64_t>& bid, const Tensor<double>& bw, const std::vector<int64_t>& tid,
                             const Tensor<double>& tw, int64_t* excluded) {
  Tensor<double> out = bw;
  const int64_t T = bw.rows(), k = bw.cols();
  *excluded = 0;
  for (int64_t t = 0; t < T; ++t) {
    bool all = true;
    for (int64_t j = 0; j < k && all; ++j) {
      bool found = false;
      for (int64_t i = 0; i < k; ++i)
        if (tid[t * k + i] == bid[t * k + j]) {
          out.data[t * k + j] = tw.data[t * k + i];
          found = true;
        }
      all = found;
    }
    if (!all) {
      ++*excluded;
      std::copy_n(bw.row(t), k, out.row(t));
    }
  }
  return out;
}

// The family and cross-layer sharing of the model the dumps come from: the checkpoint's config
// when there is one, else the manifests' model section (family, or model_type; cla_share_factor).
// Two dumps that name different families cannot be compared; a dump that names none is hy_v3.
std::optional<ModelGraph> manifest_graph(const Dump& d) {
  const nlohmann::json& m = d.manifest();
  if (!m.contains("model") || !m["model"].is_object()) return std::nullopt;
  const nlohmann::json& model = m["model"];
  std::optional<Family> f;
  if (model.contains("family") && model["family"].is_string()) {
    f = family_from_name(model["family"].get<std::string>());
    if (!f) fail(d.dir() + "/manifest.json: model.family is " + model["family"].dump() + ", expected \"hy_v3\" or \"hunyuan_v1\"");
  } else if (model.contains("model_type") && model["model_type"].is_string()) {
    f = family_of_model_type(model["model_type"].get<std::string>());
  }
  if (!f) return std::nullopt;
  ModelGraph g;
  g.family = *f;
  if (model.contains("cla_share_factor")) {
    const nlohmann::json& v = model["cla_share_factor"];
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 4096)
      fail(d.dir() + "/manifest.json: model.cla_share_factor is " + v.dump() + ", expected an integer 1..4096");
    g.cla_share_factor = v.get<int64_t>();
  }
  return g;
}

ModelGraph model_graph(const Dump& b, const Dump& t, const ModelConfig* c) {
  const std::optional<ModelGraph> gb = manifest_graph(b), gt = manifest_graph(t);
  ModelGraph g;
  if (c) {
    g.family = c->family;
    g.cla_share_factor = c->cla_share_factor;
  } else if (gb) {
    g = *gb;
  } else if (gt) {
    g = *gt;
  }
  for (const auto* side : {&gb, &gt})
    if (*side && ((*side)->family != g.family || (*side)->cla_share_factor != g.cla_share_factor)) {
      const Dump& d = side == &gb ? b : t;
      fail(d.dir() + "/manifest.json: model family " + family_name((*side)->family) + " (cla_share_factor " +
           std::to_string((*side)->cla_share_factor) + ") differs from " + family_name(g.family) + " (cla_share_factor " +
           std::to_string(g.cla_share_factor) + ")" + (c ? " of " + c->source : " of the baseline"));
    }
  return g;
}

struct Walk {
  const Dump& b;
  const Dump& t;
  const CompareOptions& opt;
  Report& rep;
  std::unique_ptr<TeacherForcing> tf;
  ModelGraph graph;  // the family's table and cross layers (run() sets it before the walk)
  std::vector<int64_t> positions;
  int64_t num_layers = 0;
  std::map<std::string, double> total_rel;
  std::map<std::string, std::vector<double>> token_rel;
  double last_rel = 0;
  std::map<std::pair<int64_t, int64_t>, std::set<int64_t>> near_tie_tokens;  // (step, layer) -> tokens
  // Per step: tokens whose error is explained by a permitted near-tie routing flip so far in this
  // step's forward (token -> the layer of its first flip).
  std::map<int64_t, std::map<int64_t, int64_t>> explained;
  int64_t gen_divergence = -1;
  std::vector<std::vector<int64_t>> exported_ids;  // routed-experts export, [L][T*k]

  std::string resolve(const std::string& n) const {
    if (n.find("LAST.out") == std::string::npos) return n;
    return n.substr(0, n.find("LAST.out")) + names::layer(num_layers - 1, "out");
  }
  bool is_moe_layer(int64_t L) const {
    if (tf) return L >= 0 && L < tf->config().num_hidden_layers && !tf->config().is_dense(L);
    return b.has(names::layer(L, "moe.routed_out")) || b.has(names::layer(L, "moe.topk_ids"));
  }
  // The inherited error of a step's inputs, from the nearest tensors that were compared: an
  // input the target did not dump stands for its own inputs, amplified by its op (tolerance.h),
  // so a module-only dump's attn.q_norm inherits from input_norm, per token.
  void inherited_of(const std::string& name, size_t T, double gain, int depth, double* worst,
                    std::vector<double>* tokens, bool* any) const {
    // Attention mixes rows: prefill row t reads the keys and values of every row <= t, so its
    // inherited error per token is the largest of its inputs' over rows 0..t (a convex
    // combination of values with per-row errors e_s has error <= max_s e_s, and the softmax
    // weights' error grows with the q/k errors of the same rows). Without this, token 1 of a
    // context was held to its own inputs' error while it averages token 0's.
    if (tokens && T > 1 && op_of(graph.family, name) == "attention") {
      std::vector<double> own(T, 0.0);
      inherited_inputs(name, T, gain, depth, worst, &own, any);
      for (size_t i = 1; i < T; ++i) own[i] = std::max(own[i], own[i - 1]);
      for (size_t i = 0; i < T; ++i) (*tokens)[i] = std::max((*tokens)[i], own[i]);
      return;
    }
    inherited_inputs(name, T, gain, depth, worst, tokens, any);
  }
  void inherited_inputs(const std::string& name, size_t T, double gain, int depth, double* worst,
                        std::vector<double>* tokens, bool* any) const {
    for (const std::string& raw : step_inputs(graph, name, is_moe_layer(layer_of_name(name)))) {
      const std::string in = resolve(raw);
      auto it = total_rel.find(in);
      if (it != total_rel.end()) {
        *any = true;
        *worst = std::max(*worst, gain * it->second);
        auto jt = token_rel.find(in);
        if (tokens && jt != token_rel.end() && jt->second.size() == T)
          for (size_t i = 0; i < T; ++i) (*tokens)[i] = std::max((*tokens)[i], gain * jt->second[i]);
        else if (tokens)
          for (double& v : *tokens) v = std::max(v, gain * it->second);
      } else if (depth < 16 && !t.has(in)) {
        inherited_of(in, T, gain * amplification(op_of(graph.family, in)), depth + 1, worst, tokens, any);
      }
    }
  }
  // Whether a RoPE step ran between `name` and the nearest compared tensors upstream without
  // being dumped by the target (a module-only dump has no q_rope / k_rope): its fp32 angle drift
  // then reaches `name` unbudgeted by any compared tensor.
  bool undumped_rope_upstream(const std::string& name, int depth = 0) const {
    for (const std::string& raw : step_inputs(graph, name, is_moe_layer(layer_of_name(name)))) {
      const std::string in = resolve(raw);
      if (total_rel.count(in) || t.has(in) || depth >= 16) continue;
      if (op_of(graph.family, in) == "rope" || undumped_rope_upstream(in, depth + 1)) return true;
    }
    return false;
  }
  double inherited_input(const std::string& name) const {
    double worst = 0;
    bool any = false;
    inherited_of(name, 0, 1.0, 0, &worst, nullptr, &any);
    return any ? worst : last_rel;
  }
  std::vector<double> inherited_tokens(const std::string& name, size_t T) const {
    std::vector<double> v(T, 0.0);
    double worst = 0;
    bool any = false;
    inherited_of(name, T, 1.0, 0, &worst, &v, &any);
    if (!any) std::fill(v.begin(), v.end(), last_rel);
    return v;
  }
  // The baseline ran other input than the target from this decode step on (its greedy tokens
  // parted earlier): only teacher-forced (local) judgements are possible there.
  bool after_token_divergence(int64_t step) const { return step > 0 && gen_divergence >= 0 && step > gen_divergence; }

  void record_failure(const TensorResult& r) {
    if (!rep.first_divergence) rep.first_divergence = Divergence{r.name, r.layer, r.reason};
  }

  void run();
  void compare_tensor(const std::string& name);
  void compare_routing(const std::string& name);
  void compare_generation(const std::string& name);
  void excuse_generation_after_near_tie();
  void judge(TensorResult& r, const Metrics& judged, const BudgetInputs& bi, bool local,
             const std::vector<double>& inh_tok);
};

void Walk::judge(TensorResult& r, const Metrics& m, const BudgetInputs& bi, bool local,
                 const std::vector<double>& inh_tok) {
  Budget derived = local ? derived_local_budget(bi) : derived_total_budget(bi, r.inherited_input);
  // The composed noise is the honest rounding of every recomputed step, simulated at its modelled
  // RMS and propagated exactly (teacher_forcing.h): an estimate of the engine's own noise there,
  // not a bound on it, so it is added once; the safety factor c stays on the step's own term.
  if (local && r.composed_noise > 0) {
    derived.limit += r.composed_noise;
    derived.derivation += " + composed noise " + fmtg(r.composed_noise) + " (recomputed: " +
                          std::to_string(r.replay_composed.size()) + " step(s) the target did not dump)";
  }
  const int rule = opt.rules.find(r.name);
  if (rule < 0 && !opt.rules.use_derived_defaults) {
    r.verdict = Verdict::incomplete;
    r.reason = "no rule in " + opt.rules.source + " matches this tensor (rules fail closed)";
    r.budget = derived;
    r.budget.rule = "none";
    return;
  }
  r.budget = rule >= 0 ? apply_rule(opt.rules, rule, derived) : derived;
  r.judged_on = local ? "local" : "total";
  r.judged_error = judged_value(m, r.budget.metric);
  r.budget_units = r.budget.limit > 0 ? r.judged_error / r.budget.limit : (r.judged_error > 0 ? INFINITY : 0);
  r.min_passing = r.judged_error;
  // Per-token gate: 3× the local budget (a per-token estimate over one row is noisier), plus the
  // token's own inherited error when judged on total.
  int64_t bad_token = -1;
  double bad_val = 0, bad_lim = 0;
  std::vector<double> token_limits;
  if (r.budget.metric == "rel_l2" && r.budget.token_limit > 0) {
    token_limits.reserve(m.token_rel_l2.size());
    const double local_part = local ? r.budget.limit : r.budget.limit - amplification(bi.op) * std::max(0.0, r.inherited_input);
    for (size_t i = 0; i < m.token_rel_l2.size(); ++i) {
      const double own = local ? r.budget.limit - r.composed_noise : local_part;
      // one row's composed noise is a noisier estimate than the tensor's: 2× it per token
      const double extra = i < inh_tok.size() ? (local ? 2.0 : amplification(bi.op)) * inh_tok[i] : 0.0;
      const double lim = 3.0 * std::max(own, 0.0) + extra;
      token_limits.push_back(lim);
      const double scale = r.budget.limit > 0 ? r.budget.limit / std::max(lim, 1e-300) : 1;
      r.min_passing = std::max(r.min_passing, m.token_rel_l2[i] * scale);
      if (m.token_rel_l2[i] > lim && (bad_token < 0 || m.token_rel_l2[i] / lim > bad_val / bad_lim)) {
        bad_token = int64_t(i);
        bad_val = m.token_rel_l2[i];
        bad_lim = lim;
      }
    }
  }
  if (m.inf_mismatched > 0) {
    r.verdict = Verdict::fail;
    r.reason = std::to_string(m.inf_mismatched) + " Inf value(s) differ in position or sign, first at " +
               coord(m.first_inf_mismatch_at);
  } else if (r.judged_error > r.budget.limit) {
    r.verdict = Verdict::fail;
    r.reason = std::string(local ? "added (local) " : "total ") + r.budget.metric + " " + fmtg(r.judged_error) +
               " > limit " + fmtg(r.budget.limit) + " (" + fmtg(r.budget_units, "%.1f") + "× budget); max |e| " +
               fmtg(m.max_abs) + " at " + coord(m.max_abs_at) + " (" + fmtg(m.max_abs_ref, "%.6g") + " vs " +
               fmtg(m.max_abs_target, "%.6g") + ")";
  } else if (bad_token >= 0) {
    r.verdict = Verdict::fail;
    r.reason = std::string(local ? "added" : "total") + " rel-L2 at token " + std::to_string(bad_token) + " is " +
               fmtg(bad_val) + " > per-token limit " + fmtg(bad_lim);
  } else if (const PartScale* p = worst_part(r.part_scales, bi.u_target, kPartScaleZ)) {
    r.verdict = Verdict::fail;
    r.reason = r.part_kind + " " + std::to_string(p->part) + "'s part is scaled by 1 " + (p->alpha < 0 ? "− " : "+ ") +
               fmtg(std::fabs(p->alpha)) + " (" + fmtg(std::fabs(p->z()), "%.0f") + " standard errors over " +
               std::to_string(p->rows) + " row(s); rounding allows |α| ≤ max(u " + fmtg(bi.u_target) + ", " +
               fmtg(kPartScaleZ, "%.0f") + "σ " + fmtg(kPartScaleZ * p->sigma) + "))";
  } else {
    r.verdict = Verdict::pass;
  }
  // The reports plot a failing tensor's per-token errors against these; passing ones need not keep them.
  if (r.verdict == Verdict::fail) r.token_limits = std::move(token_limits);
  // Cause hints (heuristics, labelled as such in the reports).
  if (r.verdict == Verdict::fail) {
    if (m.cosine > 1 - 1e-4 && std::fabs(m.norm_ratio - 1) > 2 * r.budget.limit)
      r.hints.push_back("cosine ≈ 1 but norm ratio " + fmtg(m.norm_ratio, "%.4g") + ": a scale factor (missing, extra or wrong)");
    if (m.token_rel_l2.size() > 2 && m.token_rel_l2[0] <= r.budget.limit && m.token_rel_l2.back() > r.budget.limit)
      r.hints.push_back("position 0 agrees, later positions do not: RoPE pairing/angles or the KV cache");
    if (bi.op == "rope") r.hints.push_back("RoPE step: check rotate-half (j ↔ j+d/2) vs interleaved pairing, θ, positions");
    if (bi.op == "rms_norm" && r.name.find("_norm") != std::string::npos && layer_of_name(r.name) >= 0 &&
        r.name.find("attn.") != std::string::npos)
      r.hints.push_back("per-head q/k norm: applied before RoPE? shared weight per head?");
  }
}

void Walk::compare_tensor(const std::string& name) {
  const TensorInfo& bi_info = b.info(name);
  const TensorInfo& ti_info = t.info(name);
  if (bi_info.shape != ti_info.shape)
    fail(t.file_of(name) + ": tensor \"" + name + "\" has shape " + shape_str(ti_info.shape) + ", baseline " +
         b.file_of(name) + " has " + shape_str(bi_info.shape));
  if (tf) {
    const std::vector<int64_t> want = tf->expected_shape(name);
    if (!want.empty() && ti_info.shape != want)
      fail(t.file_of(name) + ": tensor \"" + name + "\" has shape " + shape_str(ti_info.shape) + "; expected " +
           shape_str(want) + " from " + opt.model_dir + "/config.json and the dump's " + std::to_string(positions.size()) +
           " prompt tokens");
  }
  rep.bytes_read += double(bi_info.end - bi_info.begin) + double(ti_info.end - ti_info.begin);

  TensorResult r;
  r.name = name;
  r.layer = layer_of_name(name);
  strip_step(name, &r.step);
  r.op = op_of(graph.family, name);
  r.shape = bi_info.shape;
  r.baseline_dtype = dtype_name(bi_info.dtype);
  r.target_dtype = dtype_name(ti_info.dtype);
  const std::string base = strip_step(name);
  const int64_t L = r.layer;
  // From the first decode step whose input token differs on the two sides, the baseline's tensor
  // is the model on other input: only the teacher-forced replay on the target's own tokens and
  // cache can judge it.
  r.total_comparable = !after_token_divergence(r.step);

  // moe.topk_weights is rearranged before it is compared (keyed by expert id: HF does not sort its
  // top-k), so it is read whole (it is small: [T, k]). Every other tensor streams from the mapped
  // dumps, a chunk at a time (stream.h); of generate.logits only the rows up to the first differing
  // token are comparable, so only that prefix is compared, and the rest is still scanned for NaN.
  const bool is_weights = base.find("moe.topk_weights") != std::string::npos;
  Tensor<double> bt, tt;
  std::vector<int64_t> shape = bi_info.shape;
  int64_t prefix = -1;
  if (base == "generate.logits" && r.step == 0 && gen_divergence >= 0 && shape.size() == 2 &&
      shape[0] > gen_divergence + 1) {
    shape[0] = gen_divergence + 1;
    prefix = numel_of(shape);
    for (const Dump* d : {&b, &t}) {
      int64_t count = 0;
      const int64_t at = first_nan_after(*d, name, prefix, &count);
      if (at >= 0) reject_nan(*d, name, count, unravel(at, bi_info.shape));
    }
  }
  if (is_weights) {
    bt = b.read(name);
    tt = t.read(name);
    reject_nan(b, name, bt);
    reject_nan(t, name, tt);
    const std::string ids = names::layer(L, "moe.topk_ids");
    const std::string pre = r.step > 0 ? names::step(r.step, "") : "";
    if (r.total_comparable && b.has(pre + ids) && t.has(pre + ids))
      tt = align_weights(b.read_ints(pre + ids), bt, t.read_ints(pre + ids), tt, &r.excluded_tokens);
    shape = bt.shape;
  }
  const TensorSource bsrc = is_weights ? TensorSource(bt) : TensorSource(b, name, prefix);
  const TensorSource tsrc = is_weights ? TensorSource(tt) : TensorSource(t, name, prefix);
  if (r.total_comparable) {
    r.total = stream_compare(bsrc, tsrc, shape);
    reject_nan(b, name, r.total.nan_ref, r.total.first_nan_ref_at);
    reject_nan(t, name, r.total.nan_target, r.total.first_nan_target_at);
  } else {
    // Only the target is read here; a NaN in it is still a failed engine.
    const Metrics self = stream_compare(tsrc, tsrc, shape);
    reject_nan(t, name, self.nan_ref, self.first_nan_ref_at);
  }
  r.inherited_input = inherited_input(name);
  const int64_t numel = numel_of(shape);
  const int64_t cols = shape.empty() ? 1 : shape.back();

  BudgetInputs bi;
  bi.op = r.op;
  bi.u_target = std::max(effective_u(t, name, graph.family), effective_u(b, name, graph.family));
  bi.numel = numel;
  bi.experts_per_token = tf ? tf->config().num_experts_per_tok : 8;

  // RMSNorm reduces Σu² over its last axis (all terms positive: κ = 1).
  if (r.op == "rms_norm") bi.reduction_k = cols;
  // RoPE: fp32 angles on either side drift with position (budget term, tolerance.h). A recomputed
  // RoPE inside a composed replay, or one the target ran without dumping it (Hunyuan's q_norm
  // follows RoPE; a module-only dump has no q_rope), carries the same drift: the term applies
  // wherever RoPE ran.
  std::optional<Replay> rp;
  if (tf) rp = tf->replay(name);
  const bool rope_inside = r.op == "rope" || (rp && std::any_of(rp->composed.begin(), rp->composed.end(), [&](const std::string& n) {
                                                return op_of(graph.family, n) == "rope";
                                              })) ||
                           (!rp && undumped_rope_upstream(name));
  if (rope_inside && (b.producer("precision") != "exact" || t.producer("precision") != "exact")) {
    std::vector<int64_t> pos = positions;
    if (r.step > 0 && !positions.empty()) pos = {positions.back() + r.step};  // decode step S feeds position T+S-1
    const double theta = tf ? tf->config().rope_base() : 11158840.0;  // without --model: hy_v3's θ (the fastest angle, pos, does not depend on θ)
    const int64_t d = tf ? tf->config().head_dim : (shape.size() == 3 ? shape[2] : 128);
    bi.rope_angle_rms = rope_angle_rms(pos, d, theta);
  }
  if (rp) {
    if (rp->value.numel() != numel)
      fail(t.file_of(name) + ": tensor \"" + name + "\" has " + std::to_string(numel) +
           " elements, the reference step on the target's inputs gives " + std::to_string(rp->value.numel()));
    rp->value.shape = shape;
    r.replay_read = rp->read;
    r.replay_composed = rp->composed;
    r.composed_noise = rp->composed_noise;
    // local: the target in its own order (topk_weights unaligned) against the replayed step.
    r.local = stream_compare(TensorSource(rp->value), is_weights ? TensorSource(t.read(name)) : TensorSource(t, name, prefix), shape);
    if (r.total_comparable) r.inherited = stream_compare(bsrc, TensorSource(rp->value), shape).rel_l2;
    if (is_weights) r.inherited = NAN;  // orders differ; see routing
    if (!rp->inputs.empty()) {
      r.part_scales = tf->part_scales(name, *rp, t.read(name));
      r.part_kind = base.find("attn.out") != std::string::npos ? "head" : "expert";
    }
    if (rp->reduction_k) bi.reduction_k = rp->reduction_k;
    bi.kappa = rp->kappa;
    bi.gain = rp->gain;
    judge(r, *r.local, bi, true, rp->composed_noise_tokens);
  } else if (!r.total_comparable) {
    rep.skipped.push_back({name, "decode step after the generated tokens part, and no teacher-forced replay (" +
                                     std::string(tf ? "an input is missing from the target" : "no --model") + ")"});
    return;
  } else {
    // Model-free: leave tokens whose error a permitted near-tie routing flip explains out of the
    // judged total of every tensor after the flip (their target rows take the baseline's values).
    Metrics judged = r.total;
    std::set<int64_t> rows;
    if (auto it = explained.find(r.step); it != explained.end() && (L >= 0 || base == "final_norm" || base == "logits"))
      for (auto [tok, flip_layer] : it->second)
        if (L < 0 || flip_layer <= L) rows.insert(tok);
    const bool row_shaped = !shape.empty() && (r.step > 0 ? shape[0] == 1 : shape[0] == int64_t(positions.size()));
    if (!rows.empty() && row_shaped && !is_weights) {
      StreamOptions so;
      so.reference_rows = &rows;
      r.excluded_tokens = int64_t(rows.size());
      judged = stream_compare(bsrc, tsrc, shape, so);
    }
    if (r.op == "linear" || r.op == "swiglu" || r.op == "ffn" || r.op == "routed_experts") bi.reduction_k = cols;
    judge(r, judged, bi, false, inherited_tokens(name, judged.token_rel_l2.size()));
    r.total = judged.n ? r.total : judged;
  }
  if (r.total_comparable) {
    // The total rule, always (first_total_divergence; the verdict when there is no teacher forcing).
    if (!rep.first_total_divergence) {
      const Budget tb = derived_total_budget(bi, r.inherited_input);
      if (r.total.rel_l2 > tb.limit)
        rep.first_total_divergence = Divergence{name, L, "total rel-L2 " + fmtg(r.total.rel_l2) + " > " + fmtg(tb.limit)};
    }
    total_rel[name] = r.total.rel_l2;
    token_rel[name] = r.total.token_rel_l2;
    last_rel = r.total.rel_l2;
  }
  if (r.verdict == Verdict::fail) record_failure(r);
  rep.tensors.push_back(std::move(r));
  // Whole-tensor reads (teacher-forcing inputs, topk_weights) touched mapped pages.
  if (is_weights || rp) {
    b.release_pages();
    t.release_pages();
  }
}

void Walk::compare_routing(const std::string& name) {
  int64_t step = 0;
  strip_step(name, &step);
  const int64_t L = layer_of_name(name);
  const std::string pre = step > 0 ? names::step(step, "") : "";
  auto ln = [&](const std::string& s) { return pre + names::layer(L, s); };
  RoutingInputs in;
  in.layer = L;
  const TensorInfo& bi = b.info(name);
  if (bi.shape.size() != 2 || bi.shape[0] < 0 || bi.shape[1] < 1)
    fail(b.file_of(name) + ": tensor \"" + name + "\" has shape " + shape_str(bi.shape) + "; expected [tokens, k] with k >= 1");
  // Rows: one per prompt token in prefill, one per decode step; the baseline's own row count is
  // checked against that before anything is sized by it.
  if (!positions.empty()) {
    const int64_t rows = step > 0 ? 1 : int64_t(positions.size());
    if (bi.shape[0] != rows)
      fail(b.file_of(name) + ": tensor \"" + name + "\" has " + std::to_string(bi.shape[0]) + " rows; expected " +
           std::to_string(rows) + (step > 0 ? " (one decode step)" : " (one per input token)"));
  }
  in.tokens = bi.shape[0];
  in.k = bi.shape[1];
  // E: the config's, else the width of the baseline's router tensors.
  in.experts = tf ? tf->config().num_experts : 0;
  for (const char* s : {"moe.scores", "moe.router_logits"})
    if (!tf && b.has(ln(s)) && b.info(ln(s)).shape.size() == 2) in.experts = b.info(ln(s)).shape[1];
  if (tf) {
    const std::vector<int64_t> want = tf->expected_shape(name);
    if (bi.shape != want)
      fail(b.file_of(name) + ": tensor \"" + name + "\" has shape " + shape_str(bi.shape) + "; expected " + shape_str(want) +
           " from " + opt.model_dir + "/config.json");
  }
  const std::vector<int64_t> rows_k = bi.shape, rows_e = {in.tokens, in.experts};
  auto read_float = [&](const Dump& d, const std::string& n, const std::vector<int64_t>& want) {
    if (d.info(n).shape != want)
      fail(d.file_of(n) + ": tensor \"" + n + "\" has shape " + shape_str(d.info(n).shape) + "; expected " + shape_str(want));
    Tensor<double> x = d.read(n);
    reject_nan(d, n, x);
    return x;
  };
  const bool reference_comparable = !after_token_divergence(step);
  in.ref_ids = checked_ids(b, name, rows_k, in.experts);
  if (t.has(name)) {
    in.target_ids = checked_ids(t, name, rows_k, in.experts);
  } else {
    in.target_ids = exported_ids.at(size_t(L));
    if (int64_t(in.target_ids.size()) != in.tokens * in.k)
      fail(opt.routed_experts_file + ": routed experts for layer " + std::to_string(L) + " have " +
           std::to_string(in.target_ids.size()) + " ids, expected " + std::to_string(in.tokens * in.k));
    for (int64_t id : in.target_ids)
      if (in.experts > 0 && (id < 0 || id >= in.experts))
        fail(opt.routed_experts_file + ": routed experts for layer " + std::to_string(L) + " hold expert id " +
             std::to_string(id) + "; expected [0, " + std::to_string(in.experts) + ")");
  }
  // The baseline's router values decide which flips are excused: a score outside σ's range [0, 1]
  // or a negative margin would turn any disagreement into a "near tie" (or make the gap NaN).
  auto check_range = [&](const Dump& d, const std::string& n, const std::vector<double>& x, double lo, double hi,
                         const char* expected) {
    for (size_t i = 0; i < x.size(); ++i)
      if (!(x[i] >= lo && x[i] <= hi)) {
        char v[64];
        std::snprintf(v, sizeof v, "%.9g", x[i]);
        fail(d.file_of(n) + ": tensor \"" + n + "\" holds " + v + " at flat index " + std::to_string(i) + "; expected " +
             expected);
      }
  };
  if (b.has(ln("moe.scores"))) {
    in.ref_scores = read_float(b, ln("moe.scores"), rows_e).data;
    check_range(b, ln("moe.scores"), in.ref_scores, 0.0, 1.0,
                graph.family == Family::hy_v3 ? "a sigmoid score in [0, 1]" : "a softmax probability in [0, 1]");
  }
  Tensor<double> logits;
  if (b.has(ln("moe.router_logits"))) {
    logits = read_float(b, ln("moe.router_logits"), rows_e);
    if (in.ref_scores.empty() && graph.family == Family::hy_v3) {
      in.ref_scores = logits.data;
      for (double& x : in.ref_scores) x = 1 / (1 + std::exp(-x));
    } else if (in.ref_scores.empty()) {
      in.ref_scores = logits.data;
      const int64_t E = logits.cols();
      for (int64_t tok = 0; tok < logits.rows(); ++tok) {
        double* r = in.ref_scores.data() + tok * E;
        const double mx = *std::max_element(r, r + E);
        double sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += r[e] = std::exp(r[e] - mx);
        for (int64_t e = 0; e < E; ++e) r[e] /= sum;
      }
    }
    in.softmax = graph.family != Family::hy_v3;
  }
  if (tf) in.expert_bias = tf->expert_bias(L);
  if (b.has(ln("moe.topk_margin"))) {
    in.ref_margin = read_float(b, ln("moe.topk_margin"), {in.tokens}).data;
    check_range(b, ln("moe.topk_margin"), in.ref_margin, 0.0, INFINITY, "a k/k+1 gap >= 0");
  }
  if (b.has(ln("moe.topk_weights")) && t.has(ln("moe.topk_weights"))) {
    in.ref_weights = read_float(b, ln("moe.topk_weights"), rows_k).data;
    in.target_weights = read_float(t, ln("moe.topk_weights"), rows_k).data;
  }
  // Expected router-logit noise per token: what the router GEMM adds at the target's precision plus
  // what the measured input error (post_norm, per token) becomes through it.
  BudgetInputs rb;
  rb.op = "linear";
  rb.u_target = t.has(ln("moe.router_logits")) ? effective_u(t, ln("moe.router_logits"), graph.family)
                                                : unit_roundoff(t.producer("dtype")).value_or(0x1p-8);
  rb.numel = in.tokens * std::max<int64_t>(in.experts, 1);
  rb.reduction_k = tf ? tf->config().hidden_size : 0;
  const double local = derived_local_budget(rb).limit;
  auto it = token_rel.find(ln("post_norm"));
  in.logit_noise.assign(size_t(in.tokens), 0.0);
  for (int64_t tok = 0; tok < in.tokens; ++tok) {
    const double inh = it != token_rel.end() && int64_t(it->second.size()) == in.tokens ? it->second[size_t(tok)] : last_rel;
    double rms = 1.0;
    if (logits.numel()) {
      double ss = 0;
      for (int64_t e = 0; e < logits.cols(); ++e) ss += logits.row(tok)[e] * logits.row(tok)[e];
      rms = std::sqrt(ss / double(logits.cols()));
    }
    in.logit_noise[size_t(tok)] = (amplification("linear") * inh + local) * rms;
  }
  in.ref_unit_roundoff = unit_roundoff(dtype_name(b.info(ln("moe.topk_ids")).dtype)).value_or(0x1p-53);
  if (b.has(ln("moe.scores"))) in.ref_unit_roundoff = unit_roundoff(dtype_name(b.info(ln("moe.scores")).dtype)).value_or(0x1p-53);
  RoutingLayer rl = reference_comparable ? routing_agreement(in) : RoutingLayer{};
  rl.layer = L;
  rl.step = step;
  rl.tokens = in.tokens;
  rl.reference_comparable = reference_comparable;
  // Teacher-forced selection: the target's ids against the top-k of its own router output.
  if (tf && in.experts > 0) {
    for (const char* src : {"moe.router_logits", "moe.scores"}) {
      if (!t.has(ln(src))) continue;
      const Tensor<double> v = read_float(t, ln(src), rows_e);
      const std::string dt = dtype_name(t.info(ln(src)).dtype);
      const double u_dump = unit_roundoff(dt).value_or(0x1p-24);
      forced_routing(v.data, std::string(src) == "moe.router_logits", u_dump, in.expert_bias, in.target_ids, in.tokens,
                     in.experts, in.k, rl, graph.family != Family::hy_v3);
      rl.forced_source = "target " + ln(src) + " (" + dt + ") + checkpoint expert_bias (F32)";
      break;
    }
  }

  TensorResult r;
  r.name = name;
  r.layer = L;
  r.step = step;
  r.op = "routing";
  r.shape = bi.shape;
  r.baseline_dtype = dtype_name(bi.dtype);
  r.target_dtype = t.has(name) ? dtype_name(t.info(name).dtype) : "export";
  r.total_comparable = reference_comparable;
  for (const RoutingFlip& f : rl.flips)
    if (f.near_tie) {
      near_tie_tokens[{step, L}].insert(f.token);
      explained[step].emplace(f.token, L);
    }
  auto list = [](const std::vector<int64_t>& v) {
    std::string s;
    for (int64_t e : v) s += (s.empty() ? "" : ",") + std::to_string(e);
    return s;
  };
  if (rl.forced) {
    r.budget.rule = "routing:teacher-forced";
    r.budget.metric = "selection_errors";
    r.budget.limit = 0;
    r.budget.derivation = "the target's ids must be the top-k of σ(its logits) + expert_bias; only ties within the "
                          "rounding window of the corrected score may go either way";
    r.judged_on = "local";
    r.judged_error = double(rl.forced_mismatches);
    r.min_passing = r.judged_error;
    if (rl.forced_mismatches > 0) {
      const ForcedMismatch& m = rl.forced_list.front();
      r.verdict = Verdict::fail;
      r.reason = std::to_string(rl.forced_mismatches) + " token(s) routed against the target's own router output; first: token " +
                 std::to_string(m.token) + " chose expert " + std::to_string(m.chosen) + " (c = " + fmtg(m.c_chosen, "%.9g") +
                 ") over expert " + std::to_string(m.passed_over) + " (c = " + fmtg(m.c_passed_over, "%.9g") +
                 "), gap " + fmtg(m.c_passed_over - m.c_chosen) + " > rounding window " + fmtg(m.window);
      r.hints.push_back("selection: expert_bias held in fp32? top-k on σ(ℓ) + bias in fp32 (not bf16)? the k largest, "
                        "not a partial sort? ids and weights kept in the same order?");
    }
  } else if (reference_comparable) {
    r.budget.rule = "routing:real-flips";
    r.budget.metric = "real_flips";
    r.budget.limit = 0;
    r.budget.derivation = "a flip is a near-tie when the reference's gap <= σ'(ℓ)·Δℓ_expected for both experts";
    r.judged_on = "total";
    r.judged_error = double(rl.real_flips);
    r.min_passing = double(rl.real_flips);
    if (rl.real_flips > 0) {
      const RoutingFlip* f = nullptr;
      for (const auto& x : rl.flips)
        if (!x.near_tie) { f = &x; break; }
      r.verdict = Verdict::fail;
      r.reason = std::to_string(rl.real_flips) + " real routing flip(s); first at token " + std::to_string(f->token) +
                 ": reference chose {" + list(f->only_baseline) + "}, target {" + list(f->only_target) +
                 "}, reference gap " + fmtg(f->margin) + " > expected noise " + fmtg(f->noise);
      r.hints.push_back("router math: expert_bias used for selection only? sigmoid (not softmax)? top-k on s + bias?");
    }
  } else {
    rep.skipped.push_back({name, "decode step after the generated tokens part, and no router logits in the target "
                                 "to judge its selection on"});
    rep.routing.push_back(std::move(rl));
    return;
  }
  if (r.verdict == Verdict::fail) record_failure(r);
  rep.routing.push_back(std::move(rl));
  rep.tensors.push_back(std::move(r));
  b.release_pages();
  t.release_pages();
}

void Walk::compare_generation(const std::string& name) {
  const std::vector<int64_t> a = b.read_ints(name), c = t.read_ints(name);
  Tensor<double> ra, rc;
  if (b.has("generate.logits")) ra = b.read("generate.logits");
  if (t.has("generate.logits")) rc = t.read("generate.logits");
  // Expected noise of one logit: the lm_head budget plus the measured final_norm error through it.
  BudgetInputs lb;
  lb.op = "linear";
  lb.u_target = t.has("logits") ? effective_u(t, "logits", graph.family) : unit_roundoff(t.producer("dtype")).value_or(0x1p-8);
  lb.numel = ra.numel();
  const double inh = total_rel.count("final_norm") ? total_rel["final_norm"] : last_rel;
  double rms = 0;
  for (double x : ra.data) rms += x * x;
  rms = ra.numel() ? std::sqrt(rms / double(ra.numel())) : 0;
  const double noise = (amplification("linear") * inh + derived_local_budget(lb).limit) * rms;
  generation_agreement(a, c, ra, rc, noise, rep.logits);
  gen_divergence = rep.logits.first_token_divergence;
  TensorResult r;
  r.name = name;
  r.op = "generation";
  r.shape = b.info(name).shape;
  r.baseline_dtype = dtype_name(b.info(name).dtype);
  r.target_dtype = dtype_name(t.info(name).dtype);
  r.budget.rule = "generation:first-divergence-near-tie";
  r.budget.metric = "real_token_divergence";
  r.budget.derivation = "tokens may differ only where the reference's top-1 − top-2 margin <= 2·expected logit noise";
  if (gen_divergence >= 0 && !rep.logits.divergence_near_tie) {
    r.verdict = Verdict::fail;
    r.judged_error = 1;
    r.min_passing = 1;
    r.reason = "generated tokens differ at step " + std::to_string(gen_divergence) + " with reference margin " +
               fmtg(rep.logits.divergence_margin) + " > noise " + fmtg(rep.logits.divergence_noise);
    record_failure(r);
  }
  rep.tensors.push_back(std::move(r));
}

void Walk::run() {
  // Same input, or nothing is comparable.
  const std::vector<int64_t> ib = b.token_ids(), it = t.token_ids();
  if (!ib.empty() && !it.empty() && ib != it)
    fail(t.dir() + "/manifest.json: input token ids differ from the baseline's (" + std::to_string(it.size()) +
         " vs " + std::to_string(ib.size()) + " tokens)");
  const std::string bm = b.producer("mode"), tm = t.producer("mode");
  int64_t offset = 0;
  if (b.manifest().contains("input") && b.manifest()["input"].contains("position_offset"))
    offset = b.manifest()["input"]["position_offset"].get<int64_t>();
  for (size_t i = 0; i < ib.size(); ++i) positions.push_back(offset + int64_t(i));
  num_layers = b.manifest().contains("model") && b.manifest()["model"].contains("num_hidden_layers")
                   ? b.manifest()["model"]["num_hidden_layers"].get<int64_t>()
                   : 0;
  if (!opt.model_dir.empty()) {
    // The replay computes the model the baseline computed: the W8A8 one when its producer says
    // its FP8 linears' inputs were quantized (producer.activations "fp8-static").
    const bool fp8 = b.manifest().contains("producer") && b.manifest()["producer"].value("activations", "") == "fp8-static";
    tf = std::make_unique<TeacherForcing>(opt.model_dir, t, positions, opt.threads, fp8,
                                          make_replay_device(opt.device, opt.threads));
    if (opt.device != "cpu")
      rep.notes.push_back("teacher forcing replayed on " + tf->device_name() +
                          ": every replayed step in float64 (cuBLAS DGEMM), the CPU reference's formulas in another "
                          "summation order; the CPU replay (--device cpu) is the ground truth");
    if (fp8) rep.notes.push_back("the baseline is the W8A8 model (FP8 inputs at every FP8 linear, static input scales); "
                                 "steps are replayed the same way");
    // The checkpoint must be the one the dumps were made from: a same-shape checkpoint with other
    // weights would fail every tensor from the first one on, for no fault of the engine.
    const CheckpointIdentity ck(opt.model_dir, tf->config().sha256);
    for (const Dump* d : {&b, &t}) check_made_from(*d, ck);
    num_layers = tf->config().num_hidden_layers;
    rep.teacher_forced = true;
  }
  graph = model_graph(b, t, tf ? &tf->config() : nullptr);
  rep.family = graph.family;
  rep.cla_share_factor = graph.cla_share_factor;
  for (const auto& n : b.names()) num_layers = std::max(num_layers, layer_of_name(n) + 1);
  if (!opt.routed_experts_file.empty()) {
    SafetensorsFile f(opt.routed_experts_file);
    if (f.tensors().size() != 1 || f.tensors()[0].shape.size() != 3)
      fail(opt.routed_experts_file + ": expected one tensor [tokens, layers, k] of expert ids");
    const TensorInfo& ti = f.tensors()[0];
    const int64_t T = ti.shape[0], NL = ti.shape[1], k = ti.shape[2];
    std::vector<int64_t> moe_layers;
    for (int64_t L = 0; L < num_layers; ++L)
      if (b.has(names::layer(L, "moe.topk_ids"))) moe_layers.push_back(L);
    if (NL != num_layers && NL != int64_t(moe_layers.size()))
      fail(opt.routed_experts_file + ": tensor \"" + ti.name + "\" has " + std::to_string(NL) + " layers; expected " +
           std::to_string(num_layers) + " or " + std::to_string(moe_layers.size()) + " (MoE layers)");
    exported_ids.assign(size_t(num_layers), {});
    for (int64_t l = 0; l < NL; ++l) {
      const int64_t L = NL == num_layers ? l : moe_layers[size_t(l)];
      for (int64_t tok = 0; tok < T; ++tok)
        for (int64_t j = 0; j < k; ++j)
          exported_ids[size_t(L)].push_back(int64_t(element_as_double(f.data(ti), ti.dtype, (tok * NL + l) * k + j)));
    }
  }

  // Where the greedy tokens part decides which decode steps the baseline can judge; it is known
  // before the walk reaches the steps (generate.tokens itself is judged last, graph.h).
  if (b.has("generate.tokens") && t.has("generate.tokens")) {
    const std::vector<int64_t> ga = b.read_ints("generate.tokens"), gb = t.read_ints("generate.tokens");
    for (size_t i = 0; i < std::min(ga.size(), gb.size()); ++i)
      if (ga[i] != gb[i]) {
        gen_divergence = int64_t(i);
        break;
      }
  }
  // --layers A:B is checked against the model; the error entering layer A (layers.A-1.out, each
  // step's) is measured, not judged, so that layer A's inputs carry their real inherited error.
  if (num_layers > 0 && (opt.layer_first >= num_layers || opt.layer_last > num_layers))
    fail("--layers " + std::to_string(opt.layer_first) + ":" + (opt.layer_last >= 0 ? std::to_string(opt.layer_last) : "") +
         " is outside the model's " + std::to_string(num_layers) + " layers (" +
         (tf ? opt.model_dir + "/config.json" : b.dir() + "/manifest.json") + ")");
  const bool range_cuts_tail = opt.layer_last >= 0 && (num_layers <= 0 || opt.layer_last < num_layers);
  if (opt.layer_first > 0)
    for (const std::string& n : b.names()) {
      const std::string base = strip_step(n);
      if (base != names::layer(opt.layer_first - 1, "out") || !t.has(n) || b.info(n).shape != t.info(n).shape) continue;
      const Metrics m = stream_compare(TensorSource(b, n), TensorSource(t, n), b.info(n).shape);
      reject_nan(b, n, m.nan_ref, m.first_nan_ref_at);
      reject_nan(t, n, m.nan_target, m.first_nan_target_at);
      total_rel[n] = m.rel_l2;
      token_rel[n] = m.token_rel_l2;
    }
  std::set<std::string> in_b(b.names().begin(), b.names().end()), in_t(t.names().begin(), t.names().end());
  for (const auto& n : execution_order(graph, b.names()))
    if (!in_t.count(n)) rep.missing_in_target.push_back(n);
  for (const auto& n : execution_order(graph, t.names()))
    if (!in_b.count(n)) rep.missing_in_baseline.push_back(n);

  std::vector<std::string> order = execution_order(graph, b.names());
  int64_t walked = 0;
  for (const std::string& name : order) {
    if (opt.progress) opt.progress(++walked, int64_t(order.size()), name, rep.bytes_read);
    const std::string base = strip_step(name);
    const bool routing_from_export = base.find("moe.topk_ids") != std::string::npos && !exported_ids.empty() &&
                                     layer_of_name(name) >= 0 && !exported_ids[size_t(layer_of_name(name))].empty();
    if (!in_t.count(name) && !routing_from_export) continue;
    const int64_t L = layer_of_name(name);
    int64_t step = 0;
    strip_step(name, &step);
    if (after_token_divergence(step) && !tf) {
      rep.skipped.push_back({name, "decode step after the first generated-token difference (the baseline ran other "
                                   "input; --model judges it on the target's own tokens)"});
      continue;
    }
    if (L >= 0 && (L < opt.layer_first || (opt.layer_last >= 0 && L >= opt.layer_last))) {
      rep.skipped.push_back({name, "outside --layers"});
      continue;
    }
    // After a range that stops before the last layer, the model's tail (final_norm, logits,
    // generate.*) reads layers that were not compared: nothing to judge it against.
    const auto model_step = std::find_if(dataflow::model_steps().begin(), dataflow::model_steps().end(),
                                         [&](const dataflow::ModelStep& m) { return m.name == base; });
    if (L < 0 && range_cuts_tail && !(model_step != dataflow::model_steps().end() && model_step->before_layers)) {
      rep.skipped.push_back({name, "after --layers (it reads layers that were not compared)"});
      continue;
    }
    const std::string op = op_of(graph.family, name);
    if (base == "input_ids") {
      // A decode step's input is the token generated before it: the baseline's until the tokens
      // part, the target's own after that.
      const std::vector<int64_t> ti = t.read_ints(name);
      if (!after_token_divergence(step) && b.read_ints(name) != ti)
        fail(t.file_of(name) + ": tensor \"" + name + "\" differs from the baseline's");
      if (step > 0 && t.has("generate.tokens")) {
        const std::vector<int64_t> g = t.read_ints("generate.tokens");
        if (ti.size() != 1 || int64_t(g.size()) < step || ti[0] != g[size_t(step - 1)])
          fail(t.file_of(name) + ": tensor \"" + name + "\" is not the target's generated token " + std::to_string(step - 1) +
               " (generate.tokens)");
      }
      continue;
    }
    if (base.find("moe.topk_margin") != std::string::npos) {
      rep.skipped.push_back({name, "hyoracle extension: used as the routing margin, not compared"});
      continue;
    }
    try {
      if (base.find("moe.topk_ids") != std::string::npos) compare_routing(name);
      else if (name == "generate.tokens") compare_generation(name);
      else if (op.empty() && opt.rules.find(name) < 0) {
        rep.skipped.push_back({name, "not a canonical name and no rule matches it"});
        continue;
      } else if (!dtype_is_float(b.info(name).dtype) || !dtype_is_float(t.info(name).dtype)) {
        rep.skipped.push_back({name, "integer tensor with no comparison rule"});
        continue;
      } else {
        compare_tensor(name);
      }
    } catch (const NanInDump& e) {
      if (e.dump != &t) throw;
      // The engine produced NaN: it failed here. Everything after reads it, so the walk stops.
      TensorResult r;
      r.name = e.tensor;
      r.layer = layer_of_name(e.tensor);
      strip_step(e.tensor, &r.step);
      r.op = op_of(graph.family, e.tensor);
      r.verdict = Verdict::fail;
      r.reason = e.what();
      record_failure(r);
      rep.tensors.push_back(std::move(r));
      rep.notes.push_back("the walk stopped at the target's first NaN (" + e.tensor + "): later tensors read it");
      break;
    }
    if (opt.fail_fast && rep.first_divergence) break;
  }
  // Logit agreement row by row (logits are the largest tensor of a dump: [T, V]).
  if (b.has("logits") && t.has("logits") && b.info("logits").shape == t.info("logits").shape) {
    const std::vector<int64_t>& shape = b.info("logits").shape;
    const int64_t V = shape.empty() ? 1 : shape.back(), T = V == 0 ? 0 : numel_of(shape) / V;
    ChunkReader rb(TensorSource(b, "logits")), rt(TensorSource(t, "logits"));
    logits_agreement(T, V, [&](int64_t, double* r, double* y) {
      const double* pr = rb.next(V, r);
      const double* py = rt.next(V, y);
      if (pr != r) std::copy_n(pr, V, r);
      if (py != y) std::copy_n(py, V, y);
    }, rep.logits);
  }
  excuse_generation_after_near_tie();
  if (gen_divergence >= 0 && rep.first_divergence && rep.first_divergence->tensor.rfind("generate.", 0) != 0)
    rep.logits.divergence_after_failure = rep.first_divergence->tensor;
  if (gen_divergence >= 0) {
    const LogitsSummary& g = rep.logits;
    rep.notes.push_back("the greedy tokens part at generated token " + std::to_string(gen_divergence) + " (" +
                        (!g.divergence_after_failure.empty()
                             ? "after the engine's first failure, at " + g.divergence_after_failure +
                                   ": not a near-tie question"
                         : g.divergence_near_tie ? "a near-tie: reference top-1 − top-2 margin " + fmtg(g.divergence_margin) +
                                                     " <= expected logit noise " + fmtg(g.divergence_noise)
                                               : "not a near-tie: margin " + fmtg(g.divergence_margin) + " > noise " +
                                                     fmtg(g.divergence_noise)) +
                        "); decode steps from " + std::to_string(gen_divergence + 1) + " on " +
                        (tf ? "are judged on the target's own tokens and cache (teacher forcing), not against the baseline"
                            : "are not judged (no --model)"));
  }
  if (!tf)
    rep.notes.push_back("no teacher forcing (no --model, or --no-teacher-forcing): only the total error is judged, with coarse amplification factors for what each "
                        "step inherits; this cannot tell an error a step added from one it inherited, and misses bugs "
                        "under the budgets (docs/compare.md, \"Verdicts at realistic scale\"): give --model for a verdict");
  int64_t composed = 0;
  for (const TensorResult& r : rep.tensors) composed += !r.replay_composed.empty();
  if (composed > 0)
    rep.notes.push_back(std::to_string(composed) + " tensor(s) judged on replays that recomputed steps the target did not "
                        "dump, their budgets widened by the measured honest noise of those steps");
}

// A greedy token chosen after a permitted near-tie routing flip (in the prefill or in a decode
// step up to the one that chose it) comes from legitimately different activations: the
// reference's logit margin no longer applies there. Such generate.* results are not judged
// (verdict skipped, with the reason), and first_divergence is recomputed without them.
void Walk::excuse_generation_after_near_tie() {
  if (gen_divergence < 0) return;
  const RoutingLayer* tie = nullptr;
  for (const RoutingLayer& l : rep.routing)
    if (l.step <= gen_divergence && l.near_tie_flips > 0 && (!tie || l.step < tie->step)) tie = &l;
  if (!tie) return;
  const std::string why = "not judged: generated tokens differ at step " + std::to_string(gen_divergence) +
                          " after a permitted near-tie routing flip at layer " + std::to_string(tie->layer) +
                          (tie->step ? ", decode step " + std::to_string(tie->step) : ", prefill");
  bool changed = false;
  for (TensorResult& r : rep.tensors)
    if ((r.name == "generate.tokens" || r.name == "generate.logits") && r.verdict == Verdict::fail) {
      r.verdict = Verdict::skipped;
      r.reason = why;
      r.hints.push_back("use a fixture with larger router margins for a token-level check of this dtype");
      changed = true;
    }
  if (!changed) return;
  rep.first_divergence.reset();
  for (const TensorResult& r : rep.tensors)
    if (r.verdict == Verdict::fail) {
      rep.first_divergence = Divergence{r.name, r.layer, r.reason};
      break;
    }
}

}  // namespace

Report compare_dumps(const Dump& baseline, const Dump& target, const CompareOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  Report rep;
  rep.baseline_dir = baseline.dir();
  rep.target_dir = target.dir();
  if (baseline.manifest().contains("producer")) rep.baseline_producer = baseline.manifest()["producer"];
  if (target.manifest().contains("producer")) rep.target_producer = target.manifest()["producer"];
  Walk w{baseline, target, options, rep, nullptr, {}, {}, 0, {}, {}, 0, {}, {}, -1, {}};
  try {
    w.run();
  } catch (const Error& e) {
    rep.error = e.what();
  }
  // Coverage: each required pattern must match a tensor judged on both sides.
  for (const std::string& pat : options.require) {
    bool found = false;
    try {
      const Pattern re(pat, "--require");
      for (const auto& r : rep.tensors) found = found || re.search(r.name);
    } catch (const Error& e) {
      if (rep.error.empty()) rep.error = e.what();
      continue;
    }
    if (!found) rep.missing_required.push_back(pat);
  }
  bool failed = false, incomplete = !rep.error.empty() || !rep.missing_required.empty() || rep.tensors.empty();
  for (const auto& r : rep.tensors) {
    failed = failed || r.verdict == Verdict::fail;
    incomplete = incomplete || r.verdict == Verdict::incomplete;
  }
  rep.verdict = failed && rep.error.empty() ? Verdict::fail : incomplete ? Verdict::incomplete : Verdict::pass;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  struct rusage ru {};
  if (::getrusage(RUSAGE_SELF, &ru) == 0) rep.peak_rss_bytes = double(ru.ru_maxrss) * 1024.0;  // KiB on Linux
  return rep;
}

Report compare_dirs(const std::string& baseline_dir, const std::string& target_dir, const CompareOptions& options) {
  std::unique_ptr<Dump> b, t;
  try {
    b = std::make_unique<Dump>(baseline_dir);
    t = std::make_unique<Dump>(target_dir);
  } catch (const Error& e) {
    Report rep;
    rep.baseline_dir = baseline_dir;
    rep.target_dir = target_dir;
    rep.error = e.what();
    rep.verdict = Verdict::incomplete;
    return rep;
  }
  return compare_dumps(*b, *t, options);
}

}  // namespace hyoracle::compare
