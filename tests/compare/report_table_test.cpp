// report_csv and report_jsonl (compare/report_table.cpp) on a Report built here
// (tests/compare/report_test_util.h): one row per tensor, compared or skipped, in order, and the
// values read back through an independent RFC 4180 parser and a JSON parser.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "compare/compare.h"
#include "tests/compare/report_test_util.h"

using namespace hyoracle;
using namespace hyoracle::compare;
using namespace hyoracle::testing;

namespace {

// RFC 4180 records of a CSV text (quoted fields with doubled quotes and embedded line breaks).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(field), field.clear();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      row.push_back(field), field.clear();
      rows.push_back(row), row.clear();
      ++i;
    } else {
      field += c;
    }
  }
  return rows;
}

}  // namespace

TEST(Reports, CsvAndJsonLinesHaveOneRowPerTensorAndRoundTrip) {
  const Synthetic s = synthetic(4, 3, {{1, 2, 3}, {2, 0, 1}}, 5, 4);
  const size_t rows = s.r.tensors.size() + 5;
  const auto csv = parse_csv(report_csv(s.r));
  ASSERT_EQ(csv.size(), rows + 1);
  const std::vector<std::string>& head = csv[0];
  auto col = [&](const std::string& c) { return size_t(std::find(head.begin(), head.end(), c) - head.begin()); };
  ASSERT_LT(col("verdict"), head.size());
  ASSERT_LT(col("reason"), head.size());
  size_t fails = 0, skipped = 0;
  for (size_t i = 1; i < csv.size(); ++i) {
    ASSERT_EQ(csv[i].size(), head.size()) << i;
    fails += csv[i][col("verdict")] == "fail";
    skipped += csv[i][col("verdict")] == "skipped";
  }
  EXPECT_EQ(fails, 2u);
  EXPECT_EQ(skipped, 5u);
  // Row order and values: the tensors in order, then the skipped ones.
  for (size_t i = 0; i < s.r.tensors.size(); ++i) {
    EXPECT_EQ(csv[i + 1][col("name")], s.r.tensors[i].name);
    EXPECT_EQ(csv[i + 1][col("reason")], s.r.tensors[i].reason);  // commas and quotes survive
    EXPECT_EQ(csv[i + 1][col("step")], std::to_string(s.r.tensors[i].step));
    EXPECT_EQ(csv[i + 1][col("layer")], s.r.tensors[i].layer >= 0 ? std::to_string(s.r.tensors[i].layer) : "");
    EXPECT_NEAR(std::stod(csv[i + 1][col("budget_units")]), s.r.tensors[i].budget_units, 1e-8);
  }
  EXPECT_EQ(csv.back()[col("name")], "layers.4.moe.topk_margin");
  EXPECT_EQ(csv.back()[col("layer")], "4");
  std::istringstream in(report_jsonl(s.r));
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (n < s.r.tensors.size()) {
      EXPECT_EQ(j.at("name"), s.r.tensors[n].name);
      EXPECT_EQ(j.at("verdict"), verdict_name(s.r.tensors[n].verdict));
      EXPECT_EQ(j.at("reason"), s.r.tensors[n].reason);
      if (s.r.tensors[n].op != "routing") {
        EXPECT_NEAR(j.at("one_minus_cosine").get<double>(), 1e-7, 1e-12);
      }
    } else {
      EXPECT_EQ(j.at("verdict"), "skipped");
      EXPECT_TRUE(j.at("judged_error").is_null());
    }
    ++n;
  }
  EXPECT_EQ(n, rows);
}
