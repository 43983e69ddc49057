// report_json (compare/report_json.cpp) on a Report built here (tests/compare/report_test_util.h):
// every skipped tensor kept, and grouped by reason.
#include <gtest/gtest.h>

#include "compare/compare.h"
#include "tests/compare/report_test_util.h"

using namespace hyoracle;
using namespace hyoracle::compare;
using namespace hyoracle::testing;

TEST(Reports, JsonKeepsSkippedAndGroupsThem) {
  const Synthetic s = synthetic(1, 1, {}, 171, 4);
  const auto j = report_json(s.r);
  EXPECT_EQ(j.at("skipped").size(), 171u);
  ASSERT_EQ(j.at("skipped_by_reason").size(), 2u);
  EXPECT_EQ(j.at("skipped_by_reason")[0].at("count"), 57);  // i = 0 comes first
  EXPECT_EQ(j.at("skipped_by_reason")[1].at("count"), 114);
  EXPECT_EQ(j.at("skipped_by_reason")[1].at("examples").size(), 3u);
}
