// hyoracle fixture: write a random-weight hy_v3 checkpoint in the HF original layout, check that
// its golden run keeps clear router and logit margins (reseeding until it does), and write the
// exact reference's golden dump next to it. See fixture_make.h for the directory it makes.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include "tools/cli_util.h"
#include "tools/commands.h"
#include "io/dump.h"
#include "tools/estimate.h"
#include "util/error.h"
#include "tools/fixture_make.h"
#include "tools/run_options.h"

namespace hyoracle::cli {

namespace {

// A size flag: its name, help and the CheckpointSpec field it sets.
struct SizeFlag {
  const char* name;
  const char* help;
  int64_t CheckpointSpec::*field;
};

const std::vector<SizeFlag>& size_flags() {
  static const std::vector<SizeFlag> v = {
      {"--vocab", "vocab_size V", &CheckpointSpec::vocab_size},
      {"--hidden", "hidden_size H", &CheckpointSpec::hidden_size},
      {"--intermediate", "intermediate_size I_d (dense layers)", &CheckpointSpec::intermediate_size},
      {"--moe-intermediate", "moe_intermediate_size I_e (one routed expert)", &CheckpointSpec::moe_intermediate_size},
      {"--heads", "num_attention_heads", &CheckpointSpec::num_attention_heads},
      {"--kv-heads", "num_key_value_heads", &CheckpointSpec::num_key_value_heads},
      {"--head-dim", "head_dim (even)", &CheckpointSpec::head_dim},
      {"--experts", "num_experts E", &CheckpointSpec::num_experts},
      {"--top-k", "num_experts_per_tok k", &CheckpointSpec::num_experts_per_tok},
      {"--shared-experts", "num_shared_experts", &CheckpointSpec::num_shared_experts},
      {"--dense-layers", "dense layers first (first_k_dense_replace)", &CheckpointSpec::first_k_dense_replace},
      {"--mtp-layers", "extra MTP-style layers after the trunk (loaders must ignore them)", &CheckpointSpec::mtp_layers},
  };
  return v;
}

struct FixtureOptions {
  std::string preset;
  uint64_t seed = 1;
  std::string out;
  int shards = 1;
  int64_t moe_layers = 0;
  std::map<std::string, int64_t> sizes;  // size flag -> value
  double linear_gain = 0, router_gain = 0, bias_scale = 0;
  std::string prompt_text;
  int64_t generate = 0;
  double min_margin = 1e-3;
  int max_tries = 32;
  int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  bool golden_steps = false;
  std::string fp8;        // "" (BF16), "per-tensor" or "block"
  std::string fp8_block;  // "R,C" block size of --fp8 block (default 128,128)
  bool fused = false;     // Tencent's fused layout (model_type "hunyuan" presets)
  bool force = false;
  bool dry_run = false;
  Verbosity verbosity;  // -q, --progress
};

// The command as recorded in fixture.json: the flags given, in declaration order, with the
// output directory written as DIR (so the record does not depend on where it was made).
std::string canonical_command(const CLI::App& cmd) {
  std::string s = "hyoracle fixture";
  for (const CLI::Option* o : cmd.get_options()) {
    const std::string n = o->get_name();
    if (o->count() == 0 || n == "--out" || n == "--threads" || n == "--force" || n == "--dry-run" || n == "--help" ||
        n == "--quiet" || n == "--progress")
      continue;
    s += " " + (n == "--layers" ? std::string("--moe-layers") : n);  // a deprecated alias as its new spelling
    for (const std::string& v : o->results())
      if (o->get_expected_min() > 0) s += " " + v;
  }
  return s + " --out DIR";
}

fixture::Request make_request(const FixtureOptions& o, const CLI::App& cmd) {
  const fixture::Preset p = fixture::find_preset(o.preset);
  fixture::Request q;
  q.preset = p.name;
  q.spec = p.spec;
  for (const SizeFlag& f : size_flags())
    if (cmd.get_option(f.name)->count()) q.spec.*f.field = o.sizes.at(f.name);
  const int64_t moe = given(cmd, "--moe-layers", "--layers") ? o.moe_layers
                                                          : p.spec.num_hidden_layers - p.spec.first_k_dense_replace;
  q.spec.num_hidden_layers = q.spec.first_k_dense_replace + moe;
  if (cmd.get_option("--linear-gain")->count()) q.spec.linear_gain = o.linear_gain;
  if (cmd.get_option("--router-gain")->count()) q.spec.router_gain = o.router_gain;
  if (cmd.get_option("--bias-scale")->count()) q.spec.bias_scale = o.bias_scale;
  q.spec.seed = o.seed;
  q.spec.shards = o.shards;
  if (o.fused && q.spec.model_type != "hunyuan")
    fail("--fused: Tencent's fused qkv_proj / gate_and_up_proj layout exists for model_type \"hunyuan\" presets only");
  q.spec.fused = o.fused;
  if (o.fp8 == "per-tensor") q.spec.quant = QuantKind::Fp8PerTensor;
  else if (o.fp8 == "block") q.spec.quant = QuantKind::Fp8Block;
  else if (!o.fp8.empty()) fail("--fp8: \"" + o.fp8 + "\" is not a layout (per-tensor or block)");
  if (!o.fp8_block.empty()) {
    if (q.spec.quant != QuantKind::Fp8Block) fail("--fp8-block: only with --fp8 block");
    // Two decimal integers separated by one comma, each 1..2^24 (validate_spec bounds them).
    const size_t comma = o.fp8_block.find(',');
    auto dim = [&](const std::string& t) {
      if (t.empty() || t.size() > 9 || t.find_first_not_of("0123456789") != std::string::npos)
        fail("--fp8-block: expected ROWS,COLS (two positive integers), got " + printable_quoted(o.fp8_block));
      return int64_t(std::stoll(t));
    };
    if (comma == std::string::npos)
      fail("--fp8-block: expected ROWS,COLS (two positive integers), got " + printable_quoted(o.fp8_block));
    q.spec.fp8_block_rows = dim(o.fp8_block.substr(0, comma));
    q.spec.fp8_block_cols = dim(o.fp8_block.substr(comma + 1));
  }
  q.prompt = o.prompt_text.empty() ? p.prompt : parse_token_list(o.prompt_text);
  q.generate = cmd.get_option("--generate")->count() ? o.generate : p.generate;
  q.min_margin = o.min_margin;
  q.max_tries = o.max_tries;
  q.threads = o.threads;
  q.golden_steps = o.golden_steps;
  q.command = canonical_command(cmd);
  return q;
}

void print_sizes(const fixture::Request& q) {
  const fixture::SizeBreakdown b = fixture::size_breakdown(q.spec);
  const CheckpointSpec& s = q.spec;
  std::printf("  model     %lld layers (%lld dense + %lld MoE), H=%lld, heads %lld/%lld x %lld, I_d=%lld, I_e=%lld, "
              "E=%lld, top-%lld, shared %lld, V=%lld\n",
              (long long)s.num_hidden_layers, (long long)s.first_k_dense_replace,
              (long long)(s.num_hidden_layers - s.first_k_dense_replace), (long long)s.hidden_size,
              (long long)s.num_attention_heads, (long long)s.num_key_value_heads, (long long)s.head_dim,
              (long long)s.intermediate_size, (long long)s.moe_intermediate_size, (long long)s.num_experts,
              (long long)s.num_experts_per_tok, (long long)s.num_shared_experts, (long long)s.vocab_size);
  std::printf("  size      %lld parameters, %.1f MB of weights (attention %lld/layer, dense MLP %lld, MoE block %lld)\n",
              (long long)b.total_params, double(b.total_bytes) / 1e6, (long long)b.attention,
              (long long)b.dense_mlp, (long long)b.moe_block);
}

// The estimate of one seed's try (estimate.h): the weights written in bf16, then the golden run
// of the exact reference (float64, experts expanded on use) with its dump, also written.
Estimate estimate_fixture(const fixture::Request& q) {
  const ModelConfig c = parse_config(nlohmann::json::parse(checkpoint_config_json(q.spec).dump()), "config.json");
  RunShape s;
  s.tokens = int64_t(q.prompt.size());
  s.generate = q.generate;
  s.lazy_experts = true;
  s.dump = true;
  s.dump_steps = q.golden_steps;
  s.threads = q.threads;
  Estimate e = estimate_run(c, s);
  add_fixture_writes(e, double(fixture::size_breakdown(q.spec).total_bytes));
  e.read_bytes = double(fixture::size_breakdown(q.spec).total_bytes);
  e.notes.push_back("per seed tried: a seed whose margins fall short is tried again with the next one (at most --max-tries " +
                    std::to_string(q.max_tries) + ")");
  return e;
}

int run_fixture(const FixtureOptions& o, const CLI::App& cmd) {
  fixture::Request q = make_request(o, cmd);
  fixture::validate_spec(q.spec);
  fixture::validate_prompt(q.prompt, q.spec.vocab_size);
  const bool quiet = o.verbosity.quiet && !o.dry_run;
  if (!quiet) {
    std::printf("hyoracle fixture: %s, seed %llu -> %s\n", q.preset.c_str(), (unsigned long long)q.spec.seed,
                o.dry_run ? "(dry run)" : o.out.c_str());
    print_sizes(q);
  }
  if (o.dry_run) {
    print_estimate("fixture", estimate_fixture(q));
    std::printf("%s\n", checkpoint_config_json(q.spec).dump(2).c_str());  // last: a reader takes it from the "{" on
    return 0;
  }
  Progress progress("fixture", o.verbosity);
  q.progress = &progress;
  const auto t0 = std::chrono::steady_clock::now();
  const fixture::Result r = fixture::make_fixture(q, o.out, o.force, quiet ? nullptr : &std::cout);
  if (quiet) return 0;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  accepted  seed %llu after %zu tr%s; min router margin %.4g (%s), min logit margin %.4g (%s)\n",
              (unsigned long long)r.seed, r.tries.size(), r.tries.size() == 1 ? "y" : "ies", r.margins.min_router,
              r.margins.min_router_at.c_str(), r.margins.min_logit, r.margins.min_logit_at.c_str());
  std::printf("  golden    prompt %zu tokens, generated", q.prompt.size());
  for (int64_t t : r.margins.tokens) std::printf(" %lld", (long long)t);
  std::printf("\n  wrote     %lld bytes in %.2f s: %s/{config.json, weights, %s/, %s}\n", (long long)r.bytes, s,
              o.out.c_str(), fixture::kGoldenDir, fixture::kFixtureFile);
  return 0;
}

}  // namespace

