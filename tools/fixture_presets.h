// fixture_presets.h: the named model shapes `hyoracle fixture` can make, and their sizes.
//
// A preset is a CheckpointSpec (io/random_checkpoint.h) plus a golden prompt and a
// greedy generation length. Layers: `dense_layers` dense SwiGLU layers (first_k_dense_replace)
// followed by `moe_layers` MoE layers, so num_hidden_layers = dense + moe.
//
//   preset     H     heads×d    I_d    I_e   E   k  shared  V      layers (dense+MoE)
//   tiny-hy3   64    4/2 × 32   96     24    8   3  1       256    1 + 2
//   tiny-mt2   48    6/2 × 16   80     20    12  4  2       320    1 + 3
//   hy3-layer  4096  64/8 × 128 13312  1536  192 8  1       4096*  1 + 1
//   mt2-layer  2048  32/4 × 128 6912   768   128 8  1       4096*  1 + 1
//
// Hunyuan v1 presets (docs/hunyuan_v1.md; experts and shared MLP of width I):
//   preset              model_type        H     heads×d     I      E   k  V      layers  CLA  α     tied
//   tiny-hunyuan-large  hunyuan           80    4/2 × 20    48     4   1  288    4       2    1000  yes
//   tiny-hunyuan-a13b   hunyuan_v1_moe    64    4/2 × 24    40     8   3  256    3       -    1000  yes
//   tiny-hunyuan-dense  hunyuan_v1_dense  48    6/2 × 16    72     -   -  320    3       -    -     no
//   hunyuan-a13b-layer  hunyuan_v1_moe    4096  32/8 × 128  3072   64  8  4096*  1       -    1000  yes
//   hunyuan-large-cla-layers hunyuan      6400  80/8 × 80   18304  4** 1  4096*  2       2    1000  yes
//   hunyuan-large-layer hunyuan           6400  80/8 × 80   18304  16  1  4096*  1       2    1000  yes
//   ** 4 of Hunyuan-Large's 16 experts, so that the self layer and its cross layer fit in 7 GB.
//
// * The full-size presets keep the real hidden size, heads, experts and widths (docs/model.md
//   §2.2) but default to a 4096-token vocabulary: the real 120832 rows would add 2·V·H·2 bytes
//   (1.98 GB for Hy3, 0.99 GB for Hy-MT2) of embedding and lm_head that no layer bug needs.
//   `--vocab 120832` restores it. The tiny presets differ from each other in every size and
//   break the real models' coincidences on purpose: heads×head_dim ≠ H, GQA group ≠ 8, k < 8.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/random_checkpoint.h"

namespace hyoracle::fixture {

struct Preset {
  std::string name;
  std::string description;
  CheckpointSpec spec;          // sizes and weight scales; seed and shards come from the caller
  std::vector<int64_t> prompt;  // the golden prompt (every id < spec.vocab_size)
  int64_t generate = 5;         // tokens greedily generated after the prompt
};

// Every preset, in the order `hyoracle fixture --help` lists them.
const std::vector<Preset>& presets();

// The preset called `name`; Error naming the known presets otherwise.
Preset find_preset(const std::string& name);

// "tiny-hy3, tiny-mt2, ..." for help texts and messages.
std::string preset_names();

// Largest size flag and largest fixture (bytes of weights) validate_spec accepts (docs/limits.md).
constexpr int64_t kMaxFixtureDim = int64_t(1) << 24;
constexpr int64_t kMaxFixtureBytes = int64_t(16) << 30;  // the full-size hy3-layer preset: 7.7 GB
// Error (one line naming the field) unless every size is positive and consistent:
// dense layers ≤ layers, 1 ≤ k ≤ E, head_dim even (RoPE rotates halves), n_q a multiple of n_kv,
// gains finite, every size at most kMaxFixtureDim.
void validate_spec(const CheckpointSpec& s);
// Error unless the weights to be written are at most kMaxFixtureBytes (saying by how much); a dry
// run may describe a larger model, writing one is refused before anything is allocated.
void validate_fixture_size(const CheckpointSpec& s);

// Error unless every prompt id is in [0, V) and the prompt is non-empty.
void validate_prompt(const std::vector<int64_t>& prompt, int64_t vocab_size);

// Parameter counts of a spec, part by part, with docs/model.md §1.3's definitions:
//   embed_and_head = 2·V·H (untied)
//   attention      = A·H + 2·Kv·H + H·A + 2·d          (q, k, v, o, q_norm, k_norm)
//   layer_norms    = 2·H                               (input and post-attention RMSNorm)
//   dense_mlp      = 3·I_d·H
//   expert         = 3·I_e·H
//   moe_block      = E·expert + 3·I_e·n_shared·H + E·H + E   (experts, shared, router, bias)
//   mtp_layer      = attention + layer_norms + moe_block + 2H·H + 2H   (+ eh_proj, enorm, hnorm)
//   total          = embed_and_head + L·(attention + layer_norms) + dense·dense_mlp
//                    + moe·moe_block + H (model.norm) + mtp_layers·mtp_layer
struct SizeBreakdown {
  int64_t embed_and_head = 0;
  int64_t attention = 0;    // per layer
  int64_t layer_norms = 0;  // per layer
  int64_t dense_mlp = 0;    // per dense layer
  int64_t expert = 0;       // one routed expert
  int64_t moe_block = 0;    // per MoE layer
  int64_t mtp_layer = 0;    // one extra (MTP-style) layer at index >= num_hidden_layers
  int64_t total_params = 0;
  int64_t total_bytes = 0;  // on disk: BF16 everywhere except the F32 expert_bias (headers excluded)
};
SizeBreakdown size_breakdown(const CheckpointSpec& s);

}  // namespace hyoracle::fixture
