// The catalogue of bad inputs: every case runs the real `hyoracle` binary on one defect and
// asserts exit status 2, exactly one stderr line "hyoracle: error: ..." naming the file and the
// field or tensor, no crash, no hang and no memory beyond what the valid part needs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "tests/hostile/catalogue.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {
namespace {

// A bad input must be refused within this time (the tiny checkpoint loads in milliseconds; the
// margin is for sanitizer builds on a loaded machine).
constexpr double kTimeLimitSeconds = 60;
// Peak memory any refusal may use: the tiny checkpoint is 0.5 MB and the binary itself needs
// tens of MB (several times that under ASan). A reader that believed a claimed size (2^60
// elements, a 2^40-byte header) would blow far past this.
constexpr int64_t kMemoryLimitKb = 768 * 1024;

std::vector<Case> all_cases() {
  const std::pair<const char*, std::vector<Case> (*)()> parts[] = {
      {"Safetensors_", safetensors_cases}, {"Checkpoint_", checkpoint_cases}, {"Config_", config_cases}, {"Dump_", dump_cases}};
  std::vector<Case> all;
  for (const auto& [prefix, cases] : parts)
    for (Case& c : cases()) {
      c.name = prefix + c.name;
      all.push_back(std::move(c));
    }
  return all;
}

class Catalogue : public ::testing::TestWithParam<Case> {};

TEST_P(Catalogue, RefusedWithOneLineNamingFileAndField) {
  const Case& c = GetParam();
  TempDir dir;
  const std::vector<std::string> args = c.setup(dir.path());
  const Outcome o = run_hyoracle(args, kTimeLimitSeconds);
  ASSERT_FALSE(o.timed_out) << "hung for " << kTimeLimitSeconds << " s";
  ASSERT_EQ(o.signal, 0) << "killed by signal " << o.signal << "; stderr:\n" << o.err;
  EXPECT_EQ(o.status, 2) << "stderr:\n" << o.err;
  const std::string prefix = "hyoracle: error: ";
  EXPECT_EQ(o.err.rfind(prefix, 0), 0u) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "not exactly one line:\n" << o.err;
  ASSERT_FALSE(o.err.empty());
  EXPECT_EQ(o.err.back(), '\n');
  // Printable ASCII only: whatever bytes the file held, the message stays one clean line.
  for (char ch : o.err.substr(0, o.err.size() - 1))
    EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << "unprintable byte " << int(static_cast<unsigned char>(ch)) << " in " << o.err;
  const std::string where = c.file.empty() ? dir.path() : dir / c.file;
  EXPECT_NE(o.err.find(where), std::string::npos) << "does not name " << where << ": " << o.err;
  EXPECT_NE(o.err.find(c.field), std::string::npos) << "does not name " << c.field << ": " << o.err;
  EXPECT_LT(o.max_rss_kb, kMemoryLimitKb) << "peak memory " << o.max_rss_kb << " kB";
}

INSTANTIATE_TEST_SUITE_P(BadInputs, Catalogue, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// The catalogue holds at least 30 distinct cases, each with its own name.
TEST(CatalogueSize, AtLeastThirtyDistinctCases) {
  const std::vector<Case> all = all_cases();
  std::set<std::string> names;
  for (const Case& c : all) names.insert(c.name);
  EXPECT_EQ(names.size(), all.size());
  EXPECT_GE(all.size(), 30u);
}

// The good inputs the cases start from are accepted: each failure above is the defect's doing.
TEST(CatalogueBaseline, GoodCheckpointAndDumpAreAccepted) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  Outcome o = run_hyoracle(run_model(dir / "ck"), kTimeLimitSeconds);
  EXPECT_EQ(o.status, 0) << o.err;
  write_good_checkpoint(dir / "sharded", 2);
  o = run_hyoracle(run_model(dir / "sharded"), kTimeLimitSeconds);
  EXPECT_EQ(o.status, 0) << o.err;
  write_good_dump(dir / "d");
  o = run_hyoracle({"run", "--model", dir / "ck", "--tokens-from", dir / "d"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 0) << o.err;
}

// Inf is a value, not a defect of the file: `hyoracle compare` reports it as a failed
// comparison (exit 1), never a pass and never a crash.
TEST(CatalogueCompare, InfInTargetIsAFailedComparison) {
  TempDir dir;
  write_dump_with_logits(dir / "base", {1.0, 2.0, 3.0, 4.0});
  write_dump_with_logits(dir / "inf", {1.0, INFINITY, 3.0, 4.0});
  const Outcome o = run_hyoracle({"compare", dir / "base", dir / "inf"}, kTimeLimitSeconds);
  EXPECT_EQ(o.signal, 0) << o.err;
  EXPECT_EQ(o.status, 1) << o.err;
  const Outcome same = run_hyoracle({"compare", dir / "base", dir / "base"}, kTimeLimitSeconds);
  EXPECT_EQ(same.status, 0) << same.err;
}

// NaN in the target is the engine's failure: exit 1, the first NaN tensor named (file, tensor,
// position) as the first divergence, in the rows before the token divergence and after it.
TEST(CatalogueCompare, NaNInTargetIsAFailureAtThatTensor) {
  TempDir dir;
  write_dump_with_logits(dir / "base", {1.0, 2.0, 3.0, 4.0});
  write_dump_with_logits(dir / "nan", {1.0, std::nan(""), 3.0, 4.0});
  Outcome o = run_hyoracle({"compare", dir / "base", dir / "nan"}, kTimeLimitSeconds);
  EXPECT_EQ(o.signal, 0) << o.err;
  EXPECT_EQ(o.status, 1) << o.out << o.err;
  EXPECT_NE(o.out.find("FIRST DIVERGENCE  logits"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("nan/activations.safetensors: tensor \"logits\" has NaN at [0, 1]"), std::string::npos) << o.out;
  write_dump_with_generation(dir / "gbase", {1, 0, 1}, {0.0, 1.0, 2.0, 1.0, 0.0, 3.0});
  write_dump_with_generation(dir / "gnan", {1, 1, 1}, {0.0, 1.0, 2.0, 2.5, std::nan(""), 3.0});
  // (here the generated tokens already differ, which is the first divergence; the NaN row after
  // it is still a failure, never a pass)
  o = run_hyoracle({"compare", dir / "gbase", dir / "gnan", "--json", dir / "g.json"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 1) << o.out << o.err;
  EXPECT_NE(read_file(dir / "g.json").find("\\\"generate.logits\\\" has NaN"), std::string::npos);
}

// --layers is parsed strictly and checked against the model: a typo or an empty or
// out-of-range range is one line on stderr and exit 2, never a silently different selection.
TEST(CatalogueCompare, LayersOptionIsParsedStrictly) {
  TempDir dir;
  write_dump_with_logits(dir / "base", {1.0, 2.0, 3.0, 4.0});
  for (const char* bad : {"0-2", "1x", "2:1", "3:3", ":", "-1", "1:2:3", " 1", "99999999"}) {
    const Outcome o = run_hyoracle({"compare", dir / "base", dir / "base", "--layers", bad}, kTimeLimitSeconds);
    EXPECT_EQ(o.status, 2) << bad << ": " << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << bad << ": " << o.err;
    EXPECT_NE(o.err.find("--layers"), std::string::npos) << bad << ": " << o.err;
  }
}

// The default required tensor is the model's output, `logits` or `generate.logits` (what the
// SGLang/vLLM converters write); --require adds to it rather than replacing it.
TEST(CatalogueCompare, RequireAddsToTheDefaultWhichAcceptsGenerateLogits) {
  TempDir dir;
  write_dump_with_generation(dir / "g", {1, 0, 1}, {0.0, 1.0, 2.0, 1.0, 0.0, 3.0});
  Outcome o = run_hyoracle({"compare", dir / "g", dir / "g", "-q"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 0) << o.err;
  o = run_hyoracle({"compare", dir / "g", dir / "g", "-q", "--require", "^generate\\.tokens$"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 0) << o.err;
  o = run_hyoracle({"compare", dir / "g", dir / "g", "-q", "--require", "^nope$"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 2) << o.err;
  EXPECT_NE(o.err.find("--require \"^nope$\""), std::string::npos) << o.err;
  // the default stays required next to the added pattern
  write_dump_with_logits(dir / "l", {1.0, 2.0, 3.0, 4.0});
  o = run_hyoracle({"compare", dir / "l", dir / "l", "-q", "--require", "^logits$"}, kTimeLimitSeconds);
  EXPECT_EQ(o.status, 0) << o.err;
}

}  // namespace
}  // namespace hyoracle::hostile
