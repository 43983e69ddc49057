#include "cuda/grouped_gemm.h"

#include <cstdlib>
#include <string>

#include "cuda/grouped_gemm_wgmma.h"
#include "cuda/grouped_tile.cuh"
#include "cuda/matmul.h"
#include "cuda/mlp.h"

namespace hyoracle::cuda {

namespace {

using grouped::group_weight;
using grouped::silu_rounded;
using grouped::tile_rows;
using grouped::TileRows;

// ---- tensor-core GEMM (bf16 / fp16) -----------------------------------------------------------

// Block tile kGroupTileM x (64·kWarpsN) x kBK: warps 2 (M) x kWarpsN (N) of 64x64 each; kBK = 32
// with 4 stages or 64 with 3. Variants (HYORACLE_GROUPED_TILE for benchmarks): 128x256x64 (the
// default: one block per SM, 144 KB), 128x256x32 (96 KB), 128x128x32 (two blocks per SM, 64 KB).
constexpr int kWarpsM = 2;
static_assert(kGroupTileM == 64 * kWarpsM, "the row tile is the warps' rows");
template <int kWarpsN, int kBK_>
struct MmaTile {
  static constexpr int kBK = kBK_, kChunks = kBK / 8, kStages = kBK == 64 ? 3 : 4;
  static constexpr int kBN = 64 * kWarpsN, kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kRowStep = kThreads / kChunks;  // tile rows covered by one pass of chunk copies
  static constexpr int kArows = kGroupTileM / kRowStep, kBrows = kBN / kRowStep;  // copies per thread, stage
  static constexpr int kStageElems = (kGroupTileM + kBN) * kBK;
  static constexpr size_t kSmem = size_t(kStages) * kStageElems * 2;
};

// Element offset of 16-byte chunk `c` of row `r` in a [rows][kBK] tile, XOR-swizzled so that the 8
// row addresses of one ldmatrix phase (8 consecutive rows, one logical chunk) hit 8 distinct
// 16-byte bank groups: 64-byte rows (kBK 32) XOR the chunk with (r / 2) % 4, 128-byte rows
// (kBK 64) with r % 8.
template <int kBK>
__device__ inline int swz(int r, int c) {
  if constexpr (kBK == 32) return r * kBK + ((c ^ ((r >> 1) & 3)) << 3);
  else return r * kBK + ((c ^ (r & 7)) << 3);
}

__device__ inline void cp_async16(void* smem, const void* gmem, bool full) {
  const unsigned s = unsigned(__cvta_generic_to_shared(smem));
  const int n = full ? 16 : 0;  // 0: fill the 16 bytes with zeros
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ inline void ldmatrix_x4(unsigned (&r)[4], const void* smem) {
  const unsigned s = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

template <class T>
__device__ inline void mma16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  if constexpr (std::is_same_v<T, bf16>)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One block: a 128-row tile of one group x 256 weight rows. Warps 2 (M) x 4 (N), 64x64 each:
// 4 m16 x 8 n8 accumulator fragments (128 fp32 per thread). One block per SM (registers); the
// 128x256 tile reads 85 FLOP per byte of L2 traffic (128x128 was 64, and ran at ~250 TF/s).
// kSwiglu: the 256 weight rows are, per warp column wn, 32 gate rows (i0 + 32·wn + j) followed by
// the 32 matching up rows (I + i0 + 32·wn + j), i0 = 128·blockIdx.x, so each thread holds the gate
// and the up value of the same output element in n8 fragments j and j + 4.
// kVec: K % 8 == 0 and 16-byte aligned operands: cp.async; otherwise plain loads (same pipeline).
template <class T, bool kSwiglu, bool kVec, int kWarpsN, int kBK>
__global__ void __launch_bounds__(MmaTile<kWarpsN, kBK>::kThreads, kWarpsN == 2 ? 2 : 1)
    grouped_gemm_mma(const T* __restrict__ a, const int32_t* __restrict__ gather, const T* __restrict__ w, int count,
                     const T* __restrict__ extra, const int32_t* __restrict__ row_offset,
                     const int32_t* __restrict__ tile_offset, const int32_t* __restrict__ tile_group, int N, int K,
                     T* __restrict__ y) {
  using M = MmaTile<kWarpsN, kBK>;
  constexpr int kBN = M::kBN, kRowStep = M::kRowStep, kArows = M::kArows, kBrows = M::kBrows;
  constexpr int kStageElems = M::kStageElems, kStages = M::kStages, kChunks = M::kChunks;
  const TileRows tr = tile_rows(row_offset, tile_offset, tile_group, blockIdx.y);
  if (tr.group < 0) return;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, wm = warp / kWarpsN, wn = warp % kWarpsN;
  const int I = N / 2;
  const int n0 = blockIdx.x * (kSwiglu ? kBN / 2 : kBN);
  const T* wg = group_weight(w, count, extra, tr.group, int64_t(N) * K);

  // Each thread copies 16-byte chunk (tid % kChunks) of A rows and B rows tid/kChunks + kRowStep·i.
  const int chunk = tid % kChunks;
  const T* a_src[kArows];
  const T* b_src[kBrows];
  bool a_ok[kArows], b_ok[kBrows];
#pragma unroll
  for (int i = 0; i < kArows; ++i) {
    const int r = tid / kChunks + kRowStep * i;
    a_ok[i] = r < tr.rows;
    const int src = a_ok[i] ? (gather ? gather[tr.row0 + r] : tr.row0 + r) : 0;
    a_src[i] = a + int64_t(src) * K;
  }
#pragma unroll
  for (int i = 0; i < kBrows; ++i) {
    const int r = tid / kChunks + kRowStep * i;
    int n;
    if constexpr (kSwiglu) {
      const int half = r / 64, j = r % 64, col = n0 + 32 * half + (j % 32);
      b_ok[i] = col < I;
      n = j < 32 ? col : I + col;
    } else {
      n = n0 + r;
      b_ok[i] = n < N;
    }
    b_src[i] = wg + int64_t(b_ok[i] ? n : 0) * K;
  }
  // One 16-byte chunk of `src` row (or zeros) into the swizzled tile at row r.
  auto copy_chunk = [&](T* tile, int r, const T* src, bool ok, int k) {
    if constexpr (kVec) {
      const bool full = ok && k < K;
      cp_async16(tile + swz<kBK>(r, chunk), src + (full ? k : 0), full);
    } else {
      __align__(16) T v[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = ok && k + e < K ? src[k + e] : from_f32<T>(0.0f);
      *reinterpret_cast<uint4*>(tile + swz<kBK>(r, chunk)) = *reinterpret_cast<const uint4*>(v);
    }
  };
  auto load_stage = [&](int stage, int k0) {
    T* As = smem + stage * kStageElems;
    T* Bs = As + kGroupTileM * kBK;
    const int k = k0 + chunk * 8;
#pragma unroll
    for (int i = 0; i < kArows; ++i) copy_chunk(As, tid / kChunks + kRowStep * i, a_src[i], a_ok[i], k);
#pragma unroll
    for (int i = 0; i < kBrows; ++i) copy_chunk(Bs, tid / kChunks + kRowStep * i, b_src[i], b_ok[i], k);
  };

  float acc[4][8][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;
  const bool active = wm * 64 < tr.rows;  // warp-uniform: this warp's 64 rows hold real rows

  const int KT = (K + kBK - 1) / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < KT) load_stage(s, s * kBK);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int nk = kt + kStages - 1;
    if (nk < KT) load_stage(nk % kStages, nk * kBK);
    cp_async_commit();
    if (!active) continue;
    const T* As = smem + (kt % kStages) * kStageElems;
    const T* Bs = As + kGroupTileM * kBK;
#pragma unroll
    for (int kk = 0; kk < kChunks; kk += 2) {  // k16 steps, in 16-byte chunk units
      unsigned af[4][4], bf[4][4];  // all fragments of the step first (8 ldmatrix in flight), then 32 mma
#pragma unroll
      for (int i = 0; i < 4; ++i) ldmatrix_x4(af[i], As + swz<kBK>(wm * 64 + i * 16 + lane % 16, kk + lane / 16));
#pragma unroll
      for (int p = 0; p < 4; ++p)
        ldmatrix_x4(bf[p], Bs + swz<kBK>(wn * 64 + p * 16 + (lane & 7) + ((lane >> 4) << 3), kk + ((lane >> 3) & 1)));
#pragma unroll
      for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          mma16816<T>(acc[i][2 * p], af[i], bf[p][0], bf[p][1]);
          mma16816<T>(acc[i][2 * p + 1], af[i], bf[p][2], bf[p][3]);
        }
    }
  }
  cp_async_wait<0>();
  if (!active) return;

  // Fragment (i, j, q): row wm·64 + 16i + lane/4 + 8·(q/2), column wn·64 + 8j + 2·(lane%4) + q%2.
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wm * 64 + i * 16 + lane / 4 + 8 * h;
      if (r >= tr.rows) continue;
      T* yr = y + int64_t(tr.row0 + r) * (kSwiglu ? I : N);
      if constexpr (kSwiglu) {
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            const int col = n0 + wn * 32 + j * 8 + 2 * (lane % 4) + q;
            if (col >= I) continue;
            const float g = round_as<T>(acc[i][j][2 * h + q]), v = round_as<T>(acc[i][j + 4][2 * h + q]);
            yr[col] = from_f32<T>(silu_rounded<T>(g) * v);
          }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int col = n0 + wn * 64 + j * 8 + 2 * (lane % 4);
          if (col + 1 < N && N % 2 == 0) {
            __align__(4) T pair[2] = {from_f32<T>(acc[i][j][2 * h]), from_f32<T>(acc[i][j][2 * h + 1])};
            *reinterpret_cast<unsigned*>(yr + col) = *reinterpret_cast<const unsigned*>(pair);
          } else {
            if (col < N) yr[col] = from_f32<T>(acc[i][j][2 * h]);
            if (col + 1 < N) yr[col + 1] = from_f32<T>(acc[i][j][2 * h + 1]);
          }
        }
      }
    }
}

