// report_markdown.cpp: the report for people, as Markdown (a CI job summary, a pull-request
// comment): verdict, the failed tensors linked to their rows, the first divergence with its
// per-token errors and worst element, budget use per layer and decode step, the tensor table,
// routing, logits and coverage. It stays under kMarkdownMaxBytes whatever the dump's size: passing
// rows under kNearBudget of their budget are summarised per layer, the rows shown in full are
// capped (failed ones first), long lists end in a "+N more" line, and a last hard cap cuts the text
// with a line saying how much was left out and where the full data is.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "compare/compare.h"
#include "compare/layer_curve.h"
#include "compare/report_view.h"

namespace hyoracle::compare {

namespace {

constexpr size_t kMarkdownMaxBytes = 900 * 1024;  // GitHub's job-summary limit is 1 MiB
constexpr size_t kMaxFullRows = 1500;             // tensor rows shown in full
constexpr size_t kMaxListed = 50;                 // entries of a list (failed tensors, flips, ...)
constexpr size_t kMaxGridTokens = 16;             // tokens per routing disagreement grid
constexpr size_t kMaxGrids = 8;                   // routing layer-steps with a disagreement grid

const char* const kFullData = "the full data is in the JSON report (`--json`), one row per tensor in `--csv` / `--jsonl`";

// Text safe inside a table cell: '|' escaped, line breaks as spaces.
std::string cell(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '|') o += "\\|";
    else if (c == '\n' || c == '\r') o += ' ';
    else o += c;
  }
  return o;
}

void header(std::ostringstream& o, const Report& r) {
  o << "# hyoracle compare: **" << verdict_name(r.verdict) << "**\n\n";
  o << "- baseline: `" << r.baseline_dir << "` (" << r.baseline_producer.dump() << ")\n";
  o << "- target: `" << r.target_dir << "` (" << r.target_producer.dump() << ")\n";
  o << "- mode: " << (r.teacher_forced ? "teacher-forced: each step re-run by the reference on the target's inputs"
                                           : "total error only (no --model, or --no-teacher-forcing): a screening result, not a verdict")
    << "; " << r.tensors.size() << " tensors in " << g3(r.seconds) << " s; hyoracle " << kHyoracleVersion << "\n";
  if (!r.error.empty()) o << "- **error**: " << r.error << "\n";
  for (const auto& n : r.notes) o << "- note: " << n << "\n";
}

// The failed tensors, each linked to its row in the tensor table.
void failed_list(std::ostringstream& o, const Report& r) {
  const auto failed = failed_tensors(r);
  if (failed.empty()) return;
  o << "\n## Failed tensors (" << failed.size() << ")\n\n";
  for (size_t i = 0; i < failed.size() && i < kMaxListed; ++i) {
    const TensorResult& t = *failed[i];
    o << "- [`" << t.name << "`](#" << row_anchor(t.name) << ") (" << where(t) << ", " << g3(t.budget_units)
      << "× budget): " << t.reason << "\n";
  }
  if (failed.size() > kMaxListed) o << "- +" << failed.size() - kMaxListed << " more (" << kFullData << ")\n";
}

