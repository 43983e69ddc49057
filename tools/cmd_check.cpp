// hyoracle check: the golden-output check for an engine's CI. Compares an engine's dump of a
// fixture's golden prompt with the fixture's exact reference dump under compare's tolerance
// policy for the engine's declared dtype (manifest producer.dtype), prints a one-screen verdict
// and exits 0 pass, 1 fail, 2 incomplete or bad input. Optionally runs the engine itself
// (--engine-cmd) and writes JUnit XML (--junit) and the JSON report (--json).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "tools/commands.h"
#include "compare/compare.h"
#include "tools/compare_options.h"
#include "util/error.h"
#include "tools/fixture_check.h"
#include "tools/fixture_junit.h"
#include "io/output.h"

namespace hyoracle::cli {

namespace {

struct CheckOptions {
  std::string fixture;
  std::string engine_dump;
  std::string engine_cmd;
  std::string dump_dir;
  bool keep = false;  // keep the temporary dump directory --engine-cmd wrote into
  std::string junit;
  std::vector<std::string> require;
  CompareCliOptions shared;  // the options compare has too (compare_options.h)
};

// The temporary directory check made for --engine-cmd's dump: removed when the check ends
// (pass, fail or error) unless --keep, which prints where it is.
class TempDumpDir {
 public:
  TempDumpDir(bool keep, bool quiet) : keep_(keep), quiet_(quiet) {}
  ~TempDumpDir() {
    if (path_.empty()) return;
    if (keep_) {
      if (!quiet_) std::printf("hyoracle check: kept the engine dump in %s (--keep)\n", path_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDumpDir(const TempDumpDir&) = delete;
  TempDumpDir& operator=(const TempDumpDir&) = delete;
  const std::string& make() {
    std::string t = (std::filesystem::temp_directory_path() / "hyoracle-check-XXXXXX").string();
    if (!::mkdtemp(t.data())) fail("cannot create a temporary directory for the engine dump");
    path_ = t;
    return path_;
  }

 private:
  std::string path_;
  bool keep_, quiet_;
};

// Where the engine dump is: the positional argument, or the directory --engine-cmd wrote.
std::string engine_dump_dir(const CheckOptions& o, const fixture::FixtureInfo& f, TempDumpDir& temp) {
  if (!o.engine_cmd.empty() && !o.engine_dump.empty())
    fail("give either ENGINE_DUMP or --engine-cmd, not both");
  if (o.engine_cmd.empty()) {
    if (o.engine_dump.empty()) fail("check: ENGINE_DUMP (or --engine-cmd \"... {dump} ...\") is required");
    return o.engine_dump;
  }
  // The engine must write into an empty directory: a dump left there by an earlier run would
  // otherwise be judged as this run's output. An old dump (it holds manifest.json) is cleared, as
  // a CI job rerun in the same workspace needs; anything else is refused.
  if (!o.dump_dir.empty()) {
    check_output_path(o.dump_dir, "--dump-dir", {o.fixture});
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::exists(o.dump_dir, ec) && (!fs::is_directory(o.dump_dir, ec) || !fs::is_empty(o.dump_dir, ec))) {
      struct stat m {};
      const bool old_dump = fs::is_directory(o.dump_dir, ec) && ::lstat((o.dump_dir + "/manifest.json").c_str(), &m) == 0 &&
                            S_ISREG(m.st_mode);
      if (!old_dump)
        fail("--dump-dir " + o.dump_dir + ": is not an empty directory nor an old dump; the engine's dump must be new "
             "(remove it or name another)");
      for (const auto& e : fs::directory_iterator(o.dump_dir)) fs::remove_all(e.path(), ec);  // links removed, not followed
      if (!fs::is_empty(o.dump_dir, ec)) fail("--dump-dir " + o.dump_dir + ": cannot clear the old dump there");
    }
  }
  const std::string dir = o.dump_dir.empty() ? temp.make() : o.dump_dir;
  const std::string cmd = fixture::expand_engine_cmd(o.engine_cmd, f, dir);
  if (!o.shared.verbosity.quiet) std::printf("hyoracle check: running the engine: %s\n", cmd.c_str());
  std::fflush(stdout);
  const int status = fixture::run_shell(cmd);
  if (status != 0)
    fail("--engine-cmd exited with status " + std::to_string(status) + " (no verdict; the dump would be in " + dir +
         (o.dump_dir.empty() && !o.keep ? ", removed; --keep keeps it)" : ")"));
  struct stat st {};
  if (::stat((dir + "/manifest.json").c_str(), &st) != 0)
    fail("--engine-cmd exited 0 but wrote no dump: " + dir + "/manifest.json does not exist");
  return dir;
}

void write_check_reports(const CheckOptions& o, const compare::Report& r, const std::string& suite) {
  if (!o.junit.empty()) write_output_file(o.junit, fixture::junit_xml(r, suite));
  write_reports(o.shared, r);
}

std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The one-screen verdict: the check's own lines, then compare's terminal summary.
void print_verdict(const compare::Report& r, const fixture::FixtureInfo& f) {
  const auto& p = r.target_producer;
  const std::string declared = p.is_object() ? p.value("dtype", "?") : "?";
  std::printf("hyoracle check: %s  fixture %s (%s, seed %llu, prompt %zu tokens + %lld generated)\n",
        upper(compare::verdict_name(r.error.empty() ? r.verdict : compare::Verdict::incomplete)).c_str(),
        f.dir.c_str(), f.preset.c_str(), (unsigned long long)f.seed, f.prompt.size(), (long long)f.generate);
  std::printf("  engine   %s %s, declared dtype %s (precision %s); judged by compare's budgets for that dtype\n",
        p.is_object() ? p.value("name", "?").c_str() : "?", p.is_object() ? p.value("version", "?").c_str() : "?",
        canonical_dtype(declared).value_or(declared).c_str(), p.is_object() ? p.value("precision", "?").c_str() : "?");
  std::printf("  margins  the golden run's smallest router top-k margin %.3g, top-1 logit margin %.3g\n",
        f.min_router_margin, f.min_logit_margin);
  std::cout << compare::terminal_summary(r);
}

int run_check(const CheckOptions& o) {
  // Reports must not replace an input nor go through a link (checked before anything runs).
  const std::vector<std::string> inputs = {o.fixture, o.engine_dump, o.dump_dir, o.shared.rules};
  check_output_path(o.junit, "--junit", inputs);
  check_report_paths(o.shared, inputs);
  const bool quiet = o.shared.verbosity.quiet;
  compare::Report r;
  std::string suite = "fixture";
  TempDumpDir temp(o.keep, quiet);
  try {
    const fixture::FixtureInfo f = fixture::open_fixture(o.fixture);
    suite = f.preset;
    const std::string engine_dir = engine_dump_dir(o, f, temp);
    fixture::check_engine_input(f, Dump(engine_dir));
    // The fixture is the model: teacher forcing is on unless --no-teacher-forcing.
    compare::CompareOptions opt = make_compare_options(o.shared, f.dir);
    Progress progress("check", o.shared.verbosity);
    opt.progress = compare_progress(progress);
    // The defaults (the model's output; the generated tokens when the fixture generates), then
    // what --require adds.
    opt.require = {compare::kRequireLogits};
    if (f.generate > 0) opt.require.push_back("^generate\\.tokens$");
    for (const std::string& r : o.require) opt.require.push_back(r);
    r = compare::compare_dirs(f.golden_dir, engine_dir, opt);
    if (!quiet) print_verdict(r, f);
  } catch (const Error& e) {
    r.error = e.what();
    r.verdict = compare::Verdict::incomplete;
    write_check_reports(o, r, suite);
    throw;
  }
  write_check_reports(o, r, suite);
  if (!quiet) {
    std::cout << written_reports(o.shared);
    if (!o.junit.empty()) std::cout << "  wrote JUnit report: " << o.junit << "\n";
    std::cout << std::flush;
  }
  const int code = compare::exit_code(r);
  if (!quiet) std::printf("hyoracle check: exit %d (%s)\n", code, code == 0 ? "pass" : code == 1 ? "fail" : "incomplete");
  // Unreadable input says why on stderr, as compare does (also under -q, which prints nothing else).
  if (!r.error.empty()) std::fprintf(stderr, "hyoracle: error: %s\n", r.error.c_str());
  return code;
}

}  // namespace

void register_check(CLI::App& app, int& status) {
  auto o = std::make_shared<CheckOptions>();
  auto* cmd = app.add_subcommand("check", "Check an engine's dump of a fixture against the fixture's golden (CI)");
  cmd->footer("Exit status: 0 pass, 1 fail, 2 incomplete or bad input.\n"
              "--engine-cmd placeholders: {model} (= {fixture}, the checkpoint directory), {dump} (required: where\n"
              "the engine writes its dump), {tokens} (the golden prompt, comma-separated), {generate} (tokens to\n"
              "generate greedily). Example:\n"
              "  hyoracle check fixtures/gen-tiny-hy3 --engine-cmd \\\n"
              "    'python3 tools/hf_dump.py {model} {dump} --tokens {tokens} --generate {generate} --dtype bfloat16'");
  cmd->add_option("FIXTURE_DIR", o->fixture, "Fixture directory made by `hyoracle fixture`")->required();
  cmd->add_option("ENGINE_DUMP", o->engine_dump, "The engine's dump of the fixture's golden prompt");
  cmd->add_option("--engine-cmd", o->engine_cmd, "Run this shell command to make the engine dump (see placeholders)");
  cmd->add_option("--dump-dir", o->dump_dir, "With --engine-cmd: the {dump} directory (default: a new temp dir, "
                                             "removed afterwards)");
  cmd->add_flag("--keep", o->keep, "With --engine-cmd and no --dump-dir: keep the temporary dump directory");
  cmd->add_option("--junit", o->junit, "Write a JUnit XML report to FILE");
  cmd->add_option("--require", o->require, "Regex of a tensor that must be compared, in addition to the defaults "
                                           "^(generate\\.)?logits$ and, when the fixture generates, ^generate\\.tokens$");
  add_compare_options(*cmd, o->shared);
  cmd->callback([o, &status] { status = run_check(*o); });
}

}  // namespace hyoracle::cli
