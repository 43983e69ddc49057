// report_html.cpp: a self-contained HTML page (no scripts, no external assets) with an inline SVG
// per-layer error curve: total rel-L2 of layers.L.out and the largest added (local) rel-L2, on a
// log axis, with the first divergence marked.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "compare.h"
#include "layer_curve.h"

namespace hyoracle::compare {

namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
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
  for (size_t i = 0; i < pts.size(); ++i) {
    s << "<text x='" << X(i) << "' y='" << H - bot + 15 << "' text-anchor='middle'>" << pts[i].layer << "</text>";
    if (pts[i].layer == divergence_layer)
      s << "<line x1='" << X(i) << "' x2='" << X(i) << "' y1='" << top << "' y2='" << H - bot
        << "' stroke='#d33' stroke-dasharray='4 3'/><text x='" << (2 * i < n ? X(i) + 4 : X(i) - 4)
        << "' y='" << top + 12 << "' fill='#d33' text-anchor='" << (2 * i < n ? "start" : "end")
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

}  // namespace

std::string report_html(const Report& r) {
  std::ostringstream o;
  const bool pass = r.verdict == Verdict::pass;
  o << "<!doctype html><html><head><meta charset='utf-8'><title>hyoracle compare: " << verdict_name(r.verdict)
    << "</title><style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}"
       "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}"
       ".fail{background:#fde2e2}.verdict{font-size:1.6em;padding:.3em .6em;display:inline-block;color:#fff}"
       "code{background:#f3f3f3;padding:1px 3px}</style></head><body>";
  o << "<div class='verdict' style='background:" << (pass ? "#2a8a2a" : r.verdict == Verdict::fail ? "#c62828" : "#b8860b")
    << "'>" << verdict_name(r.verdict) << "</div>";
  o << "<p>baseline <code>" << esc(r.baseline_dir) << "</code> " << esc(r.baseline_producer.dump()) << "<br>target <code>"
    << esc(r.target_dir) << "</code> " << esc(r.target_producer.dump()) << "<br>"
    << (r.teacher_forced ? "teacher-forced: every step re-run by the reference on the target's own inputs" : "total error only (no --model)")
    << "; " << r.tensors.size() << " tensors, " << g3(r.seconds) << " s</p>";
  if (!r.error.empty()) o << "<p><b>error:</b> " << esc(r.error) << "</p>";
  for (const auto& n : r.notes) o << "<p>note: " << esc(n) << "</p>";
  o << "<h2>First divergence</h2>";
  int64_t dl = -2;
  if (!r.first_divergence) o << "<p>None.</p>";
  else {
    dl = r.first_divergence->layer;
    o << "<p><b><code>" << esc(r.first_divergence->tensor) << "</code></b>: " << esc(r.first_divergence->reason) << "</p><ul>";
    for (const auto& t : r.tensors)
      if (t.name == r.first_divergence->tensor) {
        o << "<li>rule <code>" << esc(t.budget.rule) << "</code>: " << esc(t.budget.derivation) << "</li>";
        if (!t.replay_composed.empty()) {
          o << "<li>recomputed (not in the target's dump):";
          for (const auto& n : t.replay_composed) o << " <code>" << esc(n) << "</code>";
          o << "</li>";
        }
        for (const auto& h : t.hints) o << "<li>hint (heuristic): " << esc(h) << "</li>";
      }
    o << "</ul>";
  }
  o << "<h2>Per-layer error</h2>" << error_curve_svg(layer_curve(r), dl);
  o << "<h2>Tensors</h2><table><tr><th>tensor</th><th>verdict</th><th>judged</th><th>error</th><th>limit</th><th>× budget</th>"
       "<th>min passing</th><th>inherited</th><th>total rel-L2</th><th>cosine</th><th>norm ratio</th><th>max abs</th><th>at</th><th>rule</th></tr>";
  for (const auto& t : r.tensors) {
    o << "<tr" << (t.verdict == Verdict::fail ? " class='fail' title='" + esc(t.reason) + "'" : "") << "><td><code>"
      << esc(t.name) << "</code></td><td>" << verdict_name(t.verdict) << "</td><td>" << t.judged_on << "</td><td>"
      << g3(t.judged_error) << "</td><td>" << g3(t.budget.limit) << "</td><td>" << g3(t.budget_units) << "</td><td>"
      << g3(t.min_passing) << "</td><td>" << g3(t.inherited) << "</td>";
    if (t.op == "routing" || t.op == "generation") o << "<td colspan=5>see below</td>";
    else if (!t.total_comparable) o << "<td colspan=5>n/a (the baseline ran other tokens here)</td>";
    else
      o << "<td>" << g3(t.total.rel_l2) << "</td><td>" << g3(t.total.cosine) << "</td><td>" << g3(t.total.norm_ratio)
        << "</td><td>" << g3(t.total.max_abs) << "</td><td>" << shape_str(t.total.max_abs_at) << "</td>";
    o << "<td><code>" << esc(t.budget.rule) << "</code></td></tr>";
  }
  o << "</table>";
  if (!r.routing.empty()) {
    o << "<h2>Routing</h2><table><tr><th>layer</th><th>exact sets</th><th>mean Jaccard</th><th>near-tie flips</th>"
         "<th>real flips</th><th>min margin</th><th>max weight Δ</th><th>margin source</th></tr>";
    for (const auto& l : r.routing)
      o << "<tr" << (l.real_flips ? " class='fail'" : "") << "><td>" << l.layer << "</td><td>" << l.exact_set_match << "/"
        << l.tokens << "</td><td>" << g3(l.mean_jaccard) << "</td><td>" << l.near_tie_flips << "</td><td>" << l.real_flips
        << "</td><td>" << g3(l.min_margin) << "</td><td>" << g3(l.max_weight_delta) << "</td><td>" << esc(l.margin_source)
        << "</td></tr>";
    o << "</table>";
  }
  if (r.logits.present)
    o << "<h2>Logits</h2><p>top-1 agreement " << r.logits.top1_agree << "/" << r.logits.positions << "; KL mean "
      << g3(r.logits.kl_mean) << ", p99 " << g3(r.logits.kl_p99) << ", max " << g3(r.logits.kl_max) << "; generation "
      << r.logits.generated << " tokens, first difference at step " << r.logits.first_token_divergence << "</p>";
  o << "<h2>Coverage</h2><p>only in baseline: " << r.missing_in_target.size() << "; only in target: "
    << r.missing_in_baseline.size() << "; missing required: " << r.missing_required.size() << "; skipped: " << r.skipped.size()
    << "</p></body></html>\n";
  return o.str();
}

}  // namespace hyoracle::compare
