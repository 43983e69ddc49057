// compare/report_view: the labels, anchors, groupings and grids every report reads from a Report,
// on small Reports built here; each expected value is worked out by hand from the definitions in
// compare/report_view.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "compare/compare.h"
#include "compare/report_view.h"

using namespace hyoracle;
using namespace hyoracle::compare;

namespace {

// A tensor at (step, layer) with the given verdict and budget use of a 0.01 limit.
TensorResult at(const std::string& name, int64_t step, int64_t layer, Verdict v, double units) {
  TensorResult t;
  t.name = name;
  t.step = step;
  t.layer = layer;
  t.verdict = v;
  t.budget.limit = 0.01;
  t.budget_units = units;
  t.judged_error = units * 0.01;
  return t;
}

// The red, green and blue channels of a "#rrggbb" colour.
std::vector<int> channels(const std::string& colour) {
  EXPECT_EQ(colour.size(), 7u) << colour;
  EXPECT_EQ(colour[0], '#') << colour;
  unsigned r = 0, g = 0, b = 0;
  EXPECT_EQ(std::sscanf(colour.c_str(), "#%2x%2x%2x", &r, &g, &b), 3) << colour;
  return {int(r), int(g), int(b)};
}

}  // namespace

TEST(ReportView, StepPlaceAndOperationLabels) {
  EXPECT_EQ(step_label(0), "prefill");
  EXPECT_EQ(step_label(3), "3");
  EXPECT_EQ(where(at("steps.2.layers.5.attn.out", 2, 5, Verdict::pass, 0)), "step 2, layer 5");
  EXPECT_EQ(where(at("layers.0.out", 0, 0, Verdict::pass, 0)), "prefill, layer 0");
  EXPECT_EQ(where(at("steps.3.logits", 3, -1, Verdict::pass, 0)), "step 3");
  EXPECT_EQ(where(at("generate.tokens", 0, -1, Verdict::pass, 0)), "generation");
  EXPECT_EQ(step_of(at("steps.4.final_norm", 4, -1, Verdict::pass, 0)), "4");
  EXPECT_EQ(step_of(at("embed", 0, -1, Verdict::pass, 0)), "prefill");
  EXPECT_EQ(step_of(at("generate.logits", 0, -1, Verdict::pass, 0)), "generation");
  EXPECT_EQ(op_label("steps.12.layers.3.moe.topk_ids"), "moe.topk_ids");
  EXPECT_EQ(op_label("layers.0.attn.out"), "attn.out");
  EXPECT_EQ(op_label("steps.2.final_norm"), "final_norm");
  EXPECT_EQ(op_label("embed"), "embed");
}

TEST(ReportView, RowAnchorReplacesEveryCharacterOutsideTheSafeSet) {
  EXPECT_EQ(row_anchor("steps.1.layers.10.moe.topk_ids"), "t-steps.1.layers.10.moe.topk_ids");
  EXPECT_EQ(row_anchor("A-z_9"), "t-A-z_9");
  // ' ', '/', '#', ':' and the two UTF-8 bytes of 'é' each become one '_'.
  EXPECT_EQ(row_anchor("a b/c#d:\xc3\xa9"), "t-a_b_c_d___");
}

TEST(ReportView, OneMinusCosineKeepsDigitsBelowOne) {
  EXPECT_EQ(one_minus_cos(1.0), "0");
  EXPECT_EQ(one_minus_cos(1 - 1e-7), "1.000e-07");  // a cosine that "%g" would print as 1
  EXPECT_EQ(one_minus_cos(0.5), "5.000e-01");
  EXPECT_EQ(one_minus_cos(-1.0), "2.000e+00");
  EXPECT_EQ(g3_or_dash(NAN), "–");
}

