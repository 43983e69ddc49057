// hyoracle run: the reference forward pass (prefill, optional greedy generation) of a hy_v3
// checkpoint, written as a dump (docs/DUMP_FORMAT.md) with a short summary on stdout.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <iostream>
#include <limits>
#include <sstream>
#include <thread>

#include "io/checkpoint.h"
#include "tools/commands.h"
#include "io/dump.h"
#include "tools/estimate.h"
#include "reference/model.h"
#include "reference/names.h"
#include "tools/run_options.h"

namespace hyoracle::cli {

namespace {

// Forwards to an optional dump writer and keeps what the summary prints.
class SummarySink : public ActivationSink {
 public:
  SummarySink(DumpWriter* w, Family f) : writer_(w), family_(f) {}
  void put(const std::string& n, const Tensor<double>& t) override { see(n, t); if (writer_) writer_->put(n, t); }
  void put(const std::string& n, const Tensor<float>& t) override { see(n, t); if (writer_) writer_->put(n, t); }
  void put_ints(const std::string& n, const std::vector<int64_t>& s, const std::vector<int64_t>& v,
                DType stored) override {
    if (writer_) writer_->put_ints(n, s, v, stored);
  }
  double min_margin = std::numeric_limits<double>::infinity();
  std::string min_margin_at;

 private:
  template <class S>
  void see(const std::string& n, const Tensor<S>& t) {
    // The router's top-k margins (the table's margin role), of the prefill and of every step.
    const dataflow::Step* s = dataflow::step_of_name(family_, n);
    if (!s || s->role != dataflow::Role::margin) return;
    for (int64_t i = 0; i < t.numel(); ++i)
      if (double(t.data[i]) < min_margin) {
        min_margin = double(t.data[i]);
        min_margin_at = n + "[" + std::to_string(i) + "]";
      }
  }
  DumpWriter* writer_;
  Family family_;
};

// --dry-run: the estimate of estimate.h from config.json and the checkpoint's file sizes.
int dry_run(const RunOptions& o) {
  const ModelConfig c = load_config(o.model + "/config.json");
  check_run_input(c, o);
  RunShape s;
  s.tokens = int64_t(o.tokens.size());
  s.generate = o.generate;
  s.fp32 = o.precision == Precision::fp32;
  s.lazy_experts = o.lazy_experts;
  s.dump = !o.dump.empty();
  s.dump_steps = o.dump_steps;
  s.threads = o.threads;
  Estimate e = estimate_run(c, s);
  double checkpoint_bytes = 0;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(o.model, ec))
    if (f.path().extension() == ".safetensors") checkpoint_bytes += double(f.file_size(ec));
  add_weight_reads(e, checkpoint_bytes);
  if (o.lazy_experts) e.notes.push_back("--lazy-experts: experts are expanded on use, so the time also grows with "
                                        "the expert reads, which this estimate counts once");
  if (o.device == "cuda") e.notes.push_back("the figures are for the CPU reference; --device cuda is far faster");
  print_estimate("run", e);
  return 0;
}

template <class S>
int run_model(const RunOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  Progress progress("run", o.verbosity);
  progress.phase("loading the checkpoint " + o.model + (o.lazy_experts ? "" : " (expanding every expert)"));
  Checkpoint ck(o.model);
  const ModelConfig& c = ck.config();
  check_run_input(c, o);
  if (o.verbose && !ck.ignored().empty()) {
    std::cout << "ignoring " << ck.ignored().size() << " tensors of layers >= num_hidden_layers (" << c.num_hidden_layers
              << ", e.g. the MTP layer):";
    for (const auto& n : ck.ignored()) std::cout << " " << n;
    std::cout << "\n";
  }
  LoadOptions lo;
  lo.resident_experts = !o.lazy_experts;
  const ModelWeights<S> m = load_model<S>(ck, lo);
  const auto t1 = std::chrono::steady_clock::now();

  Numerics num{o.precision, o.threads};
  num.fp8_activations = o.fp8_activations;
  DumpWriter writer(std::is_same_v<S, double> ? DType::F64 : DType::F32);
  SummarySink sink(o.dump.empty() ? nullptr : &writer, c.family);
  ProgressSink watched(&sink, &progress, c.num_hidden_layers, o.dump_steps);
  KVCache<S> cache = make_cache<S>(c);
  progress.phase("prefill of " + std::to_string(o.tokens.size()) + " tokens through " +
                 std::to_string(c.num_hidden_layers) + " layers");
  const Tensor<S> logits = forward(m, o.tokens, cache, num, Recorder{progress.enabled() ? static_cast<ActivationSink*>(&watched) : &sink, ""});
  const auto t2 = std::chrono::steady_clock::now();
  Generation<S> gen;
  if (o.generate > 0) {
    progress.phase("generating " + std::to_string(o.generate) + " tokens");
    ActivationSink* steps = progress.enabled() ? static_cast<ActivationSink*>(&watched) : o.dump_steps ? &sink : nullptr;
    gen = generate_greedy(m, logits, cache, o.generate, num, steps);
    writer.put_ints(names::kGenerateTokens, {o.generate}, gen.tokens, dataflow::int_dtype_of(names::kGenerateTokens));
    writer.put(names::kGenerateLogits, gen.logits);
  }
  const auto t3 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };

