// hyoracle run --device cuda: the CUDA path's forward pass (prefill, optional greedy generation)
// written as the same dump as the reference (docs/DUMP_FORMAT.md), through the shared
// DumpWriter, make_manifest and canonical names. Tensors are stored as F32 (values of a
// bf16/fp16 run are exact in F32; the logits are the fp32 lm_head output), or as F64 on the fp64
// path (every layer in double, the reference's exact mode operation for operation).
#include <chrono>
#include <cstdio>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/dump.h"
#include "cuda/model.h"
#include "reference/names.h"
#include "tools/run_options.h"

namespace hyoracle::cli {

namespace {

template <class T>
const char* dtype_long_name() {
  if constexpr (std::is_same_v<T, cuda::bf16>) return "bfloat16";
  else if constexpr (std::is_same_v<T, cuda::fp16>) return "float16";
  else if constexpr (std::is_same_v<T, double>) return "float64";
  else return "float32";
}

template <class T>
int run_cuda(const RunOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const cuda::Gpu& g = cuda::gpu();
  cuda::ModelWeights<T> m;
  std::string checkpoint = o.model;
  if (o.random_weights >= 0) {
    const ModelConfig config = load_config(o.model + "/config.json");
    check_run_input(config, o);
    m = cuda::random_model<T>(config, uint64_t(o.random_weights));
    checkpoint = "random-weights:seed=" + std::to_string(o.random_weights) + ",config=" + o.model + "/config.json";
  } else {
    Checkpoint ck(o.model);
    check_run_input(ck.config(), o);
    m = cuda::load_model<T>(ck);
  }
  const ModelConfig& c = m.config;
  cuda::synchronize();
  const auto t1 = clock::now();

  constexpr bool fp64 = std::is_same_v<T, double>;
  using A = cuda::acc_t<T>;
  DumpWriter writer(fp64 ? DType::F64 : DType::F32);
  ActivationSink* sink = o.dump.empty() ? nullptr : &writer;
  cuda::KVCache<T> cache = cuda::make_cache<T>(c, int64_t(o.tokens.size()) + std::max<int64_t>(o.generate, 0));
  const cuda::DeviceTensor<A> logits = cuda::forward(m, o.tokens, cache, Recorder{sink, ""});
  cuda::synchronize();
  const auto t2 = clock::now();
  cuda::GenerationOf<A> gen;
  // Without --dump-steps the decode steps run as one captured CUDA graph (cuda/model.h): the
  // same kernels as the recorded path, the same tokens and logits, without per-launch host cost.
  // The fp64 path synchronises with the host in every MoE block (expert groups), so it cannot be
  // captured and runs step by step.
  const bool graph = !fp64 && o.generate > 1 && !o.dump_steps;
  if (o.generate > 0) {
    if constexpr (fp64) gen = cuda::generate_greedy(m, logits, cache, o.generate, o.dump_steps ? sink : nullptr);
    else
      gen = graph ? cuda::generate_greedy_graph(m, logits, cache, o.generate)
                  : cuda::generate_greedy(m, logits, cache, o.generate, o.dump_steps ? sink : nullptr);
    if (sink) {
      writer.put_ints(names::kGenerateTokens, {o.generate}, gen.tokens, dataflow::int_dtype_of(names::kGenerateTokens));
      writer.put(names::kGenerateLogits, gen.logits);
    }
  }
  cuda::synchronize();
  const auto t3 = clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };

  const int64_t last = logits.rows() - 1;
  const cuda::DeviceTensor<A> row =
      cuda::DeviceTensor<A>::view(const_cast<A*>(logits.data()) + last * c.vocab_size, {1, c.vocab_size});
  const int64_t next = cuda::argmax_rows(row)[0];
  std::printf("hyoracle run --device cuda: %s\n", checkpoint.c_str());
  std::printf("  device    %s, activations %s, %s%s\n", g.name.c_str(), cuda::dtype_label<T>(),
              fp64 ? "fp64 accumulation (exact mode)" : "fp32 accumulation",
              o.precision != Precision::exact ? " (--precision applies to the CPU reference only; ignored)" : "");
  std::printf("  prefill   %zu tokens, load %.1f ms, forward %.1f ms%s\n", o.tokens.size(), ms(t0, t1), ms(t1, t2),
              sink ? " (with recording)" : "");
  std::printf("  next      token %lld\n", (long long)next);
  if (o.generate > 0) {
    std::printf("  generate  %lld tokens in %.1f ms (%s, logits copied back each step):", (long long)o.generate, ms(t2, t3),
                graph ? "decode steps as one CUDA graph" : "decode steps recorded, launch by launch");
    std::printf(" %s\n", shown_tokens(gen.tokens, sink != nullptr).c_str());
  }
  if (sink) {
    DumpProducer p;
    p.name = "hyoracle-cuda";
    p.device = g.name;
    p.dtype = dtype_long_name<T>();
    p.precision = fp64 ? "exact" : cuda::dtype_label<T>();
    p.mode = o.generate > 0 ? "generate" : "prefill";
    nlohmann::ordered_json manifest = make_manifest(p, c, checkpoint, o.tokens);
    if (o.random_weights < 0) record_weights_fingerprint(manifest, o.model);
    writer.write(o.dump, manifest);
    std::printf("  dump      %s (%zu tensors)\n", o.dump.c_str(), writer.size());
  }
  return 0;
}

}  // namespace

int run_on_cuda(const RunOptions& o) {
  if (o.dtype == "bfloat16") return run_cuda<cuda::bf16>(o);
  if (o.dtype == "float16") return run_cuda<cuda::fp16>(o);
  if (o.dtype == "float32") return run_cuda<float>(o);
  if (o.dtype == "float64") return run_cuda<double>(o);
  fail("--dtype: \"" + o.dtype + "\" is not one of bfloat16, float16, float32, float64");
}

}  // namespace hyoracle::cli
