// compare.h: the public API of `hyoracle compare` (docs/compare.md).
//
//   Report r = compare_dumps(Dump(baseline_dir), Dump(target_dir), options);
//   write_text_file("report.json", report_json(r).dump(2));
//   return exit_code(r);        // 0 pass, 1 fail, 2 incomplete or unreadable input
//
// The baseline is normally hyoracle's exact reference; the target an engine's dump. Every tensor
// present on both sides is compared in execution order (names.h), streamed from the mapped dumps
// a chunk at a time (stream.h), so memory does not grow with the dumps' size. Each tensor is judged by one rule (tolerance.h): a rules-file entry or the derived budget
// for its operation and the target's dtype. With CompareOptions::model_dir, each step is also
// re-run by the reference on the TARGET's own inputs (teacher forcing) so its *added* (local)
// error is judged apart from the error it inherited; first_divergence is the first tensor whose
// judged error exceeds its rule. `hyoracle check` (tools/cmd_check.cpp) builds on this header too.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dump.h"
#include "compare/metrics.h"
#include "compare/part_scale.h"
#include "compare/tolerance.h"

namespace hyoracle::compare {

enum class Verdict { pass, fail, incomplete, skipped };
std::string verdict_name(Verdict v);

inline constexpr const char* kRequireLogits = "^(generate\\.)?logits$";

struct CompareOptions {
  std::string model_dir;                           // checkpoint: enables teacher forcing + bias-corrected margins
  // Regexes; each must match a tensor compared on both sides. The default asks for the model's
  // output: the prefill's logits, or generate.logits (what engine converters write).
  std::vector<std::string> require = {kRequireLogits};
  Rules rules;                                     // overrides (rules file); derived defaults otherwise
  int64_t layer_first = 0, layer_last = -1;        // --layers A:B (inclusive A, exclusive B; -1 = all)
  bool fail_fast = false;                          // stop after the first failing tensor
  int threads = 1;                                 // reference threads for teacher forcing
  // Where teacher forcing's products run (compare/replay_device.h): "cpu" (the reference, the
  // ground truth) or "cuda" (the fp64 CUDA layers; same formulas in double, other summation order).
  std::string device = "cpu";
  std::string routed_experts_file;                 // optional vLLM/SGLang export: safetensors [T, L, k] ids
  // Called before each tensor of the walk (done counts from 1) with the bytes read so far, for
  // progress lines on long comparisons; unset: nothing is called.
  std::function<void(int64_t done, int64_t total, const std::string& name, double bytes_read)> progress;
};

// Where a tensor's judged error sits. `judged_on` is "local" (teacher-forced) or "total".
struct TensorResult {
  std::string name;
  int64_t layer = -1;                // -1 for non-layer tensors
  int64_t step = 0;                  // 0 = prefill, S for steps.S.*
  std::string op;                    // operation class (tolerance.h), e.g. "linear", "rms_norm"
  std::vector<int64_t> shape;
  std::string baseline_dtype, target_dtype;
  Metrics total;                     // target vs baseline
  std::optional<Metrics> local;      // target vs reference(target's own inputs)
  double inherited = std::numeric_limits<double>::quiet_NaN();  // rel-L2 of reference(target inputs) vs baseline
  double inherited_input = std::numeric_limits<double>::quiet_NaN();  // largest total rel-L2 among the step's inputs
  Budget budget;                     // the rule that judged it
  std::string judged_on = "total";
  double judged_error = 0;           // the judged rel-L2 (or the rule's metric)
  double min_passing = 0;            // smallest limit under this rule that would have passed
  double budget_units = 0;           // judged_error / limit
  int64_t excluded_tokens = 0;       // tokens left out (routing flips at near-ties)
  bool total_comparable = true;      // false: the baseline ran other input here (decode after the tokens part)
  std::vector<std::string> replay_read;      // teacher forcing: the target tensors the replay read
  std::vector<std::string> replay_composed;  // steps the reference recomputed (not in the target's dump)
  double composed_noise = 0;         // rel-L2 the honest noise of the recomputed steps makes here
  std::vector<PartScale> part_scales;  // per head (attn.out) or routed expert (moe.routed_out), part_scale.h
  std::string part_kind;             // "head" or "expert"
  std::vector<double> token_limits;  // per-token rel-L2 limit of each row (the per-token gate); kept for failing tensors only
  Verdict verdict = Verdict::pass;
  std::string reason;                // one line when not pass
  std::vector<std::string> hints;    // heuristic cause hints
};

struct RoutingFlip {
  int64_t token = 0;
  std::vector<int64_t> only_baseline, only_target;  // experts chosen by one side only
  double margin = 0;   // reference gap between the swapped experts' corrected scores (>= k/k+1 margin)
  double noise = 0;    // expected noise of that gap in the target (σ'(ℓ)·Δℓ_expected, both experts)
  bool near_tie = false;
};

// Teacher-forced routing: a token whose selection is not the top-k of the target's own corrected
// scores c = σ(ℓ_target) + expert_bias (checkpoint, fp32), beyond the rounding window of c.
struct ForcedMismatch {
  int64_t token = 0;
  int64_t chosen = 0, passed_over = 0;  // the target chose `chosen` though `passed_over` scored higher
  double c_chosen = 0, c_passed_over = 0, window = 0;
};

struct RoutingLayer {
  int64_t layer = 0, step = 0, tokens = 0, exact_set_match = 0;  // step: 0 prefill, S decode step
  double mean_jaccard = 1;
  double max_weight_delta = 0;       // on experts both chose, keyed by id (abs)
  double max_weight_rel_delta = 0;
  double max_weight_sum_delta = 0;
  double min_margin = std::numeric_limits<double>::infinity();
  std::string margin_source;         // "baseline topk_margin" | "baseline scores + checkpoint expert_bias" | ...
  int64_t near_tie_flips = 0, real_flips = 0;
  std::vector<int64_t> margin_histogram;  // counts per decade: <1e-6, 1e-6..1e-5, ..., >=1e-1
  std::vector<RoutingFlip> flips;
  // Teacher-forced selection check (with --model, where the target dumped its router logits).
  bool forced = false;
  std::string forced_source;          // e.g. "target moe.router_logits (F32) + checkpoint expert_bias"
  int64_t forced_mismatches = 0;
  std::vector<ForcedMismatch> forced_list;  // the first few
  bool reference_comparable = true;   // false: the baseline ran other input (decode after the tokens part)
};

struct LogitsSummary {
  bool present = false;
  int64_t positions = 0, top1_agree = 0;
  double kl_mean = 0, kl_p99 = 0, kl_max = 0, dp_rms = 0;   // KL(P_ref || P_target), natural log
  // Greedy generation (generate.tokens), when both sides have it.
  int64_t generated = 0;
  int64_t first_token_divergence = -1;  // step index, -1 when the sequences agree
  bool divergence_near_tie = false;
  double divergence_margin = 0, divergence_noise = 0;
  // The first failed tensor before the tokens parted, if any. The near-tie test compares the
  // reference's margin with honest noise, so after an engine error upstream it does not apply.
  std::string divergence_after_failure;
  bool divergence_in_top_n = false;     // each side's token inside the other's top-N (N = 5)
  // At the first differing generated token: each side's token and its N largest logits (largest
  // first, ties to the lower id), when that side dumped generate.logits.
  int64_t divergence_token_baseline = -1, divergence_token_target = -1;
  std::vector<std::pair<int64_t, double>> divergence_top_baseline, divergence_top_target;  // (token id, logit)
};

// How the generated tokens parted, in words: "after the failure at X", "near-tie" or "real".
std::string generation_divergence_kind(const LogitsSummary& g);

struct Divergence {
  std::string tensor;
  int64_t layer = -1;
  std::string reason;
};

struct Report {
  Verdict verdict = Verdict::pass;
  std::string error;                 // one line, set when input is unreadable/inconsistent (verdict incomplete)
  std::string baseline_dir, target_dir;
  nlohmann::json baseline_producer, target_producer;
  bool teacher_forced = false;
  Family family = Family::hy_v3;     // the model family the dumps were judged as (io/family.h)
  int64_t cla_share_factor = 1;      // cross-layer attention: layer L read layer L − L % f's K/V
  std::optional<Divergence> first_divergence;        // first judged failure in execution order
  std::optional<Divergence> first_total_divergence;  // first tensor whose total error exceeds its total budget
  std::vector<TensorResult> tensors;                 // execution order
  std::vector<RoutingLayer> routing;
  LogitsSummary logits;
  std::vector<std::string> missing_in_baseline, missing_in_target, missing_required;
  std::vector<std::pair<std::string, std::string>> skipped;  // name, reason
  std::vector<std::string> notes;    // what the verdict rests on, in a sentence each (shown in every report)
  double seconds = 0;
  double bytes_read = 0;
  double peak_rss_bytes = 0;         // of this process so far (getrusage), when compare_dumps returned
};

// Compares two dumps. Never throws for bad input: an Error becomes Report::error (verdict
// incomplete) so the reports can still be written.
Report compare_dumps(const Dump& baseline, const Dump& target, const CompareOptions& options);
// Opens both dumps (errors become Report::error) and compares them.
Report compare_dirs(const std::string& baseline_dir, const std::string& target_dir, const CompareOptions& options);

// 0 pass, 1 fail, 2 incomplete (fail outranks incomplete; a Report::error is always 2).
int exit_code(const Report& r);

// Writers (report_json.cpp, report_markdown.cpp, report_html.cpp, summary.cpp, report_table.cpp).
nlohmann::ordered_json report_json(const Report& r);  // schema of DUMP_FORMAT.md, version 1
std::string report_markdown(const Report& r);
std::string report_html(const Report& r);             // self-contained, inline SVG error curve
std::string terminal_summary(const Report& r);        // fits one screen
// One row per tensor present on both sides (compared or skipped), with its verdict (report_table.cpp).
std::string report_csv(const Report& r);              // RFC 4180, header line first
std::string report_jsonl(const Report& r);            // JSON Lines: one object per row, same keys as the CSV
void write_text_file(const std::string& path, const std::string& content);

}  // namespace hyoracle::compare
