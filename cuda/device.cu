#include "cuda/device.h"

#include <algorithm>
#include <cstdint>

namespace hyoracle::cuda {

void check(cudaError_t e, const char* where) {
  if (e != cudaSuccess) fail(std::string(where) + ": CUDA error: " + cudaGetErrorString(e));
}
void check(cublasStatus_t s, const char* where) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(std::string(where) + ": cuBLAS error: " + cublasGetStatusString(s));
}

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
    cudaGetLastError();
    return false;
  }
  if (n == 0) {
    if (why) *why = "cudaGetDeviceCount returned 0 devices";
    return false;
  }
  return true;
}

Gpu& gpu() {
  static Gpu g = [] {
    std::string why;
    if (!device_available(&why)) fail("--device cuda: no usable CUDA device (" + why + ")");
    Gpu c;
    check(cudaSetDevice(0), "cudaSetDevice");
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
    c.name = p.name;
    c.sms = p.multiProcessorCount;
    c.cc_major = p.major;
    c.cc_minor = p.minor;
    check(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasCreate(&c.blas), "cublasCreate");
    check(cublasSetStream(c.blas, c.stream), "cublasSetStream");
    // No TF32 anywhere: fp32 products use CUBLAS_COMPUTE_32F_PEDANTIC (matmul.cu) and the
    // handle's math mode stays the default one.
    check(cublasSetMathMode(c.blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    // Keep freed blocks in the pool so per-layer temporaries cost no cudaMalloc.
    cudaMemPool_t pool;
    check(cudaDeviceGetDefaultMemPool(&pool, 0), "cudaDeviceGetDefaultMemPool");
    uint64_t keep = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
    return c;
  }();
  return g;
}

void synchronize() { check(cudaStreamSynchronize(gpu().stream), "cudaStreamSynchronize"); }

template <class T>
DeviceTensor<T>::DeviceTensor(std::vector<int64_t> shape_) : shape(std::move(shape_)) {
  const size_t bytes = size_t(numel_of(shape)) * sizeof(T);
  void* p = nullptr;
  if (bytes) {
    cudaStream_t s = gpu().stream;
    check(cudaMallocAsync(&p, bytes, s), "cudaMallocAsync");
    owner_ = std::shared_ptr<void>(p, [s](void* q) { cudaFreeAsync(q, s); });
  }
  ptr_ = static_cast<T*>(p);
}

template <class T>
DeviceTensor<T> DeviceTensor<T>::view(T* data, std::vector<int64_t> shape_) {
  DeviceTensor t;
  t.shape = std::move(shape_);
  t.ptr_ = data;
  return t;
}

template <class T>
DeviceTensor<T> DeviceTensor<T>::reshaped(std::vector<int64_t> shape_) const {
  if (numel_of(shape_) != numel()) fail("reshaped: " + shape_str(shape) + " cannot become " + shape_str(shape_));
  DeviceTensor t = *this;
  t.shape = std::move(shape_);
  return t;
}

template <class T, class S>
DeviceTensor<T> upload(const Tensor<S>& host) {
  std::vector<T> v(host.data.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, double>) v[i] = double(host.data[i]);
    else v[i] = from_f32<T>(float(host.data[i]));
  }
  DeviceTensor<T> d(host.shape);
  if (!v.empty()) check(cudaMemcpyAsync(d.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, gpu().stream), "upload");
  synchronize();
  return d;
}

template <class T>
DeviceTensor<T> upload_values(const std::vector<float>& values, std::vector<int64_t> shape) {
  return upload<T>(Tensor<float>(std::move(shape), values));
}

template <class T>
Tensor<host_t<T>> download(const DeviceTensor<T>& d) {
  std::vector<T> v(size_t(d.numel()));
  if (!v.empty()) check(cudaMemcpyAsync(v.data(), d.data(), v.size() * sizeof(T), cudaMemcpyDeviceToHost, gpu().stream), "download");
  synchronize();
  Tensor<host_t<T>> h(d.shape);
  for (size_t i = 0; i < v.size(); ++i) h.data[i] = widen(v[i]);
  return h;
}

namespace {
template <class W>
__global__ void expand_kernel(const W* __restrict__ src, int64_t n, double* __restrict__ dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = double(widen(src[i]));
}
}  // namespace

template <class W>
void expand_to_double(const W* src, int64_t n, double* dst) {
  if (n <= 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 16 * 1024));
  expand_kernel<W><<<blocks, 256, 0, gpu().stream>>>(src, n, dst);
  check_launch("expand_to_double");
}
template void expand_to_double<bf16>(const bf16*, int64_t, double*);
template void expand_to_double<float>(const float*, int64_t, double*);

DeviceTensor<int64_t> upload_ints(const std::vector<int64_t>& v) {
  DeviceTensor<int64_t> d({int64_t(v.size())});
  if (!v.empty()) check(cudaMemcpyAsync(d.data(), v.data(), v.size() * 8, cudaMemcpyHostToDevice, gpu().stream), "upload_ints");
  synchronize();
  return d;
}

template <class I>
static std::vector<int64_t> download_int_values(const DeviceTensor<I>& d) {
  std::vector<I> v(size_t(d.numel()));
  if (!v.empty()) check(cudaMemcpyAsync(v.data(), d.data(), v.size() * sizeof(I), cudaMemcpyDeviceToHost, gpu().stream), "download_ints");
  synchronize();
  return std::vector<int64_t>(v.begin(), v.end());
}
std::vector<int64_t> download_ints(const DeviceTensor<int32_t>& d) { return download_int_values(d); }
std::vector<int64_t> download_ints(const DeviceTensor<int64_t>& d) { return download_int_values(d); }

template class DeviceTensor<float>;
template class DeviceTensor<fp16>;
template class DeviceTensor<bf16>;
template class DeviceTensor<double>;
template class DeviceTensor<int32_t>;
template class DeviceTensor<int64_t>;
template DeviceTensor<float> upload<float, float>(const Tensor<float>&);
template DeviceTensor<fp16> upload<fp16, float>(const Tensor<float>&);
template DeviceTensor<bf16> upload<bf16, float>(const Tensor<float>&);
template DeviceTensor<float> upload<float, double>(const Tensor<double>&);
template DeviceTensor<fp16> upload<fp16, double>(const Tensor<double>&);
template DeviceTensor<bf16> upload<bf16, double>(const Tensor<double>&);
template DeviceTensor<double> upload<double, float>(const Tensor<float>&);
template DeviceTensor<double> upload<double, double>(const Tensor<double>&);
template DeviceTensor<double> upload_values<double>(const std::vector<float>&, std::vector<int64_t>);
template DeviceTensor<float> upload_values<float>(const std::vector<float>&, std::vector<int64_t>);
template DeviceTensor<fp16> upload_values<fp16>(const std::vector<float>&, std::vector<int64_t>);
template DeviceTensor<bf16> upload_values<bf16>(const std::vector<float>&, std::vector<int64_t>);
template Tensor<float> download<float>(const DeviceTensor<float>&);
template Tensor<float> download<fp16>(const DeviceTensor<fp16>&);
template Tensor<float> download<bf16>(const DeviceTensor<bf16>&);
template Tensor<double> download<double>(const DeviceTensor<double>&);

}  // namespace hyoracle::cuda
