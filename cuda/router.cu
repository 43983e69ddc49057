#include "router.h"

#include <algorithm>
#include <cfloat>
#include <cstdlib>
#include <string>

#include "elementwise.h"
#include "expert_sort.cuh"

namespace hyoracle::cuda {

namespace {
constexpr int kWarps = 4;

// (value, index) order of every top-k in hyoracle: larger value first, exact ties to the lower index.
__device__ bool better(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

// Top-k of one token t, by one warp. `c` is this warp's shared memory [2E + k] (c [E], s [E], the
// selected ids [k]): the weights are formed from shared memory, not by reading back what was
// written to global memory (those dependent L2 round trips cost ~5 µs per token at k = 8).
__device__ void topk_token(const float* logits, const float* bias, int t, int E, int k, float scaling, bool renorm,
                           float* c, float* scores, int32_t* ids, float* weights, float* margin) {
  const int lane = threadIdx.x % 32;
  float* sc = c + E;
  int* sel = reinterpret_cast<int*>(sc + E);
  for (int e = lane; e < E; e += 32) {
    const float s = 1.0f / (1.0f + expf(-__ldcg(logits + int64_t(t) * E + e)));  // L2: other blocks wrote it
    scores[int64_t(t) * E + e] = s;
    sc[e] = s;
    // A score that is NaN (a NaN router input) or a corrected score of -inf ranks below every real
    // one as -FLT_MAX, lower index first: -inf marks the selected, and every round must find a
    // candidate, so ids stay inside [0, E) and the sort that follows stays in bounds; the NaN
    // itself reaches the weights and the block's output, where it shows.
    const float cv = s + bias[e];
    c[e] = cv > -INFINITY ? cv : -FLT_MAX;
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
    margin[t] = k < E ? kth - next : INFINITY;
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) sum += sc[sel[j]];
    const float denom = renorm ? sum + 1e-20f : 1.0f;
    for (int j = 0; j < k; ++j) weights[int64_t(t) * k + j] = (sc[sel[j]] / denom) * scaling;
  }
  __syncwarp();
}

// One warp per token; shared memory [kWarps][2E + k].
__global__ void topk_kernel(const float* logits, const float* bias, int T_, int E, int k, float scaling, bool renorm,
                            float* scores, int32_t* ids, float* weights, float* margin) {
  extern __shared__ float smem_all[];
  const int warp = threadIdx.x / 32, t = blockIdx.x * kWarps + warp;
  if (t >= T_) return;
  topk_token(logits, bias, t, E, k, scaling, renorm, smem_all + int64_t(warp) * (2 * E + k), scores, ids, weights, margin);
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

// Router logits for many tokens (T > kSmallT): a tiled fp32 SIMT product, no fp32 copy of u, and
// enough blocks to fill the GPU at prefill sizes (cuBLAS's 128x128 tiles gave 32 blocks for
// T = 4096, E = 128). Block (128 threads): 64 tokens x 128 experts over one split of H (splits of
// h_per_split, a multiple of kTileH), H in steps of 16 through shared memory, rows as in global
// memory (u converted to fp32 on the way in; the next step is loaded into registers while this
// one multiplies). Thread (warp w, lane l; g = l / 16, x = l % 16) owns tokens 16w + g + 2i and
// experts x + 16j (i, j < 8): per 4 h it reads 8 + 8 16-byte vectors for 256 FMA, and those
// reads take the fewest wavefronts (row stride 20 floats). One fp32 accumulator per output, h ascending;
// partial[s, t, e] is split s's sum, sum_splits adds them in split order: a fixed summation order
// for a given H.
constexpr int kTileT = 64, kTileE = 128, kTileH = 16, kLogitTileThreads = 128, kMaxSplits = 8;
// kVec: H % 8 == 0 and 16-byte aligned u and W_r: each 8-value chunk is one 16-byte load of u
// (two for fp32) and two of W_r, a warp's loads covering 16 rows x 32 bytes; else 8 scalar loads.
template <class T>
__device__ inline void load8(const T* p, bool vec, float (&v)[8]) {
  if constexpr (sizeof(T) == 2) {
    if (vec) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int q = 0; q < 8; ++q) v[q] = to_f32(e[q]);
      return;
    }
  } else {
    if (vec) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
      return;
    }
  }
#pragma unroll
  for (int q = 0; q < 8; ++q) v[q] = to_f32(p[q]);
}

