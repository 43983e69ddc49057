#include "dump.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "error.h"
#include "numerics.h"

namespace hyoracle {

using nlohmann::json;
using nlohmann::ordered_json;

ordered_json make_manifest(const DumpProducer& p, const ModelConfig& c, const std::string& checkpoint,
                           const std::vector<int64_t>& token_ids, int64_t position_offset) {
  ordered_json m;
  m["format"] = "hyoracle.dump";
  m["version"] = kDumpVersion;
  m["producer"] = {{"name", p.name},           {"version", p.version}, {"device", p.device},
                   {"dtype", p.dtype},         {"precision", p.precision}, {"mode", p.mode},
                   {"bf16_rounding", "off"},   {"tie_break", kTieBreakRule}};
  m["model"] = {{"model_type", c.model_type},
                {"config_sha256", c.sha256},
                {"num_hidden_layers", c.num_hidden_layers},
                {"checkpoint", checkpoint}};
  m["input"] = {{"token_ids", token_ids}, {"position_offset", position_offset}};
  return m;
}

void DumpWriter::add(RawTensor t) {
  if (index_.count(t.name)) fail("dump writer: tensor \"" + t.name + "\" recorded twice");
  index_[t.name] = tensors_.size();
  tensors_.push_back(std::move(t));
}

void DumpWriter::put(const std::string& name, const Tensor<double>& t) {
  add({name, float_dtype_, t.shape, encode_values(t.data.data(), t.numel(), float_dtype_)});
}
void DumpWriter::put(const std::string& name, const Tensor<float>& t) {
  const DType d = float_dtype_ == DType::F64 ? DType::F32 : float_dtype_;  // never widen silently
  add({name, d, t.shape, encode_values(t.data.data(), t.numel(), d)});
}
void DumpWriter::put_ints(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& v) {
  const bool wide = name.find("topk_ids") == std::string::npos;
  const DType d = wide ? DType::I64 : DType::I32;
  add({name, d, shape, encode_ints(v.data(), int64_t(v.size()), d)});
}

void DumpWriter::write(const std::string& dir, ordered_json manifest) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(dir + ": cannot create dump directory: " + ec.message());
  const std::string file = "activations.safetensors";
  write_safetensors(dir + "/" + file, tensors_, {{"format", "hyoracle.dump"}});
  manifest["files"] = {file};
  std::ofstream out(dir + "/manifest.json");
  out << manifest.dump(2) << "\n";
  if (!out) fail(dir + "/manifest.json: write failed");
}

Dump::Dump(const std::string& dir) : dir_(dir) {
  const std::string mpath = dir + "/manifest.json";
  std::ifstream in(mpath);
  if (!in) fail(mpath + ": cannot open (is " + dir + " a hyoracle dump?)");
  try {
    manifest_ = json::parse(in);
  } catch (const json::exception&) {
    fail(mpath + ": not valid JSON");
  }
  auto bad = [&](const std::string& field, const std::string& why) { fail(mpath + ": field \"" + field + "\" " + why); };
  if (!manifest_.is_object()) fail(mpath + ": manifest must be a JSON object");
  if (!manifest_.contains("format") || manifest_["format"] != "hyoracle.dump")
    bad("format", "must be \"hyoracle.dump\"");
  if (!manifest_.contains("version") || !manifest_["version"].is_number_integer())
    bad("version", "is missing or not an integer");
  if (manifest_["version"].get<int64_t>() != kDumpVersion)
    bad("version", "is " + manifest_["version"].dump() + "; this hyoracle reads version " + std::to_string(kDumpVersion));
  if (!manifest_.contains("files") || !manifest_["files"].is_array() || manifest_["files"].empty())
    bad("files", "must be a non-empty array of file names");
  if (manifest_.contains("producer") && !manifest_["producer"].is_object()) bad("producer", "must be an object");
  if (manifest_.contains("input")) {
    const json& inp = manifest_["input"];
    if (!inp.is_object()) bad("input", "must be an object");
    if (inp.contains("token_ids")) {
      if (!inp["token_ids"].is_array()) bad("input.token_ids", "must be an array of integers");
      for (const json& t : inp["token_ids"])
        if (!t.is_number_integer()) bad("input.token_ids", "must be an array of integers");
    }
  }
  for (const json& f : manifest_["files"]) {
    if (!f.is_string()) bad("files", "entries must be strings");
    const std::string name = f.get<std::string>();
    if (name.empty() || name[0] == '/' || name.find("..") != std::string::npos)
      bad("files", "entry \"" + name + "\" must be a relative path inside the dump");
    const std::string path = dir + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) bad("files", "entry \"" + name + "\" does not exist");
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    const SafetensorsFile& sf = *files_.back();
    for (const TensorInfo& t : sf.tensors()) {
      if (where_.count(t.name))
        fail(sf.path() + ": tensor \"" + t.name + "\" also appears in " + file_of(t.name) + " (duplicate name)");
      where_[t.name] = {files_.size() - 1, &t};
      names_.push_back(t.name);
    }
  }
}

const TensorInfo& Dump::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_ + ": tensor \"" + name + "\" is not in the dump");
  return *it->second.second;
}

const std::string& Dump::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_ + ": tensor \"" + name + "\" is not in the dump");
  return files_[it->second.first]->path();
}

Tensor<double> Dump::read(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_ + ": tensor \"" + name + "\" is not in the dump");
  return decode_tensor<double>(*files_[it->second.first], *it->second.second);
}

std::vector<int64_t> Dump::read_ints(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (dtype_is_float(t.dtype))
    fail(file_of(name) + ": tensor \"" + name + "\" has dtype " + dtype_name(t.dtype) + ", expected I64 or I32");
  const auto& f = *files_[where_.at(name).first];
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = int64_t(element_as_double(f.data(t), t.dtype, i));
  return v;
}

std::vector<int64_t> Dump::token_ids() const {
  if (has("input_ids")) return read_ints("input_ids");
  std::vector<int64_t> v;
  if (manifest_.contains("input") && manifest_["input"].contains("token_ids"))
    for (const json& t : manifest_["input"]["token_ids"]) v.push_back(t.get<int64_t>());
  return v;
}

std::string Dump::producer(const std::string& field) const {
  if (!manifest_.contains("producer")) return "";
  const json& p = manifest_["producer"];
  return p.contains(field) && p[field].is_string() ? p[field].get<std::string>() : "";
}

}  // namespace hyoracle
