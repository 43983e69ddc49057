#include "matmul.h"

#include "gemv.h"

#include <mma.h>

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

namespace {

constexpr int kTileN = 64;

// The group (expert) owning row tile `tile`, by binary search in tile_offset[0..E].
__device__ int group_of_tile(const int32_t* tile_offset, int E, int tile) {
  int lo = 0, hi = E;  // tile_offset[lo] <= tile < tile_offset[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (tile_offset[mid] <= tile) lo = mid;
    else hi = mid;
  }
  return lo;
}

// Tensor-core grouped GEMM for 16-bit T: 64x64 output tile per block of 4 warps (2x2, each
// 32x32 = 2x2 WMMA 16x16x16 fragments), K in steps of 32 through shared memory, fp32
// accumulators, one rounding to T on the way out.
template <class T>
__global__ void __launch_bounds__(128) grouped_gemm_tc(const T* __restrict__ a, const int32_t* __restrict__ gather,
                                                       const T* __restrict__ w, const int32_t* __restrict__ row_offset,
                                                       const int32_t* __restrict__ tile_offset, int E, int N, int K,
                                                       T* __restrict__ y) {
  using namespace nvcuda;
  constexpr int BM = kGroupTileM, BN = kTileN, BK = 32, LD = BK + 8, LDC = BN + 4;
  const int tile = blockIdx.x;
  if (tile >= tile_offset[E]) return;
  const int e = group_of_tile(tile_offset, E, tile);
  const int row0 = row_offset[e] + (tile - tile_offset[e]) * BM;
  const int rows = min(BM, row_offset[e + 1] - row0);
  const int n0 = blockIdx.y * BN;
  const T* we = w + size_t(e) * N * K;

  __shared__ __align__(128) unsigned char smem[BM * LDC * 4 > 2 * BM * LD * 2 ? BM * LDC * 4 : 2 * BM * LD * 2];
  T* As = reinterpret_cast<T*>(smem);
  T* Bs = As + BM * LD;
  __shared__ int src[BM];
  for (int r = threadIdx.x; r < BM; r += blockDim.x) src[r] = r < rows ? (gather ? gather[row0 + r] : row0 + r) : -1;
  __syncthreads();

  const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  const bool vec = K % 8 == 0;
  for (int k0 = 0; k0 < K; k0 += BK) {
    if (vec) {  // 16-byte loads: 64 rows x 4 vectors of 8 for A and for B, 2 + 2 per thread
      for (int v = threadIdx.x; v < BM * 4; v += blockDim.x) {
        const int r = v / 4, c = (v % 4) * 8;
        uint4 av = make_uint4(0, 0, 0, 0), bv = make_uint4(0, 0, 0, 0);
        if (src[r] >= 0 && k0 + c < K) av = *reinterpret_cast<const uint4*>(a + size_t(src[r]) * K + k0 + c);
        if (n0 + r < N && k0 + c < K) bv = *reinterpret_cast<const uint4*>(we + size_t(n0 + r) * K + k0 + c);
        *reinterpret_cast<uint4*>(As + r * LD + c) = av;
        *reinterpret_cast<uint4*>(Bs + r * LD + c) = bv;
      }
    } else {
      for (int v = threadIdx.x; v < BM * BK; v += blockDim.x) {
        const int r = v / BK, c = v % BK;
        As[r * LD + c] = src[r] >= 0 && k0 + c < K ? a[size_t(src[r]) * K + k0 + c] : from_f32<T>(0.0f);
        Bs[r * LD + c] = n0 + r < N && k0 + c < K ? we[size_t(n0 + r) * K + k0 + c] : from_f32<T>(0.0f);
      }
    }
    __syncthreads();
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], As + (wm * 32 + i * 16) * LD + kk, LD);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], Bs + (wn * 32 + j * 16) * LD + kk, LD);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
  float* Cs = reinterpret_cast<float*>(smem);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();
  for (int v = threadIdx.x; v < BM * BN; v += blockDim.x) {
    const int r = v / BN, c = v % BN;
    if (r < rows && n0 + c < N) y[size_t(row0 + r) * N + n0 + c] = from_f32<T>(Cs[r * LDC + c]);
  }
}

