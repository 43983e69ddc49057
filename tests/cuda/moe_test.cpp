// The grouped GEMM of the routed experts (grouped_gemm.h) and the MoE block (moe.h) against
// independent results: naive loops on integer-valued inputs (bit-exact), the double CPU reference
// on random inputs (bounds derived from the dtype), the eager block against its own CUDA-graph
// replay (bit-exact). Odd sizes throughout: groups of 0, 1, 7, 33, 129 rows, N and K off the tiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "cuda/grouped_gemm.h"
#include "cuda/grouped_gemm_wgmma.h"
#include "cuda/mlp.h"
#include "cuda/moe.h"
#include "reference/matmul.h"
#include "reference/moe.h"
#include "tests/cuda/cuda_test_util.h"

namespace hyoracle::test {
namespace {

using cuda::bf16;
using cuda::fp16;

template <class T>
class MoeTyped : public CudaTest {};
using Dtypes = ::testing::Types<float, bf16, fp16>;
TYPED_TEST_SUITE(MoeTyped, Dtypes);

// A routing with k = 1 that gives group e exactly counts[e] rows, tokens in a seeded order.
struct Routing {
  cuda::RouterOutput r;
  std::vector<int64_t> expert_of;  // [T]
};
Routing routing_with_counts(const std::vector<int64_t>& counts, uint64_t seed) {
  Routing o;
  for (size_t e = 0; e < counts.size(); ++e) o.expert_of.insert(o.expert_of.end(), size_t(counts[e]), int64_t(e));
  Rng rng(seed);
  for (size_t i = o.expert_of.size(); i > 1; --i) std::swap(o.expert_of[i - 1], o.expert_of[rng.next() % i]);
  o.r = router_output_with_ids(std::vector<int32_t>(o.expert_of.begin(), o.expert_of.end()),
                               int64_t(o.expert_of.size()), 1);
  return o;
}

std::string counts_str(const std::vector<int64_t>& c) {
  std::string s;
  for (auto v : c) {
    if (!s.empty()) s += ',';
    s += std::to_string(v);
  }
  return s;
}

// ---- the token sort: a permutation with the layout counted on the host ----------------------
// Sizes on both sides of the one-block / chunked switch (moe.cu: more than 2 chunks of 4096 slots
// take the three-launch sort), with and without the extra (shared-expert) group; an expert that no
// token picks; k distinct experts per token, as the router gives.
TEST_F(CudaTest, SortByExpertIsAPermutationWithTheHostsLayout) {
  struct Case { int64_t T, k, E; bool extra; };
  for (const Case c : {Case{33, 8, 128, true}, Case{1025, 8, 128, false}, Case{1025, 8, 128, true},
                       Case{4096 + 333, 8, 128, true}, Case{7, 3, 5, false}, Case{3001, 1, 2047, false}}) {
    SCOPED_TRACE("T=" + std::to_string(c.T) + " k=" + std::to_string(c.k) + " E=" + std::to_string(c.E) +
                 " extra=" + std::to_string(c.extra));
    const int64_t n = c.T * c.k, usable = c.E > c.k ? c.E - 1 : c.E;  // expert E-1 unused when it can be
    const std::vector<int32_t> ids = distinct_expert_ids(c.T, c.k, usable, uint64_t(c.T * 7 + c.E));
    const cuda::RouterOutput ro = router_output_with_ids(ids, c.T, c.k);
    const int64_t extra = c.extra ? c.T : 0, G = c.E + (c.extra ? 1 : 0);
    const cuda::ExpertSort s = cuda::sort_by_expert(ro, c.E, extra);
    // The host's layout.
    std::vector<int64_t> count(size_t(G), 0), row_offset(size_t(G + 1), 0), tile_offset(size_t(G + 1), 0);
    for (const int32_t e : ids) ++count[size_t(e)];
    if (c.extra) count[size_t(c.E)] = c.T;
    for (int64_t g = 0; g < G; ++g) {
      row_offset[size_t(g + 1)] = row_offset[size_t(g)] + count[size_t(g)];
      tile_offset[size_t(g + 1)] = tile_offset[size_t(g)] + (count[size_t(g)] + cuda::kGroupTileM - 1) / cuda::kGroupTileM;
    }
    EXPECT_EQ(cuda::download_ints(s.layout.row_offset), row_offset);
    EXPECT_EQ(cuda::download_ints(s.layout.tile_offset), tile_offset);
    const std::vector<int64_t> tile_group = cuda::download_ints(s.layout.tile_group);
    ASSERT_EQ(int64_t(tile_group.size()), cuda::max_row_tiles(s.layout));
    for (int64_t t = 0; t < int64_t(tile_group.size()); ++t) {
      int64_t want = -1;
      for (int64_t g = 0; g < G; ++g)
        if (t >= tile_offset[size_t(g)] && t < tile_offset[size_t(g + 1)]) want = g;
      ASSERT_EQ(tile_group[size_t(t)], want) << "tile " << t;
    }
    // Every slot on its own row inside its group's range, the token recorded there.
    const std::vector<int64_t> token = cuda::download_ints(s.token), row_of = cuda::download_ints(s.row_of);
    ASSERT_EQ(int64_t(token.size()), n + extra);
    std::vector<int> hits(size_t(n + extra), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = row_of[size_t(i)], e = ids[size_t(i)];
      ASSERT_TRUE(r >= row_offset[size_t(e)] && r < row_offset[size_t(e + 1)]) << "slot " << i << " row " << r;
      ASSERT_EQ(token[size_t(r)], i / c.k) << "slot " << i;
      ++hits[size_t(r)];
    }
    for (int64_t t = 0; t < extra; ++t) {
      ASSERT_EQ(token[size_t(n + t)], t);
      ++hits[size_t(n + t)];
    }
    EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), n + extra) << "rows hit other than once";
  }
}

