// Budgets are formulas: check them against the formula evaluated by hand, and the rules file's
// fail-closed parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "compare/tolerance.h"

using namespace hyoracle::compare;

TEST(Tolerance, UnitRoundoffOfEachDtype) {
  EXPECT_EQ(unit_roundoff("bfloat16"), std::ldexp(1.0, -8));
  EXPECT_EQ(unit_roundoff("BF16"), std::ldexp(1.0, -8));
  EXPECT_EQ(unit_roundoff("float16"), std::ldexp(1.0, -11));
  EXPECT_EQ(unit_roundoff("float32"), std::ldexp(1.0, -24));
  EXPECT_EQ(unit_roundoff("F64"), std::ldexp(1.0, -53));
  EXPECT_EQ(unit_roundoff("F8_E4M3"), 0.0625);
  EXPECT_FALSE(unit_roundoff("int8").has_value());
}

TEST(Tolerance, OpOfCanonicalNames) {
  EXPECT_EQ(op_of(hyoracle::Family::hy_v3, "layers.3.attn.q"), "linear");
  EXPECT_EQ(op_of(hyoracle::Family::hy_v3, "steps.2.layers.0.attn.k_rope"), "rope");
  EXPECT_EQ(op_of(hyoracle::Family::hy_v3, "layers.1.moe.routed_out"), "routed_experts");
  EXPECT_EQ(op_of(hyoracle::Family::hy_v3, "final_norm"), "rms_norm");
  EXPECT_EQ(op_of(hyoracle::Family::hy_v3, "layers.1.banana"), "");
  EXPECT_EQ(op_of(hyoracle::Family::hy_v3, "layers.1.moe.scores"), "sigmoid");
  EXPECT_EQ(op_of(hyoracle::Family::hunyuan_v1, "layers.1.moe.scores"), "softmax");
  int64_t step = 0;
  EXPECT_EQ(strip_step("steps.12.logits", &step), "logits");
  EXPECT_EQ(step, 12);
  EXPECT_EQ(layer_of_name("steps.1.layers.17.out"), 17);
}

// bf16 linear with K = 4096, κ = 2: c = 3, limit = 3·(u/√3 + √4096·2^-24·2).
TEST(Tolerance, DerivedLocalBudgetIsTheFormula) {
  BudgetInputs in;
  in.op = "linear";
  in.u_target = std::ldexp(1.0, -8);
  in.numel = 100000;
  in.reduction_k = 4096;
  in.kappa = 2;
  const Budget b = derived_local_budget(in);
  EXPECT_DOUBLE_EQ(b.limit, 3 * (std::ldexp(1.0, -8) / std::sqrt(3.0) + 64 * std::ldexp(1.0, -24) * 2));
  EXPECT_EQ(b.rule, "derived:linear");
  // fp32, large tensor: c = 2; RoPE gain √5.
  in.op = "rope";
  in.u_target = std::ldexp(1.0, -24);
  in.reduction_k = 0;
  EXPECT_DOUBLE_EQ(derived_local_budget(in).limit, 2 * std::sqrt(5.0) * std::ldexp(1.0, -24) / std::sqrt(3.0));
  // Total = local + a·inherited, a = 1 for RoPE (a rotation).
  const Budget t = derived_total_budget(in, 0.01);
  EXPECT_DOUBLE_EQ(t.limit, derived_local_budget(in).limit + 0.01);
}

TEST(Tolerance, RulesFileParsesAndFailsClosedOnDefects) {
  const Rules r = parse_rules(R"({"use_derived_defaults": false, "rules": [
      {"match": "^layers\\.\\d+\\.attn\\.context$", "metric": "rel_l2", "max": 0.02, "reason": "flash attention"},
      {"match": "^logits$", "scale": 2, "reason": "fp32 lm_head"}]})",
                              "rules.json");
  EXPECT_FALSE(r.use_derived_defaults);
  EXPECT_EQ(r.find("layers.7.attn.context"), 0);
  EXPECT_EQ(r.find("logits"), 1);
  EXPECT_EQ(r.find("embed"), -1);
  Budget derived;
  derived.limit = 0.01;
  derived.token_limit = 0.03;
  EXPECT_EQ(apply_rule(r, 0, derived).limit, 0.02);
  EXPECT_EQ(apply_rule(r, 1, derived).limit, 0.02);
  EXPECT_EQ(apply_rule(r, 1, derived).reason, "fp32 lm_head");
  EXPECT_THROW(parse_rules("{", "x.json"), hyoracle::Error);
  EXPECT_THROW(parse_rules(R"({"rules": [{"match": "a", "max": 1}]})", "x.json"), hyoracle::Error);  // no reason
  EXPECT_THROW(parse_rules(R"({"rules": [{"match": "(", "max": 1, "reason": "r"}]})", "x.json"), hyoracle::Error);
  EXPECT_THROW(parse_rules(R"({"rules": [{"match": "a", "max": 1, "scale": 2, "reason": "r"}]})", "x.json"), hyoracle::Error);
  try {
    parse_rules(R"({"rules": [{"match": "a", "metric": "vibes", "max": 1, "reason": "r"}]})", "my.json");
    FAIL() << "accepted an unknown metric";
  } catch (const hyoracle::Error& e) {
    EXPECT_NE(std::string(e.what()).find("my.json: rules[0]"), std::string::npos) << e.what();
  }
}

// Rules' patterns are matched by Pattern (pattern.h) in linear time: the patterns that make
// std::regex backtrack without bound are accepted and answered, and what Pattern does not support
// is refused with one line naming the file, the entry and why.
TEST(Tolerance, RulePatternsMatchInLinearTimeOrAreRefused) {
  auto rules_with = [](const std::string& pattern) {
    nlohmann::json j = {{"rules", {{{"match", pattern}, {"max", 1}, {"reason", "r"}}}}};
    return j.dump();
  };
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"^layers\\.*" + std::string(100, '*') + "\\d+\\.attn$", "repeats a repeat"},
      {"a+*", "repeats a repeat"},
      {"a{2}*", "repeats a repeat"},
      {"(a)\\1", "backreference"},
      {"a(?=b)", "lookaround"},
      {std::string(40, '(') + "a" + std::string(40, ')'), "nests groups more than 32 deep"},
      {std::string(1001, 'a'), "1001 bytes"},
  };
  for (const auto& [pattern, why] : refused) {
    try {
      parse_rules(rules_with(pattern), "tol.json");
      ADD_FAILURE() << "accepted " << pattern;
    } catch (const hyoracle::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("tol.json: rules[0]: field \"match\""), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
  }
  const std::vector<std::pair<std::string, std::string>> accepted = {
      {"^layers\\.\\d+\\.(attn|mlp)\\..*$", "layers.12.attn.out"},
      {"^steps\\.\\d+\\.layers\\.\\d+\\.moe\\.[a-z_]+$", "steps.3.layers.1.moe.shared_out"},
      {"(?:ab)+c", "ababc"},
      {"a*?b", "aab"},
      {"[*+?]+x", "*+x"},
      {"\\*\\*\\*", "***"},
      {"(a)?(b)?c", "bc"},
      {"x{2,3}", "xxx"},
      {"(a*)*b", "aaab"},
      {"((x+y)z)+", "xyzxxyz"},
      {"(a?)+c", "aac"},
      {".*.*.*.*.*.*.*x", "abcx"},
  };
  for (const auto& [pattern, name] : accepted) {
    const Rules r = parse_rules(rules_with(pattern), "tol.json");
    EXPECT_EQ(r.find(name), 0) << pattern << " on " << name;
  }
}
