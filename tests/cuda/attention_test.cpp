// The tensor-core attention kernels (cuda/attention.h: attention_prefill, attention_decode)
// against the exact CPU reference (reference/attention.h) on odd sizes, with guard buffers.
//
// Error bound, rel-L2 over the whole context <= 2u + 1e-5 (u = unit roundoff of T: 2^-8 bf16,
// 2^-11 fp16). Where it comes from: Q, K, V are exactly the T values the reference sees, and the
// products and sums are fp32 (errors ~1e-6 relative, the 1e-5). Two roundings to T remain:
//  - the output's own rounding: each element within u of the fp32 value, so <= u in rel-L2;
//  - the unnormalised probabilities rounded to T before P·V: each weight p_j gets a relative
//    error |δ_j| <= u, so output element c moves by Σ_j δ_j w_j v_jc (w = normalised weights).
//    With V independent of the rounding errors this is a sum of independent terms whose RMS is
//    <= u·sqrt(Σ_j w_j² v_jc²), the same order as |o_c| = |Σ_j w_j v_jc| for random V, so this
//    term is <= u in rel-L2 as well (the worst case, u·Σ_j w_j|v_jc| over |o_c|, is not
//    reached on random data; the measured errors are printed next to the bound).
// The SIMT kernel (fp32 probabilities) keeps the tighter u + 1e-5 of layers_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "reference/attention.h"
#include "tests/cuda/cuda_test_util.h"

