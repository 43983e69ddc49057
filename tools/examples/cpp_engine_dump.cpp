// cpp_engine_dump: how a C++ engine writes a hyoracle dump (docs/DUMP_FORMAT.md) with the
// library's writer, hyoracle::DumpWriter from io/dump.h (link hyoracle_reference, which brings hyoracle_io).
//
//   cpp_engine_dump OUT_DIR
//
// An engine calls put() with its own buffers under canonical names (names.h), batch 1, leading
// dimension T, layouts undone (heads split head-major, no fused QKV), then write() with a
// manifest naming itself. Here the "engine" is a stand-in that makes up a few tensors; a real
// one passes its activations. `hyoracle compare REFERENCE_DUMP OUT_DIR --model CKPT` judges it.
#include <cstdio>

#include "io/dump.h"
#include "reference/names.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cpp_engine_dump OUT_DIR\n");
    return 2;
  }
  using namespace hyoracle;
  const std::vector<int64_t> tokens = {17, 3, 99};
  const int64_t T = int64_t(tokens.size()), H = 8, V = 16;

  DumpWriter w(DType::BF16);  // store floating tensors as the engine computed them: bf16 here
  w.put_ints(names::kInputIds, {T}, tokens, dataflow::int_dtype_of(names::kInputIds));
  Tensor<float> embed({T, H}), logits({T, V});
  for (int64_t i = 0; i < embed.numel(); ++i) embed.data[i] = 0.125f * float(i % 7) - 0.25f;
  for (int64_t i = 0; i < logits.numel(); ++i) logits.data[i] = 0.5f * float(i % 5);
  w.put(names::kEmbed, embed);
  w.put(names::layer(0, "out"), embed);
  w.put(names::kLogits, logits);

  nlohmann::ordered_json m;
  m["format"] = "hyoracle.dump";
  m["version"] = kDumpVersion;
  m["producer"] = {{"name", "my-engine"}, {"version", "1.2.3"}, {"device", "NVIDIA H100"},
                   {"dtype", "bfloat16"}, {"precision", "engine"}, {"mode", "prefill"}};
  m["model"] = {{"model_type", "hy_v3"}, {"num_hidden_layers", 1}};
  m["input"] = {{"token_ids", tokens}, {"position_offset", 0}};
  try {
    w.write(argv[1], m);
  } catch (const Error& e) {
    std::fprintf(stderr, "cpp_engine_dump: error: %s\n", e.what());
    return 2;
  }
  std::printf("wrote %s (%zu tensors)\n", argv[1], w.size());
  return 0;
}
