// Hostile conditions for what hyoracle writes: links planted in or as the output, a full disk,
// two runs writing the same dump, an output that is one of the inputs; and option values that
// must be refused with one line naming the option.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "io/dump.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {
namespace {

constexpr double kTimeLimitSeconds = 60;

// Exit 2 with one line "hyoracle: error: ..." holding every needle.
void expect_refused(const Outcome& o, const std::vector<std::string>& needles) {
  EXPECT_FALSE(o.timed_out);
  EXPECT_EQ(o.signal, 0) << o.err;
  EXPECT_EQ(o.status, 2) << o.err;
  EXPECT_EQ(o.err.rfind("hyoracle: error: ", 0), 0u) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "not exactly one line:\n" << o.err;
  for (const auto& n : needles) EXPECT_NE(o.err.find(n), std::string::npos) << "no \"" << n << "\" in: " << o.err;
}

// `run --dump` with --force: these tests are about what replacing a dump may and may not do.
std::vector<std::string> run_args(const std::string& ck, const std::string& dump, const std::string& tokens = "1,2") {
  return {"run", "--model", ck, "--tokens", tokens, "--dump", dump, "--force"};
}

bool is_link(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

// Without --force, `run --dump` refuses a directory that is not empty (an old dump included)
// and leaves it as it was; an empty or absent one is written.
TEST(Output, NonEmptyDumpDirectoryNeedsForce) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  const std::vector<std::string> plain = {"run", "--model", dir / "ck", "--tokens", "1,2", "--dump", dir / "d"};
  ASSERT_EQ(run_hyoracle(plain, kTimeLimitSeconds).status, 0);
  const std::string before = read_file(dir / "d/manifest.json");
  expect_refused(run_hyoracle({"run", "--model", dir / "ck", "--tokens", "3,4", "--dump", dir / "d"}, kTimeLimitSeconds),
                 {"--dump", dir / "d", "not empty", "--force"});
  EXPECT_EQ(read_file(dir / "d/manifest.json"), before);
  std::filesystem::create_directory(dir / "empty");
  EXPECT_EQ(run_hyoracle({"run", "--model", dir / "ck", "--tokens", "1", "--dump", dir / "empty"}, kTimeLimitSeconds).status, 0);
  EXPECT_EQ(Dump(dir / "empty").token_ids(), (std::vector<int64_t>{1}));
}

// A link planted inside an old dump is replaced with the dump, never written through.
TEST(Output, LinkPlantedInDumpIsNotFollowed) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  write_file(dir / "victim", "precious");
  ASSERT_EQ(run_hyoracle(run_args(dir / "ck", dir / "d"), kTimeLimitSeconds).status, 0);
  ::unlink((dir / "d/activations.safetensors").c_str());
  ASSERT_EQ(::symlink((dir / "victim").c_str(), (dir / "d/activations.safetensors").c_str()), 0);
  const Outcome o = run_hyoracle(run_args(dir / "ck", dir / "d"), kTimeLimitSeconds);
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(read_file(dir / "victim"), "precious");
  EXPECT_FALSE(is_link(dir / "d/activations.safetensors"));
  EXPECT_NO_THROW(Dump(dir / "d"));
}

// A dump directory that is itself a link, or a directory that is not a dump, is refused.
TEST(Output, DumpDirectoryThatIsALinkOrNotADumpIsRefused) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  std::filesystem::create_directory(dir / "elsewhere");
  ASSERT_EQ(::symlink((dir / "elsewhere").c_str(), (dir / "link").c_str()), 0);
  expect_refused(run_hyoracle(run_args(dir / "ck", dir / "link"), kTimeLimitSeconds), {dir / "link", "symbolic link"});
  EXPECT_TRUE(std::filesystem::is_empty(dir / "elsewhere"));
  write_file(dir / "elsewhere/notes.txt", "mine");
  expect_refused(run_hyoracle(run_args(dir / "ck", dir / "elsewhere"), kTimeLimitSeconds),
                 {dir / "elsewhere", "neither empty nor a hyoracle dump"});
  EXPECT_EQ(read_file(dir / "elsewhere/notes.txt"), "mine");
}

