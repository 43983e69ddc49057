// The decode-sized linear layer (cuda/gemv.h) against naive loops: bit for bit on integer-valued
// inputs, within a derived bound on random ones, several weights sharing one input in one launch,
// guard buffers around every output, and the fallbacks (fp32, K % 8 != 0, more than 8 rows).
#include <gtest/gtest.h>

#include <array>
#include <cmath>

#include "cuda/gemv.h"
#include "cuda/matmul.h"
#include "reference/matmul.h"
#include "tests/cuda/cuda_test_util.h"

namespace hyoracle::test {
namespace {

using cuda::bf16;
using cuda::fp16;

template <class T>
class Gemv : public CudaTest {};
using Half = ::testing::Types<bf16, fp16>;
TYPED_TEST_SUITE(Gemv, Half);

// |x|, |w| <= 8 and K <= 2056: every partial sum is an integer below 2^24, exact in fp32 in any
// order, so each output must be exactly round_T(Σ x·w) (and Σ x·w itself for a float output).
TYPED_TEST(Gemv, BitExactOnIntegersAcrossSegments) {
  using T = TypeParam;
  for (auto [M, K] : std::vector<std::array<int64_t, 2>>{{1, 8}, {1, 2056}, {2, 24}, {3, 264}, {7, 1032}, {8, 2048}}) {
    SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K));
    const std::vector<int64_t> widths = {1, 7, 33};
    const auto x = operand<T>(int_values(M * K, 21 + M), {M, K});
    std::vector<Operand<T>> ws;
    std::vector<std::unique_ptr<Guarded<T>>> ys;
    for (size_t s = 0; s < widths.size(); ++s) {
      ws.push_back(operand<T>(int_values(widths[s] * K, 31 + s + K), {widths[s], K}));
      ys.push_back(std::make_unique<Guarded<T>>(std::vector<int64_t>{M, widths[s]}));
    }
    ASSERT_TRUE(cuda::gemv_applies(x.dev, ws[0].dev));
    cuda::gemv<T, T>(x.dev, {&ws[0].dev, &ws[1].dev, &ws[2].dev}, {&ys[0]->tensor, &ys[1]->tensor, &ys[2]->tensor});
    for (size_t s = 0; s < widths.size(); ++s) {
      const int64_t N = widths[s];
      Tensor<double> ref({M, N});
      matmul_nt_naive(x.host.data.data(), ws[s].host.data.data(), ref.data.data(), M, N, K);
      expect_nonzero(ref, "reference");
      const Tensor<float> got = cuda::download(ys[s]->tensor);
      for (int64_t i = 0; i < M * N; ++i)
        ASSERT_EQ(double(got.data[i]), rounded<T>(ref.data[i])) << "segment " << s << " element " << i;
      EXPECT_EQ(ys[s]->guard_damage(), 0) << "segment " << s;
    }
    // Float output (the lm_head form): the exact integer sums.
    Guarded<float> yf({M, widths[2]});
    cuda::gemv<T, float>(x.dev, {&ws[2].dev}, {&yf.tensor});
    Tensor<double> ref({M, widths[2]});
    matmul_nt_naive(x.host.data.data(), ws[2].host.data.data(), ref.data.data(), M, widths[2], K);
    const Tensor<float> got = cuda::download(yf.tensor);
    for (int64_t i = 0; i < M * widths[2]; ++i) ASSERT_EQ(double(got.data[i]), ref.data[i]) << "float element " << i;
    EXPECT_EQ(yf.guard_damage(), 0);
  }
}

