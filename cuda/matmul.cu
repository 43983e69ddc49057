#include "cuda/matmul.h"

#include "cuda/gemv.h"

namespace hyoracle::cuda {

template <class T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, bf16>) return CUDA_R_16BF;
  else if constexpr (std::is_same_v<T, fp16>) return CUDA_R_16F;
  else return CUDA_R_32F;
}

template <class Ti, class To>
void linear(const DeviceTensor<Ti>& x, const DeviceTensor<Ti>& w, DeviceTensor<To>& y) {
  const int64_t M = x.rows(), K = x.cols(), N = w.dim(0);
  if (w.shape.size() != 2 || w.dim(1) != K || y.numel() != M * N)
    fail("cuda linear: x " + shape_str(x.shape) + ", w " + shape_str(w.shape) + ", y " + shape_str(y.shape) + " do not match");
  if (M == 0 || N == 0) return;
  if (K == 0) {
    check(cudaMemsetAsync(y.data(), 0, size_t(M * N) * sizeof(To), gpu().stream), "linear: memset");
    return;
  }
  if constexpr (!std::is_same_v<Ti, float>) {
    if (gemv_applies(x, w)) {  // a few rows (decode): stream the weights once (gemv.h)
      gemv<Ti, To>(x, {&w}, {&y});
      return;
    }
  }
  // Row-major y[M, N] = x[M, K] · w[N, K]ᵀ is column-major yᵀ[N, M] = op_T(w) · xᵀ.
  const float alpha = 1.0f, beta = 0.0f;
  const cublasComputeType_t compute =
      std::is_same_v<Ti, float> ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  check(cublasGemmEx(gpu().blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w.data(), cuda_type<Ti>(),
                     int(K), x.data(), cuda_type<Ti>(), int(K), &beta, y.data(), cuda_type<To>(), int(N), compute,
                     CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx (linear)");
}

void dgemm_nt(const double* x, int64_t ldx, const double* w, int64_t ldw, double* y, int64_t ldy, int64_t M, int64_t N,
              int64_t K) {
  if (M == 0 || N == 0) return;
  // Row-major y = x · wᵀ is column-major yᵀ[N, M] = op_T(w) · xᵀ.
  const double alpha = 1.0, beta = 0.0;
  check(cublasDgemm(gpu().blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w, int(ldw), x, int(ldx), &beta, y,
                    int(ldy)),
        "cublasDgemm");
}

template <class Tw>
void linear(const DeviceTensor<double>& x, const DeviceTensor<Tw>& w, DeviceTensor<double>& y) {
  const int64_t M = x.rows(), K = x.cols(), N = w.dim(0);
  if (w.shape.size() != 2 || w.dim(1) != K || y.numel() != M * N)
    fail("cuda linear (fp64): x " + shape_str(x.shape) + ", w " + shape_str(w.shape) + ", y " + shape_str(y.shape) +
         " do not match");
  if (M == 0 || N == 0) return;
  if (K == 0) {
    check(cudaMemsetAsync(y.data(), 0, size_t(M * N) * sizeof(double), gpu().stream), "linear (fp64): memset");
    return;
  }
  DeviceTensor<double> wd(w.shape);  // the stored weight expanded exactly (stream-ordered scratch)
  expand_to_double(w.data(), w.numel(), wd.data());
  dgemm_nt(x.data(), K, wd.data(), K, y.data(), N, M, N, K);
}

template <class T>
void grouped_linear(const DeviceTensor<T>& a, const int32_t* gather, const DeviceTensor<T>& w, const GroupLayout& g,
                    DeviceTensor<T>& y) {
  const int64_t E = w.dim(0), N = w.dim(1), K = w.dim(2);
  if (w.shape.size() != 3 || a.cols() != K || y.cols() != N || E != g.groups)
    fail("cuda grouped_linear: a " + shape_str(a.shape) + ", w " + shape_str(w.shape) + ", y " + shape_str(y.shape) +
         " do not match");
  // Any row count may share one group here (no router guarantee), so the GEMV bound is the total.
  grouped_gemm(a.data(), gather, GroupWeights<T>{w.data(), E, nullptr, N, K}, g, g.max_rows, GroupEpilogue::store,
               y.data());
  check_launch("grouped_linear");
}

template void linear<float, float>(const DeviceTensor<float>&, const DeviceTensor<float>&, DeviceTensor<float>&);
template void linear<bf16, bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, DeviceTensor<bf16>&);
template void linear<fp16, fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, DeviceTensor<fp16>&);
template void linear<bf16, float>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, DeviceTensor<float>&);
template void linear<fp16, float>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, DeviceTensor<float>&);
template void linear<bf16>(const DeviceTensor<double>&, const DeviceTensor<bf16>&, DeviceTensor<double>&);
template void linear<float>(const DeviceTensor<double>&, const DeviceTensor<float>&, DeviceTensor<double>&);
template void grouped_linear<float>(const DeviceTensor<float>&, const int32_t*, const DeviceTensor<float>&,
                                    const GroupLayout&, DeviceTensor<float>&);
template void grouped_linear<bf16>(const DeviceTensor<bf16>&, const int32_t*, const DeviceTensor<bf16>&,
                                   const GroupLayout&, DeviceTensor<bf16>&);
template void grouped_linear<fp16>(const DeviceTensor<fp16>&, const int32_t*, const DeviceTensor<fp16>&,
                                   const GroupLayout&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
