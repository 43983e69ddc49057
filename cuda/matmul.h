// matmul.h: the linear layer y = x · Wᵀ (W stored [out, in]) and its grouped form for the
// routed experts (docs/model.md §4.5, §4.7).
//
// linear: x [M, K] (Ti), w [N, K] (Ti) -> y [M, N] (To) through cuBLAS, fp32 accumulation:
//   16-bit Ti: CUBLAS_COMPUTE_32F (tensor cores, fp32 accumulate, one rounding to To);
//   fp32:      CUBLAS_COMPUTE_32F_PEDANTIC (plain fp32 FMA, never TF32).
//   16-bit Ti with at most 8 rows (decode): gemv.h's kernel instead (fp32 accumulation in a fixed
//   order, one rounding to To), which streams the weights at memory speed.
//
// The fp64 path (T = double, the reference's exact mode): linear(x double, w bf16 / fp32, y double):
//   y = x · double(w)ᵀ, the weight held in its stored dtype and expanded exactly to double into a
//   scratch buffer per call, then cublasDgemm: IEEE double arithmetic (the FP64 tensor cores are
//   IEEE FMAs), cuBLAS's summation order over k (not OpenBLAS's: results agree with the reference
//   to a few ulp of the sums, not bit for bit).
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

// The fp64 product (see above); Tw = bf16 (weight_t<double>) or float (the router).
template <class Tw>
void linear(const DeviceTensor<double>& x, const DeviceTensor<Tw>& w, DeviceTensor<double>& y);

// Row-major y[M, N] (row stride ldy) = x[M, K] (ldx) · w[N, K] (ldw)ᵀ, all double, by cublasDgemm.
void dgemm_nt(const double* x, int64_t ldx, const double* w, int64_t ldw, double* y, int64_t ldy, int64_t M, int64_t N,
              int64_t K);

template <class T>
void grouped_linear(const DeviceTensor<T>& a, const int32_t* gather, const DeviceTensor<T>& w, const GroupLayout& layout,
                    DeviceTensor<T>& y);

}  // namespace hyoracle::cuda
