#include "cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda/mma.cuh"

namespace hyoracle::cuda {

namespace {

constexpr int kChunk = 32;   // keys per shared-memory chunk (one per lane when scoring)
constexpr int kMaxDpl = 8;   // ceil(d / 32) <= 8

// ---- the SIMT kernel: exact fp32 (the fp32 path), and the fallback for other head dims ----------
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

// ---- tensor-core kernels (16-bit T) -------------------------------------------------------------
// Rows: the (query, head) pairs of one KV head m, query-major: row r <-> query i = r / g, head
// n = m·g + r % g, so q row r sits at q[(i·nq + m·g + r % g)·d] and the g heads of a query are
// contiguous. A block's rows share every K/V tile it loads (GQA: K/V read once per block).
// Scores are kept in raw units; the softmax works in base 2: p = 2^(s·c − m·c), c = d^-½·log2(e).

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

// Prefill: a block = W·16·MT rows of one KV head (W warps × MT tiles of 16 rows), key tiles of BN keys through
// shared memory in a ring of S stages filled by cp.async (tile t + S − 1 is requested while tile t
// is computed; one barrier per tile); rows padded to D + 8 elements so that ldmatrix's 8
// row addresses fall in distinct banks. Q fragments stay in registers for the whole block.
// attention_prefill uses, at head_dim 128, W = 4, MT = 2, BN = 64, S = 2 (the fastest of the
// variants measured on an H200, bench/cuda/NOTES.md; 2 blocks of 4 warps per SM), and W = 8,
// MT = 1, BN = 64, S = 3 at the other head dims (the first measured default); the other
// combinations are benchmark variants.
constexpr int kPrefillWarps = 8, kPrefillKeys = 64, kPrefillStages = 3, kPrefillTiles = 1;
template <int D, int W, int BN, int S, int MT>
constexpr size_t prefill_smem_bytes() { return size_t(W * 16 * MT + 2 * S * BN) * (D + 8) * 2; }

template <class T, int D, int W, int BN, int S, int MT>
__global__ void __launch_bounds__(W * 32, 1)
    flash_prefill_kernel(const T* __restrict__ q, const T* __restrict__ kc, const T* __restrict__ vc,
                         const int64_t* __restrict__ q_pos, int T_, int Tc, int nq, int nkv, float c,
                         T* __restrict__ ctx) {
  // CH: 16-byte chunks a row. MT = 1: Q fragments live in registers; MT = 2: each warp holds two
  // 16-row tiles (every K/V fragment feeds two mmas) and re-reads its Q fragments from smem.
  constexpr int kBM = W * 16 * MT, LD = D + 8, KS = D / 16, NT = BN / 8, ON = D / 8, CH = D / 8;
  extern __shared__ uint4 smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);  // [kBM][LD]
  T* ks = qs + kBM * LD;                   // [S][BN][LD]
  T* vs = ks + S * BN * LD;                // [S][BN][LD]
  __shared__ int s_max[W];
  const int g = nq / nkv, m = blockIdx.y, R = T_ * g;
  const int r0 = (gridDim.x - 1 - blockIdx.x) * kBM;  // the longest (latest) rows start first
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, gid = lane / 4, tig = lane % 4;
  const int64_t kv_stride = int64_t(nkv) * D;

