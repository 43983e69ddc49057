// mma.cuh: thin device wrappers over the sm_80+ warp-level PTX the tensor-core kernels use:
// mma.sync m16n8k16 (16-bit operands, fp32 accumulators), ldmatrix, cp.async, and packing two
// floats into a 16-bit pair. Plain sm_90 PTX (no wgmma / sm_90a).
//
// Fragment layout of mma.m16n8k16 (lane = 4·gid + tig, gid = lane / 4, tig = lane % 4):
//   A 16×16 (row-major): a0 = A[gid][2tig..+1], a1 = A[gid+8][2tig..+1], a2 = A[gid][2tig+8..+9],
//                        a3 = A[gid+8][2tig+8..+9]
//   B 16×8  (k × n):     b0 = B[2tig..+1][gid],  b1 = B[2tig+8..+9][gid]
//   C 16×8  (fp32):      c0, c1 = C[gid][2tig..+1],  c2, c3 = C[gid+8][2tig..+1]
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace hyoracle::cuda::mma {

// C += A·B, A 16×16 and B 16×8 of T (bf16 or fp16), C fp32.
template <class T>
__device__ inline void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded to T (nearest even), lo in the low half: the operand word of an mma.
template <class T>
__device__ inline uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

__device__ inline uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Four 8×8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i; r[i] receives
// element [lane/4][2·(lane%4)..+1] of matrix i (of its transpose with .trans).
__device__ inline void ldmatrix_x4(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ inline void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16-byte global -> shared copy; bytes = 0 writes 16 zero bytes and reads nothing.
__device__ inline void cp_async16(uint32_t dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

}  // namespace hyoracle::cuda::mma
