// Bad config.json files next to a good checkpoint.
#include <sys/stat.h>

#include "tests/hostile/catalogue.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {

namespace {

// The good checkpoint with config.json replaced by `text`.
Case text_case(const std::string& name, const std::string& text, const std::string& field) {
  return {name,
          [text](const std::string& dir) {
            write_good_checkpoint(dir);
            write_file(dir + "/config.json", text);
            return run_model(dir);
          },
          "config.json", field};
}

// The good checkpoint with one edit to its config; the message must name `field`.
Case edit_case(const std::string& name, std::function<void(nlohmann::ordered_json&)> edit, const std::string& field) {
  nlohmann::ordered_json j = good_config();
  edit(j);
  return text_case(name, j.dump(2), "\"" + field + "\"");
}

// Sets one field.
Case set_case(const std::string& name, const std::string& field, nlohmann::ordered_json value) {
  return edit_case(name, [field, value](auto& j) { j[field] = value; }, field);
}

}  // namespace

std::vector<Case> config_cases() {
  std::vector<Case> v;
  v.push_back(text_case("NotJson", "{\"hidden_size\": 64,", "not valid JSON"));
  v.push_back(text_case("NotUtf8", "{\"model_type\": \"hy_v3\xff\"}", "not valid JSON"));
  v.push_back(text_case("NotObject", "[64]", "JSON object"));
  // A duplicate size field: nlohmann would keep the last value silently.
  v.push_back(text_case("DuplicateKey", "{\"hidden_size\": 64, \"hidden_size\": 4096}", "duplicate key \"hidden_size\""));
  // Larger than any real config (1 MiB limit): refused before it is read.
  v.push_back(text_case("TooLarge", "{\"x\": \"" + std::string(2 << 20, 'a') + "\"}", "limit"));
  v.push_back({"IsFifo",
               [](const std::string& dir) {
                 write_good_checkpoint(dir);
                 ::unlink((dir + "/config.json").c_str());
                 ::mkfifo((dir + "/config.json").c_str(), 0644);
                 return run_model(dir);
               },
               "config.json", "not a regular file"});
  v.push_back(set_case("ZeroHidden", "hidden_size", 0));
  v.push_back(set_case("NegativeExperts", "num_experts", -8));
  v.push_back(set_case("NegativeLayers", "num_hidden_layers", -1));
  v.push_back(set_case("HugeVocab", "vocab_size", int64_t(1) << 40));
  v.push_back(set_case("FractionalHidden", "hidden_size", 64.5));
  v.push_back(set_case("StringHeads", "num_attention_heads", "4"));
  // Sizes that are valid alone but not what the checkpoint holds: the shape check names the tensor.
  v.push_back(edit_case("SizesLargerThanCheckpoint",
                        [](auto& j) {
                          j["hidden_size"] = 1 << 24;
                          j["vocab_size"] = 1 << 22;
                        },
                        "model.embed_tokens.weight"));
  v.back().file = "model.safetensors";
  // Heads that do not divide, top-k above the expert count, disagreeing expert widths.
  v.push_back(set_case("HeadsNotDividing", "num_key_value_heads", 3));
  v.push_back(set_case("TopKAboveExperts", "num_experts_per_tok", 9));
  v.push_back(set_case("ExpertHiddenDimDisagrees", "expert_hidden_dim", 25));
  v.push_back(set_case("OddHeadDim", "head_dim", 31));
  v.push_back(edit_case("RopeYarn", [](auto& j) { j["rope_parameters"]["rope_type"] = "yarn"; }, "rope_parameters.rope_type"));
  v.push_back(set_case("RopeScalingBesideParameters", "rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}));
  v.push_back(edit_case("MissingRouteNorm", [](auto& j) { j.erase("route_norm"); }, "route_norm"));
  v.push_back(edit_case("MissingScaling", [](auto& j) { j.erase("router_scaling_factor"); }, "router_scaling_factor"));
  v.push_back(set_case("NegativeEps", "rms_norm_eps", -1e-5));
  v.push_back(set_case("QkNormFalse", "qk_norm", false));
  v.push_back(set_case("WrongModelType", "model_type", "llama"));
  v.push_back(edit_case("DenseLayersDisagree", [](auto& j) { j["mlp_layer_types"] = {"sparse", "sparse", "sparse"}; },
                        "mlp_layer_types"));
  v.push_back(edit_case("NestedTooDeep",
                        [](auto& j) {
                          nlohmann::ordered_json x = 1;
                          for (int i = 0; i < 100; ++i) x = nlohmann::ordered_json::array({x});
                          j["extra"] = x;
                        },
                        "nesting"));
  v.back().field = "nesting";
  // Quantized checkpoints are refused by their config (the loader implements no dequantization).
  v.push_back(set_case("QuantizationConfig", "quantization_config", {{"quant_method", "fp8"}, {"weight_block_size", {128, 128}}}));
  v.push_back(set_case("MaxPositionsZero", "max_position_embeddings", 0));
  v.push_back(set_case("MaxPositionsNotInteger", "max_position_embeddings", "262144"));
  v.push_back(text_case("ByteOrderMark", "\xEF\xBB\xBF" + good_config().dump(2), "byte order mark"));
  return v;
}

}  // namespace hyoracle::hostile
