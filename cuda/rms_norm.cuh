// rms_norm.cuh: the arithmetic of rms_norm.h, for device code. rms_norm.cu and the fused kernels
// (add_rms_norm, decoder_layer.cu's attention inputs) call these, so they round at the same points.
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {

// 1 / sqrt(ss / n + eps) in A (acc_t<T>): fp32, or double for the fp64 path (the reference's exact
// mode, eps in double); IEEE division and square root (no fast math).
template <class A>
__device__ inline A rms_inverse(A ss, int64_t n, A eps) { return A(1) / sqrt(ss / A(n) + eps); }

// y = T(w · T(x · inv)): the normalised value rounded to T before the weight, as HF (R2); for
// T = double both roundings are the identity: w · (x · inv), the exact mode's formula.
template <class T>
__device__ inline T rms_scaled(acc_t<T> x, acc_t<T> inv, T w) {
  if constexpr (std::is_same_v<T, double>) return w * (x * inv);
  else return from_f32<T>(to_f32(w) * round_as<T>(x * inv));
}

// Σ of one value per thread (float or double) over a block of blockDim.x <= 1024 threads (lane
// sums by a fixed butterfly, then the warp sums in warp order): every thread gets the same total.
template <class A>
__device__ inline A block_sum(A v) {
  __shared__ A part[32];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // part[] may still be read by a previous call
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    A s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : A(0);
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) part[0] = s;
  }
  __syncthreads();
  return part[0];
}

}  // namespace hyoracle::cuda
