// expert_sort.cuh: the token sort of the routed experts as a device function of one block, shared
// by moe.cu's sort kernel and router.cu's fused decode router (route_and_sort), so both build the
// same layout (grouped_gemm.h's GroupLayout) the same way.
//
//   count[g]       = rows routed to group g (group E, when extra > 0: the shared expert, extra rows)
//   row_offset[g]  = Σ_{g' < g} count[g'],  tile_offset[g] = Σ_{g' < g} ceil(count[g'] / kGroupTileM)
//   tile_group[t]  = the group owning row tile t, −1 for t >= tile_offset[G] (t < max_tiles)
//   token[r], row_of[i]: slot i = (t, j) of ids [n = T·k] lands on row r of its group (order
//                  within a group arbitrary: shared-memory atomics); rows n + t are token t (extra)
// In one block (sort_rows_block: decode's fused router, small sorts) or, for large n, in three
// launches over chunks of slots (moe.cu: per-chunk counts, one block's scan, per-chunk scatter).
#pragma once
#include <cstdint>

#include "cuda/grouped_gemm.h"

namespace hyoracle::cuda {

struct SortTargets {
  int32_t* row_offset = nullptr;  // [G + 1]
  int32_t* tile_offset = nullptr; // [G + 1]
  int32_t* tile_group = nullptr;  // [max_tiles]
  int32_t* token = nullptr;       // [n + extra]
  int32_t* row_of = nullptr;      // [n]
  int n = 0;  // routed slots, T·k
  int E = 0, extra = 0, max_tiles = 0;
  __host__ __device__ int groups() const { return E + (extra > 0 ? 1 : 0); }  // G
};

constexpr int kSortMaxGroups = 2047;
struct SortSmem {
  int count[kSortMaxGroups], cursor[kSortMaxGroups], tile[kSortMaxGroups + 1];
};

// From the per-group row counts in shared memory (count[G], the extra group's included): the
// layout (row_offset, tile_offset, tile_group) and each group's first row in cursor[G]. Called by
// every thread of one block; count complete before the call (a __syncthreads after its writes).
__device__ inline void write_layout(SortSmem& sm, int G, const SortTargets& o) {
  const int tid = threadIdx.x;
  if (tid < 32) {  // warp 0: each lane a contiguous run of groups, then a shuffle scan over lanes
    const int per = (G + 31) / 32, lo = min(G, tid * per), hi = min(G, lo + per);
    int rows = 0, tiles = 0;
    for (int g = lo; g < hi; ++g) rows += sm.count[g], tiles += (sm.count[g] + kGroupTileM - 1) / kGroupTileM;
    int rows_in = rows, tiles_in = tiles;  // inclusive scans
    for (int d = 1; d < 32; d *= 2) {
      const int r = __shfl_up_sync(0xffffffffu, rows_in, d), t = __shfl_up_sync(0xffffffffu, tiles_in, d);
      if (tid >= d) rows_in += r, tiles_in += t;
    }
    int r = rows_in - rows, t = tiles_in - tiles;
    for (int g = lo; g < hi; ++g) {
      o.row_offset[g] = r;
      o.tile_offset[g] = t;
      sm.tile[g] = t;
      sm.cursor[g] = r;
      r += sm.count[g];
      t += (sm.count[g] + kGroupTileM - 1) / kGroupTileM;
    }
    if (tid == 31) o.row_offset[G] = rows_in, o.tile_offset[G] = tiles_in, sm.tile[G] = tiles_in;
  }
  __syncthreads();
  for (int g = tid; g < G; g += blockDim.x)
    for (int t = sm.tile[g]; t < sm.tile[g + 1]; ++t) o.tile_group[t] = g;
  for (int t = sm.tile[G] + tid; t < o.max_tiles; t += blockDim.x) o.tile_group[t] = -1;
  for (int t = tid; t < o.extra; t += blockDim.x) o.token[o.n + t] = t;
}

// Slots [lo, hi) of ids onto the rows their cursors point at (cursor[g]: the next free row of
// group g, advanced by shared-memory atomics, so the order within a group is arbitrary).
__device__ inline void scatter_rows(SortSmem& sm, const int32_t* ids, int lo, int hi, int k, const SortTargets& o) {
  for (int i = lo + int(threadIdx.x); i < hi; i += blockDim.x) {
    const int r = atomicAdd(&sm.cursor[ids[i]], 1);
    o.token[r] = i / k;
    o.row_of[i] = r;
  }
}

// The whole sort in one block (any block size that is a multiple of 32); ids may have been written
// by this block before a __syncthreads. n = o.n slots.
__device__ inline void sort_rows_block(SortSmem& sm, const int32_t* ids, int k, const SortTargets& o) {
  const int G = o.groups(), tid = threadIdx.x;
  for (int g = tid; g < G; g += blockDim.x) sm.count[g] = g < o.E ? 0 : o.extra;
  __syncthreads();
  for (int i = tid; i < o.n; i += blockDim.x) atomicAdd(&sm.count[ids[i]], 1);
  __syncthreads();
  write_layout(sm, G, o);
  __syncthreads();
  scatter_rows(sm, ids, 0, o.n, k, o);
}

}  // namespace hyoracle::cuda
