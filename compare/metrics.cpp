#include "compare/metrics.h"

#include "util/cpu_features.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>
#include <limits>
#include <numeric>

namespace hyoracle::compare {

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

namespace {

// |e| histogram bins: 0 for |e| = 0, else 1 + the top 17 bits of the double (exponent and six
// mantissa bits), which order positive doubles: 64 equal-width bins per power of two.
constexpr int kMantissaBits = 6;
constexpr int kBinShift = 52 - kMantissaBits;
constexpr size_t kBins = (size_t(1) << (63 - kBinShift)) + 1;

size_t abs_bin(double a) {
  uint64_t u;
  std::memcpy(&u, &a, 8);
  return size_t(u >> kBinShift) + size_t(u != 0);  // branch-free: exact zeros are frequent in bf16
}


// The five lane sums of `blocks` blocks of four pairs, element 4q + l into lane l (lanes[k][l],
// k = Σ|e|, Σr², Σy², Σr·y, Σe²), written back only when every value is finite (returns
// whether they were). Plain multiplies and adds in element order per lane, no FMA, so the AVX2
// version gives the scalar version's bits.
bool lane_sums_scalar(const double* r, const double* t, int64_t blocks, double (&lanes)[5][4]) {
  double sa[4], rr[4], yy[4], ry[4], ee[4];
  for (int l = 0; l < 4; ++l) sa[l] = lanes[0][l], rr[l] = lanes[1][l], yy[l] = lanes[2][l], ry[l] = lanes[3][l], ee[l] = lanes[4][l];
  bool ok = true;
  for (int64_t q = 0; q < blocks; ++q)
    for (int l = 0; l < 4; ++l) {
      const double rv = r[4 * q + l], tv = t[4 * q + l], e = tv - rv;
      ok &= (std::fabs(rv) <= 1.7976931348623157e308) & (std::fabs(tv) <= 1.7976931348623157e308);
      sa[l] += std::fabs(e);
      rr[l] += rv * rv;
      yy[l] += tv * tv;
      ry[l] += rv * tv;
      ee[l] += e * e;
    }
  if (!ok) return false;
  for (int l = 0; l < 4; ++l) lanes[0][l] = sa[l], lanes[1][l] = rr[l], lanes[2][l] = yy[l], lanes[3][l] = ry[l], lanes[4][l] = ee[l];
  return true;
}
__attribute__((target("avx2"))) bool lane_sums_avx2(const double* r, const double* t, int64_t blocks,
                                                      double (&lanes)[5][4]) {
  const __m256d sign = _mm256_set1_pd(-0.0), big = _mm256_set1_pd(1.7976931348623157e308);
  __m256d sa = _mm256_loadu_pd(lanes[0]), rr = _mm256_loadu_pd(lanes[1]), yy = _mm256_loadu_pd(lanes[2]),
          ry = _mm256_loadu_pd(lanes[3]), ee = _mm256_loadu_pd(lanes[4]);
  __m256d ok = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
  for (int64_t q = 0; q < blocks; ++q) {
    const __m256d rv = _mm256_loadu_pd(r + 4 * q), tv = _mm256_loadu_pd(t + 4 * q), e = _mm256_sub_pd(tv, rv);
    ok = _mm256_and_pd(ok, _mm256_and_pd(_mm256_cmp_pd(_mm256_andnot_pd(sign, rv), big, _CMP_LE_OQ),
                                         _mm256_cmp_pd(_mm256_andnot_pd(sign, tv), big, _CMP_LE_OQ)));
    sa = _mm256_add_pd(sa, _mm256_andnot_pd(sign, e));
    rr = _mm256_add_pd(rr, _mm256_mul_pd(rv, rv));
    yy = _mm256_add_pd(yy, _mm256_mul_pd(tv, tv));
    ry = _mm256_add_pd(ry, _mm256_mul_pd(rv, tv));
    ee = _mm256_add_pd(ee, _mm256_mul_pd(e, e));
  }
  if (_mm256_movemask_pd(ok) != 0xf) return false;
  _mm256_storeu_pd(lanes[0], sa), _mm256_storeu_pd(lanes[1], rr), _mm256_storeu_pd(lanes[2], yy);
  _mm256_storeu_pd(lanes[3], ry), _mm256_storeu_pd(lanes[4], ee);
  return true;
}

// #{j : |t_j − r_j| > atol + rtol·|r_j|} and max_j |t_j − r_j| over n finite pairs.
int64_t outside_and_max_scalar(const double* r, const double* t, int64_t n, double atol, double rtol, double* max_abs) {
  int64_t outside = 0;
  double mx = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double a = std::fabs(t[j] - r[j]);
    outside += a > atol + rtol * std::fabs(r[j]);
    mx = std::max(mx, a);
  }
  *max_abs = mx;
  return outside;
}
__attribute__((target("avx2"))) int64_t outside_and_max_avx2(const double* r, const double* t, int64_t n, double atol,
                                                               double rtol, double* max_abs) {
  const __m256d sign = _mm256_set1_pd(-0.0), va = _mm256_set1_pd(atol), vr = _mm256_set1_pd(rtol);
  __m256d mx = _mm256_setzero_pd();
  int64_t outside = 0, j = 0;
  for (; j + 4 <= n; j += 4) {
    const __m256d rv = _mm256_loadu_pd(r + j), tv = _mm256_loadu_pd(t + j);
    const __m256d a = _mm256_andnot_pd(sign, _mm256_sub_pd(tv, rv));
    const __m256d lim = _mm256_add_pd(va, _mm256_mul_pd(vr, _mm256_andnot_pd(sign, rv)));
    outside += __builtin_popcount(unsigned(_mm256_movemask_pd(_mm256_cmp_pd(a, lim, _CMP_GT_OQ))));
    mx = _mm256_max_pd(mx, a);
  }
  double lanes[4];
  _mm256_storeu_pd(lanes, mx);
  double tail_max = 0;
  outside += outside_and_max_scalar(r + j, t + j, n - j, atol, rtol, &tail_max);
  *max_abs = std::max(std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3])), tail_max);
  return outside;
}
// Upper edge of bin b >= 1: the smallest double of the next bin.
double bin_upper_edge(size_t b) {
  const uint64_t u = uint64_t(b) << kBinShift;
  double x;
  std::memcpy(&x, &u, 8);
  return x;
}

}  // namespace

