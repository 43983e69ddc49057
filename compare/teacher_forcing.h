// teacher_forcing.h: re-run one reference step on the TARGET's own dumped inputs, so the error a
// step adds (local) is judged apart from what it inherited (docs/compare.md, "Teacher forcing").
//
//   local(step)     = rel-L2( target[step],  f_ref(target[inputs of step]) )
//   inherited(step) = rel-L2( f_ref(target[inputs]),  baseline[step] )
//
// The steps, their inputs and operation classes are the rows of the dataflow table
// (reference/dataflow.h); each row's reference function is in teacher_forcing.cpp (all in double,
// precision `exact`).
//
// Composition. An engine's dump rarely holds every tensor (hooks on modules give no q/k/v, no
// RoPE outputs, no attention context). An input the target did not dump is recomputed by the
// reference from the nearest inputs it did dump, recursively: attn.out from the target's
// q_norm/k_norm (RoPE applied by the reference) and v = linear(target input_norm); post_norm
// from the target's previous layer out + attn.out; a decode step's cache from the target's own
// cache rows or from what they derive from. The replay records which target tensors it read and
// which steps it recomputed.
//
// An honest engine's recomputed intermediates would carry its own rounding, which the exact
// recomputation does not: that noise is measured, not assumed. Each recomputed intermediate is
// also evaluated with a seeded random relative perturbation whose RMS is the honest error of its
// step (its derived local budget without the safety factor, tolerance.h), propagated exactly
// through the rest of the composition; `composed_noise` is the rel-L2 between the perturbed and
// the exact replay (whole tensor and per token). compare adds c · composed_noise to the step's own
// local budget.
//
// Decode steps (steps.S.*) are one token at position prefill_end + S − 1, their attention reading
// the target's cache (prefill rows, then steps 1..S); the embedding of step S is the row of the
// target's own token (steps.S.input_ids, else generate.tokens[S−1]), so steps are judged on the
// target's tokens even after its greedy tokens part from the baseline's.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/dump.h"
#include "reference/dataflow.h"
#include "reference/model.h"
#include "compare/part_scale.h"
#include "compare/replay_device.h"

namespace hyoracle::compare {

struct Replay {
  Tensor<double> value;      // the reference's output for the target's inputs, target's shape
  int64_t reduction_k = 0;   // K of the step's dot products (0: none)
  double kappa = 1;          // ‖Σ|a||w|‖ / ‖Σ a·w‖ of those dot products (measured)
  double gain = 0;           // measured rounding gain g (attention), 0: op default
  std::vector<std::string> read;      // target tensors read (full names, first use order)
  std::vector<std::string> composed;  // steps recomputed because the target did not dump them
  double composed_noise = 0;                 // rel-L2 of the perturbed vs exact composition
  std::vector<double> composed_noise_tokens; // the same per token (row), empty when nothing composed
  // The step's exact input values, kept for the steps that are sums of parts (attn.out:
  // context; moe.routed_out: post_norm, topk_ids, topk_weights), for part_scales().
  std::vector<Tensor<double>> inputs;
};

// Conditioning of y = a·Wᵀ: κ = ‖|a|·|W|ᵀ‖_F / ‖a·Wᵀ‖_F  (a [M, K], W [N, K]); accumulates in double.
double dot_conditioning(const Tensor<double>& a, const Tensor<double>& w, int threads);

// First-order rounding gain of HF's eager bf16 attention (docs/compare.md, "Budgets") at these
// inputs: one rounding of the output, two absolute roundings of every score s_ij (propagated
// through softmax as P_ij·δ_ij·(v_j − ctx_i)), one relative rounding of every P_ij:
//   g² = 1 + [2·Σ P²s²‖v_j − ctx_i‖² + Σ P²‖v_j‖²] / Σ‖ctx_i‖²      (sums over heads, rows i, keys j)
// q [T, nq, d] at positions pos, k, v [Tk, nkv, d] at positions kpos; key j visible iff kpos[j] <= pos[i].
double attention_rounding_gain(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                               const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos);

class TeacherForcing {
 public:
  // `target` is the dump every replay reads; its producer dtype sets the honest noise of
  // recomputed intermediates.
  // `fp8_activations`: replay the W8A8 model (each FP8 linear's input quantized with its static
  // input scale, reference/fp8_activation.h), as the baseline was computed.
  // `device`: where the products run (replay_device.h); null: the CPU reference.
  TeacherForcing(const std::string& model_dir, const Dump& target, std::vector<int64_t> prefill_positions,
                 int threads, bool fp8_activations = false, std::unique_ptr<ReplayDevice> device = nullptr);
  ~TeacherForcing();
  const ModelConfig& config() const { return ck_.config(); }
  // The replay device's name ("cpu", "cuda (<GPU>)").
  std::string device_name() const { return dev_->name(); }
  // The F32 expert_bias of an MoE layer (for margins and routing), empty for dense layers.
  std::vector<double> expert_bias(int64_t layer);
  // f_ref on the target's inputs (composed where the target lacks them) for a canonical tensor;
  // nullopt when the step has no replay or an input can be neither read nor recomputed.
  std::optional<Replay> replay(const std::string& name);
  // The scale fit of each part of a step that is a sum of parts (part_scale.h): attn.out per
  // attention head, moe.routed_out per routed expert; empty for other steps. `target` is the
  // target's tensor, `rp` this step's replay.
  std::vector<PartScale> part_scales(const std::string& name, const Replay& rp, const Tensor<double>& target);
  // The expected shape of a canonical tensor from the config and the step's rows (prefill: the
  // prompt's length; decode steps: 1); empty when the name has no fixed shape.
  std::vector<int64_t> expected_shape(const std::string& name) const;
  // Reads a target tensor after checking its shape (and, for ids, range) against the config:
  // a one-line Error naming the file, tensor and expected shape otherwise.
  Tensor<double> read_checked(const std::string& name) const;
  std::vector<int64_t> read_ids_checked(const std::string& name) const;

 private:
  struct Val;
  struct Ctx;
  std::optional<Val> value(const std::string& full, Ctx& ctx);
  std::optional<Val> compute(const std::string& full, Ctx& ctx, Replay* out);
  const LayerWeights<double>& layer(int64_t L);
  void load_head();
  Tensor<double> embedding_rows(const std::vector<int64_t>& ids);
  std::vector<int64_t> positions_of(int64_t step) const;
  int64_t rows_of(int64_t step) const;
  bool moe(int64_t L) const;
  dataflow::LayerKind kind(int64_t L) const;

  Checkpoint ck_;
  std::unique_ptr<ReplayDevice> dev_;
  const Dump& t_;
  std::vector<int64_t> prefill_pos_;
  int threads_;
  bool fp8_ = false;
  double u_run_;
  int64_t loaded_ = -1;
  LayerWeights<double> w_;
  bool head_loaded_ = false;
  Tensor<double> final_norm_, lm_head_;
  std::map<std::string, std::unique_ptr<Val>> kv_memo_;  // recomputed cache rows (attn.k_rope, attn.v)
};

}  // namespace hyoracle::compare
