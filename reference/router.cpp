#include "reference/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "reference/matmul.h"

namespace hyoracle {

std::vector<int64_t> top_k_indices(const double* c, int64_t n, int64_t k) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int64_t a, int64_t b) { return c[a] > c[b] || (c[a] == c[b] && a < b); });
  idx.resize(size_t(k));
  return idx;
}

namespace {

// A router output for k of E experts with its logits u·W_routerᵀ [T, E] (accumulated as linear())
// and the other fields allocated: scores [T, E], weights [T, k], margin [T], ids [T·k].
template <class S>
RouterOutput<S> router_logits(const Tensor<S>& u, const Tensor<S>& w_router, int64_t k, int threads) {
  RouterOutput<S> out;
  out.k = k;
  out.logits = linear(u, w_router, threads);
  const int64_t T = out.logits.dim(0), E = w_router.dim(0);
  out.scores = Tensor<S>({T, E});
  out.weights = Tensor<S>({T, k});
  out.margin = Tensor<S>({T});
  out.ids.resize(size_t(T * k));
  return out;
}

// A NaN or Inf logit would route silently to arbitrary experts: refuse it, naming where.
void require_finite_logit(double l, int64_t t, int64_t e) {
  if (!std::isfinite(l))
    fail("router: non-finite logit " + std::to_string(l) + " at token " + std::to_string(t) + ", expert " + std::to_string(e));
}

// The softmax router (see router.h). In fp32 mode (hf, fp32) every step after the logits is in
// float: max, exp, sum in token order of experts, division; exact mode in S.
template <class S>
RouterOutput<S> route_softmax(const Tensor<S>& u, const Tensor<S>& w_router, int64_t k, double scaling, bool renormalize,
                              const Numerics& num) {
  const int64_t E = w_router.dim(0);
  RouterOutput<S> out = router_logits(u, w_router, k, num.threads);
  const int64_t T = out.logits.dim(0);
  const bool f32 = num.fp32_steps();
  std::vector<double> p(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    S* l = out.logits.row(t);
    S* s = out.scores.row(t);
    for (int64_t e = 0; e < E; ++e) require_finite_logit(double(l[e]), t, e);
    if (f32) {
      float mx = -std::numeric_limits<float>::infinity(), sum = 0;
      for (int64_t e = 0; e < E; ++e) l[e] = S(float(l[e])), mx = std::max(mx, float(l[e]));
      std::vector<float> ex(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) sum += ex[e] = std::exp(float(l[e]) - mx);
      for (int64_t e = 0; e < E; ++e) s[e] = S(ex[e] / sum), p[e] = double(s[e]);
    } else {
      S mx = l[0], sum = 0;
      for (int64_t e = 1; e < E; ++e) mx = std::max(mx, l[e]);
      for (int64_t e = 0; e < E; ++e) sum += s[e] = std::exp(l[e] - mx);
      for (int64_t e = 0; e < E; ++e) s[e] /= sum, p[e] = double(s[e]);
    }
    const std::vector<int64_t> top = top_k_indices(p.data(), E, std::min(E, k + 1));
    out.margin.data[t] = k < E ? S(p[top[k - 1]] - p[top[k]]) : std::numeric_limits<S>::infinity();
    if (f32) {
      float sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += float(s[top[j]]);
      for (int64_t j = 0; j < k; ++j)
        out.weights.data[t * k + j] = S((renormalize ? float(s[top[j]]) / sum : float(s[top[j]])) * float(scaling));
    } else {
      S sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += s[top[j]];
      for (int64_t j = 0; j < k; ++j) out.weights.data[t * k + j] = (renormalize ? s[top[j]] / sum : s[top[j]]) * S(scaling);
    }
    for (int64_t j = 0; j < k; ++j) out.ids[t * k + j] = top[j];
  }
  return out;
}

}  // namespace

template <class S>
RouterOutput<S> route(const Tensor<S>& u, const Tensor<S>& w_router, const Tensor<S>& bias, int64_t k, double scaling,
                      bool renormalize, const Numerics& num, RouterKind kind) {
  if (kind == RouterKind::softmax) return route_softmax(u, w_router, k, scaling, renormalize, num);
  const int64_t E = w_router.dim(0);
  RouterOutput<S> out = router_logits(u, w_router, k, num.threads);
  const int64_t T = out.logits.dim(0);
  const bool f32 = num.fp32_steps();
  std::vector<double> c(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      S& l = out.logits.data[t * E + e];
      require_finite_logit(double(l), t, e);
      if (f32) {
        const float lf = float(l);
        const float s = 1.0f / (1.0f + std::exp(-lf));
        l = S(lf);
        out.scores.data[t * E + e] = S(s);
        c[e] = double(s + float(bias.data[e]));
      } else {
        const S s = S(1) / (S(1) + std::exp(-l));
        out.scores.data[t * E + e] = s;
        c[e] = double(s) + double(bias.data[e]);
      }
    }
    const std::vector<int64_t> top = top_k_indices(c.data(), E, std::min(E, k + 1));
    out.margin.data[t] = k < E ? S(c[top[k - 1]] - c[top[k]]) : std::numeric_limits<S>::infinity();
    if (f32) {
      float sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += float(out.scores.data[t * E + top[j]]);
      const float denom = renormalize ? sum + 1e-20f : 1.0f;
      for (int64_t j = 0; j < k; ++j) {
        const float s = float(out.scores.data[t * E + top[j]]);
        out.weights.data[t * k + j] = S((s / denom) * float(scaling));
        out.ids[t * k + j] = top[j];
      }
    } else {
      S sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += out.scores.data[t * E + top[j]];
      const S denom = renormalize ? sum + S(1e-20) : S(1);
      for (int64_t j = 0; j < k; ++j) {
        out.weights.data[t * k + j] = (out.scores.data[t * E + top[j]] / denom) * S(scaling);
        out.ids[t * k + j] = top[j];
      }
    }
  }
  return out;
}

template RouterOutput<double> route<double>(const Tensor<double>&, const Tensor<double>&, const Tensor<double>&, int64_t,
                                            double, bool, const Numerics&, RouterKind);
template RouterOutput<float> route<float>(const Tensor<float>&, const Tensor<float>&, const Tensor<float>&, int64_t, double,
                                          bool, const Numerics&, RouterKind);

}  // namespace hyoracle
