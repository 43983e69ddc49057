// attention_simt: the exact-fp32 attention kernel (attention_simt in cuda/attention.h): the fp32
// path, and every dtype at head dims the tensor-core kernels are not built for.
//
//   S[n, i, j] = (q[i, n, :] · k[j, m, :]) · d^(-1/2),  P = softmax_j(S) over j < Tc, j <= q_pos[i],
//   context[i, n·d + c] = T( Σ_j P[n, i, j] · v[j, m, c] / Σ_j P[n, i, j] )
// Shapes: q [T, nq, d], the first Tc rows of k/v [cap, nkv, d], q_pos [T] -> context [T, nq·d];
// 1 <= d <= 256, nq / nkv <= 32.
// Accumulation: fp32 throughout, no tensor cores: T values widened to fp32, dot products by
// fmaf, online softmax with expf and an fp32 running max and sum, fp32 output accumulators,
// one rounding to T at the end. When the grid would not fill the GPU (decode) the keys are
// split over blocks, each writing its fp32 (acc, m, l), merged by attention_merge (expf).
#include <algorithm>
#include <cmath>

#include "cuda/attention.h"
#include "cuda/attention_common.cuh"

namespace hyoracle::cuda {

namespace {

constexpr int kChunk = 32;   // keys per shared-memory chunk (one per lane when scoring)
constexpr int kMaxDpl = 8;   // ceil(d / 32) <= 8

// Block: `qb` queries x g heads of one KV head, one warp per (query, head); keys [j0, j1).
// Writes the normalised output when `part_acc` is null, else the split's (m, l, acc).
template <class T>
__global__ void __launch_bounds__(1024) attention_simt_kernel(const T* __restrict__ q, const T* __restrict__ kc, const T* __restrict__ vc,
                                 const int64_t* __restrict__ q_pos, int T_, int Tc, int nq, int nkv, int d, int qb,
                                 int split_len, float scale, T* __restrict__ ctx, float* __restrict__ part_acc,
                                 float* __restrict__ part_ml) {
  extern __shared__ float sm[];
  const int g = nq / nkv, warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int m = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int i = blockIdx.x * qb + warp / g, n = m * g + warp % g;
  const int ld = d + 1;
  float* ks = sm;                   // [kChunk][d+1]
  float* vs = ks + kChunk * ld;     // [kChunk][d+1]
  float* qs = vs + kChunk * ld;     // [warps][d]
  const bool active = i < T_;
  const int64_t my_pos = active ? q_pos[i] : -1;
  for (int c = lane; c < d; c += 32) qs[warp * d + c] = active ? to_f32(q[(int64_t(i) * nq + n) * d + c]) : 0.0f;
  // Keys this block needs: up to the largest visible position among its queries.
  int64_t block_max = -1;
  for (int w = 0; w < warps; ++w) {
    const int iw = blockIdx.x * qb + w / g;
    if (iw < T_ && q_pos[iw] > block_max) block_max = q_pos[iw];
  }
  const int j0 = split * split_len;
  int64_t j1_ = int64_t(j0) + split_len;
  if (j1_ > Tc) j1_ = Tc;
  if (j1_ > block_max + 1) j1_ = block_max + 1;
  const int j1 = int(j1_);
  const int dpl = (d + 31) / 32;  // d need not be a multiple of 32: lanes past d idle
  float acc[kMaxDpl];
#pragma unroll
  for (int r = 0; r < kMaxDpl; ++r) acc[r] = 0.0f;
  float mx = -INFINITY, l = 0.0f;
  for (int jc = j0; jc < j1; jc += kChunk) {
    __syncthreads();
    for (int at = threadIdx.x; at < kChunk * d; at += blockDim.x) {
      const int r = at / d, c = at % d, j = jc + r;
      const bool ok = j < j1;
      ks[r * ld + c] = ok ? to_f32(kc[(int64_t(j) * nkv + m) * d + c]) : 0.0f;
      vs[r * ld + c] = ok ? to_f32(vc[(int64_t(j) * nkv + m) * d + c]) : 0.0f;
    }
    __syncthreads();
    const int j = jc + lane;
    float s = -INFINITY;
    if (active && j < j1 && j <= my_pos) {
      float dot = 0.0f;
      for (int c = 0; c < d; ++c) dot = fmaf(qs[warp * d + c], ks[lane * ld + c], dot);
      s = dot * scale;
    }
    float cmax = s;
    for (int o = 16; o > 0; o /= 2) cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, o));
    const float mnew = fmaxf(mx, cmax);
    if (mnew == -INFINITY) continue;  // nothing visible yet (uniform across the warp)
    const float corr = mx == -INFINITY ? 0.0f : expf(mx - mnew);
    const float p = s == -INFINITY ? 0.0f : expf(s - mnew);
    float psum = p;
    for (int o = 16; o > 0; o /= 2) psum += __shfl_xor_sync(0xffffffffu, psum, o);
    l = l * corr + psum;
    mx = mnew;
#pragma unroll
    for (int r = 0; r < kMaxDpl; ++r) acc[r] *= corr;
    for (int jj = 0; jj < kChunk; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      if (pj == 0.0f) continue;
#pragma unroll
      for (int r = 0; r < kMaxDpl; ++r)
        if (r < dpl && lane + 32 * r < d) acc[r] = fmaf(pj, vs[jj * ld + lane + 32 * r], acc[r]);
    }
  }
  if (!active) return;
  if (!part_acc) {
    T* out = ctx + int64_t(i) * nq * d + int64_t(n) * d;
#pragma unroll
    for (int r = 0; r < kMaxDpl; ++r)
      if (r < dpl && lane + 32 * r < d) out[lane + 32 * r] = from_f32<T>(l > 0.0f ? acc[r] / l : 0.0f);
    return;
  }
  const int64_t slot = (int64_t(i) * nq + n) * splits + split;
#pragma unroll
  for (int r = 0; r < kMaxDpl; ++r)
    if (r < dpl && lane + 32 * r < d) part_acc[slot * d + lane + 32 * r] = acc[r];
  if (lane == 0) {
    part_ml[slot * 2] = mx;
    part_ml[slot * 2 + 1] = l;
  }
}

