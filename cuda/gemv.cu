#include "cuda/gemv.h"

#include <cstdint>

namespace hyoracle::cuda {

namespace {

constexpr int kMaxSegments = 4;
constexpr int kWarps = 8;  // output columns per block of 256 threads

// The weights and outputs of one launch: global column c belongs to segment s when
// start[s] <= c < start[s + 1], as column c - start[s] of w[s] / y[s].
template <class Ti, class To>
struct Segments {
  const Ti* w[kMaxSegments];
  To* y[kMaxSegments];
  int start[kMaxSegments + 1];
  int n[kMaxSegments];
  int count;
  int total;  // = start[count]
};

// 8 packed 16-bit values (one 16-byte vector) widened to float, in memory order.
__device__ inline void widen8(const uint4& v, const bf16*, float (&f)[8]) {
  const auto* p = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 t = __bfloat1622float2(p[j]);
    f[2 * j] = t.x;
    f[2 * j + 1] = t.y;
  }
}
__device__ inline void widen8(const uint4& v, const fp16*, float (&f)[8]) {
  const auto* p = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 t = __half22float2(p[j]);
    f[2 * j] = t.x;
    f[2 * j + 1] = t.y;
  }
}

// acc[m] += Σ_e x[m, e] · w[e] over one 16-byte slice, ascending e (fmaf: fp32, one rounding each).
template <class Ti, int M>
__device__ inline void accumulate_slice(const uint4& wv, const uint4* __restrict__ xr, int64_t K8, int64_t j,
                                        float (&acc)[M]) {
  float wf[8];
  widen8(wv, static_cast<const Ti*>(nullptr), wf);
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float xf[8];
    widen8(__ldg(xr + m * K8 + j), static_cast<const Ti*>(nullptr), xf);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[m] = fmaf(xf[e], wf[e], acc[m]);
  }
}

// One warp per global output column; see gemv.h for the summation order.
template <class Ti, class To, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const Ti* __restrict__ x, Segments<Ti, To> seg, int64_t K) {
  const int col = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (col >= seg.total) return;
  // The segment of `col`, selected with compile-time indices (a run-time index into the
  // parameter struct would copy it to local memory).
  const Ti* wseg = seg.w[0];
  To* yseg = seg.y[0];
  int first = 0, width = seg.n[0];
#pragma unroll
  for (int u = 1; u < kMaxSegments; ++u)
    if (u < seg.count && col >= seg.start[u]) wseg = seg.w[u], yseg = seg.y[u], first = seg.start[u], width = seg.n[u];
  const int n = col - first;
  const int64_t K8 = K / 8;
  const uint4* wr = reinterpret_cast<const uint4*>(wseg + int64_t(n) * K);
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  int64_t j = lane;
  // Four 16-byte weight loads in flight per lane before the first is used (streamed past L1: each
  // weight is read once), then the remainder one slice at a time; ascending j throughout.
  for (; j + 96 < K8; j += 128) {
    uint4 wv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) wv[u] = __ldcs(wr + j + 32 * u);
#pragma unroll
    for (int u = 0; u < 4; ++u) accumulate_slice<Ti, M>(wv[u], xr, K8, j + 32 * u, acc);
  }
  for (; j < K8; j += 32) accumulate_slice<Ti, M>(__ldcs(wr + j), xr, K8, j, acc);
#pragma unroll
  for (int m = 0; m < M; ++m)
    for (int o = 16; o > 0; o /= 2) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) yseg[int64_t(m) * width + n] = from_f32<To>(acc[m]);
  }
}

template <class Ti, class To, int M>
void launch(const Ti* x, const Segments<Ti, To>& seg, int64_t K) {
  const unsigned blocks = unsigned((seg.total + kWarps - 1) / kWarps);
  gemv_kernel<Ti, To, M><<<blocks, kWarps * 32, 0, gpu().stream>>>(x, seg, K);
}

}  // namespace

template <class Ti>
bool gemv_applies(const DeviceTensor<Ti>& x, const DeviceTensor<Ti>& w) {
  if constexpr (std::is_same_v<Ti, float>) {
    return false;  // fp32 stays on cuBLAS's plain-FMA (pedantic) path
  } else {
    const int64_t M = x.rows(), K = x.cols();
    return M >= 1 && M <= kGemvMaxRows && K > 0 && K % 8 == 0 && w.shape.size() == 2 && w.dim(1) == K &&
           w.dim(0) <= (int64_t(1) << 30) && aligned16(x.data()) && aligned16(w.data());
  }
}

template <class Ti, class To>
void gemv(const DeviceTensor<Ti>& x, const std::vector<const DeviceTensor<Ti>*>& w, const std::vector<DeviceTensor<To>*>& y) {
  const int64_t M = x.rows(), K = x.cols();
  if (w.empty() || w.size() != y.size() || w.size() > size_t(kMaxSegments))
    fail("cuda gemv: " + std::to_string(w.size()) + " weights for " + std::to_string(y.size()) + " outputs (1 to 4 pairs)");
  Segments<Ti, To> seg{};
  seg.count = int(w.size());
  int64_t total = 0;
  for (size_t s = 0; s < w.size(); ++s) {
    if (!gemv_applies(x, *w[s]) || y[s]->numel() != M * w[s]->dim(0))
      fail("cuda gemv: x " + shape_str(x.shape) + ", w " + shape_str(w[s]->shape) + ", y " + shape_str(y[s]->shape) +
           " is not [M <= 8, K % 8 == 0] x [N, K] -> [M, N] with 16-byte aligned rows");
    seg.w[s] = w[s]->data();
    seg.y[s] = y[s]->data();
    seg.start[s] = int(total);
    seg.n[s] = int(w[s]->dim(0));
    total += w[s]->dim(0);
  }
  if (total > (int64_t(1) << 30)) fail("cuda gemv: more than 2^30 output columns in one launch");
  seg.start[seg.count] = int(total);
  seg.total = int(total);
  if (!total) return;
  switch (M) {
    case 1: launch<Ti, To, 1>(x.data(), seg, K); break;
    case 2: launch<Ti, To, 2>(x.data(), seg, K); break;
    case 3: launch<Ti, To, 3>(x.data(), seg, K); break;
    case 4: launch<Ti, To, 4>(x.data(), seg, K); break;
    case 5: launch<Ti, To, 5>(x.data(), seg, K); break;
    case 6: launch<Ti, To, 6>(x.data(), seg, K); break;
    case 7: launch<Ti, To, 7>(x.data(), seg, K); break;
    default: launch<Ti, To, 8>(x.data(), seg, K); break;
  }
  check_launch("gemv");
}

template bool gemv_applies<float>(const DeviceTensor<float>&, const DeviceTensor<float>&);
template bool gemv_applies<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&);
template bool gemv_applies<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&);
template void gemv<bf16, bf16>(const DeviceTensor<bf16>&, const std::vector<const DeviceTensor<bf16>*>&,
                               const std::vector<DeviceTensor<bf16>*>&);
template void gemv<fp16, fp16>(const DeviceTensor<fp16>&, const std::vector<const DeviceTensor<fp16>*>&,
                               const std::vector<DeviceTensor<fp16>*>&);
template void gemv<bf16, float>(const DeviceTensor<bf16>&, const std::vector<const DeviceTensor<bf16>*>&,
                                const std::vector<DeviceTensor<float>*>&);
template void gemv<fp16, float>(const DeviceTensor<fp16>&, const std::vector<const DeviceTensor<fp16>*>&,
                                const std::vector<DeviceTensor<float>*>&);

}  // namespace hyoracle::cuda
