// metrics.h: one-pass comparison metrics of a tested tensor y against a reference r
// (COMPARE.md §3). Everything accumulates in double, in one pass in row-major order; memory is
// O(rows + histogram bins). Sums are two-level: within a row (the leading dimension), four
// interleaved partial sums (the element at position p of its row goes to partial p mod 4) added
// as (s0 + s1) + (s2 + s3); over the tensor, the rows' sums added in row order. So
// MetricsAccumulator gives bit-identical Metrics however the elements are split into chunks.
//
//   e = y − r, n = number of finite-compared elements
//   max_abs     = max |e_i| (with its coordinate and both values; the first on ties)
//   mean_abs    = Σ|e_i| / n
//   p50/p99/p999 of |e|: from a histogram with 64 equal-width bins per power of two (the top six
//               mantissa bits of |e|); each is the upper edge of the bin where the cumulative
//               count first reaches q·n, capped at max_abs: never below the exact order
//               statistic and at most a factor 1 + 1/64 (1.6%) above it
//   nmse        = Σe² / Σr²;  rel_l2 = √nmse;  sqnr_db = −10·log10(nmse)
//   cosine      = ⟨r,y⟩ / (‖r‖‖y‖);  norm_ratio = ‖y‖ / ‖r‖
//   diff        = 1 − 2⟨r,y⟩/(‖r‖²+‖y‖²)            (DeepGEMM / SGLang)
//   frac_outside= #{|e_i| > atol + rtol·|r_i|} / n
//   token_rel_l2[t] = ‖e[t,:]‖ / ‖r[t,:]‖ over the leading dimension
// Non-finite values: a NaN on either side is counted with the first position; an Inf must match
// in position and sign (a matched Inf is left out of the metrics, a mismatched one is counted).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/tensor.h"

namespace hyoracle::compare {

struct Metrics {
  int64_t n = 0;                         // elements compared (finite on both sides)
  double max_abs = 0;
  std::vector<int64_t> max_abs_at;       // coordinate of max_abs
  double max_abs_ref = 0, max_abs_target = 0;
  double mean_abs = 0, p50 = 0, p99 = 0, p999 = 0;
  double nmse = 0, rel_l2 = 0, sqnr_db = 0, cosine = 1, norm_ratio = 1, diff = 0;
  double ref_norm = 0, target_norm = 0, err_norm = 0;
  double atol = 0, rtol = 0, frac_outside = 0;
  std::vector<double> token_rel_l2;      // [rows of the leading dimension]
  int64_t nan_ref = 0, nan_target = 0;
  std::vector<int64_t> first_nan_ref_at, first_nan_target_at;
  int64_t inf_matched = 0, inf_mismatched = 0;
  std::vector<int64_t> first_inf_mismatch_at;

  // Worst tokens, largest token_rel_l2 first (at most `count`).
  std::vector<int64_t> worst_tokens(size_t count) const;
};

constexpr double kDefaultAtol = 1e-5, kDefaultRtol = 1.6e-2;
// Relative resolution of the |e| percentiles (see the file comment).
constexpr double kPercentileResolution = 1.0 / 64;

// Counts per bin over [0, n) bins, kept as chunks of 64 allocated on first use: an |e| histogram
// has 2^17 bins but a tensor's errors occupy a few powers of two, and allocating and clearing
// 1 MB per tensor dominated the comparison of dumps holding many small tensors.
class ChunkedCounts {
 public:
  explicit ChunkedCounts(size_t n) : chunks_((n + 63) / 64) {}
  void add(size_t b) {
    auto& c = chunks_[b >> 6];
    if (!c) c = std::make_unique<int64_t[]>(64);  // value-initialised: zeros
    ++c[b & 63];
  }
  int64_t count(size_t b) const {
    const auto& c = chunks_[b >> 6];
    return c ? c[b & 63] : 0;
  }

 private:
  std::vector<std::unique_ptr<int64_t[]>> chunks_;
};

// The metrics of one tensor pair fed in element order, `count` elements at a time.
class MetricsAccumulator {
 public:
  MetricsAccumulator(std::vector<int64_t> shape, double atol = kDefaultAtol, double rtol = kDefaultRtol);
  // The next `count` elements of both tensors (row-major order).
  void add(const double* ref, const double* y, int64_t count);
  int64_t seen() const { return next_; }
  // The metrics of the elements seen so far (all of them once seen() == numel of the shape).
  Metrics finish() const;

 private:
  struct RowSums {
    double abs = 0, rr = 0, yy = 0, ry = 0, ee = 0;  // Σ|e|, Σr², Σy², Σr·y, Σe² over one row
  };
  RowSums lane_total() const;  // the current row's lanes: (l0 + l1) + (l2 + l3)
  void add_one(double r, double y, int lane, int64_t index);
  void add_blocks(const double* r, const double* y, int64_t blocks, int64_t base);
  static constexpr double kBig = 1.7976931348623157e308;  // largest finite double

  std::vector<int64_t> shape_;
  int64_t per_row_ = 0, next_ = 0;
  Metrics m_;
  double lanes_[5][4] = {};                   // the current row's RowSums, 4 interleaved lanes
  int64_t outside_ = 0, max_i_ = -1;
  std::vector<RowSums> rows_;                 // [rows]
  ChunkedCounts bins_;                        // |e| histogram (metrics.cpp)
  size_t bin_lo_ = SIZE_MAX, bin_hi_ = 0;     // occupied bin range
};

// Compares y with r (same shape). atol/rtol only feed frac_outside (a diagnostic, not a gate).
Metrics compare_tensors(const Tensor<double>& ref, const Tensor<double>& y, double atol = kDefaultAtol,
                        double rtol = kDefaultRtol);

// Flat index -> coordinate for a row-major shape.
std::vector<int64_t> unravel(int64_t index, const std::vector<int64_t>& shape);

// Relative L2 ‖y − r‖ / ‖r‖ of two equal-size arrays, in double (0 when both are zero, +inf when
// only r is zero).
double rel_l2(const double* r, const double* y, int64_t n);

// The Metrics as JSON (deterministic key order).
nlohmann::ordered_json metrics_json(const Metrics& m);

}  // namespace hyoracle::compare
