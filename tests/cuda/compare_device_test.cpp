// compare --model --device cuda against --device cpu (the ground truth) on the committed compare
// cases: the HF transformers dumps of fixtures/tiny-hy3 and fixtures/tiny-mt2 (honest f64 / f32 /
// bf16, and every planted bug under bugs/) against the reference's exact dump, the generated
// fixtures' engine examples, and the Hunyuan v1 bug cases of tests/compare/hunyuan_v1_bugs_test.cpp
// (an fp32 engine on fixtures/gen-tiny-hunyuan-large with q/k norms before RoPE, or with Tencent's
// top-1 weight renormalised; and the honest one).
//
// Required: the same verdict, error line, first divergence and first total divergence; the same
// tensors with the same verdicts and judged_on; every local error agreeing to a relative 1e-6
// (floor 1e-7 under the denominator, for f64 targets whose local error is round-off; both replays
// compute the same formulas in double, only the summation order differs).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <filesystem>

#include "compare/compare.h"
#include "reference/model.h"
#include "tests/compare/compare_helpers.h"
#include "tests/cuda/cuda_test_util.h"

namespace hyoracle::test {
namespace {

using compare::CompareOptions;
using compare::Report;

std::string fixture(const std::string& name) { return std::string(HYORACLE_SOURCE_DIR) + "/fixtures/" + name; }
std::string first(const Report& r) { return r.first_divergence ? r.first_divergence->tensor : "(none)"; }
std::string first_total(const Report& r) { return r.first_total_divergence ? r.first_total_divergence->tensor : "(none)"; }

// The reference's exact dump of a fixture on `tokens` with `generate` greedy steps, made once.
std::string exact_dump(const std::string& name, const std::vector<int64_t>& tokens, int64_t generate) {
  static std::map<std::string, std::string> made;
  if (made.count(name)) return made[name];
  const std::string out = hyoracle::testing::temp_dir("device_exact_" + name);
  hyoracle::testing::reference_dump<double>(Checkpoint(fixture(name)), tokens, Precision::exact, out, DType::F64, "float64",
                                            generate);
  return made[name] = out;
}

// Compares baseline and target with the CPU and the CUDA replay; expects the same judgement.
// Returns the CPU report.
Report expect_same(const std::string& what, const std::string& model, const std::string& baseline, const std::string& target,
                   double* worst) {
  CompareOptions o;
  o.model_dir = model;
  const Report c = compare::compare_dirs(baseline, target, o);
  o.device = "cuda";
  const Report g = compare::compare_dirs(baseline, target, o);
  EXPECT_EQ(c.error, "") << what;
  EXPECT_TRUE(c.teacher_forced) << what;
  EXPECT_EQ(compare::verdict_name(g.verdict), compare::verdict_name(c.verdict)) << what;
  EXPECT_EQ(g.error, c.error) << what;
  EXPECT_EQ(first(g), first(c)) << what;
  EXPECT_EQ(first_total(g), first_total(c)) << what;
  EXPECT_EQ(g.logits.first_token_divergence, c.logits.first_token_divergence) << what;
  EXPECT_EQ(g.routing.size(), c.routing.size()) << what;
  for (size_t i = 0; i < std::min(g.routing.size(), c.routing.size()); ++i)
    EXPECT_EQ(g.routing[i].forced_mismatches, c.routing[i].forced_mismatches) << what << " routing " << i;
  EXPECT_EQ(g.tensors.size(), c.tensors.size()) << what;
  double w = 0;
  int64_t locals = 0;
  for (size_t i = 0; i < std::min(g.tensors.size(), c.tensors.size()); ++i) {
    const auto& a = c.tensors[i];
    const auto& b = g.tensors[i];
    EXPECT_EQ(b.name, a.name) << what;
    if (b.name != a.name) break;
    EXPECT_EQ(compare::verdict_name(b.verdict), compare::verdict_name(a.verdict)) << what << " " << a.name;
    EXPECT_EQ(b.judged_on, a.judged_on) << what << " " << a.name;
    EXPECT_EQ(b.local.has_value(), a.local.has_value()) << what << " " << a.name;
    if (!a.local || !b.local) continue;
    ++locals;
    const double x = a.local->rel_l2, y = b.local->rel_l2;
    // Relative, with a floor of 1e-7 under the denominator: an f64 target's local error is itself
    // round-off (~1e-16), where the two replays' own difference (~1e-15) is all there is.
    const double rel = x == y ? 0.0 : std::fabs(x - y) / std::max({std::fabs(x), std::fabs(y), 1e-7});
    w = std::max(w, rel);
    EXPECT_LE(rel, 1e-6) << what << " " << a.name << ": local rel-L2 cpu " << x << " cuda " << y;
  }
  EXPECT_GT(locals, 0) << what;
  std::printf("  %-44s %-4s first %-32s %3zu tensors, local rel diff <= %.2e\n", what.c_str(),
              compare::verdict_name(c.verdict).c_str(), first(c).c_str(), c.tensors.size(), w);
  *worst = std::max(*worst, w);
  return c;
}

class CompareDevice : public CudaTest {};

TEST_F(CompareDevice, HfFixturesHonestAndPlantedBugsJudgedAlike) {
  double worst = 0;
  for (const std::string name : {"tiny-hy3", "tiny-mt2"}) {
    const std::string fx = fixture(name);
    if (!std::filesystem::exists(fx + "/golden/hf-f64")) GTEST_SKIP() << "fixtures/" << name << "/golden not present";
    const Dump golden(fx + "/golden/hf-f64");
    const int64_t n = golden.has("generate.tokens") ? golden.info("generate.tokens").shape[0] : 0;
    const std::string base = exact_dump(name, golden.token_ids(), n);
    for (const std::string g : {"hf-f64", "hf-f32", "hf-bf16"}) {
      const Report r = expect_same(name + " " + g, fx, base, fx + "/golden/" + g, &worst);
      EXPECT_EQ(r.verdict, compare::Verdict::pass) << name << " " << g;
    }
    int bugs = 0;
    for (const auto& e : std::filesystem::directory_iterator(fx + "/bugs"))
      if (e.is_directory()) {
        const Report r = expect_same(name + " bug " + e.path().filename().string(), fx, base, e.path().string(), &worst);
        EXPECT_EQ(r.verdict, compare::Verdict::fail) << e.path();
        ++bugs;
      }
    EXPECT_GE(bugs, 4) << name;
  }
  std::printf("  worst local rel-L2 difference cuda vs cpu: %.3e\n", worst);
}

TEST_F(CompareDevice, GeneratedFixturesEngineExamplesJudgedAlike) {
  double worst = 0;
  int cases = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(HYORACLE_SOURCE_DIR) + "/fixtures")) {
    const std::string fx = e.path().string();
    if (!std::filesystem::exists(fx + "/engine-example/manifest.json")) continue;
    expect_same(e.path().filename().string() + " engine-example", fx, fx + "/golden/reference-exact", fx + "/engine-example",
                &worst);
    ++cases;
  }
  if (cases == 0) GTEST_SKIP() << "no fixtures/*/engine-example";
}