// Random N(0,1) inputs: |y − Σxw| <= u_T·|Σxw| (the one rounding to T) + K·2^-24·Σ|x||w| (fp32
// accumulation in any order, Higham's γ_K) per element; and the same call twice gives the same bits.
TYPED_TEST(Gemv, RandomWithinDerivedBoundAndDeterministic) {
  using T = TypeParam;
  const double u = std::is_same_v<T, bf16> ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  for (auto [M, N, K] : std::vector<std::array<int64_t, 3>>{{1, 129, 2048}, {5, 33, 4096}, {8, 7, 776}}) {
    SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
    const auto x = operand<T>(normal_values(M * K, 41 + M), {M, K});
    const auto w = operand<T>(normal_values(N * K, 42 + N), {N, K});
    Guarded<T> y({M, N});
    cuda::linear(x.dev, w.dev, y.tensor);  // dispatches to gemv for M <= 8
    const Tensor<float> got = cuda::download(y.tensor);
    Tensor<double> ref({M, N});
    matmul_nt_naive(x.host.data.data(), w.host.data.data(), ref.data.data(), M, N, K);
    double worst = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double abs_sum = 0;
        for (int64_t k = 0; k < K; ++k) abs_sum += std::fabs(x.host.data[m * K + k] * w.host.data[n * K + k]);
        const double r = ref.data[m * N + n];
        const double bound = u * std::fabs(r) + double(K) * std::ldexp(1.0, -24) * abs_sum;
        const double err = std::fabs(got.data[m * N + n] - r);
        worst = std::max(worst, err / bound);
        ASSERT_LE(err, bound) << "element " << m << "," << n;
      }
    std::printf("  gemv %s M=%lld N=%lld K=%lld: worst error %.3f of the bound\n", cuda::dtype_label<T>(), (long long)M,
                (long long)N, (long long)K, worst);
    EXPECT_EQ(y.guard_damage(), 0);
    cuda::DeviceTensor<T> again({M, N});
    cuda::linear(x.dev, w.dev, again);
    EXPECT_EQ(cuda::download(again).data, got.data) << "two runs of the same call differ";
  }
}

// Where gemv does not apply, linear() still gives the exact integer result through cuBLAS: K not
// a multiple of 8, 9 rows, a weight view that is not 16-byte aligned.
TYPED_TEST(Gemv, FallbacksStayExact) {
  using T = TypeParam;
  for (auto [M, N, K, offset] : std::vector<std::array<int64_t, 4>>{{1, 33, 7, 0}, {9, 17, 64, 0}, {1, 5, 24, 3}}) {
    SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
    const auto x = operand<T>(int_values(M * K, 51), {M, K});
    const auto wbig = operand<T>(int_values(N * K + offset, 52), {N * K + offset});
    const cuda::DeviceTensor<T> w = cuda::DeviceTensor<T>::view(const_cast<T*>(wbig.dev.data()) + offset, {N, K});
    EXPECT_FALSE(cuda::gemv_applies(x.dev, w));
    Guarded<T> y({M, N});
    cuda::linear(x.dev, w, y.tensor);
    Tensor<double> ref({M, N});
    matmul_nt_naive(x.host.data.data(), wbig.host.data.data() + offset, ref.data.data(), M, N, K);
    const Tensor<float> got = cuda::download(y.tensor);
    for (int64_t i = 0; i < M * N; ++i) ASSERT_EQ(double(got.data[i]), rounded<T>(ref.data[i])) << "element " << i;
    EXPECT_EQ(y.guard_damage(), 0);
  }
}

TEST_F(CudaTest, GemvRefusesMismatchedShapes) {
  const auto x = operand<bf16>(int_values(2 * 16, 1), {2, 16});
  const auto w = operand<bf16>(int_values(3 * 16, 2), {3, 16});
  cuda::DeviceTensor<bf16> wrong({2, 4});
  try {
    cuda::gemv<bf16, bf16>(x.dev, {&w.dev}, {&wrong});
    ADD_FAILURE() << "a [2, 4] output for a [3, 16] weight was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda gemv"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(cuda::gemv_applies(operand<float>(int_values(16, 3), {1, 16}).dev, operand<float>(int_values(16, 4), {1, 16}).dev));
}

}  // namespace
}  // namespace hyoracle::test
