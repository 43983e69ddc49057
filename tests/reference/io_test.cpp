// Tests of the I/O core: dtype conversions, SHA-256, safetensors round trips, config parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "io/config.h"
#include "io/dtype.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

TEST(DType, Bf16DecodesAndRoundsToNearestEven) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc000), -2.0f);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(round_to_bf16(1.0 + std::ldexp(1.0, -8)), 1.0);
  // 1 + 3·2^-8 is halfway between 1+2^-7 (odd mantissa) and 1+2^-6 (even): rounds up.
  EXPECT_EQ(round_to_bf16(1.0 + 3 * std::ldexp(1.0, -8)), 1.0 + std::ldexp(1.0, -6));
  // A hair above the half-way point rounds up (double rounding through float would not).
  EXPECT_EQ(round_to_bf16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40)), 1.0 + std::ldexp(1.0, -7));
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

TEST(DType, F16AndF8Decode) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);                // largest finite
  EXPECT_TRUE(std::isinf(f16_to_float(0x7c00)));
  for (float v : {1.0f, -0.5f, 65504.0f, std::ldexp(1.0f, -24), 0.0999755859375f})
    EXPECT_EQ(f16_to_float(float_to_f16(v)), v) << v;
  EXPECT_EQ(f8e4m3_to_float(0x38), 1.0f);    // exponent 7 (bias 7), mantissa 0
  EXPECT_EQ(f8e4m3_to_float(0x7e), 448.0f);  // largest finite E4M3FN
  EXPECT_TRUE(std::isnan(f8e4m3_to_float(0x7f)));
  EXPECT_EQ(f8e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(f8e5m2_to_float(0x3c), 1.0f);
  EXPECT_EQ(f8e5m2_to_float(0x7b), 57344.0f);
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Safetensors, RoundTripEveryDtype) {
  test::TempDir dir;
  const std::vector<double> v = {1.0, -2.5, 0.15625, 3.0e-3, -7.0, 1e4, 0.0};
  std::vector<RawTensor> ts;
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16})
    ts.push_back({"t_" + dtype_name(d), d, {7}, encode_values(v.data(), 7, d)});
  const std::vector<int64_t> ids = {5, -1, 1ll << 40};
  ts.push_back({"ids", DType::I64, {3}, encode_ints(ids.data(), 3, DType::I64)});
  write_safetensors(dir / "a.safetensors", ts, {{"k", "v"}});
  SafetensorsFile f(dir / "a.safetensors");
  EXPECT_EQ(f.tensors().size(), 5u);
  EXPECT_EQ(f.metadata().at("k"), "v");
  const Tensor<double> f64 = decode_tensor<double>(f, *f.find("t_F64"));
  EXPECT_EQ(f64.data, v);
  const Tensor<double> b = decode_tensor<double>(f, *f.find("t_BF16"));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(b.data[i], round_to_bf16(v[i]));
  const Tensor<double> h = decode_tensor<double>(f, *f.find("t_F16"));
  EXPECT_EQ(h.data[2], 0.15625);
  const Tensor<double> i64 = decode_tensor<double>(f, *f.find("ids"));
  EXPECT_EQ(i64.data[2], double(1ll << 40));
}

// Writes raw bytes to a file.
void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string with_header(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s + json + data;
}

void expect_error(const std::string& path, const std::string& needle) {
  try {
    SafetensorsFile f(path);
    FAIL() << "no error for " << path << " (expected \"" << needle << "\")";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

TEST(Safetensors, RejectsMalformedFiles) {
  test::TempDir dir;
  write_bytes(dir / "short", "abc");
  expect_error(dir / "short", "too short");
  write_bytes(dir / "past", with_header("{}", "").substr(0, 8) + "{");  // claims 2 bytes, has 1
  expect_error(dir / "past", "past the end");
  write_bytes(dir / "json", with_header("{not json", ""));
  expect_error(dir / "json", "not valid JSON");
  write_bytes(dir / "dup", with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd"));
  expect_error(dir / "dup", "duplicate key \"a\"");
  write_bytes(dir / "len", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"));
  expect_error(dir / "len", "needs 8 bytes");
  write_bytes(dir / "oob", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "abcd"));
  expect_error(dir / "oob", "truncated");
  write_bytes(dir / "ovl", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "abcdefgh"));
  expect_error(dir / "ovl", "overlap");
  write_bytes(dir / "dt", with_header(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", "a"));
  expect_error(dir / "dt", "unknown dtype");
  write_bytes(dir / "ovf", with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", "abcd"));
  expect_error(dir / "ovf", "overflow");
}

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
