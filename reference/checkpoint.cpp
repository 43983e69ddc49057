#include "checkpoint.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "error.h"

namespace hyoracle {

namespace {
bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
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

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  config_ = load_config(dir + "/config.json");
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  std::map<std::string, std::string> all;
  if (file_exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(index + ": not valid JSON");
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(index + ": field \"weight_map\" is missing or not an object");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail(index + ": weight_map entry \"" + it.key() + "\" must be a file name");
      const std::string f = it.value().get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail(index + ": weight_map entry \"" + it.key() + "\" names an invalid shard file \"" + f + "\"");
      all[it.key()] = f;
    }
    std::map<std::string, bool> checked;
    for (const auto& [name, f] : all)
      if (!checked[f] && (checked[f] = true) && !file_exists(dir + "/" + f))
        fail(index + ": shard \"" + f + "\" (holding \"" + name + "\") is missing from " + dir);
  } else if (file_exists(single)) {
    for (const auto& t : shard("model.safetensors").tensors()) all[t.name] = "model.safetensors";
  } else {
    fail(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& [name, f] : all) {
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
  if (it == location_.end()) fail(dir_ + ": tensor \"" + name + "\" is missing from the checkpoint");
  const SafetensorsFile& f = shard(it->second);
  const TensorInfo* t = f.find(name);
  if (!t) fail(f.path() + ": tensor \"" + name + "\" is listed in the index but not in this shard");
  if (t->shape != shape)
    fail(f.path() + ": tensor \"" + name + "\" has shape " + shape_str(t->shape) + ", expected " + shape_str(shape) +
         " from " + config_.source);
  if (!dtype_is_float(t->dtype))
    fail(f.path() + ": tensor \"" + name + "\" has dtype " + dtype_name(t->dtype) + ", expected a floating dtype");
  if (f32_only && t->dtype != DType::F32 && t->dtype != DType::F64)
    fail(f.path() + ": tensor \"" + name + "\" has dtype " + dtype_name(t->dtype) +
         ", expected F32 (the correction bias must not be rounded to a narrower type)");
  return {&f, t};
}

}  // namespace hyoracle
