#include "reference/matmul.h"

#include <cblas.h>

#include <algorithm>

#include "util/parallel.h"

namespace hyoracle {

void init_blas_single_threaded() { openblas_set_num_threads(1); }

namespace {
void gemm_nt(const double* x, const double* w, double* y, int64_t M, int64_t N, int64_t K, int64_t ldy) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0, x, int(K), w, int(K), 0.0, y, int(ldy));
}
void gemm_nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K, int64_t ldy) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, x, int(K), w, int(K), 0.0f, y, int(ldy));
}
}  // namespace

template <class S>
void matmul_nt(const S* x, const S* w, S* y, int64_t M, int64_t N, int64_t K, int threads) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(y, y + M * N, S(0));
    return;
  }
  const int64_t blocks = (N + kMatmulBlock - 1) / kMatmulBlock;
  parallel_for(blocks, threads, [&](int64_t b) {
    const int64_t n0 = b * kMatmulBlock, nb = std::min(kMatmulBlock, N - n0);
    gemm_nt(x, w + n0 * K, y + n0, M, nb, K, N);
  });
}

template <class S>
void matmul_nt_naive(const S* x, const S* w, S* y, int64_t M, int64_t N, int64_t K) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      long double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += (long double)x[m * K + k] * (long double)w[n * K + k];
      y[m * N + n] = S(acc);
    }
}

template <class S>
Tensor<S> linear(const Tensor<S>& x, const Tensor<S>& w, int threads) {
  const int64_t K = x.cols(), N = w.dim(0);
  if (w.shape.size() != 2 || w.dim(1) != K)
    fail("linear: weight shape " + shape_str(w.shape) + " does not match input width " + std::to_string(K));
  Tensor<S> y({x.rows(), N});
  matmul_nt(x.data.data(), w.data.data(), y.data.data(), x.rows(), N, K, threads);
  return y;
}

template void matmul_nt<double>(const double*, const double*, double*, int64_t, int64_t, int64_t, int);
template void matmul_nt<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, int);
template void matmul_nt_naive<double>(const double*, const double*, double*, int64_t, int64_t, int64_t);
template void matmul_nt_naive<float>(const float*, const float*, float*, int64_t, int64_t, int64_t);
template Tensor<double> linear<double>(const Tensor<double>&, const Tensor<double>&, int);
template Tensor<float> linear<float>(const Tensor<float>&, const Tensor<float>&, int);

}  // namespace hyoracle
