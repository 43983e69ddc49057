// reference/router: selection by biased score with weights from unbiased scores, ties to the
// lower index, fp32 saturation of the sigmoid in hf mode, and non-finite logits refused.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "reference/router.h"
#include "tests/reference/layer_test_util.h"
#include "util/error.h"

namespace hyoracle {
namespace {

using test::kExact;
using test::kHf;

// A router whose logits are set directly: W_r = identity rows, u = the wanted logits.
RouterOutput<double> route_logits(const std::vector<double>& logits, const std::vector<double>& bias, int64_t k,
                                  const Numerics& num = kExact) {
  const int64_t E = int64_t(logits.size());
  Tensor<double> u({1, E}, logits), w({E, E}), b({E}, bias);
  for (int64_t e = 0; e < E; ++e) w.data[e * E + e] = 1.0;
  return route(u, w, b, k, 2.826, true, num);
}

TEST(Router, BiasChangesSelectionButNotWeights) {
  const std::vector<double> logits = {0.3, -1.0, 2.0, 0.1, -0.2};
  const auto r0 = route_logits(logits, {0, 0, 0, 0, 0}, 2);
  EXPECT_EQ(r0.ids, (std::vector<int64_t>{2, 0}));
  // The bias lifts expert 1 (lowest score) into the top-2 and out goes expert 0.
  const auto r1 = route_logits(logits, {0, 3.0, 0, 0, 0}, 2);
  EXPECT_EQ(r1.ids, (std::vector<int64_t>{1, 2}));
  auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  const double s1 = sig(-1.0), s2 = sig(2.0);
  EXPECT_NEAR(r1.weights.data[0], 2.826 * s1 / (s1 + s2), 1e-15);  // unbiased scores
  EXPECT_NEAR(r1.weights.data[1], 2.826 * s2 / (s1 + s2), 1e-15);
  EXPECT_NEAR(r1.weights.data[0] + r1.weights.data[1], 2.826, 1e-15);
  // Margin: c of the 2nd choice (expert 2, s(2.0)) minus c of the 3rd (expert 0, s(0.3)).
  EXPECT_NEAR(r1.margin.data[0], sig(2.0) - sig(0.3), 1e-15);
}

TEST(Router, ExactTiesGoToTheLowerIndex) {
  const auto r = route_logits({0.5, 1.0, 0.5, 1.0, 0.5}, {0, 0, 0, 0, 0}, 3);
  EXPECT_EQ(r.ids, (std::vector<int64_t>{1, 3, 0}));
  EXPECT_EQ(r.margin.data[0], 0.0);
  EXPECT_EQ(top_k_indices(std::vector<double>{2, 2, 2, 2}.data(), 4, 4), (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST(Router, HfModeSaturatesSigmoidInFp32) {
  // fp32 σ(20) is exactly 1.0f; in double it is 1 - 2e-9. In hf mode the tie is broken by bias.
  const auto h = route_logits({20.0, 25.0, -3.0}, {0.0, -1e-9f, 0.0}, 1, kHf);
  EXPECT_EQ(h.scores.data[0], 1.0);
  EXPECT_EQ(h.scores.data[1], 1.0);
  EXPECT_EQ(h.ids[0], 0);  // c0 = 1, c1 = 1 - 1e-9 (rounded in fp32 to 1) -> tie -> lower index
  const auto e = route_logits({20.0, 25.0, -3.0}, {0.0, -1e-9f, 0.0}, 1, kExact);
  EXPECT_EQ(e.ids[0], 1);  // in double σ(25) - 1e-9 > σ(20)
}

TEST(Router, NonFiniteLogitIsAnError) {
  EXPECT_THROW(route_logits({0.1, NAN, 0.3}, {0, 0, 0}, 1), Error);
}

}  // namespace
}  // namespace hyoracle