TEST(ReportView, JudgedMetricsAndWorstTokenRows) {
  TensorResult t = at("layers.0.attn.out", 0, 0, Verdict::fail, 3);
  t.total.token_rel_l2 = {9, 9, 9, 9};  // never judged: the tensor is teacher-forced below
  Metrics local;
  local.token_rel_l2 = {0.1, 0.5, 0.2, 0.4};
  t.local = local;
  t.judged_on = "local";
  EXPECT_EQ(&judged_metrics(t), &*t.local);
  // No per-token limits: by error alone, largest first.
  EXPECT_EQ(worst_token_rows(t, 10), (std::vector<int64_t>{1, 3, 2, 0}));
  EXPECT_EQ(worst_token_rows(t, 2), (std::vector<int64_t>{1, 3}));
  // With limits: error / limit = 0.1, 0.05, 2, 0.4.
  t.token_limits = {1, 10, 0.1, 1};
  EXPECT_EQ(worst_token_rows(t, 10), (std::vector<int64_t>{2, 3, 0, 1}));
  t.judged_on = "total";
  EXPECT_EQ(&judged_metrics(t), &t.total);
}

TEST(ReportView, FailedShownInFullAndFind) {
  Report r;
  r.tensors = {at("embed", 0, -1, Verdict::fail, 2), at("layers.0.input_norm", 0, 0, Verdict::pass, 0.49),
               at("layers.0.attn.q", 0, 0, Verdict::pass, 0.5), at("layers.0.attn.out", 0, 0, Verdict::fail, 1.5),
               at("layers.0.out", 0, 0, Verdict::incomplete, 0)};
  const std::vector<const TensorResult*> f = failed_tensors(r);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0]->name, "embed");
  EXPECT_EQ(f[1]->name, "layers.0.attn.out");
  EXPECT_TRUE(shown_in_full(r.tensors[0]));   // fail
  EXPECT_FALSE(shown_in_full(r.tensors[1]));  // pass below kNearBudget = 0.5
  EXPECT_TRUE(shown_in_full(r.tensors[2]));   // pass at kNearBudget
  EXPECT_TRUE(shown_in_full(r.tensors[4]));   // incomplete
  EXPECT_EQ(find_tensor(r, "layers.0.attn.q"), &r.tensors[2]);
  EXPECT_EQ(find_tensor(r, "layers.9.attn.q"), nullptr);
}

