#include "rms_norm.h"

namespace hyoracle::cuda {

namespace {
// One block of 128 threads per row.
template <class T>
__global__ void rms_norm_rows(const T* u, const T* w, T* y, int64_t n, float eps) {
  const T* x = u + blockIdx.x * n;
  T* out = y + blockIdx.x * n;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = to_f32(x[i]);
    ss = fmaf(v, v, ss);
  }
  __shared__ float part[32];
  for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) part[0] = s;
  }
  __syncthreads();
  const float r = part[0] / float(n);
  const float inv = 1.0f / sqrtf(r + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = round_as<T>(to_f32(x[i]) * inv);
    out[i] = from_f32<T>(to_f32(w[i]) * v);
  }
}
}  // namespace

template <class T>
void rms_norm(const DeviceTensor<T>& u, const DeviceTensor<T>& w, double eps, DeviceTensor<T>& y) {
  const int64_t n = w.numel();
  if (n == 0 || u.numel() % n || y.numel() != u.numel())
    fail("cuda rms_norm: input " + shape_str(u.shape) + " is not a multiple of weight width " + std::to_string(n));
  const int64_t R = u.numel() / n;
  if (!R) return;
  rms_norm_rows<<<unsigned(R), 128, 0, gpu().stream>>>(u.data(), w.data(), y.data(), n, float(eps));
  check_launch("rms_norm");
}

template void rms_norm<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, double, DeviceTensor<float>&);
template void rms_norm<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, double, DeviceTensor<bf16>&);
template void rms_norm<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, double, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
