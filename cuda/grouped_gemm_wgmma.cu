// grouped_gemm_wgmma.cu: grouped_gemm's bf16/fp16 tile kernel on Hopper tensor cores (wgmma,
// sm_90a). Compiled for sm_90a alone (cuda/CMakeLists.txt); grouped_gemm.cu picks it when the
// device is compute capability 9.0, else its mma.sync kernel.
//
//   acc[r, n] = Σ_k a[src(r), k] · W_g(r)[n, k]   (fp32, k in ascending k16 steps), epilogues as in
//   grouped_gemm.h: store y = T(acc), or swiglu y = T(T(SiLU(T(gate))) · T(up)).
//
// One block: a 128-row tile of one group (the layout's row tiles) × 256 weight rows, K in steps of
// 64 through a 4-stage ring of 128-byte-swizzled tiles (wgmma.cuh's layout). Three warpgroups,
// warp-specialized: warpgroup 0 copies, warpgroups 1 and 2 multiply (64 rows each: one wgmma
// m64n256k16 per k16 step, 128 fp32 accumulators per thread in registers). A's rows come through
// the token gather by 16-byte cp.async (each copying thread's rows, their source rows looked up
// once per tile); B, the weights, by the bulk tensor copy engine (TMA), or by cp.async too
// (kTma = false, a measured variant). Stages are handed over by mbarriers (see the kernel).
// kSwiglu: the 256 weight rows of a block are 128 gate rows (i0 + j) then the 128 matching up rows
// (I + i0 + j), i0 = 128·blockIdx.x, so n8 blocks j and j + 16 of a thread's accumulators hold the
// gate and the up value of the same output element.
// Epilogue (kStaged): each multiplying warpgroup rounds its 64 rows into shared memory (the ring
// is free by then), then writes them out as whole-row 16-byte stores; the direct one stores 4-byte
// pairs from the accumulator layout (8 rows x 16 bytes per warp store). Same values.
// Measured on the way (moe_bench, Hy-MT2 T = 4096, H200; bench/cuda/NOTES.md): two warpgroups
// that both copied and multiplied, in step with block barriers (ncu: ~40 % of cycles stalled at
// them), ran gate_up at 362-365 TF/s and down at 371-377; warp-specialized with cp.async 380 and
// 386; with TMA for the weights 411 and 407.
#include "cuda/grouped_gemm_wgmma.h"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <string>

#include "cuda/grouped_tile.cuh"
#include "cuda/mma.cuh"
#include "cuda/wgmma.cuh"

