// The W8A8 mode's activation quantization (reference/fp8_activation.h).
//   - quantize_activation_fp8 on values whose E4M3 rounding is known from the OCP FP8
//     specification by hand: representable values, ties to even, saturation, subnormals, signs;
//   - a whole W8A8 run on a per-tensor static FP8 checkpoint against tests/tools/w8a8_linear.py,
//     an independent numpy computation of layer 0's quantized projections from the checkpoint's
//     bytes and the dump's inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "io/random_checkpoint.h"
#include "reference/fp8_activation.h"
#include "reference/model.h"
#include "io/dump.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

double q1(double x, double s) {
  Tensor<double> t({1}, std::vector<double>{x});
  return quantize_activation_fp8(t, s).data[0];
}

TEST(Fp8Activation, RoundsToTheE4M3GridOfTheScaledValue) {
  // With s = 1: representable values stay (1, 1.125, 448, 2^-6, 2^-9).
  for (double v : {0.0, 1.0, 1.125, 448.0, std::ldexp(1.0, -6), std::ldexp(1.0, -9), -3.5})
    EXPECT_EQ(q1(v, 1.0), v) << v;
  // Between 1 and 1.125 (spacing 1/8): below the midpoint down, above up.
  EXPECT_EQ(q1(1.06, 1.0), 1.0);
  EXPECT_EQ(q1(1.07, 1.0), 1.125);
  // Ties to the even mantissa: 1 + 1/16 -> 1 (mantissa 000), 1 + 3/16 -> 1.25 (mantissa 010).
  EXPECT_EQ(q1(1.0 + 1.0 / 16, 1.0), 1.0);
  EXPECT_EQ(q1(1.0 + 3.0 / 16, 1.0), 1.25);
  // 240 and 256 are neighbours (spacing 16 in [128, 256)): 248 is a tie, to 256 (even).
  EXPECT_EQ(q1(248.0, 1.0), 256.0);
  // Saturation at ±448 (no infinities in E4M3FN): 500 and 1e6 -> 448.
  EXPECT_EQ(q1(500.0, 1.0), 448.0);
  EXPECT_EQ(q1(-1e6, 1.0), -448.0);
  // Subnormals (spacing 2^-9): 3·2^-10 is a tie between 2^-9 (odd) and 2^-8 (even) -> 2^-8;
  // 2^-10 is a tie between 0 and 2^-9 -> 0.
  EXPECT_EQ(q1(3 * std::ldexp(1.0, -10), 1.0), std::ldexp(1.0, -8));
  EXPECT_EQ(q1(std::ldexp(1.0, -10), 1.0), 0.0);
  // The scale: x̂ = s·E4M3(x/s). s = 0.5: 0.53 -> 0.5·E4M3(1.06) = 0.5; 300 -> 0.5·448 = 224.
  EXPECT_EQ(q1(0.53, 0.5), 0.5);
  EXPECT_EQ(q1(300.0, 0.5), 224.0);
  // A scale that is not a power of two: s = 1/56 (8/448 rounded to F32): the result is a grid
  // value times s, within half a spacing of x.
  const double s = double(float(8.0 / 448.0));
  const double x = 0.3;
  const double y = q1(x, s);
  EXPECT_NEAR(y, x, 0.5 * 2 * s);  // x/s ≈ 16.8 lies in [16, 32), spacing 2: half a spacing is s
  EXPECT_EQ(y / s, std::round(y / s / 2) * 2);
}

TEST(Fp8Activation, FloatAndDoubleAgreeOnTheGrid) {
  // S = float: the quantized value (a ≤ 4-bit significand times an F32 scale) is exact in float
  // when the scale is a power of two.
  Tensor<float> t({5}, std::vector<float>{0.1f, -2.7f, 7.9f, 1000.f, 0.0f});
  Tensor<double> d({5}, std::vector<double>{0.1f, -2.7f, 7.9f, 1000.f, 0.0f});
  const Tensor<float> a = quantize_activation_fp8(t, 0.25);
  const Tensor<double> b = quantize_activation_fp8(d, 0.25);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(double(a.data[size_t(i)]), b.data[size_t(i)]) << i;
}

TEST(Fp8Activation, W8A8RunAgreesWithAnIndependentNumpyComputation) {
#ifndef HYORACLE_PYTHON3
  GTEST_SKIP() << "no python3";
#else
  test::TempDir dir("hyoracle-w8a8");
  CheckpointSpec spec;
  spec.seed = 12;
  spec.quant = QuantKind::Fp8PerTensor;
  write_random_checkpoint(spec, dir / "ck");
  const std::string run = std::string(HYORACLE_BINARY) + " run --model " + std::string(dir / "ck") +
                          " --tokens 3,1,4,1,5,9,2,6,5,3,5 --fp8-activations --dump " + std::string(dir / "dump");
  const test::CommandResult r = test::run_command(run);
  ASSERT_EQ(r.status, 0) << r.out;
  const test::CommandResult py = test::run_command(std::string(HYORACLE_PYTHON3) + " " + HYORACLE_SOURCE_DIR +
                                                   "/tests/tools/w8a8_linear.py " + std::string(dir / "ck") + " " +
                                                   std::string(dir / "dump"));
  if (py.status == 77) GTEST_SKIP() << "python3 with numpy not available";
  EXPECT_EQ(py.status, 0) << py.out;
  EXPECT_NE(py.out.find("layers.0.mlp.out"), std::string::npos) << py.out;  // the dense layer's MLP was checked
#endif
}

}  // namespace
}  // namespace hyoracle