// A write that fails (here: the file size limit, as a full disk would) leaves no dump, no
// temporary files and no success message, and exits 2 naming the file.
TEST(Output, FailedWriteLeavesNoDumpAndExits2) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  const Outcome o = run_hyoracle(run_args(dir / "ck", dir / "out/d"), kTimeLimitSeconds, 16 * 1024);
  expect_refused(o, {"activations.safetensors", "write failed"});
  EXPECT_EQ(o.out.find("  dump "), std::string::npos) << o.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "out/d"));
  EXPECT_TRUE(std::filesystem::is_empty(dir / "out"));
  // An old dump there stays as it was.
  ASSERT_EQ(run_hyoracle(run_args(dir / "ck", dir / "out/d"), kTimeLimitSeconds).status, 0);
  const std::string before = read_file(dir / "out/d/manifest.json");
  expect_refused(run_hyoracle(run_args(dir / "ck", dir / "out/d", "3,4,5"), kTimeLimitSeconds, 16 * 1024), {"write failed"});
  EXPECT_EQ(read_file(dir / "out/d/manifest.json"), before);
  EXPECT_EQ(Dump(dir / "out/d").token_ids(), (std::vector<int64_t>{1, 2}));
}

// Two runs writing the same dump at once leave one complete dump of either run.
TEST(Output, ConcurrentWritersLeaveOneCompleteDump) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  for (int round = 0; round < 3; ++round) {
    Outcome a, b;
    std::thread ta([&] { a = run_hyoracle(run_args(dir / "ck", dir / "d", "1,2"), kTimeLimitSeconds); });
    std::thread tb([&] { b = run_hyoracle(run_args(dir / "ck", dir / "d", "7,8,9"), kTimeLimitSeconds); });
    ta.join();
    tb.join();
    EXPECT_EQ(a.status, 0) << a.err;
    EXPECT_EQ(b.status, 0) << b.err;
    const Dump d(dir / "d");  // verifies sizes and checksums
    const std::vector<int64_t> ids = d.token_ids();
    EXPECT_TRUE(ids == (std::vector<int64_t>{1, 2}) || ids == (std::vector<int64_t>{7, 8, 9}));
    EXPECT_EQ(d.read("embed").shape[0], int64_t(ids.size()));
  }
  // No temporary directories are left next to the dump.
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

// An output that is, lies inside or contains an input is refused before anything is written.
TEST(Output, OutputThatIsAnInputIsRefused) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  ASSERT_EQ(run_hyoracle(run_args(dir / "ck", dir / "d"), kTimeLimitSeconds).status, 0);
  const std::string manifest = read_file(dir / "d/manifest.json");
  expect_refused(run_hyoracle({"run", "--model", dir / "ck", "--tokens-from", dir / "d", "--dump", dir / "d"}), {"--dump", "input"});
  expect_refused(run_hyoracle({"run", "--model", dir / "ck", "--tokens", "1", "--dump", dir / "ck"}), {"--dump", "input"});
  expect_refused(run_hyoracle({"layer", "--model", dir / "ck", "--layer", "0", "--input", dir / "d", "--dump", dir / "d"}),
                 {"--dump", dir / "d"});
  expect_refused(run_hyoracle({"layer", "--model", dir / "ck", "--layer", "0", "--input", dir / "d", "--compare", dir / "d/.",
                               "--dump", dir / "d"}),
                 {"--dump"});
  expect_refused(run_hyoracle({"compare", dir / "d", dir / "d", "--json", dir / "d/report.json"}), {"--json", "input"});
  expect_refused(run_hyoracle({"compare", dir / "d", dir / "d", "--markdown", dir / "d/manifest.json"}), {"--markdown"});
  ASSERT_EQ(::symlink((dir / "victim").c_str(), (dir / "report-link").c_str()), 0);
  expect_refused(run_hyoracle({"compare", dir / "d", dir / "d", "--html", dir / "report-link"}), {"--html", "symbolic link"});
  EXPECT_FALSE(std::filesystem::exists(dir / "victim"));
  std::filesystem::create_directory(dir / "fx");
  expect_refused(run_hyoracle({"check", dir / "fx", dir / "d", "--junit", dir / "fx/junit.xml"}), {"--junit", "input"});
  expect_refused(run_hyoracle({"check", dir / "fx", dir / "d", "--json", dir / "d"}), {"--json", "input"});
  EXPECT_EQ(read_file(dir / "d/manifest.json"), manifest);
  // A report next to the inputs is fine, and written whole.
  const Outcome ok = run_hyoracle({"compare", dir / "d", dir / "d", "--json", dir / "report.json"});
  EXPECT_NE(read_file(dir / "report.json").find("\"verdict\""), std::string::npos) << ok.err;
}