// ---- grouped GEMM: bit-exact on integers ----------------------------------------------------
// |a|, |w| <= 8 and K <= 264: every partial sum is an integer below 2^24, exact in fp32 in any
// order, so the store epilogue must give exactly round_T(Σ a·w) (naive loops), whatever the kernel.
// The SwiGLU epilogue must equal, bit for bit, the store epilogue followed by mlp.h's swiglu kernel
// (same roundings, same device expf). Each case runs with the path hints 1 (GEMV, one row per
// pass), the true largest group (the MoE block's choice) and 10^6 (tile kernels; for 16-bit types
// each block-tile variant), with and without an extra (shared-expert) group over all tokens.
TYPED_TEST(MoeTyped, GroupedGemmIsBitExactOnIntegers) {
  using T = TypeParam;
  if (!std::is_same_v<T, float>)
    std::printf("  grouped_gemm tile kernels: the sm_90a wgmma kernel %s\n",
                cuda::grouped_wgmma_available() ? "runs on this device"
                                                : "does not run here (not compute capability 9.0, or built without 90): "
                                                  "the \"wgmma\" runs take 128x256x64");
  struct Case { std::vector<int64_t> counts; int64_t N, K; };
  const std::vector<Case> cases = {
      {{0, 1, 7, 33, 129, 0, 2}, 70, 40},   // K % 8 == 0, short K (fewer k-tiles than stages)
      {{0, 1, 7, 33, 129, 0, 2}, 34, 33},   // K % 8 != 0: plain-load path
      {{1, 0, 3, 16, 2}, 130, 264},         // few rows per group, K off the 32-tile, N off 128
      {{130, 0, 5}, 258, 96},               // a group across two row tiles
      {{0, 0, 1}, 2, 8},                    // one row, minimal N, K
      {{0, 1, 65, 129, 200}, 528, 72},      // N, N/2 % 8 == 0: whole column tiles (the wgmma kernel's
                                            // staged 16-byte stores) and a partial last one
  };
  for (const Case& c : cases)
    for (const bool extra : {false, true}) {
      const int64_t E = int64_t(c.counts.size()), N = c.N, K = c.K, I = N / 2;
      const Routing ro = routing_with_counts(c.counts, uint64_t(N * 7 + K));
      const int64_t T_ = int64_t(ro.expert_of.size()), rows = T_ + (extra ? T_ : 0);
      const cuda::ExpertSort s = cuda::sort_by_expert(ro.r, E, extra ? T_ : 0);
      const auto a = operand<T>(int_values(T_ * K, 5 + K), {T_, K});
      const auto w = operand<T>(int_values(E * N * K, 6 + N), {E, N, K});
      const auto wx = operand<T>(int_values(N * K, 7 + N), {N, K});
      const cuda::GroupWeights<T> gw{w.dev.data(), E, extra ? wx.dev.data() : nullptr, N, K};
      // Naive reference for every token and its group(s).
      const std::vector<int64_t> token = cuda::download_ints(s.token);
      const std::vector<int64_t> row_of = cuda::download_ints(s.row_of);
      ASSERT_EQ(int64_t(token.size()), rows);
      Tensor<double> ref({rows, N});
      for (int64_t t = 0; t < T_; ++t) {
        const int64_t e = ro.expert_of[t], r = row_of[t];
        ASSERT_EQ(token[r], t) << "sort: row " << r;
        matmul_nt_naive(a.host.row(t), w.host.data.data() + e * N * K, ref.row(r), 1, N, K);
        if (extra) {
          ASSERT_EQ(token[T_ + t], t) << "sort: extra row " << T_ + t;
          matmul_nt_naive(a.host.row(t), wx.host.data.data(), ref.row(T_ + t), 1, N, K);
        }
      }
      expect_nonzero(ref, "reference");
      int64_t largest = *std::max_element(c.counts.begin(), c.counts.end());
      if (extra) largest = std::max(largest, T_);
      // The tile-kernel hint runs every block-tile variant of grouped_gemm.cu (bf16/fp16): the
      // mma.sync tiles and the sm_90a wgmma kernel (the default where it runs; elsewhere "wgmma"
      // falls back to 128x256x64, and the test says so below).
      std::vector<std::pair<int64_t, const char*>> runs = {{1, ""}, {largest, ""}, {1000000, ""}};
      if (!std::is_same_v<T, float>)
        for (const char* v : {"128x128x32", "128x256x32", "128x256x64", "wgmma", "wgmma-direct", "wgmma-staged", "wgmma-cpasync"}) runs.push_back({1000000, v});
      for (const auto& [hint, tile] : runs) {
        if (*tile) setenv("HYORACLE_GROUPED_TILE", tile, 1);
        else unsetenv("HYORACLE_GROUPED_TILE");
        SCOPED_TRACE("counts {" + counts_str(c.counts) + "} N=" + std::to_string(N) + " K=" + std::to_string(K) +
                     " extra=" + std::to_string(extra) + " hint=" + std::to_string(hint) + " tile=" + tile);
        Guarded<T> y({rows, N});
        cuda::grouped_gemm(a.dev.data(), s.token.data(), gw, s.layout, hint, cuda::GroupEpilogue::store, y.tensor.data());
        const Tensor<float> got = cuda::download(y.tensor);
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < rows * N; ++i)
          if (double(got.data[i]) != rounded<T>(ref.data[i])) bad += 1, first = first < 0 ? i : first;
        EXPECT_EQ(bad, 0) << "first mismatch row " << first / N << " col " << first % N << ": got "
                          << (first >= 0 ? got.data[first] : 0) << " want " << (first >= 0 ? ref.data[first] : 0);
        EXPECT_EQ(y.guard_damage(), 0);
        // SwiGLU epilogue vs store + swiglu kernel.
        Guarded<T> act({rows, I});
        cuda::grouped_gemm(a.dev.data(), s.token.data(), gw, s.layout, hint, cuda::GroupEpilogue::swiglu,
                           act.tensor.data());
        cuda::DeviceTensor<T> act2({rows, I});
        cuda::swiglu(y.tensor, act2);
        const Tensor<float> fused = cuda::download(act.tensor), unfused = cuda::download(act2);
        int64_t bad2 = 0, first2 = -1;
        for (int64_t i = 0; i < rows * I; ++i)
          if (!(fused.data[i] == unfused.data[i]) && !(std::isnan(fused.data[i]) && std::isnan(unfused.data[i])))
            bad2 += 1, first2 = first2 < 0 ? i : first2;
        EXPECT_EQ(bad2, 0) << "swiglu: first mismatch row " << first2 / I << " col " << first2 % I;
        EXPECT_EQ(act.guard_damage(), 0);
      }
      unsetenv("HYORACLE_GROUPED_TILE");
    }
}