template <class T, bool kVec>
__global__ void __launch_bounds__(kLogitTileThreads, 3) tiled_logits_kernel(const T* __restrict__ u, const float* __restrict__ wr,
                                                                        int T_, int E, int H, int h_per_split,
                                                                        float* __restrict__ partial) {
  constexpr int kStride = kTileH + 4;
  __shared__ __align__(16) float us[kTileT][kStride];
  __shared__ __align__(16) float ws[kTileE][kStride];
  // Staging: 8 h per chunk, kTileH / 8 chunks per row of u and of w, per step.
  constexpr int kUChunks = kTileT * (kTileH / 8) / kLogitTileThreads, kWChunks = kTileE * (kTileH / 8) / kLogitTileThreads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 16, x = lane % 16;
  const int t0 = blockIdx.x * kTileT, e0 = blockIdx.y * kTileE;
  const int h_lo = blockIdx.z * h_per_split, h_hi = min(H, h_lo + h_per_split);
  float un[kUChunks][8], wn[kWChunks][8];
  // One 8-value chunk: whole (kVec: h_hi is then a multiple of 8 too), or element by element.
  auto chunk = [&](const auto* row, bool ok, int h, float (&v)[8]) {
    if (ok && kVec) {
      load8(row + h, true, v);
    } else {
#pragma unroll
      for (int q = 0; q < 8; ++q) v[q] = ok && h + q < h_hi ? to_f32(row[h + q]) : 0.0f;
    }
  };
  auto fetch = [&](int h0) {
#pragma unroll
    for (int c = 0; c < kUChunks; ++c) {
      const int idx = c * kLogitTileThreads + tid, t = idx / (kTileH / 8), h = h0 + 8 * (idx % (kTileH / 8));
      const bool ok = t0 + t < T_ && h < h_hi;
      chunk(u + int64_t(ok ? t0 + t : 0) * H, ok, h, un[c]);
    }
#pragma unroll
    for (int c = 0; c < kWChunks; ++c) {
      const int idx = c * kLogitTileThreads + tid, e = idx / (kTileH / 8), h = h0 + 8 * (idx % (kTileH / 8));
      const bool ok = e0 + e < E && h < h_hi;
      chunk(wr + int64_t(ok ? e0 + e : 0) * H, ok, h, wn[c]);
    }
  };
  float acc[8][8] = {};
  if (h_lo < h_hi) fetch(h_lo);
  for (int h0 = h_lo; h0 < h_hi; h0 += kTileH) {
#pragma unroll
    for (int c = 0; c < kUChunks; ++c) {
      const int idx = c * kLogitTileThreads + tid;
      float* d = &us[idx / (kTileH / 8)][8 * (idx % (kTileH / 8))];
      *reinterpret_cast<float4*>(d) = make_float4(un[c][0], un[c][1], un[c][2], un[c][3]);
      *reinterpret_cast<float4*>(d + 4) = make_float4(un[c][4], un[c][5], un[c][6], un[c][7]);
    }
#pragma unroll
    for (int c = 0; c < kWChunks; ++c) {
      const int idx = c * kLogitTileThreads + tid;
      float* d = &ws[idx / (kTileH / 8)][8 * (idx % (kTileH / 8))];
      *reinterpret_cast<float4*>(d) = make_float4(wn[c][0], wn[c][1], wn[c][2], wn[c][3]);
      *reinterpret_cast<float4*>(d + 4) = make_float4(wn[c][4], wn[c][5], wn[c][6], wn[c][7]);
    }
    __syncthreads();
    if (h0 + kTileH < h_hi) fetch(h0 + kTileH);  // in flight while this step multiplies
#pragma unroll
    for (int kk = 0; kk < kTileH; kk += 4) {
      float4 ua[8], wa[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) ua[i] = *reinterpret_cast<const float4*>(&us[16 * warp + g + 2 * i][kk]);
#pragma unroll
      for (int j = 0; j < 8; ++j) wa[j] = *reinterpret_cast<const float4*>(&ws[x + 16 * j][kk]);
      // h = kk, kk+1, kk+2, kk+3 in order for each output; consecutive FMAs on different outputs.
#pragma unroll
      for (int c = 0; c < 4; ++c)
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            const float uc = c == 0 ? ua[i].x : c == 1 ? ua[i].y : c == 2 ? ua[i].z : ua[i].w;
            const float wc = c == 0 ? wa[j].x : c == 1 ? wa[j].y : c == 2 ? wa[j].z : wa[j].w;
            acc[i][j] = fmaf(uc, wc, acc[i][j]);
          }
    }
    __syncthreads();
  }
  float* out = partial + int64_t(blockIdx.z) * T_ * E;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int t = t0 + 16 * warp + g + 2 * i;
    if (t >= T_) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (e0 + x + 16 * j < E) out[int64_t(t) * E + e0 + x + 16 * j] = acc[i][j];
  }
}

