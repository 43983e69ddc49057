// End-to-end compare on random checkpoints (odd sizes) with dumps made by the reference itself:
// honest precision changes pass, planted bugs fail at the right tensor, bad input exits 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "compare/compare.h"
#include "tests/compare/compare_helpers.h"
#include "reference/decoder_layer.h"
#include "io/dtype.h"
#include "io/dump.h"
#include "io/fingerprint.h"
#include "io/safetensors.h"
#include "reference/mlp.h"
#include "reference/moe.h"
#include "reference/names.h"

using namespace hyoracle;
using namespace hyoracle::compare;
using hyoracle::testing::reference_dump;
using hyoracle::testing::rewrite_dump;
using hyoracle::testing::temp_dir;

namespace {

struct Fixture {
  std::string root, ckpt, exact;
  std::vector<int64_t> tokens = {5, 77, 3, 190, 42, 11, 250};  // T = 7
};

// The sizes of the test model: 3 layers (1 dense + 2 MoE), an odd head count; weights from `seed`.
CheckpointSpec model_spec(uint64_t seed) {
  CheckpointSpec s;
  s.seed = seed;
  s.hidden_size = 48;
  s.num_attention_heads = 3;
  s.num_key_value_heads = 1;
  s.head_dim = 16;
  s.num_experts = 7;
  s.num_experts_per_tok = 2;
  return s;
}

// The test model with seed 33, written once per process.
const Fixture& model() {
  static Fixture f = [] {
    Fixture x;
    x.root = temp_dir("model");
    x.ckpt = x.root + "/ckpt";
    write_random_checkpoint(model_spec(33), x.ckpt);
    x.exact = x.root + "/exact";
    const Checkpoint ck(x.ckpt);
    reference_dump<double>(ck, x.tokens, Precision::exact, x.exact, DType::F64, "float64", 3);
    return x;
  }();
  return f;
}

CompareOptions with_model() {
  CompareOptions o;
  o.model_dir = model().ckpt;
  return o;
}

const TensorResult* find(const Report& r, const std::string& name) {
  for (const auto& t : r.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace

TEST(CompareModel, IdenticalDumpsPassWithZeroError) {
  const Report r = compare_dirs(model().exact, model().exact, with_model());
  EXPECT_EQ(r.verdict, Verdict::pass) << terminal_summary(r);
  EXPECT_EQ(exit_code(r), 0);
  EXPECT_GT(r.tensors.size(), 40u);  // non-vacuous
  for (const auto& t : r.tensors) EXPECT_EQ(t.total.max_abs, 0.0) << t.name;
}

// The reference in fp32 (S = float, HF's fp32 steps) against exact, judged with fp32 budgets.
TEST(CompareModel, Fp32RunPassesWithFp32Budgets) {
  const std::string d = temp_dir("fp32");
  reference_dump<float>(Checkpoint(model().ckpt), model().tokens, Precision::fp32, d, DType::F32, "float32", 3);
  const Report r = compare_dirs(model().exact, d, with_model());
  EXPECT_EQ(r.verdict, Verdict::pass) << terminal_summary(r);
  EXPECT_TRUE(r.teacher_forced);
  // The budgets really are fp32-sized (not bf16): a 1e-4 error would fail.
  const TensorResult* q = find(r, "layers.1.attn.q");
  ASSERT_NE(q, nullptr);
  EXPECT_LT(q->budget.limit, 1e-5);
  EXPECT_GT(q->total.rel_l2, 0.0);
}

// Every float tensor of the exact dump rounded to bf16 and stored as BF16: passes as bf16.
TEST(CompareModel, Bf16RoundedCopyPassesAsBf16) {
  const std::string d = temp_dir("bf16");
  rewrite_dump(model().exact, d, DType::BF16, "bfloat16", [](const std::string&, Tensor<double>&) {});
  const Report r = compare_dirs(model().exact, d, with_model());
  EXPECT_EQ(r.verdict, Verdict::pass) << terminal_summary(r);
  double worst = 0;
  for (const auto& t : r.tensors) worst = std::max(worst, t.total.rel_l2);
  EXPECT_GT(worst, 1e-4);  // bf16 noise is there, and it passed
  // Without teacher forcing the same dump is judged on total error.
  const Report r2 = compare_dirs(model().exact, d, CompareOptions{});
  EXPECT_FALSE(r2.teacher_forced);
  EXPECT_EQ(r2.verdict, Verdict::pass) << terminal_summary(r2);
}

// Plant a bug: layer 1's attn.out scaled by 1.05, then the rest of the model re-run from there
// with decoder_layer (so every later tensor is the honest consequence). First divergence must be
// layers.1.attn.out, and nothing before it may fail.
TEST(CompareModel, ScaledAttentionOutputIsTheFirstDivergence) {
  const Fixture& f = model();
  const Checkpoint ck(f.ckpt);
  LoadOptions lo;
  lo.resident_experts = false;
  const ModelWeights<double> m = load_model<double>(ck, lo);
  const ModelConfig& c = m.config;
  const Dump exact(f.exact);
  // Rebuild the dump: layers < 1 copied; layer 1 recomputed by hand with the scaled attn.out.
  DumpWriter w(DType::F64);
  for (const std::string& n : exact.names()) {
    const int64_t L = n.rfind("layers.", 0) == 0 ? std::stoll(n.substr(7)) : -1;
    if (n == "input_ids" || n == "embed" || L == 0) {
      if (dtype_is_float(exact.info(n).dtype)) w.put(n, exact.read(n));
      else w.put_ints(n, exact.info(n).shape, exact.read_ints(n), exact.info(n).dtype);
    }
  }
  class Scale : public ActivationSink {  // forwards everything, records layer 1 up to attn.out
   public:
    explicit Scale(DumpWriter& w) : w_(w) {}
    void put(const std::string& n, const Tensor<double>& t) override { w_.put(n, t); }
    void put(const std::string& n, const Tensor<float>& t) override { w_.put(n, t); }
    void put_ints(const std::string& n, const std::vector<int64_t>& s, const std::vector<int64_t>& v,
                  DType stored) override {
      w_.put_ints(n, s, v, stored);
    }
    DumpWriter& w_;
  } sink(w);
  std::vector<int64_t> pos(f.tokens.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int64_t(i);
  Tensor<double> x = exact.read("layers.0.out");
  // Layer 1 by hand: the reference's own functions, with o_proj's output scaled by 1.05.
  {
    LayerWeights<double> w1 = m.layers[1];
    for (double& v : w1.wo.data) v *= 1.05;  // o_proj 5% too large == attn.out × 1.05
    LayerCache<double> cache;
    x = decoder_layer(x, 1, w1, c, pos, cache, Numerics{}, Recorder{&sink, ""});
  }
  for (int64_t L = 2; L < c.num_hidden_layers; ++L) {
    LayerCache<double> cache;
    x = decoder_layer(x, L, m.layers[L], c, pos, cache, Numerics{}, Recorder{&sink, ""});
  }
  const std::string d = temp_dir("oproj");
  w.write(d, make_manifest(DumpProducer{}, c, f.ckpt, f.tokens));
  // The dump stops at the last layer (no final_norm/logits), so require that instead of logits.
  CompareOptions o = with_model();
  o.require = {"^layers\\.2\\.out$"};
  const Report r = compare_dirs(f.exact, d, o);
  ASSERT_TRUE(r.first_divergence.has_value()) << terminal_summary(r);
  EXPECT_EQ(r.first_divergence->tensor, "layers.1.attn.out") << terminal_summary(r);
  EXPECT_EQ(r.verdict, Verdict::fail);
  EXPECT_EQ(exit_code(r), 1);
  const TensorResult* a = find(r, "layers.1.attn.out");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->local.has_value());
  EXPECT_NEAR(a->local->rel_l2, 0.05, 1e-9);  // target = 1.05·ref(target inputs): ‖0.05·r‖/‖r‖
  EXPECT_NEAR(a->total.norm_ratio, 1.05, 1e-9);
  // Later tensors inherit the error but add none: they pass under teacher forcing.
  const TensorResult* o2 = find(r, "layers.2.attn.out");
  ASSERT_NE(o2, nullptr);
  EXPECT_EQ(o2->verdict, Verdict::pass);
  EXPECT_GT(o2->total.rel_l2, 1e-3);
  // Model-free: the same bug still shows at layers.1.attn.out (5% against a f64 budget).
  CompareOptions nm;
  nm.require = o.require;
  const Report r2 = compare_dirs(f.exact, d, nm);
  ASSERT_TRUE(r2.first_divergence.has_value());
  EXPECT_EQ(r2.first_divergence->tensor, "layers.1.attn.out");
}

// Routing: swap the k-th chosen expert for the (k+1)-th in the target at one token.
namespace {
// With `own_logits`, the target's router logits and scores at that token trade the two experts'
// corrected scores, so the swap is the top-k of the target's own router output (what an honest
// engine whose noise crossed a near-tie dumps); without, they stay the exact ones.
std::string flipped_dump(const std::string& name, int64_t layer, bool smallest_margin, double post_norm_noise,
                         int64_t* token_out, bool own_logits = false) {
  const Fixture& f = model();
  const Dump exact(f.exact);
  const std::string ids_name = names::layer(layer, "moe.topk_ids");
  const Tensor<double> margin = exact.read(names::layer(layer, "moe.topk_margin"));
  int64_t tok = 0;
  for (int64_t t = 1; t < margin.numel(); ++t)
    if (smallest_margin ? margin.data[t] < margin.data[tok] : margin.data[t] > margin.data[tok]) tok = t;
  *token_out = tok;
  // The expert ranked k+1 at that token, from the exact scores + bias (recomputed here).
  const Checkpoint ck(f.ckpt);
  const Tensor<double> bias = ck.load<double>(hf_layer_name(layer, "mlp.expert_bias"), {ck.config().num_experts}, true);
  const Tensor<double> s = exact.read(names::layer(layer, "moe.scores"));
  std::vector<double> c(static_cast<size_t>(s.cols()));
  for (int64_t e = 0; e < s.cols(); ++e) c[size_t(e)] = s.row(tok)[e] + bias.data[e];
  const std::vector<int64_t> top = top_k_indices(c.data(), s.cols(), ck.config().num_experts_per_tok + 1);
  const std::string d = temp_dir(name);
  DumpWriter w(DType::F64);
  Rng rng(7);
  for (const std::string& n : exact.names()) {
    if (!dtype_is_float(exact.info(n).dtype)) {
      std::vector<int64_t> v = exact.read_ints(n);
      if (n == ids_name) {
        const int64_t k = exact.info(n).shape[1];
        for (int64_t j = 0; j < k; ++j)
          if (v[tok * k + j] == top[size_t(k - 1)]) v[tok * k + j] = top[size_t(k)];
      }
      w.put_ints(n, exact.info(n).shape, v, exact.info(n).dtype);
      continue;
    }
    Tensor<double> t = exact.read(n);
    const bool logits = n == names::layer(layer, "moe.router_logits"), scores = n == names::layer(layer, "moe.scores");
    if (own_logits && (logits || scores)) {
      const int64_t k = ck.config().num_experts_per_tok, a = top[size_t(k - 1)], b = top[size_t(k)];
      const double sa = c[size_t(b)] - bias.data[a], sb = c[size_t(a)] - bias.data[b];  // exchanged corrected scores
      t.row(tok)[a] = logits ? std::log(sa / (1 - sa)) : sa;
      t.row(tok)[b] = logits ? std::log(sb / (1 - sb)) : sb;
    }
    if (n == names::layer(layer, "post_norm"))
      for (double& x : t.data) x *= 1 + post_norm_noise * (rng.uniform() - 0.5) * 2 * std::sqrt(3.0);
    w.put(n, t);
  }
  w.write(d, make_manifest(DumpProducer{}, ck.config(), f.ckpt, f.tokens));
  return d;
}
}  // namespace

TEST(CompareModel, RealRoutingFlipIsADivergence) {
  int64_t tok = -1;
  const std::string d = flipped_dump("flip_real", 2, /*smallest_margin=*/false, 0.0, &tok);
  CompareOptions o = with_model();
  const Report r = compare_dirs(model().exact, d, o);
  ASSERT_TRUE(r.first_divergence.has_value()) << terminal_summary(r);
  EXPECT_EQ(r.first_divergence->tensor, "layers.2.moe.topk_ids") << terminal_summary(r);
  ASSERT_GE(r.routing.size(), 2u);  // prefill layers 1, 2 first, then decode steps
  EXPECT_EQ(r.routing[1].real_flips, 1);
  EXPECT_EQ(r.routing[1].flips.at(0).token, tok);
  EXPECT_EQ(exit_code(r), 1);
}

// The same swap at the token with the smallest margin, with the target's post_norm carrying 3%
// noise (expected logit noise grows with it) and router logits that support the swap: the flip
// is a near-tie relative to the reference and the target's own top-k, so no routing divergence.
TEST(CompareModel, NearTieFlipIsNotADivergence) {
  int64_t tok = -1;
  const std::string d = flipped_dump("flip_tie", 2, /*smallest_margin=*/true, 0.03, &tok, /*own_logits=*/true);
  const Report r = compare_dirs(model().exact, d, with_model());
  ASSERT_GE(r.routing.size(), 2u);  // prefill layers 1, 2 first, then decode steps
  EXPECT_EQ(r.routing[1].near_tie_flips, 1) << terminal_summary(r);
  EXPECT_EQ(r.routing[1].real_flips, 0);
  const TensorResult* ids = find(r, "layers.2.moe.topk_ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->verdict, Verdict::pass);
  // (post_norm itself is judged separately and fails: 3% is not an honest f64 error.)
  ASSERT_TRUE(r.first_divergence.has_value());
  EXPECT_EQ(r.first_divergence->tensor, "layers.2.post_norm");
}

// Teacher-forced routing: the same near-tie swap, but with the target's own router logits still
// ranking the reference's expert first. Relative to the reference it is a near-tie; against the
// target's own logits it is a selection error, named with the token and both experts.
TEST(CompareModel, SelectionAgainstOwnLogitsIsALocalRoutingError) {
  int64_t tok = -1;
  const std::string d = flipped_dump("flip_own", 2, /*smallest_margin=*/true, 0.03, &tok);
  const Report r = compare_dirs(model().exact, d, with_model());
  ASSERT_GE(r.routing.size(), 2u);
  EXPECT_EQ(r.routing[1].near_tie_flips, 1) << terminal_summary(r);
  EXPECT_TRUE(r.routing[1].forced);
  EXPECT_EQ(r.routing[1].forced_mismatches, 1);
  ASSERT_EQ(r.routing[1].forced_list.size(), 1u);
  EXPECT_EQ(r.routing[1].forced_list[0].token, tok);
  const TensorResult* ids = find(r, "layers.2.moe.topk_ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->verdict, Verdict::fail);
  EXPECT_NE(ids->reason.find("token " + std::to_string(tok) + " chose expert"), std::string::npos) << ids->reason;
}

TEST(CompareModel, BadInputIsIncompleteWithAOneLineError) {
  const Fixture& f = model();
  // NaN in the baseline: bad input, reported by position. In the target: the engine failed there.
  const std::string nan = temp_dir("nan");
  rewrite_dump(f.exact, nan, DType::F64, "float64", [](const std::string& n, Tensor<double>& t) {
    if (n == "layers.1.attn.v") t.data[5] = NAN;
  });
  Report r = compare_dirs(nan, f.exact, CompareOptions{});
  EXPECT_EQ(exit_code(r), 2);
  EXPECT_NE(r.error.find("layers.1.attn.v\" has NaN at [0, 0, 5]"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("activations.safetensors"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find('\n'), std::string::npos);
  for (const CompareOptions& o : {CompareOptions{}, with_model()}) {
    r = compare_dirs(f.exact, nan, o);
    EXPECT_EQ(exit_code(r), 1) << terminal_summary(r);
    ASSERT_TRUE(r.first_divergence.has_value());
    EXPECT_EQ(r.first_divergence->tensor, "layers.1.attn.v");
    EXPECT_NE(r.first_divergence->reason.find("has NaN at [0, 0, 5]"), std::string::npos) << r.first_divergence->reason;
    EXPECT_EQ(r.tensors.back().name, "layers.1.attn.v");  // the walk stops there
  }
  // Shape mismatch.
  const std::string shp = temp_dir("shape");
  rewrite_dump(f.exact, shp, DType::F64, "float64", [](const std::string& n, Tensor<double>& t) {
    if (n == "final_norm") t.shape = {t.numel()};
  });
  r = compare_dirs(f.exact, shp, CompareOptions{});
  EXPECT_EQ(exit_code(r), 2);
  EXPECT_NE(r.error.find("\"final_norm\" has shape"), std::string::npos) << r.error;
  // Missing dump, wrong version.
  r = compare_dirs(f.exact, f.root + "/nope", CompareOptions{});
  EXPECT_EQ(exit_code(r), 2);
  EXPECT_NE(r.error.find("nope/manifest.json"), std::string::npos) << r.error;
  // Required tensor missing: incomplete, not pass.
  CompareOptions req;
  req.require = {"^layers\\.99\\.out$"};
  r = compare_dirs(f.exact, f.exact, req);
  EXPECT_EQ(r.verdict, Verdict::incomplete);
  EXPECT_EQ(exit_code(r), 2);
  ASSERT_EQ(r.missing_required.size(), 1u);
  // Rules without defaults fail closed: a compared tensor that matches no rule is incomplete.
  CompareOptions closed;
  closed.rules = parse_rules(R"({"use_derived_defaults": false, "rules": [{"match": "logits", "max": 1, "reason": "test"}]})",
                             "closed.json");
  r = compare_dirs(f.exact, f.exact, closed);
  EXPECT_EQ(r.verdict, Verdict::incomplete);
  const TensorResult* e = find(r, "embed");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->verdict, Verdict::incomplete);
  EXPECT_EQ(find(r, "logits")->budget.rule, "rules:0:logits");
}

// --model with a checkpoint the dumps were not made from (its config.json differs from the one
// whose sha256 the manifests record): refused with exit 2 naming both, before any judgement.
TEST(CompareModel, ACheckpointOtherThanTheDumpsIsRefused) {
  const Fixture& f = model();
  const std::string other = temp_dir("other-ckpt");
  for (const auto& e : std::filesystem::directory_iterator(f.ckpt))
    std::filesystem::copy(e.path(), other + "/" + e.path().filename().string());
  {
    std::ofstream cfg(other + "/config.json", std::ios::app);
    cfg << "\n";  // same model, other bytes: another checkpoint as far as the manifests can tell
  }
  CompareOptions o;
  o.model_dir = other;
  const Report r = compare_dirs(f.exact, f.exact, o);
  EXPECT_EQ(exit_code(r), 2);
  EXPECT_NE(r.error.find("manifest.json: model.config_sha256"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find(other + "/config.json"), std::string::npos) << r.error;
  EXPECT_EQ(compare_dirs(f.exact, f.exact, with_model()).verdict, Verdict::pass);
}

// --model with a checkpoint of the same config.json but other weights (another seed): the
// config hash agrees, the weights fingerprint the manifest records does not, so the comparison is
// refused with exit 2 naming the field and the checkpoint; with the right checkpoint it passes.
TEST(CompareModel, ACheckpointWithOtherWeightsOfTheSameShapesIsRefused) {
  const Fixture& f = model();
  const std::string root = temp_dir("other-weights");
  write_random_checkpoint(model_spec(34), root + "/other");
  std::filesystem::copy_file(f.ckpt + "/config.json", root + "/other/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  // The exact dump, with the fingerprint `hyoracle run --dump` records.
  const std::string dump = root + "/exact";
  std::filesystem::create_directories(dump);
  for (const auto& e : std::filesystem::directory_iterator(f.exact))
    std::filesystem::copy(e.path(), dump + "/" + e.path().filename().string());
  nlohmann::ordered_json m = nlohmann::ordered_json::parse(read_text_file(dump + "/manifest.json", 1 << 20, "manifest"));
  record_weights_fingerprint(m, f.ckpt);
  std::ofstream(dump + "/manifest.json", std::ios::trunc) << m.dump(2) << "\n";
  EXPECT_NE(weights_fingerprint(f.ckpt), weights_fingerprint(root + "/other"));

  CompareOptions o;
  o.model_dir = root + "/other";
  Report r = compare_dirs(dump, dump, o);
  EXPECT_EQ(exit_code(r), 2);
  EXPECT_NE(r.error.find(dump + "/manifest.json: model.weights_fingerprint sampled-sha256:"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("is not that of " + root + "/other"), std::string::npos) << r.error;
  o.model_dir = f.ckpt;
  r = compare_dirs(dump, dump, o);
  EXPECT_EQ(r.verdict, Verdict::pass) << r.error;
}

// --layers: a range past the model is refused; inside it, the layers outside are skipped, the
// first compared layer inherits the measured error of the layer before it, and the model's tail
// (final_norm, logits) is not judged against layers that were not compared.
TEST(CompareModel, LayerRangeIsCheckedAndItsEdgesAreHonest) {
  const Fixture& f = model();
  CompareOptions o;
  o.layer_first = 1;
  o.layer_last = 5;  // the model has 3 layers
  Report r = compare_dirs(f.exact, f.exact, o);
  EXPECT_EQ(exit_code(r), 2);
  EXPECT_NE(r.error.find("outside the model's 3 layers"), std::string::npos) << r.error;
  const std::string d = temp_dir("bf16-range");
  rewrite_dump(f.exact, d, DType::BF16, "bfloat16", [](const std::string&, Tensor<double>&) {});
  o.layer_last = 2;
  o.require = {"^layers\\.1\\.out$"};
  r = compare_dirs(f.exact, d, o);
  EXPECT_EQ(r.verdict, Verdict::pass) << terminal_summary(r);
  for (const auto& t : r.tensors) {
    EXPECT_TRUE(t.layer == 1 || t.name == "embed" || t.name.find(".embed") != std::string::npos) << t.name;
  }
  bool tail_skipped = false;
  for (const auto& [n, why] : r.skipped) tail_skipped = tail_skipped || (n == "final_norm" && why.find("after --layers") != std::string::npos);
  EXPECT_TRUE(tail_skipped);
  const TensorResult* in = find(r, "layers.1.input_norm");
  ASSERT_NE(in, nullptr);
  EXPECT_GT(in->inherited_input, 1e-4);  // layers.0.out's bf16 error, measured though not judged
}

TEST(CompareModel, ReportsAreWellFormed) {
  const std::string d = temp_dir("bf16_reports");
  rewrite_dump(model().exact, d, DType::BF16, "bfloat16", [](const std::string&, Tensor<double>&) {});
  const Report r = compare_dirs(model().exact, d, with_model());
  const nlohmann::ordered_json j = report_json(r);
  EXPECT_EQ(j["format"], "hyoracle.report");
  EXPECT_EQ(j["verdict"], "pass");
  EXPECT_TRUE(j["first_divergence"].is_null());
  EXPECT_EQ(j["tensors"].size(), r.tensors.size());
  EXPECT_TRUE(j["tensors"][1]["budget"].contains("rule"));
  EXPECT_TRUE(j["missing"].contains("in_baseline"));
  // Deterministic: the same comparison gives the same JSON except the timing.
  nlohmann::ordered_json j2 = report_json(compare_dirs(model().exact, d, with_model()));
  j2["stats"] = j["stats"];
  EXPECT_EQ(j.dump(), j2.dump());
  const std::string html = report_html(r);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("<polyline"), std::string::npos);
  // Readable without scripts: at most the one sort helper, after every table of the page.
  EXPECT_EQ(html.find("<script"), html.rfind("<script"));
  if (html.find("<script") != std::string::npos) {
    EXPECT_GT(html.find("<script"), html.rfind("</table>"));
  }
  EXPECT_NE(report_markdown(r).find("## Per-layer error"), std::string::npos);
  EXPECT_NE(terminal_summary(r).find("pass"), std::string::npos);
}

// Part scales: one part of a sum (one attention head through o_proj; one routed expert) scaled
// by a small 1 + α in an otherwise honest bf16 dump. The planted error moves the whole tensor
// less than its bf16 rel-L2 budget, so only the part fit (compare/part_scale.h) can see it; it
// must name the part and fit α. The honest bf16 copy (Bf16RoundedCopyPassesAsBf16) is the control.
namespace {

struct PartPlant {
  std::string tensor;
  int64_t part = 0;
  double effect = 0;  // rel-L2 of the planted change over the whole tensor
};

// The exact dump of a longer prompt (T = 65): a part fit needs rows to average its noise over.
const std::string& exact65() {
  static const std::string d = [] {
    std::vector<int64_t> tokens;
    for (int64_t i = 0; i < 65; ++i) tokens.push_back((i * 97 + 13) % 251);
    const std::string out = temp_dir("exact65");
    reference_dump<double>(Checkpoint(model().ckpt), tokens, Precision::exact, out, DType::F64, "float64", 3);
    return out;
  }();
  return d;
}

std::string planted_part_dump(const std::string& kind, double alpha, PartPlant* plant) {
  const Fixture& f = model();
  const Checkpoint ck(f.ckpt);
  LoadOptions lo;
  lo.resident_experts = true;
  const ModelWeights<double> m = load_model<double>(ck, lo);
  const ModelConfig& c = m.config;
  const Dump exact(exact65());
  const int64_t H = c.hidden_size, T = exact.read("embed").rows();
  Tensor<double> add({T, H});
  if (kind == "head") {
    plant->tensor = "layers.1.attn.out";
    plant->part = 1;
    const Tensor<double> ctx = exact.read("layers.1.attn.context");  // [T, nq, d]
    const int64_t nq = c.num_attention_heads, d = c.head_dim, h = plant->part;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < H; ++o) {
        double s = 0;
        for (int64_t i = 0; i < d; ++i)
          s += ctx.data[size_t(t * nq * d + h * d + i)] * m.layers[1].wo.data[size_t(o * nq * d + h * d + i)];
        add.data[size_t(t * H + o)] = alpha * s;
      }
  } else {
    plant->tensor = "layers.1.moe.routed_out";
    const Tensor<double> u = exact.read("layers.1.post_norm");
    const std::vector<int64_t> ids = exact.read_ints("layers.1.moe.topk_ids");
    const Tensor<double> w = exact.read("layers.1.moe.topk_weights");
    const int64_t k = c.num_experts_per_tok;
    std::vector<int64_t> uses(size_t(c.num_experts), 0);
    for (int64_t id : ids) ++uses[size_t(id)];
    plant->part = int64_t(std::max_element(uses.begin(), uses.end()) - uses.begin());
    MlpWeights<double> scratch;
    const MlpWeights<double>& ew = m.layers[1].experts.get(plant->part, scratch);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j)
        if (ids[size_t(t * k + j)] == plant->part) {
          Tensor<double> row({1, H}, std::vector<double>(u.row(t), u.row(t) + H));
          const Tensor<double> y = swiglu_mlp(row, ew, 1);
          for (int64_t o = 0; o < H; ++o) add.data[size_t(t * H + o)] += alpha * w.data[size_t(t * k + j)] * y.data[size_t(o)];
        }
  }
  const Tensor<double> y = exact.read(plant->tensor);
  double na = 0, ny = 0;
  for (size_t i = 0; i < y.data.size(); ++i) na += add.data[i] * add.data[i], ny += y.data[i] * y.data[i];
  plant->effect = std::sqrt(na / ny);
  const std::string d = temp_dir("part-" + kind);
  const std::string name = plant->tensor;
  rewrite_dump(exact65(), d, DType::BF16, "bfloat16", [&](const std::string& n, Tensor<double>& x) {
    if (n == name)
      for (size_t i = 0; i < x.data.size(); ++i) x.data[i] += add.data[i];
  });
  return d;
}

void expect_part_named(const std::string& kind, double alpha) {
  PartPlant p;
  const std::string d = planted_part_dump(kind, alpha, &p);
  const Report r = compare_dirs(exact65(), d, with_model());
  const TensorResult* t = find(r, p.tensor);
  ASSERT_NE(t, nullptr);
  // the plant is below the tensor's rel-L2 budget: the part fit alone finds it
  EXPECT_LT(p.effect, t->budget.limit) << kind;
  EXPECT_LT(t->local->rel_l2, t->budget.limit) << kind;
  std::string fits;
  for (const PartScale& s : t->part_scales)
    fits += " " + std::to_string(s.part) + ":" + std::to_string(s.alpha) + "±" + std::to_string(s.sigma) + "/" + std::to_string(s.rows);
  ASSERT_TRUE(r.first_divergence.has_value()) << terminal_summary(r) << "\nfits:" << fits;
  EXPECT_EQ(r.first_divergence->tensor, p.tensor) << terminal_summary(r);
  EXPECT_NE(t->reason.find(kind + " " + std::to_string(p.part) + "'s part is scaled"), std::string::npos) << t->reason;
  const auto it = std::find_if(t->part_scales.begin(), t->part_scales.end(), [&](const PartScale& s) { return s.part == p.part; });
  ASSERT_NE(it, t->part_scales.end());
  EXPECT_NEAR(it->alpha, alpha, 0.25 * alpha);  // bf16 rounding of the inputs and output moves the fit a little
  // no other part is beyond both the rounding unit and the noise
  for (const PartScale& s : t->part_scales) {
    if (s.part != p.part) {
      EXPECT_TRUE(std::fabs(s.alpha) <= 0.0039 || std::fabs(s.z()) <= kPartScaleZ) << kind << " " << s.part;
    }
  }
}

}  // namespace

TEST(CompareModel, OneHeadScaledBelowTheTensorBudgetIsNamed) { expect_part_named("head", 0.006); }

TEST(CompareModel, OneExpertScaledBelowTheTensorBudgetIsNamed) { expect_part_named("expert", 0.035); }

// The honest bf16 copy: every part's fitted scale stays inside the floor or the noise.
TEST(CompareModel, HonestBf16CopyHasNoWrongPartScale) {
  const std::string d = temp_dir("bf16-parts");
  rewrite_dump(exact65(), d, DType::BF16, "bfloat16", [](const std::string&, Tensor<double>&) {});
  const Report r = compare_dirs(exact65(), d, with_model());
  EXPECT_EQ(r.verdict, Verdict::pass) << terminal_summary(r);
  int fitted = 0;
  for (const auto& t : r.tensors) {
    fitted += int(t.part_scales.size());
    EXPECT_EQ(worst_part(t.part_scales, 0.0039, kPartScaleZ), nullptr) << t.name;
  }
  EXPECT_GT(fitted, 6);  // 3 heads × 3 layers and the routed experts of 2 layers were fitted
}