// ---- grouped GEMM: random inputs vs the double reference ------------------------------------
// Per element: |got − ref| <= u_T·|ref| + K·2^-23·Σ_k |a_k·w_k|  (one rounding to T, plus a
// worst-case bound on fp32 accumulation in any order), at the real K = 2048.
TYPED_TEST(MoeTyped, GroupedGemmMatchesReferenceOnRandomInputs) {
  using T = TypeParam;
  const std::vector<int64_t> counts = {0, 1, 7, 33, 129, 3};
  const int64_t E = int64_t(counts.size()), N = 96, K = 2048;
  const Routing ro = routing_with_counts(counts, 11);
  const int64_t T_ = int64_t(ro.expert_of.size());
  const cuda::ExpertSort s = cuda::sort_by_expert(ro.r, E);
  const auto a = operand<T>(normal_values(T_ * K, 21), {T_, K});
  const auto w = operand<T>(normal_values(E * N * K, 22, 1 / std::sqrt(double(K))), {E, N, K});
  const std::vector<int64_t> row_of = cuda::download_ints(s.row_of);
  for (const int64_t hint : {int64_t(129), int64_t(1)}) {
    SCOPED_TRACE("hint=" + std::to_string(hint));
    Guarded<T> y({T_, N});
    cuda::grouped_gemm(a.dev.data(), s.token.data(), cuda::GroupWeights<T>{w.dev.data(), E, nullptr, N, K}, s.layout, hint,
                       cuda::GroupEpilogue::store, y.tensor.data());
    const Tensor<float> got = cuda::download(y.tensor);
    double worst = 0;
    for (int64_t t = 0; t < T_; ++t) {
      const double* ar = a.host.row(t);
      const double* we = w.host.data.data() + ro.expert_of[t] * N * K;
      for (int64_t n = 0; n < N; ++n) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) ref += ar[k] * we[n * K + k], mag += std::fabs(ar[k] * we[n * K + k]);
        const double bound = unit_roundoff<T>() * std::fabs(ref) + double(K) * std::ldexp(1.0, -23) * mag + 1e-30;
        const double g = got.data[row_of[t] * N + n];
        ASSERT_FALSE(std::isnan(g)) << "token " << t << " col " << n << " is NaN";
        worst = std::max(worst, std::fabs(g - ref) / bound);
      }
    }
    std::printf("  grouped_gemm %s random K=2048 hint %lld: worst error %.3f of the bound\n", cuda::dtype_label<T>(),
                (long long)hint, worst);
    EXPECT_LE(worst, 1.0);
    EXPECT_EQ(y.guard_damage(), 0);
  }
}