TEST(ReportView, SkippedGroupsInOrderOfFirstAppearance) {
  Report r;
  r.skipped = {{"a1", "A"}, {"b1", "B"}, {"a2", "A"}, {"a3", "A"}, {"c1", "C"}, {"b2", "B"}};
  const std::vector<SkipGroup> g = skipped_by_reason(r, 2);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].reason, "A");
  EXPECT_EQ(g[0].count, 3);
  EXPECT_EQ(g[0].examples, (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(g[1].reason, "B");
  EXPECT_EQ(g[1].count, 2);
  EXPECT_EQ(g[1].examples, (std::vector<std::string>{"b1", "b2"}));
  EXPECT_EQ(g[2].reason, "C");
  EXPECT_EQ(g[2].count, 1);
}

TEST(ReportView, HeatMapGridAndWorstPerStepAndLayer) {
  Report r;
  r.tensors = {at("embed", 0, -1, Verdict::pass, 0.3),
               at("layers.0.attn.out", 0, 0, Verdict::pass, 0.2),
               at("layers.0.custom_probe", 0, 0, Verdict::pass, 0.1),
               at("layers.0.input_norm", 0, 0, Verdict::pass, 0.4),
               at("layers.3.out", 0, 3, Verdict::fail, 5),
               at("layers.3.mlp.out", 0, 3, Verdict::skipped, 99),
               at("final_norm", 0, -1, Verdict::pass, 0.6),
               at("steps.2.layers.0.out", 2, 0, Verdict::pass, 0.7),
               at("steps.2.logits", 2, -1, Verdict::pass, 0.8),
               at("generate.logits", 0, -1, Verdict::fail, 50)};
  const HeatMap h = heat_map(r);
  EXPECT_EQ(h.steps, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(h.layers, (std::vector<int64_t>{0, 3}));
  // The layer's execution order (input_norm before attn.out before out), then the unknown op.
  EXPECT_EQ(h.ops, (std::vector<std::string>{"input_norm", "attn.out", "out", "custom_probe"}));
  ASSERT_EQ(h.cells.size(), 5u);  // every layer tensor but the skipped one
  for (const HeatCell& c : h.cells)
    if (c.tensor == "layers.3.out") {
      EXPECT_EQ(c.step, 0);
      EXPECT_EQ(c.layer, 3);
      EXPECT_EQ(c.op, "out");
      EXPECT_EQ(c.units, 5);
      EXPECT_EQ(c.verdict, Verdict::fail);
    }
  const auto w = step_layer_worst(r);
  ASSERT_EQ(w.size(), 5u);  // (0,-1) (0,0) (0,3) (2,0) (2,-1); generate.* left out
  EXPECT_EQ(w.at({0, -1}).tensor, "final_norm");
  EXPECT_EQ(w.at({0, -1}).units, 0.6);
  EXPECT_FALSE(w.at({0, -1}).failed);
  EXPECT_EQ(w.at({0, 0}).tensor, "layers.0.input_norm");
  EXPECT_EQ(w.at({0, 3}).tensor, "layers.3.out");  // not the skipped mlp.out at 99
  EXPECT_TRUE(w.at({0, 3}).failed);
  EXPECT_EQ(w.at({2, 0}).tensor, "steps.2.layers.0.out");
  EXPECT_EQ(w.at({2, -1}).tensor, "steps.2.logits");
}

TEST(ReportView, UnitsColourRunsGreenToAmberToDarkRed) {
  const std::vector<int> zero = channels(units_colour(0)), one = channels(units_colour(1)),
                         hundred = channels(units_colour(100)), grey = channels(units_colour(NAN));
  EXPECT_GT(zero[1], zero[0]);  // green
  EXPECT_GT(zero[1], zero[2]);
  EXPECT_GT(one[0], one[1]);  // amber: red, then green, little blue
  EXPECT_GT(one[1], one[2]);
  EXPECT_GT(hundred[0], hundred[1]);  // dark red
  EXPECT_EQ(hundred[1], hundred[2]);
  EXPECT_LT(hundred[0], channels(units_colour(2))[0]);  // darker than light red
  EXPECT_EQ(units_colour(1e6), units_colour(100));      // 100× and beyond
  EXPECT_EQ(units_colour(INFINITY), units_colour(100));
  EXPECT_EQ(grey[0], grey[1]);
  EXPECT_EQ(grey[1], grey[2]);
}

TEST(ReportView, DisagreementGridListsTheExpertsEitherSideChoseAlone) {
  RoutingLayer l;
  RoutingFlip a, b, c;
  a.token = 0, a.only_baseline = {11}, a.only_target = {42};
  b.token = 5, b.only_baseline = {7, 9}, b.only_target = {13, 42};
  c.token = 6, c.only_baseline = {1}, c.only_target = {2};
  l.flips = {a, b, c};
  const DisagreementGrid all = disagreement_grid(l, 10);
  EXPECT_EQ(all.experts, (std::vector<int64_t>{1, 2, 7, 9, 11, 13, 42}));
  ASSERT_EQ(all.tokens.size(), 3u);
  EXPECT_EQ(all.tokens[1]->token, 5);
  EXPECT_EQ(all.more_tokens, 0);
  const DisagreementGrid two = disagreement_grid(l, 2);
  ASSERT_EQ(two.tokens.size(), 2u);
  EXPECT_EQ(two.tokens[0]->token, 0);
  EXPECT_EQ(two.tokens[1]->token, 5);
  EXPECT_EQ(two.more_tokens, 1);
}
