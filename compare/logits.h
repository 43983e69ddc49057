// logits.h: logit and generation agreement (COMPARE.md §8). Logits are read as double whatever
// their stored dtype; KL is computed in double from log-softmax.
//
//   per position t: top-1 agreement argmax r_t == argmax y_t (ties to the lower id)
//                   KL_t = Σ_v p_v (log p_v − log q_v),  p = softmax(r_t), q = softmax(y_t)
//                   Δp_t = p(top-1 of r) − q(same token)
//   summary: KL mean / p99 / max, RMS of Δp.
//   generation: the first step where generate.tokens differ; the reference's top-1 − top-2 logit
//   margin at that step against the expected logit noise; each side's token in the other's top-N.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "compare/compare.h"

namespace hyoracle::compare {

// KL(softmax(r) || softmax(y)) over one row of n logits, in double.
double kl_divergence_row(const double* r, const double* y, int64_t n);

// Fills the position statistics of s from logits r, y [T, V].
void logits_agreement(const Tensor<double>& r, const Tensor<double>& y, LogitsSummary& s);
// The same, one position at a time: read_row(t, r, y) fills row t (V values) of both sides;
// memory is O(V + T) whatever T·V.
void logits_agreement(int64_t T, int64_t V, const std::function<void(int64_t, double*, double*)>& read_row,
                      LogitsSummary& s);

// Fills the generation fields of s. ref_logits / target_logits are generate.logits [N, V] (may be
// empty); noise(step) is the expected |Δ| of one logit at that step.
void generation_agreement(const std::vector<int64_t>& ref_tokens, const std::vector<int64_t>& target_tokens,
                          const Tensor<double>& ref_logits, const Tensor<double>& target_logits, double logit_noise,
                          LogitsSummary& s, int64_t top_n = 5);

// The n largest logits of row[0..V) as (token id, logit), largest first, ties to the lower id:
// what each side would have chosen among at a differing generated token.
std::vector<std::pair<int64_t, double>> top_n_logits(const double* row, int64_t V, int64_t n);

// True when token `id` is among the n largest of row[0..V).
bool in_top_n(const double* row, int64_t V, int64_t id, int64_t n);

}  // namespace hyoracle::compare