// ---- SIMT GEMM (fp32): 64x64 sub-tiles of the 128-row tile, 256 threads x 4x4, plain FMA -----
constexpr int kSimtBN = 64;
__global__ void __launch_bounds__(256) grouped_gemm_simt(const float* __restrict__ a, const int32_t* __restrict__ gather,
                                                         const float* __restrict__ w, int count,
                                                         const float* __restrict__ extra,
                                                         const int32_t* __restrict__ row_offset,
                                                         const int32_t* __restrict__ tile_offset,
                                                         const int32_t* __restrict__ tile_group, int N, int K,
                                                         float* __restrict__ y) {
  constexpr int BM = 64, BN = kSimtBN, BK = 16;
  const TileRows tr = tile_rows(row_offset, tile_offset, tile_group, blockIdx.y);
  if (tr.group < 0) return;
  const int n0 = blockIdx.x * BN;
  const float* we = group_weight(w, count, extra, tr.group, int64_t(N) * K);
  __shared__ float As[BK][BM + 1], Bs[BK][BN + 1];
  __shared__ int src[BM];
  const int tr_ = threadIdx.x / 16, tc = threadIdx.x % 16;  // outputs rows tr_ + 16i, cols tc + 16j
  for (int sub = 0; sub < tr.rows; sub += BM) {
    const int rows = min(BM, tr.rows - sub), row0 = tr.row0 + sub;
    __syncthreads();
    for (int r = threadIdx.x; r < BM; r += blockDim.x) src[r] = r < rows ? (gather ? gather[row0 + r] : row0 + r) : -1;
    __syncthreads();
    float acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += BK) {
      for (int v = threadIdx.x; v < BM * BK; v += blockDim.x) {
        const int r = v / BK, c = v % BK;
        As[c][r] = src[r] >= 0 && k0 + c < K ? a[int64_t(src[r]) * K + k0 + c] : 0.0f;
        Bs[c][r] = n0 + r < N && k0 + c < K ? we[int64_t(n0 + r) * K + k0 + c] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float av[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) av[i] = As[kk][tr_ + 16 * i];
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
        const int r = tr_ + 16 * i, c = n0 + tc + 16 * j;
        if (r < rows && c < N) y[int64_t(row0 + r) * N + c] = acc[i][j];
      }
  }
}

