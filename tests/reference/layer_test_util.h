// layer_test_util.h: what the per-layer tests of reference/ share: the two precision modes the
// layers are run in and seeded random tensors. Nothing here computes an expected value.
#pragma once
#include <cstdint>
#include <vector>

#include "reference/numerics.h"
#include "tests/common/test_util.h"
#include "util/tensor.h"

namespace hyoracle::test {

inline const Numerics kExact{Precision::exact, 1};
inline const Numerics kHf{Precision::hf, 1};

// A tensor of the given shape holding test::random_values (seeded, in [-1, 1)).
template <class S>
Tensor<S> random_tensor(std::vector<int64_t> shape, uint64_t seed) {
  Tensor<S> t(shape);
  t.data = test::random_values<S>(size_t(t.numel()), seed);
  return t;
}

}  // namespace hyoracle::test