// The first divergence: rule, replay, hints, per-token errors, the worst element, |e| percentiles.
void first_divergence(std::ostringstream& o, const Report& r) {
  o << "\n## First divergence\n\n";
  if (!r.first_divergence) {
    o << "None.\n";
    return;
  }
  o << "**`" << r.first_divergence->tensor << "`**: " << r.first_divergence->reason << "\n\n";
  const TensorResult* t = find_tensor(r, r.first_divergence->tensor);
  if (!t) return;
  o << "- where: " << where(*t) << "; judged on the " << t->judged_on << " error\n";
  o << "- rule `" << t->budget.rule << "`: " << t->budget.derivation << "\n";
  if (!t->replay_read.empty()) {
    o << "- replayed from the target's";
    for (const auto& n : t->replay_read) o << " `" << n << "`";
    o << "\n";
  }
  if (!t->replay_composed.empty()) {
    o << "- recomputed (not in the target's dump):";
    for (const auto& n : t->replay_composed) o << " `" << n << "`";
    o << "; composed noise " << g3(t->composed_noise) << "\n";
  }
  for (const auto& h : t->hints) o << "- hint (heuristic): " << h << "\n";
  if (t->op == "routing" || t->op == "generation") return;
  const Metrics& m = judged_metrics(*t);
  const std::vector<double>& e = m.token_rel_l2;
  if (!e.empty()) {
    int64_t over = 0;
    const bool limits = t->token_limits.size() == e.size();
    if (limits)
      for (size_t i = 0; i < e.size(); ++i) over += e[i] > t->token_limits[i];
    o << "- per-token " << t->judged_on << " rel-L2 over " << e.size() << " row(s)";
    if (limits) o << ", " << over << " above the per-token limit";
    o << "; worst:";
    for (int64_t i : worst_token_rows(*t, 5)) {
      o << " token " << i << " " << g3(e[size_t(i)]);
      if (limits) o << " (limit " << g3(t->token_limits[size_t(i)]) << ")";
      o << ";";
    }
    o << "\n";
  }
  o << "- largest |e| " << g3(m.max_abs) << " at " << shape_str(m.max_abs_at) << ": "
    << (t->judged_on == "local" ? "reference on the target's inputs " : "baseline ") << g6(m.max_abs_ref) << " vs target "
    << g6(m.max_abs_target) << ". Neighbouring values are not kept by compare (it streams the dumps); read them from both dumps\n";
  o << "- |e| distribution: mean " << g3(m.mean_abs) << ", p50 " << g3(m.p50) << ", p99 " << g3(m.p99) << ", p99.9 "
    << g3(m.p999) << ", max " << g3(m.max_abs) << "; 1 − cosine " << one_minus_cos(m.cosine) << ", norm ratio "
    << g3(m.norm_ratio) << "\n";
}

// The top logits of both sides at the first differing generated token.
void generation_divergence(std::ostringstream& o, const LogitsSummary& g) {
  if (g.first_token_divergence < 0) return;
  o << "\n## First differing generated token\n\nStep " << g.first_token_divergence << ": baseline token "
    << g.divergence_token_baseline << ", target token " << g.divergence_token_target << " ("
    << "**" << generation_divergence_kind(g) << "**: reference top-1 − top-2 margin " << g3(g.divergence_margin)
    << " vs expected noise " << g3(g.divergence_noise) << ").\n\n";
  const size_t n = std::max(g.divergence_top_baseline.size(), g.divergence_top_target.size());
  if (n == 0) {
    o << "No generate.logits on either side: top logits not available.\n";
    return;
  }
  o << "| rank | baseline token | baseline logit | target token | target logit |\n|---|---|---|---|---|\n";
  for (size_t i = 0; i < n; ++i) {
    o << "| " << i + 1 << " | ";
    if (i < g.divergence_top_baseline.size())
      o << g.divergence_top_baseline[i].first << " | " << g3(g.divergence_top_baseline[i].second) << " | ";
    else o << "– | – | ";
    if (i < g.divergence_top_target.size())
      o << g.divergence_top_target[i].first << " | " << g3(g.divergence_top_target[i].second) << " |\n";
    else o << "– | – |\n";
  }
}

