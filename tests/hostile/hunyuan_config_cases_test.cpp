// Hostile config.json cases for the Hunyuan v1 family (io/config_hunyuan.cpp): each case starts
// from the config.json that checkpoint_config_json writes for one of the tiny Hunyuan presets
// (tools/fixture_presets.cpp; the specs are rebuilt here, since hostile_tests does not link the
// CLI library), makes one edit, and calls parse_config. Every edit must be refused with one
// hyoracle::Error line naming the source file, the field and the reason; nothing else may be
// thrown. The positive cases check the fields a valid config gives (Tencent's per-layer lists,
// shared width, top-1 vs top-k weights, NTK-alpha base, cross-layer K/V sources), each expected
// value computed here from the config's numbers, not taken from the parser.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/random_checkpoint.h"
#include "util/error.h"

namespace hyoracle {
namespace {

using nlohmann::json;

const std::string kSource = "/hostile/hunyuan/config.json";

// tiny-hunyuan-large: Tencent's "hunyuan", CLA factor 2, top-1, NTK-alpha, tied (H 80, 4/2 x 20, E 4, 4 layers).
CheckpointSpec large_spec() {
  CheckpointSpec s;
  s.model_type = "hunyuan";
  s.hidden_size = 80;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 20;
  s.intermediate_size = 48;
  s.moe_intermediate_size = 48;
  s.num_experts = 4;
  s.num_experts_per_tok = 1;
  s.num_shared_experts = 1;
  s.vocab_size = 288;
  s.first_k_dense_replace = 0;
  s.num_hidden_layers = 4;
  s.rope_theta = 10000.0;
  s.rope_alpha = 1000.0;
  s.tie_word_embeddings = true;
  s.cla_share_factor = 2;
  s.linear_gain = 2.0;
  return s;
}

// tiny-hunyuan-a13b: transformers' hunyuan_v1_moe, top-3, NTK-alpha, tied (H 64, 4/2 x 24, E 8, 3 layers).
CheckpointSpec a13b_spec() {
  CheckpointSpec s = large_spec();
  s.model_type = "hunyuan_v1_moe";
  s.hidden_size = 64;
  s.head_dim = 24;
  s.intermediate_size = 40;
  s.moe_intermediate_size = 40;
  s.num_experts = 8;
  s.num_experts_per_tok = 3;
  s.vocab_size = 256;
  s.num_hidden_layers = 3;
  s.cla_share_factor = 1;
  return s;
}

// tiny-hunyuan-dense: transformers' hunyuan_v1_dense, plain RoPE (H 48, 6/2 x 16, I 72, 3 layers).
CheckpointSpec dense_spec() {
  CheckpointSpec s = large_spec();
  s.model_type = "hunyuan_v1_dense";
  s.hidden_size = 48;
  s.num_attention_heads = 6;
  s.num_key_value_heads = 2;
  s.head_dim = 16;
  s.intermediate_size = 72;
  s.moe_intermediate_size = 0;
  s.num_experts = 0;
  s.num_experts_per_tok = 0;
  s.num_shared_experts = 0;
  s.vocab_size = 320;
  s.first_k_dense_replace = 3;
  s.num_hidden_layers = 3;
  s.rope_alpha = 0.0;
  s.tie_word_embeddings = false;
  s.cla_share_factor = 1;
  return s;
}

enum class Base { large, a13b, dense };

json base_json(Base b) {
  const CheckpointSpec s = b == Base::large ? large_spec() : b == Base::a13b ? a13b_spec() : dense_spec();
  return json::parse(checkpoint_config_json(s).dump());
}

// What parse_config did with one config: "" when it returned, the Error's message, or a marker
// for anything else thrown (which is itself a failure: bad input must be an Error).
struct Parsed {
  bool ok = false;
  bool other_exception = false;
  std::string message;
  ModelConfig config;
};

Parsed parse(const json& j) {
  Parsed p;
  try {
    p.config = parse_config(j, kSource);
    p.ok = true;
  } catch (const Error& e) {
    p.message = e.what();
  } catch (const std::exception& e) {
    p.other_exception = true;
    p.message = std::string("non-Error exception: ") + e.what();
  } catch (...) {
    p.other_exception = true;
    p.message = "non-std exception";
  }
  return p;
}

// The refusal every hostile case must produce: one Error line with the file, the quoted field
// and a fragment of the reason.
void expect_refused(const json& j, const std::string& field, const std::string& reason) {
  const Parsed p = parse(j);
  ASSERT_FALSE(p.ok) << "accepted; expected field \"" << field << "\" to be refused (" << reason << ")";
  ASSERT_FALSE(p.other_exception) << p.message;
  EXPECT_NE(p.message.find(kSource), std::string::npos) << p.message;
  EXPECT_NE(p.message.find("\"" + field + "\""), std::string::npos) << p.message;
  EXPECT_NE(p.message.find(reason), std::string::npos) << p.message;
  EXPECT_EQ(p.message.find('\n'), std::string::npos) << "not one line: " << p.message;
}

struct HostileCase {
  std::string name;
  Base base;
  std::function<void(json&)> edit;
  std::string field;   // the field the message must name (quoted)
  std::string reason;  // a fragment of the reason
};

std::ostream& operator<<(std::ostream& os, const HostileCase& c) { return os << c.name; }

json list_of(std::initializer_list<json> v) { return json(v); }

std::vector<HostileCase> hostile_cases() {
  const Base T = Base::large, HF = Base::a13b, D = Base::dense;
  std::vector<HostileCase> v;
  auto set = [](const std::string& f, json value) { return [f, value](json& j) { j[f] = value; }; };
  auto erase = [](const std::string& f) { return [f](json& j) { j.erase(f); }; };

  // model_type: unknown names, the family name, a near miss in case.
  v.push_back({"ModelTypeUnknown", T, set("model_type", "hunyuan_v2_moe"), "model_type", "expected \"hy_v3\""});
  v.push_back({"ModelTypeIsFamilyName", HF, set("model_type", "hunyuan_v1"), "model_type", "expected \"hy_v3\""});
  v.push_back({"ModelTypeWrongCase", T, set("model_type", "HunYuan"), "model_type", "expected \"hy_v3\""});
  v.push_back({"ModelTypeNotString", T, set("model_type", 1), "model_type", "is missing"});

  // Tencent configs must state every semantic switch: no defaults.
  v.push_back({"TencentMissingUseCla", T, erase("use_cla"), "use_cla", "is missing"});
  v.push_back({"TencentMissingUseQkNorm", T, erase("use_qk_norm"), "use_qk_norm", "is missing"});
  v.push_back({"TencentMissingUseMixedMlpMoe", T, erase("use_mixed_mlp_moe"), "use_mixed_mlp_moe", "is missing"});
  v.push_back({"TencentMissingNumSharedExpert", T, erase("num_shared_expert"), "num_shared_expert", "is missing"});
  v.push_back({"TencentMissingMoeTopk", T, erase("moe_topk"), "moe_topk", "is missing"});
  v.push_back({"TencentUseClaWithoutFactor", T, erase("cla_share_factor"), "cla_share_factor", "is missing"});
  v.push_back({"TencentUseClaString", T, set("use_cla", "true"), "use_cla", "must be true or false"});
  v.push_back({"HfMissingMoeTopk", HF, erase("moe_topk"), "moe_topk", "is missing"});
  v.push_back({"HfMissingNumExperts", HF, erase("num_experts"), "num_experts", "is missing"});

  // Cross-layer attention exists in Tencent's code only.
  v.push_back({"HfMoeUseClaTrue", HF,
               [](json& j) {
                 j["use_cla"] = true;
                 j["cla_share_factor"] = 2;
               },
               "use_cla", "no cross-layer attention"});
  v.push_back({"HfDenseUseClaTrue", D, set("use_cla", true), "use_cla", "no cross-layer attention"});

  // Expert width: moe_intermediate_size must equal intermediate_size (vLLM reads the former).
  v.push_back({"TencentMoeIntermediateDiffers", T, set("moe_intermediate_size", 24), "moe_intermediate_size",
               "differs from intermediate_size; Tencent's code"});
  v.push_back({"HfMoeIntermediateDiffers", HF, set("moe_intermediate_size", 24), "moe_intermediate_size",
               "differs from intermediate_size; transformers"});
  v.push_back({"TencentMoeIntermediateListDiffers", T, set("moe_intermediate_size", list_of({48, 48, 48, 24})),
               "moe_intermediate_size", "differs between layers"});
  v.push_back({"HfMoeIntermediateUniformListDiffers", HF, set("moe_intermediate_size", list_of({24, 24, 24})),
               "moe_intermediate_size", "differs from intermediate_size"});

  // Shared experts under transformers' semantics: exactly one shared MLP.
  v.push_back({"HfNumSharedExpertTwo", HF, set("num_shared_expert", 2), "num_shared_expert", "is not 1"});
  v.push_back({"HfNumSharedExpertListOfTwos", HF, set("num_shared_expert", list_of({2, 2, 2})), "num_shared_expert",
               "is not 1"});
  v.push_back({"TencentNumSharedExpertZero", T, set("num_shared_expert", 0), "num_shared_expert", "expected 1..64"});

  // Per-layer moe_topk lists: one value for every layer, one entry per layer, integers only.
  v.push_back({"TencentTopkListDiffers", T, set("moe_topk", list_of({1, 1, 2, 1})), "moe_topk", "differs between layers"});
  v.push_back({"HfTopkListDiffers", HF, set("moe_topk", list_of({3, 3, 2})), "moe_topk", "differs between layers"});
  v.push_back({"TencentTopkListTooShort", T, set("moe_topk", list_of({1, 1, 1})), "moe_topk", "is a list of 3 entries"});
  v.push_back({"TencentTopkListTooLong", T, set("moe_topk", list_of({1, 1, 1, 1, 1})), "moe_topk", "is a list of 5 entries"});
  v.push_back({"TencentTopkListEmpty", T, set("moe_topk", json::array()), "moe_topk", "is a list of 0 entries"});
  v.push_back({"TencentTopkListFraction", T, set("moe_topk", list_of({1, 1.5, 1, 1})), "moe_topk", "must be an integer"});
  v.push_back({"TencentTopkListString", T, set("moe_topk", list_of({1, 1, "1", 1})), "moe_topk", "must be an integer"});
  v.push_back({"TencentTopkListNested", T, set("moe_topk", list_of({1, list_of({1}), 1, 1})), "moe_topk",
               "must be an integer"});
  v.push_back({"TencentTopkListNull", T, set("moe_topk", list_of({1, nullptr, 1, 1})), "moe_topk", "is missing"});
  v.push_back({"TencentTopkAboveExperts", T, set("moe_topk", 5), "moe_topk", "larger than num_experts"});
  v.push_back({"TencentTopkZero", T, set("moe_topk", 0), "moe_topk", "expected 1..65536"});
  v.push_back({"TencentNumExpertsListDiffers", T, set("num_experts", list_of({4, 4, 8, 4})), "num_experts",
               "differs between layers"});
  v.push_back({"TencentNumSharedListDiffers", T, set("num_shared_expert", list_of({1, 2, 1, 1})), "num_shared_expert",
               "differs between layers"});

  // RoPE: dynamic without alpha is length-dependent NTK; other types are not implemented.
  v.push_back({"TencentDynamicWithoutAlpha", T, set("rope_scaling", json{{"type", "dynamic"}, {"factor", 2.0}}),
               "rope_scaling.alpha", "is missing"});
  v.push_back({"TencentDynamicAlphaNull", T,
               set("rope_scaling", json{{"type", "dynamic"}, {"factor", 1.0}, {"alpha", nullptr}}), "rope_scaling.alpha",
               "is missing"});
  v.push_back({"HfDynamicWithoutAlpha", HF, [](json& j) { j["rope_parameters"].erase("alpha"); },
               "rope_parameters.alpha", "is missing"});
  v.push_back({"TencentRopeYarn", T, [](json& j) { j["rope_scaling"]["type"] = "yarn"; }, "rope_scaling.type",
               "hyoracle implements \"default\" and \"dynamic\""});
  v.push_back({"TencentRopeLinear", T, set("rope_scaling", json{{"type", "linear"}, {"factor", 4.0}}), "rope_scaling.type",
               "hyoracle implements"});
  v.push_back({"HfRopeYarn", HF, [](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; }, "rope_parameters.rope_type",
               "hyoracle implements"});
  v.push_back({"HfRopeLinear", HF, [](json& j) { j["rope_parameters"]["rope_type"] = "linear"; },
               "rope_parameters.rope_type", "hyoracle implements"});
  v.push_back({"TencentRopeScalingNotObject", T, set("rope_scaling", "dynamic"), "rope_scaling", "must be an object"});
  v.push_back({"HfRopeParametersNotObject", HF, set("rope_parameters", 10000.0), "rope_parameters", "must be an object"});
  v.push_back({"HfRopeParametersWithoutTheta", HF, [](json& j) { j["rope_parameters"].erase("rope_theta"); },
               "rope_parameters.rope_theta", "is missing"});
  v.push_back({"TencentMissingRopeTheta", T, erase("rope_theta"), "rope_theta", "is missing"});
  v.push_back({"TencentRopeThetaOne", T, set("rope_theta", 1.0), "rope_theta", "must be > 1"});

  // rope_parameters next to a different rope_scaling or rope_theta: engines read one or the other.
  v.push_back({"HfRopeScalingDisagrees", HF,
               [](json& j) {
                 j["rope_scaling"] = {{"rope_type", "dynamic"}, {"alpha", 500.0}, {"factor", 1.0}};
               },
               "rope_scaling", "differs from it"});
  v.push_back({"HfRopeScalingDiffersInAlphaOnly", HF,
               [](json& j) {
                 json rs = j["rope_parameters"];
                 rs["alpha"] = 2000.0;
                 j["rope_scaling"] = rs;
               },
               "rope_scaling", "differs from it"});
  v.push_back({"HfRopeThetaDisagrees", HF, set("rope_theta", 20000.0), "rope_theta",
               "disagrees with rope_parameters.rope_theta"});

  // NTK-alpha must be a positive number.
  v.push_back({"TencentAlphaZero", T, [](json& j) { j["rope_scaling"]["alpha"] = 0.0; }, "rope_scaling.alpha",
               "must be > 0"});
  v.push_back({"TencentAlphaNegative", T, [](json& j) { j["rope_scaling"]["alpha"] = -1000.0; }, "rope_scaling.alpha",
               "must be > 0"});
  v.push_back({"TencentAlphaString", T, [](json& j) { j["rope_scaling"]["alpha"] = "1000"; }, "rope_scaling.alpha",
               "must be a number"});
  v.push_back({"HfAlphaZero", HF, [](json& j) { j["rope_parameters"]["alpha"] = 0; }, "rope_parameters.alpha",
               "must be > 0"});
  v.push_back({"HfAlphaNegative", HF, [](json& j) { j["rope_parameters"]["alpha"] = -0.5; }, "rope_parameters.alpha",
               "must be > 0"});

  // Head width: Tencent's code always uses hidden_size / num_attention_heads; RoPE needs it even.
  v.push_back({"TencentHeadDimDisagrees", T, set("head_dim", 32), "head_dim",
               "Tencent's code uses hidden_size / num_attention_heads"});
  v.push_back({"TencentAttentionHeadDimDisagrees", T, set("attention_head_dim", 40), "attention_head_dim",
               "Tencent's code uses hidden_size / num_attention_heads"});
  v.push_back({"TencentHeadsDoNotDivideHidden", T,
               [](json& j) {
                 j["num_attention_heads"] = 6;
                 j["num_key_value_heads"] = 2;
               },
               "num_attention_heads", "does not divide hidden_size"});
  v.push_back({"TencentHeadDimGivenButHeadsDoNotDivide", T,
               [](json& j) {
                 j["num_attention_heads"] = 6;
                 j["num_key_value_heads"] = 2;
                 j["head_dim"] = 13;
               },
               "head_dim", "Tencent's code uses hidden_size / num_attention_heads"});
  v.push_back({"HfHeadDimOdd", HF, set("head_dim", 25), "head_dim", "RoPE needs an even head_dim"});
  v.push_back({"TencentQuotientOdd", T,
               [](json& j) {
                 j["hidden_size"] = 84;  // 84 / 4 = 21
               },
               "head_dim", "RoPE needs an even head_dim"});
  v.push_back({"DenseHeadDimOdd", D, set("head_dim", 15), "head_dim", "RoPE needs an even head_dim"});
  v.push_back({"HfHeadDimAndAttentionHeadDimDisagree", HF, set("attention_head_dim", 32), "attention_head_dim",
               "disagrees with head_dim"});
  v.push_back({"HfHeadDimTwoWithAlpha", HF, set("head_dim", 2), "head_dim", "must be > 2 for NTK-alpha"});
  v.push_back({"HfHeadDimZero", HF, set("head_dim", 0), "head_dim", "expected 2..4096"});
  v.push_back({"HfKvHeadsDoNotDivide", HF, set("num_key_value_heads", 3), "num_key_value_heads", "must divide"});

  // No biases, SiLU only.
  v.push_back({"TencentAttentionBias", T, set("attention_bias", true), "attention_bias", "have no biases"});
  v.push_back({"HfAttentionBias", HF, set("attention_bias", true), "attention_bias", "have no biases"});
  v.push_back({"TencentMlpBias", T, set("mlp_bias", true), "mlp_bias", "have no biases"});
  v.push_back({"DenseMlpBias", D, set("mlp_bias", true), "mlp_bias", "have no biases"});
  v.push_back({"HfAttentionBiasString", HF, set("attention_bias", "false"), "attention_bias", "must be true or false"});
  v.push_back({"TencentHiddenActGelu", T, set("hidden_act", "gelu"), "hidden_act", "expected \"silu\""});
  v.push_back({"HfHiddenActSwish", HF, set("hidden_act", "swish"), "hidden_act", "expected \"silu\""});
  v.push_back({"DenseHiddenActNumber", D, set("hidden_act", 1), "hidden_act", "expected \"silu\""});

  // Router switches only some Hunyuan code reads.
  v.push_back({"TencentRoutedScaling", T, set("routed_scaling_factor", 2.5), "routed_scaling_factor", "is not 1.0"});
  v.push_back({"HfRoutedScaling", HF, set("routed_scaling_factor", 0.5), "routed_scaling_factor", "is not 1.0"});
  v.push_back({"HfRoutedScalingString", HF, set("routed_scaling_factor", "1.0"), "routed_scaling_factor",
               "must be a number"});
  v.push_back({"TencentMoeDropTokens", T, set("moe_drop_tokens", true), "moe_drop_tokens", "no capacity dropping"});
  v.push_back({"HfMoeDropTokens", HF, set("moe_drop_tokens", true), "moe_drop_tokens", "no capacity dropping"});
  v.push_back({"TencentNormTopkProbFalseTopK", T,
               [](json& j) {
                 j["moe_topk"] = 2;
                 j["norm_topk_prob"] = false;
               },
               "norm_topk_prob", "renormalises top-k weights regardless"});
  v.push_back({"TencentNormTopkProbFalseTopKList", T,
               [](json& j) {
                 j["moe_topk"] = list_of({3, 3, 3, 3});
                 j["norm_topk_prob"] = false;
               },
               "norm_topk_prob", "renormalises top-k weights regardless"});
  v.push_back({"TencentUseMixedMlpMoeFalse", T, set("use_mixed_mlp_moe", false), "use_mixed_mlp_moe",
               "with their shared MLP only"});
  v.push_back({"HfUseMixedMlpMoeFalse", HF, set("use_mixed_mlp_moe", false), "use_mixed_mlp_moe",
               "always adds the shared MLP"});

  // Q/K norms: transformers applies them regardless; a false flag makes engines disagree.
  v.push_back({"HfUseQkNormFalse", HF, set("use_qk_norm", false), "use_qk_norm", "applies the q/k norms regardless"});
  v.push_back({"DenseUseQkNormFalse", D, set("use_qk_norm", false), "use_qk_norm", "applies the q/k norms regardless"});
  v.push_back({"TencentUseQkNormFalse", T, set("use_qk_norm", false), "use_qk_norm", "with q/k norms only"});

  // cla_share_factor out of range (with use_cla true).
  v.push_back({"TencentClaFactorZero", T, set("cla_share_factor", 0), "cla_share_factor", "expected 1..4096"});
  v.push_back({"TencentClaFactorNegative", T, set("cla_share_factor", -2), "cla_share_factor", "expected 1..4096"});
  v.push_back({"TencentClaFactorHuge", T, set("cla_share_factor", 5000), "cla_share_factor", "expected 1..4096"});
  v.push_back({"TencentClaFactorInt64Huge", T, set("cla_share_factor", int64_t(1) << 40), "cla_share_factor",
               "expected 1..4096"});
  v.push_back({"TencentClaFactorUint64Max", T, set("cla_share_factor", uint64_t(18446744073709551615ull)),
               "cla_share_factor", "expected 1..4096"});
  v.push_back({"TencentClaFactorFraction", T, set("cla_share_factor", 2.5), "cla_share_factor", "must be an integer"});
  v.push_back({"TencentClaFactorString", T, set("cla_share_factor", "2"), "cla_share_factor", "must be an integer"});

  // Sizes.
  v.push_back({"TencentZeroHidden", T, set("hidden_size", 0), "hidden_size", "expected 1.."});
  v.push_back({"HfMissingIntermediate", HF, erase("intermediate_size"), "intermediate_size", "is missing"});
  v.push_back({"DenseMissingEps", D, erase("rms_norm_eps"), "rms_norm_eps", "is missing"});
  v.push_back({"TencentCompressionConfig", T, set("compression_config", json::object({{"quant_method", "int4"}})),
               "compression_config", "is set"});
  return v;
}

class HunyuanConfigHostile : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HunyuanConfigHostile, RefusedWithOneLineNamingFileAndField) {
  const HostileCase& c = GetParam();
  json j = base_json(c.base);
  ASSERT_TRUE(parse(j).ok) << "the unedited base config must parse: " << parse(j).message;
  c.edit(j);
  expect_refused(j, c.field, c.reason);
}

INSTANTIATE_TEST_SUITE_P(Cases, HunyuanConfigHostile, ::testing::ValuesIn(hostile_cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& i) { return i.param.name; });

// --- Positive cases --------------------------------------------------------------------------

// θ · α^(d / (d − 2)), written out here with exp/log rather than the parser's pow.
double ntk_alpha_base(double theta, double alpha, double d) { return theta * std::exp(std::log(alpha) * d / (d - 2)); }

void expect_rel_near(double got, double want, double rel) {
  EXPECT_NEAR(got, want, std::fabs(want) * rel) << "got " << got << ", want " << want;
}

// An A13B-shaped Tencent config (model_type "hunyuan", the field set of Tencent-Hunyuan/Hunyuan-A13B's
// config.json): per-layer uniform lists for moe_topk, num_shared_expert, num_experts and
// moe_intermediate_size, rope_scaling with type "dynamic" and alpha plus the yarn-only fields A13B
// carries, attention_head_dim equal to hidden / heads, use_cla false with a factor given.
json a13b_tencent_config() {
  return json::parse(R"({
    "architectures": ["HunYuanMoEV1ForCausalLM"], "model_type": "hunyuan",
    "vocab_size": 256, "hidden_size": 64, "intermediate_size": 40, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "attention_head_dim": 16, "head_dim": 16,
    "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": {"alpha": 1000.0, "beta_fast": 32, "beta_slow": 1, "factor": 1.0, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "type": "dynamic"},
    "attention_bias": false, "mlp_bias": false, "use_qk_norm": true, "use_cla": false, "cla_share_factor": 2,
    "num_experts": [8, 8, 8], "moe_topk": [3, 3, 3], "num_shared_expert": [2, 2, 2],
    "moe_intermediate_size": [40, 40, 40], "use_mixed_mlp_moe": true, "norm_topk_prob": true,
    "routed_scaling_factor": 1.0, "moe_drop_tokens": false, "capacity_factor": 1.0,
    "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})");
}

TEST(HunyuanConfigPositive, A13bTencentPerLayerUniformLists) {
  const Parsed p = parse(a13b_tencent_config());
  ASSERT_TRUE(p.ok) << p.message;
  const ModelConfig& c = p.config;
  EXPECT_EQ(c.family, Family::hunyuan_v1);
  EXPECT_EQ(c.semantics, "tencent");
  EXPECT_EQ(c.model_type, "hunyuan");
  EXPECT_EQ(c.head_dim, 64 / 4);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 3);
  EXPECT_EQ(c.num_shared_experts, 2);
  EXPECT_EQ(c.moe_intermediate_size, 40);
  EXPECT_EQ(c.shared_width(), 40 * 2);  // intermediate_size × num_shared_expert
  EXPECT_TRUE(c.route_norm);             // k = 3 > 1: renormalised
  EXPECT_EQ(c.router, RouterKind::softmax);
  EXPECT_FALSE(c.has_expert_bias());
  EXPECT_TRUE(c.qk_norm_after_rope);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.cla_share_factor, 1);  // use_cla false: the factor is not used
  for (int64_t L = 0; L < 3; ++L) {
    EXPECT_TRUE(c.owns_kv(L)) << L;
    EXPECT_FALSE(c.is_dense(L)) << L;
  }
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_alpha, 1000.0);
  expect_rel_near(c.rope_base(), ntk_alpha_base(10000.0, 1000.0, 16), 1e-13);
  expect_rel_near(c.rope_base(), 26826957.95279725, 1e-13);  // 10000 · 1000^(16/14), computed offline
}

