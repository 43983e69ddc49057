// compare/graph: execution order and step inputs of canonical names. Every expected list is
// written out by hand from the dataflow table in reference/dataflow.h (one row per layer tensor,
// in execution order, with its inputs) and the order in compare/graph.h, not built from
// names::layer_suffixes(family) or the table itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "compare/graph.h"

using namespace hyoracle::compare;

namespace {

const ModelGraph kHy{};  // hy_v3, every layer owns its K/V

using Names = std::vector<std::string>;

// `names` shuffled by a fixed seed, so the result cannot lean on the input order.
Names shuffled(Names names, unsigned seed) {
  std::mt19937 g(seed);
  std::shuffle(names.begin(), names.end(), g);
  return names;
}

// The prefill of a model of two layers, layer 0 dense and layer 1 MoE, in execution order.
Names dense_then_moe() {
  return {"input_ids", "embed",
          // layer 0, dense: attention, then the dense MLP.
          "layers.0.input_norm", "layers.0.attn.q", "layers.0.attn.k", "layers.0.attn.v", "layers.0.attn.q_norm",
          "layers.0.attn.k_norm", "layers.0.attn.q_rope", "layers.0.attn.k_rope", "layers.0.attn.context",
          "layers.0.attn.out", "layers.0.resid_mid", "layers.0.post_norm", "layers.0.mlp.out", "layers.0.out",
          // layer 1, MoE: attention, router, experts, shared expert.
          "layers.1.input_norm", "layers.1.attn.q", "layers.1.attn.k", "layers.1.attn.v", "layers.1.attn.q_norm",
          "layers.1.attn.k_norm", "layers.1.attn.q_rope", "layers.1.attn.k_rope", "layers.1.attn.context",
          "layers.1.attn.out", "layers.1.resid_mid", "layers.1.post_norm", "layers.1.moe.router_logits",
          "layers.1.moe.scores", "layers.1.moe.topk_ids", "layers.1.moe.topk_weights", "layers.1.moe.topk_margin",
          "layers.1.moe.routed_out", "layers.1.moe.shared_out", "layers.1.mlp.out", "layers.1.out",
          // after the layers
          "final_norm", "logits"};
}

}  // namespace

TEST(Graph, ExecutionOrderOfADenseAndAnMoeLayer) {
  const Names want = dense_then_moe();
  for (unsigned seed : {1u, 2u, 3u}) EXPECT_EQ(execution_order(kHy, shuffled(want, seed)), want) << "seed " << seed;
  Names reversed = want;
  std::reverse(reversed.begin(), reversed.end());
  EXPECT_EQ(execution_order(kHy, reversed), want);
  for (const std::string& n : want) EXPECT_TRUE(order_key(kHy, n).known) << n;
}

TEST(Graph, LayersSortByNumberNotByText) {
  const Names want = {"embed", "layers.2.out", "layers.9.input_norm", "layers.9.out", "layers.10.input_norm",
                      "layers.10.out", "layers.11.out", "final_norm"};
  EXPECT_EQ(execution_order(kHy, shuffled(want, 7)), want);
}

TEST(Graph, DecodeStepsFollowThePrefillAndGenerationComesLast) {
  const Names want = {"input_ids",
                      "embed",
                      "layers.0.out",
                      "layers.1.out",
                      "final_norm",
                      "logits",
                      "steps.1.input_ids",
                      "steps.1.embed",
                      "steps.1.layers.0.attn.context",
                      "steps.1.layers.1.out",
                      "steps.1.logits",
                      "steps.2.embed",
                      "steps.2.layers.0.out",
                      "steps.2.logits",
                      "steps.10.embed",
                      "steps.10.logits",
                      "generate.tokens",
                      "generate.logits"};
  for (unsigned seed : {4u, 5u}) EXPECT_EQ(execution_order(kHy, shuffled(want, seed)), want) << "seed " << seed;
  EXPECT_LT(order_key(kHy, "steps.10.embed"), order_key(kHy, "generate.tokens"));
  EXPECT_LT(order_key(kHy, "logits"), order_key(kHy, "steps.1.input_ids"));
}

TEST(Graph, KvCacheAfterEveryStepAndUnknownNamesAfterTheirStepsKnownOnes) {
  // The KV cache is the state after the whole run (its rows from T on are written by the decode
  // steps): after the prefill's logits and after every decode step, before generate.*; within
  // it layer by layer, k before v. Names the table does not know come after the known names of
  // their step, alphabetically.
  const Names want = {"embed",        "layers.0.out",    "layers.1.out",  "final_norm",
                      "logits",       "aux.loss",        "layers.0.custom", "zeta",
                      "steps.1.logits", "steps.1.zeta",  "layers.0.kv.k", "layers.0.kv.v",
                      "layers.1.kv.k", "layers.1.kv.v",  "generate.tokens"};
  for (unsigned seed : {8u, 9u}) EXPECT_EQ(execution_order(kHy, shuffled(want, seed)), want) << "seed " << seed;
  EXPECT_LT(order_key(kHy, "steps.1000.logits"), order_key(kHy, "layers.0.kv.k"));
  EXPECT_TRUE(order_key(kHy, "layers.1.kv.v").known);
  EXPECT_FALSE(order_key(kHy, "aux.loss").known);
  EXPECT_FALSE(order_key(kHy, "layers.0.custom").known);
  EXPECT_FALSE(order_key(kHy, "zeta").known);
}

