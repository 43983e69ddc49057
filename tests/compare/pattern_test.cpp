// Pattern (compare/pattern.h): the linear-time regex search of rules files and --require, checked
// against std::regex on random patterns and names, and on the patterns that make std::regex
// backtrack for minutes.
#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <string>

#include "util/error.h"
#include "compare/pattern.h"

namespace hyoracle::compare {
namespace {

// Random patterns of the supported syntax over a small alphabet, so that random names match
// often enough for the comparison to mean something.
class PatternGenerator {
 public:
  explicit PatternGenerator(uint32_t seed) : rng_(seed) {}

  std::string pattern(int depth) {
    std::string p;
    const int parts = pick(1, 4);
    for (int k = 0; k < parts; ++k) p += piece(depth);
    if (depth > 0 && pick(0, 4) == 0) p += "|" + pattern(depth - 1);
    return p;
  }

  std::string name() {
    static const std::string alphabet = "ab.1_Z-";
    std::string s;
    const int n = pick(0, 13);
    for (int k = 0; k < n; ++k) s += alphabet[size_t(pick(0, int(alphabet.size()) - 1))];
    return s;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  std::string piece(int depth) {
    const int kind = pick(0, 12);
    if (kind == 0) {  // an anchor or word boundary, never repeated
      static const char* anchors[] = {"^", "$", "\\b", "\\B"};
      return anchors[pick(0, 3)];
    }
    std::string a = atom(depth);
    switch (pick(0, 9)) {
      case 0: return a + "*";
      case 1: return a + "+";
      case 2: return a + "?";
      case 3: return a + "{" + std::to_string(pick(0, 3)) + "}";
      case 4: return a + "{" + std::to_string(pick(0, 2)) + ",}";
      case 5: {
        const int n = pick(0, 2);
        return a + "{" + std::to_string(n) + "," + std::to_string(n + pick(0, 2)) + "}" + (pick(0, 1) ? "?" : "");
      }
      case 6: return a + "*?";
      default: return a;
    }
  }

  std::string atom(int depth) {
    static const char* atoms[] = {"a", "b", "1", "_", "Z", "-", ".", "\\.", "\\d", "\\w", "\\W", "\\D", "[ab]", "[^a]",
                                  "[a-b1]", "[\\d_]", "[.-]", "\\x61", "[^\\w]", "\\s", "\\-"};
    if (depth > 0 && pick(0, 3) == 0) return (pick(0, 1) ? "(" : "(?:") + pattern(depth - 1) + ")";
    return atoms[pick(0, int(std::size(atoms)) - 1)];
  }

  std::mt19937 rng_;
};

TEST(Pattern, AgreesWithStdRegexOnRandomPatternsAndNames) {
  PatternGenerator gen(20261202);
  int matches = 0, total = 0;
  for (int p = 0; p < 3001; ++p) {
    const std::string text = gen.pattern(p % 4);
    const Pattern mine(text, "test");
    const std::regex theirs(text, std::regex::ECMAScript);
    for (int k = 0; k < 7; ++k) {
      const std::string name = gen.name();
      const bool expected = std::regex_search(name, theirs);
      ASSERT_EQ(mine.search(name), expected) << "pattern " << text << " on \"" << name << "\"";
      matches += expected;
      ++total;
    }
  }
  // Both answers occur often: the comparison tested matching, not only "no".
  EXPECT_GT(matches, total / 10);
  EXPECT_LT(matches, total - total / 10);
}

TEST(Pattern, TensorNamePatterns) {
  const Pattern layer("^layers\\.\\d+\\.(attn|mlp)\\..*$", "t");
  EXPECT_TRUE(layer.search("layers.12.attn.out"));
  EXPECT_TRUE(layer.search("layers.0.mlp.out"));
  EXPECT_FALSE(layer.search("steps.1.layers.0.mlp.out"));
  EXPECT_FALSE(layer.search("layers..attn.out"));
  const Pattern logits("^logits$", "t");
  EXPECT_TRUE(logits.search("logits"));
  EXPECT_FALSE(logits.search("generate.logits"));
  EXPECT_TRUE(Pattern("logits", "t").search("generate.logits"));
  EXPECT_TRUE(Pattern("", "t").search(""));
  EXPECT_FALSE(Pattern().search("anything"));
  // A NUL or a byte >= 0x80 is an ordinary byte.
  EXPECT_TRUE(Pattern("a.b", "t").search(std::string("a\0b", 3)));
  EXPECT_TRUE(Pattern("\\xff", "t").search("\xff"));
  EXPECT_FALSE(Pattern("a.b", "t").search("a\nb"));
}

// Backtracking matchers take exponential or high-polynomial time on these; the NFA simulation
// takes O(states x length) (the ctest timeout bounds a regression).
TEST(Pattern, PathologicalPatternsFinish) {
  std::string dot_opt, alt, stars;
  for (int k = 0; k < 30; ++k) dot_opt += ".?", alt += "(.|.)";
  for (int k = 0; k < 6; ++k) stars += "(.*)";
  const std::string a30(30, 'a');
  EXPECT_TRUE(Pattern(dot_opt + a30, "t").search(a30));
  EXPECT_FALSE(Pattern(dot_opt + a30 + "b", "t").search(a30));
  EXPECT_FALSE(Pattern("^" + alt + "$", "t").search(std::string(31, 'x')));
  EXPECT_TRUE(Pattern("^" + alt + "$", "t").search(std::string(30, 'x')));
  EXPECT_FALSE(Pattern(stars + "!", "t").search(std::string(5000, 'x')));
  EXPECT_FALSE(Pattern("(a*)*b", "t").search(std::string(100000, 'a')));
  EXPECT_FALSE(Pattern("(x+x+)+y", "t").search(std::string(100000, 'x')));
  EXPECT_FALSE(Pattern("^(a|aa)+$", "t").search(std::string(100000, 'a') + "b"));
  EXPECT_TRUE(Pattern("(a{0,50}){0,50}b", "t").search(std::string(200, 'a') + "b"));
  // Empty loops terminate: a repeated group that can match nothing.
  EXPECT_TRUE(Pattern("(a*)*", "t").search("bbb"));
  EXPECT_TRUE(Pattern("()*x", "t").search("x"));
}

// Unsupported syntax is one line naming where the pattern came from and what is wrong.
TEST(Pattern, UnsupportedSyntaxIsRefusedNamingTheSource) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"(a)\\1", "backreference"},
      {"(?<n>a)\\k<n>", "named group"},
      {"a(?=b)", "lookaround"},
      {"a(?!b)", "lookaround"},
      {"(?<=a)b", "lookaround"},
      {"[[:alpha:]]", "POSIX class"},
      {"\\p{L}", "escape \\p"},
      {"*a", "nothing to repeat"},
      {"a|+", "nothing to repeat"},
      {"a**", "repeats a repeat"},
      {"a{2}*", "repeats a repeat"},
      {"^*", "repeats an anchor"},
      {"a{1", "not a repeat"},
      {"a{x}", "not a repeat"},
      {"a{3,2}", "m < n"},
      {"a{1001}", "more than 1000"},
      {"(a", "unclosed '('"},
      {"a)", "unmatched ')'"},
      {"[ab", "unclosed '['"},
      {"[]", "empty class"},
      {"[z-a]", "out of order"},
      {"[\\d-z]", "range with a class"},
      {"a]", "unmatched ']'"},
      {"a}", "unmatched '}'"},
      {"a\\", "lone backslash"},
      {"\\x4", "two hex digits"},
      {"\\01", "octal"},
      {"(((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))", "nests groups"},
      {std::string(1001, 'a'), "1001 bytes"},
      {"(a{1000}){1000}", "more than 20000 states"},
  };
  for (const auto& [text, why] : refused) {
    try {
      Pattern p(text, "rules.json: rules[3]: field \"match\"");
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("rules.json: rules[3]: field \"match\": the regex \"", 0), 0u) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << text << ": " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace hyoracle::compare
