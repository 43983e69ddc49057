// The dataflow table's lookups by canonical name and its columns (reference/dataflow.h). The
// expected values are the model's facts written out by hand (docs/model.md): which tensors the
// router computes in fp32, how dumps store ids, which tensors forward hooks on modules give.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "reference/dataflow.h"

namespace hyoracle::dataflow {
namespace {

TEST(Dataflow, StepOfNameStripsTheStepAndLayerPrefixes) {
  ASSERT_NE(step_of_name("layers.3.moe.scores"), nullptr);
  EXPECT_EQ(step_of_name("layers.3.moe.scores")->name, "moe.scores");
  ASSERT_NE(step_of_name("steps.12.layers.0.attn.q_rope"), nullptr);
  EXPECT_EQ(step_of_name("steps.12.layers.0.attn.q_rope")->op, "rope");
  EXPECT_EQ(step_of_name("logits"), nullptr);
  EXPECT_EQ(step_of_name("steps.1.logits"), nullptr);
  EXPECT_EQ(step_of_name("layers.1.custom"), nullptr);
  EXPECT_EQ(step_of_name("layers.1"), nullptr);
  EXPECT_EQ(step_of_name("steps.1"), nullptr);
  EXPECT_EQ(step_of_name("xlayers.1.out"), nullptr);
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
  std::set<std::string> wide;
  for (const Step& s : layer_steps())
    if (s.wide) wide.insert(s.name);
  EXPECT_EQ(wide, (std::set<std::string>{"moe.router_logits", "moe.scores", "moe.topk_weights"}));
}

TEST(Dataflow, ModuleColumnIsWhatModuleHooksGive) {
  // Hooks on modules see each norm, the attention block's output, the router's logits and its
  // top-k result, the experts, the shared MLP, the MLP block and the layer; not RoPE, q/k/v
  // projections, the attention context, the residual midpoint or the sigmoid scores.
  std::set<std::string> module;
  for (const Step& s : layer_steps())
    if (s.module) module.insert(s.name);
  EXPECT_EQ(module, (std::set<std::string>{"input_norm", "attn.q_norm", "attn.k_norm", "attn.out", "post_norm",
                                           "moe.router_logits", "moe.topk_ids", "moe.topk_weights", "moe.routed_out",
                                           "moe.shared_out", "mlp.out", "out"}));
  for (const ModelStep& m : model_steps()) EXPECT_TRUE(m.module) << m.name;
}

}  // namespace
}  // namespace hyoracle::dataflow
