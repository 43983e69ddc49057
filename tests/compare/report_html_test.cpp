// report_html (compare/report_html.cpp) on Reports built here (tests/compare/report_test_util.h):
// an anchor for each failed tensor, one heat-map cell per judged layer × step × operation,
// skipped tensors grouped by reason, no -1 sentinels, cosine digits, the first divergence's
// tokens, routing disagreements and top logits. Last, the reports of a failing decode step of a
// committed engine dump (fixtures/tiny-mt2/engine-dumps/kv-cache-drop-last-modules): the HTML's
// cell, row and list entry, and the same anchors in the Markdown.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "compare/compare.h"
#include "compare/report_view.h"
#include "tests/compare/compare_helpers.h"
#include "tests/compare/report_test_util.h"

using namespace hyoracle;
using namespace hyoracle::compare;
using namespace hyoracle::testing;

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