  // Positions of this thread's rows (gid, gid + 8 of each of its m-tiles); the warp's extremes.
  int pos[MT][2];
  int wmax = -1, wmin = Tc;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = r0 + (warp * MT + mt) * 16 + gid + 8 * h;
      pos[mt][h] = row_pos(q_pos, r, R, g, Tc);
      wmax = max(wmax, pos[mt][h]);
      if (r < R) wmin = min(wmin, pos[mt][h]);
    }
  for (int o = 16; o > 0; o /= 2) {
    wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));
    wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
  }
  if (lane == 0) s_max[warp] = wmax;

  // Q tile (rows past R zero-filled) and the first K/V tile: one cp.async group.
  for (int at = tid; at < kBM * CH; at += blockDim.x) {
    const int r = at / CH, ch = at % CH, rr = r0 + r;
    const T* src = rr < R ? q + ((int64_t(rr / g) * nq + m * g + rr % g) * D + ch * 8) : q;
    mma::cp_async16(mma::smem_addr(qs + r * LD + ch * 8), src, rr < R ? 16 : 0);
  }
  auto load_kv = [&](int tile, int stage) {
    for (int at = tid; at < BN * CH; at += blockDim.x) {
      const int r = at / CH, ch = at % CH, j = tile * BN + r;
      const bool ok = j < Tc;
      const int64_t off = ok ? int64_t(j) * kv_stride + int64_t(m) * D + ch * 8 : 0;
      mma::cp_async16(mma::smem_addr(ks + (stage * BN + r) * LD + ch * 8), kc + off, ok ? 16 : 0);
      mma::cp_async16(mma::smem_addr(vs + (stage * BN + r) * LD + ch * 8), vc + off, ok ? 16 : 0);
    }
  };
  __syncthreads();
  int bmax = -1;
  for (int w = 0; w < W; ++w) bmax = max(bmax, s_max[w]);
  const int ntiles = (bmax + 1 + BN - 1) / BN;  // keys 0..bmax
  for (int st = 0; st < S - 1; ++st) {  // group 0: Q and tile 0; group st: tile st
    if (st < ntiles) load_kv(st, st);
    mma::cp_async_commit();
  }

  float o[MT][ON][4];
  float mx[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int t = 0; t < ON; ++t) o[mt][t][0] = o[mt][t][1] = o[mt][t][2] = o[mt][t][3] = 0.0f;
    mx[mt][0] = mx[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }
  uint32_t qf[MT == 1 ? KS : 1][4];  // MT = 1: the warp's Q fragments, loaded at the first tile
  const int mi = lane / 8;
  auto q_addr = [&](int mt, int k) {
    return mma::smem_addr(qs + ((warp * MT + mt) * 16 + lane % 16) * LD + k * 16 + (lane / 16) * 8);
  };

  for (int tile = 0; tile < ntiles; ++tile) {
    mma::cp_async_wait<S - 2>();  // this thread's copies of tile `tile` have landed
    __syncthreads();              // everyone's have, and every warp is done with tile − 1
    if (tile + S - 1 < ntiles) load_kv(tile + S - 1, (tile + S - 1) % S);  // the stage tile − 1 used
    mma::cp_async_commit();
    if constexpr (MT == 1) {
      if (tile == 0) {
#pragma unroll
        for (int k = 0; k < KS; ++k) mma::ldmatrix_x4(qf[k], q_addr(0, k));
      }
    }
    const int j0 = tile * BN;
    if (wmax < j0) continue;  // no row of this warp sees a key of the tile
    const T* kt = ks + (tile % S) * BN * LD;
    const T* vt = vs + (tile % S) * BN * LD;
    float s[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int t = 0; t < NT; ++t) s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.0f;
#pragma unroll
    for (int k = 0; k < KS; ++k) {
      uint32_t qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (MT == 1) {
#pragma unroll
          for (int x = 0; x < 4; ++x) qa[mt][x] = qf[k][x];
        } else {
          mma::ldmatrix_x4(qa[mt], q_addr(mt, k));
        }
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t b[4];
        mma::ldmatrix_x4(b, mma::smem_addr(kt + (np * 16 + (mi / 2) * 8 + lane % 8) * LD + k * 16 + (mi % 2) * 8));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma::mma16816<T>(s[mt][2 * np], qa[mt], b[0], b[1]);
          mma::mma16816<T>(s[mt][2 * np + 1], qa[mt], b[2], b[3]);
        }
      }
    }
    if (j0 + BN - 1 > wmin) {  // the tile crosses some row's last visible key: mask
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int t = 0; t < NT; ++t)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int j = j0 + t * 8 + 2 * tig + (e & 1);
            if (j > pos[mt][e >> 1]) s[mt][t][e] = -INFINITY;
          }
    }
    uint32_t p[MT][BN / 16][4];  // P rounded to T: the A operands of P·V
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float corr[2];
      online_softmax<NT>(s[mt], mx[mt], l[mt], corr, c);
      if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {  // a row max moved
#pragma unroll
        for (int t = 0; t < ON; ++t)
          o[mt][t][0] *= corr[0], o[mt][t][1] *= corr[0], o[mt][t][2] *= corr[1], o[mt][t][3] *= corr[1];
      }
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        p[mt][kk][0] = mma::pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        p[mt][kk][1] = mma::pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        p[mt][kk][2] = mma::pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        p[mt][kk][3] = mma::pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t b[4];
        mma::ldmatrix_x4_trans(b, mma::smem_addr(vt + (kk * 16 + (mi % 2) * 8 + lane % 8) * LD + dn * 16 + (mi / 2) * 8));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma::mma16816<T>(o[mt][2 * dn], p[mt][kk], b[0], b[1]);
          mma::mma16816<T>(o[mt][2 * dn + 1], p[mt][kk], b[2], b[3]);
        }
      }
  }
  mma::cp_async_wait<0>();
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float lr = l[mt][h];
      lr += __shfl_xor_sync(0xffffffffu, lr, 1);
      lr += __shfl_xor_sync(0xffffffffu, lr, 2);
      const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
      const int r = r0 + (warp * MT + mt) * 16 + gid + 8 * h;
      if (r >= R) continue;
      T* out = ctx + (int64_t(r / g) * nq + m * g + r % g) * D + 2 * tig;
#pragma unroll
      for (int t = 0; t < ON; ++t)
        *reinterpret_cast<uint32_t*>(out + t * 8) = mma::pack2<T>(o[mt][t][2 * h] * inv, o[mt][t][2 * h + 1] * inv);
    }
}

// Decode (few rows, long cache): split-KV. Block (split, m, row group of 16 rows) = 4 warps; each
// warp takes a quarter of the split's keys, 16 at a time, straight from global memory into
// mma fragments (no shared memory): 16-byte loads, all 16 issued before the first use.
// The head dimension is permuted consistently so that every load is contiguous:
//   Q·Kᵀ: thread tig holds dims [tig·D/4, (tig+1)·D/4) of its key and query rows; k-step s uses
//         its words 2s (b0/a0,a1) and 2s+1 (b1/a2,a3), the same dims for A and B;
//   P·V:  the output column n·(D/8) + t of n-tile t is column n of that mma, so thread gid loads
//         columns [gid·D/8, (gid+1)·D/8) of the 4 keys its b0/b1 need, and ends up holding output
//         columns [tig·D/4, (tig+1)·D/4) of its two rows.
constexpr int kDecodeWarps = 4, kDecodeRows = 16;
constexpr int64_t kDecodeRowsMax = 64;  // attention() takes the decode kernel up to this many rows per KV head

