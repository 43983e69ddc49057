#include "io/fingerprint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "util/error.h"

namespace hyoracle {

namespace {

// The shard files of a checkpoint directory, sorted: those the index lists, else every
// *.safetensors file in it.
std::vector<std::string> shard_files(const std::string& dir) {
  const std::string index = dir + "/model.safetensors.index.json";
  std::set<std::string> files;
  std::error_code ec;
  if (std::filesystem::exists(index, ec)) {
    for (const auto& [name, file] : parse_checkpoint_index(read_text_file(index, kJsonFileLimit, "index"), index))
      files.insert(file);
  } else {
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string n = e.path().filename().string();
      if (n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0) files.insert(n);
    }
    if (ec) fail(dir + ": cannot list the checkpoint directory (" + ec.message() + ")");
  }
  if (files.empty()) fail(dir + ": no *.safetensors files to fingerprint");
  return {files.begin(), files.end()};
}

}  // namespace

std::vector<std::string> missing_shards(const std::string& dir) {
  std::vector<std::string> missing;
  std::error_code ec;
  for (const std::string& f : shard_files(dir))
    if (!std::filesystem::exists(dir + "/" + f, ec)) missing.push_back(f);
  return missing;
}

std::string weights_fingerprint(const std::string& dir) {
  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  std::map<std::string, Entry> tensors;  // sorted by name, bytewise
  for (const std::string& f : shard_files(dir)) {
    std::error_code ec;
    if (!std::filesystem::exists(dir + "/" + f, ec))
      fail(dir + "/" + f + ": missing; the weights fingerprint (model.weights_fingerprint) needs every shard");
    shards.push_back(std::make_unique<SafetensorsFile>(dir + "/" + f));
    for (const TensorInfo& t : shards.back()->tensors())
      if (!tensors.emplace(t.name, Entry{shards.back().get(), &t}).second)
        fail(dir + "/" + f + ": tensor " + printable_quoted(t.name) + " is stored in two shards");
  }
  Sha256 h;
  const char zero = 0;
  for (const auto& [name, e] : tensors) {
    std::string shape;
    for (size_t i = 0; i < e.info->shape.size(); ++i) shape += (i ? "," : "") + std::to_string(e.info->shape[i]);
    const uint64_t n = e.info->end - e.info->begin;
    for (const std::string& field : {name, dtype_name(e.info->dtype), shape, std::to_string(n)}) {
      h.update(field);
      h.update(&zero, 1);
    }
    const uint8_t* p = e.file->data(*e.info);
    if (n <= 12288) {
      h.update(p, n);
    } else {
      h.update(p, 4096);
      h.update(p + n / 2 - 2048, 4096);
      h.update(p + n - 4096, 4096);
    }
  }
  return kWeightsFingerprintPrefix + h.hex();
}

}  // namespace hyoracle
