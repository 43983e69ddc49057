// grouped_tile.cuh: device pieces shared by the grouped GEMM kernels (grouped_gemm.cu, and the
// sm_90a wgmma kernel in grouped_gemm_wgmma.cu): where a row tile's rows are, which weight a group
// multiplies by, and the SwiGLU epilogue's activation with its rounding point.
#pragma once
#include "cuda/grouped_gemm.h"

namespace hyoracle::cuda::grouped {

// The row range of row tile `tile`: its group (from the layout's tile -> group table), first row,
// row count; group = -1 when the tile is past the last real one (grids are sized by max_row_tiles).
struct TileRows {
  int group, row0, rows;
};
__device__ inline TileRows tile_rows(const int32_t* __restrict__ row_offset, const int32_t* __restrict__ tile_offset,
                                     const int32_t* __restrict__ tile_group, int tile) {
  const int g = tile_group[tile];
  if (g < 0) return {-1, 0, 0};
  const int row0 = row_offset[g] + (tile - tile_offset[g]) * kGroupTileM;
  return {g, row0, min(kGroupTileM, row_offset[g + 1] - row0)};
}

// W_g: expert g's [N, K] weight for g < count, the extra (shared-expert) weight for g == count.
template <class T>
__device__ inline const T* group_weight(const T* w, int count, const T* extra, int g, int64_t NK) {
  return g < count ? w + int64_t(g) * NK : extra;
}

// T(SiLU(g)) = T(g / (1 + e^(−g))) in fp32, g already a T value (the reference's rounding point).
template <class T>
__device__ inline float silu_rounded(float g) {
  return round_as<T>(g / (1.0f + expf(-g)));
}

}  // namespace hyoracle::cuda::grouped