// W consecutive 32-bit words from global memory, as wide as their alignment allows (16, 8 or 4
// bytes: the callers' offsets are multiples of 4·W bytes up to 16); zeros when !ok.
template <int W>
__device__ inline void load_words(uint32_t (&w)[W], const void* p, bool ok) {
  if constexpr (W % 4 == 0) {
#pragma unroll
    for (int i = 0; i < W / 4; ++i) {
      const uint4 v = ok ? __ldg(reinterpret_cast<const uint4*>(p) + i) : make_uint4(0, 0, 0, 0);
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else if constexpr (W % 2 == 0) {
#pragma unroll
    for (int i = 0; i < W / 2; ++i) {
      const uint2 v = ok ? __ldg(reinterpret_cast<const uint2*>(p) + i) : make_uint2(0, 0);
      w[2 * i] = v.x, w[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < W; ++i) w[i] = ok ? __ldg(reinterpret_cast<const uint32_t*>(p) + i) : 0u;
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    flash_decode_kernel(const T* __restrict__ q, const T* __restrict__ kc, const T* __restrict__ vc,
                        const int64_t* __restrict__ q_pos, int T_, int Tc, int nq, int nkv, int split_len, float c,
                        T* __restrict__ ctx, float* __restrict__ part_acc, float* __restrict__ part_ml) {
  constexpr int KS = D / 16, QW = D / 8, VW = D / 16, ON = D / 8;  // words a thread holds per row/key
  __shared__ float s_m[kDecodeWarps][kDecodeRows], s_l[kDecodeWarps][kDecodeRows];
  // Output tiles, row stride D + 4 and one pad word after each quarter row: the fragment stores
  // (4 quarter-row owners x 8 rows) and the row-wise reads both hit 32 distinct banks.
  constexpr int LDO = D + 4;
  __shared__ float s_o[kDecodeWarps][kDecodeRows][LDO];
  const int g = nq / nkv, m = blockIdx.y, split = blockIdx.x, splits = gridDim.x, R = T_ * g;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int ra = blockIdx.z * kDecodeRows + gid, rb = ra + 8;
  const int pa = row_pos(q_pos, ra, R, g, Tc), pb = row_pos(q_pos, rb, R, g, Tc);
  int bmax = max(pa, pb);
  for (int o = 16; o > 0; o /= 2) bmax = max(bmax, __shfl_xor_sync(0xffffffffu, bmax, o));
  const int64_t kv_stride = int64_t(nkv) * D;
  const int j_end = min(min(split * split_len + split_len, Tc), bmax + 1);
  const int wl = split_len / kDecodeWarps;
  const int wj0 = split * split_len + warp * wl, wj1 = min(wj0 + wl, j_end);

  uint32_t qa[KS][4];
  {
    uint32_t wa[QW], wb[QW];
    const int off = tig * (D / 4);
    load_words<QW>(wa, q + (int64_t(ra / g) * nq + m * g + ra % g) * D + off, ra < R);
    load_words<QW>(wb, q + (int64_t(rb / g) * nq + m * g + rb % g) * D + off, rb < R);
#pragma unroll
    for (int s = 0; s < KS; ++s) qa[s][0] = wa[2 * s], qa[s][1] = wb[2 * s], qa[s][2] = wa[2 * s + 1], qa[s][3] = wb[2 * s + 1];
  }
  float o[ON][4];
#pragma unroll
  for (int t = 0; t < ON; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
  float mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int j = wj0; j < wj1; j += 16) {
    uint32_t k0[QW], k1[QW], v[4][VW];
    const int jk0 = j + gid, jk1 = j + 8 + gid;
    load_words<QW>(k0, kc + int64_t(jk0) * kv_stride + int64_t(m) * D + tig * (D / 4), jk0 < wj1);
    load_words<QW>(k1, kc + int64_t(jk1) * kv_stride + int64_t(m) * D + tig * (D / 4), jk1 < wj1);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int jv = j + 2 * tig + (e & 1) + (e >> 1) * 8;  // keys of b0 (e = 0, 1) and b1 (e = 2, 3)
      load_words<VW>(v[e], vc + int64_t(jv) * kv_stride + int64_t(m) * D + gid * (D / 8), jv < wj1);
    }
    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int k = 0; k < KS; ++k) {
      mma::mma16816<T>(s[0], qa[k], k0[2 * k], k0[2 * k + 1]);
      mma::mma16816<T>(s[1], qa[k], k1[2 * k], k1[2 * k + 1]);
    }
#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int jj = j + t * 8 + 2 * tig + (e & 1);
        if (jj >= wj1 || jj > (e < 2 ? pa : pb)) s[t][e] = -INFINITY;
      }
    float corr[2];
    online_softmax<2>(s, mx, l, corr, c);
    uint32_t p[4];
    p[0] = mma::pack2<T>(s[0][0], s[0][1]);
    p[1] = mma::pack2<T>(s[0][2], s[0][3]);
    p[2] = mma::pack2<T>(s[1][0], s[1][1]);
    p[3] = mma::pack2<T>(s[1][2], s[1][3]);
#pragma unroll
    for (int t = 0; t < ON; ++t) {
      const uint32_t sel = (t & 1) ? 0x7632u : 0x5410u;  // high or low halves of the two words
      const uint32_t b0 = __byte_perm(v[0][t / 2], v[1][t / 2], sel), b1 = __byte_perm(v[2][t / 2], v[3][t / 2], sel);
      o[t][0] *= corr[0], o[t][1] *= corr[0], o[t][2] *= corr[1], o[t][3] *= corr[1];
      mma::mma16816<T>(o[t], p, b0, b1);
    }
  }
  // Merge the 4 warps in shared memory: per row M = max m_w, L = Σ l_w 2^((m_w − M)·c), acc likewise.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  if (tig == 0) {
    s_m[warp][gid] = mx[0], s_m[warp][gid + 8] = mx[1];
    s_l[warp][gid] = l[0], s_l[warp][gid + 8] = l[1];
  }
#pragma unroll
  for (int t = 0; t < ON; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e) s_o[warp][gid + (e >> 1) * 8][(2 * tig + (e & 1)) * (D / 8) + t + tig] = o[t][e];
  __syncthreads();
  for (int at = threadIdx.x; at < kDecodeRows * D; at += blockDim.x) {
    const int row = at / D, col = at % D, r = blockIdx.z * kDecodeRows + row;
    if (r >= R) continue;
    float M = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, s_m[w][row]);
    float L = 0.0f, acc = 0.0f;
    if (M != -INFINITY)
      for (int w = 0; w < kDecodeWarps; ++w) {
        const float f = exp2f((s_m[w][row] - M) * c);  // -inf for an empty warp: 0
        L += s_l[w][row] * f;
        acc += s_o[w][row][col + col / (D / 4)] * f;
      }
    const int64_t qh = int64_t(r / g) * nq + m * g + r % g;
    if (!part_acc) {
      ctx[qh * D + col] = from_f32<T>(L > 0.0f ? acc / L : 0.0f);
      continue;
    }
    const int64_t slot = qh * splits + split;
    part_acc[slot * D + col] = acc;
    if (col == 0) part_ml[slot * 2] = M == -INFINITY ? -INFINITY : M * c, part_ml[slot * 2 + 1] = L;
  }
}

