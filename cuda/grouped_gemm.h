// grouped_gemm.h: the grouped products of the routed experts (docs/model.md §4.7) over
// token-sorted rows, with the group layout on the device (no host synchronisation, so the MoE
// block can be captured in a CUDA graph).
//
// Rows of the output are cut into groups; group g owns rows [row_offset[g], row_offset[g+1]) and
// multiplies by its own weight W_g [N, K] (W stored [out, in], as every linear here):
//   acc[r, n] = Σ_k a[src(r), k] · W_g(r)[n, k]        src(r) = gather ? gather[r] : r   (fp32)
// W_g = w + g·N·K for g < count; g == count is the optional `extra` weight (the shared expert run
// as one more group, over all tokens).
// Epilogues (the rounding points are those of the reference / HF, R10; none moved):
//   store:  y[r, n] = T(acc[r, n])                                         y [rows, N]
//   swiglu: with I = N/2, g = T(acc[r, i]), v = T(acc[r, I + i]):
//           y[r, i] = T( T(SiLU(g)) · v ),  SiLU(z) = z / (1 + e^(−z)) in fp32   y [rows, I]
//           (the gate_up product and SwiGLU in one kernel: the [rows, 2I] tensor never exists)
// Kernels (accumulation always fp32; each output element's sum runs over k in a fixed order that
// does not depend on its row's position, so results do not depend on the order of rows within a
// group):
//   bf16/fp16, few rows per group (max_group_rows <= 16, K a multiple of 8): a grouped GEMV: each
//     warp streams whole weight rows with 16-byte loads (several in flight) and dots them with the
//     group's rows; lane partial sums are reduced by warp shuffles.
//   bf16/fp16 otherwise, compute capability 9.0 (K % 8 == 0, aligned operands): the sm_90a
//     wgmma kernel (grouped_gemm_wgmma.cu): 128x256 tiles, a copying warpgroup (A through the
//     token gather by cp.async, the weights by the tensor copy engine) and two multiplying ones
//     (wgmma m64n256k16, fp32 accumulate), 4 stages handed over by mbarriers.
//   bf16/fp16 elsewhere: tensor cores, mma.sync m16n8k16 (fp32 accumulate), 128x256 tiles of 8
//     warps (64x64 each), K in steps of 64 through a 3-stage cp.async pipeline (the token gather
//     is the per-row source address of the copies), XOR-swizzled shared memory read by ldmatrix.
//     HYORACLE_GROUPED_TILE=128x128x32 | 128x256x32 | 128x256x64 | wgmma-cpasync | wgmma-direct |
//     wgmma-staged selects the other measured kernels (benchmarks, tests); every variant sums each
//     element over k in the same k16 order.
//   fp32: the same GEMV for few rows, else a SIMT FMA tile kernel (plain fp32 FMA, never TF32);
//     its swiglu epilogue is the store epilogue followed by mlp.h's swiglu kernel.
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {

// The device-side layout of token-sorted groups, built by moe.cu's sort_by_expert.
struct GroupLayout {
  int64_t groups = 0;                   // G
  int64_t max_rows = 0;                 // upper bound on the total row count
  DeviceTensor<int32_t> row_offset;     // [G + 1], exclusive prefix sum of rows per group
  DeviceTensor<int32_t> tile_offset;    // [G + 1], exclusive prefix sum of ceil(rows / kGroupTileM)
  DeviceTensor<int32_t> tile_group;     // [max_row_tiles]: the group of each row tile, −1 past the last
};
constexpr int kGroupTileM = 128;  // rows per tile of the grouped kernels
// Upper bound on the number of row tiles, known on the host without reading the layout.
inline int64_t max_row_tiles(const GroupLayout& g) {
  return g.max_rows / kGroupTileM + (g.max_rows < g.groups ? g.max_rows : g.groups) + 1;
}

template <class T>
struct GroupWeights {
  const T* w = nullptr;      // [count, N, K]
  int64_t count = 0;
  const T* extra = nullptr;  // [N, K]: the weight of group `count`; nullptr when there is none
  int64_t N = 0, K = 0;
  int64_t groups() const { return count + (extra ? 1 : 0); }
};

enum class GroupEpilogue { store, swiglu };

// a [*, K] (gathered through `gather`, or rows in layout order when gather is null), y as above.
// max_group_rows: a host-side hint, the most rows any one group can hold (picks the GEMV path when
// <= 16; any value gives correct results).
template <class T>
void grouped_gemm(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& layout,
                  int64_t max_group_rows, GroupEpilogue epilogue, T* y);

// The fp64 path (double activations, weights held as bf16: weight_t<double>): the same contract in
// double, with no rounding anywhere (the reference's exact mode: swiglu's y = SiLU(g) · v in double).
// It reads the layout back to the host (one synchronisation, so it cannot be captured in a graph),
// gathers the rows once, then per group with rows: the group's weight expanded exactly to double
// into a scratch buffer and one cublasDgemm over the group's rows (cuBLAS's order of k).
void grouped_gemm(const double* a, const int32_t* gather, const GroupWeights<bf16>& w, const GroupLayout& layout,
                  int64_t max_group_rows, GroupEpilogue epilogue, double* y);

}  // namespace hyoracle::cuda
