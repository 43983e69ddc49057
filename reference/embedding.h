// embedding.h: token embedding, a plain row lookup (docs/model.md §4.1).
//
//   x[t, :] = table[ids[t], :]      table [V, H], ids [T] -> x [T, H]
// No √H scaling, no position embedding. An id outside [0, V) is an Error.
#pragma once
#include <vector>

#include "util/tensor.h"

namespace hyoracle {
template <class S>
Tensor<S> embedding(const Tensor<S>& table, const std::vector<int64_t>& ids);
}  // namespace hyoracle
