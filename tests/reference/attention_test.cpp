// reference/attention: the masked softmax row, and causal GQA attention against uniform weights
// and an independent naive implementation; a decode query equals the last prefill row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "reference/attention.h"
#include "tests/reference/layer_test_util.h"

namespace hyoracle {
namespace {

using test::kExact;
using test::random_tensor;

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

}  // namespace
}  // namespace hyoracle
