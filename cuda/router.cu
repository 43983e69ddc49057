#include "router.h"

#include "elementwise.h"
#include "matmul.h"

namespace hyoracle::cuda {

namespace {
constexpr int kWarps = 4;

// (value, index) order of every top-k in hyoracle: larger value first, exact ties to the lower index.
__device__ bool better(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

__global__ void topk_kernel(const float* logits, const float* bias, int T_, int E, int k, float scaling, bool renorm,
                            float* scores, int32_t* ids, float* weights, float* margin) {
  extern __shared__ float c_all[];  // [kWarps][E]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= T_) return;
  float* c = c_all + warp * E;
  for (int e = lane; e < E; e += 32) {
    const float s = 1.0f / (1.0f + expf(-logits[int64_t(t) * E + e]));
    scores[int64_t(t) * E + e] = s;
    c[e] = s + bias[e];
  }
  __syncwarp();
  const int rounds = min(E, k + 1);
  float kth = 0.0f, next = INFINITY;
  for (int r = 0; r < rounds; ++r) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int e = lane; e < E; e += 32)
      if (c[e] != -INFINITY && better(c[e], e, bv, bi)) bv = c[e], bi = e;
    for (int o = 16; o > 0; o /= 2) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (r < k) {
      if (lane == 0) ids[int64_t(t) * k + r] = bi;
      kth = bv;
    } else {
      next = bv;
    }
    __syncwarp();
    if (lane == 0) c[bi] = -INFINITY;  // selected
    __syncwarp();
  }
  if (lane != 0) return;
  margin[t] = k < E ? kth - next : INFINITY;
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) sum += scores[int64_t(t) * E + ids[int64_t(t) * k + j]];
  const float denom = renorm ? sum + 1e-20f : 1.0f;
  for (int j = 0; j < k; ++j) weights[int64_t(t) * k + j] = (scores[int64_t(t) * E + ids[int64_t(t) * k + j]] / denom) * scaling;
}
// Router logits for few tokens (T <= kSmallT): one block of 256 threads per expert e; thread i sums
// k = i, i + 256, ... for every token (the router row is read once, coalesced), then the 8 warp
// sums are added in warp order: a fixed fp32 order for a given H.
constexpr int kSmallT = 16, kLogitThreads = 256;
template <class T>
__global__ void __launch_bounds__(kLogitThreads) small_logits_kernel(const T* __restrict__ u, const float* __restrict__ wr,
                                                                     int T_, int E, int H, float* __restrict__ logits) {
  const int e = blockIdx.x, tid = threadIdx.x;
  float acc[kSmallT];
#pragma unroll
  for (int t = 0; t < kSmallT; ++t) acc[t] = 0.0f;
  const float* we = wr + int64_t(e) * H;
#pragma unroll 4
  for (int k = tid; k < H; k += kLogitThreads) {
    const float wv = we[k];
#pragma unroll
    for (int t = 0; t < kSmallT; ++t)
      if (t < T_) acc[t] = fmaf(to_f32(u[int64_t(t) * H + k]), wv, acc[t]);
  }
  __shared__ float part[kLogitThreads / 32][kSmallT];
#pragma unroll
  for (int t = 0; t < kSmallT; ++t) {
    if (t >= T_) break;
    float v = acc[t];
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (tid % 32 == 0) part[tid / 32][t] = v;
  }
  __syncthreads();
  if (tid < T_) {
    float v = 0.0f;
    for (int w = 0; w < kLogitThreads / 32; ++w) v += part[w][tid];
    logits[int64_t(tid) * E + e] = v;
  }
}
}  // namespace

RouterOutput route_from_logits(const DeviceTensor<float>& logits, const DeviceTensor<float>& bias, int64_t k, double scaling,
                               bool renormalize) {
  const int64_t T_ = logits.rows(), E = logits.cols();
  if (bias.numel() != E || k < 1 || k > E) fail("cuda route: bias " + shape_str(bias.shape) + " / k " + std::to_string(k) + " do not fit E " + std::to_string(E));
  RouterOutput out;
  out.k = k;
  out.logits = logits;
  out.scores = DeviceTensor<float>({T_, E});
  out.ids = DeviceTensor<int32_t>({T_, k});
  out.weights = DeviceTensor<float>({T_, k});
  out.margin = DeviceTensor<float>({T_});
  if (!T_) return out;
  const unsigned blocks = unsigned((T_ + kWarps - 1) / kWarps);
  topk_kernel<<<blocks, 32 * kWarps, size_t(kWarps * E) * sizeof(float), gpu().stream>>>(
      logits.data(), bias.data(), int(T_), int(E), int(k), float(scaling), renormalize, out.scores.data(), out.ids.data(),
      out.weights.data(), out.margin.data());
  check_launch("route (top-k)");
  return out;
}

template <class T>
RouterOutput route(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& bias, int64_t k,
                   double scaling, bool renormalize) {
  const int64_t T_ = u.rows(), E = w_router.dim(0);
  DeviceTensor<float> logits({T_, E});
  if (w_router.dim(1) != u.cols()) fail("cuda route: u " + shape_str(u.shape) + " vs router " + shape_str(w_router.shape));
  if (T_ > 0 && T_ <= kSmallT) {  // decode: one launch, no fp32 copy of u
    small_logits_kernel<T><<<unsigned(E), kLogitThreads, 0, gpu().stream>>>(u.data(), w_router.data(), int(T_), int(E),
                                                                            int(u.cols()), logits.data());
    check_launch("route (small-T logits)");
  } else if constexpr (std::is_same_v<T, float>) {
    linear(u, w_router, logits);
  } else {
    DeviceTensor<float> u32(u.shape);
    convert(u, u32);
    linear(u32, w_router, logits);
  }
  return route_from_logits(logits, bias, k, scaling, renormalize);
}

template RouterOutput route<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                   int64_t, double, bool);
template RouterOutput route<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                  int64_t, double, bool);
template RouterOutput route<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                  int64_t, double, bool);

}  // namespace hyoracle::cuda