// ---- the MoE block vs the reference ---------------------------------------------------------
struct MoeCase { int64_t T, H, I, E, k; };

template <class T>
struct MoeSetup {
  Operand<T> u;
  Operand<float> wr;
  std::vector<float> bias;
  ExpertStore<double> store;
  cuda::ExpertWeights<T> ex;
  MlpWeights<double> shared_ref;
  cuda::MlpWeights<T> shared;
};

template <class T>
MoeSetup<T> moe_setup(const MoeCase& c) {
  MoeSetup<T> m;
  const double s = 1 / std::sqrt(double(c.H)), sd = 1 / std::sqrt(double(c.I));
  m.u = operand<T>(normal_values(c.T * c.H, 1 + c.T), {c.T, c.H});
  m.wr = operand<float>(normal_values(c.E * c.H, 2, 3 * s), {c.E, c.H});
  m.bias = normal_values(c.E, 3, 0.05);
  std::vector<float> gu, dn;
  for (int64_t e = 0; e < c.E; ++e) {
    const auto g = operand<T>(normal_values(c.I * c.H, 10 + e, s), {c.I, c.H});
    const auto up = operand<T>(normal_values(c.I * c.H, 1000 + e, s), {c.I, c.H});
    const auto d = operand<T>(normal_values(c.H * c.I, 2000 + e, sd), {c.H, c.I});
    m.store.resident.push_back({g.host, up.host, d.host});
    gu.insert(gu.end(), g.host.data.begin(), g.host.data.end());
    gu.insert(gu.end(), up.host.data.begin(), up.host.data.end());
    dn.insert(dn.end(), d.host.data.begin(), d.host.data.end());
  }
  m.ex = {cuda::upload_values<T>(gu, {c.E, 2 * c.I, c.H}), cuda::upload_values<T>(dn, {c.E, c.H, c.I})};
  const auto g = operand<T>(normal_values(c.I * c.H, 7, s), {c.I, c.H});
  const auto up = operand<T>(normal_values(c.I * c.H, 8, s), {c.I, c.H});
  const auto d = operand<T>(normal_values(c.H * c.I, 9, sd), {c.H, c.I});
  m.shared_ref = {g.host, up.host, d.host};
  std::vector<float> sgu(g.host.data.begin(), g.host.data.end());
  sgu.insert(sgu.end(), up.host.data.begin(), up.host.data.end());
  m.shared = {cuda::upload_values<T>(sgu, {2 * c.I, c.H}), d.dev};
  return m;
}

