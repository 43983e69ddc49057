// report_html.cpp: a self-contained HTML page (no external assets; fully readable without
// scripts, a tiny inline script only adds click-to-sort on the tensor table) for an engine team to
// act on at a glance: the verdict, the failed tensors linked to their rows, the first divergence
// (per-token error plot against the per-token limit, the worst element, the distribution of
// per-token errors, the top logits at the first differing generated token), a layer × step ×
// operation heat map of budget use, the prefill's per-layer error curve, the tensor table with
// each failure's reason in a cell, routing per layer and step with every flip and a token × expert
// view of the disagreements, logits, and coverage with skipped tensors grouped by reason.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "compare/compare.h"
#include "compare/layer_curve.h"
#include "compare/report_view.h"

namespace hyoracle::compare {

namespace {

constexpr size_t kMaxFailedListed = 100;  // failed tensors listed at the top
constexpr size_t kMaxFlipsListed = 200;   // rows of the flip table
constexpr size_t kMaxGridTokens = 32;     // tokens per routing disagreement grid
constexpr size_t kMaxGrids = 16;          // routing layer-steps with a disagreement grid

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else if (c == '\'') o += "&#39;";
    else o += c;
  }
  return o;
}

std::string set_str(const std::vector<int64_t>& v) {
  std::string s = "{";
  for (int64_t e : v) s += (s.size() > 1 ? ", " : "") + std::to_string(e);
  return s + "}";
}

