// graph.h: execution order of canonical dump names and the inputs of each step (docs/model.md
// §4.11), so "first" means first executed and each step knows what it inherited from.
//
//   input_ids, embed, layers.0.<suffix in names::layer_suffixes() order>, ..., layers.L-1.*,
//   final_norm, logits, steps.1.*, ..., layers.L.kv.*, generate.tokens, generate.logits
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hyoracle::compare {

// Sort key of a canonical name in execution order; names compare does not know sort after the
// known names of their step (and known is false for them).
struct OrderKey {
  int64_t step = 0, section = 0, layer = 0, index = 0;
  bool known = false;
  bool operator<(const OrderKey& o) const {
    if (step != o.step) return step < o.step;
    if (section != o.section) return section < o.section;
    if (layer != o.layer) return layer < o.layer;
    return index < o.index;
  }
};
OrderKey order_key(const std::string& name);

// Names sorted into execution order (unknown names after the known ones of their step, and
// names of equal key alphabetically).
std::vector<std::string> execution_order(std::vector<std::string> names);

// The canonical tensors a step reads (same step prefix), e.g. layers.2.attn.out -> {layers.2.attn.context};
// `moe` says whether the layer is an MoE layer (decides the inputs of mlp.out).
std::vector<std::string> step_inputs(const std::string& name, bool moe);

}  // namespace hyoracle::compare