// rel-L2 over the tokens whose reference routing margin is clear (>= 1e-6); near-ties, where a
// 1-ulp logit difference may pick another expert, are counted and left out.
double rel_l2_clear(const Tensor<float>& got, const Tensor<double>& ref, const Tensor<double>& margin, int64_t* near) {
  const int64_t T_ = ref.rows(), H = ref.cols();
  long double num = 0, den = 0;
  *near = 0;
  for (int64_t t = 0; t < T_; ++t) {
    if (margin.data[t] < 1e-6) {
      ++*near;
      continue;
    }
    for (int64_t h = 0; h < H; ++h) {
      const long double d = got.data[t * H + h] - ref.data[t * H + h];
      num += d * d, den += (long double)ref.data[t * H + h] * ref.data[t * H + h];
    }
  }
  return den > 0 ? double(std::sqrt(num / den)) : 0.0;
}

// Against the reference in hf mode (fp32 router as the GPU's, everything else double): fp32
// rel-L2 <= 1e-5; 16-bit: the experts' SwiGLU bound (4u) plus the output roundings: 6u.
// T = 1 and 7 take the GEMV path (decode), 333 the tensor-core / SIMT tiles; the second size is
// Hy-MT2's H and I (real K in both products) with fewer experts.
TYPED_TEST(MoeTyped, MoeBlockMatchesReferenceAtOddSizes) {
  using T = TypeParam;
  for (const MoeCase c : {MoeCase{1, 256, 96, 16, 4}, MoeCase{7, 256, 96, 16, 4}, MoeCase{333, 256, 96, 16, 4},
                          MoeCase{1, 2048, 768, 10, 8}, MoeCase{7, 2048, 768, 10, 8}}) {
    SCOPED_TRACE("T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) + " I=" + std::to_string(c.I) +
                 " E=" + std::to_string(c.E) + " k=" + std::to_string(c.k));
    const MoeSetup<T> m = moe_setup<T>(c);
    const cuda::MoeOutput<T> got =
        cuda::moe_block(m.u.dev, m.wr.dev, cuda::upload_values<float>(m.bias, {c.E}), m.ex, m.shared, c.k, 2.826, true);
    const MoeOutput<double> ref = moe_block(m.u.host, m.wr.host, cast<double>(Tensor<float>({c.E}, m.bias)), m.store,
                                            m.shared_ref, c.k, 2.826, true, Numerics{Precision::hf, 4});
    const std::vector<int64_t> ids = cuda::download_ints(got.router.ids);
    int64_t wrong_ids = 0;
    for (int64_t t = 0; t < c.T; ++t)
      if (ref.router.margin.data[t] >= 1e-6)
        for (int64_t j = 0; j < c.k; ++j) wrong_ids += ids[t * c.k + j] != ref.router.ids[t * c.k + j];
    EXPECT_EQ(wrong_ids, 0);
    int64_t near = 0;
    const double e_routed = rel_l2_clear(cuda::download(got.routed), ref.routed, ref.router.margin, &near);
    const double e_shared = rel_l2_clear(cuda::download(got.shared), ref.shared, ref.router.margin, &near);
    const double e_out = rel_l2_clear(cuda::download(got.out), ref.out, ref.router.margin, &near);
    const double lim = (std::is_same_v<T, float>) ? 1e-5 : 6 * unit_roundoff<T>();
    EXPECT_LE(e_routed, lim);
    EXPECT_LE(e_shared, lim);
    EXPECT_LE(e_out, lim);
    EXPECT_LT(near, c.T) << "every token was a near-tie: nothing compared";
    std::printf("  moe %s T=%lld H=%lld: rel-L2 routed %.2e shared %.2e out %.2e (limit %.1e; %lld near-tie tokens)\n",
                cuda::dtype_label<T>(), (long long)c.T, (long long)c.H, e_routed, e_shared, e_out, lim, (long long)near);
  }
}

