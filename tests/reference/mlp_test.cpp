// reference/mlp: the SwiGLU MLP against explicit loops.
#include <gtest/gtest.h>

#include <cmath>

#include "reference/mlp.h"
#include "tests/reference/layer_test_util.h"

namespace hyoracle {
namespace {

using test::random_tensor;

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

}  // namespace
}  // namespace hyoracle
