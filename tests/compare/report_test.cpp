// The human reports (HTML, Markdown, terminal summary) and the table exports (CSV, JSON Lines) on
// Reports built here, so every expected value comes from the constructed input: anchors for each
// failed tensor, one heat-map cell per judged layer × step × operation, skipped tensors grouped by
// reason, no -1 sentinels, cosine digits, the Markdown's size bound on an 80-layer × 9-step report,
// and the tables' row counts and round trip. Last, a failing decode-step report of a committed
// engine dump (fixtures/tiny-mt2/engine-dumps/kv-cache-drop-last-modules).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "compare/compare.h"
#include "tests/compare/compare_helpers.h"
#include "reference/names.h"
#include "compare/report_view.h"

using namespace hyoracle;
using namespace hyoracle::compare;

namespace {

// Occurrences of `needle` in `hay`.
size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + needle.size())) ++n;
  return n;
}

// A judged tensor of layer L at step S with the given budget use; limit 0.01, per-token errors
// for `tokens` rows, cosine 1 − 1e-7.
TensorResult tensor(int64_t step, int64_t layer, const std::string& op, double units, int64_t tokens = 4) {
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
std::vector<std::string> ops() {
  std::vector<std::string> v;
  for (const auto& s : names::layer_suffixes())
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
Synthetic synthetic(int64_t layers, int64_t steps, const std::set<std::tuple<int64_t, int64_t, size_t>>& fail_at,
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

// RFC 4180 records of a CSV text (quoted fields with doubled quotes and embedded line breaks).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(field), field.clear();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      row.push_back(field), field.clear();
      rows.push_back(row), row.clear();
      ++i;
    } else {
      field += c;
    }
  }
  return rows;
}

// The text around the first "-1" standing alone (not the tail of 1e-1, top-1 or a longer number),
// or "" when there is none.
std::string minus_one(const std::string& s) {
  static const std::regex re("(^|[^0-9A-Za-z.])-1([^0-9.]|$)");
  std::smatch m;
  if (!std::regex_search(s, m, re)) return "";
  const size_t at = size_t(m.position(0));
  return s.substr(at < 60 ? 0 : at - 60, 120);
}

}  // namespace

TEST(Reports, HtmlAnchorsHeatMapAndSkippedGroups) {
  const Synthetic s = synthetic(3, 3, {{0, 1, 2}, {2, 1, 5}, {2, 2, 0}}, 171, 6);
  const std::string html = report_html(s.r);
  ASSERT_EQ(s.failed.size(), 3u);
  for (const std::string& name : s.failed) {
    EXPECT_EQ(count_of(html, "id='" + row_anchor(name) + "'"), 1u) << name;
    EXPECT_GE(count_of(html, "href='#" + row_anchor(name) + "'"), 1u) << name;
  }
  // One heat-map cell per judged layer tensor, each at its layer × step × operation.
  EXPECT_EQ(count_of(html, "class='cell'"), size_t(s.layer_tensors));
  const auto names = ops();
  for (int64_t S = 0; S < 3; ++S)
    for (int64_t L = 0; L < 3; ++L)
      for (const auto& op : names)
        EXPECT_EQ(count_of(html, "data-cell='" + step_label(S) + ":" + std::to_string(L) + ":" + op + "'"), 1u);
  EXPECT_NE(html.find("data-cell='2:1:" + names[5] + "'"), std::string::npos);
  // Decode steps have their own panels.
  EXPECT_NE(html.find("<figcaption>decode step 2</figcaption>"), std::string::npos);
  // Skipped: 171 over two reasons (i % 3 == 0: 57, else 114), each reason once with its count.
  EXPECT_EQ(count_of(html, "hyoracle extension: used as the routing margin, not compared"), 1u);
  EXPECT_EQ(count_of(html, "not a canonical name and no rule matches it"), 1u);
  EXPECT_NE(html.find("<td>114</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>57</td>"), std::string::npos);
  EXPECT_EQ(html.find("layers.100.moe.topk_margin"), std::string::npos);  // not every name listed
  // The reason is in a cell, not only a tooltip; no -1 anywhere; 1 − cos distinguishes 1 − 1e-7 from 1.
  EXPECT_NE(html.find("<td class='reason'>" + std::string("added (local) rel_l2")), std::string::npos);
  EXPECT_EQ(minus_one(html), "");
  EXPECT_NE(html.find("none (identical)"), std::string::npos);
  EXPECT_NE(html.find("1.000e-07"), std::string::npos);
  // Readable without scripts: the only script is the sort helper at the end.
  EXPECT_EQ(count_of(html, "<script>"), 1u);
  EXPECT_LT(html.find("<table id='tensors'"), html.find("<script>"));
}

