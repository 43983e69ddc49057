// The committed fixtures (fixtures/tiny-*/): HF transformers dumps made on a GPU machine against
// the reference's exact dump of the same checkpoint and prompt. Honest HF f64/f32/bf16 must pass;
// each planted bug must fail and name bugs.json's expected first divergence. Also through the CLI.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "compare/compare.h"
#include "tests/compare/compare_helpers.h"

using namespace hyoracle;
using namespace hyoracle::compare;

namespace {

std::string fixture(const std::string& name) { return std::string(HYORACLE_SOURCE_DIR) + "/fixtures/" + name; }

// The reference's exact dump of the fixture (prompt and N from golden/hf-f64), made once.
std::string exact_dump(const std::string& name) {
  static std::map<std::string, std::string> made;
  if (made.count(name)) return made[name];
  const std::string fx = fixture(name), out = hyoracle::testing::temp_dir("fixture_" + name);
  const Dump golden(fx + "/golden/hf-f64");
  const int64_t n = golden.has("generate.tokens") ? golden.info("generate.tokens").shape[0] : 0;
  // Decode steps are recorded too (generate_greedy with a sink), as in `hyoracle run --dump-steps`.
  hyoracle::testing::reference_dump<double>(Checkpoint(fx), golden.token_ids(), Precision::exact, out, DType::F64, "float64", n);
  return made[name] = out;
}

std::vector<std::string> bugs_of(const std::string& name) {
  std::vector<std::string> v;
  const std::string dir = fixture(name) + "/bugs";
  if (!std::filesystem::exists(dir)) return v;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_directory()) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

std::string expected_divergence(const std::string& name, const std::string& bug) {
  std::ifstream in(fixture(name) + "/bugs/bugs.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  const std::string e = j.at(bug).at("expected_first_divergence").get<std::string>();
  return e.substr(0, e.find(' '));  // "layers.1.moe.topk_ids (first MoE layer ...)"
}

class Fixtures : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(fixture(GetParam()) + "/golden/hf-bf16"))
      GTEST_SKIP() << "fixtures/" << GetParam() << "/golden not present";
  }
};

}  // namespace

TEST_P(Fixtures, HonestHfDumpsPass) {
  CompareOptions o;
  o.model_dir = fixture(GetParam());
  for (const std::string g : {"hf-f64", "hf-f32", "hf-bf16"}) {
    const Report r = compare_dirs(exact_dump(GetParam()), fixture(GetParam()) + "/golden/" + g, o);
    EXPECT_EQ(r.verdict, Verdict::pass) << g << "\n" << terminal_summary(r);
    EXPECT_TRUE(r.teacher_forced);
    EXPECT_GT(r.tensors.size(), 50u);  // prefill and decode steps were compared
    EXPECT_TRUE(r.missing_required.empty());
  }
}

TEST_P(Fixtures, EachPlantedBugFailsAtItsFirstDivergence) {
  const auto bugs = bugs_of(GetParam());
  ASSERT_GE(bugs.size(), 4u);
  CompareOptions o;
  o.model_dir = fixture(GetParam());
  for (const std::string& bug : bugs) {
    const Report r = compare_dirs(exact_dump(GetParam()), fixture(GetParam()) + "/bugs/" + bug, o);
    EXPECT_EQ(r.verdict, Verdict::fail) << bug << "\n" << terminal_summary(r);
    ASSERT_TRUE(r.first_divergence.has_value()) << bug;
    EXPECT_EQ(r.first_divergence->tensor, expected_divergence(GetParam(), bug)) << bug << "\n" << terminal_summary(r);
    // Tokens that part after a real engine error are not labelled a near-tie (the margin test
    // assumes honest activations upstream): the report names the failure instead.
    if (r.logits.first_token_divergence >= 0) {
      EXPECT_EQ(r.logits.divergence_after_failure, r.first_divergence->tensor) << bug;
      EXPECT_EQ(terminal_summary(r).find("(near-tie)"), std::string::npos) << bug << "\n" << terminal_summary(r);
    }
  }
}

// The CLI on one honest and one planted case: exit codes and the reports it writes.
TEST_P(Fixtures, CommandLineExitCodes) {
  const std::string fx = fixture(GetParam()), out = hyoracle::testing::temp_dir("cli_" + GetParam());
  const std::string base = std::string(HYORACLE_BINARY) + " compare " + exact_dump(GetParam()) + " ";
  const std::string m = " --model " + fx + " -q";
  EXPECT_EQ(WEXITSTATUS(std::system((base + fx + "/golden/hf-bf16" + m + " --json " + out + "/r.json --html " + out +
                                     "/r.html --markdown " + out + "/r.md").c_str())),
            0);
  EXPECT_TRUE(std::filesystem::file_size(out + "/r.html") > 1000);
  EXPECT_EQ(WEXITSTATUS(std::system((base + fx + "/bugs/oproj-5pct" + m).c_str())), 1);
  EXPECT_EQ(WEXITSTATUS(std::system((base + out + "/missing 2>/dev/null" + m).c_str())), 2);
}

INSTANTIATE_TEST_SUITE_P(Committed, Fixtures, ::testing::Values("tiny-hy3", "tiny-mt2"));
