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
    // Integer-quantized layouts (GPTQ, AWQ, compressed-tensors packing) are not read; read as
    // plain weights they would give numbers that are wrong yet plausible, so they are refused.
    for (const char* suffix : {".qweight", ".qzeros", ".weight_packed"})
      if (name.size() > std::strlen(suffix) && name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        fail(listing_ + ": tensor " + printable_quoted(name) +
             " is a quantization tensor of a layout hyoracle does not read (only unquantized and \"fp8\" checkpoints)");
    const bool scale = is_fp8_scale_name(name);
    if (scale) check_scale_name(name, all);
    if (layer_of(name) >= config_.num_hidden_layers) ignored_.push_back(name);
    else (scale ? scales_ : location_)[name] = f;
  }
}

void Checkpoint::check_scale_name(const std::string& name, const std::map<std::string, std::string>& all) const {
  const QuantConfig& q = config_.quant;
  const std::string what = listing_ + ": tensor " + printable_quoted(name) + " is a quantization tensor";
  if (!q.quantized())
    fail(what + ", but " + config_.source + " has no quantization_config (read as a plain weight it would be wrong)");
  const bool inv = name.size() > 17 && name.compare(name.size() - 17, 17, ".weight_scale_inv") == 0;
  const bool input = !inv && name.size() > 12 && name.compare(name.size() - 12, 12, ".input_scale") == 0;
  if (q.kind == QuantKind::Fp8PerTensor && inv)
    fail(what + " (a block-wise scale), but quantization_config has no weight_block_size; the per-tensor layout stores "
                "<module>.weight_scale");
  if (q.kind == QuantKind::Fp8Block && !inv)
    fail(what + ", but quantization_config has weight_block_size [" + std::to_string(q.block_rows) + ", " +
         std::to_string(q.block_cols) + "]; the block-wise layout stores only <module>.weight_scale_inv");
  if (input && q.activation_scheme != "static")
    fail(what + ", but quantization_config.activation_scheme is \"" + q.activation_scheme +
         "\"; static input scales come only with \"static\"");
  const std::string w = scaled_weight_of(name);
  if (!all.count(w)) fail(what + " for the weight " + printable_quoted(w) + ", which the checkpoint does not hold");
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [n, f] : location_) v.push_back(n);
  return v;
}

std::vector<std::string> Checkpoint::scale_names() const {
  std::vector<std::string> v;
  for (const auto& [n, f] : scales_) v.push_back(n);
  return v;
}

const SafetensorsFile& Checkpoint::shard(const std::string& file) const {
  auto& slot = shards_[file];
  if (!slot) slot = std::make_unique<SafetensorsFile>(dir_ + "/" + file);
  return *slot;
}

std::pair<const SafetensorsFile*, const TensorInfo*> Checkpoint::stored(
    const std::string& name, const std::map<std::string, std::string>& where) const {
  auto it = where.find(name);
  if (it == where.end()) fail(listing_ + ": tensor " + printable_quoted(name) + " is missing from the checkpoint");
  struct stat st {};
  if (!shards_.count(it->second) && ::stat((dir_ + "/" + it->second).c_str(), &st) != 0)
    fail(listing_ + ": shard " + printable_quoted(it->second) + " (holding " + printable_quoted(name) + ") is missing from " +
         dir_);
  const SafetensorsFile& f = shard(it->second);
  const TensorInfo* t = f.find(name);
  if (!t) fail(f.path() + ": tensor " + printable_quoted(name) + " is listed in " + listing_ + " but not in this shard");
  return {&f, t};
}

