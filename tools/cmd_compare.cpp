// hyoracle compare: layer-by-layer diff of two dumps (docs/compare.md). Exit 0 pass, 1 fail,
// 2 incomplete or unreadable input (one line naming the file and tensor/field on stderr).
#include <iostream>
#include <memory>
#include <utility>

#include "tools/commands.h"
#include "compare/compare.h"
#include "tools/compare_options.h"
#include "util/error.h"
#include "io/output.h"
#include "compare/pattern.h"
#include "io/safetensors.h"

namespace hyoracle::cli {

namespace {
struct CompareCli {
  std::string baseline, target, model;
  std::vector<std::string> require;
  std::string routed_experts_file;
  CompareCliOptions shared;  // the options check shares (compare_options.h)
  bool dry_run = false;
};

// One line saying why a comparison without an input error is incomplete (exit 2 always comes
// with a line on stderr; with -q it is all the user sees).
std::string incomplete_reason(const compare::Report& r) {
  for (const auto& t : r.tensors)
    if (t.verdict == compare::Verdict::incomplete)
      return r.target_dir + ": tensor " + printable_quoted(t.name) + " could not be judged: " +
             (t.reason.empty() ? std::string("incomplete") : t.reason);
  if (!r.missing_required.empty()) {
    const std::string& p = r.missing_required.front();
    std::string why = "no tensor compared on both sides matches it";
    try {  // a matching tensor that was skipped says why
      const compare::Pattern pattern(p, "--require");
      for (const auto& [name, reason] : r.skipped)
        if (pattern.search(name)) {
          why = "tensor " + printable_quoted(name) + " was not compared: " + reason;
          break;
        }
    } catch (const Error&) {
    }
    return "--require " + printable_quoted(p) + ": " + why;
  }
  if (r.tensors.empty()) return r.baseline_dir + " and " + r.target_dir + ": no tensor was compared";
  return r.target_dir + ": comparison incomplete";
}

}  // namespace

void register_compare(CLI::App& app, int& status) {
  auto o = std::make_shared<CompareCli>();
  auto* cmd = app.add_subcommand("compare", "Compare two dumps layer by layer; name the first divergence");
  cmd->add_option("baseline", o->baseline, "Baseline dump (usually hyoracle's exact reference)")->required();
  cmd->add_option("target", o->target, "Target dump (the engine under test)")->required();
  cmd->add_option("--model", o->model, "Checkpoint: teacher-force each step on the target's inputs (unless "
                                     "--no-teacher-forcing)");
  cmd->add_option("--require", o->require, "Regex of a tensor that must be compared, in addition to the default "
                                           "^(generate\\.)?logits$ (repeatable)");
  cmd->add_option("--routed-experts", o->routed_experts_file, "vLLM/SGLang routed-expert export [tokens, layers, k]");
  add_compare_options(*cmd, o->shared);
  cmd->add_flag("--dry-run", o->dry_run, "Print an estimate of the time, memory and disk from the dumps' sizes; compare nothing");
  cmd->callback([o, &status] {
    if (o->dry_run) {
      status = compare_dry_run(o->baseline, o->target, o->shared.no_teacher_forcing ? "" : o->model, o->shared.threads);
      return;
    }
    // A report must not replace an input (a dump, the model, the rules) nor go through a link.
    check_report_paths(o->shared, {o->baseline, o->target, o->model, o->shared.rules, o->routed_experts_file});
    compare::CompareOptions opt = make_compare_options(o->shared, o->model);
    opt.routed_experts_file = o->routed_experts_file;
    for (const std::string& r : o->require) opt.require.push_back(r);  // adds to the default
    Progress progress("compare", o->shared.verbosity);
    opt.progress = compare_progress(progress);
    const compare::Report r = compare::compare_dirs(o->baseline, o->target, opt);
    write_reports(o->shared, r);
    if (!o->shared.verbosity.quiet) std::cout << compare::terminal_summary(r) << written_reports(o->shared);
    status = compare::exit_code(r);
    if (!r.error.empty()) std::cerr << "hyoracle: error: " << r.error << "\n";
    else if (status == 2) std::cerr << "hyoracle: error: " << incomplete_reason(r) << "\n";
  });
}

}  // namespace hyoracle::cli
