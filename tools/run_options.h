// run_options.h: options shared by `hyoracle run` and the commands built on it.
#pragma once
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "tools/cli_util.h"
#include "io/config.h"
#include "io/dump.h"
#include "reference/numerics.h"
#include "io/output.h"

namespace hyoracle::cli {

struct RunOptions {
  std::string model;
  std::string tokens_text;
  std::string tokens_from;
  std::vector<int64_t> tokens;
  std::string tokens_source = "--tokens";  // where `tokens` came from, for messages
  int64_t generate = 0;
  std::string precision_text = "exact";
  Precision precision = Precision::exact;
  int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  std::string dump;
  bool force = false;  // replace a non-empty --dump directory
  bool dump_steps = false;
  bool lazy_experts = false;
  bool fp8_activations = false;    // W8A8: quantize FP8 linears' inputs with their input_scale
  bool verbose = false;
  std::string device = "cpu";      // cpu | cuda
  std::string dtype = "bfloat16";  // CUDA activation dtype (canonical name): bfloat16 | float16 | float32 | float64
  int64_t random_weights = -1;     // CUDA: build a random model in GPU memory from this seed
  Verbosity verbosity;             // -q, --progress
  bool dry_run = false;            // print an estimate of time, memory and disk; run nothing
};

// Runs the forward pass on the GPU (cmd_run_cuda.cpp); Error when built without CUDA.
int run_on_cuda(const RunOptions& o);

// Parses "17,3,99" into token ids: decimal digits only (no sign, no spaces), each below 10^18;
// Error naming the option on anything else.
inline std::vector<int64_t> parse_token_list(const std::string& s) {
  std::vector<int64_t> v;
  size_t i = 0;
  for (;;) {
    const size_t j = s.find(',', i);
    const std::string item = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    const bool digits = !item.empty() && item.size() <= 18 && item.find_first_not_of("0123456789") == std::string::npos;
    if (!digits)
      fail("--tokens: " + printable_quoted(item) + " is not a non-negative decimal integer (expected e.g. 17,3,99)");
    v.push_back(std::stoll(item));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return v;
}

// Checks the prompt against the model before anything is computed or allocated: every id inside
// the vocabulary, and prompt plus generated tokens within max_position_embeddings (when the
// config gives it). Messages name the option or the dump the ids came from.
inline void check_run_input(const ModelConfig& c, const RunOptions& o) {
  const std::string& from = o.tokens_source;
  for (size_t t = 0; t < o.tokens.size(); ++t)
    if (o.tokens[t] < 0 || o.tokens[t] >= c.vocab_size)
      fail(from + ": token id " + std::to_string(o.tokens[t]) + " at position " + std::to_string(t) +
           " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ") of " + c.source);
  const int64_t positions = int64_t(o.tokens.size()) + o.generate;
  if (c.max_position_embeddings > 0 && positions > c.max_position_embeddings)
    fail(c.source + ": field \"max_position_embeddings\" is " + std::to_string(c.max_position_embeddings) + "; the prompt (" +
         std::to_string(o.tokens.size()) + " tokens) plus --generate " + std::to_string(o.generate) + " needs " +
         std::to_string(positions) + " positions, " + std::to_string(positions - c.max_position_embeddings) + " too many");
  // W8A8 needs the activation scales that only a static-scheme FP8 checkpoint stores.
  if (o.fp8_activations && (c.quant.kind != QuantKind::Fp8PerTensor || c.quant.activation_scheme != "static"))
    fail("--fp8-activations: " + c.source + " field \"quantization_config\" is " + quant_description(c.quant) +
         "; FP8 activations need per-tensor FP8 weights with activation_scheme \"static\" (their input_scale)");
  if (o.fp8_activations && o.device == "cuda") fail("--fp8-activations: the CUDA path has no FP8 activation mode");
}

inline void add_run_options(CLI::App& cmd, RunOptions& o) {
  cmd.add_option("--model", o.model, "Checkpoint directory (config.json + safetensors)")->required()->check(CLI::ExistingDirectory);
  cmd.add_option("--tokens", o.tokens_text, "Comma-separated token ids, e.g. 17,3,99");
  cmd.add_option("--tokens-from", o.tokens_from, "Take the token ids from this dump's input");
  cmd.add_option("--generate", o.generate, "Greedily generate N tokens")->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd.add_option("--precision", o.precision_text, "exact | hf | fp32")->check(CLI::IsMember({"exact", "hf", "fp32"}));
  cmd.add_option("--threads", o.threads, "Worker threads (results are identical for any count)")->check(CLI::Range(1, 1024));
  cmd.add_option("--dump", o.dump, "Write a dump (docs/DUMP_FORMAT.md) to this directory");
  cmd.add_flag("--force", o.force, "Replace a non-empty --dump directory (refused otherwise)");
  cmd.add_flag("--dump-steps", o.dump_steps, "Also record every decode step as steps.S.*");
  cmd.add_flag("--lazy-experts", o.lazy_experts, "Expand experts on use (bounded memory) instead of at load");
  cmd.add_flag("--fp8-activations", o.fp8_activations,
               "FP8 checkpoints with static input scales: quantize each FP8 linear's input to E4M3 with its "
               "input_scale, as a W8A8 engine does (docs/fp8.md); default: the model as stored");
  cmd.add_flag("-v,--verbose", o.verbose, "Say what is loaded and ignored");
  cmd.add_option("--device", o.device, "cpu (the reference) or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd.add_option("--dtype", o.dtype, "CUDA activation dtype (default bfloat16; bf16, fp16, fp32, fp64 also accepted; "
                                     "float64: every layer in double, the exact mode on the GPU)")
      ->transform(dtype_choice({"bfloat16", "float16", "float32", "float64"}));
  cmd.add_option("--random-weights", o.random_weights, "CUDA: random full-size weights from this fixture seed");
  add_verbosity_options(cmd, o.verbosity, "No summary on stdout and no progress; errors still go to stderr");
  cmd.add_flag("--dry-run", o.dry_run, "Print an estimate of the time, memory and disk from config.json; run nothing");
}

inline void finish_run_options(RunOptions& o) {
  // The dump must not replace an input (the checkpoint, the dump the tokens come from).
  check_output_path(o.dump, "--dump", {o.model, o.tokens_from});
  check_fresh_output_dir(o.dump, "--dump", o.force);
  o.precision = parse_precision(o.precision_text);
  if (!o.tokens_text.empty() && !o.tokens_from.empty()) fail("give either --tokens or --tokens-from, not both");
  if (!o.tokens_text.empty()) o.tokens = parse_token_list(o.tokens_text);
  else if (!o.tokens_from.empty()) {
    const Dump d(o.tokens_from);
    o.tokens = d.token_ids();
    o.tokens_source = d.has("input_ids") ? d.file_of("input_ids") + ": tensor \"input_ids\""
                                         : d.dir() + "/manifest.json: field \"input.token_ids\"";
  }
  else fail("--tokens (or --tokens-from) is required");
  if (o.tokens.empty()) fail("no tokens given");
  for (size_t t = 0; t < o.tokens.size(); ++t)
    if (o.tokens[t] < 0)
      fail(o.tokens_source + ": token id " + std::to_string(o.tokens[t]) + " at position " +
           std::to_string(t) + " is negative");
}

}  // namespace hyoracle::cli
