#include "attention.h"

#include <cmath>
#include <limits>

#include "parallel.h"

namespace hyoracle {

template <class S>
void softmax_row(const S* s, S* p, int64_t n, bool fp32) {
  if (fp32) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) m = std::max(m, float(s[j]));
    float sum = 0;
    std::vector<float> e(size_t(n), 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      e[j] = std::isinf(float(s[j])) && s[j] < 0 ? 0.0f : std::exp(float(s[j]) - m);
      sum += e[j];
    }
    for (int64_t j = 0; j < n; ++j) p[j] = S(e[j] / sum);
    return;
  }
  S m = -std::numeric_limits<S>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  S sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::isinf(s[j]) && s[j] < 0 ? S(0) : std::exp(s[j] - m);
    sum += p[j];
  }
  for (int64_t j = 0; j < n; ++j) p[j] /= sum;
}

template <class S>
Tensor<S> attention(const Tensor<S>& q, const Tensor<S>& k, const Tensor<S>& v, const std::vector<int64_t>& q_pos,
                    const std::vector<int64_t>& k_pos, const Numerics& num) {
  const int64_t T = q.dim(0), nq = q.dim(1), d = q.dim(2);
  const int64_t Tc = k.dim(0), nkv = k.dim(1);
  if (k.dim(2) != d || v.shape != k.shape || nq % nkv || int64_t(q_pos.size()) != T || int64_t(k_pos.size()) != Tc)
    fail("attention: inconsistent shapes q " + shape_str(q.shape) + ", k " + shape_str(k.shape) + ", v " + shape_str(v.shape));
  const int64_t g = nq / nkv;
  const S scale = S(1.0 / std::sqrt(double(d)));
  Tensor<S> ctx({T, nq * d});
  parallel_for(nq, num.threads, [&](int64_t n) {
    const int64_t m = n / g;
    std::vector<S> scores(static_cast<size_t>(Tc)), probs(static_cast<size_t>(Tc));
    for (int64_t i = 0; i < T; ++i) {
      const S* qi = q.data.data() + (i * nq + n) * d;
      for (int64_t j = 0; j < Tc; ++j) {
        if (k_pos[j] > q_pos[i]) {
          scores[j] = -std::numeric_limits<S>::infinity();
          continue;
        }
        const S* kj = k.data.data() + (j * nkv + m) * d;
        S dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += qi[c] * kj[c];
        scores[j] = dot * scale;
      }
      softmax_row(scores.data(), probs.data(), Tc, num.fp32_steps());
      S* out = ctx.data.data() + i * nq * d + n * d;
      for (int64_t j = 0; j < Tc; ++j) {
        if (probs[j] == S(0)) continue;
        const S* vj = v.data.data() + (j * nkv + m) * d;
        for (int64_t c = 0; c < d; ++c) out[c] += probs[j] * vj[c];
      }
    }
  });
  return ctx;
}

template void softmax_row<double>(const double*, double*, int64_t, bool);
template void softmax_row<float>(const float*, float*, int64_t, bool);
template Tensor<double> attention<double>(const Tensor<double>&, const Tensor<double>&, const Tensor<double>&,
                                          const std::vector<int64_t>&, const std::vector<int64_t>&, const Numerics&);
template Tensor<float> attention<float>(const Tensor<float>&, const Tensor<float>&, const Tensor<float>&,
                                        const std::vector<int64_t>&, const std::vector<int64_t>&, const Numerics&);

}  // namespace hyoracle
