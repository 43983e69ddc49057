#include "reference/mlp.h"

#include "reference/matmul.h"

namespace hyoracle {

template <class S>
Tensor<S> swiglu_mlp(const Tensor<S>& u, const MlpWeights<S>& w, int threads) {
  Tensor<S> g = linear(u, w.gate, threads);
  const Tensor<S> up = linear(u, w.up, threads);
  for (int64_t i = 0; i < g.numel(); ++i) g.data[i] = silu(g.data[i]) * up.data[i];
  return linear(g, w.down, threads);
}

template Tensor<double> swiglu_mlp<double>(const Tensor<double>&, const MlpWeights<double>&, int);
template Tensor<float> swiglu_mlp<float>(const Tensor<float>&, const MlpWeights<float>&, int);

}  // namespace hyoracle
