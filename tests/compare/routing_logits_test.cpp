// Routing agreement and logit statistics on hand-made cases.
#include <gtest/gtest.h>

#include <cmath>

#include "compare/logits.h"
#include "compare/routing.h"

using namespace hyoracle;
using namespace hyoracle::compare;

namespace {
// One token, E = 4 experts, k = 2, reference scores s and zero bias: reference picks {0, 1}.
RoutingInputs one_token(std::vector<int64_t> target, std::vector<double> scores, double logit_noise) {
  RoutingInputs in;
  in.tokens = 1;
  in.k = 2;
  in.experts = 4;
  in.ref_ids = {0, 1};
  in.target_ids = std::move(target);
  in.ref_scores = std::move(scores);
  in.expert_bias = {0, 0, 0, 0};
  in.logit_noise = {logit_noise};
  return in;
}
}  // namespace

TEST(Routing, JaccardOfSets) {
  EXPECT_DOUBLE_EQ(jaccard({1, 2, 3}, {3, 2, 1}), 1.0);
  EXPECT_DOUBLE_EQ(jaccard({1, 2}, {2, 3}), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(jaccard({1}, {2}), 0.0);
}

TEST(Routing, OrderIsIgnoredAndWeightsAreKeyedById) {
  RoutingInputs in = one_token({1, 0}, {0.9, 0.8, 0.1, 0.05}, 0.0);
  in.ref_weights = {1.5, 1.3};
  in.target_weights = {1.3, 1.6};  // expert 1 then 0
  const RoutingLayer r = routing_agreement(in);
  EXPECT_EQ(r.exact_set_match, 1);
  EXPECT_EQ(r.flips.size(), 0u);
  EXPECT_NEAR(r.max_weight_delta, 0.1, 1e-12);
  EXPECT_NEAR(r.max_weight_sum_delta, 0.1, 1e-12);
  EXPECT_NEAR(r.min_margin, 0.8 - 0.1, 1e-12);
}

// Expert 2 replaces expert 1: gap c1 − c2 = 0.7; noise = (σ'1 + σ'2)·Δℓ with σ' = s(1−s).
TEST(Routing, ClearMarginFlipIsReal) {
  const RoutingLayer r = routing_agreement(one_token({0, 2}, {0.9, 0.8, 0.1, 0.05}, 0.01));
  ASSERT_EQ(r.flips.size(), 1u);
  EXPECT_FALSE(r.flips[0].near_tie);
  EXPECT_EQ(r.real_flips, 1);
  EXPECT_NEAR(r.flips[0].margin, 0.7, 1e-12);
  EXPECT_NEAR(r.flips[0].noise, (0.8 * 0.2 + 0.1 * 0.9) * 0.01, 1e-15);
  EXPECT_EQ(r.flips[0].only_baseline, std::vector<int64_t>{1});
  EXPECT_EQ(r.flips[0].only_target, std::vector<int64_t>{2});
}

// Gap 1e-4 against noise (0.25 + 0.25)·1e-3 = 5e-4: a near-tie.
TEST(Routing, FlipInsideTheExpectedNoiseIsANearTie) {
  const RoutingLayer r = routing_agreement(one_token({0, 2}, {0.9, 0.5001, 0.5, 0.05}, 1e-3));
  ASSERT_EQ(r.flips.size(), 1u);
  EXPECT_TRUE(r.flips[0].near_tie);
  EXPECT_EQ(r.near_tie_flips, 1);
  EXPECT_EQ(r.real_flips, 0);
}

// The bias decides selection: with bias, the gap is between corrected scores.
TEST(Routing, MarginUsesTheCorrectedScore) {
  RoutingInputs in = one_token({0, 2}, {0.9, 0.5, 0.5, 0.05}, 1e-3);
  in.expert_bias = {0, 0.3, 0, 0};  // c1 = 0.8, c2 = 0.5: a real flip although s1 == s2
  const RoutingLayer r = routing_agreement(in);
  ASSERT_EQ(r.flips.size(), 1u);
  EXPECT_FALSE(r.flips[0].near_tie);
  EXPECT_NEAR(r.flips[0].margin, 0.3, 1e-12);
}

// Teacher-forced check, one token, E = 4, k = 2, the target chose {0, 1}. An infinite router logit
// (an fp16 overflow) has σ exactly 0 or 1: its rounding window is 0, not 0·∞.
TEST(Routing, ForcedInfiniteLogitHasAFiniteWindow) {
  RoutingLayer below;
  forced_routing({3.0, 2.0, -INFINITY, -3.0}, true, 0x1p-11, {0, 0, 0, 0}, {0, 1}, 1, 4, 2, below);
  EXPECT_EQ(below.forced_mismatches, 0);  // σ(−∞) = 0 is below both chosen experts
  RoutingLayer above;
  forced_routing({3.0, 2.0, INFINITY, -3.0}, true, 0x1p-11, {0, 0, 0, 0}, {0, 1}, 1, 4, 2, above);
  ASSERT_EQ(above.forced_mismatches, 1);  // σ(+∞) = 1 beats σ(2) ≈ 0.88: a real mismatch
  ASSERT_EQ(above.forced_list.size(), 1u);
  EXPECT_EQ(above.forced_list[0].chosen, 1);
  EXPECT_EQ(above.forced_list[0].passed_over, 2);
  EXPECT_EQ(above.forced_list[0].c_passed_over, 1.0);
  EXPECT_TRUE(std::isfinite(above.forced_list[0].window));
}

// A corrected score that is not finite has no order to check the selection against.
TEST(Routing, ForcedRejectsANonFiniteCorrectedScore) {
  RoutingLayer out;
  EXPECT_THROW(forced_routing({3.0, 2.0, 0.5, -3.0}, true, 0x1p-24, {0, 0, -INFINITY, 0}, {0, 1}, 1, 4, 2, out), Error);
  EXPECT_THROW(forced_routing({0.9, 0.8, INFINITY, 0.1}, false, 0x1p-24, {}, {0, 1}, 1, 4, 2, out), Error);
  EXPECT_THROW(forced_routing({0.9, 0.8, 0.5, 0.1}, false, 0x1p-24, {0, 0, NAN, 0}, {0, 1}, 1, 4, 2, out), Error);
}

// Two logits [0, log 3] vs [0, 0]: p = (1/4, 3/4), q = (1/2, 1/2);
// KL = 1/4·log(1/2) + 3/4·log(3/2).
TEST(Logits, KlOfTwoTokenRowsIsAnalytic) {
  const double r[2] = {0, std::log(3.0)}, y[2] = {0, 0};
  EXPECT_NEAR(kl_divergence_row(r, y, 2), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-15);
  EXPECT_EQ(kl_divergence_row(r, r, 2), 0.0);
}

TEST(Logits, TopNAndAgreement) {
  const double row[5] = {0.1, 3, 2, 2, -1};
  EXPECT_TRUE(in_top_n(row, 5, 1, 1));
  EXPECT_TRUE(in_top_n(row, 5, 2, 2));   // tie 2 == 3 broken to the lower id
  EXPECT_FALSE(in_top_n(row, 5, 3, 2));
  Tensor<double> a({2, 3}, {0, 1, 2, 5, 0, 0}), b({2, 3}, {0, 1, 2, 0, 5, 0});
  LogitsSummary s;
  logits_agreement(a, b, s);
  EXPECT_EQ(s.positions, 2);
  EXPECT_EQ(s.top1_agree, 1);
  EXPECT_GT(s.kl_max, 1.0);
  EXPECT_EQ(s.kl_max, s.kl_p99);
}

TEST(Logits, GenerationDivergenceNearTieVsReal) {
  Tensor<double> ref({2, 3}, {0, 1, 0.999, 0, 5, 0});
  LogitsSummary s;
  generation_agreement({1, 1}, {2, 1}, ref, ref, 0.01, s);  // margin 0.001 <= 2·0.01
  EXPECT_EQ(s.first_token_divergence, 0);
  EXPECT_TRUE(s.divergence_near_tie);
  EXPECT_TRUE(s.divergence_in_top_n);
  LogitsSummary s2;
  generation_agreement({1, 1}, {1, 0}, ref, ref, 0.01, s2);  // step 1 margin 5
  EXPECT_EQ(s2.first_token_divergence, 1);
  EXPECT_FALSE(s2.divergence_near_tie);
}