MetricsAccumulator::MetricsAccumulator(std::vector<int64_t> shape, double atol, double rtol)
    : shape_(std::move(shape)), bins_(kBins) {
  m_.atol = atol;
  m_.rtol = rtol;
  const int64_t N = numel_of(shape_);
  const int64_t rows = shape_.empty() ? 1 : shape_[0];
  per_row_ = rows == 0 ? 0 : N / rows;
  rows_.assign(size_t(rows), RowSums{});
}

MetricsAccumulator::RowSums MetricsAccumulator::lane_total() const {
  auto add4 = [](const double* l) { return (l[0] + l[1]) + (l[2] + l[3]); };
  return {add4(lanes_[0]), add4(lanes_[1]), add4(lanes_[2]), add4(lanes_[3]), add4(lanes_[4])};
}

// One element (index i of the tensor) into lane l.
inline void MetricsAccumulator::add_one(double rv, double tv, int l, int64_t i) {
  if (!(std::fabs(rv) <= kBig && std::fabs(tv) <= kBig)) {  // NaN or Inf: counted, left out of the sums
    const bool rn = std::isnan(rv), tn = std::isnan(tv);
    if (rn || tn) {
      if (rn && m_.nan_ref++ == 0) m_.first_nan_ref_at = unravel(i, shape_);
      if (tn && m_.nan_target++ == 0) m_.first_nan_target_at = unravel(i, shape_);
    } else if (rv == tv) {
      ++m_.inf_matched;
    } else if (m_.inf_mismatched++ == 0) {
      m_.first_inf_mismatch_at = unravel(i, shape_);
    }
    return;
  }
  const double e = tv - rv, a = std::fabs(e);
  ++m_.n;
  lanes_[0][l] += a;
  lanes_[1][l] += rv * rv;
  lanes_[2][l] += tv * tv;
  lanes_[3][l] += rv * tv;
  lanes_[4][l] += e * e;
  outside_ += a > m_.atol + m_.rtol * std::fabs(rv);
  if (max_i_ < 0 || a > m_.max_abs) {
    m_.max_abs = a;
    max_i_ = i;
    m_.max_abs_ref = rv;
    m_.max_abs_target = tv;
  }
  const size_t b = abs_bin(a);
  bins_.add(b);
  bin_lo_ = std::min(bin_lo_, b);
  bin_hi_ = std::max(bin_hi_, b);
}

