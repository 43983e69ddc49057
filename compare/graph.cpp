#include "compare/graph.h"

#include <algorithm>
#include <limits>

#include "reference/dataflow.h"
#include "reference/names.h"
#include "compare/tolerance.h"

namespace hyoracle::compare {

OrderKey order_key(const ModelGraph& g, const std::string& full) {
  OrderKey k;
  const std::string n = strip_step(full, &k.step);
  const int64_t L = layer_of_name(n);
  const auto& sfx = names::layer_suffixes(g.family);
  if (L >= 0) {
    const std::string s = n.substr(n.find('.', 7) + 1);
    k.layer = L;
    k.section = 2;
    auto it = std::find(sfx.begin(), sfx.end(), s);
    if (it != sfx.end()) {
      k.index = int64_t(it - sfx.begin());
      k.known = true;
    } else if (s == "kv.k" || s == "kv.v") {
      // The KV cache after the run holds the decode steps' rows too: it is judged after every
      // step, so a decode bug is named at the step that made the wrong row, not at the cache.
      k.step = std::numeric_limits<int64_t>::max() - 1;
      k.section = 9;
      k.index = s == "kv.k" ? 0 : 1;
      k.known = true;
    } else {
      k.section = 10;
    }
    return k;
  }
  k.section = 10;
  // Greedy generation's summaries come last: their rows from 1 on are made by the decode steps,
  // so a token that parts in step S is judged after steps.S.* have been.
  if (n == "generate.tokens" || n == "generate.logits") k.step = std::numeric_limits<int64_t>::max();
  const auto& ms = dataflow::model_steps();
  for (size_t i = 0; i < ms.size(); ++i)
    if (ms[i].name == n) {
      k.section = ms[i].before_layers ? 1 : 3;
      k.index = int64_t(i);
      k.known = true;
    }
  return k;
}

std::vector<std::string> execution_order(const ModelGraph& g, std::vector<std::string> v) {
  // Each name's key is computed once (a dump with decode steps holds 10^5-10^6 names; computing
  // keys inside the comparator cost more than the comparison itself).
  std::vector<std::pair<OrderKey, size_t>> keyed(v.size());
  for (size_t i = 0; i < v.size(); ++i) keyed[i] = {order_key(g, v[i]), i};
  std::sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (a.first < b.first) return true;
    if (b.first < a.first) return false;
    return v[a.second] < v[b.second];
  });
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const auto& k : keyed) out.push_back(std::move(v[k.second]));
  return out;
}

std::vector<std::string> step_inputs(const ModelGraph& g, const std::string& full, bool moe) {
  int64_t step = 0;
  const std::string n = strip_step(full, &step);
  const std::string pre = step > 0 ? names::step(step, "") : "";
  if (n == "final_norm") return {pre + "LAST.out"};  // resolved by the caller (last layer present)
  if (n == "logits") return {pre + "final_norm"};
  if (n == "generate.logits") return {"logits"};
  const int64_t L = layer_of_name(n);
  if (L < 0) return {};
  const std::string s = n.substr(n.find('.', 7) + 1);
  if (s == "kv.k") return {pre + names::layer(L, dataflow::cached_key_step(g.family))};
  if (s == "kv.v") return {pre + names::layer(g.kv_source(L), "attn.v")};
  const dataflow::Step* st = dataflow::find_step(g.family, s, g.kind(L, moe));
  if (!st) return {};
  const std::string src = dataflow::kKvSource;
  std::vector<std::string> in;
  for (const std::string& i : st->inputs) {
    if (i == dataflow::kPrevOut)
      in.push_back(pre + (L == 0 ? std::string("embed") : names::layer(L - 1, "out")));
    else if (i.rfind(src, 0) == 0)
      in.push_back(pre + names::layer(g.kv_source(L), i.substr(src.size())));
    else
      in.push_back(pre + names::layer(L, i));
  }
  return in;
}

}  // namespace hyoracle::compare
