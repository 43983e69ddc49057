#include "reference/mlp.h"

#include "reference/fp8_activation.h"
#include "reference/matmul.h"

namespace hyoracle {

template <class S>
Tensor<S> swiglu_mlp(const Tensor<S>& u, const MlpWeights<S>& w, int threads, bool fp8) {
  Tensor<S> g = linear_input_quantized(u, w.gate, w.gate_in, fp8, threads);
  const Tensor<S> up = linear_input_quantized(u, w.up, w.up_in, fp8, threads);
  for (int64_t i = 0; i < g.numel(); ++i) g.data[i] = silu(g.data[i]) * up.data[i];
  return linear_input_quantized(g, w.down, w.down_in, fp8, threads);
}

template Tensor<double> swiglu_mlp<double>(const Tensor<double>&, const MlpWeights<double>&, int, bool);
template Tensor<float> swiglu_mlp<float>(const Tensor<float>&, const MlpWeights<float>&, int, bool);

}  // namespace hyoracle
