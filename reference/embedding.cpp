#include "reference/embedding.h"

#include <algorithm>

namespace hyoracle {

template <class S>
Tensor<S> embedding(const Tensor<S>& table, const std::vector<int64_t>& ids) {
  const int64_t V = table.dim(0), H = table.dim(1);
  Tensor<S> x({int64_t(ids.size()), H});
  for (size_t t = 0; t < ids.size(); ++t) {
    if (ids[t] < 0 || ids[t] >= V)
      fail("token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) + " is outside the vocabulary [0, " +
           std::to_string(V) + ")");
    std::copy_n(table.row(ids[t]), H, x.row(int64_t(t)));
  }
  return x;
}

template Tensor<double> embedding<double>(const Tensor<double>&, const std::vector<int64_t>&);
template Tensor<float> embedding<float>(const Tensor<float>&, const std::vector<int64_t>&);

}  // namespace hyoracle
