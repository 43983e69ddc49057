#include "tools/fixture_presets.h"

#include <algorithm>
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
const std::vector<int64_t> kLargePrompt = {7, 150, 33, 281, 12, 99, 200, 64};

// A Hunyuan v1 spec (docs/hunyuan_v1.md): MoE layers (E > 0) or dense ones (E = 0); experts and
// the shared MLP of width I; `model_type` picks transformers' or Tencent's semantics.
CheckpointSpec hunyuan_spec(const std::string& model_type, int64_t H, int64_t nq, int64_t nkv, int64_t d, int64_t I,
                            int64_t E, int64_t k, int64_t V, int64_t layers, double alpha, bool tied, int64_t cla) {
  CheckpointSpec s = make_spec(H, nq, nkv, d, I, E > 0 ? I : 0, E, k, E > 0 ? 1 : 0, V, E > 0 ? 0 : layers,
                               E > 0 ? layers : 0);
  s.model_type = model_type;
  s.rope_theta = 10000.0;
  s.rope_alpha = alpha;
  s.tie_word_embeddings = tied;
  s.cla_share_factor = cla;
  // With tied embeddings and gain 1 the residual stream keeps the input token's embedding on top,
  // so greedy generation repeats the last token; gain 2 lets the layers decide.
  s.linear_gain = 2.0;
  return s;
}

// Full-width presets keep the real models' weight scale (gain 1): their depth is one or two layers,
// so the residual stream's embedding does not dominate as it does in the tied tiny presets.
CheckpointSpec full_width(CheckpointSpec s) {
  s.linear_gain = 1.0;
  return s;
}

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
      {"tiny-hunyuan-large",
       "Hunyuan-Large-shaped, Tencent's code: cross-layer attention (factor 2), top-1 softmax router weighted by p_max, "
       "shared MLP, NTK-alpha RoPE, tied embeddings (H 80, 4/2 heads x 20, E 4)",
       hunyuan_spec("hunyuan", 80, 4, 2, 20, 48, 4, 1, 288, 4, 1000.0, true, 2), kLargePrompt, 5},
      {"tiny-hunyuan-a13b",
       "Hunyuan-A13B-shaped, transformers' hunyuan_v1_moe: top-3 softmax router, shared MLP, NTK-alpha RoPE, tied "
       "(H 64, 4/2 heads x 24, E 8)",
       hunyuan_spec("hunyuan_v1_moe", 64, 4, 2, 24, 40, 8, 3, 256, 3, 1000.0, true, 1), kHy3Prompt, 5},
      {"tiny-hunyuan-dense", "dense Hunyuan, transformers' hunyuan_v1_dense (H 48, 6/2 heads x 16, I 72, plain RoPE)",
       hunyuan_spec("hunyuan_v1_dense", 48, 6, 2, 16, 72, 0, 0, 320, 3, 0.0, false, 1), kMt2Prompt, 5},
      {"hunyuan-a13b-layer",
       "one full-size Hunyuan-A13B MoE layer, transformers' hunyuan_v1_moe (H 4096, 32/8 x 128, I 3072, E 64 top-8 + "
       "shared), vocab 4096",
       full_width(hunyuan_spec("hunyuan_v1_moe", 4096, 32, 8, 128, 3072, 64, 8, 4096, 1, 1000.0, true, 1)), kHy3Prompt, 3},
      {"hunyuan-large-cla-layers",
       "two full-width Hunyuan-Large layers, Tencent's code: a self layer and the cross layer reading its K/V "
       "(H 6400, 80/8 x 80, I 18304, top-1 + shared) with 4 experts instead of 16 (7 GB), vocab 4096",
       full_width(hunyuan_spec("hunyuan", 6400, 80, 8, 80, 18304, 4, 1, 4096, 2, 1000.0, true, 2)), kLargePrompt, 3},
      {"hunyuan-large-layer",
       "one full-size Hunyuan-Large layer, Tencent's code (H 6400, 80/8 x 80, I 18304, E 16 top-1 + 1 shared), vocab 4096",
       full_width(hunyuan_spec("hunyuan", 6400, 80, 8, 80, 18304, 16, 1, 4096, 1, 1000.0, true, 2)), kLargePrompt, 3},
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
  if (s.model_type != "hy_v3") {
    const bool dense = s.model_type == "hunyuan_v1_dense" || (s.model_type == "hunyuan" && s.num_experts <= 1);
    require(s.model_type == "hunyuan_v1_moe" || s.model_type == "hunyuan_v1_dense" || s.model_type == "hunyuan",
            "preset", "has an unknown model_type");
    require(s.first_k_dense_replace == (dense ? s.num_hidden_layers : 0), "dense-layers",
            dense ? "must be every layer in a dense Hunyuan model" : "must be 0 in a Hunyuan v1 MoE model (no dense layers)");
    require(s.model_type != "hunyuan" || s.head_dim * s.num_attention_heads == s.hidden_size, "head-dim",
            "must be --hidden / --heads in Tencent's Hunyuan code");
    require(dense || s.moe_intermediate_size == s.intermediate_size, "moe-intermediate",
            "must equal --intermediate in a Hunyuan v1 model (its experts have width intermediate_size)");
    require(s.model_type == "hunyuan" || s.num_shared_experts == (dense ? 0 : 1), "shared-experts",
            "must be 1 in transformers' hunyuan_v1_moe (one shared MLP)");
    require(s.cla_share_factor >= 1 && (s.cla_share_factor == 1 || s.model_type == "hunyuan"), "cla",
            "cross-layer attention exists in Tencent's \"hunyuan\" code only");
  }
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
  if (s.model_type != "hy_v3") {
    // Hunyuan v1: no expert_bias, an F32 router, a shared MLP of I (× num_shared_experts for
    // Tencent's code), cross layers without k/v projections, no lm_head when tied.
    const int64_t L = s.num_hidden_layers, f = std::max<int64_t>(s.cla_share_factor, 1);
    const int64_t self_layers = (L + f - 1) / f, dense = s.first_k_dense_replace, moe = L - dense;
    b.embed_and_head = (s.tie_word_embeddings ? 1 : 2) * s.vocab_size * H;
    b.attention = A * H + 2 * Kv * H + H * A + 2 * s.head_dim;
    b.layer_norms = 2 * H;
    b.dense_mlp = 3 * s.intermediate_size * H;
    b.expert = 3 * Ie * H;
    b.moe_block = E * b.expert + 3 * s.intermediate_size * s.num_shared_experts * H + E * H;
    b.total_params = b.embed_and_head + L * (b.attention + b.layer_norms) - (L - self_layers) * 2 * Kv * H +
                     dense * b.dense_mlp + moe * b.moe_block + H;
    b.total_bytes = 2 * b.total_params + 2 * E * H * moe;  // the router is F32
    return b;
  }
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
