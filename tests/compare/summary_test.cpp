// terminal_summary (compare/summary.cpp) on a Report built here (tests/compare/report_test_util.h):
// failed decode-step tensors named, skipped tensors grouped by reason, no -1 sentinels.
#include <gtest/gtest.h>

#include <string>

#include "compare/compare.h"
#include "tests/compare/report_test_util.h"

using namespace hyoracle;
using namespace hyoracle::compare;
using namespace hyoracle::testing;

TEST(Reports, TerminalSummaryNamesDecodeStepsAndGroupsSkipped) {
  const Synthetic s = synthetic(2, 3, {{2, 1, 4}}, 171, 4);
  const std::string t = terminal_summary(s.r);
  EXPECT_NE(t.find(s.failed[0] + "  FAIL"), std::string::npos);
  EXPECT_NE(t.find("skipped 114 (e.g. layers.1.moe.topk_margin)"), std::string::npos);
  EXPECT_NE(t.find("skipped 57 (e.g. layers.0.moe.topk_margin)"), std::string::npos);
  EXPECT_EQ(minus_one(t), "");
}
