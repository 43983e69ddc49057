// part_scale.h: does the target's error hold a wrongly scaled copy of one part of a step?
//
// Some steps are sums of parts the engine computes separately and can get wrong one at a time:
//   attn.out        y_t = Σ_h C_{h,t},  C_h = context[t, head h] · W_o[:, head h]ᵀ   (a head, a TP shard)
//   moe.routed_out  y_t = Σ_e C_{e,t},  C_e = w[t, e] · Expert_e(u_t)               (an expert's weights)
// A part computed with a wrong scale (1 + α_j) leaves the error e_t = target_t − y_t = α_j·C_{j,t}
// plus rounding noise. Its least-squares scale, part by part, over every row t the part touches:
//   α_j = Σ_t ⟨e_t, C_{j,t}⟩ / Σ_t ‖C_{j,t}‖²
// With rounding noise independent per element, of variance σ_t² = ‖e_t‖² / n in row t (n = row
// width; e_t still holds any real α, so σ_t is an over-estimate), α_j's standard error is
//   σ(α_j) = √(Σ_t σ_t² ‖C_{j,t}‖²) / Σ_t ‖C_{j,t}‖²
// Where the replay recomputed steps the target did not dump (teacher_forcing.h), the engine's own
// rounding of those steps reaches every part as a relative perturbation of about the composed
// noise r_t of the row, whichever way it points: each row adds (r_t·‖C_{j,t}‖²)² to the numerator's
// variance, so a one-row decode step composed from a module-only dump is judged at r_t, not at
// the output's rounding alone.
// Rounding is unbiased with respect to a part's direction, so an honest engine's α_j is a few σ;
// a wrong scale of a few percent on one head of 32 or one expert of 128 is thousands of σ even
// where it moves the whole tensor's rel-L2 less than the rounding does (docs/compare.md,
// "Part scales"). Accumulation in double.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "util/tensor.h"

namespace hyoracle::compare {

struct PartScale {
  int64_t part = 0;   // head or expert index
  int64_t rows = 0;   // rows (tokens) the part contributed to
  double alpha = 0;   // fitted relative scale error of the part
  double sigma = 0;   // its standard error under rounding noise
  double z() const { return sigma > 0 ? alpha / sigma : (alpha != 0 ? INFINITY : 0); }
};

class PartScaleFit {
 public:
  // residual: target − replay, [rows, n] (any leading shape, read as rows of the last axis).
  PartScaleFit(int64_t parts, const Tensor<double>& residual);
  // Adds part j's contribution c (n values) to row `row`; composed: the row's composed noise r_t.
  void add(int64_t part, int64_t row, const double* c, double composed = 0);
  std::vector<PartScale> fits() const;

 private:
  const Tensor<double>& e_;
  int64_t n_;
  std::vector<double> var_row_;                    // σ_t²
  std::vector<double> num_, den_, var_;            // Σ⟨e,C⟩, Σ‖C‖², Σσ²‖C‖² per part
  std::vector<int64_t> rows_;
};

// How many standard errors a part's scale may stray before it is a wrong scale rather than
// rounding (with the floor below): far out in the tail of the rounding noise, and loose enough for
// noise that is not independent element by element (honest HF bf16 dumps at T = 1024 reach
// |z| ≈ 12 on parts whose |α| is far under the floor; the planted 3-5 % scales reach 350-720).
constexpr double kPartScaleZ = 20;

// The verdict on a set of fits: the part with the largest |α| among those beyond both the noise
// (|z| > z_limit) and the target's rounding unit (|α| > floor); nullptr when none is.
const PartScale* worst_part(const std::vector<PartScale>& fits, double floor, double z_limit);

}  // namespace hyoracle::compare
