#include "tools/estimate.h"

#include <algorithm>
#include <cstdio>

#include "tools/cli_util.h"

namespace hyoracle::cli {

namespace {

// Measured rates (2-core machine, OpenBLAS): one full-size Hy-MT2 MoE layer at T = 512 in double,
// about 62 GFLOP, takes 1.6 s on 2 threads (README), so about 20 GFLOP/s per thread in double
// (twice that in float32). compare streams two dumps at 0.5-1.1 GB/s (docs/compare.md).
constexpr double kFlopsPerThreadDouble = 20e9;
constexpr double kCompareBytesPerSecond = 0.5e9;
// Reading checkpoint weights and decoding them to double: about 0.5 GB/s (uncached disk).
constexpr double kWeightReadBytesPerSecond = 0.5e9;
// A fixture costs about 7 MB/s of checkpoint: making the random weights, hashing them and the
// golden run expanding experts on use (docs/ci-recipe.md: mt2-layer, 1.41 GB, takes minutes;
// hy3-layer, 7.98 GB, tens of minutes).
constexpr double kFixtureBytesPerSecond = 7e6;
// The binary's resident floor (docs/compare.md: 0.22-0.23 GB with the CUDA runtime linked).
constexpr double kBinaryFloorBytes = 0.25e9;

// Parameters of one layer (attention + norms + MLP or MoE block) and those a token uses.
struct LayerParams {
  double all = 0, active = 0, experts = 0, one_expert = 0;
};

LayerParams layer_params(const ModelConfig& c, int64_t L) {
  const double H = double(c.hidden_size), A = double(c.q_width()), Kv = double(c.kv_width());
  LayerParams p;
  const double attention = H * A * 2 + H * Kv * 2 + 2 * H + 2 * double(c.head_dim);
  p.all = p.active = attention;
  if (c.is_dense(L)) {
    p.all += 3 * H * double(c.intermediate_size);
    p.active = p.all;
    return p;
  }
  p.one_expert = 3 * H * double(c.moe_intermediate_size);
  p.experts = double(c.num_experts) * p.one_expert;
  const double router_shared = double(c.num_experts) * (H + 1) + 3 * H * double(c.shared_width());
  p.all += p.experts + router_shared;
  p.active += double(c.num_experts_per_tok) * p.one_expert + router_shared;
  return p;
}

// Values one token records per layer in a dump (the canonical tensors of docs/DUMP_FORMAT.md):
// norms, q/k/v before and after norm and RoPE, context, the residual sums and block outputs, and
// for MoE layers the router's scores and top-k.
double recorded_per_token_layer(const ModelConfig& c, int64_t L) {
  const double H = double(c.hidden_size), A = double(c.q_width()), Kv = double(c.kv_width());
  double v = 7 * H + 4 * A + 6 * Kv;
  if (!c.is_dense(L)) v += 2 * double(c.num_experts) + 3 * double(c.num_experts_per_tok) + 1 + 2 * H;
  return v;
}

}  // namespace

// Time: flops / (20 GFLOP/s per thread in double, twice that in float32), where the flops of a
// pass over n new tokens at context length t are, per layer, 2·(active parameters)·n (the
// products) + 2·n·t·A (scores and context), plus 2·V·H·n for the logits; decode step s is n = 1
// at t = T + s. Memory: the weights in the compute type (all experts expanded, or with
// --lazy-experts one per thread) + the KV cache (layers · (T + G) · 2·Kv values) + one layer's
// activations (T · (12·H + 4·A + 4·Kv + 3·E + k·(2·H + 3·I_e))) + the dump, which is held in
// memory until it is written. Disk: the dump (recorded values · 8 or 4 bytes) and the
// checkpoint read once.
Estimate estimate_run(const ModelConfig& c, const RunShape& s) {
  Estimate e;
  const double bytes = s.fp32 ? 4 : 8, T = double(s.tokens), G = double(s.generate);
  const double H = double(c.hidden_size), A = double(c.q_width()), Kv = double(c.kv_width());
  const double V = double(c.vocab_size), layers = double(c.num_hidden_layers);
  double params = 2 * V * H + H, flops = 0, recorded = T * H * 2 + T * V, largest_expert = 0;
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) {
    const LayerParams p = layer_params(c, L);
    params += s.lazy_experts ? p.all - p.experts + double(s.threads) * p.one_expert : p.all;
    largest_expert = std::max(largest_expert, p.one_expert);
    flops += 2 * p.active * T + 2 * T * T * A;
    for (double step = 1; step < G; ++step) flops += 2 * p.active + 2 * (T + step) * A;
    recorded += T * recorded_per_token_layer(c, L);
    if (s.dump_steps) recorded += std::max(0.0, G - 1) * recorded_per_token_layer(c, L);
  }
  flops += 2 * V * H * (T + G);
  if (s.dump && s.dump_steps) recorded += std::max(0.0, G - 1) * (2 * H + V);
  if (G > 0) recorded += G * V + G;
  const double activations = T * (12 * H + 4 * A + 4 * Kv + 3 * double(c.num_experts) +
                                  double(c.num_experts_per_tok) * (2 * H + 3 * double(c.moe_intermediate_size)));
  const double scores = double(std::min<int64_t>(s.threads, c.num_attention_heads)) * T * T;
  const double dump_bytes = s.dump ? recorded * bytes : 0;
  e.seconds = flops / (kFlopsPerThreadDouble * (s.fp32 ? 2 : 1) * double(std::max(1, s.threads)));
  e.memory_bytes = kBinaryFloorBytes + bytes * (params + layers * (T + G) * 2 * Kv + activations + scores) + dump_bytes;
  e.write_bytes = dump_bytes;
  char rate[160];
  std::snprintf(rate, sizeof rate, "time assumes %.0f GFLOP/s per thread (measured on a 2-core machine); %.3g GFLOP in all",
                kFlopsPerThreadDouble * (s.fp32 ? 2 : 1) / 1e9, flops / 1e9);
  e.notes.push_back(rate);
  return e;
}

