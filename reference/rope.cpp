#include "reference/rope.h"

#include <cmath>

namespace hyoracle {

template <class S>
RopeTable<S> rope_table(const std::vector<int64_t>& positions, int64_t d, double theta, const Numerics& num) {
  RopeTable<S> t;
  t.half = d / 2;
  t.cos.resize(positions.size() * t.half);
  t.sin.resize(positions.size() * t.half);
  for (size_t p = 0; p < positions.size(); ++p) {
    for (int64_t i = 0; i < t.half; ++i) {
      const size_t at = p * t.half + i;
      if (!num.fp32_steps()) {
        const double inv_freq = 1.0 / std::pow(theta, double(2 * i) / double(d));
        const double phi = double(positions[p]) * inv_freq;
        t.cos[at] = S(std::cos(phi));
        t.sin[at] = S(std::sin(phi));
      } else {
        const float inv_freq = 1.0f / std::pow(float(theta), float(2 * i) / float(d));
        const float phi = float(positions[p]) * inv_freq;
        t.cos[at] = S(std::cos(phi));
        t.sin[at] = S(std::sin(phi));
      }
    }
  }
  return t;
}

template <class S>
void apply_rope(Tensor<S>& x, const RopeTable<S>& table) {
  const int64_t T = x.dim(0), heads = x.dim(1), d = x.dim(2), h = table.half;
  if (d != 2 * h || int64_t(table.cos.size()) != T * h) fail("apply_rope: table does not match x " + shape_str(x.shape));
  for (int64_t t = 0; t < T; ++t) {
    const S* c = table.cos.data() + t * h;
    const S* s = table.sin.data() + t * h;
    for (int64_t n = 0; n < heads; ++n) {
      S* v = x.data.data() + (t * heads + n) * d;
      for (int64_t i = 0; i < h; ++i) {
        const S a = v[i], b = v[i + h];
        v[i] = a * c[i] - b * s[i];
        v[i + h] = b * c[i] + a * s[i];
      }
    }
  }
}

template RopeTable<double> rope_table<double>(const std::vector<int64_t>&, int64_t, double, const Numerics&);
template RopeTable<float> rope_table<float>(const std::vector<int64_t>&, int64_t, double, const Numerics&);
template void apply_rope<double>(Tensor<double>&, const RopeTable<double>&);
template void apply_rope<float>(Tensor<float>&, const RopeTable<float>&);

}  // namespace hyoracle
