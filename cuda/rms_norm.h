// rms_norm.h: RMSNorm with LlamaRMSNorm / HF semantics on the GPU (docs/model.md §4.2, R2).
//
//   r = mean_i(fp32(u[row, i])²)   (fp32 tree sum)      s = 1 / sqrt(r + eps)   (fp32, IEEE)
//   v = T(fp32(u) · s)             y = T(fp32(w) · fp32(v))   (weight multiplied after the cast)
// u [R, n], w [n] -> y [R, n]; per-head q_norm / k_norm pass u viewed as [T·heads, d].
// For T = float both casts are the identity: the reference's fp32 mode. For T = double (the fp64
// path) everything is in double, eps included, and both casts are the identity: the reference's
// exact mode, y = w · (u · 1/sqrt(Σu²/n + eps)) (Σ in a block tree rather than in order).
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {
template <class T>
void rms_norm(const DeviceTensor<T>& u, const DeviceTensor<T>& w, double eps, DeviceTensor<T>& y);

// h = T(a + b) (elementwise.h's add) and y = RMSNorm(h; w) in one launch: the residual add before
// a norm. The same arithmetic in the same order as add() then rms_norm(): the same bits.
template <class T>
void add_rms_norm(const DeviceTensor<T>& a, const DeviceTensor<T>& b, const DeviceTensor<T>& w, double eps, DeviceTensor<T>& h,
                  DeviceTensor<T>& y);
}  // namespace hyoracle::cuda
