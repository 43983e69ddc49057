// estimate.h: what `--dry-run` prints for run, fixture and compare: an estimate of the time,
// memory and disk a command would take, from the model's config and the dumps' sizes, made
// without doing the work. Estimates, not measurements: the rates are this repository's measured
// figures on a 2-core machine (README, docs/compare.md) and the counts leave out small terms.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"

namespace hyoracle::cli {

struct Estimate {
  double seconds = 0;       // wall time
  double memory_bytes = 0;  // peak resident memory
  double read_bytes = 0;    // read from disk (weights, dumps)
  double write_bytes = 0;   // written to disk (dumps, checkpoints, reports)
  std::vector<std::string> notes;  // what the figures assume, one sentence each
};

// A reference forward pass (`hyoracle run`): prompt of T tokens, G greedy tokens.
struct RunShape {
  int64_t tokens = 0, generate = 0;
  bool fp32 = false;          // float32 compute (--precision fp32), else double
  bool lazy_experts = false;  // experts expanded on use
  bool dump = false, dump_steps = false;
  int threads = 1;
};
Estimate estimate_run(const ModelConfig& c, const RunShape& s);

// compare of two dumps of `dump_bytes` together; with `model` (teacher forcing) the reference
// re-runs every step of the T-token prompt and G decode steps on the target's inputs.
Estimate estimate_compare(double dump_bytes, const ModelConfig* model, int64_t tokens, int64_t generate, int threads);

// Reading a checkpoint of `bytes` (0.5 GB/s, decoded to double).
void add_weight_reads(Estimate& e, double checkpoint_bytes);
// Making a fixture checkpoint of `bytes` (measured: about 7 MB/s of checkpoint in all, which
// covers the golden run of the small prompts fixtures use).
void add_fixture_writes(Estimate& e, double checkpoint_bytes);

// Prints "hyoracle CMD --dry-run: an estimate ..." and the figures on stdout.
void print_estimate(const std::string& command, const Estimate& e);

}  // namespace hyoracle::cli
