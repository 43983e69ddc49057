// io/dtype: bf16, f16 and fp8 decoding and round-to-nearest-even encoding at hand-picked values.
#include <gtest/gtest.h>

#include <cmath>

#include "io/dtype.h"

namespace hyoracle {
namespace {

TEST(DType, Bf16DecodesAndRoundsToNearestEven) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc000), -2.0f);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(round_to_bf16(1.0 + std::ldexp(1.0, -8)), 1.0);
  // 1 + 3·2^-8 is halfway between 1+2^-7 (odd mantissa) and 1+2^-6 (even): rounds up.
  EXPECT_EQ(round_to_bf16(1.0 + 3 * std::ldexp(1.0, -8)), 1.0 + std::ldexp(1.0, -6));
  // A hair above the half-way point rounds up (double rounding through float would not).
  EXPECT_EQ(round_to_bf16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40)), 1.0 + std::ldexp(1.0, -7));
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

TEST(DType, F16AndF8Decode) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);                // largest finite
  EXPECT_TRUE(std::isinf(f16_to_float(0x7c00)));
  for (float v : {1.0f, -0.5f, 65504.0f, std::ldexp(1.0f, -24), 0.0999755859375f})
    EXPECT_EQ(f16_to_float(float_to_f16(v)), v) << v;
  EXPECT_EQ(f8e4m3_to_float(0x38), 1.0f);    // exponent 7 (bias 7), mantissa 0
  EXPECT_EQ(f8e4m3_to_float(0x7e), 448.0f);  // largest finite E4M3FN
  EXPECT_TRUE(std::isnan(f8e4m3_to_float(0x7f)));
  EXPECT_EQ(f8e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(f8e5m2_to_float(0x3c), 1.0f);
  EXPECT_EQ(f8e5m2_to_float(0x7b), 57344.0f);
}

}  // namespace
}  // namespace hyoracle
