// Bad checkpoints: valid safetensors files whose tensors do not match the config, and broken
// model.safetensors.index.json files.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "tests/hostile/catalogue.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {

std::vector<std::string> run_model(const std::string& dir) { return {"run", "--model", dir, "--tokens", "1,2"}; }

namespace {

// The good single-file checkpoint with one edit applied to its tensors.
Case edit_case(const std::string& name, std::function<void(std::vector<EditableTensor>&)> edit, const std::string& field) {
  return {name,
          [edit](const std::string& dir) {
            write_good_checkpoint(dir);
            edit_checkpoint(dir, edit);
            return run_model(dir);
          },
          "model.safetensors", field};
}

// The good sharded checkpoint (2 shards) with its index replaced by `index`.
Case index_case(const std::string& name, const std::string& index, const std::string& field) {
  return {name,
          [index](const std::string& dir) {
            write_good_checkpoint(dir, 2);
            write_file(dir + "/model.safetensors.index.json", index);
            return run_model(dir);
          },
          "model.safetensors.index.json", field};
}

EditableTensor& find_tensor(std::vector<EditableTensor>& ts, const std::string& name) {
  return *std::find_if(ts.begin(), ts.end(), [&](const EditableTensor& t) { return t.name == name; });
}

void erase_tensor(std::vector<EditableTensor>& ts, const std::string& name) {
  ts.erase(std::remove_if(ts.begin(), ts.end(), [&](const EditableTensor& t) { return t.name == name; }), ts.end());
}

}  // namespace

std::vector<Case> checkpoint_cases() {
  std::vector<Case> v;
  // A tensor the forward pass needs is absent: the message names the file listing the tensors.
  v.push_back(edit_case("MissingTensor", [](auto& ts) { erase_tensor(ts, "lm_head.weight"); }, "lm_head.weight"));
  v.push_back(edit_case("MissingExpert", [](auto& ts) { erase_tensor(ts, "model.layers.2.mlp.experts.7.down_proj.weight"); },
                        "model.layers.2.mlp.experts.7.down_proj.weight"));
  // A tensor whose shape disagrees with the config ([64] stored as [32, 2]).
  v.push_back(edit_case("WrongShape", [](auto& ts) { find_tensor(ts, "model.norm.weight").shape = {32, 2}; }, "model.norm.weight"));
  // The correction bias rounded to bf16 (the loader must demand F32).
  v.push_back(edit_case("Bf16ExpertBias",
                        [](auto& ts) {
                          EditableTensor& t = find_tensor(ts, "model.layers.1.mlp.expert_bias");
                          t.dtype = DType::BF16;
                          t.bytes.resize(t.bytes.size() / 2);
                        },
                        "model.layers.1.mlp.expert_bias"));
  // A NaN (then an Inf) in the F32 correction bias: the selection would be meaningless.
  for (const auto& [name, bits] : {std::pair{"NaNExpertBias", 0x7fc00000u}, std::pair{"InfExpertBias", 0x7f800000u}})
    v.push_back(edit_case(name,
                          [bits](auto& ts) {
                            EditableTensor& t = find_tensor(ts, "model.layers.1.mlp.expert_bias");
                            const uint32_t b = bits;
                            std::memcpy(t.bytes.data() + 4 * 3, &b, 4);  // expert 3
                          },
                          "model.layers.1.mlp.expert_bias"));
  // An integer dtype where a weight should be.
  v.push_back(edit_case("IntegerWeight", [](auto& ts) { find_tensor(ts, "model.norm.weight").dtype = DType::I16; }, "model.norm.weight"));
  // Neither a single file nor an index.
  v.push_back({"NoWeights",
               [](const std::string& dir) {
                 write_file(dir + "/config.json", good_config().dump(2));
                 return run_model(dir);
               },
               "", "model.safetensors.index.json"});
  // The index names a shard that is not there.
  v.push_back({"MissingShard",
               [](const std::string& dir) {
                 write_good_checkpoint(dir, 2);
                 ::unlink((dir + "/model-00002-of-00002.safetensors").c_str());
                 return run_model(dir);
               },
               "model.safetensors.index.json", "model-00002-of-00002.safetensors"});
  // The index lists a tensor its shard does not hold.
  v.push_back({"TensorNotInShard",
               [](const std::string& dir) {
                 write_good_checkpoint(dir, 2);
                 std::string idx = read_file(dir + "/model.safetensors.index.json");
                 const std::string name = "\"model.norm.weight\": \"model-0000";
                 const size_t at = idx.find(name);
                 idx[at + name.size()] = idx[at + name.size()] == '1' ? '2' : '1';  // point at the other shard
                 write_file(dir + "/model.safetensors.index.json", idx);
                 return run_model(dir);
               },
               "model-0000", "model.norm.weight"});
  v.push_back(index_case("IndexNotJson", "{\"weight_map\": {", "not valid JSON"));
  v.push_back(index_case("IndexNoWeightMap", R"({"metadata": {}})", "weight_map"));
  v.push_back(index_case("IndexDuplicateKey",
                         R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"}})",
                         "duplicate key \"a\""));
  v.push_back(index_case("IndexShardNotString", R"({"weight_map": {"lm_head.weight": 7}})", "lm_head.weight"));
  // Shard names that would leave the directory or be cut short by a NUL at open().
  v.push_back(index_case("IndexShardEscapes", R"({"weight_map": {"lm_head.weight": "../../etc/passwd"}})", "lm_head.weight"));
  v.push_back(index_case("IndexShardWithNul",
                         R"({"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors\u0000.x"}})",
                         "lm_head.weight"));
  // A shard that is a directory.
  v.push_back({"ShardIsDirectory",
               [](const std::string& dir) {
                 write_good_checkpoint(dir, 2);
                 write_file(dir + "/model.safetensors.index.json", R"({"weight_map": {"lm_head.weight": "sub"}})");
                 ::mkdir((dir + "/sub").c_str(), 0755);
                 return run_model(dir);
               },
               "model.safetensors.index.json", "not a regular file"});
  // An FP8 checkpoint's scale tensor: read as plain weights the numbers would be quietly wrong.
  v.push_back(edit_case("QuantizationScaleTensor",
                        [](auto& ts) {
                          ts.push_back({"model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv", DType::F32, {1}, {0, 0, 128, 63}});
                        },
                        "weight_scale_inv\" is a quantization tensor"));
  // Prompt plus generated tokens past max_position_embeddings.
  v.push_back({"GenerationPastMaxPositions",
               [](const std::string& dir) {
                 write_good_checkpoint(dir);
                 nlohmann::ordered_json c = good_config();
                 c["max_position_embeddings"] = 4;
                 write_file(dir + "/config.json", c.dump(2));
                 return std::vector<std::string>{"run", "--model", dir, "--tokens", "1,2", "--generate", "3"};
               },
               "config.json", "\"max_position_embeddings\" is 4; the prompt (2 tokens) plus --generate 3 needs 5 positions, 1 too many"});
  // A token id equal to the vocabulary size (the good config's vocab_size is 256).
  v.push_back({"TokenIdEqualToVocabularySize",
               [](const std::string& dir) {
                 write_good_checkpoint(dir);
                 return std::vector<std::string>{"run", "--model", dir, "--tokens", "1,256"};
               },
               "config.json", "--tokens: token id 256 at position 1 is outside the vocabulary [0, 256)"});
  return v;
}

}  // namespace hyoracle::hostile
