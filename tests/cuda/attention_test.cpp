// The attention kernels (cuda/attention.h: attention_prefill, attention_decode, attention_simt,
// the attention() dispatcher, and the benchmark-only variants of bench/cuda/attention_variants.h)
// against the exact CPU reference (reference/attention.h), with guard buffers, on every case of
// the table tests/cuda/op_cases.h shares with bench/cuda/attention_bench.cpp: the odd sizes in
// full, the Hy-MT2 sizes the benchmark times on the rows the table names.
//
// Error bound, rel-L2 over the checked rows <= 2u + 1e-5 (u = unit roundoff of T: 2^-8 bf16,
// 2^-11 fp16). Where it comes from: Q, K, V are exactly the T values the reference sees, and the
// products and sums are fp32 (errors ~1e-6 relative, the 1e-5). Two roundings to T remain:
//  - the output's own rounding: each element within u of the fp32 value, so <= u in rel-L2;
//  - the unnormalised probabilities rounded to T before P·V: each weight p_j gets a relative
//    error |δ_j| <= u, so output element c moves by Σ_j δ_j w_j v_jc (w = normalised weights).
//    With V independent of the rounding errors this is a sum of independent terms whose RMS is
//    <= u·sqrt(Σ_j w_j² v_jc²), the same order as |o_c| = |Σ_j w_j v_jc| for random V, so this
//    term is <= u in rel-L2 as well (the worst case, u·Σ_j w_j|v_jc| over |o_c|, is not
//    reached on random data; the measured errors are printed next to the bound).
// The SIMT kernel (fp32 probabilities) keeps the tighter u + 1e-5 of tests/reference/attention_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "bench/cuda/attention_variants.h"
#include "cuda/attention.h"
#include "reference/attention.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/op_cases.h"

