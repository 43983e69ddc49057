// matmul.h: the linear layer y = x · Wᵀ (W stored [out, in]) and its grouped form for the
// routed experts (docs/model.md §4.5, §4.7).
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
// It is grouped_gemm's store epilogue (grouped_gemm.h: the kernels and their numerics).
#pragma once
#include "cuda/device.h"
#include "cuda/grouped_gemm.h"

namespace hyoracle::cuda {

template <class Ti, class To>
void linear(const DeviceTensor<Ti>& x, const DeviceTensor<Ti>& w, DeviceTensor<To>& y);

template <class T>
void grouped_linear(const DeviceTensor<T>& a, const int32_t* gather, const DeviceTensor<T>& w, const GroupLayout& layout,
                    DeviceTensor<T>& y);

}  // namespace hyoracle::cuda
