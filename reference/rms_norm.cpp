#include "reference/rms_norm.h"

#include <cmath>

namespace hyoracle {

template <class S>
Tensor<S> rms_norm(const Tensor<S>& u, const Tensor<S>& w, double eps, const Numerics& num) {
  const int64_t n = w.numel();
  if (u.numel() % n) fail("rms_norm: input " + shape_str(u.shape) + " is not a multiple of weight width " + std::to_string(n));
  Tensor<S> y(u.shape);
  const int64_t R = u.numel() / n;
  for (int64_t r = 0; r < R; ++r) {
    const S* x = u.data.data() + r * n;
    S* out = y.data.data() + r * n;
    if (!num.fp32_steps()) {
      long double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += (long double)x[i] * x[i];
      const double inv = 1.0 / std::sqrt(double(ss / n) + eps);
      for (int64_t i = 0; i < n; ++i) out[i] = S(double(w.data[i]) * (double(x[i]) * inv));
    } else {
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double xf = float(x[i]);
        ss += xf * xf;
      }
      const float r32 = float(ss / double(n));
      const float inv = 1.0f / std::sqrt(r32 + float(eps));
      for (int64_t i = 0; i < n; ++i) {
        const float v = float(x[i]) * inv;
        out[i] = S(w.data[i] * S(v));
      }
    }
  }
  return y;
}

template Tensor<double> rms_norm<double>(const Tensor<double>&, const Tensor<double>&, double, const Numerics&);
template Tensor<float> rms_norm<float>(const Tensor<float>&, const Tensor<float>&, double, const Numerics&);

}  // namespace hyoracle
