#include "compare/report_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "compare/layer_curve.h"
#include "reference/names.h"

namespace hyoracle::compare {

std::string step_label(int64_t step) { return step == 0 ? "prefill" : std::to_string(step); }

std::string step_of(const TensorResult& t) {
  return t.name.rfind("generate.", 0) == 0 ? "generation" : step_label(t.step);
}

std::string where(const TensorResult& t) {
  if (t.name.rfind("generate.", 0) == 0) return "generation";
  return (t.step == 0 ? std::string("prefill") : "step " + std::to_string(t.step)) +
         (t.layer >= 0 ? ", layer " + std::to_string(t.layer) : std::string());
}

std::string g6(double x) { return g_digits(x, 6); }

std::string op_label(const std::string& name) {
  std::string s = name;
  // Drops "<word>.<digits>." from the front, for "steps.S." and then "layers.L.".
  auto drop = [&](const std::string& word) {
    if (s.rfind(word + ".", 0) != 0) return;
    size_t i = word.size() + 1, j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j > i && j < s.size() && s[j] == '.') s = s.substr(j + 1);
  };
  drop("steps");
  drop("layers");
  return s;
}

std::string one_minus_cos(double cosine) {
  if (std::isnan(cosine)) return "–";
  if (cosine == 1) return "0";
  char b[32];
  std::snprintf(b, sizeof b, "%.3e", 1 - cosine);
  return b;
}

std::string g3_or_dash(double x) { return std::isnan(x) ? "–" : g3(x); }

std::string row_anchor(const std::string& name) {
  std::string a = "t-";
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-';
    a += ok ? c : '_';
  }
  return a;
}

const Metrics& judged_metrics(const TensorResult& t) { return t.judged_on == "local" && t.local ? *t.local : t.total; }

const TensorResult* find_tensor(const Report& r, const std::string& name) {
  for (const TensorResult& t : r.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<int64_t> worst_token_rows(const TensorResult& t, size_t count) {
  const std::vector<double>& e = judged_metrics(t).token_rel_l2;
  const bool limits = t.token_limits.size() == e.size();
  auto key = [&](size_t i) {
    const double v = limits ? (t.token_limits[i] > 0 ? e[i] / t.token_limits[i] : e[i] > 0 ? INFINITY : 0) : e[i];
    return std::isnan(v) ? INFINITY : v;
  };
  std::vector<int64_t> rows(e.size());
  for (size_t i = 0; i < e.size(); ++i) rows[i] = int64_t(i);
  std::stable_sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) { return key(size_t(a)) > key(size_t(b)); });
  if (rows.size() > count) rows.resize(count);
  return rows;
}

std::vector<const TensorResult*> failed_tensors(const Report& r) {
  std::vector<const TensorResult*> v;
  for (const TensorResult& t : r.tensors)
    if (t.verdict == Verdict::fail) v.push_back(&t);
  return v;
}

bool shown_in_full(const TensorResult& t) {
  return t.verdict != Verdict::pass || !(t.budget_units < kNearBudget);  // NaN units count as near
}

std::vector<SkipGroup> skipped_by_reason(const Report& r, size_t examples) {
  std::vector<SkipGroup> groups;
  std::map<std::string, size_t> index;
  auto add = [&](const std::string& name, const std::string& reason) {
    auto [it, fresh] = index.emplace(reason, groups.size());
    if (fresh) groups.push_back(SkipGroup{reason, 0, {}});
    SkipGroup& g = groups[it->second];
    ++g.count;
    if (g.examples.size() < examples) g.examples.push_back(name);
  };
  for (const auto& [name, reason] : r.skipped) add(name, reason);
  for (const TensorResult& t : r.tensors)  // compared, then excused (generated tokens after a near-tie)
    if (t.verdict == Verdict::skipped) add(t.name, t.reason);
  return groups;
}

