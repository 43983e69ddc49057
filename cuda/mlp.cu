#include "cuda/mlp.h"

#include "cuda/matmul.h"

namespace hyoracle::cuda {

namespace {
template <class T>
__global__ void swiglu_kernel(const T* gu, T* a, int64_t R, int64_t I) {
  for (int64_t at = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; at < R * I; at += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = at / I, i = at % I;
    if constexpr (std::is_same_v<T, double>) {  // exact mode: (g / (1 + e^(−g))) · v in double
      const double z = gu[r * 2 * I + i];
      a[at] = (z / (1.0 + exp(-z))) * gu[r * 2 * I + I + i];
    } else {
      const float z = to_f32(gu[r * 2 * I + i]);
      const float s = round_as<T>(z / (1.0f + expf(-z)));
      a[at] = from_f32<T>(s * to_f32(gu[r * 2 * I + I + i]));
    }
  }
}
}  // namespace

template <class T>
void swiglu(const DeviceTensor<T>& gu, DeviceTensor<T>& a) {
  const int64_t R = gu.rows(), I = gu.cols() / 2;
  if (gu.cols() % 2 || a.numel() != R * I) fail("cuda swiglu: " + shape_str(gu.shape) + " -> " + shape_str(a.shape));
  if (!R || !I) return;
  const unsigned blocks = unsigned(std::min<int64_t>((R * I + 255) / 256, 65536));
  swiglu_kernel<<<blocks, 256, 0, gpu().stream>>>(gu.data(), a.data(), R, I);
  check_launch("swiglu");
}

template <class T>
void swiglu_mlp(const DeviceTensor<T>& u, const MlpWeights<T>& w, DeviceTensor<T>& y) {
  const int64_t R = u.rows(), I2 = w.gate_up.dim(0);
  DeviceTensor<T> gu({R, I2}), a({R, I2 / 2});
  linear(u, w.gate_up, gu);
  swiglu(gu, a);
  linear(a, w.down, y);
}

template void swiglu<float>(const DeviceTensor<float>&, DeviceTensor<float>&);
template void swiglu<bf16>(const DeviceTensor<bf16>&, DeviceTensor<bf16>&);
template void swiglu<fp16>(const DeviceTensor<fp16>&, DeviceTensor<fp16>&);
template void swiglu<double>(const DeviceTensor<double>&, DeviceTensor<double>&);
template void swiglu_mlp<float>(const DeviceTensor<float>&, const MlpWeights<float>&, DeviceTensor<float>&);
template void swiglu_mlp<bf16>(const DeviceTensor<bf16>&, const MlpWeights<bf16>&, DeviceTensor<bf16>&);
template void swiglu_mlp<fp16>(const DeviceTensor<fp16>&, const MlpWeights<fp16>&, DeviceTensor<fp16>&);
template void swiglu_mlp<double>(const DeviceTensor<double>&, const MlpWeights<double>&, DeviceTensor<double>&);

}  // namespace hyoracle::cuda
