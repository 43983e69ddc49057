#include "tests/compare/compare_helpers.h"

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

}  // namespace hyoracle::testing