  if (!o.dump.empty()) {
    progress.phase("writing the dump " + o.dump);
    DumpProducer p;
    p.dtype = std::is_same_v<S, double> ? "float64" : "float32";
    p.precision = precision_name(o.precision);
    p.mode = o.generate > 0 ? "generate" : "prefill";
    if (o.fp8_activations) p.activations = "fp8-static";
    nlohmann::ordered_json manifest = make_manifest(p, c, o.model, o.tokens);
    record_weights_fingerprint(manifest, o.model);
    writer.write(o.dump, manifest);
  }
  if (o.verbosity.quiet) return 0;
  int64_t dense = 0;
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) dense += c.is_dense(L);
  std::printf("hyoracle run: %s\n", o.model.c_str());
  std::printf("  model     hy_v3, %lld layers (%lld dense + %lld MoE), H=%lld, heads %lld/%lld x %lld, E=%lld, top-%lld, V=%lld\n",
              (long long)c.num_hidden_layers, (long long)dense, (long long)(c.num_hidden_layers - dense),
              (long long)c.hidden_size, (long long)c.num_attention_heads, (long long)c.num_key_value_heads,
              (long long)c.head_dim, (long long)c.num_experts, (long long)c.num_experts_per_tok, (long long)c.vocab_size);
  std::printf("  precision %s (%s), %d thread(s)\n", precision_name(o.precision).c_str(),
              std::is_same_v<S, double> ? "float64" : "float32", o.threads);
  std::printf("  prefill   %zu tokens, load %.1f ms, forward %.1f ms\n", o.tokens.size(), ms(t0, t1), ms(t1, t2));
  const int64_t V = c.vocab_size, last = logits.rows() - 1;
  const int64_t top = argmax(logits.row(last), V);
  double second = -std::numeric_limits<double>::infinity();
  for (int64_t v = 0; v < V; ++v)
    if (v != top) second = std::max(second, double(logits.row(last)[v]));
  std::printf("  next      token %lld (logit %.6g, top-1 margin %.3g)\n", (long long)top, double(logits.row(last)[top]),
              double(logits.row(last)[top]) - second);
  if (std::isfinite(sink.min_margin))
    std::printf("  router    min top-k margin %.3g at %s%s\n", sink.min_margin, sink.min_margin_at.c_str(),
                o.generate > 1 && !o.dump_steps ? " (prefill)" : "");
  if (o.generate > 0) {
    std::printf("  generate  %lld tokens in %.1f ms: %s\n", (long long)o.generate, ms(t2, t3),
                shown_tokens(gen.tokens, !o.dump.empty()).c_str());
  }
  if (!o.dump.empty()) std::printf("  dump      %s (%zu tensors)\n", o.dump.c_str(), writer.size());
  return 0;
}

}  // namespace

void register_run(CLI::App& app, int& status) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run the CPU reference on a checkpoint and write a dump");
  add_run_options(*cmd, *o);
  cmd->callback([o, &status] {
    finish_run_options(*o);
    if (o->dry_run) {
      status = dry_run(*o);
      return;
    }
    if (o->device == "cuda") {
      status = run_on_cuda(*o);
      return;
    }
    status = o->precision == Precision::fp32 ? run_model<float>(*o) : run_model<double>(*o);
  });
}

}  // namespace hyoracle::cli
