// compare/teacher_forcing: a replay re-runs a step of the reference on the target's own inputs.
// On an exact (float64) reference dump of a committed fixture, the target's inputs are the
// reference's own, so every replayed tensor must equal the dump's tensor bit for bit, read the
// inputs the dataflow table names and compose nothing; with intermediates removed from the dump
// the replay recomputes them and still lands on the same bits. The two measured quantities
// (dot-product conditioning, attention rounding gain) are checked on inputs small enough to work
// out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "compare/teacher_forcing.h"
#include "io/checkpoint.h"
#include "io/dump.h"
#include "reference/dataflow.h"
#include "reference/names.h"
#include "tests/compare/compare_helpers.h"

using namespace hyoracle;
using namespace hyoracle::compare;

namespace {

const std::string kFixture = std::string(HYORACLE_SOURCE_DIR) + "/fixtures/tiny-mt2";
const std::vector<int64_t> kTokens = {3, 141, 59, 26, 5, 35, 89};

std::vector<int64_t> positions(size_t n) {
  std::vector<int64_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = int64_t(i);
  return p;
}

// An exact reference dump of the fixture on kTokens, written once per process.
const std::string& exact_dump() {
  static const std::string dir = [] {
    const std::string d = hyoracle::testing::temp_dir("teacher_forcing_exact");
    hyoracle::testing::reference_dump<double>(Checkpoint(kFixture), kTokens, Precision::exact, d, DType::F64, "float64");
    return d;
  }();
  return dir;
}

// Copies dump `src` to `dst` without the tensors in `drop` (values and manifest unchanged).
void copy_without(const std::string& src, const std::string& dst, const std::set<std::string>& drop) {
  const Dump in(src);
  DumpWriter w(DType::F64);
  for (const std::string& n : in.names()) {
    if (drop.count(n)) continue;
    const DType d = in.info(n).dtype;
    if (d == DType::I32 || d == DType::I64) w.put_ints(n, in.info(n).shape, in.read_ints(n), d);
    else w.put(n, in.read(n));
  }
  nlohmann::ordered_json m = nlohmann::ordered_json::parse(in.manifest().dump());
  m.erase("files");
  w.write(dst, m);
}

}  // namespace

TEST(TeacherForcing, ReplayOfAnExactDumpEqualsItsOwnTensorsBitForBit) {
  const Dump target(exact_dump());
  TeacherForcing tf(kFixture, target, positions(kTokens.size()), 2);
  const int64_t layers = tf.config().num_hidden_layers;
  int64_t replayed = 0;
  for (const std::string& n : target.names()) {
    const std::optional<Replay> r = tf.replay(n);
    if (!r) continue;
    ++replayed;
    const Tensor<double> want = target.read(n);
    EXPECT_EQ(r->value.shape, want.shape) << n;
    EXPECT_TRUE(r->value.data == want.data) << n << " differs from the dump's own tensor";
    EXPECT_TRUE(r->composed.empty()) << n << ": the dump holds every input";
    EXPECT_EQ(r->composed_noise, 0.0) << n;
  }
  // Every activation row of every layer, embed, final_norm and logits. In each layer the rows
  // are the dataflow table's activation rows of the layer's kind (a layer is MoE when it dumped
  // router scores).
  int64_t want_replays = 3;
  for (int64_t L = 0; L < layers; ++L) {
    const bool moe = target.has(names::layer(L, "moe.scores"));
    for (const dataflow::Step& s : dataflow::layer_steps(Family::hy_v3)) {
      const bool applies = s.applies == dataflow::Applies::all || (s.applies == dataflow::Applies::moe) == moe;
      if (applies && s.role == dataflow::Role::activation && target.has(names::layer(L, s.name))) ++want_replays;
    }
  }
  EXPECT_EQ(replayed, want_replays);
  // tiny-mt2: layer 0 dense (13 attention and residual rows + mlp.out), layers 1.. MoE (the same
  // 13 + router_logits, scores, topk_weights, routed_out, shared_out, mlp.out).
  EXPECT_EQ(replayed, 3 + 14 + 19 * (layers - 1));
}

TEST(TeacherForcing, ReplayReadsTheInputsTheDataflowTableNames) {
  const Dump target(exact_dump());
  TeacherForcing tf(kFixture, target, positions(kTokens.size()), 1);
  const auto read = [&](const std::string& n) {
    const std::optional<Replay> r = tf.replay(n);
    EXPECT_TRUE(r.has_value()) << n;
    return r ? r->read : std::vector<std::string>{};
  };
  EXPECT_EQ(read("layers.0.input_norm"), (std::vector<std::string>{"embed"}));
  EXPECT_EQ(read("layers.2.resid_mid"), (std::vector<std::string>{"layers.1.out", "layers.2.attn.out"}));
  EXPECT_EQ(read("layers.2.attn.context"),
            (std::vector<std::string>{"layers.2.attn.q_rope", "layers.2.attn.k_rope", "layers.2.attn.v"}));
  EXPECT_EQ(read("layers.2.mlp.out"), (std::vector<std::string>{"layers.2.moe.routed_out", "layers.2.moe.shared_out"}));
  EXPECT_EQ(read("logits"), (std::vector<std::string>{"final_norm"}));
  // Integer ids are judged as routing, not replayed.
  EXPECT_FALSE(tf.replay("layers.2.moe.topk_ids").has_value());
}

