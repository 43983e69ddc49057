// Used when hyoracle is built without CUDA: `hyoracle run --device cuda` says so and exits 2.
#include "util/error.h"
#include "tools/run_options.h"

namespace hyoracle::cli {
int run_on_cuda(const RunOptions&) { fail("--device cuda: this hyoracle was built without CUDA (nvcc not found)"); }
}  // namespace hyoracle::cli
