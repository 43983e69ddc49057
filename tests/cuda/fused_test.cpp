// Fused kernels against their unfused parts: add_rms_norm (cuda/rms_norm.h) must give the same
// bits as add() followed by rms_norm(), since it promises the same arithmetic in the same order.
// (The fused q/k norm + RoPE + cache write of decoder_layer.cu is checked tensor by tensor against
// the reference by model_test.cpp, which records attn.q_norm, attn.q_rope and attn.k_rope.)
#include <gtest/gtest.h>

#include <array>

#include "cuda/elementwise.h"
#include "cuda/rms_norm.h"
#include "tests/cuda/cuda_test_util.h"

namespace hyoracle::test {
namespace {

template <class T>
class Fused : public CudaTest {};
using Dtypes = ::testing::Types<float, cuda::bf16, cuda::fp16>;
TYPED_TEST_SUITE(Fused, Dtypes);

TYPED_TEST(Fused, AddRmsNormEqualsAddThenRmsNormBitForBit) {
  using T = TypeParam;
  for (auto [R, n] : std::vector<std::array<int64_t, 2>>{{1, 1}, {1, 2048}, {7, 33}, {33, 129}, {3, 4097}}) {
    SCOPED_TRACE("rows " + std::to_string(R) + " width " + std::to_string(n));
    const auto a = operand<T>(normal_values(R * n, 61 + n), {R, n});
    const auto b = operand<T>(normal_values(R * n, 62 + n, 0.5), {R, n});
    const auto w = operand<T>(normal_values(n, 63, 0.1), {n});
    Guarded<T> h({R, n}), y({R, n});
    cuda::add_rms_norm(a.dev, b.dev, w.dev, 1e-5, h.tensor, y.tensor);
    cuda::DeviceTensor<T> h2({R, n}), y2({R, n});
    cuda::add(a.dev, b.dev, h2);
    cuda::rms_norm(h2, w.dev, 1e-5, y2);
    EXPECT_EQ(cuda::download(h.tensor).data, cuda::download(h2).data);
    EXPECT_EQ(cuda::download(y.tensor).data, cuda::download(y2).data);
    EXPECT_EQ(h.guard_damage(), 0);
    EXPECT_EQ(y.guard_damage(), 0);
  }
}

}  // namespace
}  // namespace hyoracle::test