// `check --engine-cmd` needs a new dump: a non-empty --dump-dir is refused, and a command that
// exits 0 without writing a dump is a failure, not a verdict on an old dump.
TEST(Output, CheckEngineCommandMustWriteANewDump) {
  TempDir dir;
  // A fixture made for the test: `hyoracle fixture` with the tiny preset.
  ASSERT_EQ(run_hyoracle({"fixture", "--preset", "tiny-hy3", "--out", dir / "fx", "--threads", "1"}, 300).status, 0);
  write_good_checkpoint(dir / "ck");
  ASSERT_EQ(run_hyoracle(run_args(dir / "ck", dir / "old"), kTimeLimitSeconds).status, 0);
  // An old dump there is cleared (a CI rerun), so a command that writes nothing is caught.
  expect_refused(run_hyoracle({"check", dir / "fx", "--engine-cmd", "true {dump}", "--dump-dir", dir / "old"}),
                 {"--engine-cmd", "wrote no dump"});
  EXPECT_FALSE(std::filesystem::exists(dir / "old/manifest.json"));
  expect_refused(run_hyoracle({"check", dir / "fx", "--engine-cmd", "true {dump}", "--dump-dir", dir / "empty"}),
                 {"--engine-cmd", "wrote no dump"});
  // Anything else there is refused, and left alone.
  std::filesystem::create_directory(dir / "mine");
  write_file(dir / "mine/notes.txt", "mine");
  expect_refused(run_hyoracle({"check", dir / "fx", "--engine-cmd", "true {dump}", "--dump-dir", dir / "mine"}),
                 {"--dump-dir", "not an empty directory nor an old dump"});
  EXPECT_EQ(read_file(dir / "mine/notes.txt"), "mine");
}

// Option values outside what the option means are refused with one line naming the option.
TEST(Output, MalformedOptionValuesAreRefused) {
  TempDir dir;
  write_good_checkpoint(dir / "ck");
  expect_refused(run_hyoracle({"run", "--model", dir / "ck", "--tokens", " 1,+2"}), {"--tokens", "\" 1\""});
  expect_refused(run_hyoracle({"run", "--model", dir / "ck", "--tokens", "1,+2"}), {"--tokens", "\"+2\""});
  expect_refused(run_hyoracle({"run", "--model", dir / "ck", "--tokens", "1,,2"}), {"--tokens"});
  expect_refused(run_hyoracle({"run", "--model", dir / "ck", "--tokens", "99999999999999999999"}), {"--tokens"});
  ASSERT_EQ(run_hyoracle(run_args(dir / "ck", dir / "d"), kTimeLimitSeconds).status, 0);
  expect_refused(run_hyoracle({"compare", dir / "d", dir / "d", "--threads", "-5"}), {"--threads"});
  expect_refused(run_hyoracle({"compare", dir / "d", dir / "d", "--threads", "100000"}), {"--threads"});
  expect_refused(run_hyoracle({"fixture", "--preset", "tiny-hy3", "--out", dir / "fx", "--linear-gain", "nan"}), {"linear-gain"});
  expect_refused(run_hyoracle({"fixture", "--preset", "tiny-hy3", "--out", dir / "fx", "--vocab", "4194304", "--hidden", "4096"}),
                 {"MB more than the limit"});
  EXPECT_FALSE(std::filesystem::exists(dir / "fx/model.safetensors"));
}

}  // namespace
}  // namespace hyoracle::hostile
