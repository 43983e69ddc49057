// Each layer against an independent oracle: analytic cases and naive loops, on odd sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "reference/attention.h"
#include "reference/matmul.h"
#include "reference/mlp.h"
#include "reference/moe.h"
#include "reference/rms_norm.h"
#include "reference/rope.h"
#include "reference/router.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

const Numerics kExact{Precision::exact, 1};
const Numerics kHf{Precision::hf, 1};

template <class S>
Tensor<S> random_tensor(std::vector<int64_t> shape, uint64_t seed) {
  Tensor<S> t(shape);
  t.data = test::random_values<S>(size_t(t.numel()), seed);
  return t;
}

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

TEST(Softmax, RowsSumToOneAndMaskedEntriesAreZero) {
  for (bool fp32 : {false, true}) {
    const std::vector<double> s = {0.5, -INFINITY, 3.0, -2.0, -INFINITY, 1e-3, 700.0};
    std::vector<double> p(s.size());
    softmax_row(s.data(), p.data(), int64_t(s.size()), fp32);
    EXPECT_NEAR(std::accumulate(p.begin(), p.end(), 0.0), 1.0, fp32 ? 1e-6 : 1e-15);
    EXPECT_EQ(p[1], 0.0);
    EXPECT_EQ(p[4], 0.0);
    EXPECT_GT(p[6], 0.999);
  }
}

TEST(Attention, FirstTokenSeesOnlyItselfAndEqualScoresAverage) {
  const int64_t nq = 6, nkv = 2, d = 8, T = 5;
  const Tensor<double> q = random_tensor<double>({T, nq, d}, 11), v = random_tensor<double>({T, nkv, d}, 12);
  Tensor<double> k({T, nkv, d});  // zero keys: every visible score is 0 -> uniform weights
  std::vector<int64_t> pos = {0, 1, 2, 3, 4};
  const Tensor<double> ctx = attention(q, k, v, pos, pos, kExact);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t n = 0; n < nq; ++n)
      for (int64_t c = 0; c < d; ++c) {
        double mean = 0;
        for (int64_t j = 0; j <= i; ++j) mean += v.data[(j * nkv + n / 3) * d + c];
        mean /= double(i + 1);
        EXPECT_NEAR(ctx.data[i * nq * d + n * d + c], mean, 1e-15);
      }
}

// Naive GQA attention written independently: explicit repeat_kv, full score matrix, mask.
Tensor<double> naive_attention(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v) {
  const int64_t T = q.dim(0), nq = q.dim(1), d = q.dim(2), nkv = k.dim(1), g = nq / nkv;
  Tensor<double> out({T, nq * d});
  for (int64_t n = 0; n < nq; ++n)
    for (int64_t i = 0; i < T; ++i) {
      std::vector<double> w(size_t(i + 1));
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += q.data[(i * nq + n) * d + c] * k.data[(j * nkv + n / g) * d + c];
        w[j] = s / std::sqrt(double(d));
        mx = std::max(mx, w[j]);
      }
      for (auto& x : w) sum += (x = std::exp(x - mx));
      for (int64_t j = 0; j <= i; ++j)
        for (int64_t c = 0; c < d; ++c) out.data[i * nq * d + n * d + c] += w[j] / sum * v.data[(j * nkv + n / g) * d + c];
    }
  return out;
}

TEST(Attention, MatchesNaiveGqaAndDecodeMatchesPrefill) {
  for (int64_t T : {1, 7, 33}) {
    const int64_t nq = 6, nkv = 2, d = 16;
    const Tensor<double> q = random_tensor<double>({T, nq, d}, 21 + T), k = random_tensor<double>({T, nkv, d}, 22 + T),
                         v = random_tensor<double>({T, nkv, d}, 23 + T);
    std::vector<int64_t> pos(static_cast<size_t>(T));
    std::iota(pos.begin(), pos.end(), 0);
    const Tensor<double> full = attention(q, k, v, pos, pos, Numerics{Precision::exact, 3});
    EXPECT_LT(test::rel_l2(full.data, naive_attention(q, k, v).data), 1e-14);
    // The last query alone against the whole cache equals the last row of the prefill.
    Tensor<double> q_last({1, nq, d});
    std::copy_n(q.data.end() - nq * d, nq * d, q_last.data.begin());
    const Tensor<double> dec = attention(q_last, k, v, {T - 1}, pos, kExact);
    for (int64_t c = 0; c < nq * d; ++c) EXPECT_NEAR(dec.data[c], full.data[(T - 1) * nq * d + c], 1e-14);
  }
}

