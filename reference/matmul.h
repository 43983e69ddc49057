// matmul.h: the linear layer, y = x · Wᵀ, with W stored [out, in] as in every checkpoint.
//
// Shapes: x [M, K], w [N, K] -> y [M, N]. Accumulation type: S (double in exact/hf, float in
// fp32), by OpenBLAS's single-threaded GEMM. The N columns are cut into fixed blocks of
// kMatmulBlock and the blocks are spread over threads, so every output element is computed by
// the same GEMM call whatever the thread count: bit-identical results by construction.
#pragma once
#include <cstdint>

#include "util/tensor.h"

namespace hyoracle {

constexpr int64_t kMatmulBlock = 128;

// Sets OpenBLAS to one thread (hyoracle parallelises above it). Call once at start-up.
void init_blas_single_threaded();

template <class S>
void matmul_nt(const S* x, const S* w, S* y, int64_t M, int64_t N, int64_t K, int threads);

// The naive triple loop y[m][n] = Σ_k x[m][k]·w[n][k], accumulated in long double; the
// independent oracle for matmul_nt in tests.
template <class S>
void matmul_nt_naive(const S* x, const S* w, S* y, int64_t M, int64_t N, int64_t K);

// linear(x [.., K], w [N, K]) -> [rows(x), N].
template <class S>
Tensor<S> linear(const Tensor<S>& x, const Tensor<S>& w, int threads);

}  // namespace hyoracle
