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
#include <string>
#include <vector>

#include "compare/compare.h"

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
  // Softmax router (hunyuan_v1): the scores are probabilities p, whose noise is ≈ p·Δℓ (not
  // σ'(ℓ)·Δℓ), and there is no bias.
  bool softmax = false;
};

RoutingLayer routing_agreement(const RoutingInputs& in);

// Reads an id tensor of a dump after checking it: shape `shape` ([T, k]), ids in [0, E) (E > 0),
// no expert twice in a row; a one-line Error naming the file and tensor otherwise.
std::vector<int64_t> checked_ids(const Dump& d, const std::string& name, const std::vector<int64_t>& shape, int64_t E);

// Teacher-forced routing check. The target's selection must be the top-k of its own corrected
// scores c_e = σ(ℓ_e) + b_e, with ℓ its dumped router logits (or s its dumped scores) and b the
// checkpoint's fp32 expert_bias, computed here in double. Only ties within the rounding of c may
// go either way: per expert, window_e = 4·u_f32·(|s_e| + |b_e| + |c_e|) (the fp32 sigmoid, sum and
// comparison) + σ'(ℓ_e)·|ℓ_e|·u_dump (the dumped logits' own rounding; s_e·u_dump for scores).
// A token fails when some expert it passed over beats one it chose by more than the two windows:
//   max_{b ∉ B} (c_b − w_b)  >  min_{a ∈ B} (c_a + w_a).
// values [T, E] logits (are_logits) or scores; target_ids [T, k] (validated: ids in [0, E)). An
// infinite logit adds no rounding (σ is exactly 0 or 1); a corrected score that is not finite (an
// infinite score, a non-finite expert_bias) is an Error.
// Fills the forced_* fields of `out` (the first `keep` mismatches are listed).
// Softmax router (`softmax`): the top-k of p = softmax(ℓ) is the top-k of ℓ itself, so logits are
// ranked directly, with window 4·u_f32·(|ℓ_e| + 1) (the fp32 exp and division, in logit units) +
// |ℓ_e|·u_dump.
void forced_routing(const std::vector<double>& values, bool are_logits, double u_dump, const std::vector<double>& bias,
                    const std::vector<int64_t>& target_ids, int64_t T, int64_t E, int64_t k, RoutingLayer& out, bool softmax = false,
                    size_t keep = 8);

// Jaccard index of two id sets (as given; duplicates ignored).
double jaccard(std::vector<int64_t> a, std::vector<int64_t> b);

}  // namespace hyoracle::compare