WeightRef Checkpoint::ref(const std::string& name, const std::vector<int64_t>& shape, bool f32_only) const {
  const auto [fp, t] = stored(name, location_);
  const SafetensorsFile& f = *fp;
  if (t->shape != shape)
    fail(f.path() + ": tensor " + printable_quoted(name) + " has shape " + shape_str(t->shape) + ", expected " + shape_str(shape) +
         " from " + config_.source);
  if (!dtype_is_float(t->dtype))
    fail(f.path() + ": tensor " + printable_quoted(name) + " has dtype " + dtype_name(t->dtype) + ", expected a floating dtype");
  if (f32_only && t->dtype != DType::F32 && t->dtype != DType::F64)
    fail(f.path() + ": tensor " + printable_quoted(name) + " has dtype " + dtype_name(t->dtype) +
         ", expected F32 (the correction bias must not be rounded to a narrower type)");
  if (t->dtype == DType::F8_E4M3 || t->dtype == DType::F8_E5M2) return fp8_ref(name, f, *t);
  // A wide weight with a scale next to it: which of the two an engine applies is unknowable.
  for (const char* suffix : {kWeightScaleSuffix, kWeightScaleInvSuffix})
    if (scales_.count(name + suffix))
      fail(f.path() + ": tensor " + printable_quoted(name) + " has dtype " + dtype_name(t->dtype) + " but a scale " +
           printable_quoted(name + suffix) + " in " + listing_ + "; a scaled weight must be F8_E4M3");
  return {&f, t};
}

WeightRef Checkpoint::fp8_ref(const std::string& name, const SafetensorsFile& f, const TensorInfo& t) const {
  const QuantConfig& q = config_.quant;
  const std::string here = f.path() + ": tensor " + printable_quoted(name) + " has dtype " + dtype_name(t.dtype);
  if (t.dtype != DType::F8_E4M3)
    fail(here + "; FP8 checkpoints are read as E4M3 (float8_e4m3fn) weights only");
  if (!q.quantized())
    fail(here + " but " + config_.source + " has no quantization_config, so its scale is unknown");
  if (!may_be_fp8(name))
    fail(here + "; expected it unquantized (FP8 checkpoints quantize only the *_proj linear weights)");
  const bool block = q.kind == QuantKind::Fp8Block;
  const std::string scale_name = name + (block ? kWeightScaleInvSuffix : kWeightScaleSuffix);
  if (!scales_.count(scale_name))
    fail(listing_ + ": tensor " + printable_quoted(scale_name) + " is missing; the F8_E4M3 weight " + printable_quoted(name) +
         " needs it (quantization_config: " + quant_description(q) + ")");
  const auto [sf, s] = stored(scale_name, scales_);
  if (!scale_shape_ok(q, t.shape, s->shape))
    fail(sf->path() + ": tensor " + printable_quoted(scale_name) + " has shape " + shape_str(s->shape) + ", expected " +
         (block ? shape_str(block_scale_shape(q, t.shape)) + " (weight " + shape_str(t.shape) + " in blocks of [" +
                      std::to_string(q.block_rows) + ", " + std::to_string(q.block_cols) + "])"
                : std::string("[] or [1] (one scale per tensor; quant_method \"fp8\" has no per-channel scales)")));
  check_scale_values(*sf, *s);
  if (q.activation_scheme == "static") {
    // Not used by the exact model, but a static-scheme checkpoint without it cannot be served
    // by any engine: a partial or mislabelled checkpoint.
    const std::string in = input_scale_of(name);
    if (!scales_.count(in))
      fail(listing_ + ": tensor " + printable_quoted(in) + " is missing; quantization_config.activation_scheme \"static\" "
                      "needs an input scale for " + printable_quoted(name));
    const auto [inf, ins] = stored(in, scales_);
    if (!(ins->shape.empty() || ins->shape == std::vector<int64_t>{1}))
      fail(inf->path() + ": tensor " + printable_quoted(in) + " has shape " + shape_str(ins->shape) + ", expected [] or [1]");
    check_scale_values(*inf, *ins);
    WeightRef r{&f, &t, sf, s, 0, 0};
    if (block) r.block_rows = q.block_rows, r.block_cols = q.block_cols;
    r.input_scale = element_as_double(inf->data(*ins), DType::F32, 0);
    return r;
  }
  WeightRef r{&f, &t, sf, s, 0, 0};
  if (block) r.block_rows = q.block_rows, r.block_cols = q.block_cols;
  return r;
}

}  // namespace hyoracle
