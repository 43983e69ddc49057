// An FP8 engine that dequantizes a weight wrongly must be named at the first tensor that weight
// computes. The "engine" here is the exact reference run on a copy of the FP8 checkpoint in
// which one scale tensor is changed the way a dequantization bug would read it; the baseline is
// the reference on the checkpoint itself, and compare --model replays from that checkpoint. The
// expected tensor comes from the model's dataflow (which tensor each projection computes), not
// from compare's output.
#include <gtest/gtest.h>

#include <filesystem>

#include "compare/compare.h"
#include "tests/compare/compare_helpers.h"

namespace hyoracle::testing {
namespace {

using compare::CompareOptions;
using compare::Report;

const std::vector<int64_t> kTokens = {5, 77, 3, 190, 42, 11, 250};

CheckpointSpec fp8_spec(QuantKind quant, int64_t b0, int64_t b1) {
  CheckpointSpec s;
  s.seed = 21;
  s.quant = quant;
  s.fp8_block_rows = b0;
  s.fp8_block_cols = b1;
  return s;
}

// The first divergence compare --model names for the engine run on `bug_ckpt`.
std::string first_divergence(const std::string& root, const std::string& ckpt, const std::string& bug_ckpt) {
  reference_dump<double>(Checkpoint(ckpt), kTokens, Precision::exact, root + "/ref", DType::F64, "float64");
  reference_dump<double>(Checkpoint(bug_ckpt), kTokens, Precision::exact, root + "/engine", DType::F64, "float64");
  CompareOptions o;
  o.model_dir = ckpt;
  const Report r = compare::compare_dirs(root + "/ref", root + "/engine", o);
  EXPECT_EQ(compare::exit_code(r), 1) << r.error;
  return r.first_divergence ? r.first_divergence->tensor : "(none)";
}

// Per-tensor layout: the scale applied as its inverse (q / s instead of q · s) on layer 0's k_proj.
TEST(Fp8DequantBugs, InvertedPerTensorScaleIsNamedAtItsProjection) {
  const std::string root = temp_dir("fp8-inverted");
  write_random_checkpoint(fp8_spec(QuantKind::Fp8PerTensor, 128, 128), root + "/ck");
  copy_with_edited_scale(root + "/ck", root + "/bug", "model.layers.0.self_attn.k_proj.weight_scale",
                         [](std::vector<float>& v, const std::vector<int64_t>&) {
                           for (float& x : v) x = 1.0f / x;
                         });
  EXPECT_EQ(first_divergence(root, root + "/ck", root + "/bug"), "layers.0.attn.k");
}

// Block-wise layout: the [⌈O/b0⌉, ⌈I/b1⌉] grid of layer 0's up_proj read in column-major order
// (same shape, scales on the wrong tiles). up_proj is first used by the dense layer's MLP.
TEST(Fp8DequantBugs, BlockGridReadInTheWrongOrderIsNamedAtItsMlp) {
  const std::string root = temp_dir("fp8-grid");
  write_random_checkpoint(fp8_spec(QuantKind::Fp8Block, 16, 40), root + "/ck");
  copy_with_edited_scale(root + "/ck", root + "/bug", "model.layers.0.mlp.up_proj.weight_scale_inv",
                         [](std::vector<float>& v, const std::vector<int64_t>& shape) {
                           ASSERT_EQ(shape.size(), 2u);
                           const int64_t R = shape[0], C = shape[1];
                           ASSERT_GT(R, 1);
                           ASSERT_GT(C, 1);
                           const std::vector<float> flat = v;
                           for (int64_t i = 0; i < R; ++i)
                             for (int64_t j = 0; j < C; ++j) v[size_t(i * C + j)] = flat[size_t(j * R + i)];
                         });
  EXPECT_EQ(first_divergence(root, root + "/ck", root + "/bug"), "layers.0.mlp.out");
}

// The honest control: the same engine run on an unedited copy passes.
TEST(Fp8DequantBugs, AnUneditedCopyPasses) {
  const std::string root = temp_dir("fp8-honest");
  write_random_checkpoint(fp8_spec(QuantKind::Fp8Block, 16, 40), root + "/ck");
  copy_with_edited_scale(root + "/ck", root + "/copy", "model.layers.0.mlp.up_proj.weight_scale_inv",
                         [](std::vector<float>&, const std::vector<int64_t>&) {});
  reference_dump<double>(Checkpoint(root + "/ck"), kTokens, Precision::exact, root + "/ref", DType::F64, "float64");
  reference_dump<double>(Checkpoint(root + "/copy"), kTokens, Precision::exact, root + "/engine", DType::F64, "float64");
  CompareOptions o;
  o.model_dir = root + "/ck";
  const Report r = compare::compare_dirs(root + "/ref", root + "/engine", o);
  EXPECT_EQ(r.verdict, compare::Verdict::pass) << r.error;
}

}  // namespace
}  // namespace hyoracle::testing
