#include "tools/fixture_make.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "io/checkpoint.h"
#include "tools/cli_util.h"
#include "io/dump.h"
#include "util/error.h"
#include "io/output.h"
#include "io/sha256.h"

namespace hyoracle::fixture {

namespace fs = std::filesystem;

namespace {

bool is_checkpoint_file(const std::string& name) {
  return name == "config.json" || name == "model.safetensors" || name == "model.safetensors.index.json" ||
         (name.rfind("model-", 0) == 0 && name.find("-of-") != std::string::npos &&
          name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0);
}

// Makes `out` ready: created when absent; when it has entries, refused without `force`, and with
// `force` only the files a fixture consists of are removed (anything else there is kept).
void prepare_out_dir(const std::string& out, bool force) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) fail(out + ": exists and is not a directory");
  if (fs::is_directory(out, ec) && !fs::is_empty(out, ec)) {
    if (!force) fail(out + ": directory is not empty (pass --force to replace the fixture there)");
    for (const auto& e : fs::directory_iterator(out))
      if (e.is_regular_file() && (is_checkpoint_file(e.path().filename().string()) ||
                                  e.path().filename() == kFixtureFile))
        fs::remove(e.path());
    fs::remove_all(fs::path(out) / kGoldenDir);
  }
  fs::create_directories(out, ec);
  if (ec) fail(out + ": cannot create directory: " + ec.message());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

nlohmann::ordered_json num_or_null(double x) { return std::isfinite(x) ? nlohmann::ordered_json(x) : nullptr; }

nlohmann::ordered_json sizes_json(const CheckpointSpec& s) {
  return {{"vocab_size", s.vocab_size},
          {"hidden_size", s.hidden_size},
          {"intermediate_size", s.intermediate_size},
          {"moe_intermediate_size", s.moe_intermediate_size},
          {"num_hidden_layers", s.num_hidden_layers},
          {"dense_layers", s.first_k_dense_replace},
          {"moe_layers", s.num_hidden_layers - s.first_k_dense_replace},
          {"num_attention_heads", s.num_attention_heads},
          {"num_key_value_heads", s.num_key_value_heads},
          {"head_dim", s.head_dim},
          {"num_experts", s.num_experts},
          {"num_experts_per_tok", s.num_experts_per_tok},
          {"num_shared_experts", s.num_shared_experts},
          {"mtp_layers", s.mtp_layers},
          {"shards", s.shards},
          {"linear_gain", s.linear_gain},
          {"router_gain", s.router_gain},
          {"bias_scale", s.bias_scale}};
}

// The FP8 layout of the linear weights, recorded only for FP8 fixtures (a BF16 fixture's
// fixture.json is unchanged by its existence).
nlohmann::ordered_json quantization_json(const CheckpointSpec& s) {
  nlohmann::ordered_json j;
  j["layout"] = s.quant == QuantKind::Fp8Block ? "fp8-block" : "fp8-per-tensor";
  j["quantization_config"] = checkpoint_config_json(s)["quantization_config"];
  j["weights"] =
      "every *_proj.weight of layers < num_hidden_layers quantized from the BF16 weights of the same seed: "
      "s = fp32(amax / 448) per " + std::string(s.quant == QuantKind::Fp8Block ? "weight_block_size block" : "tensor") +
      ", q = E4M3FN(w / s) rounded to nearest even, saturated at 448";
  if (s.quant == QuantKind::Fp8PerTensor)
    j["input_scale"] = "a stand-in, not calibrated: fp32(" + std::to_string(s.fp8_input_scale) + ") for every module";
  return j;
}

nlohmann::ordered_json fixture_manifest(const Request& q, const Result& r, const std::string& out) {
  const CheckpointSpec& s = q.spec;
  const SizeBreakdown b = size_breakdown(s);
  nlohmann::ordered_json j;
  j["format"] = "hyoracle.fixture";
  j["version"] = 1;
  j["preset"] = q.preset;
  j["made_by"] = {
      {"tool", "hyoracle fixture"},
      {"version", kHyoracleVersion},
      {"command", q.command},
      // The generator's source is io/random_checkpoint.cpp. This text is part of every fixture.json
      // and of the committed fixtures' bytes, so it keeps the path it was first written with.
      {"weights",
       "reference/random_checkpoint.cpp: splitmix64 from the seed; normals are Irwin-Hall sums of 12 uniforms on a "
       "2^-32 grid (exact, no libm); embed N(0,1); linear N(0, linear_gain^2/fan_in); norms 1 + 0.1 N(0,1); router "
       "N(0, router_gain^2/H); expert_bias bias_scale N(0,1) kept F32; everything else stored BF16"},
      {"golden",
       "hyoracle CPU reference, precision exact (float64 throughout): prefill of the prompt, then greedy generation "
       "with the KV cache"},
      {"margin_rule",
       "seeds are tried in order from the requested one; a seed is accepted when the smallest router top-k margin "
       "(k-th minus (k+1)-th corrected score, every MoE layer, prompt token and decode step) and the smallest top-1 "
       "logit margin (every prompt row and generated step) are both >= min_margin"}};
  j["sizes"] = sizes_json(s);
  if (s.quant != QuantKind::None) j["quantization"] = quantization_json(s);
  j["parameters"] = b.total_params;
  j["requested_seed"] = q.spec.seed;
  j["seed"] = r.seed;
  j["prompt"] = q.prompt;
  j["generate"] = q.generate;
  j["min_margin"] = q.min_margin;
  j["tries"] = nlohmann::ordered_json::array();
  for (const Try& t : r.tries)
    j["tries"].push_back({{"seed", t.seed},
                          {"min_router_margin", num_or_null(t.min_router)},
                          {"min_logit_margin", num_or_null(t.min_logit)},
                          {"accepted", t.shortfall.empty()},
                          {"shortfall", t.shortfall}});
  j["margins"] = margins_json(r.margins);
  j["golden"] = {{"dir", kGoldenDir},
                 {"precision", "exact"},
                 {"dtype", "float64"},
                 {"tokens", r.margins.tokens},
                 {"steps_recorded", q.golden_steps}};
  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  int64_t bytes = 0;
  for (const std::string& f : fixture_files(out)) {
    files[f] = {{"bytes", int64_t(fs::file_size(fs::path(out) / f))}, {"sha256", sha256_file(out + "/" + f)}};
    bytes += files[f]["bytes"].get<int64_t>();
  }
  j["bytes"] = bytes;
  j["files"] = files;
  return j;
}

}  // namespace