TEST(HunyuanConfigPositive, LargePresetTop1IsNotRenormalised) {
  const Parsed p = parse(base_json(Base::large));
  ASSERT_TRUE(p.ok) << p.message;
  const ModelConfig& c = p.config;
  EXPECT_EQ(c.semantics, "tencent");
  EXPECT_EQ(c.num_experts_per_tok, 1);
  EXPECT_FALSE(c.route_norm);  // Tencent's top-1 weight is the raw p_max
  EXPECT_EQ(c.head_dim, 80 / 4);
  EXPECT_EQ(c.shared_width(), 48);
  EXPECT_EQ(c.cla_share_factor, 2);
  expect_rel_near(c.rope_base(), ntk_alpha_base(10000.0, 1000.0, 20), 1e-13);
  expect_rel_near(c.rope_base(), 21544346.900318846, 1e-13);  // 10000 · 1000^(20/18)
  // norm_topk_prob false is harmless for top-1 (nothing is renormalised either way).
  json j = base_json(Base::large);
  j["norm_topk_prob"] = false;
  const Parsed q = parse(j);
  ASSERT_TRUE(q.ok) << q.message;
  EXPECT_FALSE(q.config.route_norm);
}

TEST(HunyuanConfigPositive, TencentTopKIsRenormalised) {
  json j = base_json(Base::large);
  j["moe_topk"] = 2;
  const Parsed p = parse(j);
  ASSERT_TRUE(p.ok) << p.message;
  EXPECT_TRUE(p.config.route_norm);
  EXPECT_EQ(p.config.num_experts_per_tok, 2);
}

