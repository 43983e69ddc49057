// hyoracle compare: not implemented yet.
#include "commands.h"
#include "error.h"

namespace hyoracle::cli {
void register_compare(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("compare", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&status] { status = 2; fail("hyoracle compare is not implemented yet"); });
}
}  // namespace hyoracle::cli
