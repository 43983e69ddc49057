// hyoracle layer: not implemented yet.
#include "commands.h"
#include "error.h"

namespace hyoracle::cli {
void register_layer(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("layer", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&status] { status = 2; fail("hyoracle layer is not implemented yet"); });
}
}  // namespace hyoracle::cli
