#include "tools/compare_options.h"

#include <filesystem>
#include <optional>

#include "io/dump.h"
#include "compare/replay_device.h"
#include "util/error.h"
#include "tools/estimate.h"
#include "io/output.h"

namespace hyoracle::cli {

void add_compare_options(CLI::App& cmd, CompareCliOptions& o) {
  cmd.add_option("--json", o.json, "Write the JSON report here");
  cmd.add_option("--markdown", o.markdown, "Write the Markdown report here");
  cmd.add_option("--html", o.html, "Write the HTML report here");
  cmd.add_option("--csv", o.csv, "Write one CSV row per tensor (with its verdict) here");
  cmd.add_option("--jsonl", o.jsonl, "Write one JSON Lines row per tensor (with its verdict) here");
  cmd.add_option("--rules", o.rules, "Rules file (JSON) overriding budgets by regex");
  cmd.add_option("--layers", o.layers, "Only layers A:B (A inclusive, B exclusive; also A:, :B, A)");
  cmd.add_flag("--fail-fast", o.fail_fast, "Stop at the first failing tensor");
  cmd.add_flag("--no-teacher-forcing", o.no_teacher_forcing,
               "Judge total error only, although the model is known (faster; a screening, not a verdict)");
  cmd.add_option("--threads", o.threads, "Reference threads for teacher forcing")->check(CLI::Range(1, 1024));
  cmd.add_option("--device", o.device,
                 "Where teacher forcing's products run: cpu (the reference, default) or cuda (fp64 on the GPU; "
                 "the same verdicts, much faster)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  add_verbosity_options(cmd, o.verbosity, "No terminal summary or progress; errors still go to stderr");
}

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

void check_report_paths(const CompareCliOptions& o, const std::vector<std::string>& inputs) {
  check_output_path(o.json, "--json", inputs);
  check_output_path(o.markdown, "--markdown", inputs);
  check_output_path(o.html, "--html", inputs);
  check_output_path(o.csv, "--csv", inputs);
  check_output_path(o.jsonl, "--jsonl", inputs);
}

compare::CompareOptions make_compare_options(const CompareCliOptions& o, const std::string& model_dir) {
  compare::CompareOptions opt;
  opt.model_dir = o.no_teacher_forcing ? "" : model_dir;
  opt.threads = o.threads;
  opt.device = o.device;
  if (opt.device != "cpu" && !opt.model_dir.empty()) compare::make_replay_device(opt.device, opt.threads);
  opt.fail_fast = o.fail_fast;
  if (!o.rules.empty()) opt.rules = compare::load_rules(o.rules);
  if (!o.layers.empty()) parse_layers(o.layers, opt);
  return opt;
}

decltype(compare::CompareOptions::progress) compare_progress(Progress& p) {
  if (!p.enabled()) return nullptr;
  return [&p](int64_t done, int64_t total, const std::string& name, double bytes_read) {
    p.step("tensor", done, total, name + ", " + human_bytes(bytes_read) + " read");
  };
}

int compare_dry_run(const std::string& baseline, const std::string& target, const std::string& model_dir, int threads) {
  double bytes = 0;
  for (const std::string& dir : {baseline, target}) {
    const Dump d(dir);  // validates the manifest and the files it names
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(dir, ec))
      if (f.is_regular_file(ec)) bytes += double(f.file_size(ec));
  }
  const Dump t(target);
  const int64_t tokens = int64_t(t.token_ids().size());
  const int64_t generate = t.has("generate.tokens") && !t.info("generate.tokens").shape.empty()
                               ? t.info("generate.tokens").shape[0] : 0;
  std::optional<ModelConfig> c;
  if (!model_dir.empty()) c = load_config(model_dir + "/config.json");
  print_estimate("compare", estimate_compare(bytes, c ? &*c : nullptr, tokens, generate, threads));
  return 0;
}

void write_reports(const CompareCliOptions& o, const compare::Report& r) {
  if (!o.json.empty()) write_output_file(o.json, compare::report_json(r).dump(2) + "\n");
  if (!o.markdown.empty()) write_output_file(o.markdown, compare::report_markdown(r));
  if (!o.html.empty()) write_output_file(o.html, compare::report_html(r));
  if (!o.csv.empty()) write_output_file(o.csv, compare::report_csv(r));
  if (!o.jsonl.empty()) write_output_file(o.jsonl, compare::report_jsonl(r));
}

std::string written_reports(const CompareCliOptions& o) {
  std::string s;
  const std::pair<const char*, const std::string*> all[] = {
      {"json", &o.json}, {"markdown", &o.markdown}, {"html", &o.html}, {"csv", &o.csv}, {"jsonl", &o.jsonl}};
  for (const auto& [kind, path] : all)
    if (!path->empty()) s += std::string("  wrote ") + kind + " report: " + *path + "\n";
  return s;
}

}  // namespace hyoracle::cli