TEST(Matmul, BlasMatchesNaiveLoopsOnOddShapes) {
  for (int64_t M : {1, 7, 33})
    for (int64_t N : {1, 7, 129, 257})
      for (int64_t K : {1, 33, 100}) {
        const auto x = test::random_values<double>(size_t(M * K), 1000 + M);
        const auto w = test::random_values<double>(size_t(N * K), 2000 + N);
        std::vector<double> y(size_t(M * N)), yn(size_t(M * N));
        matmul_nt(x.data(), w.data(), y.data(), M, N, K, 2);
        matmul_nt_naive(x.data(), w.data(), yn.data(), M, N, K);
        for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], yn[i], 1e-13 * double(K)) << M << "x" << N << "x" << K;
        const auto xf = test::random_values<float>(size_t(M * K), 3000 + M);
        const auto wf = test::random_values<float>(size_t(N * K), 4000 + N);
        std::vector<float> yf(size_t(M * N)), yfn(size_t(M * N));
        matmul_nt(xf.data(), wf.data(), yf.data(), M, N, K, 2);
        matmul_nt_naive(xf.data(), wf.data(), yfn.data(), M, N, K);
        for (size_t i = 0; i < yf.size(); ++i) ASSERT_NEAR(yf[i], yfn[i], 1e-6f * float(K));
      }
}

TEST(Matmul, IntegerInputsAreExactAndThreadCountDoesNotMatter) {
  const int64_t M = 33, N = 300, K = 77;
  std::vector<double> x(size_t(M * K)), w(size_t(N * K));
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(int(i % 13) - 6);
  for (size_t i = 0; i < w.size(); ++i) w[i] = double(int(i % 7) - 3);
  std::vector<double> naive(size_t(M * N));
  matmul_nt_naive(x.data(), w.data(), naive.data(), M, N, K);
  for (int threads : {1, 2, 3, 8}) {
    std::vector<double> y(size_t(M * N));
    matmul_nt(x.data(), w.data(), y.data(), M, N, K, threads);
    EXPECT_EQ(y, naive) << threads << " threads";
  }
  const auto xr = test::random_values<double>(size_t(M * K), 5), wr = test::random_values<double>(size_t(N * K), 6);
  std::vector<double> y1(size_t(M * N)), y2(size_t(M * N));
  matmul_nt(xr.data(), wr.data(), y1.data(), M, N, K, 1);
  matmul_nt(xr.data(), wr.data(), y2.data(), M, N, K, 2);
  EXPECT_EQ(y1, y2) << "random inputs: 1 and 2 threads must be bit-identical";
}

TEST(SwiGlu, MatchesExplicitLoops) {
  for (int64_t T : {1, 7}) {
    const int64_t H = 33, I = 13;
    MlpWeights<double> w{random_tensor<double>({I, H}, 31), random_tensor<double>({I, H}, 32),
                         random_tensor<double>({H, I}, 33)};
    const Tensor<double> u = random_tensor<double>({T, H}, 34);
    const Tensor<double> y = swiglu_mlp(u, w, 2);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        double acc = 0;
        for (int64_t i = 0; i < I; ++i) {
          double g = 0, up = 0;
          for (int64_t j = 0; j < H; ++j) {
            g += u.data[t * H + j] * w.gate.data[i * H + j];
            up += u.data[t * H + j] * w.up.data[i * H + j];
          }
          acc += w.down.data[h * I + i] * (g / (1 + std::exp(-g))) * up;
        }
        EXPECT_NEAR(y.data[t * H + h], acc, 1e-13);
      }
  }
}

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

TEST(RoutedExperts, MatchesPerTokenLoop) {
  const int64_t T = 7, H = 9, I = 5, E = 6, k = 3;
  ExpertStore<double> store;
  for (int64_t e = 0; e < E; ++e)
    store.resident.push_back({random_tensor<double>({I, H}, 100 + e), random_tensor<double>({I, H}, 200 + e),
                              random_tensor<double>({H, I}, 300 + e)});
  const Tensor<double> u = random_tensor<double>({T, H}, 41);
  Tensor<double> wr = random_tensor<double>({E, H}, 42), bias({E});
  const RouterOutput<double> r = route(u, wr, bias, k, 2.826, true, kExact);
  const Tensor<double> y = routed_experts(u, r, store, 2);
  for (int64_t t = 0; t < T; ++t) {
    Tensor<double> ut({1, H});
    std::copy_n(u.row(t), H, ut.data.begin());
    std::vector<double> expect(size_t(H), 0.0);
    for (int64_t j = 0; j < k; ++j) {
      const Tensor<double> ye = swiglu_mlp(ut, store.resident[r.ids[t * k + j]], 1);
      for (int64_t h = 0; h < H; ++h) expect[h] += r.weights.data[t * k + j] * ye.data[h];
    }
    for (int64_t h = 0; h < H; ++h) EXPECT_NEAR(y.data[t * H + h], expect[h], 1e-14);
  }
}

}  // namespace
}  // namespace hyoracle
