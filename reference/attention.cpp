#include "reference/attention.h"

#include <cmath>
#include <limits>

#include <cblas.h>

#include "util/parallel.h"

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

namespace {
// C[M,N] = A[M,K] · B[N,K]ᵀ with leading dimensions (row strides) lda, ldb, ldc.
void gemm_abt(const double* A, int64_t lda, const double* B, int64_t ldb, double* C, int64_t ldc, int64_t M, int64_t N,
              int64_t K) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0, A, int(lda), B, int(ldb), 0.0, C,
              int(ldc));
}
void gemm_abt(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t M, int64_t N,
              int64_t K) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, A, int(lda), B, int(ldb), 0.0f, C,
              int(ldc));
}
// C[M,N] = A[M,K] · B[K,N].
void gemm_ab(const double* A, int64_t lda, const double* B, int64_t ldb, double* C, int64_t ldc, int64_t M, int64_t N,
             int64_t K) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(N), int(K), 1.0, A, int(lda), B, int(ldb), 0.0, C,
              int(ldc));
}
void gemm_ab(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t M, int64_t N,
             int64_t K) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(N), int(K), 1.0f, A, int(lda), B, int(ldb), 0.0f,
              C, int(ldc));
}
}  // namespace

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
  if (T == 0 || Tc == 0) return ctx;
  // One task per query head: S = Q_n·K_mᵀ (one GEMM), scale, mask, softmax per row, then
  // context_n = P·V_m (one GEMM). The per-head GEMM calls are the same for every thread count.
  parallel_for(nq, num.threads, [&](int64_t n) {
    const int64_t m = n / g;
    std::vector<S> scores(static_cast<size_t>(T * Tc)), probs(static_cast<size_t>(T * Tc));
    gemm_abt(q.data.data() + n * d, nq * d, k.data.data() + m * d, nkv * d, scores.data(), Tc, T, Tc, d);
    for (int64_t i = 0; i < T; ++i) {
      S* row = scores.data() + i * Tc;
      for (int64_t j = 0; j < Tc; ++j)
        row[j] = k_pos[j] > q_pos[i] ? -std::numeric_limits<S>::infinity() : row[j] * scale;
      softmax_row(row, probs.data() + i * Tc, Tc, num.fp32_steps());
    }
    gemm_ab(probs.data(), Tc, v.data.data() + m * d, nkv * d, ctx.data.data() + n * d, nq * d, T, d, Tc);
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