void register_fixture(CLI::App& app, int& status) {
  auto o = std::make_shared<FixtureOptions>();
  auto* cmd = app.add_subcommand("fixture", "Make a random-weight fixture with its golden reference dump");
  cmd->footer("Presets: " + fixture::preset_names() +
              ". Full-size presets default to --vocab 4096 (use --vocab 120832 for the real one).\n"
              "A fixture is accepted only when its golden run keeps every router top-k margin and top-1 logit\n"
              "margin >= --min-margin; otherwise seeds --seed, --seed+1, ... are tried (see DIR/fixture.json).");
  cmd->add_option("--preset", o->preset, "Model shape: " + fixture::preset_names())->required();
  cmd->add_option("--seed", o->seed, "First seed tried (default 1)");
  cmd->add_option("--out", o->out, "Fixture directory to create");
  cmd->add_option("--shards", o->shards, "Split the weights into K files with model.safetensors.index.json")
      ->check(CLI::Range(1, 4096));
  auto* moe_layers = cmd->add_option("--moe-layers", o->moe_layers, "MoE layers after the dense ones (default: the preset's)")
                         ->check(CLI::Range(int64_t(0), int64_t(4096)));
  add_deprecated_alias(*cmd, moe_layers, "--layers", o->moe_layers)->check(CLI::Range(int64_t(0), int64_t(4096)));
  for (const SizeFlag& f : size_flags())
    cmd->add_option(f.name, o->sizes[f.name], f.help)->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  cmd->add_option("--linear-gain", o->linear_gain, "Linear weights ~ N(0, gain^2/fan_in) (default 1)");
  cmd->add_option("--router-gain", o->router_gain, "Router weights ~ N(0, gain^2/H) (default 3)");
  cmd->add_option("--bias-scale", o->bias_scale, "expert_bias ~ scale * N(0,1) (default 0.05)");
  cmd->add_option("--prompt", o->prompt_text, "Golden prompt token ids, e.g. 17,3,99 (default: the preset's)");
  cmd->add_option("--generate", o->generate, "Greedy tokens after the prompt (default: the preset's)")
      ->check(CLI::Range(int64_t(0), int64_t(4096)));
  cmd->add_option("--min-margin", o->min_margin, "Smallest router and logit margin accepted (default 1e-3)");
  cmd->add_option("--max-tries", o->max_tries, "Seeds tried before giving up (default 32)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--threads", o->threads, "Reference threads (results are identical for any count)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--golden-steps", o->golden_steps, "Also store every decode step (steps.S.*) in the golden dump");
  cmd->add_option("--fp8", o->fp8,
                  "Write the linear weights as FP8 E4M3: per-tensor (weight_scale + static input_scale, as "
                  "Hy3-FP8) or block (weight_scale_inv per block, as DeepSeek-V3); docs/fp8.md")
      ->check(CLI::IsMember({"per-tensor", "block"}));
  cmd->add_option("--fp8-block", o->fp8_block, "Block size ROWS,COLS of --fp8 block (default 128,128)");
  cmd->add_flag("--fused", o->fused,
                "Tencent's layout: fused self_attn.qkv_proj (per KV group) and gate_and_up_proj ([up; gate]); "
                "same weights as without it");
  cmd->add_flag("--force", o->force, "Replace a fixture already in --out");
  cmd->add_flag("--dry-run", o->dry_run, "Print the config.json, sizes and an estimate of time, memory and disk; "
                                         "write nothing");
  add_verbosity_options(*cmd, o->verbosity, "No summary or per-seed lines on stdout and no progress");
  cmd->callback([o, cmd, &status] {
    if (o->out.empty() && !o->dry_run) fail("fixture: --out DIR is required");
    status = run_fixture(*o, *cmd);
  });
}

}  // namespace hyoracle::cli
