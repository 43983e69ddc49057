// metrics.h: one-pass comparison metrics of a tested tensor y against a reference r
// (COMPARE.md §3). Everything accumulates in double; memory is O(rows + histogram bins).
//
//   e = y − r, n = number of finite-compared elements
//   max_abs     = max |e_i| (with its coordinate and both values)
//   mean_abs    = Σ|e_i| / n;  p50/p99/p999 of |e| from a log-spaced histogram (64 bins/decade)
//   nmse        = Σe² / Σr²;  rel_l2 = √nmse;  sqnr_db = −10·log10(nmse)
//   cosine      = ⟨r,y⟩ / (‖r‖‖y‖);  norm_ratio = ‖y‖ / ‖r‖
//   diff        = 1 − 2⟨r,y⟩/(‖r‖²+‖y‖²)            (DeepGEMM / SGLang)
//   frac_outside= #{|e_i| > atol + rtol·|r_i|} / n
//   token_rel_l2[t] = ‖e[t,:]‖ / ‖r[t,:]‖ over the leading dimension
// Non-finite values: a NaN on either side is counted with the first position; an Inf must match
// in position and sign (a matched Inf is left out of the metrics, a mismatched one is counted).
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor.h"

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

// Compares y with r (same shape). atol/rtol only feed frac_outside (a diagnostic, not a gate).
Metrics compare_tensors(const Tensor<double>& ref, const Tensor<double>& y, double atol = 1e-5, double rtol = 1.6e-2);

// Flat index -> coordinate for a row-major shape.
std::vector<int64_t> unravel(int64_t index, const std::vector<int64_t>& shape);

// Relative L2 ‖y − r‖ / ‖r‖ of two equal-size arrays, in double (0 when both are zero, +inf when
// only r is zero).
double rel_l2(const double* r, const double* y, int64_t n);

// The Metrics as JSON (deterministic key order).
nlohmann::ordered_json metrics_json(const Metrics& m);

}  // namespace hyoracle::compare
