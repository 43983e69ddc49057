// routing.h: MoE routing agreement per layer and token (COMPARE.md §7).
//
// Sets, not orders: HF does not sort its top-k. Per token t:
//   exact-set match  A_t == B_t;   Jaccard |A∩B| / |A∪B|
//   weight deltas    |w_target(e) − w_ref(e)| on experts e ∈ A∩B, keyed by id; |Σw_target − Σw_ref|
//   margin           the reference's gap c_a − c_b between each expert a it chose and the target did
//                    not, and each expert b the target chose instead (paired: weakest a with strongest
//                    b); c = s + expert_bias is the corrected score. Without the bias, the reference's
//                    topk_margin (k-th − (k+1)-th) stands in (a lower bound of every gap).
//   expected noise   of a gap, from the router GEMM's budget and the input error measured at that
//                    layer: Δℓ_t = (a·relL2_t(post_norm) + budget(router_logits))·rms_e(ℓ_t,e),
//                    noise(a,b) = s_a(1−s_a)·Δℓ_t + s_b(1−s_b)·Δℓ_t     (σ' = s(1−s))
//   near-tie         when every paired gap <= its noise (or within the reference's own rounding);
//                    otherwise a real flip, which is a divergence.
#pragma once
#include <cstdint>
#include <vector>

#include "compare.h"

namespace hyoracle::compare {

struct RoutingInputs {
  int64_t layer = 0, tokens = 0, k = 0, experts = 0;
  std::vector<int64_t> ref_ids, target_ids;       // [T, k]
  std::vector<double> ref_scores;                 // [T, E] sigmoid scores, or empty
  std::vector<double> ref_logits;                 // [T, E] router logits, or empty
  std::vector<double> expert_bias;                // [E] or empty
  std::vector<double> ref_margin;                 // [T] topk_margin, or empty
  std::vector<double> ref_weights, target_weights;  // [T, k] in each side's id order, or empty
  std::vector<double> logit_noise;                // [T] expected |Δℓ| per token (see above)
  double ref_unit_roundoff = 0x1p-53;             // the reference's own rounding (ambiguous ties)
};

RoutingLayer routing_agreement(const RoutingInputs& in);

// Jaccard index of two id sets (as given; duplicates ignored).
double jaccard(std::vector<int64_t> a, std::vector<int64_t> b);

}  // namespace hyoracle::compare
