// io/config: parse_config on the current and older config.json spellings, and bad fields
// refused with one-line errors naming the file and field.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "io/config.h"
#include "util/error.h"

namespace hyoracle {
namespace {

nlohmann::json good_config() {
  return nlohmann::json::parse(R"({
    "model_type": "hy_v3", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 96,
    "moe_intermediate_size": 24, "expert_hidden_dim": 24, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_experts": 8,
    "num_experts_per_tok": 3, "num_shared_experts": 1, "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_theta": 11158840.0, "rope_type": "default"},
    "router_scaling_factor": 2.826, "route_norm": true, "qk_norm": true,
    "first_k_dense_replace": 1, "tie_word_embeddings": false})");
}

void expect_config_error(nlohmann::json j, const std::string& field, const std::string& needle) {
  try {
    parse_config(j, "cfg.json");
    FAIL() << "no error (expected field " << field << ")";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cfg.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"" + field + "\""), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(Config, ParsesFileValuesAndSpellings) {
  const ModelConfig c = parse_config(good_config(), "cfg.json");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.q_width(), 128);  // heads × head_dim ≠ hidden
  EXPECT_EQ(c.gqa_group(), 2);
  EXPECT_EQ(c.rope_theta, 11158840.0);
  EXPECT_EQ(c.router_scaling_factor, 2.826);
  EXPECT_EQ(c.dense_layer, (std::vector<bool>{true, false, false}));
  // Older spellings: rope_theta, num_local_experts, expert_hidden_dim alone, mlp_layer_types.
  nlohmann::json j = good_config();
  j.erase("rope_parameters");
  j["rope_theta"] = 10000.0;
  j.erase("num_experts");
  j["num_local_experts"] = 8;
  j.erase("moe_intermediate_size");
  j.erase("first_k_dense_replace");
  j["mlp_layer_types"] = {"dense", "dense", "sparse"};
  const ModelConfig d = parse_config(j, "cfg.json");
  EXPECT_EQ(d.rope_theta, 10000.0);
  EXPECT_EQ(d.num_experts, 8);
  EXPECT_EQ(d.moe_intermediate_size, 24);
  EXPECT_EQ(d.dense_layer, (std::vector<bool>{true, true, false}));
}

TEST(Config, RejectsBadFieldsWithOneLineNamingTheField) {
  auto with = [](const char* k, nlohmann::json v) {
    nlohmann::json j = good_config();
    j[k] = v;
    return j;
  };
  expect_config_error(with("hidden_size", 0), "hidden_size", "expected 1..");
  expect_config_error(with("hidden_size", -4), "hidden_size", "expected 1..");
  expect_config_error(with("num_key_value_heads", 3), "num_key_value_heads", "must divide");
  expect_config_error(with("num_experts_per_tok", 9), "num_experts_per_tok", "larger than num_experts");
  expect_config_error(with("expert_hidden_dim", 25), "expert_hidden_dim", "must agree");
  expect_config_error(with("model_type", "llama"), "model_type", "expected \"hy_v3\"");
  expect_config_error(with("head_dim", 31), "head_dim", "even");
  expect_config_error(with("rope_parameters", {{"rope_theta", 1e6}, {"rope_type", "yarn"}}), "rope_parameters.rope_type", "default");
  expect_config_error(with("rms_norm_eps", "1e-5"), "rms_norm_eps", "number");
  expect_config_error(with("qk_norm", false), "qk_norm", "ambiguous");
  expect_config_error(with("mlp_layer_types", {"sparse", "sparse", "sparse"}), "mlp_layer_types", "disagrees");
  nlohmann::json j = good_config();
  j.erase("route_norm");
  expect_config_error(j, "route_norm", "missing");
  j = good_config();
  j.erase("router_scaling_factor");
  expect_config_error(j, "router_scaling_factor", "missing");
}

}  // namespace
}  // namespace hyoracle
