// reference/matmul: the BLAS-backed matmul_nt against naive loops on odd shapes, exact on
// integer inputs and bit-identical at any thread count.
#include <gtest/gtest.h>

#include <vector>

#include "reference/matmul.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

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

}  // namespace
}  // namespace hyoracle