// Decode, second form ("ring"): the same blocks and split as flash_decode_kernel, but each warp
// streams its keys through its own ring of S shared-memory stages of 16 keys (K and V rows
// padded to D + 8), filled by cp.async S − 1 steps ahead, and takes its mma fragments with
// ldmatrix (standard layouts, as in the prefill kernel). More bytes in flight per warp than the
// register form (S − 1 steps of 16 keys instead of one), no K/V registers held.
template <int D, int S>
constexpr size_t decode_ring_smem_bytes() {
  return size_t(kDecodeRows + kDecodeWarps * S * 2 * 16) * (D + 8) * 2 + 2 * kDecodeWarps * kDecodeRows * sizeof(float);
}

template <class T, int D, int S>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    flash_decode_ring_kernel(const T* __restrict__ q, const T* __restrict__ kc, const T* __restrict__ vc,
                             const int64_t* __restrict__ q_pos, int T_, int Tc, int nq, int nkv, int split_len, float c,
                             T* __restrict__ ctx, float* __restrict__ part_acc, float* __restrict__ part_ml) {
  constexpr int LD = D + 8, KS = D / 16, ON = D / 8, CH = D / 8, STAGE = 2 * 16 * LD, LDO = D + 4;
  static_assert(kDecodeWarps * kDecodeRows * LDO * sizeof(float) <= size_t(kDecodeWarps) * S * STAGE * 2,
                "the output tiles reuse the rings");
  extern __shared__ uint4 smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);                                    // [16][LD]
  T* rings = qs + kDecodeRows * LD;                                          // [warp][S][K|V][16][LD]
  float* s_m = reinterpret_cast<float*>(rings + kDecodeWarps * S * STAGE);  // [warp][16]
  float* s_l = s_m + kDecodeWarps * kDecodeRows;                             // [warp][16]
  float* s_o = reinterpret_cast<float*>(rings);  // after the key loop: [warp][16][LDO]
  const int g = nq / nkv, m = blockIdx.y, split = blockIdx.x, splits = gridDim.x, R = T_ * g;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int r0 = blockIdx.z * kDecodeRows, ra = r0 + gid, rb = ra + 8;
  const int pa = row_pos(q_pos, ra, R, g, Tc), pb = row_pos(q_pos, rb, R, g, Tc);
  int bmax = max(pa, pb);
  for (int o = 16; o > 0; o /= 2) bmax = max(bmax, __shfl_xor_sync(0xffffffffu, bmax, o));
  const int64_t kv_stride = int64_t(nkv) * D;
  const int j_end = min(min(split * split_len + split_len, Tc), bmax + 1);
  const int wl = split_len / kDecodeWarps;
  const int wj0 = split * split_len + warp * wl, wj1 = min(wj0 + wl, j_end);
  const int nsteps = wj1 > wj0 ? (wj1 - wj0 + 15) / 16 : 0;

  for (int at = threadIdx.x; at < kDecodeRows * CH; at += blockDim.x) {  // group 0: Q (rows past R zero)
    const int r = at / CH, ch = at % CH, rr = r0 + r;
    const T* src = rr < R ? q + ((int64_t(rr / g) * nq + m * g + rr % g) * D + ch * 8) : q;
    mma::cp_async16(mma::smem_addr(qs + r * LD + ch * 8), src, rr < R ? 16 : 0);
  }
  mma::cp_async_commit();
  T* ring = rings + warp * S * STAGE;
  auto load = [&](int step, int stage) {  // keys wj0 + 16·step .. +15 (past wj1: zeros)
    T* kd = ring + stage * STAGE;
    T* vd = kd + 16 * LD;
    for (int at = lane; at < 16 * CH; at += 32) {
      const int r = at / CH, ch = at % CH, j = wj0 + 16 * step + r;
      const bool ok = j < wj1;
      const int64_t off = ok ? int64_t(j) * kv_stride + int64_t(m) * D + ch * 8 : 0;
      mma::cp_async16(mma::smem_addr(kd + r * LD + ch * 8), kc + off, ok ? 16 : 0);
      mma::cp_async16(mma::smem_addr(vd + r * LD + ch * 8), vc + off, ok ? 16 : 0);
    }
  };
  for (int st = 0; st < S - 1; ++st) {  // groups 1 .. S-1: steps 0 .. S-2
    if (st < nsteps) load(st, st);
    mma::cp_async_commit();
  }
  mma::cp_async_wait<S - 1>();  // Q (this thread's part)
  __syncthreads();              // everyone's part
  uint32_t qf[KS][4];
