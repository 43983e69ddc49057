// The Hunyuan v1 softmax router on the GPU (cuda/router.h, RouterKind::softmax) against the
// reference's (reference/router.h route_softmax), at 1, 7 and 33 tokens (the decode logits kernel,
// and cuBLAS past 16 tokens), for Tencent's top-1 weighted by p_max and renormalised top-k.
//
// Bounds:
//   selection on the reference's own logits (route_from_logits): ids identical; scores, weights
//     rel-L2 <= 1e-6 and margins within 1e-6 absolute (the same fp32 formulas, only exp differs:
//     CUDA's expf is within 2 ulp, so each p within a few ulp);
//   the whole router (logits computed on the GPU, fp32 accumulation in another order): 1e-5 as the
//     fp32 whole-model tests; ids identical (every case's smallest margin is printed, so a flip
//     would show as a near tie, not be hidden);
//   fp64 path against the exact reference: 1e-13 (fp64_test.cpp), margins 1e-14 absolute.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "cuda/router.h"
#include "reference/router.h"
#include "tests/cuda/cuda_test_util.h"

namespace hyoracle::test {
namespace {

const Numerics kF32{Precision::fp32, 1};
const Numerics kExact{Precision::exact, 1};

struct SoftmaxCase {
  int64_t E, k;
  bool renormalize;
  const char* what;
};
const SoftmaxCase kCases[] = {
    {16, 1, false, "top-1 of 16 weighted by p_max (Tencent)"},
    {4, 1, false, "top-1 of 4 weighted by p_max (tiny Hunyuan-Large)"},
    {8, 3, true, "top-3 of 8 renormalised (A13B-shaped)"},
    {64, 8, true, "top-8 of 64 renormalised (A13B)"},
    {40, 1, true, "top-1 of 40 renormalised (weight 1)"},
};
const int64_t kTokens[] = {1, 7, 33};
constexpr int64_t kH = 96;

class CudaSoftmaxRouter : public CudaTest {};

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::isfinite(b[i])) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}
std::vector<double> as_double(const Tensor<float>& t) { return std::vector<double>(t.data.begin(), t.data.end()); }
double smallest(const Tensor<float>& t) {
  double m = INFINITY;
  for (float v : t.data) m = std::min(m, double(v));
  return m;
}

TEST_F(CudaSoftmaxRouter, Fp32MatchesTheReferenceRouter) {
  for (const SoftmaxCase& c : kCases) {
    for (int64_t T : kTokens) {
      const std::string at = std::string(c.what) + ", T=" + std::to_string(T);
      const std::vector<float> u = normal_values(T * kH, 1000 + T * 7 + c.E);
      const std::vector<float> w = normal_values(c.E * kH, 2000 + c.E, 3.0 / std::sqrt(double(kH)));  // F32 gate
      const Tensor<float> uh({T, kH}, u), wh({c.E, kH}, w), zero({c.E});
      const cuda::DeviceTensor<float> ud = cuda::upload<float>(uh), wd = cuda::upload<float>(wh), bias = cuda::upload<float>(zero);
      const RouterOutput<float> ref = route(uh, wh, zero, c.k, 1.0, c.renormalize, kF32, RouterKind::softmax);

      // The selection step on the reference's logits.
      const cuda::RouterOutput s =
          cuda::route_from_logits(cuda::upload<float>(ref.logits), bias, c.k, 1.0, c.renormalize, RouterKind::softmax);
      EXPECT_EQ(cuda::download_ints(s.ids), ref.ids) << at;
      const double es = rel_l2(cuda::download(s.scores).data, ref.scores.data);
      const double ew = rel_l2(cuda::download(s.weights).data, ref.weights.data);
      const double em = max_abs_diff(as_double(cuda::download(s.margin)), as_double(ref.margin));
      EXPECT_LE(es, 1e-6) << at;
      EXPECT_LE(ew, 1e-6) << at;
      EXPECT_LE(em, 1e-6) << at;
      if (c.renormalize && c.k == 1) {
        for (float x : cuda::download(s.weights).data) {
          EXPECT_EQ(x, 1.0f) << at << ": a renormalised top-1 weight is 1";
        }
      }

      // The whole router.
      const cuda::RouterOutput r = cuda::route(ud, wd, bias, c.k, 1.0, c.renormalize, RouterKind::softmax);
      EXPECT_EQ(cuda::download_ints(r.ids), ref.ids) << at;
      const double rl = rel_l2(cuda::download(r.logits).data, ref.logits.data);
      const double rs = rel_l2(cuda::download(r.scores).data, ref.scores.data);
      const double rw = rel_l2(cuda::download(r.weights).data, ref.weights.data);
      const double rm = max_abs_diff(as_double(cuda::download(r.margin)), as_double(ref.margin));
      EXPECT_LE(rl, 1e-5) << at;
      EXPECT_LE(rs, 1e-5) << at;
      EXPECT_LE(rw, 1e-5) << at;
      EXPECT_LE(rm, 1e-5) << at;
      std::printf("  softmax %-48s on reference logits: scores %.2e weights %.2e margin %.1e | whole: logits %.2e "
                  "scores %.2e weights %.2e margin %.1e | smallest margin %.3g\n",
                  at.c_str(), es, ew, em, rl, rs, rw, rm, smallest(ref.margin));
    }
  }
}

