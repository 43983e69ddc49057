// graph.h: execution order of canonical dump names and the inputs of each step (docs/model.md
// §4.11), so "first" means first executed and each step knows what it inherited from.
//
//   input_ids, embed, layers.0.<suffix in names::layer_suffixes(family) order>, ..., layers.L-1.*,
//   final_norm, logits, steps.1.*, ..., layers.L.kv.*, generate.tokens, generate.logits
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "reference/dataflow.h"

namespace hyoracle::compare {

// What compare needs to know of a model's structure to order names and find each step's inputs:
// its family's dataflow table and which layers are cross layers (cross-layer attention). From
// the checkpoint's config with --model, else from the dumps' manifests (model.family,
// model.cla_share_factor).
struct ModelGraph {
  Family family = Family::hy_v3;
  int64_t cla_share_factor = 1;
  int64_t kv_source(int64_t layer) const { return layer - layer % cla_share_factor; }
  dataflow::LayerKind kind(int64_t layer, bool moe) const { return {moe, kv_source(layer) != layer}; }
};

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
OrderKey order_key(const ModelGraph& g, const std::string& name);

// Names sorted into execution order (unknown names after the known ones of their step, and
// names of equal key alphabetically).
std::vector<std::string> execution_order(const ModelGraph& g, std::vector<std::string> names);

// The canonical tensors a step reads (same step prefix), e.g. layers.2.attn.out -> {layers.2.attn.context};
// `moe` says whether the layer is an MoE layer (decides the inputs of mlp.out). A cross layer's
// inputs from its KV source layer are named in that layer (layers.3.attn.k_rope -> layers.2.attn.k).
std::vector<std::string> step_inputs(const ModelGraph& g, const std::string& name, bool moe);

}  // namespace hyoracle::compare