// ---- grouped GEMV (few rows per group) --------------------------------------------------------
// One warp per kCols output columns of one row tile; the weight rows it needs (kCols, or 2·kCols
// gate + up rows for kSwiglu) are streamed once in 16-byte loads, kUnroll chunks per row in flight,
// and dotted with up to kRows rows at a time (more rows: further passes, served from L2).
constexpr int kGemvWarps = 8, kGemvUnroll = 4;
template <class T, int kRows, int kCols, bool kSwiglu>
__global__ void __launch_bounds__(32 * kGemvWarps)
    grouped_gemv(const T* __restrict__ a, const int32_t* __restrict__ gather, const T* __restrict__ w, int count,
                 const T* __restrict__ extra, const int32_t* __restrict__ row_offset,
                 const int32_t* __restrict__ tile_offset, const int32_t* __restrict__ tile_group, int N, int K,
                     T* __restrict__ y) {
  constexpr int V = 16 / sizeof(T);              // elements per 16-byte load
  constexpr int kW = kSwiglu ? 2 * kCols : kCols;  // weight rows per warp
  const TileRows tr = tile_rows(row_offset, tile_offset, tile_group, blockIdx.y);
  if (tr.group < 0) return;
  const int lane = threadIdx.x % 32;
  const int out_cols = kSwiglu ? N / 2 : N;
  const int c0 = (blockIdx.x * kGemvWarps + threadIdx.x / 32) * kCols;
  if (c0 >= out_cols) return;
  const T* wg = group_weight(w, count, extra, tr.group, int64_t(N) * K);
  const T* wrow[kW];
  bool ok[kW];
#pragma unroll
  for (int q = 0; q < kW; ++q) {
    const int c = c0 + q % kCols;
    ok[q] = c < out_cols;
    const int n = kSwiglu && q >= kCols ? out_cols + c : c;
    wrow[q] = wg + int64_t(ok[q] ? n : 0) * K;
  }
  for (int p0 = 0; p0 < tr.rows; p0 += kRows) {
    const int rows = min(kRows, tr.rows - p0);
    const T* arow[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int rr = tr.row0 + p0 + (r < rows ? r : 0);
      arow[r] = a + int64_t(gather ? gather[rr] : rr) * K;
    }
    float acc[kRows][kW];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int q = 0; q < kW; ++q) acc[r][q] = 0.0f;
    for (int k0 = lane * V; k0 < K; k0 += 32 * V * kGemvUnroll) {
      uint4 wv[kW][kGemvUnroll];
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int k = k0 + u * 32 * V;
#pragma unroll
        for (int q = 0; q < kW; ++q)
          wv[q][u] = ok[q] && k < K ? __ldg(reinterpret_cast<const uint4*>(wrow[q] + k)) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r >= rows) break;
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
          const int k = k0 + u * 32 * V;
          if (k >= K) break;
          const uint4 av = __ldg(reinterpret_cast<const uint4*>(arow[r] + k));
          const T* at = reinterpret_cast<const T*>(&av);
#pragma unroll
          for (int q = 0; q < kW; ++q) {
            const T* wt = reinterpret_cast<const T*>(&wv[q][u]);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[r][q] = fmaf(to_f32(at[e]), to_f32(wt[e]), acc[r][q]);
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= rows) break;
#pragma unroll
      for (int q = 0; q < kW; ++q)
#pragma unroll
        for (int o = 16; o > 0; o /= 2) acc[r][q] += __shfl_xor_sync(0xffffffffu, acc[r][q], o);
      if (lane != 0) continue;
      T* yr = y + int64_t(tr.row0 + p0 + r) * out_cols;
#pragma unroll
      for (int q = 0; q < kCols; ++q) {
        if (!ok[q]) continue;
        if constexpr (kSwiglu) {
          const float g = round_as<T>(acc[r][q]), v = round_as<T>(acc[r][kCols + q]);
          yr[c0 + q] = from_f32<T>(silu_rounded<T>(g) * v);
        } else {
          yr[c0 + q] = from_f32<T>(acc[r][q]);
        }
      }
    }
  }
}

