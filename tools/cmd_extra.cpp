// Registration of the subcommands beyond `run`. Each lives in its own cmd_<name>.cpp.
#include "tools/commands.h"

namespace hyoracle::cli {
void register_compare(CLI::App& app, int& status);
void register_fixture(CLI::App& app, int& status);
void register_check(CLI::App& app, int& status);
void register_layer(CLI::App& app, int& status);
void register_dataflow(CLI::App& app, int& status);

void register_extra_commands(CLI::App& app, int& status) {
  register_compare(app, status);
  register_fixture(app, status);
  register_check(app, status);
  register_layer(app, status);
  register_dataflow(app, status);
}
}  // namespace hyoracle::cli