TEST(HunyuanConfigPositive, A13bPresetUnderTransformersSemantics) {
  const Parsed p = parse(base_json(Base::a13b));
  ASSERT_TRUE(p.ok) << p.message;
  const ModelConfig& c = p.config;
  EXPECT_EQ(c.semantics, "hf");
  EXPECT_EQ(c.head_dim, 24);  // given; hidden / heads would be 16
  EXPECT_EQ(c.q_width(), 4 * 24);
  EXPECT_EQ(c.kv_width(), 2 * 24);
  EXPECT_EQ(c.num_experts_per_tok, 3);
  EXPECT_EQ(c.num_shared_experts, 1);
  EXPECT_EQ(c.shared_width(), 40);
  EXPECT_TRUE(c.route_norm);
  EXPECT_EQ(c.cla_share_factor, 1);
  expect_rel_near(c.rope_base(), ntk_alpha_base(10000.0, 1000.0, 24), 1e-13);
  expect_rel_near(c.rope_base(), 18738174.22860383, 1e-13);  // 10000 · 1000^(24/22)

  // Top-1 under transformers: renormalised (the weight is 1.0).
  json j = base_json(Base::a13b);
  j["moe_topk"] = 1;
  j["num_shared_expert"] = 1;  // allowed: it is what transformers does
  const Parsed q = parse(j);
  ASSERT_TRUE(q.ok) << q.message;
  EXPECT_TRUE(q.config.route_norm);
}

