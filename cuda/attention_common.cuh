// attention_common.cuh: what the attention kernels share (cuda/attention.h for the contract).
//
// Rows of the tensor-core kernels: the (query, head) pairs of one KV head m, query-major: row r
// <-> query i = r / g, head n = m·g + r % g (g = nq / nkv), so q row r sits at
// q[(i·nq + m·g + r % g)·d] and the g heads of a query are contiguous. A block's rows share every
// K/V tile it loads (GQA: K/V read once per block). Scores are kept in raw units (fp32 mma
// accumulators); the softmax works in base 2: p = 2^(s·c − m·c), c = d^-½·log2(e), all fp32.
//
// Host side: the shape check every entry point runs, the head dims the tensor-core kernels are
// built for, and c. Included by the library's attention_*.cu and by the benchmark-only variants
// (bench/cuda/attention_variants.cu), which launch the same kernels in other configurations.
#pragma once
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/device.h"

namespace hyoracle::cuda::attn {

// q [T, nq, d], caches [cap, nkv, d] with Tc <= cap, nq a multiple of nkv, T positions, a
// context of T·nq·d elements; fail() otherwise.
inline void check_shapes(const std::vector<int64_t>& q, const std::vector<int64_t>& kc, const std::vector<int64_t>& vc,
                         int64_t Tc, int64_t npos, int64_t nctx) {
  if (q.size() != 3 || kc.size() != 3 || kc[2] != q[2] || vc != kc || q[1] % kc[1] || Tc < 0 || Tc > kc[0] ||
      npos != q[0] || nctx != q[0] * q[1] * q[2])
    fail("cuda attention: inconsistent shapes q " + shape_str(q) + ", cache " + shape_str(kc) + ", Tc " + std::to_string(Tc) +
         ", " + std::to_string(npos) + " positions, context of " + std::to_string(nctx) + " elements");
}

// Calls f(std::integral_constant<int, D>) for the head dims the tensor-core kernels are built for
// (16, 32, 48, 64, 128); false for any other d.
template <class F>
bool with_head_dim(int64_t d, F&& f) {
  switch (d) {
    case 16: f(std::integral_constant<int, 16>{}); return true;
    case 32: f(std::integral_constant<int, 32>{}); return true;
    case 48: f(std::integral_constant<int, 48>{}); return true;
    case 64: f(std::integral_constant<int, 64>{}); return true;
    case 128: f(std::integral_constant<int, 128>{}); return true;
    default: return false;
  }
}

// c = d^-1/2 · log2(e): the score scale of the base-2 softmax.
inline float log2_scale(int64_t d) { return float(1.4426950408889634 / std::sqrt(double(d))); }

// Query position of row r clamped to [-1, Tc-1] (-1: no key visible; >= Tc-1: all are).
__device__ inline int row_pos(const int64_t* q_pos, int r, int R, int g, int Tc) {
  if (r >= R) return -1;
  const int64_t p = q_pos[r / g];
  return p < 0 ? -1 : p >= Tc ? Tc - 1 : int(p);
}

// 2^x by the MUFU unit (ex2.approx.ftz: about 2 ulp, 2^-inf = 0); the 16-bit kernels only.
__device__ inline float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// One online-softmax step over NT score tiles of 8 keys for this thread's two rows (gid, gid+8):
// s holds raw scores (masked ones -inf) and becomes the unnormalised p = 2^(s·c − m·c) (fp32);
// mx (raw units) and l (this thread's partial row sum; its quad is summed at the end) are
// updated; corr = 2^((m_old − m_new)·c) is what the running output must be scaled by.
template <int NT>
__device__ inline void online_softmax(float (&s)[NT][4], float (&mx)[2], float (&l)[2], float (&corr)[2], float c) {
  float mnew[2] = {mx[0], mx[1]};
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    mnew[0] = fmaxf(mnew[0], fmaxf(s[t][0], s[t][1]));
    mnew[1] = fmaxf(mnew[1], fmaxf(s[t][2], s[t][3]));
  }
  float mu[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mnew[r] = fmaxf(mnew[r], __shfl_xor_sync(0xffffffffu, mnew[r], 1));
    mnew[r] = fmaxf(mnew[r], __shfl_xor_sync(0xffffffffu, mnew[r], 2));
    mu[r] = mnew[r] == -INFINITY ? 0.0f : mnew[r] * c;
    corr[r] = fast_exp2(mx[r] * c - mu[r]);  // mx = -inf: 0 (the running output is zero anyway)
    mx[r] = mnew[r];
  }
  float sum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[t][e] = fast_exp2(fmaf(s[t][e], c, -mu[e >> 1]));  // masked: 2^-inf = 0
      sum[e >> 1] += s[t][e];
    }
  l[0] = l[0] * corr[0] + sum[0];
  l[1] = l[1] * corr[1] + sum[1];
}

}  // namespace hyoracle::cuda::attn