HeatMap heat_map(const Report& r) {
  HeatMap h;
  std::set<int64_t> steps, layers;
  std::vector<std::string> unknown;
  std::set<std::string> seen;
  for (const TensorResult& t : r.tensors) {
    if (t.layer < 0 || t.verdict == Verdict::skipped) continue;
    HeatCell c;
    c.step = t.step;
    c.layer = t.layer;
    c.op = op_label(t.name);
    c.tensor = t.name;
    c.units = t.budget_units;
    c.error = t.judged_error;
    c.limit = t.budget.limit;
    c.verdict = t.verdict;
    steps.insert(c.step);
    layers.insert(c.layer);
    if (seen.insert(c.op).second) unknown.push_back(c.op);
    h.cells.push_back(std::move(c));
  }
  const std::vector<std::string>& known = names::layer_suffixes(r.family);
  for (const std::string& s : known)
    if (seen.count(s)) h.ops.push_back(s);
  for (const std::string& s : unknown)
    if (std::find(known.begin(), known.end(), s) == known.end()) h.ops.push_back(s);
  h.steps.assign(steps.begin(), steps.end());
  h.layers.assign(layers.begin(), layers.end());
  return h;
}

std::map<std::pair<int64_t, int64_t>, StepLayerWorst> step_layer_worst(const Report& r) {
  std::map<std::pair<int64_t, int64_t>, StepLayerWorst> m;
  for (const TensorResult& t : r.tensors) {
    if (t.verdict == Verdict::skipped || t.name.rfind("generate.", 0) == 0) continue;
    const int64_t layer = t.layer < 0 ? -1 : t.layer;
    auto [it, fresh] = m.try_emplace({t.step, layer});
    StepLayerWorst& w = it->second;
    if (fresh || t.budget_units > w.units || (std::isnan(t.budget_units) && !std::isnan(w.units))) {
      w.units = t.budget_units;
      w.tensor = t.name;
    }
    w.failed = w.failed || t.verdict == Verdict::fail;
  }
  return m;
}

std::string units_colour(double units) {
  if (std::isnan(units)) return "#cccccc";
  auto mix = [](int a, int b, double f) { return int(std::lround(a + (b - a) * std::clamp(f, 0.0, 1.0))); };
  int lo[3], hi[3];
  double f;
  if (units <= 1) {
    const int g[3] = {0xe8, 0xf5, 0xe9}, a[3] = {0xff, 0xc1, 0x07};  // pale green -> amber
    std::copy(g, g + 3, lo), std::copy(a, a + 3, hi);
    f = std::max(units, 0.0);
  } else {
    const int p[3] = {0xef, 0x9a, 0x9a}, d[3] = {0x8b, 0x00, 0x00};  // light red -> dark red
    std::copy(p, p + 3, lo), std::copy(d, d + 3, hi);
    f = std::isinf(units) ? 1 : std::log10(units) / 2;
  }
  char b[8];
  std::snprintf(b, sizeof b, "#%02x%02x%02x", mix(lo[0], hi[0], f), mix(lo[1], hi[1], f), mix(lo[2], hi[2], f));
  return b;
}

DisagreementGrid disagreement_grid(const RoutingLayer& l, size_t max_tokens) {
  DisagreementGrid g;
  std::set<int64_t> experts;
  for (const RoutingFlip& f : l.flips) {
    if (g.tokens.size() == max_tokens) {
      ++g.more_tokens;
      continue;
    }
    g.tokens.push_back(&f);
    experts.insert(f.only_baseline.begin(), f.only_baseline.end());
    experts.insert(f.only_target.begin(), f.only_target.end());
  }
  g.experts.assign(experts.begin(), experts.end());
  return g;
}

std::string generation_divergence_kind(const LogitsSummary& g) {
  if (!g.divergence_after_failure.empty()) return "after the failure at " + g.divergence_after_failure;
  return g.divergence_near_tie ? "near-tie" : "real";
}

}  // namespace hyoracle::compare
