// teacher_forcing.h: re-run one reference step on the TARGET's own dumped inputs
// (COMPARE.md §6), so the error a step adds (local) is judged apart from what it inherited.
//
//   local(step)     = rel-L2( target[step],  f_ref(target[inputs of step]) )
//   inherited(step) = rel-L2( f_ref(target[inputs]),  baseline[step] )
// Steps and their reference functions (all in double, precision `exact`):
//   input_norm/post_norm/final_norm  rms_norm(target x)           attn.q/k/v  linear(target input_norm)
//   attn.q_norm/k_norm  rms_norm per head (target q/k)             attn.q_rope/k_rope  apply_rope(target *_norm)
//   attn.context  attention(target q_rope, k_rope, v)              attn.out    linear(target context, W_o)
//   resid_mid, out, mlp.out (MoE)  the residual / combine sums of the target's operands
//   mlp.out (dense), moe.shared_out  swiglu_mlp(target post_norm)  moe.router_logits  linear(target post_norm, W_r)
//   moe.scores  σ(target router_logits)                            moe.topk_weights  scaling·s[K]/Σs[K] on target ids
//   moe.routed_out  routed_experts(target post_norm; target ids and weights): routing replay
//   logits  linear(target final_norm, W_lm)
// Decode steps (steps.S.*) are replayed the same way, one token at position prefill_end + S − 1,
// attention reading the target's own cache rows (prefill, then steps 1..S).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "dump.h"
#include "model.h"

namespace hyoracle::compare {

struct Replay {
  Tensor<double> value;      // the reference's output for the target's inputs, target's shape
  int64_t reduction_k = 0;   // K of the step's dot products (0: none)
  double kappa = 1;          // ‖Σ|a||w|‖ / ‖Σ a·w‖ of those dot products (measured)
  double gain = 0;           // measured rounding gain g (attention), 0: op default
};

// Conditioning of y = a·Wᵀ: κ = ‖|a|·|W|ᵀ‖_F / ‖a·Wᵀ‖_F  (a [M, K], W [N, K]); accumulates in double.
double dot_conditioning(const Tensor<double>& a, const Tensor<double>& w, int threads);

// First-order rounding gain of HF's eager bf16 attention (MODEL_SPEC §8.2 R5-R7) at these
// inputs: one rounding of the output, two absolute roundings of every score s_ij (propagated
// through softmax as P_ij·δ_ij·(v_j − ctx_i)), one relative rounding of every P_ij:
//   g² = 1 + [2·Σ P²s²‖v_j − ctx_i‖² + Σ P²‖v_j‖²] / Σ‖ctx_i‖²      (sums over heads, rows i, keys j)
// q [T, nq, d] at positions pos, k, v [Tk, nkv, d] at positions kpos; key j visible iff kpos[j] <= pos[i].
double attention_rounding_gain(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                               const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos);

class TeacherForcing {
 public:
  TeacherForcing(const std::string& model_dir, int threads);
  const ModelConfig& config() const { return ck_.config(); }
  // The F32 expert_bias of an MoE layer (for margins), empty for dense layers.
  std::vector<double> expert_bias(int64_t layer);
  // f_ref on the target's inputs for a prefill tensor; nullopt when the step has no replay or an
  // input is missing from the target. `positions` are the prefill positions.
  std::optional<Replay> replay(const std::string& name, const Dump& target, const std::vector<int64_t>& positions);

 private:
  const LayerWeights<double>& layer(int64_t L);
  void load_head();
  Checkpoint ck_;
  int threads_;
  int64_t loaded_ = -1;
  LayerWeights<double> w_;
  bool head_loaded_ = false;
  Tensor<double> final_norm_, lm_head_;
};

}  // namespace hyoracle::compare
