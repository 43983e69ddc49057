// fixture_margins.h: how far every discrete decision of a fixture's golden run is from a tie.
//
// A golden output is only a fair test when every correct implementation must reproduce it. Two
// kinds of decision can flip under honest rounding:
//
//   router margin  m_r[L, t] = c_(k) − c_(k+1)   the k-th minus the (k+1)-th largest corrected
//                                                 score c = σ(logit) + expert_bias (router.h;
//                                                 the model records it as layers.L.moe.topk_margin)
//   logit margin   m_l[t]    = z_(1) − z_(2)     the largest minus the second largest logit of a
//                                                 row (the greedy choice)
//
// run_golden() runs the exact (float64) reference over the golden prompt and a greedy
// generation and collects both margins at every MoE layer, prompt position and decode step.
// A fixture is accepted when the smallest of each is ≥ the stated minimum.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/dump.h"

namespace hyoracle::cli {
class Progress;
}

namespace hyoracle::fixture {

struct MarginReport {
  double min_router = std::numeric_limits<double>::infinity();  // +inf when no MoE layer or k == E
  std::string min_router_at;                                     // e.g. "steps.2.layers.1.moe.topk_margin[0]"
  double min_logit = std::numeric_limits<double>::infinity();
  std::string min_logit_at;                                      // e.g. "logits[3]" or "generate.logits[2]"
  std::map<int64_t, double> router_by_layer;                     // MoE layer -> min over prompt and steps
  std::vector<double> prompt_logit_margins;                      // one per prompt position
  std::vector<double> step_logit_margins;                        // one per generated token
  int64_t router_decisions = 0;         // (layer, token) routing decisions measured
  int64_t bias_changes_selection = 0;   // of those, how many select a different expert set without expert_bias
  std::vector<int64_t> tokens;          // the greedily generated tokens
};

// z_(1) − z_(2) of row[0..n) (n ≥ 2).
double top1_margin(const double* row, int64_t n);

// Runs the exact reference on `ck`: prefill of `prompt`, then `generate` greedy tokens with the
// KV cache, measuring every margin. When `golden` is given it receives the prefill activations,
// generate.tokens and generate.logits (and steps.S.* when `golden_steps`). Progress lines (layer
// i/N of the prefill and of each decode step) go through `progress` when given.
MarginReport run_golden(const Checkpoint& ck, const std::vector<int64_t>& prompt, int64_t generate, int threads,
                        DumpWriter* golden = nullptr, bool golden_steps = false, cli::Progress* progress = nullptr);

// "" when both minima are ≥ min_margin; otherwise one line saying which margin is short and where.
std::string margin_shortfall(const MarginReport& r, double min_margin);

// The report as JSON for fixture.json (infinite margins are written as null).
nlohmann::ordered_json margins_json(const MarginReport& r);

}  // namespace hyoracle::fixture