// Worst × budget per layer (rows) and step (columns); failing cells in bold.
void step_layer_table(std::ostringstream& o, const Report& r) {
  const auto worst = step_layer_worst(r);
  if (worst.empty()) return;
  std::set<int64_t> steps, layers;
  for (const auto& [k, w] : worst) steps.insert(k.first), layers.insert(k.second);
  o << "\n## Budget use per layer and step (worst × budget)\n\n| layer |";
  for (int64_t s : steps) o << " " << step_label(s) << " |";
  o << "\n|---|";
  for (size_t i = 0; i < steps.size(); ++i) o << "---|";
  o << "\n";
  auto row = [&](int64_t L) {
    o << "| " << (L < 0 ? std::string("non-layer") : std::to_string(L)) << " |";
    for (int64_t s : steps) {
      auto it = worst.find({s, L});
      if (it == worst.end()) o << " |";
      else if (it->second.failed) o << " **" << g3(it->second.units) << "** |";
      else o << " " << g3(it->second.units) << " |";
    }
    o << "\n";
  };
  for (int64_t L : layers)
    if (L >= 0) row(L);
  if (layers.count(-1)) row(-1);
}

void layer_curve_table(std::ostringstream& o, const Report& r) {
  const auto curve = layer_curve(r);
  if (curve.empty()) return;
  o << "\n## Per-layer error (prefill)\n\n| layer | total rel-L2 (layers.L.out) | largest added rel-L2 | worst × budget | worst tensor |\n|---|---|---|---|---|\n";
  for (const auto& p : curve)
    o << "| " << p.layer << " | " << g3(p.total) << " | " << g3(p.added) << " | " << g3(p.units) << " | `" << p.worst << "` |\n";
}

// Which tensors get a full row: every failed or incomplete one (in execution order, up to the
// cap), then the near-budget ones while the cap allows.
std::vector<bool> full_rows(const Report& r) {
  std::vector<bool> full(r.tensors.size(), false);
  size_t n = 0;
  for (size_t i = 0; i < r.tensors.size() && n < kMaxFullRows; ++i)
    if (r.tensors[i].verdict == Verdict::fail || r.tensors[i].verdict == Verdict::incomplete) full[i] = true, ++n;
  for (size_t i = 0; i < r.tensors.size() && n < kMaxFullRows; ++i)
    if (!full[i] && shown_in_full(r.tensors[i])) full[i] = true, ++n;
  return full;
}

void tensor_table(std::ostringstream& o, const Report& r) {
  const std::vector<bool> full = full_rows(r);
  const size_t shown = size_t(std::count(full.begin(), full.end(), true));
  size_t wanted = 0;
  for (const TensorResult& t : r.tensors) wanted += shown_in_full(t);
  o << "\n## Tensors (execution order)\n\n";
  o << "Rows in full: tensors that failed, were incomplete, or used at least " << g3(kNearBudget)
    << " of their budget (" << shown << " of " << r.tensors.size() << ")";
  if (wanted > shown) o << "; " << wanted - shown << " more such rows left out by the cap of " << kMaxFullRows;
  o << ". Passing tensors under " << g3(kNearBudget) << " of their budget are summarised per layer below; " << kFullData
    << ".\n\n";
  if (shown) {
    o << "| tensor | step | verdict | × budget | error | limit | judged | reason | total rel-L2 | 1 − cos | norm ratio | max abs (at) | rule |\n"
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (size_t i = 0; i < r.tensors.size(); ++i) {
      if (!full[i]) continue;
      const TensorResult& t = r.tensors[i];
      o << "| <a id=\"" << row_anchor(t.name) << "\"></a>`" << t.name << "` | " << step_of(t) << " | "
        << (t.verdict == Verdict::fail ? "**fail**" : verdict_name(t.verdict)) << " | " << g3(t.budget_units) << " | "
        << g3(t.judged_error) << " | " << g3(t.budget.limit) << " | " << t.judged_on << " | "
        << (t.reason.empty() ? "–" : cell(t.reason)) << " | ";
      if (t.op == "routing" || t.op == "generation") o << "– | – | – | – | ";
      else if (!t.total_comparable) o << "n/a | n/a | n/a | n/a | ";
      else
        o << g3(t.total.rel_l2) << " | " << one_minus_cos(t.total.cosine) << " | " << g3(t.total.norm_ratio) << " | "
          << g3(t.total.max_abs) << " " << shape_str(t.total.max_abs_at) << " | ";
      o << "`" << cell(t.budget.rule) << "` |\n";
    }
  }
  // The rest, per layer: how many, over which steps, and the worst.
  struct Rest {
    int64_t count = 0;
    std::set<int64_t> steps;
    double worst = -1;
    std::string tensor;
  };
  std::map<int64_t, Rest> rest;
  for (size_t i = 0; i < r.tensors.size(); ++i) {
    if (full[i]) continue;
    const TensorResult& t = r.tensors[i];
    Rest& x = rest[t.layer < 0 ? -1 : t.layer];
    ++x.count;
    x.steps.insert(t.step);
    if (t.budget_units > x.worst) x.worst = t.budget_units, x.tensor = t.name;
  }
  if (rest.empty()) return;
  o << "\n### Tensors not shown in full, per layer\n\n| layer | tensors | steps | worst × budget | worst tensor |\n|---|---|---|---|---|\n";
  auto line = [&](int64_t L, const Rest& x) {
    std::string steps;
    for (int64_t s : x.steps) steps += (steps.empty() ? "" : ", ") + step_label(s);
    o << "| " << (L < 0 ? std::string("non-layer") : std::to_string(L)) << " | " << x.count << " | " << steps << " | "
      << g3(std::max(x.worst, 0.0)) << " | `" << x.tensor << "` |\n";
  };
  for (const auto& [L, x] : rest)
    if (L >= 0) line(L, x);
  if (rest.count(-1)) line(-1, rest.at(-1));
}

