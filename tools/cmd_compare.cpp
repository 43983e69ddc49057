// hyoracle compare: layer-by-layer diff of two dumps (docs/compare.md). Exit 0 pass, 1 fail,
// 2 incomplete or unreadable input (one line naming the file and tensor/field on stderr).
#include <iostream>
#include <memory>
#include <utility>

#include "commands.h"
#include "compare.h"
#include "error.h"
#include "output.h"
#include "pattern.h"
#include "safetensors.h"

namespace hyoracle::cli {

namespace {
struct CompareCli {
  std::string baseline, target, json, markdown, html, csv, jsonl, rules, layers;
  std::vector<std::string> require;
  compare::CompareOptions opt;
  bool quiet = false;
};

// --layers A:B (A inclusive, B exclusive), A:, :B or A alone; A and B plain decimal numbers with
// A < B. Checked against the model's layer count by compare.
void parse_layers(const std::string& s, compare::CompareOptions& o) {
  auto number = [&](const std::string& part) -> int64_t {
    if (part.empty() || part.size() > 6 || part.find_first_not_of("0123456789") != std::string::npos)
      fail("--layers: \"" + s + "\" is not A:B (e.g. 2:5, 3:, :4 or 7; A < B, plain numbers)");
    return std::stoll(part);
  };
  const size_t c = s.find(':');
  if (c == std::string::npos) {
    o.layer_first = number(s);
    o.layer_last = o.layer_first + 1;
  } else {
    o.layer_first = c == 0 ? 0 : number(s.substr(0, c));
    o.layer_last = c + 1 == s.size() ? -1 : number(s.substr(c + 1));
    if (c == 0 && c + 1 == s.size()) fail("--layers: \":\" names no layer (e.g. 2:5, 3:, :4 or 7)");
  }
  if (o.layer_last >= 0 && o.layer_last <= o.layer_first)
    fail("--layers: \"" + s + "\" is empty (A:B needs A < B)");
}

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
  cmd->add_option("--model", o->opt.model_dir, "Checkpoint: teacher-force each step on the target's inputs");
  cmd->add_option("--json", o->json, "Write the JSON report here");
  cmd->add_option("--markdown", o->markdown, "Write the Markdown report here");
  cmd->add_option("--html", o->html, "Write the HTML report here");
  cmd->add_option("--csv", o->csv, "Write one CSV row per tensor (with its verdict) here");
  cmd->add_option("--jsonl", o->jsonl, "Write one JSON Lines row per tensor (with its verdict) here");
  cmd->add_option("--require", o->require, "Regex of a tensor that must be compared, in addition to the default "
                                           "^(generate\\.)?logits$ (repeatable)");
  cmd->add_option("--rules", o->rules, "Rules file (JSON) overriding budgets by regex");
  cmd->add_option("--layers", o->layers, "Only layers A:B (A inclusive, B exclusive)");
  cmd->add_option("--routed-experts", o->opt.routed_experts_file, "vLLM/SGLang routed-expert export [tokens, layers, k]");
  cmd->add_option("--threads", o->opt.threads, "Reference threads for teacher forcing")->check(CLI::Range(1, 1024));
  cmd->add_flag("--fail-fast", o->opt.fail_fast, "Stop at the first failing tensor");
  cmd->add_flag("-q,--quiet", o->quiet, "No terminal summary");
  cmd->callback([o, &status] {
    // A report must not replace an input (a dump, the model, the rules) nor go through a link.
    const std::vector<std::string> inputs = {o->baseline, o->target, o->opt.model_dir, o->rules, o->opt.routed_experts_file};
    check_output_path(o->json, "--json", inputs);
    check_output_path(o->markdown, "--markdown", inputs);
    check_output_path(o->html, "--html", inputs);
    check_output_path(o->csv, "--csv", inputs);
    check_output_path(o->jsonl, "--jsonl", inputs);
    for (const std::string& r : o->require) o->opt.require.push_back(r);  // adds to the default
    if (!o->rules.empty()) o->opt.rules = compare::load_rules(o->rules);
    if (!o->layers.empty()) parse_layers(o->layers, o->opt);
    const compare::Report r = compare::compare_dirs(o->baseline, o->target, o->opt);
    if (!o->json.empty()) write_output_file(o->json, compare::report_json(r).dump(2) + "\n");
    if (!o->markdown.empty()) write_output_file(o->markdown, compare::report_markdown(r));
    if (!o->html.empty()) write_output_file(o->html, compare::report_html(r));
    if (!o->csv.empty()) write_output_file(o->csv, compare::report_csv(r));
    if (!o->jsonl.empty()) write_output_file(o->jsonl, compare::report_jsonl(r));
    if (!o->quiet) {
      std::cout << compare::terminal_summary(r);
      for (const auto& [kind, path] : {std::pair<const char*, const std::string&>{"json", o->json}, {"markdown", o->markdown},
                                       {"html", o->html}, {"csv", o->csv}, {"jsonl", o->jsonl}})
        if (!path.empty()) std::cout << "  wrote " << kind << " report: " << path << "\n";
    }
    status = compare::exit_code(r);
    if (!r.error.empty()) std::cerr << "hyoracle: error: " << r.error << "\n";
    else if (status == 2) std::cerr << "hyoracle: error: " << incomplete_reason(r) << "\n";
  });
}

}  // namespace hyoracle::cli
