// cli_util.h: small pieces every subcommand shares so that one option means one thing
// everywhere: the dtype spellings, deprecated option aliases, -q / --progress and the rate-limited
// progress lines on stderr.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "io/sink.h"

namespace hyoracle::cli {

// The canonical name ("bfloat16", "float16", "float32", "float64": what dump manifests record in
// producer.dtype) of a dtype spelled any common way, case-insensitively: bf16 / bfloat16 / BF16,
// fp16 / f16 / float16 / half, fp32 / f32 / float32 / float, fp64 / f64 / float64 / double.
// nullopt for anything else.
std::optional<std::string> canonical_dtype(const std::string& text);

// A CLI11 transformer for a dtype option: rewrites any spelling to its canonical name and refuses
// (one line naming the option) a dtype outside `allowed` (canonical names).
CLI::Validator dtype_choice(const std::vector<std::string>& allowed);

// Registers `old_name` as a deprecated spelling of `current` (the option already registered,
// bound to `value`): the same variable and meaning, excluded with `current`, and a one-line note on
// stderr naming the new spelling when it is used.
template <class T>
CLI::Option* add_deprecated_alias(CLI::App& cmd, CLI::Option* current, const std::string& old_name, T& value) {
  const std::string now = current->get_name(), where = cmd.get_name();
  auto* o = cmd.add_option(old_name, value, "Deprecated alias of " + now + " (same meaning)");
  o->excludes(current);
  o->each([where, old_name, now](const std::string&) {
    std::fprintf(stderr, "hyoracle: note: %s %s is a deprecated alias of %s (same meaning); use %s\n", where.c_str(),
                 old_name.c_str(), now.c_str(), now.c_str());
  });
  return o;
}

// Whether the option `--name` of `cmd` was given (by either spelling when `alias` is given).
bool given(const CLI::App& cmd, const std::string& name, const std::string& alias = "");

// -q / --quiet and --progress, the same on every long-running subcommand.
struct Verbosity {
  bool quiet = false;     // nothing on stdout or stderr but errors (and deprecation notes)
  bool progress = false;  // progress lines on stderr even when it is not a terminal
};
void add_verbosity_options(CLI::App& cmd, Verbosity& v, const std::string& quiet_help);

// Progress lines on stderr: "hyoracle CMD: WHAT DONE/TOTAL (DETAIL)". Shown when stderr is a
// terminal or --progress was given, never under -q. At most one counted line a second, except
// that the first and the last (done == total) always show, so a log stays short and a test sees
// a fixed set of lines.
class Progress {
 public:
  Progress(std::string command, const Verbosity& v);
  bool enabled() const { return enabled_; }
  // A phase ("loading the checkpoint DIR"): always shown when enabled.
  void phase(const std::string& what);
  // How far along the current phase is.
  void step(const std::string& what, int64_t done, int64_t total, const std::string& detail = "");

 private:
  std::string command_;
  bool enabled_ = false;
  bool first_step_ = true;  // the first step of a phase always shows
  std::chrono::steady_clock::time_point last_{};
};

// Refuses an output directory that exists and is not empty unless `force`: one line naming the
// option and the directory. (With `force`, the writer still replaces only an old dump, never a
// directory of other files: output.h.)
void check_fresh_output_dir(const std::string& dir, const std::string& option, bool force);

// Passes every tensor on to `inner` and reports progress through `p` (when not null) as each
// layer's output goes by: "prefill: layer L+1/N", "decode step S: layer L+1/N". Decode-step
// tensors (steps.S.*) are passed on only with `pass_steps`: a sink that sees them only for progress
// must not record them.
class ProgressSink : public ActivationSink {
 public:
  ProgressSink(ActivationSink* inner, Progress* p, int64_t layers, bool pass_steps)
      : inner_(inner), p_(p), layers_(layers), pass_steps_(pass_steps) {}
  void put(const std::string& n, const Tensor<double>& t) override;
  void put(const std::string& n, const Tensor<float>& t) override;
  void put_ints(const std::string& n, const std::vector<int64_t>& s, const std::vector<int64_t>& v, DType stored) override;

 private:
  bool pass(const std::string& n) const { return inner_ && (pass_steps_ || n.rfind("steps.", 0) != 0); }
  void see(const std::string& n);
  ActivationSink* inner_;
  Progress* p_;
  int64_t layers_;
  bool pass_steps_;
};

// "1.23 GB" style sizes for estimates and progress.
std::string human_bytes(double bytes);

// Generated token ids for the terminal: all of them up to 40, else the first 24 and the last 8
// with the count left out between, and where the rest is ("in the dump" when one is written).
std::string shown_tokens(const std::vector<int64_t>& ids, bool dumped);
// "about 3 min" style durations for estimates.
std::string human_seconds(double s);

}  // namespace hyoracle::cli
