// fixture_junit.h: a compare Report as JUnit XML, the report format CI systems read
// (GitHub Actions test reporters, GitLab `artifacts:reports:junit`, Jenkins).
//
//   <testsuites name="hyoracle check" tests failures errors skipped time>
//     <testsuite name="hyoracle.check.<suite>" ...>
//       <testcase classname="hyoracle.check.<suite>" name="verdict">        overall verdict
//       <testcase classname="...layers.L" name="layers.L.attn.out">          one per compared tensor
//       <testcase name="require:^logits$"><error .../>                      a required tensor missing
//       <testcase name="skip:NAME"><skipped message="why"/>                 a tensor compare skipped
// A failing tensor carries <failure message="reason" type="tolerance"> with its rule and numbers;
// an unreadable input makes "verdict" an <error>.
#pragma once
#include <string>

#include "compare/compare.h"

namespace hyoracle::fixture {

std::string junit_xml(const compare::Report& r, const std::string& suite);

// XML text/attribute escaping of & < > " ' and of control bytes (dropped; XML 1.0 forbids them).
std::string xml_escape(const std::string& s);

}  // namespace hyoracle::fixture
