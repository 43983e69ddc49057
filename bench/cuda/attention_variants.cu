// attention_variants.cu: the benchmark-only tilings of the attention kernels
// (bench/cuda/attention_variants.h). The prefill and ring-decode configurations are built from
// the library's kernel templates; the register form of the decode kernel lives only here.
#include "bench/cuda/attention_variants.h"

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/attention.h"
#include "cuda/attention_decode.cuh"
#include "cuda/attention_prefill.cuh"

namespace hyoracle::bench {

namespace {

using namespace hyoracle::cuda;
using namespace hyoracle::cuda::attn;

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

// Decode, register form: the blocks and splits of the ring form (cuda/attention_decode.cuh),
// and the same formula and accumulation. Block (split, m, row group of 16 rows) = 4 warps; each
// warp takes a quarter of the split's keys, 16 at a time, straight from global memory into
// mma fragments (no shared memory): 16-byte loads, all 16 issued before the first use.
// The head dimension is permuted consistently so that every load is contiguous:
//   Q·Kᵀ: thread tig holds dims [tig·D/4, (tig+1)·D/4) of its key and query rows; k-step s uses
//         its words 2s (b0/a0,a1) and 2s+1 (b1/a2,a3), the same dims for A and B;
//   P·V:  the output column n·(D/8) + t of n-tile t is column n of that mma, so thread gid loads
//         columns [gid·D/8, (gid+1)·D/8) of the 4 keys its b0/b1 need, and ends up holding output
//         columns [tig·D/4, (tig+1)·D/4) of its two rows.
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

enum class DecodeForm { regs, ring3, ring4 };

}  // namespace

const std::vector<std::string>& attention_variants() {
  static const std::vector<std::string> v{"prefill-w8-k64-s2",    "prefill-w8-k64-s3",    "prefill-w4-k64-s2",
                                          "prefill-w8-k32-s3",    "prefill-w4-k128-s2",   "prefill-w4-m2-k64-s2",
                                          "prefill-w4-m2-k32-s3", "prefill-w8-m2-k32-s2", "decode-regs-b2",
                                          "decode-ring3-b2",      "decode-ring3-b1",      "decode-ring3-b3",
                                          "decode-ring4-b1",      "decode-ring4-b2"};
  return v;
}

template <class T>
void attention_variant(const std::string& variant, const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache,
                       const DeviceTensor<T>& v_cache, int64_t Tc, const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if constexpr (std::is_same_v<T, float>) {
    fail("attention_variant: bf16 or fp16 only");
  } else {
    if (!attention_mma_supported(q, k_cache, v_cache, context) || q.dim(2) != 128)
      fail("attention_variant: head_dim 128 and 16-byte aligned buffers only");
    const auto& v = variant;
    if (std::find(attention_variants().begin(), attention_variants().end(), v) == attention_variants().end())
      fail("attention_variant: unknown variant " + v);
    if (v.rfind("decode-", 0) == 0) {
      const DecodeForm f = v.rfind("decode-regs", 0) == 0 ? DecodeForm::regs
                           : v.rfind("decode-ring3", 0) == 0 ? DecodeForm::ring3
                                                              : DecodeForm::ring4;
      const int64_t b = v.back() - '0';
      return decode_launch(q, k_cache, v_cache, Tc, q_pos, context, b, [f](auto dc, const DecodeArgs<T>& a) {
        constexpr int D = decltype(dc)::value;
        if (f == DecodeForm::regs)
          flash_decode_kernel<T, D><<<a.grid, kDecodeWarps * 32, 0, gpu().stream>>>(
              a.q, a.kc, a.vc, a.q_pos, a.T_, a.Tc, a.nq, a.nkv, a.split_len, a.c, a.ctx, a.part_acc, a.part_ml);
        else if (f == DecodeForm::ring3)
          launch_decode_ring<T, D, 3>(a);
        else
          launch_decode_ring<T, D, 4>(a);
      });
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
    else fail("attention_variant: unknown variant " + v);
  }
}

template void attention_variant<bf16>(const std::string&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template void attention_variant<fp16>(const std::string&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);
template void attention_variant<float>(const std::string&, const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);

}  // namespace hyoracle::bench