TEST(Reports, HtmlFirstDivergenceTokensRoutingAndTopLogits) {
  Synthetic s = synthetic(2, 2, {{0, 1, 3}}, 0, 8);
  TensorResult& f = *std::find_if(s.r.tensors.begin(), s.r.tensors.end(), [&](auto& t) { return t.name == s.failed[0]; });
  f.local->token_rel_l2 = {0.001, 0.002, 0.001, 0.2, 0.001, 0.001, 0.001, 0.001};  // token 3 is the bad one
  f.local->max_abs_at = {3, 17};
  f.local->max_abs_ref = 1.25;
  f.local->max_abs_target = 2.5;
  RoutingLayer& l = s.r.routing[1];
  l.exact_set_match = 0;
  l.real_flips = 1;
  l.near_tie_flips = 1;
  RoutingFlip a, b;
  a.token = 0, a.only_baseline = {11}, a.only_target = {42}, a.margin = 1e-6, a.noise = 1e-4, a.near_tie = true;
  b.token = 5, b.only_baseline = {7, 9}, b.only_target = {13, 42}, b.margin = 0.3, b.noise = 1e-3, b.near_tie = false;
  l.flips = {a, b};
  for (int i = 0; i < 40; ++i) {  // more disagreeing tokens than the grid shows
    RoutingFlip c = a;
    c.token = 100 + i;
    l.flips.push_back(c);
  }
  s.r.logits.first_token_divergence = 1;
  s.r.logits.divergence_token_baseline = 17;
  s.r.logits.divergence_token_target = 23;
  s.r.logits.divergence_top_baseline = {{17, 9.5}, {23, 9.25}};
  s.r.logits.divergence_top_target = {{23, 9.75}, {17, 9.5}};
  const std::string html = report_html(s.r);
  EXPECT_NE(html.find("<svg class='tokens'"), std::string::npos);
  EXPECT_NE(html.find("<title>token 3: 0.2 (limit 0.03)</title>"), std::string::npos);
  EXPECT_NE(html.find("<td>[3, 17]</td><td>1.25</td><td>2.5</td>"), std::string::npos);
  EXPECT_NE(html.find("Neighbouring values are not kept"), std::string::npos);
  EXPECT_NE(html.find("<td>{7, 9}</td><td>{13, 42}</td>"), std::string::npos);   // flipped experts in the HTML
  EXPECT_NE(html.find("<td class='R'>R</td>"), std::string::npos);
  EXPECT_NE(html.find("+10 more tokens with a disagreement"), std::string::npos);  // 42 tokens, 32 shown
  EXPECT_NE(html.find("<td>1</td><td>17</td><td>9.5</td><td>23</td><td>9.75</td>"), std::string::npos);
  const std::string md = report_markdown(s.r);
  EXPECT_NE(md.find("| 1 | 17 | 9.5 | 23 | 9.75 |"), std::string::npos);
  EXPECT_NE(md.find("reference {7,9} vs target {13,42}"), std::string::npos);
  EXPECT_NE(md.find("token 3 0.2 (limit 0.03)"), std::string::npos);
  // The routing table has a step column: layer 1, prefill.
  EXPECT_NE(md.find("| 1 | prefill | 0/8 |"), std::string::npos);
}

