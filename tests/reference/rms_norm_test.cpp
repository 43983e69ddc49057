// reference/rms_norm: against the analytic value of a constant vector, and hf mode's fp32 internals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "reference/rms_norm.h"
#include "tests/reference/layer_test_util.h"

namespace hyoracle {
namespace {

using test::kExact;
using test::kHf;
using test::random_tensor;

TEST(RmsNorm, ConstantVectorIsAnalytic) {
  // u = c·1  =>  y_j = w_j · c / sqrt(c² + eps)
  for (int64_t n : {1, 7, 33}) {
    const double c = -1.75, eps = 1e-5;
    Tensor<double> u({2, n});
    std::fill(u.data.begin(), u.data.end(), c);
    Tensor<double> w({n});
    for (int64_t j = 0; j < n; ++j) w.data[j] = 0.5 + 0.01 * j;
    const Tensor<double> y = rms_norm(u, w, eps, kExact);
    for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(y.data[n + j], w.data[j] * c / std::sqrt(c * c + eps), 1e-15);
  }
}

TEST(RmsNorm, HfModeRoundsInternalsToFp32) {
  const Tensor<double> u = random_tensor<double>({3, 33}, 1);
  Tensor<double> w({33});
  std::fill(w.data.begin(), w.data.end(), 1.0);
  const Tensor<double> e = rms_norm(u, w, 1e-5, kExact), h = rms_norm(u, w, 1e-5, kHf);
  for (int64_t i = 0; i < h.numel(); ++i) {
    EXPECT_EQ(h.data[i], double(float(h.data[i]))) << "hf output with w=1 must be an fp32 value";
    EXPECT_NEAR(h.data[i], e.data[i], 4e-7 * std::fabs(e.data[i]) + 1e-12);
  }
}

}  // namespace
}  // namespace hyoracle
