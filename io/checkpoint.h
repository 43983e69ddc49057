// checkpoint.h: the weight loader for HF hy_v3 checkpoints in their original on-disk layout
// (docs/model.md §3.1): one model.safetensors, or shards listed in model.safetensors.index.json.
//
// Shards are opened lazily (mmap) the first time one of their tensors is asked for; a tensor is
// decoded only when loaded. Tensors of layers >= num_hidden_layers (the Hy3 MTP layer) are
// never loaded and are listed in ignored(). Every load checks the shape against the config and
// the dtype against what the checkpoint must hold.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/safetensors.h"
#include "util/tensor.h"

namespace hyoracle {

// A stored tensor not yet decoded: its file and header entry (both owned by the Checkpoint).
struct WeightRef {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* info = nullptr;
};

class Checkpoint {
 public:
  // Opens `dir` (config.json + model.safetensors or model.safetensors.index.json).
  explicit Checkpoint(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  bool has(const std::string& name) const { return location_.count(name) != 0; }
  // All tensor names in the checkpoint.
  std::vector<std::string> names() const;
  // Names of layers >= num_hidden_layers (MTP); not used by the forward pass.
  const std::vector<std::string>& ignored() const { return ignored_; }

  // Finds `name` and checks its shape; floating dtypes only. `f32_only` demands F32 or F64
  // (expert_bias must never have been rounded to bf16).
  WeightRef ref(const std::string& name, const std::vector<int64_t>& shape, bool f32_only = false) const;
  // ref() + decode.
  template <class S>
  Tensor<S> load(const std::string& name, const std::vector<int64_t>& shape, bool f32_only = false) const {
    return decode<S>(ref(name, shape, f32_only));
  }
  template <class S>
  static Tensor<S> decode(const WeightRef& r) { return decode_tensor<S>(*r.file, *r.info); }

 private:
  const SafetensorsFile& shard(const std::string& file) const;

  std::string dir_;
  std::string listing_;  // the file that lists the tensors: the index, or model.safetensors
  ModelConfig config_;
  std::map<std::string, std::string> location_;  // tensor name -> shard file name
  std::vector<std::string> ignored_;
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_;
};

// Parses model.safetensors.index.json text: tensor name -> shard file name (each a plain file
// name inside the checkpoint directory). Does not look at the shards; `path` names the file.
std::map<std::string, std::string> parse_checkpoint_index(const std::string& text, const std::string& path);

// Layer index of a "model.layers.<L>.*" name, or -1.
int64_t layer_of(const std::string& tensor_name);

}  // namespace hyoracle