TEST(HunyuanConfigPositive, DensePresetAndTencentSingleExpertAreDense) {
  const Parsed p = parse(base_json(Base::dense));
  ASSERT_TRUE(p.ok) << p.message;
  EXPECT_EQ(p.config.semantics, "hf");
  EXPECT_EQ(p.config.rope_alpha, 0.0);
  EXPECT_EQ(p.config.rope_base(), 10000.0);
  EXPECT_EQ(p.config.shared_width(), 0);
  for (int64_t L = 0; L < 3; ++L) EXPECT_TRUE(p.config.is_dense(L)) << L;

  json j = base_json(Base::large);
  j["num_experts"] = 1;  // Tencent's code builds a dense MLP for num_experts <= 1
  const Parsed q = parse(j);
  ASSERT_TRUE(q.ok) << q.message;
  for (int64_t L = 0; L < 4; ++L) EXPECT_TRUE(q.config.is_dense(L)) << L;
}

// Cross-layer attention: layer L reads layer L − L % f's K/V, written out per layer.
TEST(HunyuanConfigPositive, ClaKvSourcesForFactorTwoAndThree) {
  struct Expect {
    int64_t factor, layers;
    std::vector<int64_t> source;
  };
  for (const Expect& e : {Expect{2, 4, {0, 0, 2, 2}}, Expect{2, 5, {0, 0, 2, 2, 4}}, Expect{3, 7, {0, 0, 0, 3, 3, 3, 6}},
                          Expect{3, 2, {0, 0}}, Expect{8, 4, {0, 0, 0, 0}}}) {
    SCOPED_TRACE("factor " + std::to_string(e.factor) + ", layers " + std::to_string(e.layers));
    json j = base_json(Base::large);
    j["num_hidden_layers"] = e.layers;
    j["cla_share_factor"] = e.factor;
    const Parsed p = parse(j);
    ASSERT_TRUE(p.ok) << p.message;
    EXPECT_EQ(p.config.cla_share_factor, e.factor);
    for (int64_t L = 0; L < e.layers; ++L) {
      EXPECT_EQ(p.config.kv_source(L), e.source[size_t(L)]) << "layer " << L;
      EXPECT_EQ(p.config.owns_kv(L), e.source[size_t(L)] == L) << "layer " << L;
    }
  }
  // use_cla false: every layer owns its K/V whatever the factor says.
  json j = base_json(Base::large);
  j["use_cla"] = false;
  j["cla_share_factor"] = 3;
  const Parsed p = parse(j);
  ASSERT_TRUE(p.ok) << p.message;
  for (int64_t L = 0; L < 4; ++L) EXPECT_TRUE(p.config.owns_kv(L)) << L;
}

