// cpu_features.h: whether the vectorised (AVX2) paths of the dump decoder and compare's sums run.
// They give the same bits as the scalar code (tests compare both reports); HYORACLE_NO_SIMD set to
// anything but "" or "0" forces the scalar code.
#pragma once

namespace hyoracle {
bool use_avx2();
}  // namespace hyoracle
