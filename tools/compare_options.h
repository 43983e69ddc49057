// compare_options.h: the options `hyoracle compare` and `hyoracle check` share. check runs compare
// internally, so both register these through add_compare_options: one definition, one meaning,
// one help text.
#pragma once
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tools/cli_util.h"
#include "compare/compare.h"

namespace hyoracle::cli {

struct CompareCliOptions {
  std::string json, markdown, html;  // report files
  std::string csv, jsonl;            // per-tensor exports (one row per tensor, with its verdict)
  std::string rules;                 // rules file overriding budgets
  std::string layers;                // --layers A:B
  bool fail_fast = false;
  bool no_teacher_forcing = false;   // judge total error only even when the model is known
  int threads = 1;                   // reference threads for teacher forcing
  std::string device = "cpu";        // where teacher forcing's products run: cpu | cuda
  Verbosity verbosity;               // -q, --progress
};

// Registers --json, --markdown, --html, --csv, --jsonl, --rules, --layers, --fail-fast, --no-teacher-forcing,
// --threads, --device, -q and --progress on `cmd`.
void add_compare_options(CLI::App& cmd, CompareCliOptions& o);

// --layers A:B (A inclusive, B exclusive), A:, :B or A alone into options.layer_first/last.
void parse_layers(const std::string& s, compare::CompareOptions& options);

// Refuses report paths that would replace an input or go through a link (before any work).
void check_report_paths(const CompareCliOptions& o, const std::vector<std::string>& inputs);

// Compare's options from the shared ones. Teacher forcing is on whenever the model is known
// (`model_dir` non-empty: compare's --model, check's fixture) unless --no-teacher-forcing.
// --device cuda with teacher forcing is checked here: a build without CUDA or no usable GPU is a
// one-line Error "--device cuda: ..." before any work.
compare::CompareOptions make_compare_options(const CompareCliOptions& o, const std::string& model_dir);

// compare's progress hook reporting through `p`: "tensor i/N (name, X read)". `p` must outlive it.
decltype(compare::CompareOptions::progress) compare_progress(Progress& p);

// --dry-run: prints an estimate (estimate.h) of comparing the two dumps, from their sizes and,
// when `model_dir` is given (teacher forcing), the model's config; compares nothing.
int compare_dry_run(const std::string& baseline, const std::string& target, const std::string& model_dir, int threads);

// Writes the --json, --markdown, --html, --csv and --jsonl reports that were asked for.
void write_reports(const CompareCliOptions& o, const compare::Report& r);
// "  wrote <kind> report: <path>" for each report written (for the terminal, after the summary).
std::string written_reports(const CompareCliOptions& o);

}  // namespace hyoracle::cli
