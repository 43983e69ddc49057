// cuda_test_util.h: what every CUDA test needs: the skip when no device is present, guarded
// device outputs, reference inputs rounded exactly as the GPU sees them, and error metrics.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "io/random_checkpoint.h"
#include "cuda/router.h"
#include "util/tensor.h"
#include "tests/common/test_util.h"

namespace hyoracle::test {

// Base fixture: GTEST_SKIP with the reason when no CUDA device can be used (what CI sees).
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::device_available(&why)) GTEST_SKIP() << "no CUDA device (" << why << "): CUDA tests skipped";
  }
};

// A device output placed between two guard regions; guards and the output are filled with a
// sentinel byte pattern (0x7F: a huge finite value in every dtype), so both an out-of-bounds
// write and an element never written are caught.
template <class T>
class Guarded {
 public:
  static constexpr int64_t kGuard = 1024;  // elements on each side
  explicit Guarded(std::vector<int64_t> shape) : n_(numel_of(shape)) {
    cuda::check(cudaMalloc(&base_, size_t(n_ + 2 * kGuard) * sizeof(T)), "Guarded: cudaMalloc");
    cuda::check(cudaMemset(base_, 0x7F, size_t(n_ + 2 * kGuard) * sizeof(T)), "Guarded: cudaMemset");
    cuda::check(cudaDeviceSynchronize(), "Guarded: sync");  // legacy stream vs the path's own stream
    tensor = cuda::DeviceTensor<T>::view(base_ + kGuard, std::move(shape));
  }
  ~Guarded() { cudaFree(base_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  // Number of guard bytes that no longer hold the sentinel.
  int64_t guard_damage() const {
    cuda::synchronize();
    std::vector<unsigned char> h(static_cast<size_t>(n_ + 2 * kGuard) * sizeof(T));
    cuda::check(cudaMemcpy(h.data(), base_, h.size(), cudaMemcpyDeviceToHost), "Guarded: copy");
    int64_t bad = 0;
    const size_t g = size_t(kGuard) * sizeof(T), out = size_t(n_) * sizeof(T);
    for (size_t i = 0; i < g; ++i) bad += h[i] != 0x7F;
    for (size_t i = g + out; i < h.size(); ++i) bad += h[i] != 0x7F;
    return bad;
  }
  cuda::DeviceTensor<T> tensor;

 private:
  T* base_ = nullptr;
  int64_t n_;
};

// Exact value v rounded to T, as a double (what a correctly rounded T result must be).
template <class T>
double rounded(double v) { return double(cuda::to_f32(cuda::from_f32<T>(float(v)))); }

// Seeded N(0, scale²) values from the fixture generator (replayable from the seed).
inline std::vector<float> normal_values(int64_t n, uint64_t seed, double scale = 1.0) {
  Rng r(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = float(scale * r.normal());
  return v;
}
// Seeded integers in [-lim, lim].
inline std::vector<float> int_values(int64_t n, uint64_t seed, int lim = 8) {
  Rng r(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = float(int64_t(r.next() % uint64_t(2 * lim + 1)) - lim);
  return v;
}

// Uploads values as T and returns the device tensor plus the exact values the GPU holds, as a
// double tensor for the reference.
template <class T>
struct Operand {
  cuda::DeviceTensor<T> dev;
  Tensor<double> host;
};
template <class T>
Operand<T> operand(const std::vector<float>& values, std::vector<int64_t> shape) {
  Operand<T> o;
  o.dev = cuda::upload_values<T>(values, shape);
  o.host = cast<double>(cuda::download(o.dev));
  return o;
}

// Unit roundoff of T (half the spacing at 1): 2^-24 fp32, 2^-11 fp16, 2^-8 bf16... as doubles.
template <class T>
double unit_roundoff() {
  if constexpr (std::is_same_v<T, cuda::bf16>) return std::ldexp(1.0, -8);
  else if constexpr (std::is_same_v<T, cuda::fp16>) return std::ldexp(1.0, -11);
  else return std::ldexp(1.0, -24);
}

inline double rel_l2_of(const Tensor<float>& got, const Tensor<double>& ref) { return rel_l2(got.data, ref.data); }

// Non-vacuity: a tensor compared must have elements and a non-zero norm.
template <class S>
void expect_nonzero(const Tensor<S>& t, const char* what) {
  double s = 0;
  for (auto v : t.data) s += double(v) * double(v);
  EXPECT_GT(t.numel(), 0) << what << " is empty";
  EXPECT_GT(s, 0.0) << what << " is all zero";
}

// A router's choices as the router makes them: k distinct experts per token, drawn from [0, usable)
// by a seeded stream; ids [T·k] (row-major [T, k]).
inline std::vector<int32_t> distinct_expert_ids(int64_t T, int64_t k, int64_t usable, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> chosen;
    while (int64_t(chosen.size()) < k) {
      const int32_t e = int32_t(rng.next() % uint64_t(usable));
      if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
    }
    ids.insert(ids.end(), chosen.begin(), chosen.end());
  }
  return ids;
}

// A RouterOutput holding only those ids on the device (what sort_by_expert reads).
inline cuda::RouterOutput router_output_with_ids(const std::vector<int32_t>& ids, int64_t T, int64_t k) {
  cuda::RouterOutput ro;
  ro.k = k;
  ro.ids = cuda::DeviceTensor<int32_t>({T, k});
  cuda::check(cudaMemcpy(ro.ids.data(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice), "ids");
  cuda::check(cudaDeviceSynchronize(), "ids");  // the legacy-stream copy must land before our stream reads it
  return ro;
}

}  // namespace hyoracle::test
