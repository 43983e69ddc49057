#include "cuda/router.h"

#include <cfloat>

#include "cuda/elementwise.h"
#include "cuda/expert_sort.cuh"
#include "cuda/matmul.h"

namespace hyoracle::cuda {

namespace {
constexpr int kWarps = 4;

// (value, index) order of every top-k in hyoracle: larger value first, exact ties to the lower index.
template <class A>
__device__ bool better(A a, int ia, A b, int ib) { return a > b || (a == b && ia < ib); }

// p[e] = softmax(l)[e] over one token's E logits l (global; L2 reads, other blocks may have
// written them), by one warp, in A (float; double on the fp64 path), as the reference's softmax
// router: m = max_e l[e] (lane maxima, then a butterfly), x_e = exp(l[e] − m) (lane-strided),
// Σ = Σ_e x_e added by lane 0 in ascending e, p[e] = x_e / Σ. `p` is this warp's shared [E].
template <class A>
__device__ void softmax_row(const A* l, int E, A* p) {
  const int lane = threadIdx.x % 32;
  A mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = max(mx, __ldcg(l + e));
  for (int o = 16; o > 0; o /= 2) mx = max(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  for (int e = lane; e < E; e += 32) {
    if constexpr (std::is_same_v<A, double>) p[e] = exp(__ldcg(l + e) - mx);
    else p[e] = expf(__ldcg(l + e) - mx);
  }
  __syncwarp();
  A sum = 0;
  if (lane == 0)
    for (int e = 0; e < E; ++e) sum += p[e];
  sum = __shfl_sync(0xffffffffu, sum, 0);
  for (int e = lane; e < E; e += 32) p[e] = p[e] / sum;
  __syncwarp();
}

// Top-k of one token t, by one warp, in A (float; double on the fp64 path). `c` is this warp's
// shared memory [2E + k] of A (c [E], s [E], the selected ids [k]): the weights are formed from
// shared memory, not by reading back what was written to global memory (those dependent L2 round
// trips cost ~5 µs per token at k = 8). `softmax`: s = softmax(logits), c = s, weights
// renormalised without the 1e-20 (router.h); else s = σ(logit), c = s + bias.
template <class A>
__device__ void topk_token(const A* logits, const float* bias, int t, int E, int k, A scaling, bool renorm, bool softmax,
                           A* c, A* scores, int32_t* ids, A* weights, A* margin) {
  const int lane = threadIdx.x % 32;
  A* sc = c + E;
  int* sel = reinterpret_cast<int*>(sc + E);
  constexpr A kLowest = std::is_same_v<A, double> ? -DBL_MAX : -FLT_MAX;
  if (softmax) softmax_row(logits + int64_t(t) * E, E, sc);
  for (int e = lane; e < E; e += 32) {
    A s;  // L2 reads (__ldcg): other blocks wrote the logits
    if (softmax) s = sc[e];
    else if constexpr (std::is_same_v<A, double>) s = 1.0 / (1.0 + exp(-__ldcg(logits + int64_t(t) * E + e)));
    else s = 1.0f / (1.0f + expf(-__ldcg(logits + int64_t(t) * E + e)));
    scores[int64_t(t) * E + e] = s;
    sc[e] = s;
    // A score that is NaN (a NaN router input) or a corrected score of -inf ranks below every real
    // one as the lowest finite value, lower index first: -inf marks the selected, and every round
    // must find a candidate, so ids stay inside [0, E) and the sort that follows stays in bounds;
    // the NaN itself reaches the weights and the block's output, where it shows.
    const A cv = softmax ? s : s + A(bias[e]);
    c[e] = cv > -INFINITY ? cv : kLowest;
  }
  __syncwarp();
  const int rounds = min(E, k + 1);
  A kth = 0, next = INFINITY;
  for (int r = 0; r < rounds; ++r) {
    A bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int e = lane; e < E; e += 32)
      if (c[e] != -INFINITY && better(c[e], e, bv, bi)) bv = c[e], bi = e;
    for (int o = 16; o > 0; o /= 2) {
      const A ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (r < k) {
      if (lane == 0) ids[int64_t(t) * k + r] = bi, sel[r] = bi;
      kth = bv;
    } else {
      next = bv;
    }
    __syncwarp();
    if (lane == 0) c[bi] = -INFINITY;  // selected
    __syncwarp();
  }
  if (lane == 0) {
    margin[t] = k < E ? kth - next : A(INFINITY);
    A sum = 0;
    for (int j = 0; j < k; ++j) sum += sc[sel[j]];
    constexpr A kTiny = std::is_same_v<A, double> ? A(1e-20) : A(1e-20f);
    const A denom = !renorm ? A(1) : softmax ? sum : sum + kTiny;
    for (int j = 0; j < k; ++j) weights[int64_t(t) * k + j] = (sc[sel[j]] / denom) * scaling;
  }
  __syncwarp();
}

// One warp per token; shared memory [kWarps][2E + k] of A.
template <class A>
__global__ void topk_kernel(const A* logits, const float* bias, int T_, int E, int k, A scaling, bool renorm, bool softmax,
                            A* scores, int32_t* ids, A* weights, A* margin) {
  extern __shared__ __align__(16) unsigned char topk_smem[];
  const int warp = threadIdx.x / 32, t = blockIdx.x * kWarps + warp;
  if (t >= T_) return;
  topk_token(logits, bias, t, E, k, scaling, renorm, softmax, reinterpret_cast<A*>(topk_smem) + int64_t(warp) * (2 * E + k), scores,
             ids, weights, margin);
}

// Router logits for few tokens (T <= kSmallT): one block of 256 threads per expert e; thread i sums
// k = i, i + 256, ... for every token (the router row is read once, coalesced), then the 8 warp
// sums are added in warp order: a fixed fp32 order for a given H.
constexpr int kSmallT = 16, kLogitThreads = 256;
template <class T>
__device__ void expert_logits(const T* __restrict__ u, const float* __restrict__ wr, int T_, int E, int H,
                              float* __restrict__ logits) {
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

template <class T>
__global__ void __launch_bounds__(kLogitThreads) small_logits_kernel(const T* __restrict__ u, const float* __restrict__ wr,
                                                                     int T_, int E, int H, float* __restrict__ logits) {
  expert_logits(u, wr, T_, E, H, logits);
}

// route_and_sort: expert_logits in every block; the last block to finish (a ticket counter, reset
// by that block for the next launch; launches on the context's one stream never overlap) runs the
// top-k of every token (warp w: tokens w, w + 8, ...) and the experts' token sort.
__device__ unsigned int g_route_ticket = 0;
template <class T>
__global__ void __launch_bounds__(kLogitThreads) route_sort_kernel(const T* __restrict__ u, const float* __restrict__ wr,
                                                                   const float* __restrict__ bias, int T_, int E, int H,
                                                                   int k, float scaling, bool renorm, bool softmax,
                                                                   float* logits,
                                                                   float* scores, int32_t* ids, float* weights,
                                                                   float* margin, SortTargets sort) {
  expert_logits(u, wr, T_, E, H, logits);
  __shared__ bool last;
  __threadfence();  // this block's logits before its ticket
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&g_route_ticket, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  if (threadIdx.x == 0) g_route_ticket = 0;
  __threadfence();
  extern __shared__ float smem_all[];  // [kLogitThreads / 32][2E + k]
  const int warp = threadIdx.x / 32;
  for (int t = warp; t < T_; t += kLogitThreads / 32)
    topk_token<float>(logits, bias, t, E, k, scaling, renorm, softmax, smem_all + int64_t(warp) * (2 * E + k), scores, ids, weights,
               margin);
  __syncthreads();
  __shared__ SortSmem sm;
  sort_rows_block(sm, ids, k, sort);
}
}  // namespace

template <class A>
RouterOutputOf<A> route_from_logits(const DeviceTensor<A>& logits, const DeviceTensor<float>& bias, int64_t k, double scaling,
                                    bool renormalize, RouterKind kind) {
  const int64_t T_ = logits.rows(), E = logits.cols();
  if (bias.numel() != E || k < 1 || k > E) fail("cuda route: bias " + shape_str(bias.shape) + " / k " + std::to_string(k) + " do not fit E " + std::to_string(E));
  RouterOutputOf<A> out;
  out.k = k;
  out.logits = logits;
  out.scores = DeviceTensor<A>({T_, E});
  out.ids = DeviceTensor<int32_t>({T_, k});
  out.weights = DeviceTensor<A>({T_, k});
  out.margin = DeviceTensor<A>({T_});
  if (!T_) return out;
  const unsigned blocks = unsigned((T_ + kWarps - 1) / kWarps);
  const size_t smem = size_t(kWarps) * size_t(2 * E + k) * sizeof(A);
  if (smem > 48 * 1024) fail("cuda route: E = " + std::to_string(E) + ", k = " + std::to_string(k) + " needs more shared memory than supported");
  topk_kernel<A><<<blocks, 32 * kWarps, smem, gpu().stream>>>(
      logits.data(), bias.data(), int(T_), int(E), int(k), A(scaling), renormalize, kind == RouterKind::softmax,
      out.scores.data(), out.ids.data(),
      out.weights.data(), out.margin.data());
  check_launch("route (top-k)");
  return out;
}

template <class T>
RouterOutputOf<acc_t<T>> route(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& bias,
                               int64_t k, double scaling, bool renormalize, RouterKind kind) {
  const int64_t T_ = u.rows(), E = w_router.dim(0);
  if (w_router.dim(1) != u.cols()) fail("cuda route: u " + shape_str(u.shape) + " vs router " + shape_str(w_router.shape));
  if constexpr (std::is_same_v<T, double>) {  // exact mode: DGEMM logits, selection in double
    DeviceTensor<double> logits({T_, E});
    linear(u, w_router, logits);
    return route_from_logits(logits, bias, k, scaling, renormalize, kind);
  } else {
    DeviceTensor<float> logits({T_, E});
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
    return route_from_logits(logits, bias, k, scaling, renormalize, kind);
  }
}

template <class T>
RouterOutput route_and_sort(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& bias,
                            int64_t k, double scaling, bool renormalize, const SortTargets& sort, RouterKind kind) {
  const int64_t T_ = u.rows(), E = w_router.dim(0);
  if (T_ < 1 || T_ > kRouteSortMaxT || w_router.dim(1) != u.cols() || bias.numel() != E || k < 1 || k > E)
    fail("cuda route_and_sort: u " + shape_str(u.shape) + ", router " + shape_str(w_router.shape) + ", k " +
         std::to_string(k) + " (T must be 1.." + std::to_string(kRouteSortMaxT) + ")");
  RouterOutput out;
  out.k = k;
  out.logits = DeviceTensor<float>({T_, E});
  out.scores = DeviceTensor<float>({T_, E});
  out.ids = DeviceTensor<int32_t>({T_, k});
  out.weights = DeviceTensor<float>({T_, k});
  out.margin = DeviceTensor<float>({T_});
  const size_t smem = size_t(kLogitThreads / 32) * size_t(2 * E + k) * sizeof(float);
  if (smem + sizeof(SortSmem) > 48 * 1024) fail("cuda route_and_sort: E = " + std::to_string(E) + " is too large");
  route_sort_kernel<T><<<unsigned(E), kLogitThreads, smem, gpu().stream>>>(
      u.data(), w_router.data(), bias.data(), int(T_), int(E), int(u.cols()), int(k), float(scaling), renormalize,
      kind == RouterKind::softmax, out.logits.data(), out.scores.data(), out.ids.data(), out.weights.data(), out.margin.data(), sort);
  check_launch("route_and_sort");
  return out;
}

template RouterOutput route_and_sort<float>(const DeviceTensor<float>&, const DeviceTensor<float>&,
                                            const DeviceTensor<float>&, int64_t, double, bool, const SortTargets&, RouterKind);
template RouterOutput route_and_sort<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<float>&,
                                           const DeviceTensor<float>&, int64_t, double, bool, const SortTargets&, RouterKind);
template RouterOutput route_and_sort<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<float>&,
                                           const DeviceTensor<float>&, int64_t, double, bool, const SortTargets&, RouterKind);
template RouterOutput route<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                   int64_t, double, bool, RouterKind);
template RouterOutput route<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                  int64_t, double, bool, RouterKind);
template RouterOutput route<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                  int64_t, double, bool, RouterKind);
template RouterOutputOf<double> route<double>(const DeviceTensor<double>&, const DeviceTensor<float>&,
                                              const DeviceTensor<float>&, int64_t, double, bool, RouterKind);
template RouterOutput route_from_logits<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, double, bool,
                                               RouterKind);
template RouterOutputOf<double> route_from_logits<double>(const DeviceTensor<double>&, const DeviceTensor<float>&, int64_t,
                                                          double, bool, RouterKind);

}  // namespace hyoracle::cuda