// Elements [0, 4·blocks) of r and t (tensor indices base...), element 4q + l into lane l; blocks
// with a NaN or Inf go through add_one. The same operations in the same order as add_one.
void MetricsAccumulator::add_blocks(const double* r, const double* t, int64_t blocks, int64_t base) {
  // The usual case, all finite: the sums in one vectorized pass, then the rest.
  if ((use_avx2() ? lane_sums_avx2 : lane_sums_scalar)(r, t, blocks, lanes_)) {
    const int64_t n = 4 * blocks;
    double seg_max = 0;
    outside_ += (use_avx2() ? outside_and_max_avx2 : outside_and_max_scalar)(r, t, n, m_.atol, m_.rtol, &seg_max);
    // The first position of the largest |e| (as a running strict maximum would keep it).
    if (n > 0 && (max_i_ < 0 || seg_max > m_.max_abs))
      for (int64_t j = 0; j < n; ++j)
        if (std::fabs(t[j] - r[j]) == seg_max) {
          m_.max_abs = seg_max, max_i_ = base + j, m_.max_abs_ref = r[j], m_.max_abs_target = t[j];
          break;
        }
    size_t bin_lo = bin_lo_, bin_hi = bin_hi_;
    for (int64_t j = 0; j < n; ++j) {
      const size_t b = abs_bin(std::fabs(t[j] - r[j]));
      bins_.add(b);
      bin_lo = std::min(bin_lo, b);
      bin_hi = std::max(bin_hi, b);
    }
    m_.n += n;
    bin_lo_ = bin_lo, bin_hi_ = bin_hi;
    return;
  }
  double sa0 = lanes_[0][0], sa1 = lanes_[0][1], sa2 = lanes_[0][2], sa3 = lanes_[0][3];
  double rr0 = lanes_[1][0], rr1 = lanes_[1][1], rr2 = lanes_[1][2], rr3 = lanes_[1][3];
  double yy0 = lanes_[2][0], yy1 = lanes_[2][1], yy2 = lanes_[2][2], yy3 = lanes_[2][3];
  double ry0 = lanes_[3][0], ry1 = lanes_[3][1], ry2 = lanes_[3][2], ry3 = lanes_[3][3];
  double ee0 = lanes_[4][0], ee1 = lanes_[4][1], ee2 = lanes_[4][2], ee3 = lanes_[4][3];
  const double atol = m_.atol, rtol = m_.rtol;
  int64_t n = m_.n, outside = outside_, max_i = max_i_;
  double max_abs = m_.max_abs, max_ref = m_.max_abs_ref, max_target = m_.max_abs_target;
  size_t bin_lo = bin_lo_, bin_hi = bin_hi_;
  auto extras = [&](double rv, double tv, double a, int64_t i) {
    outside += a > atol + rtol * std::fabs(rv);
    if (max_i < 0 || a > max_abs) {
      max_abs = a;
      max_i = i;
      max_ref = rv;
      max_target = tv;
    }
    const size_t b = abs_bin(a);
    bins_.add(b);
    bin_lo = std::min(bin_lo, b);
    bin_hi = std::max(bin_hi, b);
  };
  // The register copies of the state written back to the members, and read from them again.
  auto store = [&] {
    lanes_[0][0] = sa0, lanes_[0][1] = sa1, lanes_[0][2] = sa2, lanes_[0][3] = sa3;
    lanes_[1][0] = rr0, lanes_[1][1] = rr1, lanes_[1][2] = rr2, lanes_[1][3] = rr3;
    lanes_[2][0] = yy0, lanes_[2][1] = yy1, lanes_[2][2] = yy2, lanes_[2][3] = yy3;
    lanes_[3][0] = ry0, lanes_[3][1] = ry1, lanes_[3][2] = ry2, lanes_[3][3] = ry3;
    lanes_[4][0] = ee0, lanes_[4][1] = ee1, lanes_[4][2] = ee2, lanes_[4][3] = ee3;
    m_.n = n, outside_ = outside, max_i_ = max_i;
    m_.max_abs = max_abs, m_.max_abs_ref = max_ref, m_.max_abs_target = max_target;
    bin_lo_ = bin_lo, bin_hi_ = bin_hi;
  };
  auto load = [&] {
    sa0 = lanes_[0][0], sa1 = lanes_[0][1], sa2 = lanes_[0][2], sa3 = lanes_[0][3];
    rr0 = lanes_[1][0], rr1 = lanes_[1][1], rr2 = lanes_[1][2], rr3 = lanes_[1][3];
    yy0 = lanes_[2][0], yy1 = lanes_[2][1], yy2 = lanes_[2][2], yy3 = lanes_[2][3];
    ry0 = lanes_[3][0], ry1 = lanes_[3][1], ry2 = lanes_[3][2], ry3 = lanes_[3][3];
    ee0 = lanes_[4][0], ee1 = lanes_[4][1], ee2 = lanes_[4][2], ee3 = lanes_[4][3];
    n = m_.n, outside = outside_, max_i = max_i_;
    max_abs = m_.max_abs, max_ref = m_.max_abs_ref, max_target = m_.max_abs_target;
    bin_lo = bin_lo_, bin_hi = bin_hi_;
  };
  for (int64_t q = 0; q < blocks; ++q) {
    const double* rq = r + 4 * q;
    const double* tq = t + 4 * q;
    bool ok = true;
    for (int l = 0; l < 4; ++l) ok &= (std::fabs(rq[l]) <= kBig) & (std::fabs(tq[l]) <= kBig);
    if (!ok) {  // rare: hand the block to add_one with the state written back
      store();
      for (int l = 0; l < 4; ++l) add_one(rq[l], tq[l], l, base + 4 * q + l);
      load();
      continue;
    }
    n += 4;
    const double e0 = tq[0] - rq[0], e1 = tq[1] - rq[1], e2 = tq[2] - rq[2], e3 = tq[3] - rq[3];
    const double a0 = std::fabs(e0), a1 = std::fabs(e1), a2 = std::fabs(e2), a3 = std::fabs(e3);
    sa0 += a0, sa1 += a1, sa2 += a2, sa3 += a3;
    rr0 += rq[0] * rq[0], rr1 += rq[1] * rq[1], rr2 += rq[2] * rq[2], rr3 += rq[3] * rq[3];
    yy0 += tq[0] * tq[0], yy1 += tq[1] * tq[1], yy2 += tq[2] * tq[2], yy3 += tq[3] * tq[3];
    ry0 += rq[0] * tq[0], ry1 += rq[1] * tq[1], ry2 += rq[2] * tq[2], ry3 += rq[3] * tq[3];
    ee0 += e0 * e0, ee1 += e1 * e1, ee2 += e2 * e2, ee3 += e3 * e3;
    const int64_t i = base + 4 * q;
    extras(rq[0], tq[0], a0, i);
    extras(rq[1], tq[1], a1, i + 1);
    extras(rq[2], tq[2], a2, i + 2);
    extras(rq[3], tq[3], a3, i + 3);
  }
  store();
}

