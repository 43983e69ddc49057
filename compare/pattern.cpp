#include "compare/pattern.h"

#include <memory>

#include "util/error.h"

namespace hyoracle::compare {

namespace {

// The parsed pattern: a tree of byte sets, assertions, concatenations, alternations and repeats.
struct Node {
  enum Kind { set, assertion, concat, alternation, repeat } kind;
  std::bitset<256> bytes;                         // set
  Pattern::Inst::Op assert_op = Pattern::Inst::match;  // assertion
  std::vector<Node> kids;                         // concat, alternation; repeat: one kid
  int min = 0, max = 0;                           // repeat; max < 0: unbounded
  explicit Node(Kind k) : kind(k) {}
};

bool is_word_byte(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

std::bitset<256> bytes_where(bool (*pred)(unsigned char)) {
  std::bitset<256> b;
  for (int c = 0; c < 256; ++c) b[size_t(c)] = pred(static_cast<unsigned char>(c));
  return b;
}
const std::bitset<256> kDigit = bytes_where([](unsigned char c) { return c >= '0' && c <= '9'; });
const std::bitset<256> kWord = bytes_where(is_word_byte);
// ECMAScript white space within one byte: space, \t, \n, \v, \f, \r.
const std::bitset<256> kSpace = bytes_where([](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); });
// `.`: every byte but the line terminators \n and \r.
const std::bitset<256> kDot = ~bytes_where([](unsigned char c) { return c == '\n' || c == '\r'; });

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Recursive descent over the pattern text; every refusal is one line naming `where`.
class Parser {
 public:
  Parser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  Node parse() {
    Node n = alternation();
    if (i_ < s_.size()) refuse("has an unmatched ')' at offset " + std::to_string(i_));
    return n;
  }

  [[noreturn]] void refuse(const std::string& why) const {
    std::string shown;
    for (size_t k = 0; k < s_.size() && k < 80; ++k) {
      const unsigned char c = static_cast<unsigned char>(s_[k]);
      if (c < 0x20 || c >= 0x7f) {
        static const char* hex = "0123456789abcdef";
        shown += "\\x";
        shown += hex[c >> 4];
        shown += hex[c & 15];
      } else {
        shown += char(c);
      }
    }
    fail(where_ + ": the regex \"" + shown + (s_.size() > 80 ? "...\" " : "\" ") + why);
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return s_[i_]; }

  Node alternation() {
    Node first = concatenation();
    if (at_end() || peek() != '|') return first;
    Node alt{Node::alternation};
    alt.kids.push_back(std::move(first));
    while (!at_end() && peek() == '|') {
      ++i_;
      alt.kids.push_back(concatenation());
    }
    return alt;
  }

  Node concatenation() {
    Node cat{Node::concat};
    while (!at_end() && peek() != '|' && peek() != ')') {
      Node a = atom();
      const bool can_repeat = a.kind != Node::assertion;
      if (!at_end() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{')) {
        if (!can_repeat) refuse("repeats an anchor or word boundary (offset " + std::to_string(i_) + ")");
        a = quantified(std::move(a));
      }
      cat.kids.push_back(std::move(a));
    }
    return cat;
  }

  // A number of a {n,m} repeat: digits, at most kMaxCount.
  int count() {
    if (at_end() || peek() < '0' || peek() > '9') refuse("has a '{' that is not a repeat {n}, {n,} or {n,m}");
    long v = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > Pattern::kMaxCount)
        refuse("repeats more than " + std::to_string(Pattern::kMaxCount) + " times in a {n,m}");
      ++i_;
    }
    return int(v);
  }

