// Malformed routing and replay tensors in a dump pair: `hyoracle compare` (with and without
// --model) must end with exit 2 and one line naming the file and the tensor, never a signal, a
// "real routing flip" verdict on ids that are not ids, or a near-tie excuse built on a baseline
// score outside σ's range.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "io/dump.h"
#include "tests/common/dump_edit.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {
namespace {

constexpr double kTimeLimitSeconds = 60;

// Copies the dump at src to dst (floats stored as F64 like the exact reference writes them),
// after `edit` changed the tensors it names.
void rewrite_dump(const std::string& src, const std::string& dst, const std::function<void(test::DumpEntries&)>& edit) {
  test::rewrite_dump_entries(src, dst, DType::F64, edit);
}

// The tiny checkpoint in dir/ck and its exact dump of 5 tokens in dir/base.
void make_pair_base(const TempDir& dir) {
  write_good_checkpoint(dir / "ck");
  const Outcome o = run_hyoracle(
      {"run", "--model", dir / "ck", "--tokens", "1,2,3,4,5", "--precision", "exact", "--dump", dir / "base"},
      kTimeLimitSeconds);
  ASSERT_EQ(o.status, 0) << o.err;
}

// Runs compare and expects exit 2 with one line on stderr naming `file_part` and `tensor`.
void expect_refused(const std::vector<std::string>& args, const std::string& file_part, const std::string& tensor,
                    const std::string& what) {
  const Outcome o = run_hyoracle(args, kTimeLimitSeconds);
  EXPECT_EQ(o.signal, 0) << what << ": " << o.err;
  EXPECT_FALSE(o.timed_out) << what;
  EXPECT_EQ(o.status, 2) << what << ": " << o.out << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << what << ": " << o.err;
  EXPECT_NE(o.err.find(file_part), std::string::npos) << what << ": " << o.err;
  EXPECT_NE(o.err.find(tensor), std::string::npos) << what << ": " << o.err;
}

struct RoutingCase {
  const char* what;
  bool edit_baseline;  // else the target
  std::function<void(test::DumpEntries&)> edit;
  const char* tensor;  // the tensor the message must name
};

TEST(CatalogueRouting, MalformedRoutingTensorsAreRefusedNamingFileAndTensor) {
  TempDir dir;
  make_pair_base(dir);
  const std::string ids = "layers.1.moe.topk_ids";
  const std::vector<RoutingCase> cases = {
      {"baseline expert id 10^9", true, [&](auto& a) { a[ids].i[0] = 1000000000; }, "layers.1.moe.topk_ids"},
      {"target expert id 10^9", false, [&](auto& a) { a[ids].i[0] = 1000000000; }, "layers.1.moe.topk_ids"},
      {"target negative expert id", false, [&](auto& a) { a[ids].i[1] = -1; }, "layers.1.moe.topk_ids"},
      {"target expert twice in a row", false, [&](auto& a) { a[ids].i[1] = a[ids].i[0]; }, "layers.1.moe.topk_ids"},
      {"baseline ids with more rows than the scores", true,
       [&](auto& a) {
         test::DumpEntry& e = a[ids];
         const int64_t k = e.shape[1];
         e.i.insert(e.i.end(), e.i.begin(), e.i.begin() + k);
         e.shape[0] += 1;
       },
       "layers.1.moe.topk_ids"},
      {"target ids with k = 0", false,
       [&](auto& a) {
         a[ids].shape[1] = 0;
         a[ids].i.clear();
       },
       "layers.1.moe.topk_ids"},
      {"target weights smaller than the ids", false,
       [&](auto& a) {
         test::DumpEntry& e = a["layers.1.moe.topk_weights"];
         e.shape[1] -= 1;
         e.f.resize(size_t(e.shape[0] * e.shape[1]));
       },
       "layers.1.moe.topk_weights"},
      {"target scalar ids", false,
       [&](auto& a) {
         a[ids].shape = {};
         a[ids].i.resize(1);
       },
       "layers.1.moe.topk_ids"},
      {"baseline infinite score", true, [&](auto& a) { a["layers.1.moe.scores"].f[3] = INFINITY; },
       "layers.1.moe.scores"},
      {"baseline score above 1", true, [&](auto& a) { a["layers.1.moe.scores"].f[3] = 1.5; }, "layers.1.moe.scores"},
      {"baseline negative margin", true, [&](auto& a) { a["layers.1.moe.topk_margin"].f[0] = -0.25; },
       "layers.1.moe.topk_margin"},
  };
  int n = 0;
  for (const RoutingCase& c : cases) {
    const std::string bad = dir / ("bad" + std::to_string(n++));
    rewrite_dump(dir / "base", bad, c.edit);
    const std::string base = dir / "base";
    const std::string b = c.edit_baseline ? bad : base, t = c.edit_baseline ? base : bad;
    const std::string file = bad + "/activations.safetensors";  // the edited side, baseline or target
    expect_refused({"compare", b, t, "-q"}, file, c.tensor, std::string(c.what) + " (no --model)");
    expect_refused({"compare", b, t, "-q", "--model", dir / "ck"}, file, c.tensor, std::string(c.what) + " (--model)");
  }
}

// A replay input with a zero-width head dimension (a k_rope of shape [T, 0]) divided by zero
// heads once; it is a shape error of that tensor.
TEST(CatalogueRouting, ReplayInputOfZeroWidthIsRefused) {
  TempDir dir;
  make_pair_base(dir);
  rewrite_dump(dir / "base", dir / "bad", [](auto& a) {
    test::DumpEntry& e = a["layers.0.attn.k_rope"];
    e.shape = {e.shape[0], 0};
    e.f.clear();
  });
  expect_refused({"compare", dir / "base", dir / "bad", "-q", "--model", dir / "ck"},
                 dir / "bad/activations.safetensors", "layers.0.attn.k_rope", "k_rope [T, 0]");
}

}  // namespace
}  // namespace hyoracle::hostile
