#include "tests/compare/compare_helpers.h"

#include <cstring>
#include <stdexcept>

#include "io/safetensors.h"
#include "tests/common/dump_edit.h"

namespace hyoracle::testing {

void rewrite_dump(const std::string& src, const std::string& dst, DType store, const std::string& dtype_name,
                  const std::function<void(const std::string&, Tensor<double>&)>& edit) {
  test::rewrite_dump_entries(
      src, dst, store,
      [&](test::DumpEntries& all) {
        for (auto& [n, e] : all) {
          if (e.ints) continue;
          Tensor<double> t(e.shape, e.f);
          edit(n, t);
          e.shape = t.shape;
          e.f = std::move(t.data);
        }
      },
      [&](nlohmann::ordered_json& m) {
        m["producer"]["dtype"] = dtype_name;
        m["producer"]["name"] = "test-rewrite";
      });
}

void copy_with_edited_scale(const std::string& src, const std::string& dst, const std::string& name,
                            const std::function<void(std::vector<float>&, const std::vector<int64_t>&)>& edit) {
  std::filesystem::create_directories(dst);
  std::filesystem::copy_file(src + "/config.json", dst + "/config.json");
  const SafetensorsFile f(src + "/model.safetensors");
  std::vector<RawTensor> out;
  bool found = false;
  for (const TensorInfo& t : f.tensors()) {
    std::vector<uint8_t> bytes(f.data(t), f.data(t) + (t.end - t.begin));
    if (t.name == name) {
      found = true;
      if (t.dtype != DType::F32) throw std::runtime_error(name + " is not F32");
      std::vector<float> v(size_t(t.numel()));
      std::memcpy(v.data(), bytes.data(), bytes.size());
      edit(v, t.shape);
      std::memcpy(bytes.data(), v.data(), bytes.size());
    }
    out.push_back({t.name, t.dtype, t.shape, std::move(bytes)});
  }
  if (!found) throw std::runtime_error(name + " is not in " + src);
  write_safetensors(dst + "/model.safetensors", out, f.metadata());
}

}  // namespace hyoracle::testing
