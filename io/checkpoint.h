// checkpoint.h: the weight loader for HF hy_v3 checkpoints in their original on-disk layout
// (docs/model.md §3.1): one model.safetensors, or shards listed in model.safetensors.index.json.
//
// Shards are opened lazily (mmap) the first time one of their tensors is asked for; a tensor is
// decoded only when loaded. Tensors of layers >= num_hidden_layers (the Hy3 MTP layer) are
// never loaded and are listed in ignored(). Every load checks the shape against the config and
// the dtype against what the checkpoint must hold.
//
// FP8 checkpoints (config.json quantization_config, io/quant.h): an F8_E4M3 linear weight is
// found together with its scale (and, under activation_scheme "static", its input_scale), both
// checked when the weight is referenced, and decode() expands it exactly (q · s in double). The
// scale tensors are not weights: names() does not list them, scale_names() does.
#pragma once
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/config.h"
#include "io/quant.h"
#include "io/safetensors.h"
#include "util/tensor.h"

namespace hyoracle {

// A stored tensor not yet decoded: its file and header entry (both owned by the Checkpoint).
struct WeightRef {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* info = nullptr;
  // FP8 weights only: the checked F32 scale, and the block it covers (0 x 0: the whole tensor).
  const SafetensorsFile* scale_file = nullptr;
  const TensorInfo* scale = nullptr;
  int64_t block_rows = 0, block_cols = 0;
  // A range of the stored tensor's rows (one half of a fused gate_and_up_proj, one block of a
  // fused qkv_proj); rows < 0: the whole tensor.
  int64_t row0 = 0, rows = -1;
  // FP8 weights of a static-scheme checkpoint: the layer's activation scale (its input_scale);
  // 0 otherwise.
  double input_scale = 0;
  std::vector<int64_t> shape() const {
    std::vector<int64_t> s = info->shape;
    if (rows >= 0) s[0] = rows;
    return s;
  }
};

class Checkpoint {
 public:
  // Opens `dir` (config.json + model.safetensors or model.safetensors.index.json).
  explicit Checkpoint(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  bool has(const std::string& name) const { return location_.count(name) != 0; }
  // The file that holds stored tensor `name` (the shard, or model.safetensors), for messages.
  std::string file_of(const std::string& name) const {
    auto it = location_.find(name);
    return it == location_.end() ? listing_ : dir_ + "/" + it->second;
  }
  // All weight names in the checkpoint (FP8 scale tensors excluded).
  std::vector<std::string> names() const;
  // The FP8 scale tensors (weight_scale, weight_scale_inv, input_scale) of layers < num_hidden_layers.
  std::vector<std::string> scale_names() const;
  // Names of layers >= num_hidden_layers (MTP); not used by the forward pass.
  const std::vector<std::string>& ignored() const { return ignored_; }

  // Finds `name` and checks its shape; floating dtypes only. `f32_only` demands F32 or F64
  // (expert_bias must never have been rounded to bf16). An F8_E4M3 weight comes with its scale,
  // checked here (io/quant.h); an FP8 weight without a valid scale is an Error.
  WeightRef ref(const std::string& name, const std::vector<int64_t>& shape, bool f32_only = false) const;
  // Rows [row0, row0 + rows) of the stored tensor `name` of shape `shape` (checked as ref()).
  WeightRef ref_rows(const std::string& name, const std::vector<int64_t>& shape, int64_t row0, int64_t rows) const {
    WeightRef r = ref(name, shape);
    r.row0 = row0;
    r.rows = rows;
    return r;
  }
  // ref() + decode.
  template <class S>
  Tensor<S> load(const std::string& name, const std::vector<int64_t>& shape, bool f32_only = false) const {
    return decode<S>(ref(name, shape, f32_only));
  }
  // Decodes a referenced weight into S; an FP8 weight is dequantized (exact into double).
  template <class S>
  static Tensor<S> decode(const WeightRef& r) {
    Tensor<S> t = r.scale ? dequantize_fp8<S>(*r.file, *r.info, *r.scale_file, *r.scale, r.block_rows, r.block_cols)
                          : decode_tensor<S>(*r.file, *r.info);
    if (r.rows < 0) return t;
    const int64_t cols = t.numel() / t.shape[0];
    Tensor<S> out(r.shape());
    std::copy(t.data.begin() + r.row0 * cols, t.data.begin() + (r.row0 + r.rows) * cols, out.data.begin());
    return out;
  }

 private:
  const SafetensorsFile& shard(const std::string& file) const;
  // The stored tensor `name` listed in `where` (location_ or scales_): its shard, opened on first
  // use, and header entry. Error naming the listing or shard when it is not there.
  std::pair<const SafetensorsFile*, const TensorInfo*> stored(const std::string& name,
                                                              const std::map<std::string, std::string>& where) const;
  // The FP8 checks of ref() for an F8 weight `t` in `f`; returns the reference with its scale.
  WeightRef fp8_ref(const std::string& name, const SafetensorsFile& f, const TensorInfo& t) const;
  // The checks of a scale name when the checkpoint is opened (layout, owning weight present).
  void check_scale_name(const std::string& name, const std::map<std::string, std::string>& all) const;

  std::string dir_;
  std::string listing_;  // the file that lists the tensors: the index, or model.safetensors
  ModelConfig config_;
  std::map<std::string, std::string> location_;  // tensor name -> shard file name
  std::map<std::string, std::string> scales_;    // FP8 scale tensor name -> shard file name
  std::vector<std::string> ignored_;
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_;
};

// Parses model.safetensors.index.json text: tensor name -> shard file name (each a plain file
// name inside the checkpoint directory). Does not look at the shards; `path` names the file.
std::map<std::string, std::string> parse_checkpoint_index(const std::string& text, const std::string& path);

// Layer index of a "model.layers.<L>.*" name, or -1.
int64_t layer_of(const std::string& tensor_name);

}  // namespace hyoracle