std::vector<std::string> fixture_files(const std::string& dir) {
  std::vector<std::string> v;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && is_checkpoint_file(e.path().filename().string()))
      v.push_back(e.path().filename().string());
  const fs::path golden = fs::path(dir) / kGoldenDir;
  if (fs::is_directory(golden, ec))
    for (const auto& e : fs::directory_iterator(golden))
      if (e.is_regular_file()) v.push_back(std::string(kGoldenDir) + "/" + e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

Result make_fixture(const Request& q, const std::string& out, bool force, std::ostream* log) {
  validate_spec(q.spec);
  validate_fixture_size(q.spec);
  validate_prompt(q.prompt, q.spec.vocab_size);
  if (q.generate < 0) fail("--generate must not be negative");
  if (!(q.min_margin >= 0)) fail("--min-margin must be a non-negative number");
  if (q.max_tries < 1) fail("--max-tries must be at least 1");
  prepare_out_dir(out, force);

  Result r;
  for (int i = 0; i < q.max_tries; ++i) {
    CheckpointSpec spec = q.spec;
    spec.seed = q.spec.seed + uint64_t(i);
    Try t;
    t.seed = spec.seed;
    auto t0 = std::chrono::steady_clock::now();
    if (q.progress)
      q.progress->phase("seed " + std::to_string(spec.seed) + " (try " + std::to_string(i + 1) + " of at most " +
                        std::to_string(q.max_tries) + "): writing the random weights");
    write_random_checkpoint(spec, out);
    t.write_s = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    const Checkpoint ck(out);
    DumpWriter golden(DType::F64);
    if (q.progress) q.progress->phase("seed " + std::to_string(spec.seed) + ": the golden run (exact reference)");
    MarginReport m = run_golden(ck, q.prompt, q.generate, q.threads, &golden, q.golden_steps, q.progress);
    t.check_s = seconds_since(t0);
    t.min_router = m.min_router;
    t.min_logit = m.min_logit;
    t.shortfall = margin_shortfall(m, q.min_margin);
    r.tries.push_back(t);
    if (log) {
      char line[256];
      std::snprintf(line, sizeof line, "  seed %llu: weights %.2f s, golden run %.2f s, router margin %.3g, logit margin %.3g: %s\n",
                    (unsigned long long)t.seed, t.write_s, t.check_s, m.min_router, m.min_logit,
                    t.shortfall.empty() ? "accepted" : "rejected");
      *log << line << std::flush;
    }
    if (!t.shortfall.empty()) continue;

    DumpProducer p;
    p.mode = q.generate > 0 ? "generate" : "prefill";
    const std::string id = "hyoracle fixture " + q.preset + " seed " + std::to_string(spec.seed);
    golden.write(out + "/" + kGoldenDir, make_manifest(p, ck.config(), id, q.prompt));
    r.seed = spec.seed;
    r.margins = std::move(m);
    r.manifest = fixture_manifest(q, r, out);
    r.bytes = r.manifest["bytes"].get<int64_t>();
    write_output_file(out + "/" + kFixtureFile, r.manifest.dump(2) + "\n");
    return r;
  }
  const Try& best = *std::max_element(r.tries.begin(), r.tries.end(), [](const Try& a, const Try& b) {
    return std::min(a.min_router, a.min_logit) < std::min(b.min_router, b.min_logit);
  });
  fail("no seed in [" + std::to_string(q.spec.seed) + ", " + std::to_string(q.spec.seed + q.max_tries) +
       ") meets --min-margin; closest was seed " + std::to_string(best.seed) + " (" + best.shortfall +
       "); " + out + " holds the last try's weights and no fixture.json");
}

}  // namespace hyoracle::fixture
