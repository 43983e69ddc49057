// summary.cpp: the terminal summary, one screen: verdict, first divergence with hints, the
// per-layer curve as a table, the worst tensor of each decode step, routing and logits in one line
// each, coverage with skipped tensors counted by reason.
#include <cstdio>
#include <map>
#include <sstream>

#include "compare/compare.h"
#include "compare/layer_curve.h"
#include "compare/report_view.h"

namespace hyoracle::compare {

std::string terminal_summary(const Report& r) {
  std::ostringstream o;
  o << "hyoracle compare: " << verdict_name(r.verdict) << "  (exit " << exit_code(r) << ")"
    << (r.teacher_forced || !r.error.empty() ? "" : "  [total error only (no --model, or --no-teacher-forcing): a screening result, not a verdict]")
    << "\n";
  o << "  baseline " << r.baseline_dir << "  [" << (r.baseline_producer.is_object() ? r.baseline_producer.value("name", "?") + " " + r.baseline_producer.value("dtype", "?") : "?") << "]\n";
  o << "  target   " << r.target_dir << "  [" << (r.target_producer.is_object() ? r.target_producer.value("name", "?") + " " + r.target_producer.value("dtype", "?") : "?") << "]\n";
  if (!r.error.empty()) o << "  error    " << r.error << "\n";
  for (const auto& n : r.notes) o << "  note     " << n << "\n";
  int64_t failed = 0;
  for (const auto& t : r.tensors) failed += t.verdict == Verdict::fail;
  o << "  compared " << r.tensors.size() << " tensors (" << failed << " failed), "
    << (r.teacher_forced ? "teacher-forced (local vs inherited)" : "total error only (no --model)") << ", "
    << g3(r.seconds) << " s, " << g3(r.bytes_read / 1e6) << " MB read, peak RSS " << g3(r.peak_rss_bytes / 1e9)
    << " GB\n";
  if (r.first_divergence) {
    o << "  FIRST DIVERGENCE  " << r.first_divergence->tensor << "\n    " << r.first_divergence->reason << "\n";
    for (const auto& t : r.tensors)
      if (t.name == r.first_divergence->tensor) {
        o << "    rule " << t.budget.rule << ": " << t.budget.derivation << "\n";
        if (!t.replay_composed.empty()) {
          o << "    recomputed (not dumped):";
          for (const auto& n : t.replay_composed) o << " " << n;
          o << "\n";
        }
        for (const auto& h : t.hints) o << "    hint (heuristic): " << h << "\n";
      }
  }
  if (r.first_total_divergence && (!r.first_divergence || r.first_total_divergence->tensor != r.first_divergence->tensor))
    o << "  first total-error excess: " << r.first_total_divergence->tensor << " (" << r.first_total_divergence->reason << ")\n";
  const auto curve = layer_curve(r);
  if (!curve.empty()) {
    o << "  layer  total-relL2  added-relL2  worst×budget  worst tensor\n";
    for (const auto& p : curve) {
      char line[256];
      std::snprintf(line, sizeof line, "  %5lld  %11s  %11s  %12s  %s\n", (long long)p.layer, g3(p.total).c_str(),
                    g3(p.added).c_str(), g3(p.units).c_str(), p.worst.c_str());
      o << line;
    }
  }
  // Decode steps: the worst tensor of each (the curve above is the prefill's).
  std::map<int64_t, const TensorResult*> step_worst;
  for (const auto& t : r.tensors) {
    if (t.step == 0 || t.verdict == Verdict::skipped) continue;
    const TensorResult*& w = step_worst[t.step];
    if (!w || t.budget_units > w->budget_units) w = &t;
  }
  if (!step_worst.empty()) {
    o << "  decode  worst×budget  worst tensor\n";
    for (const auto& [S, t] : step_worst) {
      char line[320];
      std::snprintf(line, sizeof line, "  %6lld  %12s  %s%s\n", (long long)S, g3(t->budget_units).c_str(), t->name.c_str(),
                    t->verdict == Verdict::fail ? "  FAIL" : "");
      o << line;
    }
  }
  int64_t decode_layers = 0, decode_near = 0, decode_real = 0;
  for (const auto& l : r.routing)
    if (l.step > 0) ++decode_layers, decode_near += l.near_tie_flips, decode_real += l.real_flips;
  if (decode_layers)
    o << "  routing, decode steps: " << decode_layers << " layer-steps, near-tie flips " << decode_near
      << ", real flips " << decode_real << "\n";
  for (const auto& l : r.routing)
    if (l.step == 0) o << "  routing L" << l.layer << ": " << l.exact_set_match << "/" << l.tokens << " exact sets, jaccard "
      << g3(l.mean_jaccard) << ", near-tie flips " << l.near_tie_flips << ", real flips " << l.real_flips
      << ", min margin " << g3(l.min_margin) << "\n";
  if (r.logits.present)
    o << "  logits: top-1 " << r.logits.top1_agree << "/" << r.logits.positions << ", KL mean " << g3(r.logits.kl_mean)
      << " max " << g3(r.logits.kl_max) << "\n";
  if (r.logits.generated)
    o << "  generate: " << r.logits.generated << " tokens, "
      << (r.logits.first_token_divergence < 0 ? std::string("identical")
                                              : "first differ at step " + std::to_string(r.logits.first_token_divergence) +
                                                    " (" + compare::generation_divergence_kind(r.logits) + ")")
      << "\n";
  if (!r.missing_required.empty()) {
    o << "  missing required:";
    for (const auto& m : r.missing_required) o << " " << m;
    o << "\n";
  }
  if (!r.missing_in_target.empty() || !r.missing_in_baseline.empty())
    o << "  only in baseline: " << r.missing_in_target.size() << ", only in target: " << r.missing_in_baseline.size() << "\n";
  for (const SkipGroup& g : skipped_by_reason(r, 1))
    o << "  skipped " << g.count << " (e.g. " << g.examples.front() << "): " << g.reason << "\n";
  return o.str();
}

}  // namespace hyoracle::compare
