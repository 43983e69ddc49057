// Fuzzes the config.json reader (strict JSON + every hy_v3 field check). An accepted config
// must satisfy the invariants the model code relies on.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/config.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const hyoracle::ModelConfig c =
        hyoracle::parse_config_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
    const bool ok = c.hidden_size > 0 && c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads == 0 &&
                    c.head_dim % 2 == 0 && c.num_experts_per_tok <= c.num_experts &&
                    int64_t(c.dense_layer.size()) == c.num_hidden_layers && c.rms_norm_eps > 0 && c.rope_theta > 1;
    if (!ok) std::abort();
  } catch (const hyoracle::Error&) {
  }
  return 0;
}