// Exact ties go to the lower expert id, as reference/router.h's top_k_indices: equal logits give
// equal probabilities.
TEST_F(CudaSoftmaxRouter, ExactTiesGoToTheLowerExpert) {
  const int64_t E = 37, k = 3;
  std::vector<float> l(2 * E, -1.0f);
  for (int64_t e : {5, 20, 33}) l[e] = 2.0f;           // token 0: three tied winners
  for (int64_t e : {36, 1, 34, 2}) l[E + e] = 0.5f;     // token 1: four tied, the lowest three win
  const cuda::DeviceTensor<float> bias = cuda::upload<float>(Tensor<float>({E}));
  const cuda::RouterOutput r =
      cuda::route_from_logits(cuda::upload_values<float>(l, {2, E}), bias, k, 1.0, true, RouterKind::softmax);
  EXPECT_EQ(cuda::download_ints(r.ids), (std::vector<int64_t>{5, 20, 33, 1, 2, 34}));
  const Tensor<float> w = cuda::download(r.weights), m = cuda::download(r.margin);
  for (int64_t j = 0; j < 2 * k; ++j) EXPECT_FLOAT_EQ(w.data[j], 1.0f / 3.0f);
  EXPECT_GT(m.data[0], 0.0f);
  EXPECT_EQ(m.data[1], 0.0f) << "the 3rd and 4th choices are tied";
}

TEST_F(CudaSoftmaxRouter, Fp64MatchesTheExactReference) {
  for (const SoftmaxCase& c : kCases) {
    for (int64_t T : kTokens) {
      const std::string at = std::string(c.what) + ", T=" + std::to_string(T);
      Rng rng(3000 + T * 11 + c.E);
      Tensor<double> u({T, kH});
      for (auto& x : u.data) x = rng.normal() + 1e-3 * rng.normal() / 3.0;  // all 53 bits
      const std::vector<float> w = normal_values(c.E * kH, 4000 + c.E, 3.0 / std::sqrt(double(kH)));
      const Tensor<float> wh({c.E, kH}, w);
      const cuda::DeviceTensor<float> wd = cuda::upload<float>(wh), bias = cuda::upload<float>(Tensor<float>({c.E}));
      const cuda::RouterOutputOf<double> r =
          cuda::route(cuda::upload<double>(u), wd, bias, c.k, 1.0, c.renormalize, RouterKind::softmax);
      const RouterOutput<double> ref =
          route(u, cast<double>(wh), Tensor<double>({c.E}), c.k, 1.0, c.renormalize, kExact, RouterKind::softmax);
      EXPECT_EQ(cuda::download_ints(r.ids), ref.ids) << at;
      const double el = rel_l2(cuda::download(r.logits).data, ref.logits.data);
      const double es = rel_l2(cuda::download(r.scores).data, ref.scores.data);
      const double ew = rel_l2(cuda::download(r.weights).data, ref.weights.data);
      const double em = max_abs_diff(cuda::download(r.margin).data, ref.margin.data);
      EXPECT_LE(el, 1e-13) << at;
      EXPECT_LE(es, 1e-13) << at;
      EXPECT_LE(ew, 1e-13) << at;
      EXPECT_LE(em, 1e-14) << at;
      std::printf("  fp64 softmax %-48s logits %.2e scores %.2e weights %.2e margin %.1e\n", at.c_str(), el, es, ew, em);
    }
  }
}

}  // namespace
}  // namespace hyoracle::test
