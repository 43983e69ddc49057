// The dataflow table's lookups by canonical name and its columns (reference/dataflow.h). The
// expected values are the model's facts written out by hand (docs/model.md): which tensors the
// router computes in fp32, how dumps store ids, which tensors forward hooks on modules give, and
// the Hunyuan v1 family's order and cross-layer inputs (docs/hunyuan_v1.md).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "reference/dataflow.h"

namespace hyoracle::dataflow {
namespace {

TEST(Dataflow, StepOfNameStripsTheStepAndLayerPrefixes) {
  ASSERT_NE(step_of_name(Family::hy_v3, "layers.3.moe.scores"), nullptr);
  EXPECT_EQ(step_of_name(Family::hy_v3, "layers.3.moe.scores")->name, "moe.scores");
  ASSERT_NE(step_of_name(Family::hy_v3, "steps.12.layers.0.attn.q_rope"), nullptr);
  EXPECT_EQ(step_of_name(Family::hy_v3, "steps.12.layers.0.attn.q_rope")->op, "rope");
  EXPECT_EQ(step_of_name(Family::hy_v3, "logits"), nullptr);
  EXPECT_EQ(step_of_name(Family::hy_v3, "steps.1.logits"), nullptr);
  EXPECT_EQ(step_of_name(Family::hy_v3, "layers.1.custom"), nullptr);
  EXPECT_EQ(step_of_name(Family::hy_v3, "layers.1"), nullptr);
  EXPECT_EQ(step_of_name(Family::hy_v3, "steps.1"), nullptr);
  EXPECT_EQ(step_of_name(Family::hy_v3, "xlayers.1.out"), nullptr);
}

TEST(Dataflow, IdsAreStoredAsTheFormatSays) {
  // Expert ids as int32 (DUMP_FORMAT.md), token ids as int64.
  EXPECT_EQ(int_dtype_of("layers.1.moe.topk_ids"), DType::I32);
  EXPECT_EQ(int_dtype_of("steps.7.layers.33.moe.topk_ids"), DType::I32);
  EXPECT_EQ(int_dtype_of("input_ids"), DType::I64);
  EXPECT_EQ(int_dtype_of("steps.2.input_ids"), DType::I64);
  EXPECT_EQ(int_dtype_of("generate.tokens"), DType::I64);
  EXPECT_EQ(int_dtype_of("something.else"), DType::I64);
  // A name that merely contains "topk_ids" is not the router's ids.
  EXPECT_EQ(int_dtype_of("layers.1.moe.topk_ids_extra"), DType::I64);
}

TEST(Dataflow, OnlyTheRouterIsWide) {
  for (Family f : {Family::hy_v3, Family::hunyuan_v1}) {
    std::set<std::string> wide;
    for (const Step& s : layer_steps(f))
      if (s.wide) wide.insert(s.name);
    EXPECT_EQ(wide, (std::set<std::string>{"moe.router_logits", "moe.scores", "moe.topk_weights"})) << family_name(f);
  }
}

TEST(Dataflow, TheIntsColumnIsTheSameInEveryFamily) {
  // int_dtype_of reads one table for every family.
  for (const Step& s : layer_steps(Family::hunyuan_v1))
    if (s.role == Role::ids) EXPECT_EQ(int_dtype_of("layers.0." + s.name), s.ints) << s.name;
}

// Hunyuan v1 (docs/hunyuan_v1.md): RoPE before the q/k norms, the norms feed attention, a cross
// layer has no attn.k / attn.v of its own and reads its KV source's, the router is a softmax.
TEST(Dataflow, HunyuanV1RotatesBeforeNormalisingAndCrossLayersReadTheirSource) {
  const Family h = Family::hunyuan_v1;
  const LayerKind self_moe{true, false}, cross_moe{true, true};
  ASSERT_NE(find_step(h, "attn.q_rope", self_moe), nullptr);
  EXPECT_EQ(find_step(h, "attn.q_rope", self_moe)->inputs, (std::vector<std::string>{"attn.q"}));
  EXPECT_EQ(find_step(h, "attn.q_norm", self_moe)->inputs, (std::vector<std::string>{"attn.q_rope"}));
  EXPECT_EQ(find_step(h, "attn.k_norm", cross_moe)->inputs, (std::vector<std::string>{"attn.k_rope"}));
  EXPECT_EQ(find_step(h, "attn.k_rope", cross_moe)->inputs, (std::vector<std::string>{"SRC.attn.k"}));
  EXPECT_EQ(find_step(h, "attn.k_rope", self_moe)->inputs, (std::vector<std::string>{"attn.k"}));
  EXPECT_EQ(find_step(h, "attn.context", cross_moe)->inputs,
            (std::vector<std::string>{"attn.q_norm", "attn.k_norm", "SRC.attn.v"}));
  EXPECT_EQ(find_step(h, "attn.k", cross_moe), nullptr);
  EXPECT_EQ(find_step(h, "attn.v", cross_moe), nullptr);
  EXPECT_EQ(find_step(h, "moe.scores", self_moe)->op, "softmax");
  EXPECT_EQ(find_step(Family::hy_v3, "moe.scores", self_moe)->op, "sigmoid");
  EXPECT_STREQ(cached_key_step(h), "attn.k_norm");
  EXPECT_STREQ(cached_key_step(Family::hy_v3), "attn.k_rope");
  // Every input of every row is a row of the same layer kind that comes earlier, PREV.out, or a
  // SRC. row (which the source layer, a self layer, has).
  for (bool moe : {false, true})
    for (bool cross : {false, true}) {
      const LayerKind k{moe, cross};
      std::set<std::string> seen;
      for (const Step& s : layer_steps(h)) {
        if (!applies_to(s.applies, k)) continue;
        for (const std::string& in : s.inputs) {
          if (in == kPrevOut) continue;
          if (in.rfind(kKvSource, 0) == 0) {
            EXPECT_TRUE(cross) << s.name;
            EXPECT_NE(find_step(h, in.substr(4), LayerKind{moe, false}), nullptr) << in;
            continue;
          }
          EXPECT_TRUE(seen.count(in)) << s.name << " reads " << in << " before it is computed";
        }
        seen.insert(s.name);
      }
    }
}

TEST(Dataflow, ModuleColumnIsWhatModuleHooksGive) {
  // Hooks on modules see each norm, the attention block's output, the router's logits and its
  // top-k result, the experts, the shared MLP, the MLP block and the layer; not RoPE, q/k/v
  // projections, the attention context, the residual midpoint or the sigmoid scores.
  for (Family f : {Family::hy_v3, Family::hunyuan_v1}) {
    std::set<std::string> module;
    for (const Step& s : layer_steps(f))
      if (s.module) module.insert(s.name);
    EXPECT_EQ(module, (std::set<std::string>{"input_norm", "attn.q_norm", "attn.k_norm", "attn.out", "post_norm",
                                             "moe.router_logits", "moe.topk_ids", "moe.topk_weights", "moe.routed_out",
                                             "moe.shared_out", "mlp.out", "out"}))
        << family_name(f);
  }
  for (const ModelStep& m : model_steps()) EXPECT_TRUE(m.module) << m.name;
}

}  // namespace
}  // namespace hyoracle::dataflow
