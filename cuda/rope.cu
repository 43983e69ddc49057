#include "cuda/rope.h"

#include "cuda/rope.cuh"

namespace hyoracle::cuda {

namespace {
template <class T, class A = acc_t<T>>
__global__ void rope_kernel(T* x, const int64_t* pos, int64_t heads, int64_t d, A theta) {
  const int64_t t = blockIdx.x, half = d / 2;
  for (int64_t at = threadIdx.x; at < heads * half; at += blockDim.x) {
    const int64_t n = at / half, i = at % half;
    A c, s;
    rope_cos_sin<T>(pos[t], rope_inv_freq(i, d, theta), c, s);
    T* v = x + (t * heads + n) * d;
    rope_rotate<T>(widen(v[i]), widen(v[i + half]), c, s, v[i], v[i + half]);
  }
}
}  // namespace

template <class T>
void apply_rope(DeviceTensor<T>& x, const DeviceTensor<int64_t>& positions, double theta) {
  const int64_t T_ = x.dim(0), heads = x.dim(1), d = x.dim(2);
  if (x.shape.size() != 3 || d % 2 || positions.numel() != T_)
    fail("cuda apply_rope: x " + shape_str(x.shape) + " and positions " + shape_str(positions.shape) + " do not match");
  if (!T_) return;
  rope_kernel<<<unsigned(T_), 256, 0, gpu().stream>>>(x.data(), positions.data(), heads, d, acc_t<T>(theta));
  check_launch("apply_rope");
}

template void apply_rope<float>(DeviceTensor<float>&, const DeviceTensor<int64_t>&, double);
template void apply_rope<bf16>(DeviceTensor<bf16>&, const DeviceTensor<int64_t>&, double);
template void apply_rope<fp16>(DeviceTensor<fp16>&, const DeviceTensor<int64_t>&, double);
template void apply_rope<double>(DeviceTensor<double>&, const DeviceTensor<int64_t>&, double);

}  // namespace hyoracle::cuda
