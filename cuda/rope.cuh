// rope.cuh: the per-element arithmetic of rope.h, for device code. rope.cu and the fused attention
// inputs of decoder_layer.cu both call these, so they round at the same points.
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {

// inv_freq[i] = fp32(1 / fp32(θ^fp32(2i/d))), as the reference's hf mode (and HF), with a correctly
// rounded power: CUDA's powf is off by up to 2 ulp, which at p = 4095 moves φ by ~4e-6 rad; the
// power in double, rounded once to fp32, is the correctly rounded value.
// The fp64 path (A = double) computes the reference's exact mode instead: inv_freq =
// 1 / θ^(2i/d), φ = p · inv_freq, cos φ, sin φ, all in double.
__device__ inline float rope_inv_freq(int64_t i, int64_t d, float theta) {
  const float expo = __fdiv_rn(float(2 * i), float(d));
  return __fdiv_rn(1.0f, float(pow(double(theta), double(expo))));
}
__device__ inline double rope_inv_freq(int64_t i, int64_t d, double theta) {
  return 1.0 / pow(theta, double(2 * i) / double(d));
}

// c = T(cos φ), s = T(sin φ) for φ = fp32(fp32(p) · inv_freq); in double for T = double.
template <class T>
__device__ inline void rope_cos_sin(int64_t p, acc_t<T> inv_freq, acc_t<T>& c, acc_t<T>& s) {
  if constexpr (std::is_same_v<T, double>) {
    const double phi = double(p) * inv_freq;
    c = cos(phi);
    s = sin(phi);
  } else {
    const float phi = __fmul_rn(float(p), inv_freq);
    c = round_as<T>(cosf(phi));
    s = round_as<T>(sinf(phi));
  }
}

// (a, b) = (x[i], x[i + d/2]) -> (T(T(a·c) − T(b·s)), T(T(b·c) + T(a·s))); single-rounded fp32
// products and sums (never contracted to FMA), each rounded to T (HF's R4). T = double: the
// exact mode's a·c − b·s, b·c + a·s with single-rounded double products and sums.
template <class T>
__device__ inline void rope_rotate(acc_t<T> a, acc_t<T> b, acc_t<T> c, acc_t<T> s, T& ya, T& yb) {
  if constexpr (std::is_same_v<T, double>) {
    ya = __dsub_rn(__dmul_rn(a, c), __dmul_rn(b, s));
    yb = __dadd_rn(__dmul_rn(b, c), __dmul_rn(a, s));
  } else {
    ya = from_f32<T>(__fsub_rn(round_as<T>(__fmul_rn(a, c)), round_as<T>(__fmul_rn(b, s))));
    yb = from_f32<T>(__fadd_rn(round_as<T>(__fmul_rn(b, c)), round_as<T>(__fmul_rn(a, s))));
  }
}

}  // namespace hyoracle::cuda
