// Hostile inputs to `hyoracle compare` that are not a bad dump: rules files (strict JSON, patterns
// that make backtracking matchers run for minutes) and dumps it cannot judge under -q.
#include <gtest/gtest.h>

#include <algorithm>

#include "io/config.h"
#include "io/dump.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {
namespace {

// Generous: the pattern cases finish in milliseconds; a backtracking matcher takes minutes.
constexpr double kTimeLimitSeconds = 20;

std::string rules_with(const std::string& pattern) {
  return nlohmann::json({{"rules", {{{"match", pattern}, {"max", 1e-3}, {"reason", "test"}}}}}).dump();
}

// The rules file goes through the strict JSON reader: a second "max" must not silently win.
TEST(CompareInput, RulesFileWithDuplicateKeyIsRefused) {
  TempDir dir;
  write_dump_with_logits(dir / "d", {1.0, 2.0, 3.0, 4.0});
  write_file(dir / "rules.json", R"({"rules": [{"match": "^logits$", "max": 0, "reason": "r", "max": 1e300}]})");
  const Outcome o = run_hyoracle({"compare", dir / "d", dir / "d", "--rules", dir / "rules.json"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 2) << o.err;
  EXPECT_NE(o.err.find(dir / "rules.json"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("duplicate key \"max\""), std::string::npos) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  write_file(dir / "bom.json", "\xEF\xBB\xBF" + rules_with("^logits$"));
  const Outcome bom = run_hyoracle({"compare", dir / "d", dir / "d", "--rules", dir / "bom.json"}, kTimeLimitSeconds);
  EXPECT_EQ(bom.status, 2) << bom.err;
  EXPECT_NE(bom.err.find("byte order mark"), std::string::npos) << bom.err;
}

// Patterns on which std::regex backtracks for minutes are matched in linear time, with the right
// answer: the logits pass under the rule's limit (or, when the rule does not match, the derived one).
TEST(CompareInput, BacktrackingRulePatternsFinish) {
  TempDir dir;
  write_dump_with_logits(dir / "d", {1.0, 2.0, 3.0, 4.0});
  std::string dot_opt, alt, stars;
  for (int k = 0; k < 30; ++k) dot_opt += ".?", alt += "(.|.)";
  for (int k = 0; k < 6; ++k) stars += "(.*)";
  for (const std::string& p : {dot_opt + std::string(30, 'a'), "^" + alt + "$", stars + "!", std::string("(a*)*b")}) {
    write_file(dir / "rules.json", rules_with(p));
    const Outcome o = run_hyoracle({"compare", dir / "d", dir / "d", "--rules", dir / "rules.json"}, kTimeLimitSeconds);
    EXPECT_FALSE(o.timed_out) << p;
    EXPECT_EQ(o.status, 0) << p << ": " << o.err;
  }
  // Unsupported syntax is one line naming the file, the entry and the field.
  write_file(dir / "rules.json", rules_with("(a)\\1"));
  const Outcome o = run_hyoracle({"compare", dir / "d", dir / "d", "--rules", dir / "rules.json"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 2) << o.err;
  EXPECT_NE(o.err.find(dir / "rules.json" + ": rules[0]: field \"match\""), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("backreference"), std::string::npos) << o.err;
}

// An incomplete comparison always says why on stderr, also under -q (which prints no summary).
TEST(CompareInput, IncompleteUnderQuietSaysWhy) {
  TempDir dir;
  const ModelConfig c = parse_config(nlohmann::json::parse(good_config().dump()), "config.json");
  DumpWriter w;
  w.put_ints("input_ids", {2}, {1, 2}, DType::I64);
  w.put_ints("logits", {2, 2}, {1, 2, 3, 4}, DType::I64);
  w.write(dir / "d", make_manifest(DumpProducer{}, c, "tiny", {1, 2}));
  const Outcome o = run_hyoracle({"compare", "-q", dir / "d", dir / "d"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 2) << o.err;
  EXPECT_EQ(o.err.rfind("hyoracle: error: ", 0), 0u) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  EXPECT_NE(o.err.find("\"logits\""), std::string::npos) << o.err;
}

}  // namespace
}  // namespace hyoracle::hostile
