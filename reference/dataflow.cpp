#include "reference/dataflow.h"

#include <nlohmann/json.hpp>

namespace hyoracle::dataflow {

const std::vector<Step>& layer_steps() {
  using A = Applies;
  using R = Role;
  using S = Shape;
  static const std::vector<Step> v = {
      {"input_norm", "rms_norm", {kPrevOut}, A::all, R::activation, S::T_H, false, DType::I64, true},
      {"attn.q", "linear", {"input_norm"}, A::all, R::activation, S::T_nq_d},
      {"attn.k", "linear", {"input_norm"}, A::all, R::activation, S::T_nkv_d},
      {"attn.v", "linear", {"input_norm"}, A::all, R::activation, S::T_nkv_d},
      {"attn.q_norm", "rms_norm", {"attn.q"}, A::all, R::activation, S::T_nq_d, false, DType::I64, true},
      {"attn.k_norm", "rms_norm", {"attn.k"}, A::all, R::activation, S::T_nkv_d, false, DType::I64, true},
      {"attn.q_rope", "rope", {"attn.q_norm"}, A::all, R::activation, S::T_nq_d},
      {"attn.k_rope", "rope", {"attn.k_norm"}, A::all, R::activation, S::T_nkv_d},
      {"attn.context", "attention", {"attn.q_rope", "attn.k_rope", "attn.v"}, A::all, R::activation, S::T_nqd},
      {"attn.out", "linear", {"attn.context"}, A::all, R::activation, S::T_H, false, DType::I64, true},
      {"resid_mid", "add", {kPrevOut, "attn.out"}, A::all, R::activation, S::T_H},
      {"post_norm", "rms_norm", {"resid_mid"}, A::all, R::activation, S::T_H, false, DType::I64, true},
      {"moe.router_logits", "linear", {"post_norm"}, A::moe, R::activation, S::T_E, /*wide=*/true, DType::I64, true},
      {"moe.scores", "sigmoid", {"moe.router_logits"}, A::moe, R::activation, S::T_E, /*wide=*/true},
      {"moe.topk_ids", "ids", {"moe.scores"}, A::moe, R::ids, S::T_k, false, DType::I32, true},
      {"moe.topk_weights", "router_weights", {"moe.scores", "moe.topk_ids"}, A::moe, R::activation, S::T_k, /*wide=*/true, DType::I64, true},
      {"moe.topk_margin", "margin", {"moe.scores"}, A::moe, R::margin, S::T},
      {"moe.routed_out", "routed_experts", {"post_norm", "moe.topk_ids", "moe.topk_weights"}, A::moe, R::activation, S::T_H, false, DType::I64, true},
      {"moe.shared_out", "swiglu", {"post_norm"}, A::moe, R::activation, S::T_H, false, DType::I64, true},
      {"mlp.out", "ffn", {"post_norm"}, A::dense, R::activation, S::T_H, false, DType::I64, true},
      {"mlp.out", "add", {"moe.routed_out", "moe.shared_out"}, A::moe, R::activation, S::T_H, false, DType::I64, true},
      {"out", "add", {"resid_mid", "mlp.out"}, A::all, R::activation, S::T_H, false, DType::I64, true},
  };
  return v;
}

const Step* find_step(const std::string& suffix, bool moe_layer) {
  for (const Step& s : layer_steps())
    if (s.name == suffix && (s.applies == Applies::all || (s.applies == Applies::moe) == moe_layer)) return &s;
  return nullptr;
}

namespace {

// Where a canonical name starts once its "steps.S." prefix (if any) is skipped.
size_t after_step_prefix(const std::string& n) {
  if (n.rfind("steps.", 0) != 0) return 0;
  const size_t dot = n.find('.', 6);
  return dot == std::string::npos ? n.size() : dot + 1;
}

}  // namespace

const Step* step_of_name(const std::string& n) {
  const size_t at = after_step_prefix(n);
  if (n.compare(at, 7, "layers.") != 0) return nullptr;
  const size_t dot = n.find('.', at + 7);
  if (dot == std::string::npos) return nullptr;
  const std::string suffix = n.substr(dot + 1);
  for (const Step& s : layer_steps())
    if (s.name == suffix) return &s;
  return nullptr;
}

DType int_dtype_of(const std::string& n) {
  if (const Step* s = step_of_name(n)) return s->role == Role::ids ? s->ints : DType::I64;
  const size_t at = after_step_prefix(n);
  for (const ModelStep& m : model_steps())
    if (m.op == "ids" && n.compare(at, std::string::npos, m.name) == 0) return m.ints;
  return DType::I64;
}

const std::vector<ModelStep>& model_steps() {
  static const std::vector<ModelStep> v = {
      {"input_ids", "ids", true},          {"embed", "embedding", true},     {"final_norm", "rms_norm", false},
      {"logits", "linear", false},         {"generate.tokens", "ids", false}, {"generate.logits", "linear", false},
  };
  return v;
}

std::string to_json() {
  static const char* applies[] = {"all", "moe", "dense"};
  static const char* roles[] = {"activation", "ids", "margin"};
  static const char* shapes[] = {"T,H", "T,nq,d", "T,nkv,d", "T,nq*d", "T,E", "T,k", "T"};
  nlohmann::ordered_json j;
  j["format"] = "hyoracle.dataflow";
  j["version"] = 1;
  j["prev_out"] = kPrevOut;
  auto& rows = j["layer_steps"] = nlohmann::ordered_json::array();
  for (const Step& s : layer_steps()) {
    nlohmann::ordered_json r;
    r["name"] = s.name;
    r["op"] = s.op;
    r["inputs"] = s.inputs;
    r["applies"] = applies[int(s.applies)];
    r["role"] = roles[int(s.role)];
    r["shape"] = shapes[int(s.shape)];
    if (s.wide) r["wide"] = true;
    if (s.role == Role::ids) r["ints"] = dtype_name(s.ints);
    if (s.module) r["module"] = true;
    rows.push_back(r);
  }
  auto& ms = j["model_steps"] = nlohmann::ordered_json::array();
  for (const ModelStep& s : model_steps()) {
    nlohmann::ordered_json r = {{"name", s.name}, {"op", s.op}, {"where", s.before_layers ? "before_layers" : "after_layers"}};
    if (s.op == "ids") r["ints"] = dtype_name(s.ints);
    if (s.module) r["module"] = true;
    ms.push_back(r);
  }
  return j.dump(1) + "\n";
}

}  // namespace hyoracle::dataflow
