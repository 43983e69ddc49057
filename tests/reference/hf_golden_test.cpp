// The whole model against the committed HF transformers goldens (fixtures/tiny-*/golden/):
//   exact mode vs hf-f64 (HF in float64 with its fp32 casts patched): every tensor within
//     rel-L2 1e-10, every routing decision identical, the same greedy tokens;
//   fp32 mode vs hf-f32 (stock HF float32): every layers.L.out and the logits within 1e-5,
//     the same routing and greedy tokens.
// The goldens were made by tools/make_hf_goldens.py on an H100 (see fixtures/README.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "io/checkpoint.h"
#include "io/dump.h"
#include "tests/common/map_sink.h"
#include "reference/model.h"
#include "reference/names.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

std::string fixture(const std::string& name) { return std::string(HYORACLE_SOURCE_DIR) + "/fixtures/" + name; }

// Runs prefill + greedy generation of n tokens with decode steps recorded as steps.S.*.
template <class S>
test::MapSink run_reference(const std::string& model_dir, const std::vector<int64_t>& ids, int64_t n, Precision p) {
  Checkpoint ck(model_dir);
  const ModelWeights<S> m = load_model<S>(ck);
  test::MapSink sink;
  const Numerics num{p, 2};
  KVCache<S> cache = make_cache<S>(m.config);
  const Tensor<S> logits = forward(m, ids, cache, num, Recorder{&sink, ""});
  const Generation<S> g = generate_greedy(m, logits, cache, n, num, &sink);
  sink.put_ints(names::kGenerateTokens, {n}, g.tokens, DType::I64);
  sink.put(names::kGenerateLogits, g.logits);
  return sink;
}

struct Agreement {
  int compared = 0;
  double worst = 0;
  std::string worst_name;
};

// Compares every float tensor present on both sides whose name matches `keep`; ints exactly.
Agreement compare_all(const test::MapSink& ours, const Dump& golden, double limit, bool (*keep)(const std::string&)) {
  Agreement a;
  for (const std::string& name : golden.names()) {
    if (!keep(name)) continue;
    if (ours.ints.count(name)) {
      EXPECT_EQ(ours.ints.at(name), golden.read_ints(name)) << name;
      ++a.compared;
      continue;
    }
    if (!ours.tensors.count(name)) {
      ADD_FAILURE() << "reference did not produce " << name;
      continue;
    }
    const Tensor<double>& x = ours.tensors.at(name);
    const Tensor<double> g = golden.read(name);
    EXPECT_EQ(x.numel(), g.numel()) << name;
    const double err = test::rel_l2(x.data, g.data);
    EXPECT_LE(err, limit) << name;
    if (err > a.worst) {
      a.worst = err;
      a.worst_name = name;
    }
    ++a.compared;
  }
  return a;
}

bool everything(const std::string& name) { return name.find("topk_margin") == std::string::npos; }
bool ends_with(const std::string& n, const std::string& s) {
  return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
}
// layers.L.out (also of decode steps), logits, routing decisions and generated tokens.
bool outs_logits_routing(const std::string& n) {
  const bool layer_out = ends_with(n, ".out") && !ends_with(n, "attn.out") && !ends_with(n, "mlp.out");
  return layer_out || ends_with(n, "logits") || ends_with(n, "topk_ids") || n == names::kGenerateTokens;
}

int64_t generate_n(const Dump& d) { return int64_t(d.read_ints(names::kGenerateTokens).size()); }

class HfGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(HfGolden, ExactModeMatchesHfFloat64) {
  const Dump golden(fixture(GetParam()) + "/golden/hf-f64");
  const auto ids = golden.token_ids();
  const test::MapSink ours = run_reference<double>(fixture(GetParam()), ids, generate_n(golden), Precision::exact);
  const Agreement a = compare_all(ours, golden, 1e-10, everything);
  EXPECT_GT(a.compared, 100);
  std::printf("[%s exact vs hf-f64] %d tensors, worst rel-L2 %.3g (%s)\n", GetParam().c_str(), a.compared, a.worst,
              a.worst_name.c_str());
}

TEST_P(HfGolden, Fp32ModeMatchesHfFloat32) {
  const Dump golden(fixture(GetParam()) + "/golden/hf-f32");
  const auto ids = golden.token_ids();
  const test::MapSink ours = run_reference<float>(fixture(GetParam()), ids, generate_n(golden), Precision::fp32);
  const Agreement a = compare_all(ours, golden, 1e-5, outs_logits_routing);
  EXPECT_GT(a.compared, 10);
  std::printf("[%s fp32 vs hf-f32] %d tensors, worst rel-L2 %.3g (%s)\n", GetParam().c_str(), a.compared, a.worst,
              a.worst_name.c_str());
}

TEST_P(HfGolden, BfloatGreedyTokensAgreeWithExact) {
  // Not a tolerance check: the bf16 goldens' generated tokens equal ours because the fixtures
  // were built with clear top-1 margins (fixtures/*/golden/margins.json).
  const Dump golden(fixture(GetParam()) + "/golden/hf-bf16");
  const test::MapSink ours = run_reference<double>(fixture(GetParam()), golden.token_ids(), generate_n(golden), Precision::exact);
  EXPECT_EQ(ours.ints.at(names::kGenerateTokens), golden.read_ints(names::kGenerateTokens));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfGolden, ::testing::Values("tiny-hy3", "tiny-mt2"),
                         [](const auto& info) { return info.param == "tiny-hy3" ? "Hy3" : "MT2"; });

}  // namespace
}  // namespace hyoracle
