// report_json.cpp: the JSON report (DUMP_FORMAT.md "Comparison report", version 1). Keys and rows
// in a fixed order so two reports diff cleanly; Inf/NaN written as strings.
#include <cmath>
#include <fstream>

#include "compare/compare.h"
#include "util/error.h"
#include "compare/report_view.h"

namespace hyoracle::compare {

namespace {
nlohmann::ordered_json num(double x) {
  if (std::isnan(x)) return nullptr;
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}
nlohmann::ordered_json divergence(const std::optional<Divergence>& d) {
  if (!d) return nullptr;
  return {{"tensor", d->tensor}, {"layer", d->layer}, {"reason", d->reason}};
}
}  // namespace

nlohmann::ordered_json report_json(const Report& r) {
  nlohmann::ordered_json j;
  j["format"] = "hyoracle.report";
  j["version"] = 1;
  j["hyoracle_version"] = kHyoracleVersion;
  j["verdict"] = verdict_name(r.verdict);
  j["exit_code"] = exit_code(r);
  j["error"] = r.error.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.error);
  j["baseline"] = {{"dir", r.baseline_dir}, {"producer", r.baseline_producer}};
  j["target"] = {{"dir", r.target_dir}, {"producer", r.target_producer}};
  j["teacher_forced"] = r.teacher_forced;
  j["first_divergence"] = divergence(r.first_divergence);
  j["first_total_divergence"] = divergence(r.first_total_divergence);
  nlohmann::ordered_json ts = nlohmann::ordered_json::array();
  for (const TensorResult& t : r.tensors) {
    nlohmann::ordered_json e;
    e["name"] = t.name;
    e["layer"] = t.layer;
    e["step"] = t.step;
    e["op"] = t.op;
    e["shape"] = t.shape;
    e["dtypes"] = {{"baseline", t.baseline_dtype}, {"target", t.target_dtype}};
    e["verdict"] = verdict_name(t.verdict);
    e["reason"] = t.reason;
    e["judged_on"] = t.judged_on;
    e["judged_error"] = num(t.judged_error);
    e["budget_units"] = num(t.budget_units);
    e["min_passing"] = num(t.min_passing);
    e["budget"] = {{"rule", t.budget.rule},   {"metric", t.budget.metric},          {"limit", num(t.budget.limit)},
                   {"token_limit", num(t.budget.token_limit)}, {"derivation", t.budget.derivation},
                   {"reason", t.budget.reason}};
    if (!t.token_limits.empty()) {
      nlohmann::ordered_json tl = nlohmann::ordered_json::array();
      for (double v : t.token_limits) tl.push_back(num(v));
      e["budget"]["token_limits"] = tl;
    }
    e["inherited"] = num(t.inherited);
    e["inherited_input"] = num(t.inherited_input);
    e["excluded_tokens"] = t.excluded_tokens;
    e["metrics"] = t.op == "routing" || t.op == "generation" ? nlohmann::ordered_json(nullptr) : metrics_json(t.total);
    e["local_metrics"] = t.local ? metrics_json(*t.local) : nlohmann::ordered_json(nullptr);
    e["total_comparable"] = t.total_comparable;
    e["replay"] = t.local ? nlohmann::ordered_json{{"read", t.replay_read},
                                                   {"composed", t.replay_composed},
                                                   {"composed_noise", num(t.composed_noise)}}
                          : nlohmann::ordered_json(nullptr);
    if (!t.part_scales.empty()) {
      nlohmann::ordered_json ps = nlohmann::ordered_json::array();
      for (const PartScale& p : t.part_scales)
        ps.push_back({{"part", p.part}, {"rows", p.rows}, {"alpha", num(p.alpha)}, {"sigma", num(p.sigma)}, {"z", num(p.z())}});
      e["part_scales"] = {{"kind", t.part_kind}, {"z_limit", kPartScaleZ}, {"fits", ps}};
    } else {
      e["part_scales"] = nullptr;
    }
    e["hints"] = t.hints;
    ts.push_back(e);
  }
  j["tensors"] = ts;
  nlohmann::ordered_json rs = nlohmann::ordered_json::array();
  for (const RoutingLayer& l : r.routing) {
    nlohmann::ordered_json e;
    e["layer"] = l.layer;
    e["step"] = l.step;
    e["tokens"] = l.tokens;
    e["exact_set_match"] = l.exact_set_match;
    e["mean_jaccard"] = l.mean_jaccard;
    e["max_weight_delta"] = l.max_weight_delta;
    e["max_weight_rel_delta"] = l.max_weight_rel_delta;
    e["max_weight_sum_delta"] = l.max_weight_sum_delta;
    e["min_margin"] = num(l.min_margin);
    e["margin_source"] = l.margin_source;
    e["margin_histogram_decades"] = {{"edges", {"<1e-6", "1e-6", "1e-5", "1e-4", "1e-3", "1e-2", ">=1e-1"}},
                                     {"counts", l.margin_histogram}};
    e["near_tie_flips"] = l.near_tie_flips;
    e["real_flips"] = l.real_flips;
    nlohmann::ordered_json fl = nlohmann::ordered_json::array();
    for (const RoutingFlip& f : l.flips)
      fl.push_back({{"token", f.token}, {"only_baseline", f.only_baseline}, {"only_target", f.only_target},
                    {"margin", num(f.margin)}, {"noise", num(f.noise)}, {"near_tie", f.near_tie}});
    e["flips"] = fl;
    e["reference_comparable"] = l.reference_comparable;
    nlohmann::ordered_json fm = nlohmann::ordered_json::array();
    for (const ForcedMismatch& m : l.forced_list)
      fm.push_back({{"token", m.token}, {"chosen", m.chosen}, {"passed_over", m.passed_over},
                    {"score_chosen", num(m.c_chosen)}, {"score_passed_over", num(m.c_passed_over)}, {"window", num(m.window)}});
    e["forced"] = l.forced ? nlohmann::ordered_json{{"source", l.forced_source}, {"mismatches", l.forced_mismatches}, {"first", fm}}
                           : nlohmann::ordered_json(nullptr);
    rs.push_back(e);
  }
  j["routing"] = rs;
  const LogitsSummary& g = r.logits;
  j["logits"] = {{"present", g.present},         {"positions", g.positions},
                 {"top1_agree", g.top1_agree},   {"kl_mean", num(g.kl_mean)},
                 {"kl_p99", num(g.kl_p99)},      {"kl_max", num(g.kl_max)},
                 {"dp_rms", num(g.dp_rms)},      {"generated", g.generated},
                 {"first_token_divergence", g.first_token_divergence},
                 {"divergence_near_tie", g.divergence_near_tie},
                 {"divergence_after_failure", g.divergence_after_failure.empty() ? nlohmann::ordered_json(nullptr)
                                                                                : nlohmann::ordered_json(g.divergence_after_failure)},
                 {"divergence_margin", num(g.divergence_margin)},
                 {"divergence_noise", num(g.divergence_noise)},
                 {"divergence_in_top_n", g.divergence_in_top_n}};
  if (g.first_token_divergence >= 0) {
    auto top = [](const std::vector<std::pair<int64_t, double>>& v) {
      nlohmann::ordered_json a = nlohmann::ordered_json::array();
      for (const auto& [id, logit] : v) a.push_back({{"token", id}, {"logit", num(logit)}});
      return a;
    };
    j["logits"]["divergence_tokens"] = {{"baseline", g.divergence_token_baseline}, {"target", g.divergence_token_target}};
    j["logits"]["divergence_top"] = {{"baseline", top(g.divergence_top_baseline)}, {"target", top(g.divergence_top_target)}};
  }
  j["missing"] = {{"in_baseline", r.missing_in_baseline}, {"in_target", r.missing_in_target},
                  {"required", r.missing_required}};
  nlohmann::ordered_json sk = nlohmann::ordered_json::array();
  for (const auto& [n, why] : r.skipped) sk.push_back({{"name", n}, {"reason", why}});
  j["skipped"] = sk;
  nlohmann::ordered_json sg = nlohmann::ordered_json::array();
  for (const SkipGroup& g : skipped_by_reason(r, 3))
    sg.push_back({{"reason", g.reason}, {"count", g.count}, {"examples", g.examples}});
  j["skipped_by_reason"] = sg;
  j["notes"] = r.notes;
  j["stats"] = {{"seconds", r.seconds},
                {"bytes_read", r.bytes_read},
                {"peak_rss_bytes", r.peak_rss_bytes},
                {"percentile_rel_resolution", kPercentileResolution}};
  return j;
}

void write_text_file(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
  if (!out) fail(path + ": cannot write report");
}

}  // namespace hyoracle::compare