void MetricsAccumulator::add(const double* ref, const double* y, int64_t count) {
  if (count > 0 && per_row_ == 0) fail("MetricsAccumulator: elements given for an empty tensor");
  int64_t k = 0;
  while (k < count) {
    // One segment: the rest of the chunk or of the current row, whichever ends first.
    const int64_t pos = next_ % per_row_;  // position in the row of the segment's first element
    const int64_t seg = std::min(count - k, per_row_ - pos);
    const double* r = ref + k;
    const double* t = y + k;
    int64_t j = 0;
    for (; j < seg && (pos + j) % 4 != 0; ++j) add_one(r[j], t[j], int((pos + j) % 4), next_ + j);
    const int64_t blocks = (seg - j) / 4;
    add_blocks(r + j, t + j, blocks, next_ + j);
    for (j += 4 * blocks; j < seg; ++j) add_one(r[j], t[j], int((pos + j) % 4), next_ + j);
    next_ += seg;
    k += seg;
    if (next_ % per_row_ == 0) {  // the row is complete
      const size_t row = size_t(next_ / per_row_ - 1);
      if (row >= rows_.size()) fail("MetricsAccumulator: more elements than the shape holds");
      rows_[row] = lane_total();
      std::memset(lanes_, 0, sizeof lanes_);
    }
  }
}

Metrics MetricsAccumulator::finish() const {
  Metrics m = m_;
  if (max_i_ >= 0) m.max_abs_at = unravel(max_i_, shape_);
  std::vector<RowSums> rows = rows_;
  if (per_row_ > 0 && next_ % per_row_ != 0 && size_t(next_ / per_row_) < rows.size())  // a partial row
    rows[size_t(next_ / per_row_)] = lane_total();
  double sum_abs = 0, rr = 0, yy = 0, ry = 0, ee = 0;
  for (const RowSums& s : rows) sum_abs += s.abs, rr += s.rr, yy += s.yy, ry += s.ry, ee += s.ee;
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
  m.frac_outside = m.n ? double(outside_) / double(m.n) : 0;
  // Percentiles: the bin where the cumulative count first reaches q·n.
  const auto quantile = [&](double q) {
    if (m.n == 0) return 0.0;
    const double target = q * double(m.n);
    int64_t seen = 0;
    for (size_t b = bin_lo_; b <= bin_hi_; ++b) {
      seen += bins_.count(b);
      if (seen > 0 && double(seen) >= target) return b == 0 ? 0.0 : std::min(bin_upper_edge(b), m.max_abs);
    }
    return m.max_abs;
  };
  m.p50 = quantile(0.5);
  m.p99 = quantile(0.99);
  m.p999 = quantile(0.999);
  m.token_rel_l2.assign(rows.size(), 0.0);
  for (size_t t = 0; t < rows.size(); ++t)
    m.token_rel_l2[t] = rows[t].ee == 0 ? 0 : rows[t].rr == 0 ? inf : std::sqrt(rows[t].ee / rows[t].rr);
  return m;
}

Metrics compare_tensors(const Tensor<double>& ref, const Tensor<double>& y, double atol, double rtol) {
  if (ref.numel() != y.numel()) fail("compare_tensors: sizes differ");
  MetricsAccumulator acc(ref.shape, atol, rtol);
  acc.add(ref.data.data(), y.data.data(), ref.numel());
  return acc.finish();
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