// SIMT grouped GEMM for fp32: 64x64 tile, 256 threads with 4x4 outputs each, plain fp32 FMA.
__global__ void __launch_bounds__(256) grouped_gemm_simt(const float* __restrict__ a, const int32_t* __restrict__ gather,
                                                         const float* __restrict__ w, const int32_t* __restrict__ row_offset,
                                                         const int32_t* __restrict__ tile_offset, int E, int N, int K,
                                                         float* __restrict__ y) {
  constexpr int BM = kGroupTileM, BN = kTileN, BK = 16;
  const int tile = blockIdx.x;
  if (tile >= tile_offset[E]) return;
  const int e = group_of_tile(tile_offset, E, tile);
  const int row0 = row_offset[e] + (tile - tile_offset[e]) * BM;
  const int rows = min(BM, row_offset[e + 1] - row0);
  const int n0 = blockIdx.y * BN;
  const float* we = w + size_t(e) * N * K;
  __shared__ float As[BK][BM + 1], Bs[BK][BN + 1];
  __shared__ int src[BM];
  for (int r = threadIdx.x; r < BM; r += blockDim.x) src[r] = r < rows ? (gather ? gather[row0 + r] : row0 + r) : -1;
  __syncthreads();
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;  // outputs rows tr + 16i, cols tc + 16j
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
    for (int v = threadIdx.x; v < BM * BK; v += blockDim.x) {
      const int r = v / BK, c = v % BK;
      As[c][r] = src[r] >= 0 && k0 + c < K ? a[size_t(src[r]) * K + k0 + c] : 0.0f;
      Bs[c][r] = n0 + r < N && k0 + c < K ? we[size_t(n0 + r) * K + k0 + c] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[kk][tr + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tc + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int r = tr + 16 * i, c = n0 + tc + 16 * j;
      if (r < rows && c < N) y[size_t(row0 + r) * N + c] = acc[i][j];
    }
}

// Grouped GEMV for decode-sized work (at most kGemvRows rows in all, 16-bit T, K % 8 == 0):
// one warp per output column n of one row tile; the warp streams w[e][n][:] once with 16-byte
// loads and dots it with each of the tile's rows (fp32 accumulate, warp-shuffle reduction).
constexpr int kGemvRows = 16, kGemvWarps = 8;
template <class T>
__global__ void __launch_bounds__(32 * kGemvWarps) grouped_gemv(const T* __restrict__ a, const int32_t* __restrict__ gather,
                                                               const T* __restrict__ w, const int32_t* __restrict__ row_offset,
                                                               const int32_t* __restrict__ tile_offset, int E, int N, int K,
                                                               T* __restrict__ y) {
  const int tile = blockIdx.x;
  if (tile >= tile_offset[E]) return;
  const int e = group_of_tile(tile_offset, E, tile);
  const int row0 = row_offset[e] + (tile - tile_offset[e]) * kGroupTileM;
  const int rows = min(kGemvRows, row_offset[e + 1] - row0);
  const int n = blockIdx.y * kGemvWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (n >= N) return;
  const T* wn = w + (size_t(e) * N + n) * K;
  int src[kGemvRows];
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) src[r] = r < rows ? (gather ? gather[row0 + r] : row0 + r) : 0;
  float acc[kGemvRows];
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) acc[r] = 0.0f;
  for (int k0 = lane * 8; k0 < K; k0 += 256) {
    const uint4 wv = __ldg(reinterpret_cast<const uint4*>(wn + k0));
    const T* wt = reinterpret_cast<const T*>(&wv);
    float wf[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) wf[i] = to_f32(wt[i]);
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) {
      if (r >= rows) break;
      const uint4 av = *reinterpret_cast<const uint4*>(a + size_t(src[r]) * K + k0);
      const T* at = reinterpret_cast<const T*>(&av);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[r] = fmaf(to_f32(at[i]), wf[i], acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) {
    if (r >= rows) break;
    float v = acc[r];
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) y[size_t(row0 + r) * N + n] = from_f32<T>(v);
  }
}

}  // namespace

template <class T>
void grouped_linear(const DeviceTensor<T>& a, const int32_t* gather, const DeviceTensor<T>& w, const GroupLayout& g,
                    DeviceTensor<T>& y) {
  const int64_t E = w.dim(0), N = w.dim(1), K = w.dim(2);
  if (w.shape.size() != 3 || a.cols() != K || y.cols() != N || E != g.groups)
    fail("cuda grouped_linear: a " + shape_str(a.shape) + ", w " + shape_str(w.shape) + ", y " + shape_str(y.shape) +
         " do not match");
  if (g.max_rows == 0 || N == 0) return;
  const dim3 grid{unsigned(max_row_tiles(g)), unsigned((N + kTileN - 1) / kTileN)};
  if constexpr (std::is_same_v<T, float>) {
    grouped_gemm_simt<<<grid, 256, 0, gpu().stream>>>(a.data(), gather, w.data(), g.row_offset.data(),
                                                      g.tile_offset.data(), int(E), int(N), int(K), y.data());
  } else if (g.max_rows <= kGemvRows && K % 8 == 0) {  // decode: stream the weights once
    const dim3 gv{unsigned(max_row_tiles(g)), unsigned((N + kGemvWarps - 1) / kGemvWarps)};
    grouped_gemv<T><<<gv, 32 * kGemvWarps, 0, gpu().stream>>>(a.data(), gather, w.data(), g.row_offset.data(),
                                                              g.tile_offset.data(), int(E), int(N), int(K), y.data());
  } else {
    grouped_gemm_tc<T><<<grid, 128, 0, gpu().stream>>>(a.data(), gather, w.data(), g.row_offset.data(),
                                                       g.tile_offset.data(), int(E), int(N), int(K), y.data());
  }
  check_launch("grouped_linear");
}

template void linear<float, float>(const DeviceTensor<float>&, const DeviceTensor<float>&, DeviceTensor<float>&);
template void linear<bf16, bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, DeviceTensor<bf16>&);
template void linear<fp16, fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, DeviceTensor<fp16>&);
template void linear<bf16, float>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, DeviceTensor<float>&);
template void linear<fp16, float>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, DeviceTensor<float>&);
template void grouped_linear<float>(const DeviceTensor<float>&, const int32_t*, const DeviceTensor<float>&,
                                    const GroupLayout&, DeviceTensor<float>&);
template void grouped_linear<bf16>(const DeviceTensor<bf16>&, const int32_t*, const DeviceTensor<bf16>&,
                                   const GroupLayout&, DeviceTensor<bf16>&);
template void grouped_linear<fp16>(const DeviceTensor<fp16>&, const int32_t*, const DeviceTensor<fp16>&,
                                   const GroupLayout&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
