// hyoracle fixture: not implemented yet.
#include "commands.h"
#include "error.h"

namespace hyoracle::cli {
void register_fixture(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("fixture", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&status] { status = 2; fail("hyoracle fixture is not implemented yet"); });
}
}  // namespace hyoracle::cli