TEST(HunyuanConfigPositive, AgreeingSpellingsAreAccepted) {
  // rope_scaling identical to rope_parameters, rope_theta equal to rope_parameters.rope_theta.
  json j = base_json(Base::a13b);
  j["rope_scaling"] = j["rope_parameters"];
  j["rope_theta"] = 10000.0;
  // head_dim and attention_head_dim agreeing, use_cla false and use_qk_norm true under hf.
  j["attention_head_dim"] = 24;
  j["use_cla"] = false;
  j["use_qk_norm"] = true;
  j["moe_intermediate_size"] = 40;
  j["routed_scaling_factor"] = 1;
  j["moe_drop_tokens"] = false;
  j["attention_bias"] = false;
  const Parsed p = parse(j);
  ASSERT_TRUE(p.ok) << p.message;
  EXPECT_EQ(p.config.head_dim, 24);
  EXPECT_EQ(p.config.rope_alpha, 1000.0);

  // Tencent: head_dim equal to hidden / heads, rope_scaling null is plain RoPE.
  json t = base_json(Base::large);
  t["head_dim"] = 20;
  t["rope_scaling"] = nullptr;
  const Parsed q = parse(t);
  ASSERT_TRUE(q.ok) << q.message;
  EXPECT_EQ(q.config.rope_alpha, 0.0);
  EXPECT_EQ(q.config.rope_base(), 10000.0);
}

// --- RoPE type spellings -------------------------------------------------------------------

// Tencent's code reads rope_scaling["type"], transformers "rope_type": a rope_scaling holding both
// with different values ({"rope_type": "default", "type": "dynamic", "alpha": 1000}) is NTK-alpha
// in one and plain RoPE in the other, so it is refused, naming rope_scaling.
TEST(HunyuanConfigRope, TencentRopeScalingTypeAndRopeTypeDisagree) {
  json j = base_json(Base::large);
  j["rope_scaling"] = {{"rope_type", "default"}, {"type", "dynamic"}, {"alpha", 1000.0}, {"factor", 1.0}};
  expect_refused(j, "rope_scaling", "");
}

// A non-string rope type ({"type": 7, "alpha": 1000}) is no type any code knows: refused, naming
// rope_scaling.type (Tencent's code raises on it too).
TEST(HunyuanConfigRope, TencentRopeScalingTypeNotString) {
  json j = base_json(Base::large);
  j["rope_scaling"] = {{"type", 7}, {"alpha", 1000.0}, {"factor", 1.0}};
  expect_refused(j, "rope_scaling.type", "");
}

}  // namespace
}  // namespace hyoracle