TEST(Reports, MarkdownOf80LayersAnd9StepsStaysUnderOneMebibyte) {
  std::set<std::tuple<int64_t, int64_t, size_t>> fail_at;
  for (int64_t i = 0; i < 40; ++i) fail_at.insert({i % 9, (i * 7) % 80, size_t(i % 20)});
  const Synthetic s = synthetic(80, 9, fail_at, 171, 64);
  ASSERT_EQ(s.failed.size(), fail_at.size());
  const std::string md = report_markdown(s.r);
  RecordProperty("markdown_bytes", std::to_string(md.size()));
  EXPECT_LT(md.size(), size_t(1) << 20);
  for (const std::string& name : s.failed) EXPECT_EQ(count_of(md, "<a id=\"" + row_anchor(name) + "\"></a>"), 1u) << name;
  // Near-budget rows beyond the cap are counted and the full data named.
  EXPECT_NE(md.find("more such rows left out by the cap"), std::string::npos);
  EXPECT_NE(md.find("the full data is in the JSON report"), std::string::npos);
  EXPECT_NE(md.find("### Tensors not shown in full, per layer"), std::string::npos);
  // The layer × step table: a column per step, a row per layer plus the non-layer row.
  EXPECT_NE(md.find("| layer | prefill | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |"), std::string::npos);
  EXPECT_NE(md.find("| 79 |"), std::string::npos);
  EXPECT_NE(md.find("| non-layer |"), std::string::npos);
  EXPECT_EQ(minus_one(md), "");
  EXPECT_NE(md.find("first difference: none (identical)"), std::string::npos);
  EXPECT_EQ(count_of(md, "- skipped "), 2u);
  EXPECT_NE(md.find("- skipped 114 tensor(s): hyoracle extension"), std::string::npos);
}

TEST(Reports, MarkdownHardCapCutsWithALine) {
  // Every tensor fails with a long reason: the rows alone exceed the cap.
  Synthetic s = synthetic(80, 9, {}, 0, 4);
  for (TensorResult& t : s.r.tensors) {
    t.verdict = Verdict::fail;
    t.budget_units = 2;
    t.reason = std::string(600, 'x');
  }
  const std::string md = report_markdown(s.r);
  EXPECT_LT(md.size(), size_t(1) << 20);
  EXPECT_NE(md.find("**Report cut at 900 KiB:"), std::string::npos);
}

TEST(Reports, TerminalSummaryNamesDecodeStepsAndGroupsSkipped) {
  const Synthetic s = synthetic(2, 3, {{2, 1, 4}}, 171, 4);
  const std::string t = terminal_summary(s.r);
  EXPECT_NE(t.find(s.failed[0] + "  FAIL"), std::string::npos);
  EXPECT_NE(t.find("skipped 114 (e.g. layers.1.moe.topk_margin)"), std::string::npos);
  EXPECT_NE(t.find("skipped 57 (e.g. layers.0.moe.topk_margin)"), std::string::npos);
  EXPECT_EQ(minus_one(t), "");
}

TEST(Reports, CsvAndJsonLinesHaveOneRowPerTensorAndRoundTrip) {
  const Synthetic s = synthetic(4, 3, {{1, 2, 3}, {2, 0, 1}}, 5, 4);
  const size_t rows = s.r.tensors.size() + 5;
  const auto csv = parse_csv(report_csv(s.r));
  ASSERT_EQ(csv.size(), rows + 1);
  const std::vector<std::string>& head = csv[0];
  auto col = [&](const std::string& c) { return size_t(std::find(head.begin(), head.end(), c) - head.begin()); };
  ASSERT_LT(col("verdict"), head.size());
  ASSERT_LT(col("reason"), head.size());
  size_t fails = 0, skipped = 0;
  for (size_t i = 1; i < csv.size(); ++i) {
    ASSERT_EQ(csv[i].size(), head.size()) << i;
    fails += csv[i][col("verdict")] == "fail";
    skipped += csv[i][col("verdict")] == "skipped";
  }
  EXPECT_EQ(fails, 2u);
  EXPECT_EQ(skipped, 5u);
  // Row order and values: the tensors in order, then the skipped ones.
  for (size_t i = 0; i < s.r.tensors.size(); ++i) {
    EXPECT_EQ(csv[i + 1][col("name")], s.r.tensors[i].name);
    EXPECT_EQ(csv[i + 1][col("reason")], s.r.tensors[i].reason);  // commas and quotes survive
    EXPECT_EQ(csv[i + 1][col("step")], std::to_string(s.r.tensors[i].step));
    EXPECT_EQ(csv[i + 1][col("layer")], s.r.tensors[i].layer >= 0 ? std::to_string(s.r.tensors[i].layer) : "");
    EXPECT_NEAR(std::stod(csv[i + 1][col("budget_units")]), s.r.tensors[i].budget_units, 1e-8);
  }
  EXPECT_EQ(csv.back()[col("name")], "layers.4.moe.topk_margin");
  EXPECT_EQ(csv.back()[col("layer")], "4");
  std::istringstream in(report_jsonl(s.r));
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (n < s.r.tensors.size()) {
      EXPECT_EQ(j.at("name"), s.r.tensors[n].name);
      EXPECT_EQ(j.at("verdict"), verdict_name(s.r.tensors[n].verdict));
      EXPECT_EQ(j.at("reason"), s.r.tensors[n].reason);
      if (s.r.tensors[n].op != "routing") {
        EXPECT_NEAR(j.at("one_minus_cosine").get<double>(), 1e-7, 1e-12);
      }
    } else {
      EXPECT_EQ(j.at("verdict"), "skipped");
      EXPECT_TRUE(j.at("judged_error").is_null());
    }
    ++n;
  }
  EXPECT_EQ(n, rows);
}

