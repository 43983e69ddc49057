#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace hyoracle::compare {

namespace {

// Log-spaced histogram of |e| for percentiles: 64 bins per decade over [1e-40, 1e20), plus an
// exact-zero bin. A percentile is reported as its bin's upper edge (within 3.7% above the truth).
class AbsHistogram {
 public:
  static constexpr int kPerDecade = 64, kLowDecade = -40, kDecades = 60;
  AbsHistogram() : bins_(size_t(kPerDecade * kDecades + 2), 0) {}
  void add(double a) {
    if (a == 0) return ++bins_[0], void();
    const double pos = (std::log10(a) - kLowDecade) * kPerDecade;
    const int64_t b = std::clamp<int64_t>(int64_t(std::floor(pos)), 0, kPerDecade * kDecades) + 1;
    ++bins_[size_t(b)];
  }
  // Smallest bin edge below which at least fraction q of the values lie.
  double quantile(double q, int64_t n, double max_abs) const {
    if (n == 0) return 0;
    const double target = q * double(n);
    int64_t seen = 0;
    for (size_t b = 0; b < bins_.size(); ++b) {
      seen += bins_[b];
      if (double(seen) >= target && seen > 0) {
        if (b == 0) return 0;
        const double edge = std::pow(10.0, double(kLowDecade) + double(b) / kPerDecade);
        return std::min(edge, max_abs);
      }
    }
    return max_abs;
  }

 private:
  std::vector<int64_t> bins_;
};

}  // namespace

std::vector<int64_t> unravel(int64_t index, const std::vector<int64_t>& shape) {
  std::vector<int64_t> c(shape.size(), 0);
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 0) break;
    c[i] = index % shape[i];
    index /= shape[i];
  }
  return c;
}

double rel_l2(const double* r, const double* y, int64_t n) {
  double ee = 0, rr = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = y[i] - r[i];
    ee += e * e;
    rr += r[i] * r[i];
  }
  if (ee == 0) return 0;
  return rr == 0 ? std::numeric_limits<double>::infinity() : std::sqrt(ee / rr);
}