  Node quantified(Node a) {
    Node r{Node::repeat};
    const char q = s_[i_++];
    if (q == '*') r.min = 0, r.max = -1;
    else if (q == '+') r.min = 1, r.max = -1;
    else if (q == '?') r.min = 0, r.max = 1;
    else {  // {n}, {n,}, {n,m}
      r.min = r.max = count();
      if (!at_end() && peek() == ',') {
        ++i_;
        r.max = (!at_end() && peek() == '}') ? -1 : count();
      }
      if (at_end() || peek() != '}') refuse("has a '{' that is not a repeat {n}, {n,} or {n,m}");
      ++i_;
      if (r.max >= 0 && r.max < r.min) refuse("has a repeat {n,m} with m < n");
    }
    if (!at_end() && peek() == '?') ++i_;  // lazy: the same yes/no answer
    if (!at_end() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{'))
      refuse("repeats a repeat (offset " + std::to_string(i_) + ")");
    r.kids.push_back(std::move(a));
    return r;
  }

  static Node set_of(const std::bitset<256>& b) {
    Node n{Node::set};
    n.bytes = b;
    return n;
  }
  static Node assertion(Pattern::Inst::Op op) {
    Node n{Node::assertion};
    n.assert_op = op;
    return n;
  }

  Node atom() {
    const char c = s_[i_++];
    switch (c) {
      case '*': case '+': case '?': case '{':
        refuse("has a repeat with nothing to repeat (offset " + std::to_string(i_ - 1) + ")");
      case '}': refuse("has an unmatched '}' (write \\} for the character)");
      case ']': refuse("has an unmatched ']' (write \\] for the character)");
      case '.': return set_of(kDot);
      case '^': return assertion(Pattern::Inst::line_begin);
      case '$': return assertion(Pattern::Inst::line_end);
      case '[': return set_of(bracket());
      case '(': return group();
      case '\\': return escape();
      default: {
        std::bitset<256> b;
        b[static_cast<unsigned char>(c)] = true;
        return set_of(b);
      }
    }
  }

  Node group() {
    if (!at_end() && peek() == '?') {
      if (i_ + 1 < s_.size() && s_[i_ + 1] == ':') {
        i_ += 2;
      } else {
        refuse("uses lookaround or a named group \"(?\", which is not supported");
      }
    }
    if (++depth_ > Pattern::kMaxNesting)
      refuse("nests groups more than " + std::to_string(Pattern::kMaxNesting) + " deep");
    Node inner = alternation();
    --depth_;
    if (at_end()) refuse("has an unclosed '('");
    ++i_;  // ')'
    return inner;
  }

  // The byte an escape letter stands for, or -1 when it is no single-byte escape.
  int escaped_byte(char e) {
    switch (e) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case 'f': return '\f';
      case 'v': return '\v';
      case '0':
        if (!at_end() && peek() >= '0' && peek() <= '9') refuse("has an octal escape \\0<digit>, which is not supported");
        return 0;
      case 'x': {
        if (i_ + 2 > s_.size() || hex_value(s_[i_]) < 0 || hex_value(s_[i_ + 1]) < 0)
          refuse("has \\x without two hex digits");
        const int v = hex_value(s_[i_]) * 16 + hex_value(s_[i_ + 1]);
        i_ += 2;
        return v;
      }
      default:
        // Punctuation escapes itself; letters and digits not handled above are refused by the caller.
        if ((e >= '0' && e <= '9') || (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) return -1;
        return static_cast<unsigned char>(e);
    }
  }

  // \d \D \w \W \s \S as a set; false when `e` is none of them.
  static bool class_escape(char e, std::bitset<256>& out) {
    switch (e) {
      case 'd': out = kDigit; return true;
      case 'D': out = ~kDigit; return true;
      case 'w': out = kWord; return true;
      case 'W': out = ~kWord; return true;
      case 's': out = kSpace; return true;
      case 'S': out = ~kSpace; return true;
      default: return false;
    }
  }

  Node escape() {
    if (at_end()) refuse("ends with a lone backslash");
    const char e = s_[i_++];
    std::bitset<256> b;
    if (class_escape(e, b)) return set_of(b);
    if (e == 'b') return assertion(Pattern::Inst::word_boundary);
    if (e == 'B') return assertion(Pattern::Inst::not_word_boundary);
    if (e >= '1' && e <= '9') refuse("has a backreference \\" + std::string(1, e) + ", which is not supported");
    if (e == 'k') refuse("has a backreference \\k, which is not supported");
    const int v = escaped_byte(e);
    if (v < 0) refuse("has the escape \\" + std::string(1, e) + ", which is not supported");
    b[size_t(v)] = true;
    return set_of(b);
  }

  // [...] after the '[': the set of bytes it matches.
  std::bitset<256> bracket() {
    bool negate = false;
    if (!at_end() && peek() == '^') negate = true, ++i_;
    if (!at_end() && peek() == ']') refuse("has an empty class [] or [^], which is not supported");
    std::bitset<256> b;
    for (;;) {
      if (at_end()) refuse("has an unclosed '['");
      if (peek() == ']') {
        ++i_;
        break;
      }
      std::bitset<256> item;
      const int lo = class_atom(item);
      // A range a-z: both ends single bytes, not "\d-z"; a '-' before ']' is itself.
      if (i_ + 1 < s_.size() && peek() == '-' && s_[i_ + 1] != ']') {
        ++i_;
        std::bitset<256> unused;
        const int hi = class_atom(unused);
        if (lo < 0 || hi < 0) refuse("has a range with a class (\\d, \\w, \\s) as an end");
        if (hi < lo) refuse("has a range out of order in a class");
        for (int c = lo; c <= hi; ++c) b[size_t(c)] = true;
      } else {
        b |= item;
      }
    }
    return negate ? ~b : b;
  }

  // One member of a class: returns its byte (and sets it in `item`), or -1 for \d \w \s ... (whose
  // set goes into `item`).
  int class_atom(std::bitset<256>& item) {
    if (at_end()) refuse("has an unclosed '['");
    const char c = s_[i_++];
    if (c == '[' && !at_end() && (peek() == ':' || peek() == '.' || peek() == '='))
      refuse("has a POSIX class \"[" + std::string(1, peek()) + "\", which is not supported");
    if (c != '\\') {
      item[static_cast<unsigned char>(c)] = true;
      return static_cast<unsigned char>(c);
    }
    if (at_end()) refuse("has an unclosed '['");
    const char e = s_[i_++];
    if (class_escape(e, item)) return -1;
    if (e == 'b') {  // backspace inside a class
      item[8] = true;
      return 8;
    }
    const int v = (e == '-') ? '-' : escaped_byte(e);
    if (v < 0) refuse("has the escape \\" + std::string(1, e) + " in a class, which is not supported");
    item[size_t(v)] = true;
    return v;
  }

  const std::string& s_;
  const std::string& where_;
  size_t i_ = 0;
  int depth_ = 0;
};

// Emits the NFA of a tree; refuses a program over kMaxStates instructions.
class Compiler {
 public:
  Compiler(std::vector<Pattern::Inst>& prog, std::vector<std::bitset<256>>& sets, const Parser& p)
      : prog_(prog), sets_(sets), parser_(p) {}

  void emit(const Node& n) {
    switch (n.kind) {
      case Node::set:
        sets_.push_back(n.bytes);
        add({Pattern::Inst::byte_set, int(sets_.size() - 1), 0});
        return;
      case Node::assertion:
        add({n.assert_op, 0, 0});
        return;
      case Node::concat:
        for (const Node& k : n.kids) emit(k);
        return;
      case Node::alternation: {
        // split L1, next; L1: kid; jump end; next: split L2, next2; ... last kid; end:
        std::vector<size_t> jumps;
        for (size_t k = 0; k < n.kids.size(); ++k) {
          if (k + 1 < n.kids.size()) {
            const size_t split = add({Pattern::Inst::split, 0, 0});
            prog_[split].x = int(prog_.size());
            emit(n.kids[k]);
            jumps.push_back(add({Pattern::Inst::jump, 0, 0}));
            prog_[split].y = int(prog_.size());
          } else {
            emit(n.kids[k]);
          }
        }
        for (size_t j : jumps) prog_[j].x = int(prog_.size());
        return;
      }
      case Node::repeat: {
        const Node& kid = n.kids[0];
        for (int k = 0; k < n.min; ++k) emit(kid);
        if (n.max < 0) {  // loop: split body, out; body; jump loop
          const size_t loop = add({Pattern::Inst::split, 0, 0});
          prog_[loop].x = int(prog_.size());
          emit(kid);
          add({Pattern::Inst::jump, int(loop), 0});
          prog_[loop].y = int(prog_.size());
        } else {  // (max - min) optional copies, each able to skip to the end
          std::vector<size_t> skips;
          for (int k = n.min; k < n.max; ++k) {
            const size_t split = add({Pattern::Inst::split, 0, 0});
            prog_[split].x = int(prog_.size());
            skips.push_back(split);
            emit(kid);
          }
          for (size_t s : skips) prog_[s].y = int(prog_.size());
        }
        return;
      }
    }
  }

  size_t add(Pattern::Inst in) {
    if (prog_.size() >= Pattern::kMaxStates)
      parser_.refuse("expands to more than " + std::to_string(Pattern::kMaxStates) + " states (large {n,m} repeats)");
    prog_.push_back(in);
    return prog_.size() - 1;
  }

 private:
  std::vector<Pattern::Inst>& prog_;
  std::vector<std::bitset<256>>& sets_;
  const Parser& parser_;
};

}  // namespace

Pattern::Pattern(const std::string& pattern, const std::string& where) : text_(pattern) {
  Parser parser(pattern, where);
  if (pattern.size() > kMaxBytes)
    parser.refuse("is " + std::to_string(pattern.size()) + " bytes; at most " + std::to_string(kMaxBytes) + " are accepted");
  const Node tree = parser.parse();
  Compiler c(program_, sets_, parser);
  c.emit(tree);
  c.add({Inst::match, 0, 0});
}

bool Pattern::search(std::string_view s) const {
  if (program_.empty()) return false;
  const size_t n = program_.size();
  // Threads of the current and next position (program counters, each at most once per position:
  // `mark` holds the generation that last added it), and the stack for following jumps.
  std::vector<int> cur, next, stack;
  cur.reserve(n);
  next.reserve(n);
  std::vector<uint64_t> mark(n, 0);
  uint64_t gen = 0;
  auto word_at = [&](size_t i) { return i < s.size() && is_word_byte(static_cast<unsigned char>(s[i])); };
  // Adds pc and everything reachable from it without consuming a byte, at position i; true when
  // that reaches the match state.
  auto add = [&](std::vector<int>& list, int start, size_t i) {
    stack.push_back(start);
    while (!stack.empty()) {
      const int pc = stack.back();
      stack.pop_back();
      if (mark[size_t(pc)] == gen) continue;
      mark[size_t(pc)] = gen;
      const Inst& in = program_[size_t(pc)];
      switch (in.op) {
        case Inst::byte_set: list.push_back(pc); break;
        case Inst::match: stack.clear(); return true;
        case Inst::jump: stack.push_back(in.x); break;
        case Inst::split: stack.push_back(in.y); stack.push_back(in.x); break;
        case Inst::line_begin: if (i == 0) stack.push_back(pc + 1); break;
        case Inst::line_end: if (i == s.size()) stack.push_back(pc + 1); break;
        case Inst::word_boundary:
          if ((i > 0 && word_at(i - 1)) != word_at(i)) stack.push_back(pc + 1);
          break;
        case Inst::not_word_boundary:
          if ((i > 0 && word_at(i - 1)) == word_at(i)) stack.push_back(pc + 1);
          break;
      }
    }
    return false;
  };
  ++gen;
  if (add(cur, 0, 0)) return true;
  for (size_t i = 0; i < s.size(); ++i) {
    ++gen;
    next.clear();
    const unsigned char c = static_cast<unsigned char>(s[i]);
    for (const int pc : cur)
      if (sets_[size_t(program_[size_t(pc)].x)][c] && add(next, pc + 1, i + 1)) return true;
    if (add(next, 0, i + 1)) return true;  // a match may start at every position
    std::swap(cur, next);
  }
  return false;
}

}  // namespace hyoracle::compare
