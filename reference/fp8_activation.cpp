#include "reference/fp8_activation.h"

#include "io/dtype.h"

namespace hyoracle {

template <class S>
Tensor<S> quantize_activation_fp8(const Tensor<S>& x, double scale) {
  Tensor<S> y = x;
  for (S& v : y.data) {
    const uint8_t q = quantize_e4m3(double(v), scale);
    v = S(element_as_double(&q, DType::F8_E4M3, 0) * scale);
  }
  return y;
}

template Tensor<double> quantize_activation_fp8<double>(const Tensor<double>&, double);
template Tensor<float> quantize_activation_fp8<float>(const Tensor<float>&, double);

}  // namespace hyoracle
