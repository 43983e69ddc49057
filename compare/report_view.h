// report_view.h: what the human reports (HTML, Markdown, terminal summary) and the table exports
// (CSV, JSON Lines) read from a Report in the same way, so they agree on every number and label:
// step labels ("prefill", then the decode step S), operation labels, the layer × step × operation
// grid of budget use, skipped tensors grouped by reason, failed tensors, row anchors, and the
// per-token errors of a failing tensor.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "compare/compare.h"

namespace hyoracle::compare {

// A tensor at or above this fraction of its budget is shown in full even when it passes.
inline constexpr double kNearBudget = 0.5;

// "prefill" for step 0, else the decode step's number.
std::string step_label(int64_t step);

// The step a tensor belongs to, for a report's step column: step_label, or "generation" for the
// generate.* tensors (they span every step).
std::string step_of(const TensorResult& t);

// "step S, layer L", "prefill, layer L", "step S" or "generation": where a tensor sits.
std::string where(const TensorResult& t);

// "%.6g" of x (a dumped value: enough digits to see its bf16 rounding); "inf"/"nan" spelled out.
std::string g6(double x);

// The tensor's operation within its layer and step: the name without "steps.S." and "layers.L."
// ("attn.out"); a non-layer tensor keeps its name without the step prefix ("final_norm").
std::string op_label(const std::string& name);

// 1 − cosine in scientific notation with three digits ("0" when the cosine is exactly 1), so a
// cosine of 0.9999999 does not print as 1.
std::string one_minus_cos(double cosine);

// g3 of x, or "–" when x is NaN (a quantity that was not measured).
std::string g3_or_dash(double x);

// The id a report gives the row of tensor `name`: "t-" followed by the name with every character
// outside [A-Za-z0-9._-] replaced by '_'.
std::string row_anchor(const std::string& name);

// The metrics the tensor was judged on: the local ones when teacher-forced, else the total ones.
const Metrics& judged_metrics(const TensorResult& t);

// The tensor named `name`, or nullptr.
const TensorResult* find_tensor(const Report& r, const std::string& name);

// The tokens (rows) of a tensor's judged per-token rel-L2 with the largest error / per-token limit,
// largest first, at most `count`; by error alone when the tensor kept no per-token limits.
std::vector<int64_t> worst_token_rows(const TensorResult& t, size_t count);

// Tensors whose verdict is fail, in execution order.
std::vector<const TensorResult*> failed_tensors(const Report& r);

// True when a report shows the tensor's row in full: it did not pass, or it used at least
// kNearBudget of its budget.
bool shown_in_full(const TensorResult& t);

// Skipped tensors grouped by their reason, in order of first appearance: how many, and the first
// `examples` names.
struct SkipGroup {
  std::string reason;
  int64_t count = 0;
  std::vector<std::string> examples;
};
std::vector<SkipGroup> skipped_by_reason(const Report& r, size_t examples = 3);

// One judged layer tensor: its place in the layer × step × operation grid and its budget use.
struct HeatCell {
  int64_t step = 0, layer = 0;
  std::string op, tensor;
  double units = 0;           // judged error / limit
  double error = 0, limit = 0;
  Verdict verdict = Verdict::pass;
};

// The grid of every layer tensor in r.tensors (verdict pass, fail or incomplete): the steps and
// layers present (ascending), the operations in the layer's execution order (names::layer_suffixes;
// names it does not know last, in order of appearance), and one cell per tensor.
struct HeatMap {
  std::vector<int64_t> steps, layers;
  std::vector<std::string> ops;
  std::vector<HeatCell> cells;
};
HeatMap heat_map(const Report& r);

// The largest budget use per (step, layer) over every tensor of that layer and step; layer −1
// collects the step's non-layer tensors (embed, final_norm, logits). The generate.* tensors span
// every step and are left out.
struct StepLayerWorst {
  double units = 0;
  std::string tensor;
  bool failed = false;
};
std::map<std::pair<int64_t, int64_t>, StepLayerWorst> step_layer_worst(const Report& r);

// Colour of a cell that used `units` of its budget: pale green at 0 to amber at 1, then light red
// to dark red at 100× and beyond (log scale); grey when not a number.
std::string units_colour(double units);

// The expert sets of one routing layer-step where reference and target disagree, as a token ×
// expert grid: the tokens with a flip (first `max_tokens` of them), the experts either side chose
// alone (ascending), and per token the experts only the reference chose and only the target chose.
struct DisagreementGrid {
  std::vector<int64_t> experts;
  std::vector<const RoutingFlip*> tokens;
  int64_t more_tokens = 0;  // tokens with a flip left out by max_tokens
};
DisagreementGrid disagreement_grid(const RoutingLayer& l, size_t max_tokens);

}  // namespace hyoracle::compare
