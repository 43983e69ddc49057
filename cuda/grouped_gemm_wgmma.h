// grouped_gemm_wgmma.h: the Hopper kernel behind grouped_gemm's bf16/fp16 tile path (wgmma, built
// for sm_90a in grouped_gemm_wgmma.cu). Internal to grouped_gemm.cu's dispatch; same contract as
// grouped_gemm (grouped_gemm.h), same epilogues and rounding points.
#pragma once
#include "cuda/grouped_gemm.h"

namespace hyoracle::cuda {

// True when this build holds the sm_90a kernel (HYORACLE_CUDA_ARCHITECTURES names 90) and the
// device is compute capability 9.0 (sm_90a code runs on that chip only).
bool grouped_wgmma_available();

// The kernel's two epilogues (grouped_gemm_wgmma.cu): through shared memory with 16-byte row
// stores, or 4-byte pairs straight from the accumulators. Same values.
enum class WgmmaStore { staged, direct };
// How the weight tiles arrive: by the bulk tensor copy engine (the default) or by cp.async.
enum class WgmmaForm { tma, cp_async };

// Requires K % 8 == 0 and 16-byte aligned a, w.w and w.extra (the copies are 16-byte cp.async).
template <class T>
void grouped_gemm_wgmma(const T* a, const int32_t* gather, const GroupWeights<T>& w, const GroupLayout& layout,
                        GroupEpilogue epilogue, WgmmaStore store, WgmmaForm form, T* y);

}  // namespace hyoracle::cuda