Metrics compare_tensors(const Tensor<double>& ref, const Tensor<double>& y, double atol, double rtol) {
  if (ref.numel() != y.numel()) fail("compare_tensors: sizes differ");
  Metrics m;
  m.atol = atol;
  m.rtol = rtol;
  const int64_t N = ref.numel();
  const int64_t rows = ref.shape.empty() ? 1 : ref.shape[0];
  const int64_t per_row = rows == 0 ? 0 : N / rows;
  m.token_rel_l2.assign(size_t(rows), 0.0);
  AbsHistogram hist;
  double sum_abs = 0, rr = 0, yy = 0, ry = 0, ee = 0;
  int64_t outside = 0, max_i = -1;
  std::vector<double> row_ee(size_t(rows), 0.0), row_rr(size_t(rows), 0.0);
  for (int64_t i = 0; i < N; ++i) {
    const double r = ref.data[i], t = y.data[i];
    const bool rn = std::isnan(r), tn = std::isnan(t);
    if (rn || tn) {
      if (rn && m.nan_ref++ == 0) m.first_nan_ref_at = unravel(i, ref.shape);
      if (tn && m.nan_target++ == 0) m.first_nan_target_at = unravel(i, ref.shape);
      continue;
    }
    if (std::isinf(r) || std::isinf(t)) {
      if (r == t) ++m.inf_matched;
      else if (m.inf_mismatched++ == 0) m.first_inf_mismatch_at = unravel(i, ref.shape);
      continue;
    }
    const double e = t - r, a = std::fabs(e);
    ++m.n;
    sum_abs += a;
    rr += r * r;
    yy += t * t;
    ry += r * t;
    ee += e * e;
    if (per_row > 0) {
      row_ee[size_t(i / per_row)] += e * e;
      row_rr[size_t(i / per_row)] += r * r;
    }
    if (a > atol + rtol * std::fabs(r)) ++outside;
    if (max_i < 0 || a > m.max_abs) {
      m.max_abs = a;
      max_i = i;
    }
    hist.add(a);
  }
  if (max_i >= 0) {
    m.max_abs_at = unravel(max_i, ref.shape);
    m.max_abs_ref = ref.data[max_i];
    m.max_abs_target = y.data[max_i];
  }
  const double inf = std::numeric_limits<double>::infinity();
  m.ref_norm = std::sqrt(rr);
  m.target_norm = std::sqrt(yy);
  m.err_norm = std::sqrt(ee);
  m.mean_abs = m.n ? sum_abs / double(m.n) : 0;
  m.nmse = ee == 0 ? 0 : rr == 0 ? inf : ee / rr;
  m.rel_l2 = std::sqrt(m.nmse);
  m.sqnr_db = m.nmse == 0 ? inf : -10.0 * std::log10(m.nmse);
  m.cosine = (rr == 0 || yy == 0) ? (rr == yy ? 1.0 : 0.0) : ry / std::sqrt(rr * yy);
  m.norm_ratio = rr == 0 ? (yy == 0 ? 1.0 : inf) : std::sqrt(yy / rr);
  m.diff = (rr + yy) == 0 ? 0 : 1.0 - 2.0 * ry / (rr + yy);
  m.frac_outside = m.n ? double(outside) / double(m.n) : 0;
  m.p50 = hist.quantile(0.5, m.n, m.max_abs);
  m.p99 = hist.quantile(0.99, m.n, m.max_abs);
  m.p999 = hist.quantile(0.999, m.n, m.max_abs);
  for (int64_t t = 0; t < rows; ++t)
    m.token_rel_l2[size_t(t)] =
        row_ee[size_t(t)] == 0 ? 0 : row_rr[size_t(t)] == 0 ? inf : std::sqrt(row_ee[size_t(t)] / row_rr[size_t(t)]);
  return m;
}

std::vector<int64_t> Metrics::worst_tokens(size_t count) const {
  std::vector<int64_t> idx(token_rel_l2.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return token_rel_l2[a] > token_rel_l2[b]; });
  if (idx.size() > count) idx.resize(count);
  return idx;
}

namespace {
// JSON has no Inf/NaN: write them as strings so the report stays valid JSON.
nlohmann::ordered_json num(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}
}  // namespace

nlohmann::ordered_json metrics_json(const Metrics& m) {
  nlohmann::ordered_json j;
  j["n"] = m.n;
  j["max_abs"] = num(m.max_abs);
  j["max_abs_at"] = m.max_abs_at;
  j["max_abs_ref"] = num(m.max_abs_ref);
  j["max_abs_target"] = num(m.max_abs_target);
  j["mean_abs"] = num(m.mean_abs);
  j["p50_abs"] = num(m.p50);
  j["p99_abs"] = num(m.p99);
  j["p999_abs"] = num(m.p999);
  j["rel_l2"] = num(m.rel_l2);
  j["nmse"] = num(m.nmse);
  j["sqnr_db"] = num(m.sqnr_db);
  j["cosine"] = num(m.cosine);
  j["norm_ratio"] = num(m.norm_ratio);
  j["diff"] = num(m.diff);
  j["frac_outside"] = num(m.frac_outside);
  j["atol"] = m.atol;
  j["rtol"] = m.rtol;
  j["nan_ref"] = m.nan_ref;
  j["nan_target"] = m.nan_target;
  j["inf_matched"] = m.inf_matched;
  j["inf_mismatched"] = m.inf_mismatched;
  nlohmann::ordered_json tok = nlohmann::ordered_json::array();
  for (double v : m.token_rel_l2) tok.push_back(num(v));
  j["token_rel_l2"] = tok;
  return j;
}

}  // namespace hyoracle::compare
