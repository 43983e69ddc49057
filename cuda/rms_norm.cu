#include "cuda/rms_norm.h"

#include "cuda/rms_norm.cuh"

namespace hyoracle::cuda {

namespace {
// One block of 128 threads per row: ss = Σ x² (A = acc_t<T>: fma per thread, then block_sum).
template <class T, class A = acc_t<T>>
__global__ void rms_norm_rows(const T* u, const T* w, T* y, int64_t n, A eps) {
  const T* x = u + blockIdx.x * n;
  T* out = y + blockIdx.x * n;
  A ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const A v = widen(x[i]);
    ss = fma(v, v, ss);
  }
  const A inv = rms_inverse(block_sum(ss), n, eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[i] = rms_scaled(widen(x[i]), inv, w[i]);
}

// The same with the row first formed as h = T(a + b) (stored), in the same order.
template <class T, class A = acc_t<T>>
__global__ void add_rms_norm_rows(const T* a, const T* b, const T* w, T* h, T* y, int64_t n, A eps) {
  const int64_t r0 = blockIdx.x * n;
  A ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const T hv = narrow<T>(widen(a[r0 + i]) + widen(b[r0 + i]));
    h[r0 + i] = hv;
    const A v = widen(hv);
    ss = fma(v, v, ss);
  }
  const A inv = rms_inverse(block_sum(ss), n, eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) y[r0 + i] = rms_scaled(widen(h[r0 + i]), inv, w[i]);
}
}  // namespace

template <class T>
void rms_norm(const DeviceTensor<T>& u, const DeviceTensor<T>& w, double eps, DeviceTensor<T>& y) {
  const int64_t n = w.numel();
  if (n == 0 || u.numel() % n || y.numel() != u.numel())
    fail("cuda rms_norm: input " + shape_str(u.shape) + " is not a multiple of weight width " + std::to_string(n));
  const int64_t R = u.numel() / n;
  if (!R) return;
  rms_norm_rows<<<unsigned(R), 128, 0, gpu().stream>>>(u.data(), w.data(), y.data(), n, acc_t<T>(eps));
  check_launch("rms_norm");
}

template <class T>
void add_rms_norm(const DeviceTensor<T>& a, const DeviceTensor<T>& b, const DeviceTensor<T>& w, double eps, DeviceTensor<T>& h,
                  DeviceTensor<T>& y) {
  const int64_t n = w.numel();
  if (n == 0 || a.numel() % n || b.numel() != a.numel() || h.numel() != a.numel() || y.numel() != a.numel())
    fail("cuda add_rms_norm: " + shape_str(a.shape) + " + " + shape_str(b.shape) + " -> " + shape_str(h.shape) + ", " +
         shape_str(y.shape) + " with weight width " + std::to_string(n));
  const int64_t R = a.numel() / n;
  if (!R) return;
  add_rms_norm_rows<<<unsigned(R), 128, 0, gpu().stream>>>(a.data(), b.data(), w.data(), h.data(), y.data(), n, acc_t<T>(eps));
  check_launch("add_rms_norm");
}

template void rms_norm<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, double, DeviceTensor<float>&);
template void rms_norm<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, double, DeviceTensor<bf16>&);
template void rms_norm<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, double, DeviceTensor<fp16>&);
template void rms_norm<double>(const DeviceTensor<double>&, const DeviceTensor<double>&, double, DeviceTensor<double>&);

template void add_rms_norm<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, double,
                                DeviceTensor<float>&, DeviceTensor<float>&);
template void add_rms_norm<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, double,
                                DeviceTensor<bf16>&, DeviceTensor<bf16>&);
template void add_rms_norm<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, double,
                                DeviceTensor<fp16>&, DeviceTensor<fp16>&);
template void add_rms_norm<double>(const DeviceTensor<double>&, const DeviceTensor<double>&, const DeviceTensor<double>&,
                                   double, DeviceTensor<double>&, DeviceTensor<double>&);

}  // namespace hyoracle::cuda
