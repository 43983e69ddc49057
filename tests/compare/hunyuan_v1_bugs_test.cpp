// Hunyuan v1 engines with the bugs the family invites must be named at the first tensor the bug
// touches, and an honest engine must pass. The "engine" is the reference run in fp32 on the
// fixture checkpoint, with one thing computed the way a buggy port would; the baseline is the
// exact reference, and compare --model replays each step from the checkpoint. Each expected
// tensor comes from the dataflow table (which row first reads what the bug changed), not from
// compare's output:
//   - a cross layer reading the wrong layer's K/V: its attn.k_rope (input SRC.attn.k);
//   - q/k norms applied before RoPE (Hy3's order): attn.q_rope, the first row after attn.q;
//   - Tencent's top-1 weights renormalised (weight 1, as transformers does): moe.topk_weights.
#include <gtest/gtest.h>

#include "compare/compare.h"
#include "reference/embedding.h"
#include "reference/matmul.h"
#include "reference/names.h"
#include "reference/rms_norm.h"
#include <random>

#include "tests/common/dump_edit.h"
#include "tests/compare/compare_helpers.h"
#include "tools/fixture_presets.h"

namespace hyoracle::testing {
namespace {

using compare::CompareOptions;
using compare::Report;

enum class Bug { none, wrong_kv_source, norm_before_rope, top1_renormalised };

// An fp32 engine run of `ck` on `tokens` with `bug` (prefill, plus `generate` greedy steps when
// the bug leaves the layer loop alone), written to `dir`.
void engine_dump(const Checkpoint& ck, const std::vector<int64_t>& tokens, Bug bug, const std::string& dir,
                 int64_t generate = 0) {
  LoadOptions lo;
  lo.resident_experts = false;
  ModelWeights<float> m = load_model<float>(ck, lo);
  if (bug == Bug::norm_before_rope) m.config.qk_norm_after_rope = false;
  if (bug == Bug::top1_renormalised) m.config.route_norm = true;
  const ModelConfig& c = m.config;
  const Numerics num{Precision::fp32, 1};
  DumpWriter w(DType::F32);
  const Recorder rec{&w, ""};
  KVCache<float> cache = make_cache<float>(c);
  if (bug == Bug::wrong_kv_source) {
    // The layer loop of a port that hands the last cross layer the first layer's K/V (a stage-
    // local index where the global one was meant).
    std::vector<int64_t> pos(tokens.size());
    for (size_t t = 0; t < tokens.size(); ++t) pos[t] = int64_t(t);
    rec.ints(names::kInputIds, {int64_t(tokens.size())}, tokens, DType::I64);
    Tensor<float> x = embedding(m.embed, tokens);
    rec(names::kEmbed, x);
    const int64_t last = c.num_hidden_layers - 1;
    for (int64_t L = 0; L <= last; ++L) {
      const int64_t src = L == last ? 0 : c.kv_source(L);
      x = decoder_layer(x, L, m.layers[L], c, pos, cache.layers[L], num, rec, &cache.layers[src]);
    }
    const Tensor<float> h = rms_norm(x, m.final_norm, c.rms_norm_eps, num);
    rec(names::kFinalNorm, h);
    rec(names::kLogits, linear(h, m.lm_head, 1));
  } else {
    const Tensor<float> logits = forward(m, tokens, cache, num, rec);
    if (generate > 0) {
      Generation<float> g = generate_greedy(m, logits, cache, generate, num, &w);
      w.put_ints("generate.tokens", {generate}, g.tokens, DType::I64);
      w.put("generate.logits", g.logits);
    }
  }
  DumpProducer prod;
  prod.dtype = "float32";
  prod.precision = "fp32";
  w.write(dir, make_manifest(prod, ck.config(), ck.dir(), tokens));
}

struct Case {
  std::string root, ck;
  std::vector<int64_t> tokens;
};

Case make_case(const std::string& preset, const std::string& name) {
  const fixture::Preset p = fixture::find_preset(preset);
  Case k{temp_dir(name), "", p.prompt};
  k.ck = k.root + "/ck";
  CheckpointSpec s = p.spec;
  s.seed = 1;
  write_random_checkpoint(s, k.ck);
  reference_dump<double>(Checkpoint(k.ck), k.tokens, Precision::exact, k.root + "/ref", DType::F64, "float64", 4);
  return k;
}

Report judge(const Case& k, Bug bug, int64_t generate = 0) {
  engine_dump(Checkpoint(k.ck), k.tokens, bug, k.root + "/engine", generate);
  CompareOptions o;
  o.model_dir = k.ck;
  return compare::compare_dirs(k.root + "/ref", k.root + "/engine", o);
}

std::string first(const Report& r) { return r.first_divergence ? r.first_divergence->tensor : "(none)"; }

TEST(HunyuanV1Bugs, HonestFp32EnginesPassEveryPreset) {
  for (const char* preset : {"tiny-hunyuan-large", "tiny-hunyuan-a13b", "tiny-hunyuan-dense"}) {
    const Case k = make_case(preset, std::string("honest-") + preset);
    const Report r = judge(k, Bug::none, 4);
    EXPECT_EQ(compare::exit_code(r), 0) << preset << ": " << r.error << " first " << first(r);
    EXPECT_EQ(r.family, Family::hunyuan_v1) << preset;
    EXPECT_GT(r.tensors.size(), 40u) << preset;
  }
}

TEST(HunyuanV1Bugs, CrossLayerReadingTheWrongLayersCacheIsNamedAtItsRotatedKey) {
  const Case k = make_case("tiny-hunyuan-large", "wrong-kv");
  const ModelConfig c = Checkpoint(k.ck).config();
  ASSERT_EQ(c.cla_share_factor, 2);
  const int64_t last = c.num_hidden_layers - 1;
  ASSERT_NE(c.kv_source(last), 0);  // the bug reads another layer than the right one
  const Report r = judge(k, Bug::wrong_kv_source);
  EXPECT_EQ(compare::exit_code(r), 1) << r.error;
  EXPECT_EQ(first(r), names::layer(last, "attn.k_rope"));
}

TEST(HunyuanV1Bugs, QkNormBeforeRopeIsNamedAtTheFirstRotation) {
  for (const char* preset : {"tiny-hunyuan-large", "tiny-hunyuan-dense"}) {
    const Case k = make_case(preset, std::string("norm-order-") + preset);
    const Report r = judge(k, Bug::norm_before_rope);
    EXPECT_EQ(compare::exit_code(r), 1) << preset << ": " << r.error;
    EXPECT_EQ(first(r), "layers.0.attn.q_rope") << preset;
  }
}

TEST(HunyuanV1Bugs, Top1RenormalisedUnderTencentsCodeIsNamedAtTheWeights) {
  const Case k = make_case("tiny-hunyuan-large", "top1-renorm");
  ASSERT_FALSE(Checkpoint(k.ck).config().route_norm);  // Tencent's top-1: the raw probability
  const Report r = judge(k, Bug::top1_renormalised);
  EXPECT_EQ(compare::exit_code(r), 1) << r.error;
  EXPECT_EQ(first(r), "layers.0.moe.topk_weights");
}

// A module-only dump (no attn.q_rope / attn.k_rope: RoPE is not a module) of an honest fp32
// engine at a long context. Hunyuan's q/k norms follow RoPE, so attn.q_norm carries RoPE's fp32
// angle drift (about 2e-6 relative here) although RoPE was not dumped: without --model, its budget
// must include that drift as it does where q_rope itself is judged (without it the limit is about
// 9e-7). With --model the whole run passes. (Without --model the residual sums' per-token totals
// at this length are a screening result and are not asserted here.)
TEST(HunyuanV1Bugs, ModuleOnlyFp32DumpAtALongContextKeepsRopeDriftInTheNormsBudget) {
  const fixture::Preset p = fixture::find_preset("tiny-hunyuan-dense");
  const std::string root = temp_dir("module-only-long");
  CheckpointSpec s = p.spec;
  s.seed = 1;
  write_random_checkpoint(s, root + "/ck");
  std::mt19937_64 rng(1234);
  std::vector<int64_t> tokens(1100);
  for (int64_t& t : tokens) t = int64_t(rng() % uint64_t(s.vocab_size));
  reference_dump<double>(Checkpoint(root + "/ck"), tokens, Precision::exact, root + "/ref", DType::F64, "float64");
  engine_dump(Checkpoint(root + "/ck"), tokens, Bug::none, root + "/full");
  test::rewrite_dump_entries(root + "/full", root + "/engine", DType::F32, [](test::DumpEntries& all) {
    for (auto it = all.begin(); it != all.end();)
      it = it->first.find("_rope") != std::string::npos ? all.erase(it) : std::next(it);
  });
  const Report r = compare::compare_dirs(root + "/ref", root + "/engine", CompareOptions{});
  int norms = 0;
  for (const auto& t : r.tensors) {
    if (t.name.find("attn.q_norm") == std::string::npos && t.name.find("attn.k_norm") == std::string::npos) continue;
    ++norms;
    EXPECT_EQ(t.verdict, compare::Verdict::pass) << t.name << " " << t.budget.derivation;
    EXPECT_NE(t.budget.derivation.find("rms φ"), std::string::npos) << t.name << " " << t.budget.derivation;
  }
  EXPECT_EQ(norms, 2 * s.num_hidden_layers);
  CompareOptions o;
  o.model_dir = root + "/ck";
  const Report m = compare::compare_dirs(root + "/ref", root + "/engine", o);
  EXPECT_EQ(compare::exit_code(m), 0) << m.error << " first " << first(m);
}

}  // namespace
}  // namespace hyoracle::testing