// y = log10(v) mapped onto [top, bottom]; non-positive values sit on the floor.
std::string error_curve_svg(const std::vector<LayerPoint>& pts, int64_t divergence_layer) {
  const double W = 640, H = 260, l = 60, rgt = 20, top = 20, bot = 40;
  double lo = 1e300, hi = -1e300;
  for (const auto& p : pts)
    for (double v : {p.total, p.added})
      if (v > 0 && std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (lo > hi) lo = 1e-8, hi = 1;
  const double dlo = std::floor(std::log10(lo)), dhi = std::max(dlo + 1, std::ceil(std::log10(hi)));
  const size_t n = std::max<size_t>(pts.size(), 1);
  auto X = [&](size_t i) { return l + (n == 1 ? (W - l - rgt) / 2 : double(i) * (W - l - rgt) / double(n - 1)); };
  auto Y = [&](double v) {
    const double lv = v > 0 && std::isfinite(v) ? std::log10(v) : dlo;
    return top + (dhi - std::clamp(lv, dlo, dhi)) / (dhi - dlo) * (H - top - bot);
  };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' font-size='11'>";
  s << "<rect x='" << l << "' y='" << top << "' width='" << W - l - rgt << "' height='" << H - top - bot << "' fill='#fafafa' stroke='#ccc'/>";
  for (double d = dlo; d <= dhi; d += 1) {
    s << "<line x1='" << l << "' x2='" << W - rgt << "' y1='" << Y(std::pow(10, d)) << "' y2='" << Y(std::pow(10, d))
      << "' stroke='#e4e4e4'/><text x='" << l - 5 << "' y='" << Y(std::pow(10, d)) + 4 << "' text-anchor='end'>1e" << int(d) << "</text>";
  }
  const size_t every = std::max<size_t>(1, pts.size() / 40);  // at most about 40 layer labels
  for (size_t i = 0; i < pts.size(); ++i) {
    if (i % every == 0)
      s << "<text x='" << X(i) << "' y='" << H - bot + 15 << "' text-anchor='middle'>" << pts[i].layer << "</text>";
    if (pts[i].layer == divergence_layer)
      s << "<line x1='" << X(i) << "' x2='" << X(i) << "' y1='" << top << "' y2='" << H - bot
        << "' stroke='#d33' stroke-dasharray='4 3'/><text x='" << (2 * i < n ? X(i) + 4 : X(i) - 4)
        << "' y='" << top + 44 << "' fill='#d33' text-anchor='" << (2 * i < n ? "start" : "end")
        << "'>first divergence</text>";  // label on the side with room
  }
  s << "<text x='" << (l + W - rgt) / 2 << "' y='" << H - 5 << "' text-anchor='middle'>layer</text>";
  auto line = [&](auto get, const char* color, const char* dash) {
    s << "<polyline fill='none' stroke='" << color << "' stroke-width='2' stroke-dasharray='" << dash << "' points='";
    for (size_t i = 0; i < pts.size(); ++i) s << X(i) << "," << Y(get(pts[i])) << " ";
    s << "'/>";
    for (size_t i = 0; i < pts.size(); ++i) s << "<circle cx='" << X(i) << "' cy='" << Y(get(pts[i])) << "' r='3' fill='" << color << "'/>";
  };
  line([](const LayerPoint& p) { return p.total; }, "#2060c0", "0");
  line([](const LayerPoint& p) { return p.added; }, "#e08000", "5 3");
  s << "<text x='" << l + 8 << "' y='" << top + 14 << "' fill='#2060c0'>total rel-L2 (layers.L.out)</text>";
  s << "<text x='" << l + 8 << "' y='" << top + 28 << "' fill='#e08000'>largest added rel-L2 in the layer</text>";
  s << "</svg>";
  return s.str();
}

// Per-token judged rel-L2 against token index on a log axis, with the per-token limit as a dashed
// red line; tokens above their limit drawn red.
std::string token_error_svg(const TensorResult& t) {
  const std::vector<double>& e = judged_metrics(t).token_rel_l2;
  const std::vector<double>& lim = t.token_limits;
  const bool limits = lim.size() == e.size();
  const double W = 640, H = 220, l = 60, rgt = 20, top = 20, bot = 40;
  double lo = 1e300, hi = -1e300;
  for (size_t i = 0; i < e.size(); ++i)
    for (double v : {e[i], limits ? lim[i] : 0.0})
      if (v > 0 && std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (lo > hi) lo = 1e-8, hi = 1;
  const double dlo = std::floor(std::log10(lo)), dhi = std::max(dlo + 1, std::ceil(std::log10(hi)));
  const size_t n = std::max<size_t>(e.size(), 1);
  auto X = [&](size_t i) { return l + (n == 1 ? (W - l - rgt) / 2 : double(i) * (W - l - rgt) / double(n - 1)); };
  auto Y = [&](double v) {
    const double lv = v > 0 && std::isfinite(v) ? std::log10(v) : (std::isinf(v) ? dhi : dlo);
    return top + (dhi - std::clamp(lv, dlo, dhi)) / (dhi - dlo) * (H - top - bot);
  };
  std::ostringstream s;
  s << "<svg class='tokens' xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='11'>";
  s << "<rect x='" << l << "' y='" << top << "' width='" << W - l - rgt << "' height='" << H - top - bot
    << "' fill='#fafafa' stroke='#ccc'/>";
  for (double d = dlo; d <= dhi; d += 1)
    s << "<line x1='" << l << "' x2='" << W - rgt << "' y1='" << Y(std::pow(10, d)) << "' y2='" << Y(std::pow(10, d))
      << "' stroke='#e4e4e4'/><text x='" << l - 5 << "' y='" << Y(std::pow(10, d)) + 4 << "' text-anchor='end'>1e" << int(d)
      << "</text>";
  s << "<text x='" << X(0) << "' y='" << H - bot + 15 << "' text-anchor='middle'>0</text>";
  if (n > 1) s << "<text x='" << X(n - 1) << "' y='" << H - bot + 15 << "' text-anchor='middle'>" << n - 1 << "</text>";
  s << "<text x='" << (l + W - rgt) / 2 << "' y='" << H - 5
    << "' text-anchor='middle'>token (row)</text>";
  if (limits && lim.size() == 1) {  // one row (a decode step): the limit across the plot
    s << "<line x1='" << l << "' x2='" << W - rgt << "' y1='" << Y(lim[0]) << "' y2='" << Y(lim[0])
      << "' stroke='#d33' stroke-width='1.5' stroke-dasharray='5 3'/>";
  } else if (limits && !lim.empty()) {
    s << "<polyline fill='none' stroke='#d33' stroke-width='1.5' stroke-dasharray='5 3' points='";
    for (size_t i = 0; i < lim.size(); ++i) s << X(i) << "," << Y(lim[i]) << " ";
    s << "'/>";
  }
  if (e.size() > 1) {
    s << "<polyline fill='none' stroke='#2060c0' stroke-width='1' points='";
    for (size_t i = 0; i < e.size(); ++i) s << X(i) << "," << Y(e[i]) << " ";
    s << "'/>";
  }
  const double r = e.size() > 200 ? 1.5 : 3;
  for (size_t i = 0; i < e.size(); ++i) {
    const bool over = limits && e[i] > lim[i];
    s << "<circle cx='" << X(i) << "' cy='" << Y(e[i]) << "' r='" << r << "' fill='" << (over ? "#d33" : "#2060c0")
      << "'><title>token " << i << ": " << g3(e[i]) << (limits ? " (limit " + g3(lim[i]) + ")" : std::string()) << "</title></circle>";
  }
  s << "<text x='" << l + 8 << "' y='" << top + 14 << "' fill='#2060c0'>" << t.judged_on << " rel-L2 per token</text>";
  if (limits) s << "<text x='" << l + 8 << "' y='" << top + 28 << "' fill='#d33'>per-token limit</text>";
  s << "</svg>";
  return s.str();
}

// How many tokens used each decade of their per-token limit (<1%, 1-10%, 10-100%, 1-10×, 10-100×,
// ≥100×), as a table of bars.
std::string token_histogram_html(const TensorResult& t) {
  const std::vector<double>& e = judged_metrics(t).token_rel_l2;
  if (t.token_limits.size() != e.size() || e.empty()) return "";
  const char* const labels[] = {"< 0.01×", "0.01–0.1×", "0.1–1×", "1–10×", "10–100×", "≥ 100×"};
  int64_t counts[6] = {};
  for (size_t i = 0; i < e.size(); ++i) {
    const double u = t.token_limits[i] > 0 ? e[i] / t.token_limits[i] : INFINITY;
    const int bin = !(u > 0) ? 0 : std::isinf(u) ? 5 : std::clamp(int(std::floor(std::log10(u))) + 3, 0, 5);
    ++counts[bin];
  }
  const int64_t most = *std::max_element(counts, counts + 6);
  std::ostringstream s;
  s << "<table class='hist'><tr><th>per-token error / per-token limit</th><th>tokens</th><th></th></tr>";
  for (int b = 0; b < 6; ++b)
    s << "<tr" << (b >= 3 && counts[b] ? " class='fail'" : "") << "><td>" << labels[b] << "</td><td>" << counts[b]
      << "</td><td style='text-align:left'><span style='display:inline-block;height:9px;background:"
      << (b >= 3 ? "#d33" : "#2060c0") << ";width:" << (most ? 200 * counts[b] / most : 0) << "px'></span></td></tr>";
  s << "</table>";
  return s.str();
}

// The layer × step × operation grid as one SVG panel per step (rows layers, columns operations),
// each cell coloured by its budget use and titled with the tensor, its × budget, error and limit.
std::string heat_map_svg(const HeatMap& h) {
  const double cw = 16, ch = h.layers.size() > 40 ? 6 : 14, left = 34, top = 26;
  std::ostringstream s;
  s << "<div class='heat'>";
  for (int64_t step : h.steps) {
    const double W = left + cw * double(h.ops.size()) + 4, H = top + ch * double(h.layers.size()) + 4;
    s << "<figure><figcaption>" << (step == 0 ? std::string("prefill") : "decode step " + std::to_string(step))
      << "</figcaption><svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='9'>";
    const size_t every = h.layers.size() > 40 ? 10 : 1;
    for (size_t i = 0; i < h.layers.size(); ++i)
      if (i % every == 0)
        s << "<text x='" << left - 3 << "' y='" << top + ch * double(i) + ch - 1 << "' text-anchor='end'>" << h.layers[i] << "</text>";
    s << "<text x='" << left << "' y='10'>layer ↓ · operation →</text>";
    for (size_t j = 0; j < h.ops.size(); ++j)  // column numbers, as in the legend below the panels
      s << "<text x='" << left + cw * double(j) + (cw - 1) / 2 << "' y='" << top - 3 << "' text-anchor='middle'>" << j + 1
        << "</text>";
    for (const HeatCell& c : h.cells) {
      if (c.step != step) continue;
      const size_t row = size_t(std::lower_bound(h.layers.begin(), h.layers.end(), c.layer) - h.layers.begin());
      const size_t col = size_t(std::find(h.ops.begin(), h.ops.end(), c.op) - h.ops.begin());
      const std::string fill = c.verdict == Verdict::incomplete ? "#bbbbbb" : units_colour(c.units);
      s << "<rect class='cell' data-cell='" << step_label(step) << ":" << c.layer << ":" << esc(c.op) << "' x='"
        << left + cw * double(col) << "' y='" << top + ch * double(row) << "' width='" << cw - 1 << "' height='" << ch - 1
        << "' fill='" << fill << "'" << (c.verdict == Verdict::fail ? " stroke='#000' stroke-width='0.8'" : "") << "><title>"
        << esc(c.tensor) << ": " << g3(c.units) << "× budget (error " << g3(c.error) << ", limit " << g3(c.limit) << ", "
        << verdict_name(c.verdict) << ")</title></rect>";
    }
    s << "</svg></figure>";
  }
  s << "</div><p class='small'>Columns (operations):";
  for (size_t i = 0; i < h.ops.size(); ++i) s << " " << i + 1 << "&nbsp;<code>" << esc(h.ops[i]) << "</code>";
  s << ". Colour: <span class='sw' style='background:" << units_colour(0) << "'></span> 0 → <span class='sw' style='background:"
    << units_colour(1) << "'></span> 1× budget → <span class='sw' style='background:" << units_colour(1.0001)
    << "'></span> over → <span class='sw' style='background:" << units_colour(100)
    << "'></span> ≥ 100×; failed cells outlined; grey: incomplete. Hover a cell for its tensor and value.</p>";
  return s.str();
}

void header(std::ostringstream& o, const Report& r) {
  const bool pass = r.verdict == Verdict::pass;
  o << "<!doctype html><html><head><meta charset='utf-8'><title>hyoracle compare: " << verdict_name(r.verdict)
    << "</title><style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px}"
       "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}"
       "td.reason{white-space:normal;text-align:left;min-width:12em;max-width:30em}"
       ".fail{background:#fde2e2}.verdict{font-size:1.6em;padding:.3em .6em;display:inline-block;color:#fff}"
       "code{background:#f3f3f3;padding:1px 3px}.heat{display:flex;flex-wrap:wrap;gap:8px}.heat figure{margin:0}"
       ".heat figcaption{font-size:12px}.small{font-size:12px}.sw{display:inline-block;width:12px;height:10px;border:1px solid #999}"
       "td.R{background:#bbdefb}td.T{background:#ffe0b2}:target{outline:2px solid #2060c0}th{cursor:default}</style></head><body>";
  o << "<div class='verdict' style='background:" << (pass ? "#2a8a2a" : r.verdict == Verdict::fail ? "#c62828" : "#b8860b")
    << "'>" << verdict_name(r.verdict) << "</div>";
  o << "<p>baseline <code>" << esc(r.baseline_dir) << "</code> " << esc(r.baseline_producer.dump()) << "<br>target <code>"
    << esc(r.target_dir) << "</code> " << esc(r.target_producer.dump()) << "<br>"
    << (r.teacher_forced ? "teacher-forced: every step re-run by the reference on the target's own inputs"
                         : "total error only (no --model, or --no-teacher-forcing): a screening result, not a verdict")
    << "; " << r.tensors.size() << " tensors, " << g3(r.seconds) << " s; hyoracle " << kHyoracleVersion << "</p>";
  if (!r.error.empty()) o << "<p><b>error:</b> " << esc(r.error) << "</p>";
  for (const auto& n : r.notes) o << "<p>note: " << esc(n) << "</p>";
}

void failed_list(std::ostringstream& o, const Report& r) {
  const auto failed = failed_tensors(r);
  if (failed.empty()) return;
  o << "<h2 id='failed'>Failed tensors (" << failed.size() << ")</h2><ol class='failed'>";
  for (size_t i = 0; i < failed.size() && i < kMaxFailedListed; ++i) {
    const TensorResult& t = *failed[i];
    o << "<li><a href='#" << row_anchor(t.name) << "'><code>" << esc(t.name) << "</code></a> (" << where(t) << ", "
      << g3(t.budget_units) << "× budget): " << esc(t.reason) << "</li>";
  }
  o << "</ol>";
  if (failed.size() > kMaxFailedListed)
    o << "<p>+" << failed.size() - kMaxFailedListed << " more: every one is marked in the tensor table below.</p>";
}

void first_divergence(std::ostringstream& o, const Report& r) {
  o << "<h2>First divergence</h2>";
  if (!r.first_divergence) {
    o << "<p>None.</p>";
    return;
  }
  o << "<p><b><a href='#" << row_anchor(r.first_divergence->tensor) << "'><code>" << esc(r.first_divergence->tensor)
    << "</code></a></b>: " << esc(r.first_divergence->reason) << "</p><ul>";
  const TensorResult* t = find_tensor(r, r.first_divergence->tensor);
  if (!t) {
    o << "</ul>";
    return;
  }
  o << "<li>where: " << where(*t) << "; judged on the " << t->judged_on << " error</li>";
  o << "<li>rule <code>" << esc(t->budget.rule) << "</code>: " << esc(t->budget.derivation) << "</li>";
  if (!t->replay_read.empty()) {
    o << "<li>replayed from the target's";
    for (const auto& n : t->replay_read) o << " <code>" << esc(n) << "</code>";
    o << "</li>";
  }
  if (!t->replay_composed.empty()) {
    o << "<li>recomputed (not in the target's dump):";
    for (const auto& n : t->replay_composed) o << " <code>" << esc(n) << "</code>";
    o << "; composed noise " << g3(t->composed_noise) << "</li>";
  }
  for (const auto& h : t->hints) o << "<li>hint (heuristic): " << esc(h) << "</li>";
  o << "</ul>";
  if (t->op == "routing" || t->op == "generation") return;
  const Metrics& m = judged_metrics(*t);
  if (!m.token_rel_l2.empty()) {
    o << "<h3>Per-token error</h3>" << token_error_svg(*t);
    if (t->token_limits.size() != m.token_rel_l2.size()) o << "<p class='small'>No per-token limit for this rule.</p>";
    o << token_histogram_html(*t);
  }
  o << "<h3>Worst element</h3><table><tr><th>coordinate</th><th>" << (t->judged_on == "local" ? "reference on the target's inputs" : "baseline")
    << "</th><th>target</th><th>|e|</th></tr><tr><td>" << shape_str(m.max_abs_at) << "</td><td>" << g6(m.max_abs_ref)
    << "</td><td>" << g6(m.max_abs_target) << "</td><td>" << g6(m.max_abs) << "</td></tr></table>"
    << "<p class='small'>Neighbouring values are not kept by compare (it streams the dumps and keeps only the largest "
       "|e| with its two values); read them from both dumps at this coordinate.</p>";
  o << "<p>|e|: mean " << g3(m.mean_abs) << ", p50 " << g3(m.p50) << ", p99 " << g3(m.p99) << ", p99.9 " << g3(m.p999)
    << ", max " << g3(m.max_abs) << "; 1 − cosine " << one_minus_cos(m.cosine) << "; norm ratio " << g3(m.norm_ratio) << "</p>";
}

void generation_divergence(std::ostringstream& o, const LogitsSummary& g) {
  if (g.first_token_divergence < 0) return;
  o << "<h2>First differing generated token</h2><p>Step " << g.first_token_divergence << ": baseline token "
    << g.divergence_token_baseline << ", target token " << g.divergence_token_target << " ("
    << "<b>" << esc(generation_divergence_kind(g)) << "</b>: reference top-1 − top-2 margin " << g3(g.divergence_margin)
    << " vs expected noise " << g3(g.divergence_noise) << ").</p>";
  const size_t n = std::max(g.divergence_top_baseline.size(), g.divergence_top_target.size());
  if (n == 0) {
    o << "<p>No generate.logits on either side: top logits not available.</p>";
    return;
  }
  o << "<table><tr><th>rank</th><th>baseline token</th><th>logit</th><th>target token</th><th>logit</th></tr>";
  for (size_t i = 0; i < n; ++i) {
    o << "<tr><td>" << i + 1 << "</td>";
    for (const auto* v : {&g.divergence_top_baseline, &g.divergence_top_target})
      if (i < v->size()) o << "<td>" << (*v)[i].first << "</td><td>" << g3((*v)[i].second) << "</td>";
      else o << "<td>–</td><td>–</td>";
    o << "</tr>";
  }
  o << "</table>";
}

void tensor_table(std::ostringstream& o, const Report& r) {
  o << "<h2>Tensors</h2><p class='small'>Execution order; failed rows red with the reason in its cell. Click a header to "
       "sort (needs scripts; the page reads the same without).</p><table id='tensors' class='sortable'><thead><tr><th>tensor</th>"
       "<th>step</th><th>verdict</th><th>× budget</th><th>reason</th><th>judged</th><th>error</th><th>limit</th>"
       "<th>min passing</th><th>inherited</th><th>total rel-L2</th><th>1 − cos</th><th>norm ratio</th><th>max abs</th><th>at</th>"
       "<th>rule</th></tr></thead><tbody>";
  for (const auto& t : r.tensors) {
    o << "<tr id='" << row_anchor(t.name) << "'" << (t.verdict == Verdict::fail ? " class='fail'" : "") << "><td><code>"
      << esc(t.name) << "</code></td><td>" << step_of(t) << "</td><td>" << verdict_name(t.verdict) << "</td><td>"
      << g3(t.budget_units) << "</td><td class='reason'>" << esc(t.reason) << "</td><td>" << t.judged_on << "</td><td>"
      << g3(t.judged_error) << "</td><td>" << g3(t.budget.limit) << "</td><td>" << g3(t.min_passing) << "</td><td>"
      << g3_or_dash(t.inherited) << "</td>";
    if (t.op == "routing" || t.op == "generation") o << "<td colspan=5>see below</td>";
    else if (!t.total_comparable) o << "<td colspan=5>n/a (the baseline ran other tokens here)</td>";
    else
      o << "<td>" << g3(t.total.rel_l2) << "</td><td>" << one_minus_cos(t.total.cosine) << "</td><td>" << g3(t.total.norm_ratio)
        << "</td><td>" << g3(t.total.max_abs) << "</td><td>" << shape_str(t.total.max_abs_at) << "</td>";
    o << "<td><code>" << esc(t.budget.rule) << "</code></td></tr>";
  }
  o << "</tbody></table>";
}

void routing(std::ostringstream& o, const Report& r) {
  if (r.routing.empty()) return;
  o << "<h2>Routing</h2><table><tr><th>layer</th><th>step</th><th>exact sets</th><th>mean Jaccard</th><th>near-tie flips</th>"
       "<th>real flips</th><th>forced mismatches</th><th>min margin</th><th>max weight Δ</th><th>margin source</th></tr>";
  for (const auto& l : r.routing) {
    o << "<tr" << (l.real_flips || l.forced_mismatches ? " class='fail'" : "") << "><td>" << l.layer << "</td><td>"
      << step_label(l.step) << "</td>";
    if (l.reference_comparable)
      o << "<td>" << l.exact_set_match << "/" << l.tokens << "</td><td>" << g3(l.mean_jaccard) << "</td><td>" << l.near_tie_flips
        << "</td><td>" << l.real_flips << "</td>";
    else o << "<td colspan=4>n/a (the baseline ran other tokens here)</td>";
    o << "<td>" << (l.forced ? std::to_string(l.forced_mismatches) : std::string("–")) << "</td>";
    if (l.reference_comparable)
      o << "<td>" << g3(l.min_margin) << "</td><td>" << g3(l.max_weight_delta) << "</td><td>" << esc(l.margin_source) << "</td></tr>";
    else o << "<td colspan=3>n/a</td></tr>";
  }
  o << "</table>";
  size_t flips = 0;
  for (const auto& l : r.routing) flips += l.flips.size();
  if (flips) {
    o << "<h3>Flipped experts (" << flips << ")</h3><table><tr><th>layer</th><th>step</th><th>token</th><th>reference only</th>"
         "<th>target only</th><th>reference gap</th><th>expected noise</th><th>kind</th></tr>";
    size_t listed = 0;
    for (const auto& l : r.routing)
      for (const auto& f : l.flips)
        if (listed++ < kMaxFlipsListed)
          o << "<tr" << (f.near_tie ? "" : " class='fail'") << "><td>" << l.layer << "</td><td>" << step_label(l.step)
            << "</td><td>" << f.token << "</td><td>" << set_str(f.only_baseline) << "</td><td>" << set_str(f.only_target)
            << "</td><td>" << g3(f.margin) << "</td><td>" << g3(f.noise) << "</td><td>" << (f.near_tie ? "near-tie" : "real flip")
            << "</td></tr>";
    o << "</table>";
    if (flips > kMaxFlipsListed) o << "<p>+" << flips - kMaxFlipsListed << " more flips (all in the JSON report).</p>";
    size_t grids = 0, with_flips = 0;
    for (const auto& l : r.routing) {
      if (l.flips.empty()) continue;
      if (grids++ >= kMaxGrids) continue;
      ++with_flips;
      const DisagreementGrid g = disagreement_grid(l, kMaxGridTokens);
      o << "<h4>Layer " << l.layer << ", " << (l.step ? "decode step " + std::to_string(l.step) : std::string("prefill"))
        << ": tokens × experts where the sets differ</h4><table class='grid'><tr><th>token</th>";
      for (int64_t e : g.experts) o << "<th>" << e << "</th>";
      o << "</tr>";
      for (const RoutingFlip* f : g.tokens) {
        o << "<tr><td>" << f->token << (f->near_tie ? "" : " (real)") << "</td>";
        for (int64_t e : g.experts) {
          const bool rb = std::count(f->only_baseline.begin(), f->only_baseline.end(), e) > 0;
          const bool tg = std::count(f->only_target.begin(), f->only_target.end(), e) > 0;
          o << (rb ? "<td class='R'>R</td>" : tg ? "<td class='T'>T</td>" : "<td></td>");
        }
        o << "</tr>";
      }
      o << "</table>";
      if (g.more_tokens) o << "<p>+" << g.more_tokens << " more tokens with a disagreement.</p>";
    }
    o << "<p class='small'>R: only the reference chose the expert; T: only the target did.";
    if (grids > with_flips) o << " +" << grids - with_flips << " more layer-steps with a disagreement (all in the JSON report).";
    o << "</p>";
  }
  bool any_forced = false;
  for (const auto& l : r.routing) any_forced = any_forced || l.forced_mismatches > 0;
  if (any_forced) {
    o << "<h3>Selection against the target's own router output</h3><table><tr><th>layer</th><th>step</th><th>token</th>"
         "<th>chosen</th><th>score</th><th>passed over</th><th>score</th><th>rounding window</th></tr>";
    for (const auto& l : r.routing)
      for (const auto& m : l.forced_list)
        o << "<tr class='fail'><td>" << l.layer << "</td><td>" << step_label(l.step) << "</td><td>" << m.token << "</td><td>"
          << m.chosen << "</td><td>" << g3(m.c_chosen) << "</td><td>" << m.passed_over << "</td><td>" << g3(m.c_passed_over)
          << "</td><td>" << g3(m.window) << "</td></tr>";
    o << "</table>";
  }
}

void logits(std::ostringstream& o, const LogitsSummary& g) {
  if (!g.present && !g.generated) return;
  o << "<h2>Logits</h2><p>";
  if (g.present)
    o << "top-1 agreement " << g.top1_agree << "/" << g.positions << "; KL mean " << g3(g.kl_mean) << ", p99 " << g3(g.kl_p99)
      << ", max " << g3(g.kl_max) << ". ";
  if (g.generated)
    o << "Generation: " << g.generated << " tokens, first difference: "
      << (g.first_token_divergence < 0 ? std::string("none (identical)") : "step " + std::to_string(g.first_token_divergence));
  o << "</p>";
}

void coverage(std::ostringstream& o, const Report& r) {
  o << "<h2>Coverage</h2><p>only in baseline: " << r.missing_in_target.size() << "; only in target: "
    << r.missing_in_baseline.size() << "; missing required: " << r.missing_required.size() << "</p>";
  const auto groups = skipped_by_reason(r);
  if (groups.empty()) return;
  o << "<table class='skipped'><tr><th>skipped, reason</th><th>tensors</th><th>e.g.</th></tr>";
  for (const SkipGroup& g : groups) {
    o << "<tr><td class='reason'>" << esc(g.reason) << "</td><td>" << g.count << "</td><td style='text-align:left'>";
    for (const auto& n : g.examples) o << "<code>" << esc(n) << "</code> ";
    if (int64_t(g.examples.size()) < g.count) o << "…";
    o << "</td></tr>";
  }
  o << "</table>";
}

// Click-to-sort for the tensor table: numbers by value (non-numbers last), text by text. The page
// is complete without it.
const char* const kSortScript =
    "<script>document.querySelectorAll('table.sortable th').forEach(function(th,i){th.style.cursor='pointer';"
    "th.onclick=function(){var tb=th.closest('table').tBodies[0],rs=Array.from(tb.rows),up=th.dataset.up!='y';"
    "th.dataset.up=up?'y':'n';function v(r){var c=r.cells[i];if(!c)return'';var t=c.textContent,x=parseFloat(t);"
    "return isNaN(x)?t:x;}rs.sort(function(a,b){var x=v(a),y=v(b);if(typeof x!=typeof y)return typeof x=='number'?0-up:up-0;"
    "var c=(x>y)-(x<y);return up?c:0-c;});rs.forEach(function(r){tb.appendChild(r);});};});</script>";

}  // namespace

std::string report_html(const Report& r) {
  std::ostringstream o;
  header(o, r);
  failed_list(o, r);
  first_divergence(o, r);
  if (r.first_total_divergence)
    o << "<p>First tensor whose <i>total</i> error exceeds its total budget: <a href='#"
      << row_anchor(r.first_total_divergence->tensor) << "'><code>" << esc(r.first_total_divergence->tensor) << "</code></a> ("
      << esc(r.first_total_divergence->reason) << ")</p>";
  generation_divergence(o, r.logits);
  const HeatMap h = heat_map(r);
  if (!h.cells.empty()) o << "<h2>Budget use: layer × step × operation</h2>" << heat_map_svg(h);
  const auto curve = layer_curve(r);
  const TensorResult* first = r.first_divergence ? find_tensor(r, r.first_divergence->tensor) : nullptr;
  if (!curve.empty())  // the curve is the prefill's: a decode step's divergence is not marked on it
    o << "<h2>Per-layer error (prefill)</h2>"
      << error_curve_svg(curve, first && first->step == 0 && first->layer >= 0 ? first->layer : INT64_MIN);
  tensor_table(o, r);
  routing(o, r);
  logits(o, r.logits);
  coverage(o, r);
  o << kSortScript << "</body></html>\n";
  return o.str();
}

}  // namespace hyoracle::compare
