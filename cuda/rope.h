// rope.h: rotary position embedding on the GPU, NeoX / rotate-half pairing (docs/model.md §4.3).
//
//   inv_freq[i] = fp32(1 / fp32(θ^(2i/d))),  φ = fp32(fp32(p) · inv_freq[i]),  c = T(cos φ), s = T(sin φ)
//   with a = x[0:d/2], b = x[d/2:d]:
//     out[i]       = T( T(a[i]·c) − T(b[i]·s) )
//     out[i + d/2] = T( T(b[i]·c) + T(a[i]·s) )
// HF's rounding points (R4): cos/sin, each product and the sum are rounded to T; products and
// sums are single-rounded fp32 operations (__fmul_rn / __fadd_rn, never contracted to FMA).
// x [T, heads, d] rotated in place; positions [T] on the device. Angles as the reference's
// hf/fp32 modes; T = double (the fp64 path): the exact mode, inv_freq = 1 / θ^(2i/d), φ = p·inv_freq,
// cos, sin and the rotation in double, no intermediate rounding.
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {
template <class T>
void apply_rope(DeviceTensor<T>& x, const DeviceTensor<int64_t>& positions, double theta);
}  // namespace hyoracle::cuda
