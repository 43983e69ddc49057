// Bad FP8 checkpoints (io/quant.h): each case starts from a good FP8 checkpoint of the tiny model
// (per-tensor static, or block-wise with 16 x 40 blocks), plants one defect in its tensors or its
// quantization_config, and runs the real binary. Every defect must be refused like the catalogue's
// (catalogue_test.cpp): exit 2, one line "hyoracle: error: ..." naming the file and the tensor or
// field, never a run with quietly wrong weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "io/random_checkpoint.h"
#include "tests/hostile/catalogue.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {
namespace {

constexpr double kTimeLimitSeconds = 60;

CheckpointSpec fp8_spec(QuantKind q) {
  CheckpointSpec s;  // the tiny model of the catalogue: 3 layers, H=64, 8 experts
  s.quant = q;
  s.fp8_block_rows = 16;
  s.fp8_block_cols = 40;
  return s;
}

void write_fp8_checkpoint(const std::string& dir, QuantKind q) { write_random_checkpoint(fp8_spec(q), dir); }

EditableTensor& find_tensor(std::vector<EditableTensor>& ts, const std::string& name) {
  auto it = std::find_if(ts.begin(), ts.end(), [&](const EditableTensor& t) { return t.name == name; });
  if (it == ts.end()) throw std::runtime_error("no tensor " + name);
  return *it;
}

void erase_tensor(std::vector<EditableTensor>& ts, const std::string& name) {
  ts.erase(std::remove_if(ts.begin(), ts.end(), [&](const EditableTensor& t) { return t.name == name; }), ts.end());
}

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A good FP8 checkpoint of layout `q` with one edit of its tensors.
Case tensor_case(const std::string& name, QuantKind q, std::function<void(std::vector<EditableTensor>&)> edit,
                 const std::string& file, const std::string& field) {
  return {name,
          [q, edit](const std::string& dir) {
            write_fp8_checkpoint(dir, q);
            edit_checkpoint(dir, edit);
            return run_model(dir);
          },
          file, field};
}

// A good FP8 checkpoint of layout `q` whose config.json's quantization_config is edited.
Case config_case(const std::string& name, QuantKind q, std::function<void(nlohmann::ordered_json&)> edit,
                 const std::string& field) {
  return {name,
          [q, edit](const std::string& dir) {
            write_fp8_checkpoint(dir, q);
            nlohmann::ordered_json c = checkpoint_config_json(fp8_spec(q));
            edit(c["quantization_config"]);
            write_file(dir + "/config.json", c.dump(2));
            return run_model(dir);
          },
          "config.json", field};
}

const std::string kQ = "model.layers.0.self_attn.q_proj.weight";
const std::string kK = "model.layers.0.self_attn.k_proj.weight";
const std::string kExpert = "model.layers.1.mlp.experts.5.down_proj.weight";
const std::string kRouter = "model.layers.1.mlp.router.gate.weight";

std::vector<Case> fp8_cases() {
  const QuantKind T = QuantKind::Fp8PerTensor, B = QuantKind::Fp8Block;
  const std::string st = "model.safetensors";
  std::vector<Case> v;
  // A quantized weight with no scale: an expert (found when the layer's experts are referenced,
  // before any is expanded) and, block-wise, an attention weight.
  v.push_back(tensor_case("MissingExpertScale", T, [](auto& ts) { erase_tensor(ts, kExpert + "_scale"); }, st,
                          kExpert + "_scale\" is missing"));
  v.push_back(tensor_case("MissingBlockScale", B, [](auto& ts) { erase_tensor(ts, kQ + "_scale_inv"); }, st,
                          kQ + "_scale_inv\" is missing"));
  // activation_scheme "static" without the module's input_scale.
  v.push_back(tensor_case("MissingInputScale", T,
                          [](auto& ts) { erase_tensor(ts, "model.layers.0.self_attn.k_proj.input_scale"); }, st,
                          "k_proj.input_scale\" is missing"));
  // Scales of the wrong shape: two values per tensor, one per output channel ([O] and [O, 1]:
  // not a layout of quant_method "fp8"), and the block grid transposed.
  v.push_back(tensor_case("PerTensorScaleTwoValues", T,
                          [](auto& ts) {
                            EditableTensor& s = find_tensor(ts, kQ + "_scale");
                            s.shape = {2};
                            s.bytes = f32_bytes({0.01f, 0.01f});
                          },
                          st, kQ + "_scale\" has shape [2], expected [] or [1]"));
  for (const auto& [name, shape] : {std::pair{"PerChannelScale", std::vector<int64_t>{64}},
                                    std::pair{"PerChannelScaleColumn", std::vector<int64_t>{64, 1}}})
    v.push_back(tensor_case(name, T,
                            [shape = shape](auto& ts) {
                              EditableTensor& s = find_tensor(ts, kK + "_scale");
                              s.shape = shape;
                              s.bytes = f32_bytes(std::vector<float>(64, 0.01f));
                            },
                            st, kK + "_scale\" has shape"));
  v.push_back(tensor_case("BlockGridTransposed", B,
                          [](auto& ts) {
                            EditableTensor& s = find_tensor(ts, kQ + "_scale_inv");  // q_proj [128, 64]: grid [8, 2]
                            s.shape = {2, 8};
                          },
                          st, kQ + "_scale_inv\" has shape [2, 8], expected [8, 2]"));
  // A scale stored in BF16 (the checkpoints store float32).
  v.push_back(tensor_case("Bf16Scale", T,
                          [](auto& ts) {
                            EditableTensor& s = find_tensor(ts, kQ + "_scale");
                            s.dtype = DType::BF16;
                            s.bytes = {0x24, 0x3c};
                          },
                          st, kQ + "_scale\" has dtype BF16, expected F32"));
  // Non-finite and non-positive scale values (weight, block and input scales).
  for (const auto& [name, value] : {std::pair{"NaNScale", std::nanf("")}, std::pair{"InfScale", INFINITY},
                                    std::pair{"ZeroScale", 0.0f}, std::pair{"NegativeScale", -0.01f}})
    v.push_back(tensor_case(name, T,
                            [value = value](auto& ts) { find_tensor(ts, kExpert + "_scale").bytes = f32_bytes({value}); },
                            st, kExpert + "_scale\" holds"));
  v.push_back(tensor_case("ZeroBlockScale", B,
                          [](auto& ts) { std::memset(find_tensor(ts, kQ + "_scale_inv").bytes.data() + 4 * 5, 0, 4); }, st,
                          kQ + "_scale_inv\" holds 0.000000 at element 5"));
  v.push_back(tensor_case("ZeroInputScale", T,
                          [](auto& ts) { find_tensor(ts, "model.layers.0.self_attn.q_proj.input_scale").bytes = f32_bytes({0}); },
                          st, "q_proj.input_scale\" holds"));
  // Scales that belong to no weight, or to the other layout.
  v.push_back(tensor_case("OrphanScale", T,
                          [](auto& ts) {
                            ts.push_back({"model.layers.0.self_attn.x_proj.weight_scale", DType::F32, {1}, f32_bytes({0.01f})});
                          },
                          st, "x_proj.weight_scale\" is a quantization tensor for the weight"));
  v.push_back(tensor_case("BlockScaleInPerTensorCheckpoint", T,
                          [](auto& ts) { ts.push_back({kQ + "_scale_inv", DType::F32, {1}, f32_bytes({0.01f})}); }, st,
                          kQ + "_scale_inv\" is a quantization tensor (a block-wise scale)"));
  v.push_back(tensor_case("PerTensorScaleInBlockCheckpoint", B,
                          [](auto& ts) { ts.push_back({kQ + "_scale", DType::F32, {1}, f32_bytes({0.01f})}); }, st,
                          kQ + "_scale\" is a quantization tensor"));
  v.push_back(tensor_case("InputScaleInDynamicCheckpoint", B,
                          [](auto& ts) {
                            ts.push_back({"model.layers.0.self_attn.q_proj.input_scale", DType::F32, {1}, f32_bytes({0.01f})});
                          },
                          st, "q_proj.input_scale\" is a quantization tensor"));
  // Weights whose dtype does not fit: a BF16 weight next to a scale, an E5M2 weight, an FP8
  // router (the checkpoints never quantize it; no scale would make it right).
  v.push_back(tensor_case("ScaledBf16Weight", T,
                          [](auto& ts) {
                            EditableTensor& w = find_tensor(ts, kK);
                            w.dtype = DType::BF16;
                            w.bytes.assign(w.bytes.size() * 2, 0);
                          },
                          st, kK + "\" has dtype BF16 but a scale"));
  v.push_back(tensor_case("E5M2Weight", T, [](auto& ts) { find_tensor(ts, kQ).dtype = DType::F8_E5M2; }, st,
                          kQ + "\" has dtype F8_E5M2"));
  v.push_back(tensor_case("Fp8Router", T,
                          [](auto& ts) {
                            EditableTensor& w = find_tensor(ts, kRouter);
                            w.dtype = DType::F8_E4M3;
                            w.bytes.resize(w.bytes.size() / 2);
                          },
                          st, kRouter + "\" has dtype F8_E4M3; expected it unquantized"));
  // An FP8 checkpoint whose config.json lost its quantization_config: the scales are refused
  // (read as weights they would be wrong), and without them the FP8 weights are.
  v.push_back({"ScalesWithoutQuantizationConfig",
               [](const std::string& dir) {
                 write_fp8_checkpoint(dir, QuantKind::Fp8Block);
                 write_file(dir + "/config.json", checkpoint_config_json(fp8_spec(QuantKind::None)).dump(2));
                 return run_model(dir);
               },
               "model.safetensors", "is a quantization tensor, but"});
  v.push_back({"Fp8WeightsWithoutQuantizationConfig",
               [](const std::string& dir) {
                 write_fp8_checkpoint(dir, QuantKind::Fp8Block);
                 edit_checkpoint(dir, [](auto& ts) {
                   ts.erase(std::remove_if(ts.begin(), ts.end(),
                                           [](const EditableTensor& t) {
                                             return t.name.size() > 10 && t.name.compare(t.name.size() - 10, 10, "_scale_inv") == 0;
                                           }),
                            ts.end());
                 });
                 write_file(dir + "/config.json", checkpoint_config_json(fp8_spec(QuantKind::None)).dump(2));
                 return run_model(dir);
               },
               "model.safetensors", "has dtype F8_E4M3 but"});
  // quantization_config fields: other methods, missing or unknown values, malformed block sizes.
  v.push_back(config_case("QuantMethodGptq", T, [](auto& q) { q["quant_method"] = "gptq"; },
                          "quantization_config\" key \"quant_method\" is \"gptq\""));
  v.push_back(config_case("QuantMethodCompressedTensors", T, [](auto& q) { q["quant_method"] = "compressed-tensors"; },
                          "quantization_config\" key \"quant_method\" is \"compressed-tensors\""));
  v.push_back(config_case("QuantMethodMissing", T, [](auto& q) { q.erase("quant_method"); },
                          "quantization_config\" key \"quant_method\" is missing"));
  v.push_back(config_case("ActivationSchemeMissing", T, [](auto& q) { q.erase("activation_scheme"); },
                          "quantization_config\" key \"activation_scheme\" is missing"));
  v.push_back(config_case("ActivationSchemePerToken", T, [](auto& q) { q["activation_scheme"] = "per-token"; },
                          "quantization_config\" key \"activation_scheme\" is \"per-token\""));
  v.push_back(config_case("BlockSizeOneNumber", B, [](auto& q) { q["weight_block_size"] = {128}; },
                          "quantization_config\" key \"weight_block_size\" is [128]"));
  v.push_back(config_case("BlockSizeZero", B, [](auto& q) { q["weight_block_size"] = {0, 128}; },
                          "quantization_config\" key \"weight_block_size\" is [0,128]"));
  v.push_back(config_case("BlockSizeString", B, [](auto& q) { q["weight_block_size"] = "128x128"; },
                          "quantization_config\" key \"weight_block_size\""));
  v.push_back(config_case("BlockWithStaticActivations", B, [](auto& q) { q["activation_scheme"] = "static"; },
                          "quantization_config\" key \"activation_scheme\" is \"static\" with a weight_block_size"));
  v.push_back(config_case("FmtE5M2", B, [](auto& q) { q["fmt"] = "e5m2"; }, "quantization_config\" key \"fmt\" is \"e5m2\""));
  v.push_back(config_case("UnknownField", T, [](auto& q) { q["weight_dtype"] = "int4"; },
                          "quantization_config\" key \"weight_dtype\" is not a field"));
  v.push_back(config_case("NotAnObject", T, [](auto& q) { q = "fp8"; }, "quantization_config\" must be an object"));
  return v;
}

class Fp8Hostile : public ::testing::TestWithParam<Case> {};

TEST_P(Fp8Hostile, RefusedWithOneLineNamingFileAndField) {
  const Case& c = GetParam();
  TempDir dir;
  const std::vector<std::string> args = c.setup(dir.path());
  const Outcome o = run_hyoracle(args, kTimeLimitSeconds);
  ASSERT_FALSE(o.timed_out);
  ASSERT_EQ(o.signal, 0) << o.err;
  EXPECT_EQ(o.status, 2) << "stderr:\n" << o.err;
  EXPECT_EQ(o.err.rfind("hyoracle: error: ", 0), 0u) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  EXPECT_NE(o.err.find(dir / c.file), std::string::npos) << "does not name " << c.file << ": " << o.err;
  EXPECT_NE(o.err.find(c.field), std::string::npos) << "does not name " << c.field << ": " << o.err;
}

INSTANTIATE_TEST_SUITE_P(BadFp8, Fp8Hostile, ::testing::ValuesIn(fp8_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// The good FP8 checkpoints the cases start from run: each refusal is the planted defect's doing.
TEST(Fp8HostileBaseline, GoodFp8CheckpointsAreAccepted) {
  for (QuantKind q : {QuantKind::Fp8PerTensor, QuantKind::Fp8Block}) {
    TempDir dir;
    write_fp8_checkpoint(dir.path(), q);
    const Outcome o = run_hyoracle(run_model(dir.path()), kTimeLimitSeconds);
    EXPECT_EQ(o.status, 0) << o.err;
  }
}

}  // namespace
}  // namespace hyoracle::hostile
