// device.h: the plain device tensor every CUDA layer takes and returns, the process-wide GPU
// context (one stream, one cuBLAS handle) and host <-> device transfers.
//
// A DeviceTensor<T> is a shape and a dense row-major buffer of T on the GPU (T = float, __half,
// __nv_bfloat16 or double), nothing else: no strides, no dtype tag at run time. Buffers come from the
// stream-ordered allocator (cudaMallocAsync on the context's stream), so a forward pass can be
// captured into a CUDA graph. Copies of a DeviceTensor share the buffer (views with a new shape).
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "util/error.h"
#include "util/tensor.h"

namespace hyoracle::cuda {

using bf16 = __nv_bfloat16;
using fp16 = __half;

// Throws hyoracle::Error("<where>: <CUDA error>") when `e` is not success.
void check(cudaError_t e, const char* where);
void check(cublasStatus_t s, const char* where);
// check(cudaGetLastError()) after a kernel launch.
inline void check_launch(const char* where) { check(cudaGetLastError(), where); }

// True when a CUDA device can be used; otherwise false with the reason in *why.
bool device_available(std::string* why = nullptr);

// The process-wide context: device 0, one non-blocking stream, one cuBLAS handle on it.
struct Gpu {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  int sms = 0;
  int cc_major = 0, cc_minor = 0;  // compute capability, e.g. 9.0 for the H100 / H200
};
Gpu& gpu();
void synchronize();

// "bf16", "fp16", "fp32", "fp64".
template <class T>
const char* dtype_label() {
  if constexpr (std::is_same_v<T, bf16>) return "bf16";
  else if constexpr (std::is_same_v<T, fp16>) return "fp16";
  else if constexpr (std::is_same_v<T, double>) return "fp64";
  else return "fp32";
}

// The types of the path of activation type T:
//   acc_t<T>:    what every layer accumulates and computes in: float for float / bf16 / fp16 (the
//                HF-rounding paths), double for double (the reference's exact mode);
//   weight_t<T>: what the large matrices (projections, experts, embedding, lm_head) are held in on
//                the GPU: T itself, except bf16 for double (the checkpoints' stored dtype: the fp64
//                path expands them to double per product, so the resident model stays bf16);
//   host_t<T>:   what download() returns: float, or double for double.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
template <class T>
using weight_t = std::conditional_t<std::is_same_v<T, double>, bf16, T>;
template <class T>
using host_t = acc_t<T>;

// Rounds a float to T (nearest even) and widens it back; host and device.
template <class T>
__host__ __device__ inline T from_f32(float x) {
  if constexpr (std::is_same_v<T, bf16>) return __float2bfloat16_rn(x);
  else if constexpr (std::is_same_v<T, fp16>) return __float2half_rn(x);
  else return x;
}
template <class T>
__host__ __device__ inline float to_f32(T x) {
  if constexpr (std::is_same_v<T, bf16>) return __bfloat162float(x);
  else if constexpr (std::is_same_v<T, fp16>) return __half2float(x);
  else return float(x);
}
// x widened to its accumulation type (acc_t): to_f32 for the 16-bit types and float, the identity
// for double; narrow<T>(a) rounds an accumulator back to T (from_f32, or the identity for double).
__host__ __device__ inline float widen(float x) { return x; }
__host__ __device__ inline double widen(double x) { return x; }
__host__ __device__ inline float widen(bf16 x) { return __bfloat162float(x); }
__host__ __device__ inline float widen(fp16 x) { return __half2float(x); }
template <class T>
__host__ __device__ inline T narrow(acc_t<T> a) {
  if constexpr (std::is_same_v<T, double>) return a;
  else return from_f32<T>(a);
}

// True when p is 16-byte aligned (the vector loads and cp.async of the fast kernels need it).
__host__ __device__ inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// x rounded to T's precision, as a float (identity for T = float).
template <class T>
__host__ __device__ inline float round_as(float x) { return to_f32(from_f32<T>(x)); }

template <class T>
class DeviceTensor {
 public:
  std::vector<int64_t> shape;

  DeviceTensor() = default;
  // Uninitialised storage for `shape` on the context's stream.
  explicit DeviceTensor(std::vector<int64_t> shape_);
  // A non-owning view of `data` (tests use it to place outputs between guard regions).
  static DeviceTensor view(T* data, std::vector<int64_t> shape_);
  // The same buffer under another shape of the same element count.
  DeviceTensor reshaped(std::vector<int64_t> shape_) const;

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  int64_t numel() const { return numel_of(shape); }
  int64_t dim(size_t i) const { return shape.at(i); }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  bool empty() const { return ptr_ == nullptr; }

 private:
  std::shared_ptr<void> owner_;
  T* ptr_ = nullptr;
};

// Host -> device, rounding each value to T (a double value to double: exact); device -> host,
// widening to host_t<T> (float, or double for double).
template <class T, class S>
DeviceTensor<T> upload(const Tensor<S>& host);
template <class T>
DeviceTensor<T> upload_values(const std::vector<float>& values, std::vector<int64_t> shape);
template <class T>
Tensor<host_t<T>> download(const DeviceTensor<T>& dev);
// w[i] = double(src[i]) for a weight held as bf16 or float (the fp64 path's expansion of a stored
// weight before a product); n elements, on the context's stream.
template <class W>
void expand_to_double(const W* src, int64_t n, double* dst);
// Small index arrays (positions, token ids).
DeviceTensor<int64_t> upload_ints(const std::vector<int64_t>& v);
std::vector<int64_t> download_ints(const DeviceTensor<int32_t>& dev);
std::vector<int64_t> download_ints(const DeviceTensor<int64_t>& dev);

}  // namespace hyoracle::cuda