#pragma unroll
  for (int k = 0; k < KS; ++k) mma::ldmatrix_x4(qf[k], mma::smem_addr(qs + (lane % 16) * LD + k * 16 + (lane / 16) * 8));
  float o[ON][4];
#pragma unroll
  for (int t = 0; t < ON; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
  float mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int mi = lane / 8;
  for (int i = 0; i < nsteps; ++i) {
    mma::cp_async_wait<S - 2>();  // step i (this lane's copies)
    __syncwarp();                 // the warp's copies; and every lane is done with step i − 1
    if (i + S - 1 < nsteps) load(i + S - 1, (i + S - 1) % S);  // into the stage step i − 1 used
    mma::cp_async_commit();
    const T* kt = ring + (i % S) * STAGE;
    const T* vt = kt + 16 * LD;
    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int k = 0; k < KS; ++k) {
      uint32_t b[4];
      mma::ldmatrix_x4(b, mma::smem_addr(kt + ((mi / 2) * 8 + lane % 8) * LD + k * 16 + (mi % 2) * 8));
      mma::mma16816<T>(s[0], qf[k], b[0], b[1]);
      mma::mma16816<T>(s[1], qf[k], b[2], b[3]);
    }
    const int j0 = wj0 + 16 * i;
#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = j0 + t * 8 + 2 * tig + (e & 1);
        if (j >= wj1 || j > (e < 2 ? pa : pb)) s[t][e] = -INFINITY;
      }
    float corr[2];
    online_softmax<2>(s, mx, l, corr, c);
    uint32_t p[4];
    p[0] = mma::pack2<T>(s[0][0], s[0][1]);
    p[1] = mma::pack2<T>(s[0][2], s[0][3]);
    p[2] = mma::pack2<T>(s[1][0], s[1][1]);
    p[3] = mma::pack2<T>(s[1][2], s[1][3]);
#pragma unroll
    for (int t = 0; t < ON; ++t) o[t][0] *= corr[0], o[t][1] *= corr[0], o[t][2] *= corr[1], o[t][3] *= corr[1];
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      uint32_t b[4];
      mma::ldmatrix_x4_trans(b, mma::smem_addr(vt + ((mi % 2) * 8 + lane % 8) * LD + dn * 16 + (mi / 2) * 8));
      mma::mma16816<T>(o[2 * dn], p, b[0], b[1]);
      mma::mma16816<T>(o[2 * dn + 1], p, b[2], b[3]);
    }
  }
  mma::cp_async_wait<0>();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  __syncthreads();  // every warp is done with its ring: the output tiles take its place
  if (tig == 0) {
    s_m[warp * kDecodeRows + gid] = mx[0], s_m[warp * kDecodeRows + gid + 8] = mx[1];
    s_l[warp * kDecodeRows + gid] = l[0], s_l[warp * kDecodeRows + gid + 8] = l[1];
  }
#pragma unroll
  for (int t = 0; t < ON; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      *reinterpret_cast<float2*>(s_o + (warp * kDecodeRows + gid + 8 * h) * LDO + t * 8 + 2 * tig) =
          make_float2(o[t][2 * h], o[t][2 * h + 1]);
  __syncthreads();
  // Merge the 4 warps: per row M = max m_w, L = Σ l_w 2^((m_w − M)·c), acc likewise.
  for (int at = threadIdx.x; at < kDecodeRows * D; at += blockDim.x) {
    const int row = at / D, col = at % D, r = r0 + row;
    if (r >= R) continue;
    float M = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, s_m[w * kDecodeRows + row]);
    float L = 0.0f, acc = 0.0f;
    if (M != -INFINITY)
      for (int w = 0; w < kDecodeWarps; ++w) {
        const float f = exp2f((s_m[w * kDecodeRows + row] - M) * c);  // -inf for an empty warp: 0
        L += s_l[w * kDecodeRows + row] * f;
        acc += s_o[(w * kDecodeRows + row) * LDO + col] * f;
      }
    const int64_t qh = int64_t(r / g) * nq + m * g + r % g;
    if (!part_acc) {
      ctx[qh * D + col] = from_f32<T>(L > 0.0f ? acc / L : 0.0f);
      continue;
    }
    const int64_t slot = qh * splits + split;
    part_acc[slot * D + col] = acc;
    if (col == 0) part_ml[slot * 2] = M == -INFINITY ? -INFINITY : M * c, part_ml[slot * 2 + 1] = L;
  }
}