namespace hyoracle::test {
namespace {

using cuda::bf16;
using cuda::fp16;
const Numerics kExact{Precision::exact, 1};

template <class T>
class AttentionMma : public CudaTest {};
using Dtypes16 = ::testing::Types<bf16, fp16>;
TYPED_TEST_SUITE(AttentionMma, Dtypes16);

// One line about got vs ref [T, nq·d]: rel-L2, the largest |error| and where, NaN / sentinel
// (unwritten: the guard pattern, huge or NaN) counts.
struct ErrorReport {
  double rel_l2 = 0, max_err = 0;
  int64_t bad = 0;  // NaN, inf or |x| > 1e30 (the 0x7F7F sentinel)
  std::string text;
};
ErrorReport error_report(const Tensor<float>& got, const Tensor<double>& ref, int64_t nq, int64_t d) {
  ErrorReport e;
  e.rel_l2 = rel_l2_of(got, ref);
  int64_t at = 0;
  double ref_max = 0;
  for (int64_t x = 0; x < got.numel(); ++x) {
    const double gv = got.data[x];
    if (!std::isfinite(gv) || std::fabs(gv) > 1e30) {
      ++e.bad;
      continue;
    }
    const double err = std::fabs(gv - ref.data[x]);
    if (err > e.max_err) e.max_err = err, at = x;
    ref_max = std::max(ref_max, std::fabs(ref.data[x]));
  }
  std::ostringstream s;
  s << "rel-L2 " << e.rel_l2 << ", max |err| " << e.max_err << " (max |ref| " << ref_max << ") at query "
    << at / (nq * d) << " head " << (at / d) % nq << " col " << at % d << " (ref " << ref.data[at] << ", got "
    << got.data[at] << "), " << e.bad << " NaN/unwritten of " << got.numel();
  e.text = s.str();
  return e;
}

enum class Kernel { prefill, decode };

template <class T>
void run_kernel(Kernel k, const cuda::DeviceTensor<T>& q, const cuda::DeviceTensor<T>& kc, const cuda::DeviceTensor<T>& vc,
                int64_t Tc, const std::vector<int64_t>& qp, cuda::DeviceTensor<T>& ctx) {
  const cuda::DeviceTensor<int64_t> pos = cuda::upload_ints(qp);
  if (k == Kernel::prefill) cuda::attention_prefill(q, kc, vc, Tc, pos, ctx);
  else cuda::attention_decode(q, kc, vc, Tc, pos, ctx);
}

// T queries at positions past..past+T-1 over a cache of Tc = past + T + extra rows (the extra
// keys are beyond every query's position: masked), both kernels, the exact reference.
TYPED_TEST(AttentionMma, BothKernelsMatchReference) {
  using T = TypeParam;
  struct Case { int64_t T, past, extra, nq, nkv, d; };
  const Case cases[] = {
      {1, 0, 0, 8, 1, 128},    {1, 4095, 0, 32, 4, 128}, {7, 0, 0, 32, 4, 128},  {33, 0, 0, 8, 8, 128},
      {129, 0, 0, 32, 4, 128}, {257, 0, 0, 8, 1, 128},   {257, 300, 3, 16, 2, 128}, {33, 40, 5, 8, 1, 128},
      {7, 5, 0, 4, 4, 32},     {129, 3, 0, 16, 2, 16},   {33, 0, 0, 8, 1, 48},   {257, 0, 0, 8, 8, 64},
      {1, 999, 0, 8, 1, 16},   {33, 17, 2, 6, 2, 32},    {1, 70, 0, 16, 2, 64},  {3, 700, 0, 32, 4, 128}};
  const double bound = 2 * unit_roundoff<T>() + 1e-5;
  for (const Case c : cases) {
    const int64_t Tc = c.past + c.T + c.extra, cap = Tc + 3;
    const std::string name = "T=" + std::to_string(c.T) + " past=" + std::to_string(c.past) + " Tc=" + std::to_string(Tc) +
                             " nq=" + std::to_string(c.nq) + " nkv=" + std::to_string(c.nkv) + " d=" + std::to_string(c.d);
    SCOPED_TRACE(name);
    const auto q = operand<T>(normal_values(c.T * c.nq * c.d, 101 + Tc, 1.5), {c.T, c.nq, c.d});
    const auto k = operand<T>(normal_values(cap * c.nkv * c.d, 102 + Tc, 1.5), {cap, c.nkv, c.d});
    const auto v = operand<T>(normal_values(cap * c.nkv * c.d, 103 + Tc), {cap, c.nkv, c.d});
    std::vector<int64_t> qp(static_cast<size_t>(c.T)), kp(static_cast<size_t>(Tc));
    std::iota(qp.begin(), qp.end(), c.past);
    std::iota(kp.begin(), kp.end(), 0);
    Tensor<double> kr({Tc, c.nkv, c.d}), vr({Tc, c.nkv, c.d});
    std::copy_n(k.host.data.begin(), Tc * c.nkv * c.d, kr.data.begin());
    std::copy_n(v.host.data.begin(), Tc * c.nkv * c.d, vr.data.begin());
    const Tensor<double> ref = attention(q.host, kr, vr, qp, kp, kExact);
    expect_nonzero(ref, "reference");
    // attention_prefill, attention_decode, and at d = 128 every benchmark variant of the two.
    std::vector<std::string> kernels{"prefill", "decode"};
    if (c.d == 128) kernels.insert(kernels.end(), cuda::attention_variants().begin(), cuda::attention_variants().end());
    for (const std::string& kn : kernels) {
      const char* kname = kn.c_str();
      Guarded<T> ctx({c.T, c.nq * c.d});
      ASSERT_TRUE(cuda::attention_mma_supported(q.dev, k.dev, v.dev, ctx.tensor));
      if (kn == "prefill" || kn == "decode") {
        run_kernel(kn == "prefill" ? Kernel::prefill : Kernel::decode, q.dev, k.dev, v.dev, Tc, qp, ctx.tensor);
      } else {
        cuda::attention_variant(kn, q.dev, k.dev, v.dev, Tc, cuda::upload_ints(qp), ctx.tensor);
      }
      const ErrorReport e = error_report(cuda::download(ctx.tensor), ref, c.nq, c.d);
      const int64_t damage = ctx.guard_damage();
      std::printf("  %s %-18s %-48s %s, guard damage %lld (bound %.2e)\n", cuda::dtype_label<T>(), kname, name.c_str(),
                  e.text.c_str(), (long long)damage, bound);
      EXPECT_LE(e.rel_l2, bound) << kname << ": " << e.text;
      EXPECT_EQ(e.bad, 0) << kname << ": " << e.text;
      EXPECT_EQ(damage, 0) << kname;
    }
  }
}

// Decode-vs-prefill: a prompt of 65 tokens through the prefill kernel, then the same queries one
// at a time through the decode kernel as a generation loop would issue them (T = 1, the cache
// filled up to and including the query: Tc = position + 1). Each row must agree with the
// prefill's row within 4u in rel-L2 (each within 2u of the exact value, above).
TYPED_TEST(AttentionMma, DecodeStepsAgreeWithPrefill) {
  using T = TypeParam;
  const int64_t Tn = 65, nq = 32, nkv = 4, d = 128;
  const auto q = operand<T>(normal_values(Tn * nq * d, 201, 1.5), {Tn, nq, d});
  const auto k = operand<T>(normal_values(Tn * nkv * d, 202, 1.5), {Tn, nkv, d});
  const auto v = operand<T>(normal_values(Tn * nkv * d, 203), {Tn, nkv, d});
  std::vector<int64_t> qp(static_cast<size_t>(Tn));
  std::iota(qp.begin(), qp.end(), 0);
  Guarded<T> pre({Tn, nq * d});
  run_kernel(Kernel::prefill, q.dev, k.dev, v.dev, Tn, qp, pre.tensor);
  const Tensor<float> p = cuda::download(pre.tensor);
  double worst = 0;
  for (int64_t i : {int64_t(0), int64_t(1), int64_t(16), int64_t(31), int64_t(63), int64_t(64)}) {
    const auto qi = operand<T>(std::vector<float>(q.host.data.begin() + i * nq * d, q.host.data.begin() + (i + 1) * nq * d),
                               {1, nq, d});
    Guarded<T> dec({1, nq * d});
    run_kernel(Kernel::decode, qi.dev, k.dev, v.dev, i + 1, {i}, dec.tensor);
    const Tensor<float> got = cuda::download(dec.tensor);
    Tensor<double> row({1, nq * d});
    for (int64_t x = 0; x < nq * d; ++x) row.data[x] = p.data[i * nq * d + x];
    const double err = rel_l2_of(got, row);
    worst = std::max(worst, err);
    EXPECT_LE(err, 4 * unit_roundoff<T>() + 1e-5) << "query " << i;
    EXPECT_EQ(dec.guard_damage(), 0) << "query " << i;
  }
  EXPECT_EQ(pre.guard_damage(), 0);
  std::printf("  %s decode steps vs prefill rows: worst rel-L2 %.3e (bound %.3e)\n", cuda::dtype_label<T>(), worst,
              4 * unit_roundoff<T>() + 1e-5);
}

// Rows that see no key (q_pos < 0) come out 0 in both kernels, like the SIMT kernel; a query
// far beyond the cache (q_pos >= Tc) sees all Tc keys.
TYPED_TEST(AttentionMma, NoVisibleKeyGivesZeroAndLatePositionsSeeAll) {
  using T = TypeParam;
  const int64_t Tn = 3, nq = 8, nkv = 1, d = 64, Tc = 50;
  const auto q = operand<T>(normal_values(Tn * nq * d, 301), {Tn, nq, d});
  const auto k = operand<T>(normal_values(Tc * nkv * d, 302), {Tc, nkv, d});
  const auto v = operand<T>(normal_values(Tc * nkv * d, 303), {Tc, nkv, d});
  const std::vector<int64_t> qp{-1, 10, 1000};
  std::vector<int64_t> kp(static_cast<size_t>(Tc));
  std::iota(kp.begin(), kp.end(), 0);
  const Tensor<double> ref = attention(q.host, k.host, v.host, std::vector<int64_t>{-1, 10, Tc - 1}, kp, kExact);
  for (const Kernel kern : {Kernel::prefill, Kernel::decode}) {
    Guarded<T> ctx({Tn, nq * d});
    run_kernel(kern, q.dev, k.dev, v.dev, Tc, qp, ctx.tensor);
    const Tensor<float> got = cuda::download(ctx.tensor);
    for (int64_t x = 0; x < nq * d; ++x) ASSERT_EQ(got.data[x], 0.0f) << "element " << x;
    Tensor<float> tail({Tn - 1, nq * d});
    Tensor<double> rtail({Tn - 1, nq * d});
    std::copy(got.data.begin() + nq * d, got.data.end(), tail.data.begin());
    std::copy(ref.data.begin() + nq * d, ref.data.end(), rtail.data.begin());
    EXPECT_LE(rel_l2_of(tail, rtail), 2 * unit_roundoff<T>() + 1e-5);
    EXPECT_EQ(ctx.guard_damage(), 0);
  }
}

}  // namespace
}  // namespace hyoracle::test
