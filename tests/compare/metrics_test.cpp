// Metrics on analytic cases: every expected value below is derived by hand, not by the code.
#include <gtest/gtest.h>

#include <cmath>

#include "compare/metrics.h"
#include "io/random_checkpoint.h"

using namespace hyoracle;
using namespace hyoracle::compare;

namespace {
Tensor<double> random_tensor(std::vector<int64_t> shape, uint64_t seed) {
  Rng rng(seed);
  Tensor<double> t(std::move(shape));
  for (double& x : t.data) x = rng.normal();
  return t;
}
}  // namespace

// y = 1.05·r: rel-L2 = 0.05, cosine = 1, norm ratio 1.05, diff = 1 − 2·1.05/(1 + 1.05²).
TEST(Metrics, PureScaleIsVisibleToRelL2ButNotToCosine) {
  for (int64_t n : {1, 7, 33}) {
    const Tensor<double> r = random_tensor({n, 5}, 11 + uint64_t(n));
    Tensor<double> y = r;
    for (double& x : y.data) x *= 1.05;
    const Metrics m = compare_tensors(r, y);
    EXPECT_NEAR(m.rel_l2, 0.05, 1e-14);
    EXPECT_NEAR(m.nmse, 0.0025, 1e-15);
    EXPECT_NEAR(m.sqnr_db, -10 * std::log10(0.0025), 1e-10);
    EXPECT_NEAR(m.cosine, 1.0, 1e-15);
    EXPECT_NEAR(m.norm_ratio, 1.05, 1e-14);
    EXPECT_NEAR(m.diff, 1 - 2 * 1.05 / (1 + 1.05 * 1.05), 1e-14);
    EXPECT_EQ(m.n, n * 5);
    ASSERT_EQ(m.token_rel_l2.size(), size_t(n));
    for (double t : m.token_rel_l2) EXPECT_NEAR(t, 0.05, 1e-14);
  }
}

// One changed element: its coordinate, both values, max/mean abs, fraction outside.
TEST(Metrics, MaxAbsLocationAndValues) {
  Tensor<double> r({3, 7, 2});
  for (int64_t i = 0; i < r.numel(); ++i) r.data[i] = double(i % 5) - 2.0;
  Tensor<double> y = r;
  const int64_t at = (2 * 7 + 4) * 2 + 1;  // [2, 4, 1]
  y.data[at] += 0.75;
  const Metrics m = compare_tensors(r, y, 1e-5, 1e-2);
  EXPECT_EQ(m.max_abs, 0.75);
  EXPECT_EQ(m.max_abs_at, (std::vector<int64_t>{2, 4, 1}));
  EXPECT_EQ(m.max_abs_ref, r.data[at]);
  EXPECT_EQ(m.max_abs_target, r.data[at] + 0.75);
  EXPECT_DOUBLE_EQ(m.mean_abs, 0.75 / 42.0);
  EXPECT_DOUBLE_EQ(m.frac_outside, 1.0 / 42.0);
  EXPECT_EQ(m.token_rel_l2[0], 0.0);
  EXPECT_GT(m.token_rel_l2[2], 0.0);
  EXPECT_EQ(m.worst_tokens(1), std::vector<int64_t>{2});
}

// |e_i| = i for i = 1..1000: p50 = 500, p99 = 990, p99.9 = 999, each at or at most one bin
// width (a factor 1 + 1/64) above the exact value.
TEST(Metrics, PercentilesFromTheHistogramAreWithinOneBin) {
  Tensor<double> r({1000}), y({1000});
  for (int64_t i = 0; i < 1000; ++i) y.data[i] = double(i + 1);
  const Metrics m = compare_tensors(r, y);
  const double bin = 1 + 1.0 / 64;
  EXPECT_GE(m.p50, 500.0);
  EXPECT_LE(m.p50, 500.0 * bin);
  EXPECT_GE(m.p99, 990.0);
  EXPECT_LE(m.p99, 990.0 * bin);
  EXPECT_GE(m.p999, 999.0);
  EXPECT_LE(m.p999, 1000.0);
  EXPECT_EQ(m.max_abs, 1000.0);
  EXPECT_TRUE(std::isinf(m.rel_l2));  // reference all zero
}

TEST(Metrics, NanCountedByPositionInfMustMatch) {
  Tensor<double> r({2, 3}, {1, 2, 3, INFINITY, 5, 6});
  Tensor<double> y({2, 3}, {1, NAN, 3, INFINITY, -INFINITY, 6});
  const Metrics m = compare_tensors(r, y);
  EXPECT_EQ(m.nan_target, 1);
  EXPECT_EQ(m.first_nan_target_at, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(m.inf_matched, 1);
  EXPECT_EQ(m.inf_mismatched, 1);
  EXPECT_EQ(m.first_inf_mismatch_at, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(m.n, 3);
  EXPECT_EQ(m.max_abs, 0.0);
}

TEST(Metrics, RelL2ZeroCases) {
  const double z[3] = {0, 0, 0}, a[3] = {1, 0, 0};
  EXPECT_EQ(rel_l2(z, z, 3), 0.0);
  EXPECT_TRUE(std::isinf(rel_l2(z, a, 3)));
  EXPECT_DOUBLE_EQ(rel_l2(a, z, 3), 1.0);
}
