// commands.h: every `hyoracle` subcommand registers itself on the CLI11 app here. A command's
// callback stores its exit status (0 pass, 1 fail, 2 bad or incomplete input) in `status`.
#pragma once
#include <CLI/CLI.hpp>

namespace hyoracle::cli {
void register_run(CLI::App& app, int& status);
void register_extra_commands(CLI::App& app, int& status);  // compare, fixture, check, layer, ...
}  // namespace hyoracle::cli
