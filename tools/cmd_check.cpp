// hyoracle check: not implemented yet.
#include "commands.h"
#include "error.h"

namespace hyoracle::cli {
void register_check(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("check", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&status] { status = 2; fail("hyoracle check is not implemented yet"); });
}
}  // namespace hyoracle::cli
