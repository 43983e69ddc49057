// matmul.h: the linear layer y = x · Wᵀ (W stored [out, in]) and its grouped form for the
// routed experts (MODEL_SPEC.md §4.5, §4.7).
//
// linear: x [M, K] (Ti), w [N, K] (Ti) -> y [M, N] (To) through cuBLAS, fp32 accumulation:
//   16-bit Ti: CUBLAS_COMPUTE_32F (tensor cores, fp32 accumulate, one rounding to To);
//   fp32:      CUBLAS_COMPUTE_32F_PEDANTIC (plain fp32 FMA, never TF32).
//   16-bit Ti with at most 8 rows (decode): gemv.h's kernel instead (fp32 accumulation in a fixed
//   order, one rounding to To), which streams the weights at memory speed.
//
// grouped_linear: the rows of a token-sorted activation matrix are cut into groups, one per
// expert; group e occupies rows [row_offset[e], row_offset[e+1]) and is multiplied by w[e]:
//   y[r, :] = a[src(r), :] · w[e(r)]ᵀ       src(r) = gather ? gather[r] : r
// a [*, K], w [E, N, K], y [rows, N]; fp32 accumulation; the group layout (counts, offsets,
// tile offsets) lives on the device, so no host synchronisation is needed (graph-capturable).
// Own kernels: WMMA tensor cores for bf16/fp16 (a warp-per-column GEMV when there are at most
// 16 rows in all, i.e. decode), SIMT FMA for fp32.
#pragma once
#include "device.h"

namespace hyoracle::cuda {

template <class Ti, class To>
void linear(const DeviceTensor<Ti>& x, const DeviceTensor<Ti>& w, DeviceTensor<To>& y);

// The device-side layout of token-sorted groups, built by moe.cu's sort_by_expert.
struct GroupLayout {
  int64_t groups = 0;                   // E
  int64_t max_rows = 0;                 // upper bound on the total row count (T·k)
  DeviceTensor<int32_t> row_offset;     // [E + 1], exclusive prefix sum of rows per group
  DeviceTensor<int32_t> tile_offset;    // [E + 1], exclusive prefix sum of ceil(rows / kGroupTileM)
};
constexpr int kGroupTileM = 64;  // rows per tile of the grouped kernels
// Upper bound on the number of row tiles, known on the host without reading the layout.
inline int64_t max_row_tiles(const GroupLayout& g) {
  return g.max_rows / kGroupTileM + (g.max_rows < g.groups ? g.max_rows : g.groups) + 1;
}

template <class T>
void grouped_linear(const DeviceTensor<T>& a, const int32_t* gather, const DeviceTensor<T>& w, const GroupLayout& layout,
                    DeviceTensor<T>& y);

}  // namespace hyoracle::cuda