// logits[i] = ((partial[0, i] + partial[1, i]) + partial[2, i]) + ...   (fp32, split order)
__global__ void sum_splits_kernel(const float* __restrict__ partial, int splits, int64_t n, float* __restrict__ logits) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = partial[i];
    for (int s = 1; s < splits; ++s) v += partial[int64_t(s) * n + i];
    logits[i] = v;
  }
}

// route_and_sort: expert_logits in every block; the last block to finish (a ticket counter, reset
// by that block for the next launch; launches on the context's one stream never overlap) runs the
// top-k of every token (warp w: tokens w, w + 8, ...) and the experts' token sort.
__device__ unsigned int g_route_ticket = 0;
template <class T>
__global__ void __launch_bounds__(kLogitThreads) route_sort_kernel(const T* __restrict__ u, const float* __restrict__ wr,
                                                                   const float* __restrict__ bias, int T_, int E, int H,
                                                                   int k, float scaling, bool renorm, float* logits,
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
    topk_token(logits, bias, t, E, k, scaling, renorm, smem_all + int64_t(warp) * (2 * E + k), scores, ids, weights,
               margin);
  __syncthreads();
  __shared__ SortSmem sm;
  sort_rows_block(sm, ids, k, sort);
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
  const size_t smem = size_t(kWarps) * size_t(2 * E + k) * sizeof(float);
  if (smem > 48 * 1024) fail("cuda route: E = " + std::to_string(E) + ", k = " + std::to_string(k) + " needs more shared memory than supported");
  topk_kernel<<<blocks, 32 * kWarps, smem, gpu().stream>>>(
      logits.data(), bias.data(), int(T_), int(E), int(k), float(scaling), renormalize, out.scores.data(), out.ids.data(),
      out.weights.data(), out.margin.data());
  check_launch("route (top-k)");
  return out;
}

// logits = Σ over the splits of partial [splits, T, E], in split order (sum_splits_kernel).
void sum_splits(const DeviceTensor<float>& partial, int splits, DeviceTensor<float>& logits) {
  const int64_t n = logits.numel();
  sum_splits_kernel<<<unsigned(std::min<int64_t>((n + 255) / 256, 4 * gpu().sms)), 256, 0, gpu().stream>>>(
      partial.data(), splits, n, logits.data());
  check_launch("route (sum of splits)");
}

