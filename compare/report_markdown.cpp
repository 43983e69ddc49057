// report_markdown.cpp: the report for people, as Markdown: verdict, first divergence with hints,
// per-layer curve, the tensor table (failures first), routing, logits, coverage.
#include <cmath>
#include <sstream>

#include "compare.h"
#include "layer_curve.h"

namespace hyoracle::compare {

std::string report_markdown(const Report& r) {
  std::ostringstream o;
  o << "# hyoracle compare: **" << verdict_name(r.verdict) << "**\n\n";
  o << "- baseline: `" << r.baseline_dir << "` (" << r.baseline_producer.dump() << ")\n";
  o << "- target: `" << r.target_dir << "` (" << r.target_producer.dump() << ")\n";
  o << "- mode: " << (r.teacher_forced ? "teacher-forced: each step re-run by the reference on the target's inputs" : "total error only")
    << "; " << r.tensors.size() << " tensors in " << g3(r.seconds) << " s\n";
  if (!r.error.empty()) o << "- **error**: " << r.error << "\n";
  for (const auto& n : r.notes) o << "- note: " << n << "\n";
  o << "\n## First divergence\n\n";
  if (!r.first_divergence) o << "None.\n";
  else {
    o << "**`" << r.first_divergence->tensor << "`**: " << r.first_divergence->reason << "\n\n";
    for (const auto& t : r.tensors)
      if (t.name == r.first_divergence->tensor) {
        o << "- rule `" << t.budget.rule << "`: " << t.budget.derivation << "\n";
        if (!t.replay_read.empty()) {
          o << "- replayed from the target's";
          for (const auto& n : t.replay_read) o << " `" << n << "`";
          o << "\n";
        }
        if (!t.replay_composed.empty()) {
          o << "- recomputed (not in the target's dump):";
          for (const auto& n : t.replay_composed) o << " `" << n << "`";
          o << "; composed noise " << g3(t.composed_noise) << "\n";
        }
        for (const auto& h : t.hints) o << "- hint (heuristic): " << h << "\n";
      }
  }
  if (r.first_total_divergence)
    o << "\nFirst tensor whose *total* error exceeds its total budget: `" << r.first_total_divergence->tensor << "` ("
      << r.first_total_divergence->reason << ")\n";
  o << "\n## Per-layer error\n\n| layer | total rel-L2 (layers.L.out) | largest added rel-L2 | worst × budget | worst tensor |\n|---|---|---|---|---|\n";
  for (const auto& p : layer_curve(r))
    o << "| " << p.layer << " | " << g3(p.total) << " | " << g3(p.added) << " | " << g3(p.units) << " | `" << p.worst << "` |\n";
  o << "\n## Tensors (execution order)\n\n| tensor | verdict | judged | error | limit | × budget | min passing | total rel-L2 | cosine | norm ratio | max abs (at) | rule |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& t : r.tensors) {
    o << "| `" << t.name << "` | " << (t.verdict == Verdict::fail ? "**fail**" : verdict_name(t.verdict)) << " | " << t.judged_on
      << " | " << g3(t.judged_error) << " | " << g3(t.budget.limit) << " | " << g3(t.budget_units) << " | "
      << g3(t.min_passing) << " | ";
    if (t.op == "routing" || t.op == "generation") o << "– | – | – | – | ";
    else if (!t.total_comparable) o << "n/a | n/a | n/a | n/a | ";
    else
      o << g3(t.total.rel_l2) << " | " << g3(t.total.cosine) << " | " << g3(t.total.norm_ratio) << " | " << g3(t.total.max_abs)
        << " " << shape_str(t.total.max_abs_at) << " | ";
    o << "`" << t.budget.rule << "` |\n";
  }
  bool any_parts = false;
  for (const auto& t : r.tensors) any_parts = any_parts || !t.part_scales.empty();
  if (any_parts) {
    o << "\n## Part scales (largest |z| per tensor; fail beyond |α| > u and |z| > " << g3(kPartScaleZ) << ")\n\n"
      << "| tensor | part | α | σ | z | rows |\n|---|---|---|---|---|---|\n";
    for (const auto& t : r.tensors) {
      const PartScale* w = nullptr;
      for (const auto& p : t.part_scales)
        if (!w || std::fabs(p.z()) > std::fabs(w->z())) w = &p;
      if (w)
        o << "| `" << t.name << "` | " << t.part_kind << " " << w->part << " | " << g3(w->alpha) << " | " << g3(w->sigma)
          << " | " << g3(w->z()) << " | " << w->rows << " |\n";
    }
  }
  if (!r.routing.empty()) {
    o << "\n## Routing\n\n| layer | exact sets | mean Jaccard | near-tie flips | real flips | min margin | max weight Δ | margin source |\n|---|---|---|---|---|---|---|---|\n";
    for (const auto& l : r.routing)
      o << "| " << l.layer << " | " << l.exact_set_match << "/" << l.tokens << " | " << g3(l.mean_jaccard) << " | "
        << l.near_tie_flips << " | " << l.real_flips << " | " << g3(l.min_margin) << " | " << g3(l.max_weight_delta)
        << " | " << l.margin_source << " |\n";
    for (const auto& l : r.routing)
      for (const auto& f : l.flips) {
        o << "- layer " << l.layer << " token " << f.token << ": " << (f.near_tie ? "near-tie" : "**real flip**")
          << ", gap " << g3(f.margin) << " vs noise " << g3(f.noise) << "\n";
      }
    for (const auto& l : r.routing)
      if (l.forced) {
        o << "- layer " << l.layer << (l.step ? " step " + std::to_string(l.step) : std::string()) << ", selection on the target's own scores ("
          << l.forced_source << "): " << (l.forced_mismatches ? "**" + std::to_string(l.forced_mismatches) + " token(s) not its top-k**" : std::string("the top-k on every token")) << "\n";
        for (const auto& m : l.forced_list)
          o << "  - token " << m.token << ": chose expert " << m.chosen << " (" << g3(m.c_chosen) << ") over " << m.passed_over
            << " (" << g3(m.c_passed_over) << "), rounding window " << g3(m.window) << "\n";
      }
  }
  if (r.logits.present) {
    o << "\n## Logits\n\n- top-1 agreement " << r.logits.top1_agree << "/" << r.logits.positions << "; KL mean "
      << g3(r.logits.kl_mean) << ", p99 " << g3(r.logits.kl_p99) << ", max " << g3(r.logits.kl_max) << "; Δp RMS "
      << g3(r.logits.dp_rms) << "\n";
    if (r.logits.generated)
      o << "- generation: " << r.logits.generated << " tokens; first difference at step " << r.logits.first_token_divergence
        << (r.logits.first_token_divergence >= 0 ? (r.logits.divergence_near_tie ? " (near-tie)" : " (real)") : "") << "\n";
  }
  o << "\n## Coverage\n\n- only in baseline: " << r.missing_in_target.size() << "; only in target: " << r.missing_in_baseline.size()
    << "; missing required: " << r.missing_required.size() << "\n";
  for (const auto& m : r.missing_required) o << "  - required `" << m << "` matched nothing\n";
  for (const auto& [n, why] : r.skipped) o << "- skipped `" << n << "`: " << why << "\n";
  return o.str();
}

}  // namespace hyoracle::compare
