#include "tools/fixture_presets.h"

#include <cmath>

#include "util/error.h"

namespace hyoracle::fixture {

namespace {

// Sizes in docs/model.md notation: H, n_q, n_kv, d, I_d, I_e, E, k, n_shared, V, dense, MoE.
CheckpointSpec make_spec(int64_t H, int64_t nq, int64_t nkv, int64_t d, int64_t Id, int64_t Ie, int64_t E, int64_t k,
                         int64_t shared, int64_t V, int64_t dense, int64_t moe) {
  CheckpointSpec s;
  s.hidden_size = H;
  s.num_attention_heads = nq;
  s.num_key_value_heads = nkv;
  s.head_dim = d;
  s.intermediate_size = Id;
  s.moe_intermediate_size = Ie;
  s.num_experts = E;
  s.num_experts_per_tok = k;
  s.num_shared_experts = shared;
  s.vocab_size = V;
  s.first_k_dense_replace = dense;
  s.num_hidden_layers = dense + moe;
  return s;
}

// The golden prompts are those of the HF-made fixtures (fixtures/tiny-*/build.json), so the
// generated and the HF-made fixtures of one shape are driven by the same tokens.
const std::vector<int64_t> kHy3Prompt = {17, 200, 3, 99, 254, 42, 128};
const std::vector<int64_t> kMt2Prompt = {5, 311, 77, 160, 9, 289, 33, 250, 101};

void require(bool ok, const std::string& field, const std::string& why) {
  if (!ok) fail("fixture size --" + field + " " + why);
}

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> v = {
      {"tiny-hy3", "CI-size Hy3-shaped model (H 64, 4/2 heads x 32, E 8, top-3), milliseconds to run",
       make_spec(64, 4, 2, 32, 96, 24, 8, 3, 1, 256, 1, 2), kHy3Prompt, 5},
      {"tiny-mt2", "CI-size Hy-MT2-shaped model (H 48, 6/2 heads x 16, E 12, top-4, 2 shared)",
       make_spec(48, 6, 2, 16, 80, 20, 12, 4, 2, 320, 1, 3), kMt2Prompt, 5},
      {"hy3-layer", "full-size Hy3 layers (H 4096, 64/8 x 128, I_d 13312, I_e 1536, E 192, top-8), vocab 4096",
       make_spec(4096, 64, 8, 128, 13312, 1536, 192, 8, 1, 4096, 1, 1), kHy3Prompt, 3},
      {"mt2-layer", "full-size Hy-MT2 layers (H 2048, 32/4 x 128, I_d 6912, I_e 768, E 128, top-8), vocab 4096",
       make_spec(2048, 32, 4, 128, 6912, 768, 128, 8, 1, 4096, 1, 1), kMt2Prompt, 3},
  };
  return v;
}

std::string preset_names() {
  std::string s;
  for (const auto& p : presets()) s += (s.empty() ? "" : ", ") + p.name;
  return s;
}

Preset find_preset(const std::string& name) {
  for (const auto& p : presets())
    if (p.name == name) return p;
  fail("--preset: unknown preset \"" + name + "\" (known: " + preset_names() + ")");
}

void validate_spec(const CheckpointSpec& s) {
  require(s.vocab_size >= 2, "vocab", "must be at least 2 (a top-1 logit margin needs two tokens)");
  require(s.hidden_size >= 1, "hidden", "must be positive");
  require(s.num_attention_heads >= 1, "heads", "must be positive");
  require(s.num_key_value_heads >= 1, "kv-heads", "must be positive");
  require(s.num_attention_heads % s.num_key_value_heads == 0, "kv-heads", "must divide --heads (GQA)");
  require(s.head_dim >= 2 && s.head_dim % 2 == 0, "head-dim", "must be even and positive (RoPE rotates halves)");
  require(s.first_k_dense_replace >= 0 && s.first_k_dense_replace <= s.num_hidden_layers, "dense-layers",
          "must be between 0 and the number of layers");
  require(s.num_hidden_layers >= 1, "layers", "must leave at least one layer");
  require(s.intermediate_size >= 1 || s.first_k_dense_replace == 0, "intermediate", "must be positive");
  const bool moe = s.num_hidden_layers > s.first_k_dense_replace || s.mtp_layers > 0;
  require(!moe || s.moe_intermediate_size >= 1, "moe-intermediate", "must be positive");
  require(!moe || s.num_experts >= 1, "experts", "must be positive");
  require(!moe || (s.num_experts_per_tok >= 1 && s.num_experts_per_tok <= s.num_experts), "top-k",
          "must be between 1 and --experts");
  require(s.num_shared_experts >= 0, "shared-experts", "must not be negative");
  require(s.mtp_layers >= 0, "mtp-layers", "must not be negative");
  require(s.shards >= 1, "shards", "must be at least 1");
  require(std::isfinite(s.linear_gain) && s.linear_gain >= 0, "linear-gain", "must be a finite number >= 0");
  require(std::isfinite(s.router_gain) && s.router_gain >= 0, "router-gain", "must be a finite number >= 0");
  require(std::isfinite(s.bias_scale) && s.bias_scale >= 0, "bias-scale", "must be a finite number >= 0");
  if (s.quant == QuantKind::Fp8Block)
    require(s.fp8_block_rows >= 1 && s.fp8_block_cols >= 1 && s.fp8_block_rows <= kMaxFixtureDim &&
                s.fp8_block_cols <= kMaxFixtureDim,
            "fp8-block", "must be two positive block sizes (rows,cols)");
  // Each size at most 2^24 keeps products of sizes away from int64 overflow (the total is bounded
  // by validate_fixture_size before a fixture is written).
  for (const auto& [v, flag] : {std::pair{s.vocab_size, "vocab"}, {s.hidden_size, "hidden"}, {s.intermediate_size, "intermediate"},
                                {s.moe_intermediate_size, "moe-intermediate"}, {s.num_experts, "experts"},
                                {s.num_hidden_layers, "layers"}, {s.num_attention_heads, "heads"}, {s.head_dim, "head-dim"},
                                {s.num_key_value_heads, "kv-heads"}, {s.num_shared_experts, "shared-experts"},
                                {s.mtp_layers, "mtp-layers"}, {int64_t(s.shards), "shards"}})
    require(v <= kMaxFixtureDim, flag, "is " + std::to_string(v) + ", more than the limit of " + std::to_string(kMaxFixtureDim));
}

// The weights within kMaxFixtureBytes keep writing the fixture and its golden run (weights in
// double: 4x) within an ordinary machine's memory.
void validate_fixture_size(const CheckpointSpec& s) {
  // The BF16 bytes of the weights, in double (exact sizes could overflow int64 before this check).
  const double H = double(s.hidden_size), A = double(s.num_attention_heads * s.head_dim),
               Kv = double(s.num_key_value_heads * s.head_dim), E = double(s.num_experts);
  const double per_layer = 2 * H * A + 2 * H * Kv + 3 * H * double(s.intermediate_size) +
                           3 * H * double(s.moe_intermediate_size) * (E + double(s.num_shared_experts)) + E * H;
  const double bytes = 2 * (double(s.num_hidden_layers + s.mtp_layers) * per_layer + 2 * double(s.vocab_size) * H);
  if (bytes > double(kMaxFixtureBytes))
    fail("fixture sizes: the checkpoint would hold about " + std::to_string(int64_t(std::min(bytes, 9e18) / 1e6)) +
         " MB of weights, " + std::to_string(int64_t(std::min(bytes - double(kMaxFixtureBytes), 9e18) / 1e6)) +
         " MB more than the limit of " + std::to_string(kMaxFixtureBytes / 1000000) +
         " MB (a fixture is small: use smaller --vocab, --hidden, --experts or --layers)");
}

void validate_prompt(const std::vector<int64_t>& prompt, int64_t vocab_size) {
  if (prompt.empty()) fail("--prompt: the golden prompt is empty");
  for (int64_t id : prompt)
    if (id < 0 || id >= vocab_size)
      fail("--prompt: token " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab_size) +
           ")");
}

