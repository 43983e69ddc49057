// attention_fp64: the fp64 path's attention (attention_fp64 in cuda/attention.h), the reference's
// exact mode (reference/attention.cpp) on the GPU, operation for operation:
//
//   S[n, i, j] = q[i, n, :] · k[j, m, :]                      (DGEMM, double; m = n / g)
//   s[n, i, j] = S · d^(-1/2) for j <= q_pos[i] (and j < Tc), else masked
//   P[n, i, j] = e^(s − max_j s) / Σ_j e^(s − max_j s)        (double; masked: 0)
//   context[i, n·d + c] = Σ_j P[n, i, j] · v[j, m, c]         (DGEMM, double)
// Shapes: q [T, nq, d], the first Tc rows of k/v [cap, nkv, d], q_pos [T] -> context [T, nq·d].
// Differences from the reference are only in the order of the sums (cuBLAS's over d and over j,
// a block tree for Σ e): agreement to about 1e-15 relative, not bit for bit.
#include <algorithm>
#include <cmath>

#include "cuda/attention.h"
#include "cuda/attention_common.cuh"
#include "cuda/rms_norm.cuh"

namespace hyoracle::cuda {

namespace {

constexpr int kSoftmaxThreads = 256;
constexpr int64_t kScoreBytes = int64_t(1) << 31;  // S chunk bound: 2 GiB

// The largest of one double per thread over the block; every thread gets it.
__device__ inline double block_max(double v) {
  __shared__ double part[32];
  for (int o = 16; o > 0; o /= 2) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    double s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : -INFINITY;
    for (int o = 16; o > 0; o /= 2) s = fmax(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (threadIdx.x == 0) part[0] = s;
  }
  __syncthreads();
  return part[0];
}

// One block per row (head n, query i0 + i) of S [nq][rows][Tc]: in place, S -> P (see the top).
__global__ void __launch_bounds__(kSoftmaxThreads) softmax_rows(double* S, const int64_t* q_pos, int64_t i0, int64_t rows,
                                                                int64_t Tc, double scale) {
  const int64_t row = blockIdx.x, i = row % rows;
  double* s = S + row * Tc;
  const int64_t p = q_pos[i0 + i];
  const int64_t vis = p < 0 ? 0 : std::min<int64_t>(p + 1, Tc);
  double mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < vis; j += blockDim.x) {
    const double v = s[j] * scale;
    s[j] = v;
    mx = fmax(mx, v);
  }
  mx = block_max(mx);
  double sum = 0;
  for (int64_t j = threadIdx.x; j < vis; j += blockDim.x) {
    const double e = exp(s[j] - mx);
    s[j] = e;
    sum += e;
  }
  sum = block_sum(sum);
  for (int64_t j = threadIdx.x; j < Tc; j += blockDim.x) s[j] = j < vis ? s[j] / sum : 0.0;
}

}  // namespace

void attention_fp64(const DeviceTensor<double>& q, const DeviceTensor<double>& k_cache, const DeviceTensor<double>& v_cache,
                    int64_t Tc, const DeviceTensor<int64_t>& q_pos, DeviceTensor<double>& context) {
  attn::check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  const int64_t T_ = q.dim(0), nq = q.dim(1), d = q.dim(2), nkv = k_cache.dim(1), g = nq / nkv;
  if (!T_) return;
  if (!Tc) {
    check(cudaMemsetAsync(context.data(), 0, size_t(context.numel()) * sizeof(double), gpu().stream), "attention (fp64): memset");
    return;
  }
  const double scale = 1.0 / std::sqrt(double(d));  // S(1.0 / sqrt(double(d))), as the reference
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(T_, kScoreBytes / (nq * Tc * int64_t(sizeof(double)))));
  DeviceTensor<double> S({nq, chunk, Tc});
  cublasHandle_t h = gpu().blas;
  const double one = 1.0, zero = 0.0;
  for (int64_t i0 = 0; i0 < T_; i0 += chunk) {
    const int64_t rows = std::min(chunk, T_ - i0);
    for (int64_t m = 0; m < nkv; ++m) {
      // Row-major S_n [rows, Tc] = Q_n [rows, d] · K_mᵀ is column-major S_nᵀ = op_T(K_m) · Q_nᵀ; the g
      // heads of KV head m: Q_n steps by d, K_m is shared (stride 0), S_n steps by rows·Tc.
      const double* qn = q.data() + (i0 * nq + m * g) * d;
      check(cublasDgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, int(Tc), int(rows), int(d), &one, k_cache.data() + m * d,
                                      int(nkv * d), 0, qn, int(nq * d), d, &zero, S.data() + m * g * rows * Tc, int(Tc),
                                      rows * Tc, int(g)),
            "cublasDgemmStridedBatched (attention scores)");
    }
    softmax_rows<<<unsigned(nq * rows), kSoftmaxThreads, 0, gpu().stream>>>(S.data(), q_pos.data(), i0, rows, Tc, scale);
    check_launch("attention (fp64) softmax");
    for (int64_t m = 0; m < nkv; ++m) {
      // Row-major ctx_n [rows, d] (row stride nq·d) = P_n [rows, Tc] · V_m [Tc, d]: column-major
      // ctx_nᵀ = V_mᵀ · P_nᵀ; V_m shared, P_n steps by rows·Tc, ctx_n by d.
      check(cublasDgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, int(d), int(rows), int(Tc), &one, v_cache.data() + m * d,
                                      int(nkv * d), 0, S.data() + m * g * rows * Tc, int(Tc), rows * Tc, &zero,
                                      context.data() + i0 * nq * d + m * g * d, int(nq * d), d, int(g)),
            "cublasDgemmStridedBatched (attention context)");
    }
  }
}

}  // namespace hyoracle::cuda
