// reference/rope: position 0 is the identity, norms are kept, dimension j pairs with j + d/2 at
// the θ angles, dot products depend only on relative position, and hf mode uses fp32 angles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "reference/rope.h"
#include "tests/reference/layer_test_util.h"

namespace hyoracle {
namespace {

using test::kExact;
using test::kHf;
using test::random_tensor;

TEST(Rope, PositionZeroIsIdentityAndNormsArePreserved) {
  for (int64_t d : {2, 8, 32}) {
    Tensor<double> x = random_tensor<double>({5, 3, d}, 7);
    const Tensor<double> x0 = x;
    apply_rope(x, rope_table<double>({0, 0, 0, 0, 0}, d, 11158840.0, kExact));
    EXPECT_EQ(x.data, x0.data);
    Tensor<double> y = x0;
    apply_rope(y, rope_table<double>({1, 17, 1000, 4095, 200000}, d, 11158840.0, kExact));
    for (int64_t r = 0; r < 15; ++r) {
      double a = 0, b = 0;
      for (int64_t i = 0; i < d; ++i) {
        a += x0.data[r * d + i] * x0.data[r * d + i];
        b += y.data[r * d + i] * y.data[r * d + i];
      }
      EXPECT_NEAR(a, b, 1e-13 * a);
    }
  }
}

TEST(Rope, PairsDimensionJWithJPlusHalfAtThetaAngles) {
  // x = e_i (unit vector in dim i < d/2): out[i] = cos φ, out[i + d/2] = sin φ, φ = p·θ^(-2i/d).
  const int64_t d = 16, p = 37;
  const double theta = 11158840.0;
  for (int64_t i = 0; i < d / 2; ++i) {
    Tensor<double> x({1, 1, d});
    x.data[i] = 1.0;
    apply_rope(x, rope_table<double>({p}, d, theta, kExact));
    const double phi = double(p) * std::pow(theta, -2.0 * double(i) / double(d));
    EXPECT_NEAR(x.data[i], std::cos(phi), 1e-15);
    EXPECT_NEAR(x.data[i + d / 2], std::sin(phi), 1e-15);
    for (int64_t j = 0; j < d; ++j)
      if (j != i && j != i + d / 2) {
        EXPECT_EQ(x.data[j], 0.0);
      }
  }
}

TEST(Rope, DotProductDependsOnlyOnRelativePosition) {
  const int64_t d = 32;
  const Tensor<double> q = random_tensor<double>({1, 1, d}, 3), k = random_tensor<double>({1, 1, d}, 4);
  auto dot_at = [&](int64_t pq, int64_t pk) {
    Tensor<double> a = q, b = k;
    apply_rope(a, rope_table<double>({pq}, d, 10000.0, kExact));
    apply_rope(b, rope_table<double>({pk}, d, 10000.0, kExact));
    return std::inner_product(a.data.begin(), a.data.end(), b.data.begin(), 0.0);
  };
  EXPECT_NEAR(dot_at(9, 2), dot_at(1009, 1002), 1e-11);
  EXPECT_NEAR(dot_at(33, 33), dot_at(0, 0), 1e-12);
}

TEST(Rope, HfModeUsesFp32Angles) {
  // At p = 4096 the fp32 angle of the highest frequency (inv_freq = 1) is exact, but lower
  // frequencies carry fp32 rounding: hf and exact tables differ, and hf values are floats.
  const RopeTable<double> e = rope_table<double>({4096}, 128, 11158840.0, kExact);
  const RopeTable<double> h = rope_table<double>({4096}, 128, 11158840.0, kHf);
  double max_diff = 0;
  for (size_t i = 0; i < h.cos.size(); ++i) {
    EXPECT_EQ(h.cos[i], double(float(h.cos[i])));
    max_diff = std::max(max_diff, std::fabs(h.sin[i] - e.sin[i]));
  }
  EXPECT_GT(max_diff, 1e-8);
  EXPECT_LT(max_diff, 1e-3);  // docs/model.md §4.3: ≈1e-4 rad at p = 4096
}

}  // namespace
}  // namespace hyoracle