namespace hyoracle::cuda {

namespace {

using grouped::group_weight;
using grouped::silu_rounded;
using grouped::tile_rows;
using grouped::TileRows;

constexpr int kBM = kGroupTileM, kBN = 256, kBK = 64, kStages = 4;
constexpr int kAElems = kBM * kBK, kBElems = kBN * kBK, kStageElems = kAElems + kBElems;
constexpr size_t kSmem = size_t(kStages) * kStageElems * 2 + 1024;  // + room to align the ring to 1024 bytes
static_assert(kBM == 128, "two multiplying warpgroups of 64 rows");

// Byte offset of 16-byte chunk c of row r in a [rows][64] 16-bit tile, 128-byte swizzle.
__device__ inline uint32_t sw128(int r, int c) { return uint32_t(r * 128 + ((c ^ (r & 7)) << 4)); }

// The tile's epilogue, run by the two multiplying warpgroups (mwg = 0, 1: rows 64·mwg ..; mt =
// 0..255 their thread index): acc[4j + 2h + q] is row 64·mwg + 16·(warp % 4) + lane/4 + 8h, tile
// column 8j + 2·(lane % 4) + q. `stage`: the free ring (1024-aligned); the staged form first waits
// at named barrier 1 for the 256 threads (every wgmma has read its last stage before the ring is
// overwritten).
template <class T, bool kSwiglu, bool kStaged>
__device__ inline void store_tile(const float (&acc)[128], const TileRows& tr, int n0, int N, T* __restrict__ y, T* stage,
                                  int mwg, int mt, bool active) {
  const int lane = mt % 32, wq = (mt % 128) / 32;
  const int out_cols = kSwiglu ? N / 2 : N;               // columns of y
  constexpr int kTileCols = kSwiglu ? kBN / 2 : kBN;     // this block's columns of y
  // Value of output (h, j, q) of this thread, rounded to T as the reference does.
  auto value = [&](int h, int j, int q) {
    if constexpr (kSwiglu) {
      const float g = round_as<T>(acc[4 * j + 2 * h + q]), v = round_as<T>(acc[4 * (j + 16) + 2 * h + q]);
      return from_f32<T>(silu_rounded<T>(g) * v);
    } else {
      return from_f32<T>(acc[4 * j + 2 * h + q]);
    }
  };
  const bool whole = n0 + kTileCols <= out_cols && out_cols % 8 == 0 && aligned16(y);
  if (kStaged && whole) {
    // Rows of kTileCols + 8 values: the pair stores below hit 32 distinct banks per warp store.
    constexpr int kStride = kTileCols + 8;
    static_assert(kStages * kStageElems >= 2 * 64 * kStride, "the staged tile fits in the ring");
    wgmma::named_barrier(1, 256);
    T* st = stage + mwg * 64 * kStride;
    if (active) {
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < kTileCols / 8; ++j) {
          __align__(4) T pair[2] = {value(h, j, 0), value(h, j, 1)};
          *reinterpret_cast<unsigned*>(st + (wq * 16 + lane / 4 + 8 * h) * kStride + j * 8 + 2 * (lane % 4)) =
              *reinterpret_cast<const unsigned*>(pair);
        }
    }
    __syncwarp();
    // Warp wq of the warpgroup writes back its own 16 rows (the rows it staged): 16-byte chunks.
    constexpr int kChunksPerRow = kTileCols / 8;
#pragma unroll 4
    for (int c = lane; c < 16 * kChunksPerRow; c += 32) {
      const int rr = wq * 16 + c / kChunksPerRow, col = (c % kChunksPerRow) * 8, r = mwg * 64 + rr;
      if (r < tr.rows)
        *reinterpret_cast<uint4*>(y + int64_t(tr.row0 + r) * out_cols + n0 + col) =
            *reinterpret_cast<const uint4*>(st + rr * kStride + col);
    }
    return;
  }
  if (!active) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = mwg * 64 + wq * 16 + lane / 4 + 8 * h;
    if (r >= tr.rows) continue;
    T* yr = y + int64_t(tr.row0 + r) * out_cols;
#pragma unroll
    for (int j = 0; j < kTileCols / 8; ++j) {
      const int col = n0 + j * 8 + 2 * (lane % 4);
      if (col + 1 < out_cols && out_cols % 2 == 0) {
        __align__(4) T pair[2] = {value(h, j, 0), value(h, j, 1)};
        *reinterpret_cast<unsigned*>(yr + col) = *reinterpret_cast<const unsigned*>(pair);
      } else {
        if (col < out_cols) yr[col] = value(h, j, 0);
        if (col + 1 < out_cols) yr[col + 1] = value(h, j, 1);
      }
    }
  }
}

// The kernel. Warpgroup 0 copies (its registers lowered to 88 by setmaxnreg: fewer spilled its
// addresses), warpgroups 1 and 2 multiply (raised to 208; they need about 185). The stages are
// handed over by mbarriers, no barrier of the whole block in the k loop:
//   full[s]:  128 arrivals, one per copying thread once its cp.async copies of the stage landed
//             (cp.async.mbarrier.arrive.noinc), + 1 with TMA (arrive.expect_tx of the 32 KB of B);
//   empty[s]: 2 arrivals, one per multiplying warpgroup once its wgmma have read the stage.
// The copier runs up to 3 stages ahead of the multiplication.
constexpr int kWsThreads = 384, kCopyRegs = 88, kMathRegs = 208;
static_assert(128 * kCopyRegs + 256 * kMathRegs <= 65536, "the register file holds both roles");

