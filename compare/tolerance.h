// tolerance.h: derived per-tensor budgets and the rules file (COMPARE.md §4-5, docs/compare.md).
//
// Every compared tensor is judged by exactly one rule. The default rule is derived, never tuned:
// a budget on rel-L2 = ‖e‖/‖r‖ (RMS sense) for the error an honest implementation in the target's
// precision adds at that step,
//
//   local(op) = c · ( g_op · u_t/√3  +  √K · u_acc · κ )
//
//   u_t    unit roundoff of the dtype the target computed the tensor in (2^-8 bf16, 2^-11 f16,
//          2^-24 f32, 2^-53 f64); u_t/√3 is the RMS relative error of one rounding
//   g_op   root-sum-square count of the roundings inside the op (HF's rounding points,
//          docs/model.md §8.2 R1-R15), each propagated with gain ≈ 1, e.g. RMSNorm √2, RoPE √5,
//          SwiGLU √5; for attention g is measured from the scores (score rounding is absolute)
//   K, κ   reduction length and conditioning ‖Σ_k|a_k||w_k|‖ / ‖Σ_k a_k w_k‖ of dot-product ops
//          (κ measured when teacher forcing has the operands, else 1); u_acc = u_f32 unless the
//          target is f64
//   c      2, or 3 for 8/16-bit targets and for tensors under 1000 elements (torch._dynamo's rule)
//
// Without teacher forcing an op's inherited error is unknown, so the total error is judged as
//   total(op) = local(op) + a_op · (largest total rel-L2 among the op's inputs)
// with a_op the op's error amplification (1 for rotations and copies, 2 for norms and pointwise
// maps, 3 for linear maps and SwiGLU, 4 for attention; docs/compare.md gives the reasons).
#pragma once
#include "io/family.h"
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "compare/pattern.h"

namespace hyoracle::compare {

// Unit roundoff u = 2^-p of a dtype name: manifest spellings ("bfloat16", "float32", ...) and
// safetensors spellings ("BF16", "F32", ...). Unknown names: nullopt.
std::optional<double> unit_roundoff(const std::string& dtype);

// The operation class that produced a canonical tensor, from its name ("layers.3.attn.q" ->
// "linear"). Empty for names compare does not know.
std::string op_of(Family f, const std::string& canonical_name);

// Canonical name with any "steps.S." prefix removed, and the layer index (or -1).
std::string strip_step(const std::string& name, int64_t* step = nullptr);
int64_t layer_of_name(const std::string& name);

// What the derivation needs to know about one tensor.
struct BudgetInputs {
  std::string op;           // op_of(name)
  double u_target = 0;      // unit roundoff the target computed in
  int64_t numel = 0;
  int64_t reduction_k = 0;  // K of the dot products producing it (0: none)
  double kappa = 1;         // conditioning of those dot products (measured or 1)
  double gain = 0;          // g_op; 0 = use the op's default
  int64_t experts_per_token = 8;  // k, for the routed combine
  // RoPE only: rms over positions p and frequencies i of the angle φ = p·θ^(-2i/d), when either
  // side computes its angles in fp32 (every engine; docs/model.md §4.3). The fp32 angle carries two
  // roundings (inv_freq and the product), so the rotated vector moves by about
  // √(2/3)·u_fp32·rms(φ) relative: honest phase drift that grows with position.
  double rope_angle_rms = 0;
};

// rms over positions and i = 0..d/2-1 of p·θ^(-2i/d) (the RoPE angles), in double.
double rope_angle_rms(const std::vector<int64_t>& positions, int64_t head_dim, double theta);

struct Budget {
  std::string rule;         // "derived:<op>" or "rules:<index>:<regex>"
  std::string metric = "rel_l2";  // rel_l2 | max_abs | nmse | diff | cosine_distance
  double limit = 0;         // judged error must be <= limit
  double token_limit = 0;   // per-token rel-L2 limit (0: none)
  std::string derivation;   // the formula with its numbers, for the report
  std::string reason;       // rules-file reason
};

// Default gain g_op and amplification a_op of an op class.
double default_gain(const std::string& op, int64_t experts_per_token);
double amplification(const std::string& op);
// Safety factor c for a target unit roundoff and tensor size.
double safety_factor(double u_target, int64_t numel);
// local(op) as above.
Budget derived_local_budget(const BudgetInputs& in);
// total(op) as above, given the local budget and the largest inherited rel-L2 of the inputs.
Budget derived_total_budget(const BudgetInputs& in, double inherited_input);

// A rules file (JSON):
//   {"use_derived_defaults": true,
//    "rules": [{"match": "^layers\\.\\d+\\.attn\\.context$", "metric": "rel_l2", "max": 0.02,
//               "reason": "flash attention keeps P in bf16"},
//              {"match": "^logits$", "scale": 2.0, "reason": "..."}]}
// "max" sets a fixed limit on "metric"; "scale" multiplies the derived budget instead. The first
// matching rule wins. With use_derived_defaults false, a compared tensor that matches no rule is
// an error (incomplete), never a pass.
struct Rule {
  std::string pattern;
  Pattern matcher;  // `pattern` compiled (pattern.h: linear-time search)
  std::string metric = "rel_l2";
  std::optional<double> max;
  std::optional<double> scale;
  std::string reason;
};

struct Rules {
  std::vector<Rule> rules;
  bool use_derived_defaults = true;
  std::string source;  // path, for messages
  // Index of the first rule matching name, or -1.
  int find(const std::string& name) const;
};

// Parses a rules file (the strict JSON reader: no duplicate key, bounded nesting); Error naming
// the file and the entry on any defect.
Rules load_rules(const std::string& path);
Rules parse_rules(const std::string& text, const std::string& source);
// Refuses (a one-line Error naming `where`) a regex Pattern does not support (pattern.h:
// backreferences, lookaround, over 1000 bytes, groups nested over 32 deep, ...). Every accepted
// pattern is matched in linear time by Pattern.
void check_pattern(const std::string& pattern, const std::string& where);

// Applies rule `i` of `rules` to a derived budget (scale) or replaces it (max).
Budget apply_rule(const Rules& rules, int i, const Budget& derived);

}  // namespace hyoracle::compare
