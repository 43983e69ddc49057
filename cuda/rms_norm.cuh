// rms_norm.cuh: the arithmetic of rms_norm.h, for device code. rms_norm.cu and the fused kernels
// (add_rms_norm, decoder_layer.cu's attention inputs) call these, so they round at the same points.
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {

// 1 / sqrt(ss / n + eps), fp32, IEEE division and square root (no fast math).
__device__ inline float rms_inverse(float ss, int64_t n, float eps) { return 1.0f / sqrtf(ss / float(n) + eps); }

// y = T(w · T(x · inv)): the normalised value rounded to T before the weight, as HF (R2).
template <class T>
__device__ inline T rms_scaled(float x, float inv, T w) {
  return from_f32<T>(to_f32(w) * round_as<T>(x * inv));
}

// Σ of one float per thread over a block of blockDim.x <= 1024 threads (lane sums by a fixed
// butterfly, then the warp sums in warp order): every thread gets the same total.
__device__ inline float block_sum(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // part[] may still be read by a previous call
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) part[0] = s;
  }
  __syncthreads();
  return part[0];
}

}  // namespace hyoracle::cuda
