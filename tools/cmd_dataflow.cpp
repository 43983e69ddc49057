// `hyoracle dataflow`: prints the layer's dataflow table (reference/dataflow.h) as JSON: every
// step's canonical name, operation class, inputs, which layers it applies to, its role and
// shape. The Python tools read the committed copy, tools/dataflow.json, so that names and
// execution order have one source; a test keeps that copy equal to this output.
#include <iostream>

#include "tools/commands.h"
#include "reference/dataflow.h"
#include "io/output.h"

namespace hyoracle::cli {

void register_dataflow(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("dataflow", "Print the layer's dataflow table (steps, inputs, op classes) as JSON");
  static std::string out;
  cmd->add_option("--out", out, "write to this file instead of stdout");
  cmd->callback([&status] {
    const std::string j = dataflow::to_json();
    if (out.empty()) {
      std::cout << j;
      status = std::cout ? 0 : 2;
      return;
    }
    try {
      write_output_file(out, j);  // atomic, never through a link (output.h)
      status = 0;
    } catch (const std::exception& e) {
      std::cerr << "hyoracle: error: " << e.what() << "\n";
      status = 2;
    }
  });
}

}  // namespace hyoracle::cli
