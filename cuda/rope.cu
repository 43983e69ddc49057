#include "rope.h"

namespace hyoracle::cuda {

namespace {
template <class T>
__global__ void rope_kernel(T* x, const int64_t* pos, int64_t heads, int64_t d, float theta) {
  const int64_t t = blockIdx.x, half = d / 2;
  for (int64_t at = threadIdx.x; at < heads * half; at += blockDim.x) {
    const int64_t n = at / half, i = at % half;
    // As the reference's hf mode (and HF): inv_freq = fp32(1 / fp32(θ^fp32(2i/d))) with a correctly
    // rounded power (host powf); CUDA's powf is off by up to 2 ulp, which at p = 4095 moves φ by
    // ~4e-6 rad. The power in double, rounded once to fp32, is the correctly rounded value.
    const float expo = __fdiv_rn(float(2 * i), float(d));
    const float inv_freq = __fdiv_rn(1.0f, float(pow(double(theta), double(expo))));
    const float phi = __fmul_rn(float(pos[t]), inv_freq);
    const float c = round_as<T>(cosf(phi)), s = round_as<T>(sinf(phi));
    T* v = x + (t * heads + n) * d;
    const float a = to_f32(v[i]), b = to_f32(v[i + half]);
    v[i] = from_f32<T>(__fsub_rn(round_as<T>(__fmul_rn(a, c)), round_as<T>(__fmul_rn(b, s))));
    v[i + half] = from_f32<T>(__fadd_rn(round_as<T>(__fmul_rn(b, c)), round_as<T>(__fmul_rn(a, s))));
  }
}
}  // namespace

template <class T>
void apply_rope(DeviceTensor<T>& x, const DeviceTensor<int64_t>& positions, double theta) {
  const int64_t T_ = x.dim(0), heads = x.dim(1), d = x.dim(2);
  if (x.shape.size() != 3 || d % 2 || positions.numel() != T_)
    fail("cuda apply_rope: x " + shape_str(x.shape) + " and positions " + shape_str(positions.shape) + " do not match");
  if (!T_) return;
  rope_kernel<<<unsigned(T_), 256, 0, gpu().stream>>>(x.data(), positions.data(), heads, d, float(theta));
  check_launch("apply_rope");
}

template void apply_rope<float>(DeviceTensor<float>&, const DeviceTensor<int64_t>&, double);
template void apply_rope<bf16>(DeviceTensor<bf16>&, const DeviceTensor<int64_t>&, double);
template void apply_rope<fp16>(DeviceTensor<fp16>&, const DeviceTensor<int64_t>&, double);

}  // namespace hyoracle::cuda
