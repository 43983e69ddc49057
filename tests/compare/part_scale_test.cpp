// Part scale fits (compare/part_scale.h) on synthetic sums of parts with known scale errors and
// known noise: the fit must recover the planted α and its standard error, and pure noise must
// stay within a few standard errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "compare/part_scale.h"

using namespace hyoracle;
using namespace hyoracle::compare;

namespace {

// rows × n parts C_j (j < parts), each row touching every part; residual = Σ_j α_j C_j + N(0, s²).
struct Case {
  std::vector<Tensor<double>> parts;
  Tensor<double> residual;
};

Case make(int64_t rows, int64_t n, int64_t parts, const std::vector<double>& alpha, double s, uint32_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> N(0, 1);
  Case c;
  c.residual = Tensor<double>({rows, n});
  for (int64_t j = 0; j < parts; ++j) {
    Tensor<double> p({rows, n});
    for (double& v : p.data) v = N(g);
    for (size_t i = 0; i < p.data.size(); ++i) c.residual.data[i] += alpha[size_t(j)] * p.data[i];
    c.parts.push_back(std::move(p));
  }
  for (double& v : c.residual.data) v += s * N(g);
  return c;
}

std::vector<PartScale> fit(const Case& c) {
  PartScaleFit f(int64_t(c.parts.size()), c.residual);
  for (size_t j = 0; j < c.parts.size(); ++j)
    for (int64_t t = 0; t < c.residual.rows(); ++t) f.add(int64_t(j), t, c.parts[j].row(t));
  return f.fits();
}

}  // namespace

TEST(PartScale, RecoversAPlantedScaleOfOnePart) {
  for (auto [rows, n, parts] : {std::tuple{1, 33, 3}, {7, 48, 5}, {33, 129, 7}}) {
    std::vector<double> alpha(size_t(parts), 0.0);
    alpha[1] = 0.03;
    const double s = 0.002;
    const Case c = make(rows, n, parts, alpha, s, 20260 + uint32_t(rows));
    const std::vector<PartScale> f = fit(c);
    ASSERT_EQ(f.size(), size_t(parts));
    // Analytic standard error for unit-variance parts and noise s: s / √(rows·n) (the estimate
    // uses the residual itself, so it is at least that).
    const double se = s / std::sqrt(double(rows * n));
    for (const PartScale& p : f) {
      EXPECT_EQ(p.rows, rows);
      EXPECT_GE(p.sigma, 0.9 * se) << rows;
      // the parts are random, not orthogonal: the others leak into each fit by about 0.03/√(rows·n)
      const double leak = 0.03 / std::sqrt(double(rows * n));
      EXPECT_NEAR(p.alpha, alpha[size_t(p.part)], 6 * (se + leak)) << "part " << p.part << " rows " << rows;
    }
    const PartScale* w = worst_part(f, 0.0039, kPartScaleZ);
    if (rows * n >= 1000) {  // enough elements for 0.03 to stand kPartScaleZ σ clear of the residual
      ASSERT_NE(w, nullptr) << rows;
      EXPECT_EQ(w->part, 1);
    }
  }
}

TEST(PartScale, PureNoiseStaysWithinAFewStandardErrors) {
  for (uint32_t seed : {1u, 7u, 33u}) {
    const Case c = make(33, 65, 7, std::vector<double>(7, 0.0), 0.01, seed);
    for (const PartScale& p : fit(c)) EXPECT_LT(std::fabs(p.z()), 5.0) << "seed " << seed << " part " << p.part;
    EXPECT_EQ(worst_part(fit(c), 0.0, kPartScaleZ), nullptr);
  }
}

TEST(PartScale, TheFloorKeepsScalesBelowTheRoundingUnit) {
  std::vector<double> alpha(3, 0.0);
  alpha[2] = 0.001;  // far beyond the noise (z ≈ 65), below bf16's unit 2^-8
  const Case c = make(33, 129, 3, alpha, 1e-5, 5);
  const std::vector<PartScale> f = fit(c);
  EXPECT_GT(std::fabs(f[2].z()), 3 * kPartScaleZ);
  EXPECT_EQ(worst_part(f, 0.0039, kPartScaleZ), nullptr);
  ASSERT_NE(worst_part(f, 1e-4, kPartScaleZ), nullptr);
  EXPECT_EQ(worst_part(f, 1e-4, kPartScaleZ)->part, 2);
}

TEST(PartScale, APartThatTouchesNoRowHasNoFit) {
  Tensor<double> e({4, 8});
  for (size_t i = 0; i < e.data.size(); ++i) e.data[i] = double(i % 5) - 2;
  PartScaleFit f(3, e);
  std::vector<double> c(8, 1.0);
  f.add(0, 2, c.data());
  const std::vector<PartScale> out = f.fits();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].part, 0);
  EXPECT_EQ(out[0].rows, 1);
  // α = ⟨e_2, 1⟩ / 8 with e_2 = (i%5 − 2) for i = 16..23: 16%5=1 → −1,0,1,2,−2,−1,0,1 → sum 0
  EXPECT_NEAR(out[0].alpha, 0.0, 1e-15);
}