namespace hyoracle::test {
namespace {

using cuda::bf16;
using cuda::fp16;
const Numerics kExact{Precision::exact, 1};

template <class T>
class AttentionMma : public CudaTest {};
using Dtypes16 = ::testing::Types<bf16, fp16>;
TYPED_TEST_SUITE(AttentionMma, Dtypes16);

// One line about got vs ref (rows `rows` of the context [T, nq·d], in that order): rel-L2, the
// largest |error| and where; and over the whole context the NaN / sentinel count (unwritten: the
// guard pattern, huge or NaN).
struct ErrorReport {
  double rel_l2 = 0, max_err = 0;
  int64_t bad = 0;  // NaN, inf or |x| > 1e30 (the 0x7F7F sentinel)
  std::string text;
};
ErrorReport error_report(const Tensor<float>& all, const std::vector<int64_t>& rows, const Tensor<double>& ref, int64_t nq,
                         int64_t d) {
  ErrorReport e;
  const int64_t w = nq * d;
  for (const float x : all.data)
    if (!std::isfinite(x) || std::fabs(x) > 1e30f) ++e.bad;
  Tensor<float> got({int64_t(rows.size()), w});
  for (size_t r = 0; r < rows.size(); ++r)
    std::copy_n(all.data.begin() + rows[r] * w, w, got.data.begin() + int64_t(r) * w);
  e.rel_l2 = rel_l2_of(got, ref);
  int64_t at = 0;
  double ref_max = 0;
  for (int64_t x = 0; x < got.numel(); ++x) {
    const double gv = got.data[x];
    if (!std::isfinite(gv) || std::fabs(gv) > 1e30) continue;
    const double err = std::fabs(gv - ref.data[x]);
    if (err > e.max_err) e.max_err = err, at = x;
    ref_max = std::max(ref_max, std::fabs(ref.data[x]));
  }
  std::ostringstream s;
  s << "rel-L2 " << e.rel_l2 << ", max |err| " << e.max_err << " (max |ref| " << ref_max << ") at query "
    << rows[size_t(at / w)] << " head " << (at / d) % nq << " col " << at % d << " (ref " << ref.data[at] << ", got "
    << got.data[at] << "), " << e.bad << " NaN/unwritten of " << all.numel();
  if (int64_t(rows.size()) < all.rows()) s << " (" << rows.size() << " rows checked)";
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

// Runs kernel `kn` ("prefill", "decode", "simt", "attention" or a variant name) on one case of
// the table and checks it against the exact reference within `bound` in rel-L2 over the table's
// rows, with no NaN / unwritten element and no guard damage. The cache has Tc + 3 rows (the
// rows past Tc must not be read either).
template <class T>
class CaseRunner {
 public:
  explicit CaseRunner(const cases::AttentionCase& c)
      : c_(c), Tc_(c.Tc()), cap_(Tc_ + 3), rows_(c.checked_rows()),
        q_(operand<T>(normal_values(c.T * c.nq * c.d, 101 + Tc_, 1.5), {c.T, c.nq, c.d})),
        k_(operand<T>(normal_values(cap_ * c.nkv * c.d, 102 + Tc_, 1.5), {cap_, c.nkv, c.d})),
        v_(operand<T>(normal_values(cap_ * c.nkv * c.d, 103 + Tc_), {cap_, c.nkv, c.d})) {
    qp_.resize(static_cast<size_t>(c.T));
    std::iota(qp_.begin(), qp_.end(), c.past);
    pos_ = cuda::upload_ints(qp_);
    // The reference over the checked rows only, against the first Tc cache rows.
    Tensor<double> qr({int64_t(rows_.size()), c.nq, c.d}), kr({Tc_, c.nkv, c.d}), vr({Tc_, c.nkv, c.d});
    std::vector<int64_t> qpr, kp(static_cast<size_t>(Tc_));
    for (size_t r = 0; r < rows_.size(); ++r) {
      std::copy_n(q_.host.data.begin() + rows_[r] * c.nq * c.d, c.nq * c.d, qr.data.begin() + int64_t(r) * c.nq * c.d);
      qpr.push_back(qp_[size_t(rows_[r])]);
    }
    std::copy_n(k_.host.data.begin(), Tc_ * c.nkv * c.d, kr.data.begin());
    std::copy_n(v_.host.data.begin(), Tc_ * c.nkv * c.d, vr.data.begin());
    std::iota(kp.begin(), kp.end(), 0);
    ref_ = attention(qr, kr, vr, qpr, kp, Numerics{Precision::exact, 16});
    expect_nonzero(ref_, "reference");
  }

  void check(const std::string& kn, double bound) {
    Guarded<T> ctx({c_.T, c_.nq * c_.d});
    if (kn == "prefill") {
      ASSERT_TRUE(cuda::attention_mma_supported(q_.dev, k_.dev, v_.dev, ctx.tensor));
      cuda::attention_prefill(q_.dev, k_.dev, v_.dev, Tc_, pos_, ctx.tensor);
    } else if (kn == "decode") {
      ASSERT_TRUE(cuda::attention_mma_supported(q_.dev, k_.dev, v_.dev, ctx.tensor));
      cuda::attention_decode(q_.dev, k_.dev, v_.dev, Tc_, pos_, ctx.tensor);
    } else if (kn == "simt") {
      cuda::attention_simt(q_.dev, k_.dev, v_.dev, Tc_, pos_, ctx.tensor);
    } else if (kn == "attention") {
      cuda::attention(q_.dev, k_.dev, v_.dev, Tc_, pos_, ctx.tensor);
    } else {
      bench::attention_variant(kn, q_.dev, k_.dev, v_.dev, Tc_, pos_, ctx.tensor);
    }
    const ErrorReport e = error_report(cuda::download(ctx.tensor), rows_, ref_, c_.nq, c_.d);
    const int64_t damage = ctx.guard_damage();
    std::printf("  %s %-20s %-48s %s, guard damage %lld (bound %.2e)\n", cuda::dtype_label<T>(), kn.c_str(), c_.name().c_str(),
                e.text.c_str(), (long long)damage, bound);
    EXPECT_LE(e.rel_l2, bound) << kn << " " << c_.name() << ": " << e.text;
    EXPECT_EQ(e.bad, 0) << kn << " " << c_.name() << ": " << e.text;
    EXPECT_EQ(damage, 0) << kn << " " << c_.name();
  }

 private:
  cases::AttentionCase c_;
  int64_t Tc_, cap_;
  std::vector<int64_t> rows_, qp_;
  Operand<T> q_, k_, v_;
  cuda::DeviceTensor<int64_t> pos_;
  Tensor<double> ref_;
};

// attention_prefill, attention_decode, and at d = 128 every benchmark variant of the two.
std::vector<std::string> mma_kernels(const cases::AttentionCase& c) {
  std::vector<std::string> k{"prefill", "decode"};
  if (c.d == 128) k.insert(k.end(), bench::attention_variants().begin(), bench::attention_variants().end());
  return k;
}

// The odd sizes of the table, every row: T queries at positions past..past+T-1 over a cache of
// Tc = past + T + extra rows (the extra keys are beyond every query's position: masked).
TYPED_TEST(AttentionMma, BothKernelsMatchReference) {
  using T = TypeParam;
  const double bound = 2 * unit_roundoff<T>() + 1e-5;
  for (const cases::AttentionCase& c : cases::attention_cases()) {
    if (c.model_size()) continue;
    SCOPED_TRACE(c.name());
    CaseRunner<T> run(c);
    for (const std::string& kn : mma_kernels(c)) run.check(kn, bound);
  }
}

// The Hy-MT2 sizes attention_bench times (the same table), on the rows the table names: the
// kernels, the variants and the dispatcher the benchmark runs.
TYPED_TEST(AttentionMma, BenchmarkedSizesMatchReference) {
  using T = TypeParam;
  const double bound = 2 * unit_roundoff<T>() + 1e-5;
  for (const cases::AttentionCase& c : cases::attention_cases()) {
    if (!c.model_size()) continue;
    SCOPED_TRACE(c.name());
    CaseRunner<T> run(c);
    std::vector<std::string> kernels = mma_kernels(c);
    kernels.push_back("attention");
    for (const std::string& kn : kernels) run.check(kn, bound);
  }
}

// The SIMT kernel (fp32 probabilities: only the output's rounding, u + 1e-5) and the dispatcher
// attention() on the odd sizes of the table.
TYPED_TEST(AttentionMma, SimtAndDispatchMatchReference) {
  using T = TypeParam;
  for (const cases::AttentionCase& c : cases::attention_cases()) {
    if (c.model_size()) continue;
    SCOPED_TRACE(c.name());
    CaseRunner<T> run(c);
    run.check("simt", unit_roundoff<T>() + 1e-5);
    run.check("attention", 2 * unit_roundoff<T>() + 1e-5);
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
