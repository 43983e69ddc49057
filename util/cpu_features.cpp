#include "util/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace hyoracle {

bool use_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();  // may run before the CPU data is set up (static initialisers)
    const char* off = std::getenv("HYORACLE_NO_SIMD");
    return __builtin_cpu_supports("avx2") && !(off && *off && std::strcmp(off, "0") != 0);
  }();
  return yes;
}

}  // namespace hyoracle