SizeBreakdown size_breakdown(const CheckpointSpec& s) {
  const int64_t H = s.hidden_size, A = s.num_attention_heads * s.head_dim, Kv = s.num_key_value_heads * s.head_dim;
  const int64_t E = s.num_experts, Ie = s.moe_intermediate_size;
  SizeBreakdown b;
  b.embed_and_head = 2 * s.vocab_size * H;
  b.attention = A * H + 2 * Kv * H + H * A + 2 * s.head_dim;
  b.layer_norms = 2 * H;
  b.dense_mlp = 3 * s.intermediate_size * H;
  b.expert = 3 * Ie * H;
  b.moe_block = E * b.expert + 3 * Ie * s.num_shared_experts * H + E * H + E;
  b.mtp_layer = b.attention + b.layer_norms + b.moe_block + 2 * H * H + 2 * H;
  const int64_t dense = s.first_k_dense_replace, moe = s.num_hidden_layers - dense;
  b.total_params = b.embed_and_head + s.num_hidden_layers * (b.attention + b.layer_norms) + dense * b.dense_mlp +
                   moe * b.moe_block + H + s.mtp_layers * b.mtp_layer;
  // Every parameter is 2 bytes (BF16) except expert_bias (F32): 2 more bytes per bias entry.
  b.total_bytes = 2 * b.total_params + 2 * E * (moe + s.mtp_layers);
  return b;
}

}  // namespace hyoracle::fixture