// The own tiled logits kernel (HYORACLE_ROUTER_LOGITS=tiled; moe_bench measures it against cuBLAS).
template <class T>
void tiled_logits(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, DeviceTensor<float>& logits) {
  const int64_t T_ = u.rows(), H = u.cols(), E = w_router.dim(0);
  // Split H when the token x expert tiles alone would not give each SM 4 blocks.
  const int64_t tiles = ((T_ + kTileT - 1) / kTileT) * ((E + kTileE - 1) / kTileE);
  int splits = 1;
  while (splits < kMaxSplits && tiles * splits < 4 * gpu().sms && H >= 2 * splits * 2 * kTileH) splits *= 2;
  const int64_t per = ((H + splits - 1) / splits + kTileH - 1) / kTileH * kTileH;
  const dim3 grid{unsigned((T_ + kTileT - 1) / kTileT), unsigned((E + kTileE - 1) / kTileE), unsigned(splits)};
  if ((T_ + kTileT - 1) / kTileT > 2147483647 || grid.y > 65535u) fail("cuda route: too many tokens or experts for one grid");
  DeviceTensor<float> partial;
  if (splits > 1) partial = DeviceTensor<float>({splits, T_, E});
  const bool vec = H % 8 == 0 && aligned16(u.data()) && aligned16(w_router.data());
  const auto kernel = vec ? tiled_logits_kernel<T, true> : tiled_logits_kernel<T, false>;
  kernel<<<grid, kLogitTileThreads, 0, gpu().stream>>>(u.data(), w_router.data(), int(T_), int(E), int(H), int(per),
                                                       splits > 1 ? partial.data() : logits.data());
  check_launch("route (tiled logits)");
  if (splits > 1) sum_splits(partial, splits, logits);
}

constexpr int kBlasSplits = 4;

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
  } else if (T_ > 0) {
    const int64_t H = u.cols();
    const char* env = std::getenv("HYORACLE_ROUTER_LOGITS");
    if (env && std::string(env) == "tiled") {
      tiled_logits(u, w_router, logits);
    } else {
      // cuBLAS, plain fp32 (pedantic: no TF32), over an fp32 copy of u; H cut into kBlasSplits
      // parts in one strided-batched call when the token x expert tiles alone would not fill the
      // GPU (one call over T = 4096, E = 128 made 32 blocks), the parts added in order.
      DeviceTensor<float> u32;
      const float* uf = nullptr;
      if constexpr (std::is_same_v<T, float>) {
        uf = u.data();
      } else {
        u32 = DeviceTensor<float>(u.shape);
        convert(u, u32);
        uf = u32.data();
      }
      const int splits = H % kBlasSplits == 0 && H >= 256 * kBlasSplits ? kBlasSplits : 1;
      const int64_t Hs = H / splits;
      DeviceTensor<float> partial;
      if (splits > 1) partial = DeviceTensor<float>({splits, T_, E});
      float* out = splits > 1 ? partial.data() : logits.data();
      const float alpha = 1.0f, beta = 0.0f;
      check(cublasGemmStridedBatchedEx(gpu().blas, CUBLAS_OP_T, CUBLAS_OP_N, int(E), int(T_), int(Hs), &alpha, w_router.data(),
                                       CUDA_R_32F, int(H), Hs, uf, CUDA_R_32F, int(H), Hs, &beta, out, CUDA_R_32F, int(E),
                                       T_ * E, splits, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
            "route: cublasGemmStridedBatchedEx (logits)");
      if (splits > 1) sum_splits(partial, splits, logits);
    }
  }
  return route_from_logits(logits, bias, k, scaling, renormalize);
}

template <class T>
RouterOutput route_and_sort(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& bias,
                            int64_t k, double scaling, bool renormalize, const SortTargets& sort) {
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
      out.logits.data(), out.scores.data(), out.ids.data(), out.weights.data(), out.margin.data(), sort);
  check_launch("route_and_sort");
  return out;
}

template RouterOutput route_and_sort<float>(const DeviceTensor<float>&, const DeviceTensor<float>&,
                                            const DeviceTensor<float>&, int64_t, double, bool, const SortTargets&);
template RouterOutput route_and_sort<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<float>&,
                                           const DeviceTensor<float>&, int64_t, double, bool, const SortTargets&);
template RouterOutput route_and_sort<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<float>&,
                                           const DeviceTensor<float>&, int64_t, double, bool, const SortTargets&);
template RouterOutput route<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                   int64_t, double, bool);
template RouterOutput route<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                  int64_t, double, bool);
template RouterOutput route<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                  int64_t, double, bool);

}  // namespace hyoracle::cuda