template <class T, int kRows, int kCols, bool kSwiglu>
void launch_gemv(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& g, T* y) {
  const int64_t out_cols = kSwiglu ? w.N / 2 : w.N, per_block = int64_t(kGemvWarps) * kCols;
  const dim3 grid{unsigned((out_cols + per_block - 1) / per_block), unsigned(max_row_tiles(g))};
  grouped_gemv<T, kRows, kCols, kSwiglu><<<grid, 32 * kGemvWarps, 0, gpu().stream>>>(
      a, gather, w.w, int(w.count), w.extra, g.row_offset.data(), g.tile_offset.data(), g.tile_group.data(), int(w.N),
      int(w.K), y);
}

template <class T, bool kSwiglu>
void dispatch_gemv(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& g, int64_t max_rows,
                   T* y) {
  // Swiglu reads 2 weight rows per output column, store 2 columns per warp: 2 rows either way.
  constexpr int kCols = kSwiglu ? 1 : 2;
  if (max_rows <= 1) launch_gemv<T, 1, kCols, kSwiglu>(a, gather, w, g, y);
  else if (max_rows <= 2) launch_gemv<T, 2, kCols, kSwiglu>(a, gather, w, g, y);
  else if (max_rows <= 4) launch_gemv<T, 4, kCols, kSwiglu>(a, gather, w, g, y);
  else if (max_rows <= 8) launch_gemv<T, 8, kCols, kSwiglu>(a, gather, w, g, y);
  else launch_gemv<T, 16, kCols, kSwiglu>(a, gather, w, g, y);
}