// Merges the splits of one (query, head): out = Σ_s acc_s e^(m_s − M) / Σ_s l_s e^(m_s − M).
template <class T>
__global__ void attention_merge(const float* part_acc, const float* part_ml, int splits, int d, int nq, T* ctx) {
  const int64_t qh = blockIdx.x;  // i * nq + n
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, part_ml[(qh * splits + s) * 2]);
  float L = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float ms = part_ml[(qh * splits + s) * 2];
    if (ms != -INFINITY) L += part_ml[(qh * splits + s) * 2 + 1] * expf(ms - M);
  }
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ms = part_ml[(qh * splits + s) * 2];
      if (ms != -INFINITY) o += part_acc[(qh * splits + s) * d + c] * expf(ms - M);
    }
    ctx[qh * d + c] = from_f32<T>(L > 0.0f ? o / L : 0.0f);
  }
}

}  // namespace

template <class T>
void attention_simt(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                    const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  attn::check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  const int64_t T_ = q.dim(0), nq = q.dim(1), d = q.dim(2), nkv = k_cache.dim(1);
  const int64_t g = nq / nkv;
  if (d < 1 || d > 32 * kMaxDpl || g > 32) fail("cuda attention: needs 1 <= head_dim <= 256, nq/nkv <= 32");
  if (!T_) return;
  const int qb = int(std::max<int64_t>(1, std::min<int64_t>(T_, 32 / g > 4 ? 4 : 32 / g)));
  const int64_t qblocks = (T_ + qb - 1) / qb;
  // Split the keys over blocks when the grid would otherwise not fill the GPU (decode).
  const int64_t want = 2 * int64_t(gpu().sms);
  int64_t splits = std::max<int64_t>(1, std::min<int64_t>((Tc + 255) / 256, (want + qblocks * nkv - 1) / (qblocks * nkv)));
  if (qblocks * nkv >= want) splits = 1;
  const int64_t split_len = std::max<int64_t>(kChunk, ((Tc + splits - 1) / splits + kChunk - 1) / kChunk * kChunk);
  splits = std::max<int64_t>(1, (Tc + split_len - 1) / split_len);
  const int threads = int(g) * qb * 32;
  const size_t smem = size_t(2 * kChunk * (d + 1) + threads / 32 * d) * sizeof(float);
  const dim3 grid{unsigned(qblocks), unsigned(nkv), unsigned(splits)};
  const float scale = float(1.0 / std::sqrt(double(d)));
  static const bool raised = [] {  // once per process (also allowed inside a graph capture)
    check(cudaFuncSetAttribute(attention_simt_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024),
          "attention smem");
    return true;
  }();
  (void)raised;
  if (smem > 96 * 1024) fail("cuda attention: head_dim too large for shared memory");
  if (splits == 1) {
    attention_simt_kernel<T><<<grid, threads, smem, gpu().stream>>>(q.data(), k_cache.data(), v_cache.data(), q_pos.data(),
                                                                     int(T_), int(Tc), int(nq), int(nkv), int(d), qb,
                                                                     int(split_len), scale, context.data(), nullptr, nullptr);
    check_launch("attention");
    return;
  }
  DeviceTensor<float> part_acc({T_ * nq * splits, d}), part_ml({T_ * nq * splits, 2});
  attention_simt_kernel<T><<<grid, threads, smem, gpu().stream>>>(q.data(), k_cache.data(), v_cache.data(), q_pos.data(),
                                                                   int(T_), int(Tc), int(nq), int(nkv), int(d), qb,
                                                                   int(split_len), scale, nullptr, part_acc.data(),
                                                                   part_ml.data());
  check_launch("attention (split)");
  attention_merge<T><<<unsigned(T_ * nq), 128, 0, gpu().stream>>>(part_acc.data(), part_ml.data(), int(splits), int(d),
                                                                    int(nq), context.data());
  check_launch("attention merge");
}

template void attention_simt<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template void attention_simt<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template void attention_simt<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