void part_scales(std::ostringstream& o, const Report& r) {
  struct Row {
    const TensorResult* t;
    const PartScale* p;
  };
  std::vector<Row> rows;
  for (const auto& t : r.tensors) {
    const PartScale* w = nullptr;
    for (const auto& p : t.part_scales)
      if (!w || std::fabs(p.z()) > std::fabs(w->z())) w = &p;
    if (w) rows.push_back({&t, w});
  }
  if (rows.empty()) return;
  // The largest |z| first, so a capped list keeps the suspicious parts.
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return std::fabs(a.p->z()) > std::fabs(b.p->z()); });
  o << "\n## Part scales (largest |z| per tensor, largest first; fail beyond |α| > u and |z| > " << g3(kPartScaleZ) << ")\n\n"
    << "| tensor | part | α | σ | z | rows |\n|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < rows.size() && i < kMaxListed; ++i) {
    const Row& x = rows[i];
    o << "| `" << x.t->name << "` | " << x.t->part_kind << " " << x.p->part << " | " << g3(x.p->alpha) << " | "
      << g3(x.p->sigma) << " | " << g3(x.p->z()) << " | " << x.p->rows << " |\n";
  }
  if (rows.size() > kMaxListed) o << "\n+" << rows.size() - kMaxListed << " more tensors (" << kFullData << ").\n";
}

