// report_markdown (compare/report_markdown.cpp) on Reports built here
// (tests/compare/report_test_util.h): the size bound on an 80-layer × 9-step report with its
// anchors, caps and layer × step table, and the hard cap's cut line.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <tuple>

#include "compare/compare.h"
#include "compare/report_view.h"
#include "tests/compare/report_test_util.h"

using namespace hyoracle;
using namespace hyoracle::compare;
using namespace hyoracle::testing;

TEST(Reports, MarkdownOf80LayersAnd9StepsStaysUnderOneMebibyte) {
  std::set<std::tuple<int64_t, int64_t, size_t>> fail_at;
  for (int64_t i = 0; i < 40; ++i) fail_at.insert({i % 9, (i * 7) % 80, size_t(i % 20)});
  const Synthetic s = synthetic(80, 9, fail_at, 171, 64);
  ASSERT_EQ(s.failed.size(), fail_at.size());
  const std::string md = report_markdown(s.r);
  RecordProperty("markdown_bytes", std::to_string(md.size()));
  EXPECT_LT(md.size(), size_t(1) << 20);
  for (const std::string& name : s.failed) EXPECT_EQ(count_of(md, "<a id=\"" + row_anchor(name) + "\"></a>"), 1u) << name;
  // Near-budget rows beyond the cap are counted and the full data named.
  EXPECT_NE(md.find("more such rows left out by the cap"), std::string::npos);
  EXPECT_NE(md.find("the full data is in the JSON report"), std::string::npos);
  EXPECT_NE(md.find("### Tensors not shown in full, per layer"), std::string::npos);
  // The layer × step table: a column per step, a row per layer plus the non-layer row.
  EXPECT_NE(md.find("| layer | prefill | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |"), std::string::npos);
  EXPECT_NE(md.find("| 79 |"), std::string::npos);
  EXPECT_NE(md.find("| non-layer |"), std::string::npos);
  EXPECT_EQ(minus_one(md), "");
  EXPECT_NE(md.find("first difference: none (identical)"), std::string::npos);
  EXPECT_EQ(count_of(md, "- skipped "), 2u);
  EXPECT_NE(md.find("- skipped 114 tensor(s): hyoracle extension"), std::string::npos);
}

TEST(Reports, MarkdownHardCapCutsWithALine) {
  // Every tensor fails with a long reason: the rows alone exceed the cap.
  Synthetic s = synthetic(80, 9, {}, 0, 4);
  for (TensorResult& t : s.r.tensors) {
    t.verdict = Verdict::fail;
    t.budget_units = 2;
    t.reason = std::string(600, 'x');
  }
  const std::string md = report_markdown(s.r);
  EXPECT_LT(md.size(), size_t(1) << 20);
  EXPECT_NE(md.find("**Report cut at 900 KiB:"), std::string::npos);
}