// kTma (the default): the weight tile comes by the bulk tensor copy engine, two 128-row boxes a
// stage issued by one thread (maps over [count·N, K] and the extra [N, K], 128-byte swizzle: the
// same layout as sw128), so the copying threads issue only A's gathered rows; full[s] then also
// waits for the boxes' 32 KB. Without it, B goes by cp.async like A.
template <class T, bool kSwiglu, bool kStaged, bool kTma>
__global__ void __launch_bounds__(kWsThreads, 1)
    grouped_gemm_wgmma_ws_kernel(const T* __restrict__ a, const int32_t* __restrict__ gather, const T* __restrict__ w,
                                 int count, const T* __restrict__ extra, const int32_t* __restrict__ row_offset,
                                 const int32_t* __restrict__ tile_offset, const int32_t* __restrict__ tile_group, int N,
                                 int K, T* __restrict__ y, const __grid_constant__ CUtensorMap map_w,
                                 const __grid_constant__ CUtensorMap map_x) {
  const TileRows tr = tile_rows(row_offset, tile_offset, tile_group, blockIdx.y);
  if (tr.group < 0) return;  // the whole block, before any barrier
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t full[kStages], empty[kStages];
  __shared__ int a_row[kBM];  // source row of A for each tile row, −1 past the tile's rows
  const uint32_t raw = mma::smem_addr(smem_raw), ring = (raw + 1023u) & ~1023u;
  const int tid = threadIdx.x, wg = tid / 128;
  const int n0 = blockIdx.x * (kSwiglu ? kBN / 2 : kBN);
  const int KT = (K + kBK - 1) / kBK;
  if (tid < kBM) a_row[tid] = tid < tr.rows ? (gather ? gather[tr.row0 + tid] : tr.row0 + tid) : -1;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) wgmma::mbar_init(&full[s], kTma ? 129 : 128), wgmma::mbar_init(&empty[s], 2);
    wgmma::mbar_init_fence();
  }
  __syncthreads();

  if (wg == 0) {  // ---- the copier: 16-byte chunk (t % 8) of tile rows t / 8 + 16 i ----
    wgmma::setmaxnreg_dec<kCopyRegs>();
    const int t = tid, chunk = t % 8, r0 = t / 8, I = N / 2;
    const T* wgt = group_weight(w, count, extra, tr.group, int64_t(N) * K);
    for (int kt = 0; kt < KT; ++kt) {
      const int s = kt % kStages;
      wgmma::mbar_wait(&empty[s], ((kt / kStages) & 1) ^ 1);  // both warpgroups are done with its last use
      const uint32_t as = ring + uint32_t(s * kStageElems * 2), bs = as + kAElems * 2;
      const int k = kt * kBK + chunk * 8;  // K % 8 == 0: a chunk is wholly inside or wholly past K
#pragma unroll
      for (int i = 0; i < kBM / 16; ++i) {
        const int r = r0 + 16 * i, src = a_row[r];
        const bool ok = src >= 0 && k < K;
        mma::cp_async16(as + sw128(r, chunk), a + (ok ? int64_t(src) * K + k : 0), ok ? 16 : 0);
      }
      if constexpr (kTma) {
        if (t == 0) {
          const bool ex = tr.group >= count;
          const void* map = ex ? &map_x : &map_w;
          const int base = ex ? 0 : tr.group * N;  // rows of the 2D view [count·N, K]
          wgmma::mbar_arrive_expect_tx(&full[s], kBElems * 2);
          wgmma::tma_load_2d(bs, map, kt * kBK, base + n0, &full[s]);
          wgmma::tma_load_2d(bs + 128 * 128, map, kt * kBK, base + (kSwiglu ? I + n0 : n0 + 128), &full[s]);
        }
      }
#pragma unroll
      for (int i = 0; i < (kTma ? 0 : kBN / 16); ++i) {
        const int r = r0 + 16 * i;
        int n;
        bool ok;
        if constexpr (kSwiglu) {
          const int col = n0 + r % 128;
          ok = col < I;
          n = r < 128 ? col : I + col;
        } else {
          n = n0 + r;
          ok = n < N;
        }
        ok = ok && k < K;
        mma::cp_async16(bs + sw128(r, chunk), wgt + (ok ? int64_t(n) * K + k : 0), ok ? 16 : 0);
      }
      wgmma::cp_async_arrive(&full[s]);
    }
    mma::cp_async_wait<0>();  // no commit groups here (the mbarriers track the copies): a no-op, kept as measured
    return;
  }

  // ---- the multipliers: warpgroup mwg = wg − 1 owns tile rows 64·mwg .. +63 ----
  wgmma::setmaxnreg_inc<kMathRegs>();
  const int mwg = wg - 1, mt = tid - 128;
  const bool active = mwg * 64 < tr.rows;  // warpgroup-uniform
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
  wgmma::fence_operand(acc);
  for (int kt = 0; kt < KT; ++kt) {
    const int s = kt % kStages;
    wgmma::mbar_wait(&full[s], (kt / kStages) & 1);
    __syncwarp();
    if (!active) {  // no rows here: hand the stage straight back
      if (mt % 128 == 0) wgmma::mbar_arrive(&empty[s]);
      continue;
    }
    wgmma::fence_proxy_async();
    const uint32_t as = ring + uint32_t(s * kStageElems * 2) + uint32_t(mwg * 64 * 128);
    const uint32_t bs = ring + uint32_t(s * kStageElems * 2) + kAElems * 2;
    wgmma::fence();
#pragma unroll
    for (int q = 0; q < kBK / 16; ++q)
      wgmma::wgmma_m64n256k16<T>(acc, wgmma::desc_sw128(as + 32 * q), wgmma::desc_sw128(bs + 32 * q));
    wgmma::commit_group();
    wgmma::wait_group<1>();  // the wgmma of kt − 1 are done: its stage goes back to the copier
    if (kt > 0 && mt % 128 == 0) wgmma::mbar_arrive(&empty[(kt - 1) % kStages]);
  }
  if (active) {
    wgmma::wait_group<0>();
    wgmma::fence_operand(acc);
  }
  store_tile<T, kSwiglu, kStaged>(acc, tr, n0, N, y, reinterpret_cast<T*>(smem_raw + (ring - raw)), mwg, mt, active);
}