// Merges the splits of one (query, head) row qh = blockIdx.x: out = Σ_s acc_s w_s / Σ_s l_s w_s,
// w_s = 2^(m_s − max m) (m in base-2 units). 8 groups of 32 lanes share the splits; lane i
// owns columns 4i..4i+3.
template <class T>
__global__ void __launch_bounds__(256) flash_decode_merge(const float* __restrict__ part_acc, const float* __restrict__ part_ml,
                                                          int splits, int d, T* __restrict__ ctx) {
  __shared__ float s_red[8][128];
  __shared__ float s_ml[2];
  const int64_t qh = blockIdx.x;
  const int grp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* ml = part_ml + qh * splits * 2;
  if (threadIdx.x < 32) {
    float M = -INFINITY;
    for (int s = lane; s < splits; s += 32) M = fmaxf(M, ml[2 * s]);
    for (int o = 16; o > 0; o /= 2) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float L = 0.0f;
    if (M != -INFINITY)
      for (int s = lane; s < splits; s += 32) L += ml[2 * s + 1] * exp2f(ml[2 * s] - M);
    for (int o = 16; o > 0; o /= 2) L += __shfl_xor_sync(0xffffffffu, L, o);
    if (lane == 0) s_ml[0] = M, s_ml[1] = L;
  }
  __syncthreads();
  const float M = s_ml[0], L = s_ml[1];
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (M != -INFINITY && 4 * lane < d)
    for (int s = grp; s < splits; s += 8) {
      const float w = exp2f(ml[2 * s] - M);
      const float4 a = *reinterpret_cast<const float4*>(part_acc + (qh * splits + s) * d + 4 * lane);
      acc[0] += w * a.x, acc[1] += w * a.y, acc[2] += w * a.z, acc[3] += w * a.w;
    }
#pragma unroll
  for (int e = 0; e < 4; ++e) s_red[grp][4 * lane + e] = acc[e];
  __syncthreads();
  for (int col = threadIdx.x; col < d; col += blockDim.x) {
    float o = 0.0f;
    for (int gi = 0; gi < 8; ++gi) o += s_red[gi][col];
    ctx[qh * d + col] = from_f32<T>(L > 0.0f ? o / L : 0.0f);
  }
}

}  // namespace