TEST(TeacherForcing, MissingAttentionIntermediatesAreComposedAndGiveTheSameBits) {
  // Hooks on modules give no RoPE outputs and no attention context: without them attn.out is
  // replayed from the target's q_norm, k_norm and v, RoPE and attention run by the reference.
  const std::string full = exact_dump();
  const std::string cut = hyoracle::testing::temp_dir("teacher_forcing_cut");
  const std::set<std::string> drop = {"layers.1.attn.q_rope", "layers.1.attn.k_rope", "layers.1.attn.context"};
  copy_without(full, cut, drop);
  const Dump whole(full), target(cut);
  TeacherForcing tf(kFixture, target, positions(kTokens.size()), 2);
  const std::optional<Replay> r = tf.replay("layers.1.attn.out");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->value.data == whole.read("layers.1.attn.out").data);
  EXPECT_EQ(std::set<std::string>(r->composed.begin(), r->composed.end()), drop);
  const std::set<std::string> read(r->read.begin(), r->read.end());
  EXPECT_EQ(read, (std::set<std::string>{"layers.1.attn.q_norm", "layers.1.attn.k_norm", "layers.1.attn.v"}));
  // The recomputed intermediates carry a simulated honest rounding of the target (float64 here):
  // nonzero, and of the order of float64's unit roundoff.
  EXPECT_GT(r->composed_noise, 0.0);
  EXPECT_LT(r->composed_noise, 1e-13);
  EXPECT_EQ(r->composed_noise_tokens.size(), kTokens.size());
  // A step whose inputs were all dumped composes nothing.
  const std::optional<Replay> q = tf.replay("layers.1.attn.q_norm");
  ASSERT_TRUE(q.has_value());
  EXPECT_TRUE(q->composed.empty());
  EXPECT_TRUE(q->value.data == whole.read("layers.1.attn.q_norm").data);
}

TEST(TeacherForcing, DotConditioningOfHandWorkedProducts) {
  // Same signs everywhere: |a|·|W|ᵀ = a·Wᵀ, κ = 1.
  EXPECT_NEAR(dot_conditioning(Tensor<double>({1, 2}, {1, 2}), Tensor<double>({2, 2}, {3, 4, 0.5, 0.25}), 1), 1.0, 1e-15);
  // a = [1, 1], W = [1, −0.5]: a·Wᵀ = 0.5, |a|·|W|ᵀ = 1.5, κ = 3.
  EXPECT_NEAR(dot_conditioning(Tensor<double>({1, 2}, {1, 1}), Tensor<double>({1, 2}, {1, -0.5}), 1), 3.0, 1e-15);
  // Two rows: a = [[1, 1], [2, 0]], W = [[1, −0.5], [0, 1]]: a·Wᵀ = [[0.5, 1], [2, 0]],
  // |a|·|W|ᵀ = [[1.5, 1], [2, 0]]: κ² = (2.25 + 1 + 4) / (0.25 + 1 + 4).
  const Tensor<double> a({2, 2}, {1, 1, 2, 0}), w({2, 2}, {1, -0.5, 0, 1});
  for (int threads : {1, 2}) EXPECT_NEAR(dot_conditioning(a, w, threads), std::sqrt(7.25 / 5.25), 1e-15);
}

TEST(TeacherForcing, AttentionRoundingGainOfHandWorkedCases) {
  // g² = 1 + [2·Σ P²s²‖v_j − ctx_i‖² + Σ P²‖v_j‖²] / Σ‖ctx_i‖².
  // One key: P = 1, ctx = v, so v − ctx = 0 and g² = 1 + ‖v‖²/‖v‖² = 2, in every head.
  const int64_t nq = 2, nkv = 1, d = 4;
  const Tensor<double> q({1, nq, d}, {0.3, -0.2, 0.5, 1.0, -0.7, 0.1, 0.4, 0.2});
  const Tensor<double> k({1, nkv, d}, {0.2, 0.9, -0.3, 0.6}), v({1, nkv, d}, {1.5, -2.0, 0.25, 0.75});
  EXPECT_NEAR(attention_rounding_gain(q, k, v, {0}, {0}), std::sqrt(2.0), 1e-14);
  // Two keys with the same value and q = 0: scores 0, P = 1/2 each, ctx = v:
  // g² = 1 + (1/4 + 1/4)·‖v‖²/‖v‖² = 1.5.
  const Tensor<double> q0({1, nq, d}), k2({2, nkv, d}, {0.2, 0.9, -0.3, 0.6, -1.0, 0.5, 0.5, 2.0});
  const Tensor<double> v2({2, nkv, d}, {1.5, -2.0, 0.25, 0.75, 1.5, -2.0, 0.25, 0.75});
  EXPECT_NEAR(attention_rounding_gain(q0, k2, v2, {1}, {0, 1}), std::sqrt(1.5), 1e-14);
  // A key in the future is invisible: the query at position 0 sees only key 0, as in the first case.
  EXPECT_NEAR(attention_rounding_gain(q0, k2, v2, {0}, {0, 1}), std::sqrt(2.0), 1e-14);
}