// A 2D tensor map over `rows` x K 16-bit values (row stride K), boxes of 128 rows x 64, 128-byte
// swizzle, zeros out of range. The driver's encoder is reached through the runtime (no libcuda
// link).
template <class T>
CUtensorMap weight_map(const T* base, int64_t rows, int64_t K) {
  static const auto encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    check(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q),
          "grouped_gemm (wgmma): cuTensorMapEncodeTiled entry point");
    if (!fn || q != cudaDriverEntryPointSuccess) fail("grouped_gemm (wgmma): the driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  CUtensorMap map{};
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)}, strides[1] = {cuuint64_t(K) * sizeof(T)};
  const cuuint32_t box[2] = {kBK, 128}, elem[2] = {1, 1};
  const CUresult r = encode(&map, std::is_same_v<T, bf16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                            2, const_cast<T*>(base), dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    fail("grouped_gemm (wgmma): cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ") for " + std::to_string(rows) +
         " x " + std::to_string(K));
  return map;
}

template <class T, bool kSwiglu, bool kStaged, bool kTma>
void launch(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& g, T* y) {
  const int64_t cols = kSwiglu ? w.N / 2 : w.N, per_block = kSwiglu ? kBN / 2 : kBN;
  const dim3 grid{unsigned((cols + per_block - 1) / per_block), unsigned(max_row_tiles(g))};
  static const bool configured = [] {
    check(cudaFuncSetAttribute(grouped_gemm_wgmma_ws_kernel<T, kSwiglu, kStaged, kTma>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem)),
          "grouped_gemm (wgmma): shared memory attribute");
    return true;
  }();
  (void)configured;
  CUtensorMap map_w{}, map_x{};
  if (kTma) {
    map_w = weight_map(w.w, std::max<int64_t>(w.count, 1) * w.N, w.K);
    map_x = w.extra ? weight_map(w.extra, w.N, w.K) : map_w;
  }
  grouped_gemm_wgmma_ws_kernel<T, kSwiglu, kStaged, kTma><<<grid, kWsThreads, kSmem, gpu().stream>>>(
      a, gather, w.w, int(w.count), w.extra, g.row_offset.data(), g.tile_offset.data(), g.tile_group.data(), int(w.N),
      int(w.K), y, map_w, map_x);
  check_launch("grouped_gemm (wgmma)");
}

}  // namespace

template <class T>
void grouped_gemm_wgmma(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& g,
                        GroupEpilogue epilogue, WgmmaStore store, WgmmaForm form, T* y) {
  if (w.K % 8 || !aligned16(a) || !aligned16(w.w) || (w.extra && !aligned16(w.extra)))
    fail("cuda grouped_gemm (wgmma): needs K % 8 == 0 and 16-byte aligned operands, got K = " + std::to_string(w.K));
  const bool swiglu = epilogue == GroupEpilogue::swiglu, staged = store == WgmmaStore::staged;
  const bool tma = form == WgmmaForm::tma;
  if (swiglu) {
    if (staged) tma ? launch<T, true, true, true>(a, gather, w, g, y) : launch<T, true, true, false>(a, gather, w, g, y);
    else tma ? launch<T, true, false, true>(a, gather, w, g, y) : launch<T, true, false, false>(a, gather, w, g, y);
  } else {
    if (staged) tma ? launch<T, false, true, true>(a, gather, w, g, y) : launch<T, false, true, false>(a, gather, w, g, y);
    else tma ? launch<T, false, false, true>(a, gather, w, g, y) : launch<T, false, false, false>(a, gather, w, g, y);
  }
}

template void grouped_gemm_wgmma<bf16>(const bf16*, const int32_t*, const GroupWeights<bf16>&, const GroupLayout&,
                                       GroupEpilogue, WgmmaStore, WgmmaForm, bf16*);
template void grouped_gemm_wgmma<fp16>(const fp16*, const int32_t*, const GroupWeights<fp16>&, const GroupLayout&,
                                       GroupEpilogue, WgmmaStore, WgmmaForm, fp16*);

}  // namespace hyoracle::cuda