namespace {

void check_shapes(const std::vector<int64_t>& q, const std::vector<int64_t>& kc, const std::vector<int64_t>& vc, int64_t Tc,
                  int64_t npos, int64_t nctx) {
  if (q.size() != 3 || kc.size() != 3 || kc[2] != q[2] || vc != kc || q[1] % kc[1] || Tc < 0 || Tc > kc[0] ||
      npos != q[0] || nctx != q[0] * q[1] * q[2])
    fail("cuda attention: inconsistent shapes q " + shape_str(q) + ", cache " + shape_str(kc) + ", Tc " + std::to_string(Tc) +
         ", " + std::to_string(npos) + " positions, context of " + std::to_string(nctx) + " elements");
}

// The old SIMT kernel (exact fp32 arithmetic): every dtype, 1 <= d <= 256.
template <class T>
void attention_simt(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                    const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
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

// Calls f(std::integral_constant<int, D>) for the head dims the tensor-core kernels are built for.
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

float log2_scale(int64_t d) { return float(1.4426950408889634 / std::sqrt(double(d))); }  // d^-1/2 · log2(e)

// One launch of the prefill kernel with W warps of MT row tiles, BN-key tiles, S stages.
template <class T, int D, int W, int BN, int S, int MT>
void launch_prefill(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                    const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  const int64_t T_ = q.dim(0), nq = q.dim(1), nkv = k_cache.dim(1), R = T_ * (nq / nkv);
  constexpr size_t smem = prefill_smem_bytes<D, W, BN, S, MT>();
  static const bool raised = [] {
    check(cudaFuncSetAttribute(flash_prefill_kernel<T, D, W, BN, S, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
          "attention prefill smem");
    return true;
  }();
  (void)raised;
  const dim3 grid{unsigned((R + W * 16 * MT - 1) / (W * 16 * MT)), unsigned(nkv)};
  flash_prefill_kernel<T, D, W, BN, S, MT><<<grid, W * 32, smem, gpu().stream>>>(
      q.data(), k_cache.data(), v_cache.data(), q_pos.data(), int(T_), int(Tc), int(nq), int(nkv), log2_scale(D),
      context.data());
  check_launch("attention prefill");
}

}  // namespace

template <class T>
bool attention_mma_supported(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache,
                             const DeviceTensor<T>& context) {
  if constexpr (std::is_same_v<T, float>) {
    return false;
  } else {
    const int64_t d = q.shape.size() == 3 ? q.dim(2) : 0;
    return (d == 16 || d == 32 || d == 48 || d == 64 || d == 128) && aligned16(q.data()) && aligned16(k_cache.data()) &&
           aligned16(v_cache.data()) && reinterpret_cast<uintptr_t>(context.data()) % 4 == 0;
  }
}

template <class T>
void attention_prefill(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                       const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if constexpr (std::is_same_v<T, float>) {
    fail("cuda attention_prefill: the tensor-core kernel takes bf16 or fp16 (fp32 uses the exact kernel)");
  } else {
    if (!attention_mma_supported(q, k_cache, v_cache, context))
      fail("cuda attention_prefill: needs head_dim in {16, 32, 48, 64, 128} and 16-byte aligned buffers, got head_dim " +
           std::to_string(q.dim(2)));
    if (!q.dim(0)) return;
    if (q.dim(2) == 128) return launch_prefill<T, 128, 4, 64, 2, 2>(q, k_cache, v_cache, Tc, q_pos, context);
    with_head_dim(q.dim(2), [&](auto dc) {
      launch_prefill<T, decltype(dc)::value, kPrefillWarps, kPrefillKeys, kPrefillStages, kPrefillTiles>(q, k_cache, v_cache, Tc,
                                                                                                      q_pos, context);
    });
  }
}

namespace {
enum class DecodeForm { regs, ring3, ring4 };
// What attention_decode uses: the fastest measured (bench/cuda/NOTES.md; ring3 and ring4 at one
// block per SM tied, the register form and two blocks per SM 3-4 % slower).
constexpr DecodeForm kDecodeForm = DecodeForm::ring3;
constexpr int64_t kDecodeBlocksPerSm = 1;

// Scratch for the decode partials, reused across calls. It grows only outside graph capture;
// buffers it outgrows are kept, never freed, since a captured graph may still point at them.
// Inside a capture a scratch too small is replaced by an allocation of the graph (`local`).
float* decode_scratch(int64_t floats, DeviceTensor<float>& local) {
  static std::vector<DeviceTensor<float>>* kept = new std::vector<DeviceTensor<float>>();  // never destroyed
  if (!kept->empty() && kept->back().numel() >= floats) return kept->back().data();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(gpu().stream, &st), "attention decode: capture status");
  if (st != cudaStreamCaptureStatusNone) {
    local = DeviceTensor<float>({floats});
    return local.data();
  }
  kept->push_back(DeviceTensor<float>({std::max<int64_t>(floats, kept->empty() ? 0 : 2 * kept->back().numel())}));
  return kept->back().data();
}

// One launch of the ring decode kernel with S stages (its shared memory limit raised once).
template <class T, int D, int S>
void launch_decode_ring(dim3 grid, const T* q, const T* kc, const T* vc, const int64_t* q_pos, int T_, int Tc, int nq, int nkv,
                        int split_len, float c, T* ctx, float* part_acc, float* part_ml) {
  constexpr size_t smem = decode_ring_smem_bytes<D, S>();
  static const bool raised = [] {
    check(cudaFuncSetAttribute(flash_decode_ring_kernel<T, D, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
          "attention decode smem");
    return true;
  }();
  (void)raised;
  flash_decode_ring_kernel<T, D, S><<<grid, kDecodeWarps * 32, smem, gpu().stream>>>(q, kc, vc, q_pos, T_, Tc, nq, nkv,
                                                                                      split_len, c, ctx, part_acc, part_ml);
}

// The decode kernels with about blocks_per_sm blocks per SM (at most 2 are resident: registers
// bound the register form, shared memory ring3/ring4), then the merge kernel when the keys
// were split.
template <class T>
void decode_launch(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                   const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context, int64_t blocks_per_sm, DecodeForm form) {
  const int64_t T_ = q.dim(0), nq = q.dim(1), d = q.dim(2), nkv = k_cache.dim(1), R = T_ * (nq / nkv);
  if (!T_) return;
  const int64_t groups = (R + kDecodeRows - 1) / kDecodeRows;
  if (groups > 65535) fail("cuda attention_decode: too many rows (" + std::to_string(R) + ") for the decode kernel");
  // Enough (split, head, row group) blocks for blocks_per_sm per SM; whole 16-key steps for
  // each of a block's 4 warps.
  constexpr int64_t kStep = 16 * kDecodeWarps;
  const int64_t want = blocks_per_sm * int64_t(gpu().sms);
  int64_t splits = std::max<int64_t>(1, std::min<int64_t>((Tc + kStep - 1) / kStep, (want + nkv * groups - 1) / (nkv * groups)));
  const int64_t split_len = std::max<int64_t>(kStep, ((Tc + splits - 1) / splits + kStep - 1) / kStep * kStep);
  splits = std::max<int64_t>(1, (Tc + split_len - 1) / split_len);
  const dim3 grid{unsigned(splits), unsigned(nkv), unsigned(groups)};
  DeviceTensor<float> local;
  float* part_acc = nullptr;
  float* part_ml = nullptr;
  if (splits > 1) {
    part_acc = decode_scratch(T_ * nq * splits * (d + 2), local);
    part_ml = part_acc + T_ * nq * splits * d;
  }
  with_head_dim(d, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    const float c = log2_scale(D);
    if (form == DecodeForm::regs) {
      flash_decode_kernel<T, D><<<grid, kDecodeWarps * 32, 0, gpu().stream>>>(
          q.data(), k_cache.data(), v_cache.data(), q_pos.data(), int(T_), int(Tc), int(nq), int(nkv), int(split_len), c,
          context.data(), part_acc, part_ml);
    } else {
      const auto ring = form == DecodeForm::ring3 ? launch_decode_ring<T, D, 3> : launch_decode_ring<T, D, 4>;
      ring(grid, q.data(), k_cache.data(), v_cache.data(), q_pos.data(), int(T_), int(Tc), int(nq), int(nkv), int(split_len),
           c, context.data(), part_acc, part_ml);
    }
    check_launch("attention decode");
  });
  if (splits > 1) {
    flash_decode_merge<T><<<unsigned(T_ * nq), 256, 0, gpu().stream>>>(part_acc, part_ml, int(splits), int(d), context.data());
    check_launch("attention decode merge");
  }
}
}  // namespace

template <class T>
void attention_decode(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                      const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if constexpr (std::is_same_v<T, float>) {
    fail("cuda attention_decode: the tensor-core kernel takes bf16 or fp16 (fp32 uses the exact kernel)");
  } else {
    if (!attention_mma_supported(q, k_cache, v_cache, context))
      fail("cuda attention_decode: needs head_dim in {16, 32, 48, 64, 128} and 16-byte aligned buffers, got head_dim " +
           std::to_string(q.dim(2)));
    decode_launch(q, k_cache, v_cache, Tc, q_pos, context, kDecodeBlocksPerSm, kDecodeForm);
  }
}

const std::vector<std::string>& attention_variants() {
  static const std::vector<std::string> v{"prefill-w8-k64-s2", "prefill-w8-k64-s3", "prefill-w4-k64-s2", "prefill-w8-k32-s3",
                                          "prefill-w4-k128-s2", "prefill-w4-m2-k64-s2", "prefill-w4-m2-k32-s3", "prefill-w8-m2-k32-s2", "decode-regs-b2",   "decode-ring3-b2",   "decode-ring3-b1",
                                          "decode-ring3-b3",   "decode-ring4-b1",  "decode-ring4-b2"};
  return v;
}

template <class T>
void attention_variant(const std::string& variant, const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache,
                       const DeviceTensor<T>& v_cache, int64_t Tc, const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if constexpr (std::is_same_v<T, float>) {
    fail("cuda attention_variant: bf16 or fp16 only");
  } else {
    if (!attention_mma_supported(q, k_cache, v_cache, context) || q.dim(2) != 128)
      fail("cuda attention_variant: head_dim 128 and 16-byte aligned buffers only");
    const auto& v = variant;
    if (v.rfind("decode-", 0) == 0) {
      const DecodeForm f = v.rfind("decode-regs", 0) == 0 ? DecodeForm::regs
                           : v.rfind("decode-ring3", 0) == 0 ? DecodeForm::ring3
                                                              : DecodeForm::ring4;
      const int64_t b = v.back() - '0';
      if (std::find(attention_variants().begin(), attention_variants().end(), v) == attention_variants().end())
        fail("cuda attention_variant: unknown variant " + v);
      return decode_launch(q, k_cache, v_cache, Tc, q_pos, context, b, f);
    }
    if (!q.dim(0)) return;
    if (v == "prefill-w8-k64-s2") launch_prefill<T, 128, 8, 64, 2, 1>(q, k_cache, v_cache, Tc, q_pos, context);
    else if (v == "prefill-w8-k64-s3") launch_prefill<T, 128, 8, 64, 3, 1>(q, k_cache, v_cache, Tc, q_pos, context);
    else if (v == "prefill-w4-k64-s2") launch_prefill<T, 128, 4, 64, 2, 1>(q, k_cache, v_cache, Tc, q_pos, context);
    else if (v == "prefill-w8-k32-s3") launch_prefill<T, 128, 8, 32, 3, 1>(q, k_cache, v_cache, Tc, q_pos, context);
    else if (v == "prefill-w4-k128-s2") launch_prefill<T, 128, 4, 128, 2, 1>(q, k_cache, v_cache, Tc, q_pos, context);
    else if (v == "prefill-w4-m2-k64-s2") launch_prefill<T, 128, 4, 64, 2, 2>(q, k_cache, v_cache, Tc, q_pos, context);
    else if (v == "prefill-w4-m2-k32-s3") launch_prefill<T, 128, 4, 32, 3, 2>(q, k_cache, v_cache, Tc, q_pos, context);
    else if (v == "prefill-w8-m2-k32-s2") launch_prefill<T, 128, 8, 32, 2, 2>(q, k_cache, v_cache, Tc, q_pos, context);
    else fail("cuda attention_variant: unknown variant " + v);
  }
}

template <class T>
void attention(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
               const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if (!attention_mma_supported(q, k_cache, v_cache, context)) return attention_simt(q, k_cache, v_cache, Tc, q_pos, context);
  const int64_t rows = q.dim(0) * (q.dim(1) / k_cache.dim(1));  // (query, head) rows per KV head
  if (rows <= kDecodeRowsMax) return attention_decode(q, k_cache, v_cache, Tc, q_pos, context);
  attention_prefill(q, k_cache, v_cache, Tc, q_pos, context);
}

template void attention<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template void attention_prefill<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template void attention_decode<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template bool attention_mma_supported<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&);
template void attention_variant<float>(const std::string&, const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template void attention<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template void attention_prefill<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template void attention_decode<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template bool attention_mma_supported<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&);
template void attention_variant<bf16>(const std::string&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template void attention<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);
template void attention_prefill<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);
template void attention_decode<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);
template bool attention_mma_supported<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&);
template void attention_variant<fp16>(const std::string&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
