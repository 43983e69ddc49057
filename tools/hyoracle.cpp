// hyoracle: the command line. Errors in input print one line "hyoracle: error: ..." and exit 2.
#include <iostream>

#include "tools/commands.h"
#include "io/dump.h"
#include "util/error.h"
#include "reference/matmul.h"

int main(int argc, char** argv) {
  hyoracle::init_blas_single_threaded();
  CLI::App app{"hyoracle: a reference-correctness oracle for Tencent Hy3 / Hy-MT2 (hy_v3)"};
  app.require_subcommand(1);
  // The same version string every dump manifest and report records (producer.version).
  app.set_version_flag("--version", std::string("hyoracle ") + hyoracle::kHyoracleVersion);
  int status = 0;
  hyoracle::cli::register_run(app, status);
  hyoracle::cli::register_extra_commands(app, status);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    // A bad option value is bad input like any other: one line naming the option, exit 2.
    std::string what = e.what();
    for (char& ch : what)
      if (ch == '\n' || ch == '\r') ch = ' ';
    std::cerr << "hyoracle: error: " << what << "\n";
    return 2;
  } catch (const hyoracle::Error& e) {
    std::cerr << "hyoracle: error: " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "hyoracle: error: out of memory\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "hyoracle: internal error (a bug; please report): " << e.what() << "\n";
    return 2;
  }
  return status;
}
