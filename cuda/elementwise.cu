#include "cuda/elementwise.h"

namespace hyoracle::cuda {

namespace {
template <class T>
__global__ void add_kernel(const T* a, const T* b, T* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = narrow<T>(widen(a[i]) + widen(b[i]));
}
template <class Ti, class To>
__global__ void convert_kernel(const Ti* x, To* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<To>(to_f32(x[i]));
}
unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, 65536)); }
}  // namespace

template <class T>
void add(const DeviceTensor<T>& a, const DeviceTensor<T>& b, DeviceTensor<T>& y) {
  if (a.numel() != b.numel() || y.numel() != a.numel())
    fail("cuda add: " + shape_str(a.shape) + " + " + shape_str(b.shape) + " -> " + shape_str(y.shape));
  if (!a.numel()) return;
  add_kernel<<<blocks_for(a.numel()), 256, 0, gpu().stream>>>(a.data(), b.data(), y.data(), a.numel());
  check_launch("add");
}

template <class Ti, class To>
void convert(const DeviceTensor<Ti>& x, DeviceTensor<To>& y) {
  if (y.numel() != x.numel()) fail("cuda convert: " + shape_str(x.shape) + " -> " + shape_str(y.shape));
  if (!x.numel()) return;
  convert_kernel<<<blocks_for(x.numel()), 256, 0, gpu().stream>>>(x.data(), y.data(), x.numel());
  check_launch("convert");
}

template void add<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, DeviceTensor<float>&);
template void add<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, DeviceTensor<bf16>&);
template void add<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, DeviceTensor<fp16>&);
template void add<double>(const DeviceTensor<double>&, const DeviceTensor<double>&, DeviceTensor<double>&);
template void convert<float, float>(const DeviceTensor<float>&, DeviceTensor<float>&);
template void convert<bf16, float>(const DeviceTensor<bf16>&, DeviceTensor<float>&);
template void convert<fp16, float>(const DeviceTensor<fp16>&, DeviceTensor<float>&);
template void convert<float, bf16>(const DeviceTensor<float>&, DeviceTensor<bf16>&);
template void convert<float, fp16>(const DeviceTensor<float>&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