template <class T, bool kSwiglu, bool kVec, int kWarpsN, int kBK>
void launch_mma(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& g, T* y) {
  using M = MmaTile<kWarpsN, kBK>;
  static bool configured = false;  // per instantiation: allow the dynamic shared memory
  if (!configured) {
    check(cudaFuncSetAttribute(grouped_gemm_mma<T, kSwiglu, kVec, kWarpsN, kBK>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, int(M::kSmem)),
          "grouped_gemm: shared memory attribute");
    configured = true;
  }
  const int64_t cols = kSwiglu ? w.N / 2 : w.N, per_block = kSwiglu ? M::kBN / 2 : M::kBN;
  const dim3 grid{unsigned((cols + per_block - 1) / per_block), unsigned(max_row_tiles(g))};
  grouped_gemm_mma<T, kSwiglu, kVec, kWarpsN, kBK><<<grid, M::kThreads, M::kSmem, gpu().stream>>>(
      a, gather, w.w, int(w.count), w.extra, g.row_offset.data(), g.tile_offset.data(), g.tile_group.data(), int(w.N),
      int(w.K), y);
}

// The tile kernel: HYORACLE_GROUPED_TILE names one (benchmarks, tests); unset or "wgmma", the
// sm_90a wgmma kernel where it runs (compute capability 9.0, K % 8 == 0, aligned operands), its
// store epilogue staged through shared memory and its SwiGLU one direct (moe_bench, Hy-MT2
// T=4096, H200, at 6c52368: down 284.5 µs staged vs 336.1 direct, gate_up 566.1 staged vs 552.8
// direct); "wgmma-staged" and "wgmma-direct" force one epilogue for both; "wgmma-cpasync" copies
// the weights by cp.async instead of the tensor copy engine. Else the mma.sync 128x256x64 kernel.
template <class T, bool kSwiglu, bool kVec>
void launch_mma(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& g, T* y) {
  const char* env = std::getenv("HYORACLE_GROUPED_TILE");
  const std::string v = env ? env : "";
  if (v == "128x128x32") launch_mma<T, kSwiglu, kVec, 2, 32>(a, gather, w, g, y);
  else if (v == "128x256x32") launch_mma<T, kSwiglu, kVec, 4, 32>(a, gather, w, g, y);
  else if (v == "128x256x64" || !kVec || !grouped_wgmma_available()) launch_mma<T, kSwiglu, kVec, 4, 64>(a, gather, w, g, y);
  else {
#ifdef HYORACLE_HAVE_WGMMA
    grouped_gemm_wgmma(a, gather, w, g, kSwiglu ? GroupEpilogue::swiglu : GroupEpilogue::store,
                       v == "wgmma-direct"   ? WgmmaStore::direct
                       : v == "wgmma-staged" ? WgmmaStore::staged
                       : kSwiglu             ? WgmmaStore::direct
                                             : WgmmaStore::staged,
                       v == "wgmma-cpasync" ? WgmmaForm::cp_async : WgmmaForm::tma, y);
#endif
  }
}

}  // namespace