// Routing: the layer-steps with any disagreement in full, the rest counted; flips and forced
// mismatches listed (capped); a token × expert grid of the first disagreeing layer-steps.
void routing(std::ostringstream& o, const Report& r) {
  if (r.routing.empty()) return;
  o << "\n## Routing\n\n";
  int64_t clean = 0, after = 0;
  std::vector<const RoutingLayer*> shown;
  for (const auto& l : r.routing)
    if (!l.flips.empty() || l.forced_mismatches > 0) shown.push_back(&l);
    else if (l.reference_comparable) ++clean;
    else ++after;
  o << r.routing.size() << " layer-steps; " << clean << " with the same expert sets on every token";
  if (after)
    o << ", " << after << " after the generated tokens part (the baseline ran other tokens; only the target's selection on "
      << "its own router output is judged there)";
  o << (clean + after ? " (not listed)" : "") << ".\n\n";
  if (!shown.empty()) {
    o << "| layer | step | exact sets | mean Jaccard | near-tie flips | real flips | forced mismatches | min margin | max weight Δ | margin source |\n"
         "|---|---|---|---|---|---|---|---|---|---|\n";
    for (size_t i = 0; i < shown.size() && i < kMaxListed * 4; ++i) {
      const RoutingLayer& l = *shown[i];
      o << "| " << l.layer << " | " << step_label(l.step) << " | ";
      if (l.reference_comparable)
        o << l.exact_set_match << "/" << l.tokens << " | " << g3(l.mean_jaccard) << " | " << l.near_tie_flips << " | "
          << (l.real_flips ? "**" + std::to_string(l.real_flips) + "**" : std::string("0")) << " | ";
      else o << "n/a | n/a | n/a | n/a | ";
      o << (l.forced ? (l.forced_mismatches ? "**" + std::to_string(l.forced_mismatches) + "**" : std::string("0")) : std::string("–"))
        << " | ";
      if (l.reference_comparable)
        o << g3(l.min_margin) << " | " << g3(l.max_weight_delta) << " | " << cell(l.margin_source) << " |\n";
      else o << "n/a | n/a | n/a |\n";
    }
    if (shown.size() > kMaxListed * 4) o << "\n+" << shown.size() - kMaxListed * 4 << " more layer-steps (" << kFullData << ").\n";
  }
  size_t listed = 0, flips = 0;
  for (const auto& l : r.routing) flips += l.flips.size();
  if (flips) o << "\nFlips (reference-only experts vs target-only experts, the reference's gap vs the expected noise):\n\n";
  auto set = [](const std::vector<int64_t>& v) {
    std::string s = "{";
    for (int64_t e : v) s += (s.size() > 1 ? "," : "") + std::to_string(e);
    return s + "}";
  };
  for (const auto& l : r.routing)
    for (const auto& f : l.flips)
      if (listed++ < kMaxListed)
        o << "- layer " << l.layer << ", " << (l.step ? "step " + std::to_string(l.step) : std::string("prefill")) << ", token "
          << f.token << ": reference " << set(f.only_baseline) << " vs target " << set(f.only_target) << ", "
          << (f.near_tie ? "near-tie" : "**real flip**") << ", gap " << g3(f.margin) << " vs noise " << g3(f.noise) << "\n";
  if (flips > kMaxListed) o << "- +" << flips - kMaxListed << " more flips (" << kFullData << ")\n";
  size_t grids = 0;
  for (const auto& l : r.routing) {
    if (l.flips.empty() || grids == kMaxGrids) continue;
    ++grids;
    const DisagreementGrid g = disagreement_grid(l, kMaxGridTokens);
    o << "\nLayer " << l.layer << ", " << (l.step ? "step " + std::to_string(l.step) : std::string("prefill"))
      << ": tokens × experts where the sets differ (R: only the reference chose it, T: only the target)\n\n| token |";
    for (int64_t e : g.experts) o << " " << e << " |";
    o << "\n|---|";
    for (size_t i = 0; i < g.experts.size(); ++i) o << "---|";
    o << "\n";
    for (const RoutingFlip* f : g.tokens) {
      o << "| " << f->token << (f->near_tie ? "" : " (real)") << " |";
      for (int64_t e : g.experts) {
        const bool rb = std::count(f->only_baseline.begin(), f->only_baseline.end(), e) > 0;
        const bool tg = std::count(f->only_target.begin(), f->only_target.end(), e) > 0;
        o << (rb ? " R |" : tg ? " T |" : " |");
      }
      o << "\n";
    }
    if (g.more_tokens) o << "\n+" << g.more_tokens << " more tokens with a disagreement.\n";
  }
  int64_t forced_clean = 0;
  listed = 0;
  for (const auto& l : r.routing) {
    if (!l.forced) continue;
    if (!l.forced_mismatches) {
      ++forced_clean;
      continue;
    }
    if (listed == 0) o << "\nSelection against the target's own router output:\n\n";
    if (listed++ >= kMaxListed) continue;
    o << "- layer " << l.layer << ", " << (l.step ? "step " + std::to_string(l.step) : std::string("prefill"))
      << ", selection on the target's own scores (" << l.forced_source << "): **" << l.forced_mismatches
      << " token(s) not its top-k**\n";
    for (const auto& m : l.forced_list)
      o << "  - token " << m.token << ": chose expert " << m.chosen << " (" << g3(m.c_chosen) << ") over " << m.passed_over
        << " (" << g3(m.c_passed_over) << "), rounding window " << g3(m.window) << "\n";
  }
  if (listed > kMaxListed) o << "- +" << listed - kMaxListed << " more layer-steps with selection errors (" << kFullData << ")\n";
  if (forced_clean)
    o << "\nSelection on the target's own router output: the top-k on every token in " << forced_clean << " layer-step(s).\n";
}

