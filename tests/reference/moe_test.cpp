// reference/moe: the routed experts against a per-token loop over swiglu_mlp.
#include <gtest/gtest.h>

#include <algorithm>

#include "reference/mlp.h"
#include "reference/moe.h"
#include "reference/router.h"
#include "tests/reference/layer_test_util.h"

namespace hyoracle {
namespace {

using test::kExact;
using test::random_tensor;

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
