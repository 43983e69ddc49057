// attention_prefill.cuh: the tensor-core prefill kernel (attention_prefill in cuda/attention.h),
// a template over its tiling so that the library and the benchmark variants
// (bench/cuda/attention_variants.cu) build it from one source.
//
//   S = Q·Kᵀ (raw units), p = 2^((s − m)·c) with c = d^-½·log2 e and m the running row max,
//   l = Σ p, O = Σ T(p)·V, context = T(O / l)
// Shapes: q [T, nq, D], the first Tc rows of k/v [cap, nkv, D], q_pos [T] -> context [T, nq·D];
// T bf16 or fp16, D in {16, 32, 48, 64, 128}.
// Accumulation: mma.sync m16n8k16 with fp32 accumulators for S and for O; the online softmax
// (running max, sum l from the fp32 p) in fp32; p rounded to T only as the A operand of P·V; the
// output normalised in fp32 and rounded to T once.
//
// The kernels and launchers sit in an anonymous namespace: each .cu that includes this header
// builds its own copy of the configurations it launches, so the library and the benchmark
// variants (which repeat some of the library's configurations) never share a kernel symbol or
// the one-time shared-memory attribute setting of launch_prefill.
#pragma once
#include "cuda/attention_common.cuh"
#include "cuda/mma.cuh"

namespace hyoracle::cuda::attn {
namespace {

// A block = W·16·MT rows of one KV head (W warps × MT tiles of 16 rows), key tiles of BN keys through
// shared memory in a ring of S stages filled by cp.async (tile t + S − 1 is requested while tile t
// is computed; one barrier per tile); rows padded to D + 8 elements so that ldmatrix's 8
// row addresses fall in distinct banks. With MT = 1 the Q fragments stay in registers for the
// whole block. Blocks walk key tiles only up to their last visible key (causal tile skipping) and
// mask only the tiles that cross some row's last visible key.
// attention_prefill uses, at head_dim 128, W = 4, MT = 2, BN = 64, S = 2 (the fastest of the
// variants measured on an H200, bench/cuda/NOTES.md; 2 blocks of 4 warps per SM), and the
// kPrefill* configuration below (W = 8, MT = 1, BN = 64, S = 3) at the other head dims, where no
// variant is measured; the other combinations are benchmark variants.
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
}  // namespace hyoracle::cuda::attn
