// gemv.h: the linear layer for a few rows (decode steps), as a matrix-vector kernel that streams
// the weights at memory speed (docs/model.md §4.5; the same y = x · Wᵀ as matmul.h's linear):
//
//   y_s[m, n] = To( Σ_k x[m, k] · w_s[n, k] )     x [M, K] (Ti), w_s [N_s, K] (Ti), y_s [M, N_s] (To)
//
// for M <= kGemvMaxRows and one or more weights w_s sharing the input x (q, k and v of a layer in
// one launch). Accumulation fp32: one warp per output column n; lane l sums k in 8-element
// slices l·8 + 256·j, ascending j, with fmaf in ascending k inside a slice; the 32 lane sums are
// added by a fixed butterfly; one rounding to To. The order is fixed, so the same inputs give the
// same bits, in a graph or not. Ti is bf16 or fp16; needs K % 8 == 0 and 16-byte aligned x and
// w_s (gemv_applies() says whether a call qualifies; linear() uses it for small M and falls back
// to cuBLAS otherwise).
#pragma once
#include <vector>

#include "cuda/device.h"

namespace hyoracle::cuda {

constexpr int64_t kGemvMaxRows = 8;

template <class Ti>
bool gemv_applies(const DeviceTensor<Ti>& x, const DeviceTensor<Ti>& w);

// One launch for every (w_s, y_s) pair; at most 4 pairs. Shapes are checked (one-line Error).
template <class Ti, class To>
void gemv(const DeviceTensor<Ti>& x, const std::vector<const DeviceTensor<Ti>*>& w, const std::vector<DeviceTensor<To>*>& y);

}  // namespace hyoracle::cuda
