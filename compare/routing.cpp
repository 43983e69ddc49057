#include "compare/routing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "util/tensor.h"

namespace hyoracle::compare {

double jaccard(std::vector<int64_t> a, std::vector<int64_t> b) {
  std::set<int64_t> A(a.begin(), a.end()), B(b.begin(), b.end()), U = A;
  U.insert(B.begin(), B.end());
  if (U.empty()) return 1.0;
  int64_t inter = 0;
  for (int64_t x : A) inter += B.count(x);
  return double(inter) / double(U.size());
}

RoutingLayer routing_agreement(const RoutingInputs& in) {
  RoutingLayer r;
  r.layer = in.layer;
  r.tokens = in.tokens;
  r.margin_histogram.assign(7, 0);
  const int64_t T = in.tokens, k = in.k, E = in.experts;
  const bool have_scores = !in.ref_scores.empty(), have_bias = !in.expert_bias.empty() && have_scores;
  r.margin_source = have_bias ? "baseline scores + checkpoint expert_bias"
                    : !in.ref_margin.empty() ? "baseline moe.topk_margin (lower bound of each gap)"
                    : have_scores ? "baseline scores without expert_bias (approximate)"
                                  : "none (no baseline scores or margin)";
  double jac_sum = 0;
  std::vector<double> c(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<int64_t> A(in.ref_ids.begin() + t * k, in.ref_ids.begin() + (t + 1) * k);
    const std::vector<int64_t> B(in.target_ids.begin() + t * k, in.target_ids.begin() + (t + 1) * k);
    if (have_scores)
      for (int64_t e = 0; e < E; ++e) c[size_t(e)] = in.ref_scores[t * E + e] + (have_bias ? in.expert_bias[e] : 0.0);
    // The reference's k / k+1 margin.
    double margin = in.ref_margin.empty() ? NAN : in.ref_margin[t];
    if (have_bias || (in.ref_margin.empty() && have_scores)) {
      std::vector<double> cs = c;
      std::sort(cs.begin(), cs.end(), std::greater<double>());
      margin = k < E ? cs[size_t(k - 1)] - cs[size_t(k)] : INFINITY;
    }
    if (std::isfinite(margin)) {
      r.min_margin = std::min(r.min_margin, margin);
      const int bin = margin <= 0 ? 0 : std::clamp(int(std::floor(std::log10(margin))) + 7, 0, 6);
      ++r.margin_histogram[size_t(bin)];
    }
    const double jac = jaccard(A, B);
    jac_sum += jac;
    // Weight deltas on common experts, keyed by id.
    if (!in.ref_weights.empty() && !in.target_weights.empty()) {
      double sa = 0, sb = 0;
      for (int64_t j = 0; j < k; ++j) {
        sa += in.ref_weights[t * k + j];
        sb += in.target_weights[t * k + j];
        for (int64_t i = 0; i < k; ++i)
          if (A[size_t(j)] == B[size_t(i)]) {
            const double wa = in.ref_weights[t * k + j], wb = in.target_weights[t * k + i];
            r.max_weight_delta = std::max(r.max_weight_delta, std::fabs(wb - wa));
            if (wa != 0) r.max_weight_rel_delta = std::max(r.max_weight_rel_delta, std::fabs(wb - wa) / std::fabs(wa));
          }
      }
      r.max_weight_sum_delta = std::max(r.max_weight_sum_delta, std::fabs(sb - sa));
    }
    if (jac == 1.0) {
      ++r.exact_set_match;
      continue;
    }
    RoutingFlip f;
    f.token = t;
    for (int64_t a : A)
      if (std::find(B.begin(), B.end(), a) == B.end()) f.only_baseline.push_back(a);
    for (int64_t b : B)
      if (std::find(A.begin(), A.end(), b) == A.end()) f.only_target.push_back(b);
    const double dl = in.logit_noise.empty() ? 0.0 : in.logit_noise[t];
    auto sprime = [&](int64_t e) {
      if (!have_scores || e < 0 || e >= E) return in.softmax ? 1.0 : 0.25;  // p' <= p <= 1; σ' <= 1/4
      const double s = in.ref_scores[t * E + e];
      return in.softmax ? s : s * (1 - s);
    };
    bool near = true;
    double worst_gap = 0, worst_noise = 0;
    if (have_bias || (in.ref_margin.empty() && have_scores)) {
      std::vector<int64_t> a = f.only_baseline, b = f.only_target;
      std::sort(a.begin(), a.end(), [&](int64_t x, int64_t y) { return c[x] < c[y]; });  // weakest first
      std::sort(b.begin(), b.end(), [&](int64_t x, int64_t y) {                          // strongest first
        const double cx = x >= 0 && x < E ? c[x] : -INFINITY, cy = y >= 0 && y < E ? c[y] : -INFINITY;
        return cx > cy;
      });
      for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        const double cb = b[i] >= 0 && b[i] < E ? c[b[i]] : -INFINITY;
        const double gap = c[a[i]] - cb;
        const double noise = (sprime(a[i]) + sprime(b[i])) * dl;
        const double own = 4 * in.ref_unit_roundoff * (std::fabs(c[a[i]]) + 1);  // the reference's own rounding
        if (gap > std::max(noise, own)) near = false;
        if (gap - noise > worst_gap - worst_noise || i == 0) worst_gap = gap, worst_noise = noise;
      }
    } else if (std::isfinite(margin)) {
      worst_gap = margin;
      worst_noise = (in.softmax ? 2.0 : 0.5) * dl;  // 2·σ'max·Δℓ = Δℓ/2 (softmax: 2·Δℓ)
      near = margin <= worst_noise;
    } else {
      near = false;  // nothing to judge a flip by: not excused
    }
    f.margin = worst_gap;
    f.noise = worst_noise;
    f.near_tie = near;
    (near ? r.near_tie_flips : r.real_flips) += 1;
    r.flips.push_back(std::move(f));
  }
  r.mean_jaccard = T ? jac_sum / double(T) : 1.0;
  return r;
}

}  // namespace hyoracle::compare