// A token whose input is NaN (an upstream overflow, a broken checkpoint): the block must not fault
// or pick an expert id outside [0, E) (that would index out of bounds in the sort), the NaN must
// show in that token's output, and every other token's output must be bit for bit the one it has
// when the bad row is replaced by finite values (tokens do not interact inside the block). Decode
// (T = 7: fused route + GEMV) and tile (T = 40) paths.
TEST_F(CudaTest, NanTokenStaysInBoundsAndOthersAreUntouched) {
  for (const MoeCase c : {MoeCase{7, 256, 96, 16, 4}, MoeCase{40, 256, 96, 16, 4}}) {
    SCOPED_TRACE("T=" + std::to_string(c.T));
    const MoeSetup<bf16> m = moe_setup<bf16>(c);
    const cuda::DeviceTensor<float> bias = cuda::upload_values<float>(m.bias, {c.E});
    const int64_t bad = 3;
    std::vector<float> u(m.u.host.data.begin(), m.u.host.data.end());
    for (int64_t h = 0; h < c.H; ++h) u[bad * c.H + h] = std::nanf("");
    const cuda::DeviceTensor<bf16> u_nan = cuda::upload_values<bf16>(u, {c.T, c.H});
    const cuda::MoeOutput<bf16> got = cuda::moe_block(u_nan, m.wr.dev, bias, m.ex, m.shared, c.k, 2.826, true);
    cuda::synchronize();
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const cuda::MoeOutput<bf16> clean = cuda::moe_block(m.u.dev, m.wr.dev, bias, m.ex, m.shared, c.k, 2.826, true);
    for (int64_t id : cuda::download_ints(got.router.ids)) ASSERT_TRUE(id >= 0 && id < c.E) << "expert id " << id;
    const Tensor<float> a = cuda::download(got.out), b = cuda::download(clean.out);
    int64_t finite_bad = 0, differ = 0;
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < c.H; ++h) {
        const float x = a.data[t * c.H + h], y = b.data[t * c.H + h];
        if (t == bad) finite_bad += std::isfinite(x);
        else differ += x != y;
      }
    EXPECT_EQ(finite_bad, 0) << "finite outputs in the NaN token's row";
    EXPECT_EQ(differ, 0) << "other tokens' outputs changed";
  }
}