void logits(std::ostringstream& o, const LogitsSummary& g) {
  if (!g.present && !g.generated) return;
  o << "\n## Logits\n\n";
  if (g.present)
    o << "- top-1 agreement " << g.top1_agree << "/" << g.positions << "; KL mean " << g3(g.kl_mean) << ", p99 "
      << g3(g.kl_p99) << ", max " << g3(g.kl_max) << "; Δp RMS " << g3(g.dp_rms) << "\n";
  if (g.generated)
    o << "- generation: " << g.generated << " tokens; first difference: "
      << (g.first_token_divergence < 0 ? std::string("none (identical)")
                                       : "step " + std::to_string(g.first_token_divergence) +
                                             " (" + generation_divergence_kind(g) + ")")
      << "\n";
}

void coverage(std::ostringstream& o, const Report& r) {
  o << "\n## Coverage\n\n- only in baseline: " << r.missing_in_target.size() << "; only in target: " << r.missing_in_baseline.size()
    << "; missing required: " << r.missing_required.size() << "\n";
  for (const auto& m : r.missing_required) o << "  - required `" << m << "` matched nothing\n";
  for (const SkipGroup& g : skipped_by_reason(r)) {
    o << "- skipped " << g.count << " tensor(s): " << g.reason << " (e.g.";
    for (const auto& n : g.examples) o << " `" << n << "`";
    o << (int64_t(g.examples.size()) < g.count ? ", …)" : ")") << "\n";
  }
}

// Cuts `s` at the last line break that leaves room for the closing line, which says how much was
// left out and where the full data is.
std::string capped(std::string s) {
  if (s.size() <= kMarkdownMaxBytes) return s;
  size_t cut = s.rfind('\n', kMarkdownMaxBytes - 512);
  cut = cut == std::string::npos ? 0 : cut + 1;
  const size_t lines = size_t(std::count(s.begin() + std::ptrdiff_t(cut), s.end(), '\n'));
  const size_t bytes = s.size() - cut;
  s.resize(cut);
  s += "\n**Report cut at " + std::to_string(kMarkdownMaxBytes / 1024) + " KiB: " + std::to_string(bytes) + " bytes (" +
       std::to_string(lines) + " lines) left out; " + kFullData + ".**\n";
  return s;
}

}  // namespace

std::string report_markdown(const Report& r) {
  std::ostringstream o;
  header(o, r);
  failed_list(o, r);
  first_divergence(o, r);
  if (r.first_total_divergence)
    o << "\nFirst tensor whose *total* error exceeds its total budget: `" << r.first_total_divergence->tensor << "` ("
      << r.first_total_divergence->reason << ")\n";
  generation_divergence(o, r.logits);
  step_layer_table(o, r);
  layer_curve_table(o, r);
  tensor_table(o, r);
  part_scales(o, r);
  routing(o, r);
  logits(o, r.logits);
  coverage(o, r);
  return capped(o.str());
}

}  // namespace hyoracle::compare
