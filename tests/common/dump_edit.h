// dump_edit.h: rewriting a dump with some tensors changed, for tests that plant a bug or a
// malformed tensor in an otherwise honest dump. Nothing here computes an expected value.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dump.h"

namespace hyoracle::test {

// One tensor of a dump as editable data: floats as doubles, integer tensors (ids) as int64.
struct DumpEntry {
  bool ints = false;
  DType stored = DType::F64;  // the dtype the source dump stores it in
  std::vector<int64_t> shape;
  std::vector<double> f;
  std::vector<int64_t> i;
};
using DumpEntries = std::map<std::string, DumpEntry>;

// Copies the dump at src to dst in the same tensor order, floats stored as `store`, after `edit`
// changed (or erased) entries and `edit_manifest` the manifest ("files" and "file_checks" are
// written anew). The whole dump is held in memory: for test-sized dumps.
inline void rewrite_dump_entries(const std::string& src, const std::string& dst, DType store,
                                 const std::function<void(DumpEntries&)>& edit,
                                 const std::function<void(nlohmann::ordered_json&)>& edit_manifest = {}) {
  const Dump d(src);
  DumpEntries all;
  for (const std::string& n : d.names()) {
    DumpEntry e;
    e.shape = d.info(n).shape;
    e.ints = !dtype_is_float(d.info(n).dtype);
    e.stored = d.info(n).dtype;
    if (e.ints) e.i = d.read_ints(n);
    else e.f = d.read(n).data;
    all[n] = std::move(e);
  }
  edit(all);
  DumpWriter w(store);
  for (const std::string& n : d.names()) {
    const auto it = all.find(n);
    if (it == all.end()) continue;  // erased by the edit
    const DumpEntry& e = it->second;
    if (e.ints) w.put_ints(n, e.shape, e.i, e.stored);
    else w.put(n, Tensor<double>(e.shape, e.f));
  }
  nlohmann::ordered_json m = nlohmann::ordered_json::parse(d.manifest().dump());
  m.erase("files");
  m.erase("file_checks");
  if (edit_manifest) edit_manifest(m);
  w.write(dst, m);
}

}  // namespace hyoracle::test