// The block captured in a CUDA graph (no host synchronisation inside) replays to the same bits as
// the eager call, at decode (T = 1) and at a tile-path size.
TEST_F(CudaTest, MoeBlockGraphReplayIsBitIdentical) {
  for (const MoeCase c : {MoeCase{1, 256, 96, 16, 4}, MoeCase{40, 256, 96, 16, 4}}) {
    SCOPED_TRACE("T=" + std::to_string(c.T));
    const MoeSetup<bf16> m = moe_setup<bf16>(c);
    const cuda::DeviceTensor<float> bias = cuda::upload_values<float>(m.bias, {c.E});
    const cuda::MoeOutput<bf16> eager = cuda::moe_block(m.u.dev, m.wr.dev, bias, m.ex, m.shared, c.k, 2.826, true);
    cuda::DeviceTensor<bf16> replay({c.T, c.H});
    cuda::check(cudaMemsetAsync(replay.data(), 0x7F, size_t(replay.numel()) * 2, cuda::gpu().stream), "fill");
    cuda::synchronize();
    cudaStream_t st = cuda::gpu().stream;
    cudaGraph_t graph;
    cuda::check(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), "begin capture");
    {
      const cuda::MoeOutput<bf16> g = cuda::moe_block(m.u.dev, m.wr.dev, bias, m.ex, m.shared, c.k, 2.826, true);
      cuda::check(cudaMemcpyAsync(replay.data(), g.out.data(), size_t(replay.numel()) * 2, cudaMemcpyDeviceToDevice, st),
                  "copy out");
    }
    cuda::check(cudaStreamEndCapture(st, &graph), "end capture");
    cudaGraphExec_t exec;
    cuda::check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    const Tensor<float> a = cuda::download(eager.out);
    expect_nonzero(a, "eager output");
    for (int rep = 0; rep < 3; ++rep) {  // replays must not depend on state left by the previous one
      cuda::check(cudaMemsetAsync(replay.data(), 0x7F, size_t(replay.numel()) * 2, st), "refill");
      cuda::check(cudaGraphLaunch(exec, st), "launch");
      cuda::synchronize();
      const Tensor<float> b = cuda::download(replay);
      int64_t diff = 0;
      for (int64_t i = 0; i < a.numel(); ++i) diff += a.data[i] != b.data[i];
      EXPECT_EQ(diff, 0) << "elements differing between eager and graph replay " << rep;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
}

// Decode's fused router + sort (router.h route_and_sort, one launch) against route() followed by
// sort_by_expert (HYORACLE_MOE_UNFUSED_ROUTE=1): the same logits, choices, weights and block outputs,
// bit for bit (same kernels' arithmetic; only the launches differ), at T = 1, 7 and 16.
TEST_F(CudaTest, FusedDecodeRouteEqualsSeparateLaunches) {
  for (const int64_t T_ : {int64_t(1), int64_t(7), int64_t(16)}) {
    SCOPED_TRACE("T=" + std::to_string(T_));
    const MoeSetup<bf16> m = moe_setup<bf16>(MoeCase{T_, 256, 96, 16, 4});
    const cuda::DeviceTensor<float> bias = cuda::upload_values<float>(m.bias, {16});
    const cuda::MoeOutput<bf16> fused = cuda::moe_block(m.u.dev, m.wr.dev, bias, m.ex, m.shared, 4, 2.826, true);
    setenv("HYORACLE_MOE_UNFUSED_ROUTE", "1", 1);
    const cuda::MoeOutput<bf16> sep = cuda::moe_block(m.u.dev, m.wr.dev, bias, m.ex, m.shared, 4, 2.826, true);
    unsetenv("HYORACLE_MOE_UNFUSED_ROUTE");
    EXPECT_EQ(cuda::download_ints(fused.router.ids), cuda::download_ints(sep.router.ids));
    auto same = [](const Tensor<float>& a, const Tensor<float>& b) {
      int64_t d = a.numel() == b.numel() ? 0 : -1;
      for (int64_t i = 0; d >= 0 && i < a.numel(); ++i) d += !(a.data[i] == b.data[i]);
      return d;
    };
    EXPECT_EQ(same(cuda::download(fused.router.logits), cuda::download(sep.router.logits)), 0) << "logits";
    EXPECT_EQ(same(cuda::download(fused.router.weights), cuda::download(sep.router.weights)), 0) << "weights";
    EXPECT_EQ(same(cuda::download(fused.router.margin), cuda::download(sep.router.margin)), 0) << "margin";
    EXPECT_EQ(same(cuda::download(fused.out), cuda::download(sep.out)), 0) << "out";
    EXPECT_EQ(same(cuda::download(fused.routed), cuda::download(sep.routed)), 0) << "routed";
    expect_nonzero(cuda::download(fused.out), "fused output");
  }
}

}  // namespace
}  // namespace hyoracle::test