bool grouped_wgmma_available() {
#ifdef HYORACLE_HAVE_WGMMA
  return gpu().cc_major == 9 && gpu().cc_minor == 0;
#else
  return false;  // this build has no sm_90a code (HYORACLE_CUDA_ARCHITECTURES does not name 90)
#endif
}

template <class T>
void grouped_gemm(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& g,
                  int64_t max_group_rows, GroupEpilogue epilogue, T* y) {
  const bool fused = epilogue == GroupEpilogue::swiglu;
  if (g.groups != w.groups())
    fail("cuda grouped_gemm: layout has " + std::to_string(g.groups) + " groups, weights " + std::to_string(w.groups()));
  if (fused && w.N % 2) fail("cuda grouped_gemm: swiglu needs an even N (gate and up halves), got " + std::to_string(w.N));
  if (g.max_rows == 0 || w.N == 0) return;
  if (int64_t(max_row_tiles(g)) > 65535) fail("cuda grouped_gemm: too many row tiles for one grid");
  constexpr int V = 16 / sizeof(T);
  const bool vec = w.K % V == 0 && aligned16(a) && aligned16(w.w) && (!w.extra || aligned16(w.extra));
  if (max_group_rows <= 16 && vec) {
    if (fused) dispatch_gemv<T, true>(a, gather, w, g, max_group_rows, y);
    else dispatch_gemv<T, false>(a, gather, w, g, max_group_rows, y);
  } else if constexpr (std::is_same_v<T, float>) {
    DeviceTensor<float> full;
    float* out = y;
    if (fused) {
      full = DeviceTensor<float>({g.max_rows, w.N});
      out = full.data();
    }
    const dim3 grid{unsigned((w.N + kSimtBN - 1) / kSimtBN), unsigned(max_row_tiles(g))};
    grouped_gemm_simt<<<grid, 256, 0, gpu().stream>>>(a, gather, w.w, int(w.count), w.extra, g.row_offset.data(),
                                                      g.tile_offset.data(), g.tile_group.data(), int(w.N), int(w.K), out);
    check_launch("grouped_gemm (simt)");
    if (fused) {
      DeviceTensor<float> act = DeviceTensor<float>::view(y, {g.max_rows, w.N / 2});
      swiglu(full, act);
    }
  } else {
    const bool mma_vec = w.K % 8 == 0 && aligned16(a) && aligned16(w.w) && (!w.extra || aligned16(w.extra));
    if (fused) mma_vec ? launch_mma<T, true, true>(a, gather, w, g, y) : launch_mma<T, true, false>(a, gather, w, g, y);
    else mma_vec ? launch_mma<T, false, true>(a, gather, w, g, y) : launch_mma<T, false, false>(a, gather, w, g, y);
  }
  check_launch("grouped_gemm");
}

