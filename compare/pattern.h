// pattern.h: regular expressions over tensor names, matched in linear time.
//
// Rules files ("match") and `hyoracle compare --require` select tensors by regex. std::regex
// matches by backtracking, so patterns as plain as `(.?){30}a` take minutes on a 30-byte name.
// Pattern compiles the ECMAScript subset that tensor names need into a Thompson NFA and runs it
// as a set of states advanced one byte at a time (Pike's simulation without captures): the time
// is O(states x name length) whatever the pattern, and the states are bounded (kMaxStates).
//
// Supported (with std::regex's ECMAScript meaning, which the unit tests check on random
// patterns):
//   literals; `.` (any byte but \n and \r); classes [abc] [^a-z] with \d \w \s \D \W \S inside;
//   escapes \d \D \w \W \s \S \b \B \n \r \t \f \v \0 \xHH and \ before any punctuation;
//   anchors ^ $ (whole name, not per line); groups (...) and (?:...); alternation |;
//   repeats * + ? {n} {n,} {n,m} (n, m <= kMaxCount), each optionally lazy (`*?`; for a yes/no
//   match laziness changes nothing).
// Refused with one line naming `where`: backreferences (\1, \k<..>), lookaround ((?= (?! (?<=
// (?<!), named groups, POSIX classes ([[:alpha:]]), other escapes (\p, \u, \c), a repeat with
// nothing to repeat, unbalanced brackets or braces, patterns over kMaxBytes bytes, groups nested
// over kMaxNesting deep, and patterns that expand to more than kMaxStates states.
#pragma once
#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hyoracle::compare {

class Pattern {
 public:
  static constexpr size_t kMaxBytes = 1000;   // longest pattern text accepted
  static constexpr int kMaxNesting = 32;      // deepest group nesting
  static constexpr int kMaxCount = 1000;      // largest n or m in {n,m}
  static constexpr size_t kMaxStates = 20000; // largest compiled program ({n,m} is expanded)

  // A pattern matching nothing (never constructed from text).
  Pattern() = default;
  // Compiles `pattern`; an Error "<where>: the regex "..." <why>" on anything it does not support.
  Pattern(const std::string& pattern, const std::string& where);

  // True when some substring of `name` matches (std::regex_search semantics). O(states x size).
  bool search(std::string_view name) const;
  // The pattern text as given.
  const std::string& text() const { return text_; }

  // One instruction of the compiled NFA.
  struct Inst {
    enum Op : uint8_t { byte_set, split, jump, line_begin, line_end, word_boundary, not_word_boundary, match } op;
    int x = 0, y = 0;  // byte_set: index into sets_; split: both targets; jump: target
  };

 private:
  std::string text_;
  std::vector<Inst> program_;              // empty: matches nothing
  std::vector<std::bitset<256>> sets_;     // byte sets of byte_set instructions
};

}  // namespace hyoracle::compare
