// dataflow.h: the decoder's dataflow as one table of steps per model family (io/family.h): the single source from which the
// canonical dump names (names.h), their execution order, each tensor's operation class (its
// error budget), its expected shape, the inputs teacher forcing replays it from, and the
// Python tools' name lists (tools/dataflow.json, written by `hyoracle dataflow`) all derive.
//
// One row per canonical tensor of a decoder layer, in execution order. Inputs name other rows
// of the same layer, kPrevOut: the previous layer's `out` (the embedding for layer 0), or
// kKvSource + row: that row of the layer's KV source layer (cross-layer attention).
//
// hy_v3:
//   step               op              inputs                                  what it computes
//   input_norm         rms_norm        PREV                                    RMSNorm(x)·w
//   attn.q / k / v     linear          input_norm                              x·Wᵀ, per head [T, n, d]
//   attn.q_norm/k_norm rms_norm        attn.q / attn.k                         per-head RMSNorm (before RoPE)
//   attn.q_rope/k_rope rope            attn.q_norm / attn.k_norm               rotate-half RoPE at the positions
//   attn.context       attention       attn.q_rope, attn.k_rope, attn.v        causal softmax(q·kᵀ/√d)·v over the cache
//   attn.out           linear          attn.context                            context·W_oᵀ
//   resid_mid          add             PREV, attn.out                          x + attn.out
//   post_norm          rms_norm        resid_mid                               RMSNorm
//   moe.router_logits  linear          post_norm                               ℓ = h·W_rᵀ (fp32 or wider)
//   moe.scores         sigmoid         moe.router_logits                       s = σ(ℓ)
//   moe.topk_ids       ids             moe.scores                              top-k of s + expert_bias (ties: lower id)
//   moe.topk_weights   router_weights  moe.scores, moe.topk_ids                scaling·s[ids]/Σ s[ids]
//   moe.topk_margin    margin          moe.scores                              k-th − (k+1)-th corrected score (hyoracle)
//   moe.routed_out     routed_experts  post_norm, moe.topk_ids, moe.topk_weights  Σ_j w_j·SwiGLU_{id_j}(h)
//   moe.shared_out     swiglu          post_norm                               shared SwiGLU MLP
//   mlp.out            ffn / add       post_norm (dense) | routed_out + shared_out (MoE)
//   out                add             resid_mid, mlp.out                      resid_mid + mlp.out
//
// hunyuan_v1 differs in the attention (norms after RoPE; cross layers) and the router:
//   attn.k / attn.v    linear          input_norm          (layers that own their K/V only)
//   attn.q_rope        rope            attn.q
//   attn.k_rope        rope            attn.k | SRC.attn.k (a cross layer rotates its source's raw k)
//   attn.q_norm/k_norm rms_norm        attn.q_rope / attn.k_rope
//   attn.context       attention       attn.q_norm, attn.k_norm, attn.v | SRC.attn.v
//   moe.scores         softmax         moe.router_logits   p = softmax(ℓ) in fp32
//   moe.topk_ids       ids             moe.scores          top-k of p (ties: lower id)
//   moe.topk_weights   router_weights  moe.scores, ids     p[ids] (renormalised unless Tencent top-1)
//   moe.topk_margin    margin          moe.scores          k-th − (k+1)-th probability
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/dtype.h"
#include "io/family.h"

namespace hyoracle::dataflow {

// Which layers a row belongs to: every layer, MoE or dense layers, layers that compute their own
// K/V (self_kv) or cross layers that read another layer's (cross_kv).
enum class Applies { all, moe, dense, self_kv, cross_kv };
// The kind of one layer, as far as the table cares.
struct LayerKind {
  bool moe = false;
  bool cross = false;  // a cross layer of cross-layer attention
};
bool applies_to(Applies a, LayerKind k);
// What a tensor holds: floating activations (compared), integer ids, or a hyoracle extension
// that is read as data but never judged as a tensor.
enum class Role { activation, ids, margin };
// Expected shape, in the config's sizes: T rows (tokens of the forward), H hidden, nq/nkv heads
// of d, E experts, k experts per token.
enum class Shape { T_H, T_nq_d, T_nkv_d, T_nqd, T_E, T_k, T };

inline const char* kPrevOut = "PREV.out";
inline const char* kKvSource = "SRC.";

struct Step {
  std::string name;                 // suffix after "layers.L."
  std::string op;                   // operation class: the error budget (compare/tolerance.h)
  std::vector<std::string> inputs;  // rows of the same layer, or kPrevOut
  Applies applies = Applies::all;
  Role role = Role::activation;
  Shape shape = Shape::T_H;
  // Computed in fp32 or wider by every implementation, whatever the run's dtype (the router):
  // its rounding is that of the dtype it is stored in, not of the run.
  bool wide = false;
  // How a dump stores the row when its role is ids.
  DType ints = DType::I64;
  // The output of a module of the model (a norm, a projection block, the router, the experts, a
  // layer): what forward hooks on modules alone give, so what a module-only engine dump holds.
  bool module = false;
};

// The layer's steps of a family, in execution order. A name appears twice where its row differs
// by layer kind (mlp.out: dense and MoE; hunyuan_v1's attn.k_rope, attn.context: self and cross).
const std::vector<Step>& layer_steps(Family f);
// The row for `suffix` in a layer of the given kind, or nullptr.
const Step* find_step(Family f, const std::string& suffix, LayerKind kind);
// The row whose output the family's KV cache holds as keys (hy_v3: attn.k_rope; hunyuan_v1:
// attn.k_norm); values are always attn.v (the source layer's, in a cross layer).
const char* cached_key_step(Family f);
// Canonical tensors outside the layers, in execution order: input_ids, embed (before the
// layers), final_norm, logits (after them), then greedy generation's generate.tokens and
// generate.logits. `op` as for layer steps ("ids" for token ids).
struct ModelStep {
  std::string name, op;
  bool before_layers;
  DType ints = DType::I64;  // how a dump stores it when op is "ids"
  bool module = true;       // a module's output, as Step::module (every model-level tensor is)
};
const std::vector<ModelStep>& model_steps();

// The layer row of a canonical name ("layers.3.moe.scores", "steps.2.layers.0.attn.q"; the
// first row of that suffix, whichever layer kind), or nullptr for names outside the layers.
const Step* step_of_name(Family f, const std::string& canonical_name);
// How a dump stores the integer tensor `canonical_name` (the ints column, the same in every
// family; I64 for names the table does not know).
DType int_dtype_of(const std::string& canonical_name);

// Every family's table as JSON text (stable order), what `hyoracle dataflow` prints and the
// Python tools read from tools/dataflow.json.
std::string to_json();

}  // namespace hyoracle::dataflow
