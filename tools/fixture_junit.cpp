#include "tools/fixture_junit.h"

#include <cstdio>
#include <sstream>

#include "io/dump.h"

namespace hyoracle::fixture {

namespace {

std::string num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", x);
  return b;
}

struct Case {
  std::string classname, name;
  std::string kind;  // "" pass, "failure", "error", "skipped"
  std::string message, detail;
};

std::string tensor_detail(const compare::TensorResult& t) {
  return "rule " + t.budget.rule + ": " + t.budget.metric + " " + num(t.judged_error) + " (judged on " + t.judged_on +
         " error) > limit " + num(t.budget.limit) + " = " + num(t.budget_units) + "x budget; " + t.budget.derivation;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default:
        if (c >= 0x20 || c == '\n' || c == '\t') o += char(c);
    }
  }
  return o;
}

std::string junit_xml(const compare::Report& r, const std::string& suite) {
  using compare::Verdict;
  const std::string cls = "hyoracle.check." + suite;
  std::vector<Case> cases;
  Case verdict{cls, "verdict", "", "", ""};
  if (!r.error.empty()) {
    verdict.kind = "error";
    verdict.message = r.error;
  } else if (r.verdict == Verdict::fail) {
    verdict.kind = "failure";
    verdict.message = r.first_divergence ? "first divergence at " + r.first_divergence->tensor + ": " +
                                               r.first_divergence->reason
                                         : "comparison failed";
  } else if (r.verdict != Verdict::pass) {
    verdict.kind = "error";
    verdict.message = "incomplete: " + compare::verdict_name(r.verdict);
  }
  verdict.detail = compare::terminal_summary(r);
  cases.push_back(verdict);
  for (const std::string& req : r.missing_required)
    cases.push_back({cls, "require:" + req, "error", "required tensor missing from a dump: " + req, ""});
  for (const auto& t : r.tensors) {
    Case c{cls + (t.layer >= 0 ? ".layers." + std::to_string(t.layer) : ".model"), t.name, "", "", ""};
    if (t.verdict == Verdict::fail) {
      c.kind = "failure";
      c.message = t.reason.empty() ? "outside its tolerance" : t.reason;
      c.detail = tensor_detail(t);
    } else if (t.verdict == Verdict::skipped) {
      c.kind = "skipped";
      c.message = t.reason;
    } else if (t.verdict == Verdict::incomplete) {
      c.kind = "error";
      c.message = t.reason;
    }
    cases.push_back(c);
  }
  for (const auto& [name, why] : r.skipped) cases.push_back({cls + ".skipped", "skip:" + name, "skipped", why, ""});

  int failures = 0, errors = 0, skipped = 0;
  for (const Case& c : cases) {
    failures += c.kind == "failure";
    errors += c.kind == "error";
    skipped += c.kind == "skipped";
  }
  std::ostringstream x;
  const std::string counts = " tests=\"" + std::to_string(cases.size()) + "\" failures=\"" + std::to_string(failures) +
                             "\" errors=\"" + std::to_string(errors) + "\" skipped=\"" + std::to_string(skipped) +
                             "\" time=\"" + num(r.seconds) + "\"";
  x << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  x << "<testsuites name=\"hyoracle check\"" << counts << ">\n";
  x << "  <testsuite name=\"" << xml_escape(cls) << "\"" << counts << ">\n";
  // Which hyoracle judged it, as every dump manifest and JSON report records.
  x << "    <properties><property name=\"hyoracle_version\" value=\"" << xml_escape(kHyoracleVersion)
    << "\"/></properties>\n";
  for (const Case& c : cases) {
    x << "    <testcase classname=\"" << xml_escape(c.classname) << "\" name=\"" << xml_escape(c.name) << "\"";
    if (c.kind.empty()) {
      x << "/>\n";
      continue;
    }
    x << ">\n      <" << c.kind << " message=\"" << xml_escape(c.message) << "\"";
    if (c.kind == "failure") x << " type=\"tolerance\"";
    if (c.detail.empty()) x << "/>\n";
    else x << ">" << xml_escape(c.detail) << "</" << c.kind << ">\n";
    x << "    </testcase>\n";
  }
  x << "  </testsuite>\n</testsuites>\n";
  return x.str();
}

}  // namespace hyoracle::fixture
