// report_test_util.h: what the tests of compare's report writers share: a synthetic Report whose
// every expected value follows from how it is built here (tensor(), synthetic()), and text
// probes over a written report (count_of(), minus_one()).
#pragma once
#include <cstdint>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "compare/compare.h"
#include "compare/report_view.h"
#include "reference/names.h"

namespace hyoracle::testing {

using namespace hyoracle::compare;

// Occurrences of `needle` in `hay`.
inline size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + needle.size())) ++n;
  return n;
}

// A judged tensor of layer L at step S with the given budget use; limit 0.01, per-token errors
// for `tokens` rows, cosine 1 − 1e-7.
inline TensorResult tensor(int64_t step, int64_t layer, const std::string& op, double units, int64_t tokens = 4) {
  TensorResult t;
  t.name = (step ? names::step(step, "") : std::string()) + (layer >= 0 ? names::layer(layer, op) : op);
  t.layer = layer;
  t.step = step;
  t.op = op == "moe.topk_ids" ? "routing" : "linear";
  t.budget.rule = "derived:" + t.op;
  t.budget.limit = 0.01;
  t.budget.token_limit = 0.03;
  t.judged_on = "local";
  t.judged_error = units * 0.01;
  t.budget_units = units;
  t.min_passing = t.judged_error;
  t.total.rel_l2 = t.judged_error;
  t.total.cosine = 1 - 1e-7;
  t.total.norm_ratio = 1;
  t.total.max_abs = 0.5;
  t.total.max_abs_at = {0, 3};
  t.total.token_rel_l2.assign(size_t(tokens), t.judged_error);
  t.local = t.total;
  t.inherited = 0.001;
  if (units > 1) {
    t.verdict = Verdict::fail;
    t.reason = "added (local) rel_l2 " + std::to_string(t.judged_error) + " > limit 0.01, \"planted\"";
    t.token_limits.assign(size_t(tokens), 0.03);
  }
  return t;
}

// The layer suffixes a synthetic report uses: every canonical one but the routing margin.
inline std::vector<std::string> ops() {
  std::vector<std::string> v;
  for (const auto& s : names::layer_suffixes(Family::hy_v3))
    if (s != "moe.topk_margin") v.push_back(s);
  return v;
}

// A Report of `layers` layers × `steps` steps (prefill and decode steps 1..steps-1), every layer
// suffix, non-layer tensors per step, routing per layer and step, and `skipped` skipped tensors
// over two reasons. Budget use follows a fixed pattern; the tensors listed in `fail_at`
// ({step, layer, op index}) fail at 7×.
struct Synthetic {
  Report r;
  std::vector<std::string> failed;
  int64_t layer_tensors = 0;
};
inline Synthetic synthetic(int64_t layers, int64_t steps, const std::set<std::tuple<int64_t, int64_t, size_t>>& fail_at,
                    int64_t skipped, int64_t tokens) {
  Synthetic s;
  Report& r = s.r;
  r.verdict = fail_at.empty() ? Verdict::pass : Verdict::fail;
  r.baseline_dir = "ref";
  r.target_dir = "engine";
  r.teacher_forced = true;
  const auto names = ops();
  for (int64_t S = 0; S < steps; ++S) {
    const int64_t T = S == 0 ? tokens : 1;
    if (S == 0) r.tensors.push_back(tensor(0, -1, "embed", 0.1, T));
    for (int64_t L = 0; L < layers; ++L)
      for (size_t i = 0; i < names.size(); ++i) {
        const bool bad = fail_at.count({S, L, i}) > 0;
        const double units = bad ? 7.0 : double((S * 131 + L * 17 + int64_t(i) * 7) % 100) / 100.0 * 0.95;
        r.tensors.push_back(tensor(S, L, names[i], units, T));
        ++s.layer_tensors;
        if (bad) s.failed.push_back(r.tensors.back().name);
        if (names[i] == "moe.topk_ids") {
          RoutingLayer l;
          l.layer = L;
          l.step = S;
          l.tokens = T;
          l.exact_set_match = T;
          r.routing.push_back(l);
        }
      }
    r.tensors.push_back(tensor(S, -1, "final_norm", 0.2, T));
    r.tensors.push_back(tensor(S, -1, "logits", 0.3, T));
  }
  for (int64_t i = 0; i < skipped; ++i)
    r.skipped.push_back({names::layer(i, "moe.topk_margin"), i % 3 ? "hyoracle extension: used as the routing margin, not compared"
                                                                   : "not a canonical name and no rule matches it"});
  if (!s.failed.empty()) {
    const TensorResult* f = find_tensor(r, s.failed.front());
    r.first_divergence = Divergence{f->name, f->layer, f->reason};
  }
  r.logits.present = true;
  r.logits.positions = tokens;
  r.logits.top1_agree = tokens;
  r.logits.generated = steps;
  r.logits.first_token_divergence = -1;
  return s;
}

// The text around the first "-1" standing alone (not the tail of 1e-1, top-1 or a longer number),
// or "" when there is none.
inline std::string minus_one(const std::string& s) {
  static const std::regex re("(^|[^0-9A-Za-z.])-1([^0-9.]|$)");
  std::smatch m;
  if (!std::regex_search(s, m, re)) return "";
  const size_t at = size_t(m.position(0));
  return s.substr(at < 60 ? 0 : at - 60, 120);
}

}  // namespace hyoracle::testing
