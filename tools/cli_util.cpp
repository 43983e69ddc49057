#include "tools/cli_util.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "util/error.h"

namespace hyoracle::cli {

std::optional<std::string> canonical_dtype(const std::string& text) {
  std::string s;
  for (char c : text) s += char(std::tolower(static_cast<unsigned char>(c)));
  static const std::vector<std::pair<std::vector<std::string>, std::string>> spellings = {
      {{"bf16", "bfloat16"}, "bfloat16"},
      {{"fp16", "f16", "float16", "half"}, "float16"},
      {{"fp32", "f32", "float32", "float"}, "float32"},
      {{"fp64", "f64", "float64", "double"}, "float64"},
  };
  for (const auto& [names, canonical] : spellings)
    for (const std::string& n : names)
      if (s == n) return canonical;
  return std::nullopt;
}

CLI::Validator dtype_choice(const std::vector<std::string>& allowed) {
  std::string list;
  for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
  return CLI::Validator(
      [allowed, list](std::string& value) -> std::string {
        const std::optional<std::string> c = canonical_dtype(value);
        if (c && std::find(allowed.begin(), allowed.end(), *c) != allowed.end()) {
          value = *c;
          return "";
        }
        return "\"" + value + "\" is not one of " + list + (c ? "" : " (any case; also bf16, fp16/f16, fp32/f32, fp64/f64)");
      },
      "{" + list + "}");
}

bool given(const CLI::App& cmd, const std::string& name, const std::string& alias) {
  return cmd.get_option(name)->count() > 0 || (!alias.empty() && cmd.get_option(alias)->count() > 0);
}

void add_verbosity_options(CLI::App& cmd, Verbosity& v, const std::string& quiet_help) {
  cmd.add_flag("-q,--quiet", v.quiet, quiet_help);
  cmd.add_flag("--progress", v.progress, "Progress lines on stderr even when it is not a terminal (off under -q)");
}

Progress::Progress(std::string command, const Verbosity& v)
    : command_(std::move(command)), enabled_(!v.quiet && (v.progress || ::isatty(STDERR_FILENO))) {}

void Progress::phase(const std::string& what) {
  first_step_ = true;
  if (!enabled_) return;
  std::fprintf(stderr, "hyoracle %s: %s\n", command_.c_str(), what.c_str());
  std::fflush(stderr);
}

void Progress::step(const std::string& what, int64_t done, int64_t total, const std::string& detail) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const bool due = first_step_ || done >= total || now - last_ >= std::chrono::seconds(1);
  if (!due) return;
  first_step_ = false;
  last_ = now;
  std::fprintf(stderr, "hyoracle %s: %s %lld/%lld%s\n", command_.c_str(), what.c_str(), (long long)done, (long long)total,
               detail.empty() ? "" : (" (" + detail + ")").c_str());
  std::fflush(stderr);
}

void ProgressSink::put(const std::string& n, const Tensor<double>& t) {
  see(n);
  if (pass(n)) inner_->put(n, t);
}

void ProgressSink::put(const std::string& n, const Tensor<float>& t) {
  see(n);
  if (pass(n)) inner_->put(n, t);
}

void ProgressSink::put_ints(const std::string& n, const std::vector<int64_t>& s, const std::vector<int64_t>& v,
                            DType stored) {
  if (pass(n)) inner_->put_ints(n, s, v, stored);
}

// Counts "layers.L.out" and "steps.S.layers.L.out"; every other name is passed by.
void ProgressSink::see(const std::string& n) {
  if (!p_ || !p_->enabled()) return;
  int64_t step = 0;
  std::string rest = n;
  if (n.rfind("steps.", 0) == 0) {
    const size_t dot = n.find('.', 6);
    if (dot == std::string::npos) return;
    step = std::atoll(n.substr(6, dot - 6).c_str());
    rest = n.substr(dot + 1);
  }
  if (rest.size() < 12 || rest.rfind("layers.", 0) != 0 || rest.compare(rest.size() - 4, 4, ".out") != 0) return;
  const std::string mid = rest.substr(7, rest.size() - 11);
  if (mid.find_first_not_of("0123456789") != std::string::npos) return;
  const int64_t L = std::atoll(mid.c_str());
  p_->step(step == 0 ? "prefill: layer" : "decode step " + std::to_string(step) + ": layer", L + 1, layers_);
}

void check_fresh_output_dir(const std::string& dir, const std::string& option, bool force) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (force || dir.empty() || !fs::exists(fs::symlink_status(dir, ec))) return;
  if (!fs::is_directory(fs::symlink_status(dir, ec)))
    fail(option + " " + dir + ": exists and is not a directory (pass --force to replace it)");
  if (!fs::is_empty(dir, ec))
    fail(option + " " + dir + ": directory is not empty (pass --force to replace the dump there)");
}

std::string shown_tokens(const std::vector<int64_t>& ids, bool dumped) {
  constexpr size_t kAll = 40, kHead = 24, kTail = 8;
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids.size() > kAll && i == kHead) {
      s += " ... (" + std::to_string(ids.size() - kHead - kTail) + " more" +
           (dumped ? ", all in generate.tokens of the dump)" : "; --dump writes all)");
      i = ids.size() - kTail - 1;
      continue;
    }
    s += (s.empty() ? "" : " ") + std::to_string(ids[i]);
  }
  return s;
}

std::string human_bytes(double bytes) {
  char b[32];
  if (bytes >= 1e9) std::snprintf(b, sizeof b, "%.2f GB", bytes / 1e9);
  else if (bytes >= 1e6) std::snprintf(b, sizeof b, "%.1f MB", bytes / 1e6);
  else std::snprintf(b, sizeof b, "%.0f kB", bytes / 1e3);
  return b;
}

std::string human_seconds(double s) {
  char b[32];
  if (s >= 3600) std::snprintf(b, sizeof b, "%.1f h", s / 3600);
  else if (s >= 60) std::snprintf(b, sizeof b, "%.0f min", s / 60);
  else if (s >= 1) std::snprintf(b, sizeof b, "%.0f s", s);
  else std::snprintf(b, sizeof b, "under 1 s");
  return b;
}

}  // namespace hyoracle::cli
