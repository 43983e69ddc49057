// attention_decode.cuh: the split-KV (flash-decoding) tensor-core decode kernel
// (attention_decode in cuda/attention.h), its merge over splits, and the host-side split
// planning, as templates so that the library and the benchmark variants
// (bench/cuda/attention_variants.cu) build them from one source.
//
//   per split s of the keys:  S = Q·Kᵀ (raw units), p = 2^((s − m_s)·c), c = d^-½·log2 e,
//                             l_s = Σ p, acc_s = Σ T(p)·V
//   merge:                    M = max_s m_s, context = T( Σ_s acc_s 2^(m_s − M) / Σ_s l_s 2^(m_s − M) )
// Shapes: q [T, nq, D], the first Tc rows of k/v [cap, nkv, D], q_pos [T] -> context [T, nq·D];
// T bf16 or fp16, D in {16, 32, 48, 64, 128}; partials acc [T·nq·splits, D] and (m, l)
// [T·nq·splits, 2] in fp32 scratch.
// Accumulation: mma.sync m16n8k16 with fp32 accumulators; softmax state, the in-block merge of
// the 4 warps and the merge over splits in fp32 (exp2f); p rounded to T only as the A operand of
// P·V; the output rounded to T once, after the last merge.
//
// Kernels and launchers sit in an anonymous namespace: each .cu that includes this header builds
// its own copy of the configurations it launches (see attention_prefill.cuh).
#pragma once
#include <algorithm>
#include <string>

#include "cuda/attention_common.cuh"
#include "cuda/mma.cuh"

namespace hyoracle::cuda::attn {

// Blocks of 4 warps over 16 (query, head) rows.
constexpr int kDecodeWarps = 4, kDecodeRows = 16;

// Scratch for the decode partials, reused across calls (attention_decode.cu). It grows only
// outside graph capture; buffers it outgrows are kept, never freed, since a captured graph may
// still point at them. Inside a capture a scratch too small is replaced by an allocation of the
// graph (`local`).
float* decode_scratch(int64_t floats, DeviceTensor<float>& local);

// What one launch of a per-split decode kernel takes: grid (splits, nkv, row groups), and
// part_acc / part_ml null when there is one split (the kernel then writes the context).
template <class T>
struct DecodeArgs {
  dim3 grid;
  const T* q;
  const T* kc;
  const T* vc;
  const int64_t* q_pos;
  int T_, Tc, nq, nkv, split_len;
  float c;
  T* ctx;
  float* part_acc;
  float* part_ml;
};

namespace {

// The per-split kernel ("ring" form). Block (split, m, row group of 16 rows) = 4 warps; each warp
// takes a quarter of the split's keys and streams them through its own ring of S shared-memory
// stages of 16 keys (K and V rows padded to D + 8), filled by cp.async S − 1 steps ahead, and
// takes its mma fragments with ldmatrix (standard layouts, as in the prefill kernel): S − 1
// steps of 16 keys in flight per warp, no K/V registers held. The 4 warps' (m, l, acc) are merged
// in shared memory (reusing the rings); with one split the block writes the context, otherwise
// its fp32 partial (acc, m·c, l) for flash_decode_merge.
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


// One launch of the ring decode kernel with S stages (its shared memory limit raised once).
template <class T, int D, int S>
void launch_decode_ring(const DecodeArgs<T>& a) {
  constexpr size_t smem = decode_ring_smem_bytes<D, S>();
  static const bool raised = [] {
    check(cudaFuncSetAttribute(flash_decode_ring_kernel<T, D, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
          "attention decode smem");
    return true;
  }();
  (void)raised;
  flash_decode_ring_kernel<T, D, S><<<a.grid, kDecodeWarps * 32, smem, gpu().stream>>>(
      a.q, a.kc, a.vc, a.q_pos, a.T_, a.Tc, a.nq, a.nkv, a.split_len, a.c, a.ctx, a.part_acc, a.part_ml);
}

// The split-KV decode with about blocks_per_sm blocks per SM: plans the splits, launches
// launch(std::integral_constant<int, D>, const DecodeArgs<T>&) (one per-split kernel of the
// caller's choosing), then the merge kernel when the keys were split. No host synchronisation.
template <class T, class Launch>
void decode_launch(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                   const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context, int64_t blocks_per_sm, Launch&& launch) {
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
    const DecodeArgs<T> a{grid,     q.data(),        k_cache.data(), v_cache.data(), q_pos.data(), int(T_), int(Tc), int(nq),
                          int(nkv), int(split_len), log2_scale(D),  context.data(), part_acc,     part_ml};
    launch(dc, a);
    check_launch("attention decode");
  });
  if (splits > 1) {
    flash_decode_merge<T><<<unsigned(T_ * nq), 256, 0, gpu().stream>>>(part_acc, part_ml, int(splits), int(d), context.data());
    check_launch("attention decode merge");
  }
}

}  // namespace
}  // namespace hyoracle::cuda::attn
