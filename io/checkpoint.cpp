#include "io/checkpoint.h"

#include <sys/stat.h>

#include <cstring>

#include "util/error.h"

namespace hyoracle {

namespace {
// True when something (a file, a FIFO, a directory...) exists at p; readers then say what is wrong.
bool path_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}
}  // namespace

int64_t layer_of(const std::string& n) {
  const std::string prefix = "model.layers.";
  if (n.rfind(prefix, 0) != 0) return -1;
  size_t i = prefix.size();
  int64_t v = 0;
  bool digits = false;
  while (i < n.size() && n[i] >= '0' && n[i] <= '9' && v < (int64_t(1) << 40)) {
    v = v * 10 + (n[i++] - '0');
    digits = true;
  }
  return digits && i < n.size() && n[i] == '.' ? v : -1;
}

namespace {

// A shard file name from the index: a plain file name inside the checkpoint directory. Control
// bytes are refused too: a NUL would silently cut the path short at open().
void check_shard_name(const std::string& index, const std::string& tensor, const std::string& f) {
  bool plain = !f.empty() && f != "." && f != "..";
  for (const char ch : f)
    if (ch == '/' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) plain = false;
  if (!plain)
    fail(index + ": weight_map entry " + printable_quoted(tensor) + " names an invalid shard file " + printable_quoted(f) +
         " (expected a file name inside the checkpoint directory)");
}

}  // namespace

std::map<std::string, std::string> parse_checkpoint_index(const std::string& text, const std::string& index) {
  const nlohmann::json j = parse_json_strict(text, index);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail(index + ": field \"weight_map\" is missing or not an object");
  std::map<std::string, std::string> all;
  const nlohmann::json& map = j["weight_map"];
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it.value().is_string())
      fail(index + ": weight_map entry " + printable_quoted(it.key()) + " must be a file name string");
    const std::string f = it.value().get<std::string>();
    check_shard_name(index, it.key(), f);
    all[it.key()] = f;
  }
  return all;
}

namespace {

// Reads model.safetensors.index.json: tensor name -> shard file name; shards present must be files.
std::map<std::string, std::string> read_index(const std::string& dir, const std::string& index) {
  std::map<std::string, std::string> all = parse_checkpoint_index(read_text_file(index, kJsonFileLimit, "index"), index);
  std::map<std::string, bool> checked;
  for (const auto& [name, f] : all) {
    if (checked[f]) continue;
    checked[f] = true;
    // A missing shard is reported when one of its tensors is first needed (Checkpoint::ref),
    // so one layer of a partly downloaded checkpoint can still be run.
    struct stat st {};
    if (::stat((dir + "/" + f).c_str(), &st) != 0) continue;
    if (!S_ISREG(st.st_mode))
      fail(index + ": shard " + printable_quoted(f) + " (holding " + printable_quoted(name) + ") is not a regular file");
  }
  return all;
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  config_ = load_config(dir + "/config.json");
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  std::map<std::string, std::string> all;
  if (path_exists(index)) {
    listing_ = index;
    all = read_index(dir, index);
  } else if (path_exists(single)) {
    listing_ = single;
    for (const auto& t : shard("model.safetensors").tensors()) all[t.name] = "model.safetensors";
  } else {
    fail(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& [name, f] : all) {
    // A quantized checkpoint stores scales next to narrow weights; read as plain weights they give
    // numbers that are wrong yet plausible, so any such tensor is refused.
    for (const char* suffix : {".weight_scale_inv", ".weight_scale", ".input_scale", ".qweight", ".qzeros", ".weight_packed"})
      if (name.size() > std::strlen(suffix) && name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        fail(listing_ + ": tensor " + printable_quoted(name) +
             " is a quantization tensor; hyoracle implements no dequantization (only unquantized checkpoints)");
    if (layer_of(name) >= config_.num_hidden_layers) ignored_.push_back(name);
    else location_[name] = f;
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [n, f] : location_) v.push_back(n);
  return v;
}

const SafetensorsFile& Checkpoint::shard(const std::string& file) const {
  auto& slot = shards_[file];
  if (!slot) slot = std::make_unique<SafetensorsFile>(dir_ + "/" + file);
  return *slot;
}

WeightRef Checkpoint::ref(const std::string& name, const std::vector<int64_t>& shape, bool f32_only) const {
  auto it = location_.find(name);
  if (it == location_.end()) fail(listing_ + ": tensor " + printable_quoted(name) + " is missing from the checkpoint");
  struct stat st {};
  if (!shards_.count(it->second) && ::stat((dir_ + "/" + it->second).c_str(), &st) != 0)
    fail(listing_ + ": shard " + printable_quoted(it->second) + " (holding " + printable_quoted(name) + ") is missing from " +
         dir_);
  const SafetensorsFile& f = shard(it->second);
  const TensorInfo* t = f.find(name);
  if (!t) fail(f.path() + ": tensor " + printable_quoted(name) + " is listed in " + listing_ + " but not in this shard");
  if (t->shape != shape)
    fail(f.path() + ": tensor " + printable_quoted(name) + " has shape " + shape_str(t->shape) + ", expected " + shape_str(shape) +
         " from " + config_.source);
  if (!dtype_is_float(t->dtype))
    fail(f.path() + ": tensor " + printable_quoted(name) + " has dtype " + dtype_name(t->dtype) + ", expected a floating dtype");
  if (f32_only && t->dtype != DType::F32 && t->dtype != DType::F64)
    fail(f.path() + ": tensor " + printable_quoted(name) + " has dtype " + dtype_name(t->dtype) +
         ", expected F32 (the correction bias must not be rounded to a narrower type)");
  return {&f, t};
}

}  // namespace hyoracle