// Time: the dumps' bytes at 0.5 GB/s (uncached, measured), plus with the model the reference's
// re-run of every step in double (estimate_run's formula). Memory: the binary's floor (0.25 GB;
// the comparison streams, so it does not grow with the dumps) plus with the model the largest
// layer's weights in double and a few of the step's tensors (4 · T · max(H, A, I) doubles).
Estimate estimate_compare(double dump_bytes, const ModelConfig* model, int64_t tokens, int64_t generate, int threads) {
  Estimate e;
  e.read_bytes = dump_bytes;
  e.seconds = dump_bytes / kCompareBytesPerSecond;
  e.memory_bytes = kBinaryFloorBytes;
  e.write_bytes = 0;
  if (!model) {
    e.notes.push_back("no teacher forcing: the dumps are streamed, memory does not grow with them");
    return e;
  }
  RunShape s;
  s.tokens = tokens;
  s.generate = generate;
  s.threads = threads;
  const Estimate r = estimate_run(*model, s);
  e.seconds += r.seconds;
  double largest = 0;
  for (int64_t L = 0; L < model->num_hidden_layers; ++L) largest = std::max(largest, layer_params(*model, L).all);
  const double width = double(std::max({model->hidden_size, model->q_width(), model->intermediate_size}));
  e.memory_bytes += 8 * (largest + 4 * double(tokens) * width);
  e.notes.push_back("teacher forcing: every step is re-run in double on the target's inputs, one layer's weights "
                    "in memory at a time");
  return e;
}

void add_weight_reads(Estimate& e, double checkpoint_bytes) {
  e.read_bytes += checkpoint_bytes;
  e.seconds += checkpoint_bytes / kWeightReadBytesPerSecond;
}

void add_fixture_writes(Estimate& e, double checkpoint_bytes) {
  e.write_bytes += checkpoint_bytes;
  e.seconds = std::max(e.seconds, checkpoint_bytes / kFixtureBytesPerSecond);
}

void print_estimate(const std::string& command, const Estimate& e) {
  std::printf("hyoracle %s --dry-run: an estimate (nothing was run)\n", command.c_str());
  std::printf("  time      %s%s\n", e.seconds >= 1 ? "about " : "", human_seconds(e.seconds).c_str());
  std::printf("  memory    about %s peak\n", human_bytes(e.memory_bytes).c_str());
  std::printf("  disk      reads about %s, writes about %s\n", human_bytes(e.read_bytes).c_str(),
              human_bytes(e.write_bytes).c_str());
  for (const std::string& n : e.notes) std::printf("  note      %s\n", n.c_str());
}

}  // namespace hyoracle::cli