// tests/compare/hunyuan_v1_bugs_test.cpp's engines: the reference in fp32 with one thing done the
// way a buggy port would (a config switch), on the committed gen-tiny-hunyuan-large checkpoint.
TEST_F(CompareDevice, HunyuanV1BugCasesJudgedAlike) {
  const std::string fx = fixture("gen-tiny-hunyuan-large");
  if (!std::filesystem::exists(fx + "/golden/reference-exact")) GTEST_SKIP() << "fixtures/gen-tiny-hunyuan-large not present";
  const Dump golden(fx + "/golden/reference-exact");
  const std::vector<int64_t> tokens = golden.token_ids();
  const Checkpoint ck(fx);
  double worst = 0;
  for (const std::string bug : {"none", "norm-before-rope", "top1-renormalised"}) {
    LoadOptions lo;
    lo.resident_experts = false;
    ModelWeights<float> m = load_model<float>(ck, lo);
    if (bug == "norm-before-rope") m.config.qk_norm_after_rope = false;
    if (bug == "top1-renormalised") m.config.route_norm = true;
    DumpWriter w(DType::F32);
    KVCache<float> cache = make_cache<float>(m.config);
    forward(m, tokens, cache, Numerics{Precision::fp32, 1}, Recorder{&w, ""});
    DumpProducer prod;
    prod.dtype = "float32";
    prod.precision = "fp32";
    const std::string dir = hyoracle::testing::temp_dir("device_hunyuan_" + bug);
    std::filesystem::remove_all(dir);
    w.write(dir, make_manifest(prod, ck.config(), ck.dir(), tokens));
    const Report r = expect_same("gen-tiny-hunyuan-large " + bug, fx, exact_dump("gen-tiny-hunyuan-large", tokens, 0), dir, &worst);
    EXPECT_EQ(r.verdict, bug == "none" ? compare::Verdict::pass : compare::Verdict::fail) << bug;
  }
}

}  // namespace
}  // namespace hyoracle::test
