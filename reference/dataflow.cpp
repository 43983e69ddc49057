#include "reference/dataflow.h"

#include <nlohmann/json.hpp>

namespace hyoracle::dataflow {

bool applies_to(Applies a, LayerKind k) {
  switch (a) {
    case Applies::all: return true;
    case Applies::moe: return k.moe;
    case Applies::dense: return !k.moe;
    case Applies::self_kv: return !k.cross;
    case Applies::cross_kv: return k.cross;
  }
  return false;
}

namespace {

using A = Applies;
using R = Role;
using S = Shape;

// The rows after attn.out, the same in both families except the router's score function.
void append_ffn_rows(std::vector<Step>& v, const char* score_op) {
  const std::vector<Step> rows = {
      {"attn.out", "linear", {"attn.context"}, A::all, R::activation, S::T_H, false, DType::I64, true},
      {"resid_mid", "add", {kPrevOut, "attn.out"}, A::all, R::activation, S::T_H},
      {"post_norm", "rms_norm", {"resid_mid"}, A::all, R::activation, S::T_H, false, DType::I64, true},
      {"moe.router_logits", "linear", {"post_norm"}, A::moe, R::activation, S::T_E, /*wide=*/true, DType::I64, true},
      {"moe.scores", score_op, {"moe.router_logits"}, A::moe, R::activation, S::T_E, /*wide=*/true},
      {"moe.topk_ids", "ids", {"moe.scores"}, A::moe, R::ids, S::T_k, false, DType::I32, true},
      {"moe.topk_weights", "router_weights", {"moe.scores", "moe.topk_ids"}, A::moe, R::activation, S::T_k, /*wide=*/true, DType::I64, true},
      {"moe.topk_margin", "margin", {"moe.scores"}, A::moe, R::margin, S::T},
      {"moe.routed_out", "routed_experts", {"post_norm", "moe.topk_ids", "moe.topk_weights"}, A::moe, R::activation, S::T_H, false, DType::I64, true},
      {"moe.shared_out", "swiglu", {"post_norm"}, A::moe, R::activation, S::T_H, false, DType::I64, true},
      {"mlp.out", "ffn", {"post_norm"}, A::dense, R::activation, S::T_H, false, DType::I64, true},
      {"mlp.out", "add", {"moe.routed_out", "moe.shared_out"}, A::moe, R::activation, S::T_H, false, DType::I64, true},
      {"out", "add", {"resid_mid", "mlp.out"}, A::all, R::activation, S::T_H, false, DType::I64, true},
  };
  v.insert(v.end(), rows.begin(), rows.end());
}

std::vector<Step> hy_v3_steps() {
  std::vector<Step> v = {
      {"input_norm", "rms_norm", {kPrevOut}, A::all, R::activation, S::T_H, false, DType::I64, true},
      {"attn.q", "linear", {"input_norm"}, A::all, R::activation, S::T_nq_d},
      {"attn.k", "linear", {"input_norm"}, A::all, R::activation, S::T_nkv_d},
      {"attn.v", "linear", {"input_norm"}, A::all, R::activation, S::T_nkv_d},
      {"attn.q_norm", "rms_norm", {"attn.q"}, A::all, R::activation, S::T_nq_d, false, DType::I64, true},
      {"attn.k_norm", "rms_norm", {"attn.k"}, A::all, R::activation, S::T_nkv_d, false, DType::I64, true},
      {"attn.q_rope", "rope", {"attn.q_norm"}, A::all, R::activation, S::T_nq_d},
      {"attn.k_rope", "rope", {"attn.k_norm"}, A::all, R::activation, S::T_nkv_d},
      {"attn.context", "attention", {"attn.q_rope", "attn.k_rope", "attn.v"}, A::all, R::activation, S::T_nqd},
  };
  append_ffn_rows(v, "sigmoid");
  return v;
}

std::vector<Step> hunyuan_v1_steps() {
  const std::string src_k = std::string(kKvSource) + "attn.k", src_v = std::string(kKvSource) + "attn.v";
  std::vector<Step> v = {
      {"input_norm", "rms_norm", {kPrevOut}, A::all, R::activation, S::T_H, false, DType::I64, true},
      {"attn.q", "linear", {"input_norm"}, A::all, R::activation, S::T_nq_d},
      {"attn.k", "linear", {"input_norm"}, A::self_kv, R::activation, S::T_nkv_d},
      {"attn.v", "linear", {"input_norm"}, A::self_kv, R::activation, S::T_nkv_d},
      {"attn.q_rope", "rope", {"attn.q"}, A::all, R::activation, S::T_nq_d},
      {"attn.k_rope", "rope", {"attn.k"}, A::self_kv, R::activation, S::T_nkv_d},
      {"attn.k_rope", "rope", {src_k}, A::cross_kv, R::activation, S::T_nkv_d},
      {"attn.q_norm", "rms_norm", {"attn.q_rope"}, A::all, R::activation, S::T_nq_d, false, DType::I64, true},
      {"attn.k_norm", "rms_norm", {"attn.k_rope"}, A::all, R::activation, S::T_nkv_d, false, DType::I64, true},
      {"attn.context", "attention", {"attn.q_norm", "attn.k_norm", "attn.v"}, A::self_kv, R::activation, S::T_nqd},
      {"attn.context", "attention", {"attn.q_norm", "attn.k_norm", src_v}, A::cross_kv, R::activation, S::T_nqd},
  };
  append_ffn_rows(v, "softmax");
  return v;
}

}  // namespace

const std::vector<Step>& layer_steps(Family f) {
  static const std::vector<Step> hy = hy_v3_steps(), hun = hunyuan_v1_steps();
  return f == Family::hy_v3 ? hy : hun;
}

const Step* find_step(Family f, const std::string& suffix, LayerKind kind) {
  for (const Step& s : layer_steps(f))
    if (s.name == suffix && applies_to(s.applies, kind)) return &s;
  return nullptr;
}

const char* cached_key_step(Family f) { return f == Family::hy_v3 ? "attn.k_rope" : "attn.k_norm"; }

namespace {

// Where a canonical name starts once its "steps.S." prefix (if any) is skipped.
size_t after_step_prefix(const std::string& n) {
  if (n.rfind("steps.", 0) != 0) return 0;
  const size_t dot = n.find('.', 6);
  return dot == std::string::npos ? n.size() : dot + 1;
}

}  // namespace

const Step* step_of_name(Family f, const std::string& n) {
  const size_t at = after_step_prefix(n);
  if (n.compare(at, 7, "layers.") != 0) return nullptr;
  const size_t dot = n.find('.', at + 7);
  if (dot == std::string::npos) return nullptr;
  const std::string suffix = n.substr(dot + 1);
  for (const Step& s : layer_steps(f))
    if (s.name == suffix) return &s;
  return nullptr;
}

DType int_dtype_of(const std::string& n) {
  if (const Step* s = step_of_name(Family::hy_v3, n)) return s->role == Role::ids ? s->ints : DType::I64;
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
  static const char* applies[] = {"all", "moe", "dense", "self_kv", "cross_kv"};
  static const char* roles[] = {"activation", "ids", "margin"};
  static const char* shapes[] = {"T,H", "T,nq,d", "T,nkv,d", "T,nq*d", "T,E", "T,k", "T"};
  nlohmann::ordered_json j;
  j["format"] = "hyoracle.dataflow";
  j["version"] = 2;
  j["prev_out"] = kPrevOut;
  j["kv_source"] = kKvSource;
  for (Family f : {Family::hy_v3, Family::hunyuan_v1}) {
    auto& fam = j["families"][family_name(f)];
    fam["cached_key"] = cached_key_step(f);
    auto& rows = fam["layer_steps"] = nlohmann::ordered_json::array();
    for (const Step& s : layer_steps(f)) {
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