TEST(Reports, JsonKeepsSkippedAndGroupsThem) {
  const Synthetic s = synthetic(1, 1, {}, 171, 4);
  const auto j = report_json(s.r);
  EXPECT_EQ(j.at("skipped").size(), 171u);
  ASSERT_EQ(j.at("skipped_by_reason").size(), 2u);
  EXPECT_EQ(j.at("skipped_by_reason")[0].at("count"), 57);  // i = 0 comes first
  EXPECT_EQ(j.at("skipped_by_reason")[1].at("count"), 114);
  EXPECT_EQ(j.at("skipped_by_reason")[1].at("examples").size(), 3u);
}

// The committed HF bf16 dump whose KV cache drops its last entry from decode step 2 on: its
// first divergence (expected.json, from the bug's definition) is steps.2.layers.0.attn.out; the
// reports must show it as a failing decode-step cell, row and list entry.
TEST(Reports, FailingDecodeStepReportOfACommittedEngineDump) {
  const std::string fx = std::string(HYORACLE_SOURCE_DIR) + "/fixtures/tiny-mt2";
  const std::string engine = fx + "/engine-dumps/kv-cache-drop-last-modules";
  if (!std::filesystem::exists(engine)) GTEST_SKIP() << "no committed engine dumps";
  const Dump target(engine);
  const int64_t n = target.info("generate.tokens").shape[0];
  const std::string ref = hyoracle::testing::temp_dir("report_kv_ref");
  hyoracle::testing::reference_dump<double>(Checkpoint(fx), target.token_ids(), Precision::exact, ref, DType::F64, "float64", n);
  CompareOptions o;
  o.model_dir = fx;
  const Report r = compare_dirs(ref, engine, o);
  ASSERT_TRUE(r.first_divergence.has_value()) << terminal_summary(r);
  const std::string first = "steps.2.layers.0.attn.out";
  ASSERT_EQ(r.first_divergence->tensor, first) << terminal_summary(r);
  const std::string html = report_html(r), md = report_markdown(r);
  EXPECT_NE(html.find("data-cell='2:0:attn.out'"), std::string::npos);
  EXPECT_NE(html.find("<figcaption>decode step 2</figcaption>"), std::string::npos);
  EXPECT_NE(html.find("<li><a href='#" + row_anchor(first) + "'>"), std::string::npos);
  EXPECT_NE(html.find("<tr id='" + row_anchor(first) + "' class='fail'>"), std::string::npos);
  EXPECT_NE(md.find("- [`" + first + "`](#" + row_anchor(first) + ") (step 2, layer 0,"), std::string::npos);
  EXPECT_NE(md.find("<a id=\"" + row_anchor(first) + "\"></a>"), std::string::npos);
  EXPECT_EQ(minus_one(md), "");
  EXPECT_EQ(minus_one(html), "");
  EXPECT_EQ(minus_one(terminal_summary(r)), "");
}
