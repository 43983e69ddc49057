#include "graph.h"

#include <algorithm>

#include "names.h"
#include "tolerance.h"

namespace hyoracle::compare {

OrderKey order_key(const std::string& full) {
  OrderKey k;
  const std::string n = strip_step(full, &k.step);
  const int64_t L = layer_of_name(n);
  const auto& sfx = names::layer_suffixes();
  if (L >= 0) {
    const std::string s = n.substr(n.find('.', 7) + 1);
    k.layer = L;
    k.section = 2;
    auto it = std::find(sfx.begin(), sfx.end(), s);
    if (it != sfx.end()) {
      k.index = int64_t(it - sfx.begin());
      k.known = true;
    } else if (s == "kv.k" || s == "kv.v") {
      k.section = 9;  // KV cache contents after the run
      k.index = s == "kv.k" ? 0 : 1;
      k.known = true;
    } else {
      k.section = 10;
    }
    return k;
  }
  static const std::vector<std::string> head = {"input_ids", "embed"};
  static const std::vector<std::string> tail = {"final_norm", "logits", "generate.tokens", "generate.logits"};
  if (auto it = std::find(head.begin(), head.end(), n); it != head.end()) {
    k.section = 1;
    k.index = int64_t(it - head.begin());
    k.known = true;
  } else if (auto jt = std::find(tail.begin(), tail.end(), n); jt != tail.end()) {
    k.section = 3;
    k.index = int64_t(jt - tail.begin());
    k.known = true;
  } else {
    k.section = 10;
  }
  return k;
}

std::vector<std::string> execution_order(std::vector<std::string> v) {
  std::stable_sort(v.begin(), v.end(), [](const std::string& a, const std::string& b) {
    const OrderKey ka = order_key(a), kb = order_key(b);
    if (ka < kb) return true;
    if (kb < ka) return false;
    return a < b;
  });
  return v;
}

std::vector<std::string> step_inputs(const std::string& full, bool moe) {
  int64_t step = 0;
  const std::string n = strip_step(full, &step);
  const std::string pre = step > 0 ? names::step(step, "") : "";
  const int64_t L = layer_of_name(n);
  std::vector<std::string> in;
  auto lay = [&](int64_t l, const std::string& s) { in.push_back(pre + names::layer(l, s)); };
  if (n == "final_norm") {
    in.push_back(pre + "LAST.out");  // resolved by the caller (last layer present)
    return in;
  }
  if (n == "logits") return {pre + "final_norm"};
  if (n == "generate.logits") return {"logits"};
  if (L < 0) return in;
  const std::string s = n.substr(n.find('.', 7) + 1);
  if (s == "input_norm") {
    if (L == 0) in.push_back(pre + "embed");
    else lay(L - 1, "out");
  } else if (s == "attn.q" || s == "attn.k" || s == "attn.v") {
    lay(L, "input_norm");
  } else if (s == "attn.q_norm") {
    lay(L, "attn.q");
  } else if (s == "attn.k_norm") {
    lay(L, "attn.k");
  } else if (s == "attn.q_rope") {
    lay(L, "attn.q_norm");
  } else if (s == "attn.k_rope") {
    lay(L, "attn.k_norm");
  } else if (s == "attn.context") {
    lay(L, "attn.q_rope"), lay(L, "attn.k_rope"), lay(L, "attn.v");
  } else if (s == "attn.out") {
    lay(L, "attn.context");
  } else if (s == "resid_mid") {
    if (L == 0) in.push_back(pre + "embed");
    else lay(L - 1, "out");
    lay(L, "attn.out");
  } else if (s == "post_norm") {
    lay(L, "resid_mid");
  } else if (s == "moe.router_logits" || s == "moe.shared_out") {
    lay(L, "post_norm");
  } else if (s == "moe.scores") {
    lay(L, "moe.router_logits");
  } else if (s == "moe.topk_weights" || s == "moe.topk_ids" || s == "moe.topk_margin") {
    lay(L, "moe.scores");
  } else if (s == "moe.routed_out") {
    lay(L, "post_norm"), lay(L, "moe.topk_weights");
  } else if (s == "mlp.out") {
    if (moe) lay(L, "moe.routed_out"), lay(L, "moe.shared_out");
    else lay(L, "post_norm");
  } else if (s == "out") {
    lay(L, "resid_mid"), lay(L, "mlp.out");
  } else if (s == "kv.k") {
    lay(L, "attn.k_rope");
  } else if (s == "kv.v") {
    lay(L, "attn.v");
  }
  return in;
}

}  // namespace hyoracle::compare
