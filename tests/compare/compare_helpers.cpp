#include "tests/compare/compare_helpers.h"

namespace hyoracle::testing {

void rewrite_dump(const std::string& src, const std::string& dst, DType store, const std::string& dtype_name,
                  const std::function<void(const std::string&, Tensor<double>&)>& edit) {
  const Dump d(src);
  DumpWriter w(store);
  for (const std::string& n : d.names()) {
    if (!dtype_is_float(d.info(n).dtype)) {
      w.put_ints(n, d.info(n).shape, d.read_ints(n));
      continue;
    }
    Tensor<double> t = d.read(n);
    edit(n, t);
    w.put(n, t);
  }
  nlohmann::ordered_json m = nlohmann::ordered_json::parse(d.manifest().dump());
  m["producer"]["dtype"] = dtype_name;
  m["producer"]["name"] = "test-rewrite";
  w.write(dst, m);
}

}  // namespace hyoracle::testing