namespace {
// y[r, :] = a[gather[r], :]: the fp64 path's row gather before its per-group products.
__global__ void gather_rows_fp64(const double* __restrict__ a, const int32_t* __restrict__ gather, int64_t K,
                                 double* __restrict__ y) {
  const int64_t r = blockIdx.x;
  const double* src = a + int64_t(gather[r]) * K;
  for (int64_t c = threadIdx.x; c < K; c += blockDim.x) y[r * K + c] = src[c];
}
}  // namespace

void grouped_gemm(const double* a, const int32_t* gather, const GroupWeights<bf16>& w, const GroupLayout& g,
                  int64_t /*max_group_rows*/, GroupEpilogue epilogue, double* y) {
  const bool fused = epilogue == GroupEpilogue::swiglu;
  if (g.groups != w.groups())
    fail("cuda grouped_gemm (fp64): layout has " + std::to_string(g.groups) + " groups, weights " + std::to_string(w.groups()));
  if (fused && w.N % 2) fail("cuda grouped_gemm (fp64): swiglu needs an even N, got " + std::to_string(w.N));
  if (g.max_rows == 0 || w.N == 0) return;
  std::vector<int32_t> off(size_t(g.groups + 1));
  check(cudaMemcpyAsync(off.data(), g.row_offset.data(), off.size() * 4, cudaMemcpyDeviceToHost, gpu().stream),
        "grouped_gemm (fp64): layout");
  synchronize();
  const int64_t rows = off.back(), N = w.N, K = w.K;
  if (rows == 0) return;
  const double* src = a;
  DeviceTensor<double> gathered;
  if (gather) {
    gathered = DeviceTensor<double>({rows, K});
    gather_rows_fp64<<<unsigned(rows), 256, 0, gpu().stream>>>(a, gather, K, gathered.data());
    check_launch("grouped_gemm (fp64): gather");
    src = gathered.data();
  }
  DeviceTensor<double> full, wd({N, K});
  double* out = y;
  if (fused) {
    full = DeviceTensor<double>({rows, N});
    out = full.data();
  }
  for (int64_t e = 0; e < g.groups; ++e) {
    const int64_t r0 = off[size_t(e)], n = off[size_t(e) + 1] - r0;
    if (n <= 0) continue;
    expand_to_double(e < w.count ? w.w + e * N * K : w.extra, N * K, wd.data());
    dgemm_nt(src + r0 * K, K, wd.data(), K, out + r0 * N, N, n, N, K);
  }
  if (fused) {
    DeviceTensor<double> act = DeviceTensor<double>::view(y, {rows, N / 2});
    swiglu(full, act);
  }
}

template void grouped_gemm<float>(const float*, const int32_t*, const GroupWeights<float>&, const GroupLayout&, int64_t,
                                  GroupEpilogue, float*);
template void grouped_gemm<bf16>(const bf16*, const int32_t*, const GroupWeights<bf16>&, const GroupLayout&, int64_t,
                                 GroupEpilogue, bf16*);
template void grouped_gemm<fp16>(const fp16*, const int32_t*, const GroupWeights<fp16>&, const GroupLayout&, int64_t,
                                 GroupEpilogue, fp16*);

}  // namespace hyoracle::cuda