TEST(Graph, StepInputsAreTheTableRowsInputs) {
  // Attention rows, the same in every layer; PREV.out is the embedding for layer 0.
  EXPECT_EQ(step_inputs(kHy, "layers.0.input_norm", false), (Names{"embed"}));
  EXPECT_EQ(step_inputs(kHy, "layers.3.input_norm", true), (Names{"layers.2.out"}));
  EXPECT_EQ(step_inputs(kHy, "layers.2.attn.q", true), (Names{"layers.2.input_norm"}));
  EXPECT_EQ(step_inputs(kHy, "layers.2.attn.v", false), (Names{"layers.2.input_norm"}));
  EXPECT_EQ(step_inputs(kHy, "layers.2.attn.q_norm", true), (Names{"layers.2.attn.q"}));
  EXPECT_EQ(step_inputs(kHy, "layers.2.attn.k_rope", true), (Names{"layers.2.attn.k_norm"}));
  EXPECT_EQ(step_inputs(kHy, "layers.2.attn.context", false),
            (Names{"layers.2.attn.q_rope", "layers.2.attn.k_rope", "layers.2.attn.v"}));
  EXPECT_EQ(step_inputs(kHy, "layers.2.attn.out", true), (Names{"layers.2.attn.context"}));
  EXPECT_EQ(step_inputs(kHy, "layers.0.resid_mid", false), (Names{"embed", "layers.0.attn.out"}));
  EXPECT_EQ(step_inputs(kHy, "layers.2.resid_mid", true), (Names{"layers.1.out", "layers.2.attn.out"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.post_norm", true), (Names{"layers.1.resid_mid"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.out", true), (Names{"layers.1.resid_mid", "layers.1.mlp.out"}));
  // mlp.out: the dense FFN of post_norm, or the sum of routed and shared experts.
  EXPECT_EQ(step_inputs(kHy, "layers.1.mlp.out", false), (Names{"layers.1.post_norm"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.mlp.out", true), (Names{"layers.1.moe.routed_out", "layers.1.moe.shared_out"}));
  // The router and experts of an MoE layer.
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.router_logits", true), (Names{"layers.1.post_norm"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.scores", true), (Names{"layers.1.moe.router_logits"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.topk_ids", true), (Names{"layers.1.moe.scores"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.topk_weights", true), (Names{"layers.1.moe.scores", "layers.1.moe.topk_ids"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.topk_margin", true), (Names{"layers.1.moe.scores"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.routed_out", true),
            (Names{"layers.1.post_norm", "layers.1.moe.topk_ids", "layers.1.moe.topk_weights"}));
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.shared_out", true), (Names{"layers.1.post_norm"}));
  // MoE rows do not exist in a dense layer.
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.router_logits", false), Names{});
  EXPECT_EQ(step_inputs(kHy, "layers.1.moe.routed_out", false), Names{});
  // The KV cache holds the roped keys and the values.
  EXPECT_EQ(step_inputs(kHy, "layers.0.kv.k", true), (Names{"layers.0.attn.k_rope"}));
  EXPECT_EQ(step_inputs(kHy, "layers.0.kv.v", true), (Names{"layers.0.attn.v"}));
  // Outside the layers.
  EXPECT_EQ(step_inputs(kHy, "logits", false), (Names{"final_norm"}));
  EXPECT_EQ(step_inputs(kHy, "embed", false), Names{});
  EXPECT_EQ(step_inputs(kHy, "input_ids", false), Names{});
  EXPECT_EQ(step_inputs(kHy, "layers.0.custom", true), Names{});
}

TEST(Graph, DecodeStepInputsStayInTheirStep) {
  EXPECT_EQ(step_inputs(kHy, "steps.2.layers.0.input_norm", false), (Names{"steps.2.embed"}));
  EXPECT_EQ(step_inputs(kHy, "steps.2.layers.3.resid_mid", true), (Names{"steps.2.layers.2.out", "steps.2.layers.3.attn.out"}));
  EXPECT_EQ(step_inputs(kHy, "steps.12.layers.1.attn.context", true),
            (Names{"steps.12.layers.1.attn.q_rope", "steps.12.layers.1.attn.k_rope", "steps.12.layers.1.attn.v"}));
  EXPECT_EQ(step_inputs(kHy, "steps.3.logits", false), (Names{"steps.3.final_norm"}));
}

// Hunyuan v1 with cross-layer attention, factor 2: layer 3 reads layer 2's raw k and v; its own
// cache holds its normed keys (docs/hunyuan_v1.md). Expected from the family's formulas.
TEST(Graph, HunyuanCrossLayersReadTheirSourceLayer) {
  const ModelGraph g{hyoracle::Family::hunyuan_v1, 2};
  EXPECT_EQ(step_inputs(g, "layers.3.attn.k_rope", true), (Names{"layers.2.attn.k"}));
  EXPECT_EQ(step_inputs(g, "layers.2.attn.k_rope", true), (Names{"layers.2.attn.k"}));
  EXPECT_EQ(step_inputs(g, "layers.3.attn.q_norm", true), (Names{"layers.3.attn.q_rope"}));
  EXPECT_EQ(step_inputs(g, "steps.2.layers.3.attn.context", true),
            (Names{"steps.2.layers.3.attn.q_norm", "steps.2.layers.3.attn.k_norm", "steps.2.layers.2.attn.v"}));
  EXPECT_EQ(step_inputs(g, "layers.3.attn.k", true), Names{});  // a cross layer computes no k
  EXPECT_EQ(step_inputs(g, "layers.3.kv.k", true), (Names{"layers.3.attn.k_norm"}));
  EXPECT_EQ(step_inputs(g, "layers.3.kv.v", true), (Names{"layers.2.attn.v"}));
  // Rotation before the norms in execution order.
  EXPECT_LT(order_key(g, "layers.1.attn.k_rope"), order_key(g, "layers.1.attn.q_norm"));
  EXPECT_LT(order_key(kHy, "layers.1.attn.q_norm"), order_key(kHy, "layers.1.attn.k_rope"));
}