namespace hyoracle::compare {

void forced_routing(const std::vector<double>& values, bool are_logits, double u_dump, const std::vector<double>& bias,
                    const std::vector<int64_t>& target_ids, int64_t T, int64_t E, int64_t k, RoutingLayer& out, bool softmax,
                    size_t keep) {
  const double u32 = 0x1p-24;
  out.forced = true;
  std::vector<double> c(static_cast<size_t>(E)), w(static_cast<size_t>(E));
  std::vector<char> chosen(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      const double v = values[size_t(t * E + e)];
      const double s = are_logits && !softmax ? 1.0 / (1.0 + std::exp(-v)) : v;
      const double b = bias.empty() ? 0.0 : bias[size_t(e)];
      c[size_t(e)] = s + b;
      // A non-finite corrected score (an infinite score, a non-finite expert_bias) has no top-k
      // order and no rounding window: its comparisons would be NaN.
      if (!std::isfinite(c[size_t(e)])) {
        char msg[256];
        std::snprintf(msg, sizeof msg, "expert %lld at token %lld has corrected score %s + expert_bias = %.9g + %.9g",
                      static_cast<long long>(e), static_cast<long long>(t), are_logits ? "σ(logit)" : "score", s, b);
        fail("teacher-forced routing of layer " + std::to_string(out.layer) + ": " + msg +
             ", which is not finite (expected a finite target score and checkpoint expert_bias)");
      }
      // σ'(ℓ)·|ℓ| -> 0 as |ℓ| -> ∞: an infinite logit (an fp16 overflow) has σ exactly 0 or 1 and
      // adds no rounding (the product would be 0·∞ = NaN).
      const double dump = are_logits && !softmax ? (std::isinf(v) ? 0.0 : s * (1 - s) * std::fabs(v) * u_dump)
                                                 : std::fabs(s) * u_dump;
      w[size_t(e)] = softmax && are_logits ? 4 * u32 * (std::fabs(s) + 1) + dump
                                           : 4 * u32 * (std::fabs(s) + std::fabs(b) + std::fabs(c[size_t(e)])) + dump;
    }
    std::fill(chosen.begin(), chosen.end(), 0);
    for (int64_t j = 0; j < k; ++j) chosen[size_t(target_ids[size_t(t * k + j)])] = 1;
    int64_t a = -1, b = -1;
    for (int64_t e = 0; e < E; ++e) {
      if (chosen[size_t(e)]) {
        if (a < 0 || c[size_t(e)] + w[size_t(e)] < c[size_t(a)] + w[size_t(a)]) a = e;
      } else if (b < 0 || c[size_t(e)] - w[size_t(e)] > c[size_t(b)] - w[size_t(b)]) {
        b = e;
      }
    }
    if (a < 0 || b < 0 || c[size_t(b)] - w[size_t(b)] <= c[size_t(a)] + w[size_t(a)]) continue;
    ++out.forced_mismatches;
    if (out.forced_list.size() < keep)
      out.forced_list.push_back({t, a, b, c[size_t(a)], c[size_t(b)], w[size_t(a)] + w[size_t(b)]});
  }
}


// Reads and validates an id tensor of a dump against the routing layer's shape and E: ids in
// [0, E), no expert twice in a row.
std::vector<int64_t> checked_ids(const Dump& d, const std::string& name, const std::vector<int64_t>& shape, int64_t E) {
  const TensorInfo& ti = d.info(name);
  if (ti.shape != shape)
    fail(d.file_of(name) + ": tensor \"" + name + "\" has shape " + shape_str(ti.shape) + "; expected " + shape_str(shape));
  std::vector<int64_t> ids = d.read_ints(name);
  const int64_t k = shape.size() > 1 ? shape[1] : 1;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (E > 0 && (ids[i] < 0 || ids[i] >= E))
      fail(d.file_of(name) + ": tensor \"" + name + "\" holds expert id " + std::to_string(ids[i]) + " at " +
           shape_str({int64_t(i) / k, int64_t(i) % k}) + "; expected [0, " + std::to_string(E) + ")");
    for (size_t j = i - i % size_t(k); j < i; ++j)
      if (ids[j] == ids[i])
        fail(d.file_of(name) + ": tensor \"" + name + "\" names expert " + std::to_string(ids[i]) + " twice in row " +
             std::to_string(int64_t(i) / k));
  }
  return ids;
}

}  // namespace hyoracle::compare
