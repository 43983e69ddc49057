// compare_helpers.h: shared test scaffolding for tests/compare: seeded random checkpoints,
// in-process reference dumps, and dump rewriting to plant bugs.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>

#include "io/checkpoint.h"
#include "io/dump.h"
#include "reference/model.h"
#include "io/random_checkpoint.h"

namespace hyoracle::testing {

// A per-process directory: CTest runs every test as its own process, several at once.
inline std::string temp_dir(const std::string& name) {
  const std::string d = std::filesystem::temp_directory_path().string() + "/hyoracle_compare_tests-" +
                        std::to_string(::getpid()) + "/" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// Runs the reference (S = double for exact, float for fp32) on `ck` and writes a dump; with
// `rounding` given, every floating tensor is passed through it before storage in `store`.
// `fp8_activations`: the W8A8 mode (reference/fp8_activation.h), named in the producer.
template <class S>
void reference_dump(const Checkpoint& ck, const std::vector<int64_t>& tokens, Precision p, const std::string& dir,
                    DType store, const std::string& dtype_name, int64_t generate = 0, bool fp8_activations = false) {
  LoadOptions lo;
  lo.resident_experts = false;  // bounded memory (and the resident path of load_layer is not needed)
  const ModelWeights<S> m = load_model<S>(ck, lo);
  DumpWriter w(store);
  KVCache<S> cache = make_cache<S>(ck.config());
  Numerics num{p, 1};
  num.fp8_activations = fp8_activations;
  const Tensor<S> logits = forward(m, tokens, cache, num, Recorder{&w, ""});
  if (generate > 0) {
    Generation<S> g = generate_greedy(m, logits, cache, generate, num, &w);
    w.put_ints("generate.tokens", {generate}, g.tokens, DType::I64);
    w.put("generate.logits", g.logits);
  }
  DumpProducer prod;
  prod.dtype = dtype_name;
  prod.precision = precision_name(p);
  if (fp8_activations) prod.activations = "fp8-static";
  w.write(dir, make_manifest(prod, ck.config(), ck.dir(), tokens));
}

// Copies dump `src` to `dst`, passing every floating tensor through `edit(name, tensor)` and storing
// floats as `store`; the manifest's producer.dtype becomes `dtype_name`.
void rewrite_dump(const std::string& src, const std::string& dst, DType store, const std::string& dtype_name,
                  const std::function<void(const std::string&, Tensor<double>&)>& edit);

// Copies the checkpoint `src` (one model.safetensors and its config.json) to `dst` with the F32
// tensor `name` rewritten by `edit` (its values, row-major, and its shape): a scale read the way
// a loader bug would read it.
void copy_with_edited_scale(const std::string& src, const std::string& dst, const std::string& name,
                            const std::function<void(std::vector<float>&, const std::vector<int64_t>&)>& edit);

}  // namespace hyoracle::testing
