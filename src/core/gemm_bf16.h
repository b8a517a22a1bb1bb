/* gemm_bf16.h — bf16 numbers and the GEMMs of bf16 mixed precision.
 *
 * bf16 is the top half of an fp32 (8 exponent bits, 7 stored mantissa bits). Conversions round
 * to nearest, ties to even (a NaN stays a quiet NaN; values past the largest bf16 become inf).
 *
 * A bf16 GEMM here means: both operands rounded to bf16, products and sums in fp32. A product of
 * two bf16 values is exact in fp32, so on a CPU without bf16 instructions the same numbers come
 * from the "measured fallback": each K-tile of the operands is rounded to bf16 values held in
 * fp32 (a scratch buffer, mpt_gemm_bf16_set_workspace) and multiplied by the fp32 GEMM. oneDNN
 * 2.6's bf16 matmul needs avx512_bf16 / amx_bf16; on AVX2 its primitive is unimplemented (not a
 * slow path). Today every CPU takes the fallback; a CPU with bf16 instructions is detected and
 * said so (mpt_gemm_bf16_describe), the oneDNN path for it is the next step.
 *
 *   mpt_gemm_set_dtype(MPT_BF16);             // process-wide, before training
 *   mpt_gemm_bf16_set_workspace(ws, n);       // from the arena, n >= mpt_gemm_bf16_workspace(...)
 *   mpt_matmul_forward(...)                   // core/kernels.h: now a bf16 GEMM
 * Threading: call from one thread (the conversions and GEMMs parallelise internally), or from
 * the threads of a parallel region at once (each runs its GEMM on one thread). */
#ifndef MPT_GEMM_BF16_H
#define MPT_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

typedef uint16_t mpt_bf16;

/* dst(n) = src rounded to bf16 (rne). */
void mpt_bf16_encode(mpt_bf16 *dst, const float *src, size_t n);
/* dst(n) = src widened to fp32 (exact). */
void mpt_bf16_decode(float *dst, const mpt_bf16 *src, size_t n);
/* dst(n) = src rounded to bf16 and kept as fp32 (dst may equal src). */
void mpt_bf16_round(float *dst, const float *src, size_t n);
/* One value, the same rounding (for tests and scalar code). */
float mpt_bf16_round1(float x);

/* The element type of the GEMMs of mpt_matmul_* and mpt_lmhead_* (core/kernels.h): MPT_F32
 * (default) or MPT_BF16. Process-wide; set before training. */
void mpt_gemm_set_dtype(mpt_dtype t);
mpt_dtype mpt_gemm_dtype(void);

/* Where bf16 GEMMs run on this CPU. */
typedef enum mpt_bf16_path {
    MPT_BF16_FALLBACK, /* rounded operands through the fp32 GEMM (every CPU today) */
    MPT_BF16_ONEDNN    /* oneDNN's bf16 matmul on avx512_bf16 / amx_bf16: not built yet */
} mpt_bf16_path;
mpt_bf16_path mpt_gemm_bf16_path(void);
/* 1 when CPUID reports avx512_bf16 or amx_bf16. */
int mpt_cpu_has_bf16(void);
/* One line for logs and stdout: "fp32 fallback, this CPU has no bf16 instructions", or on a
 * CPU with them "fp32 fallback; this CPU has avx512_bf16 (amx_bf16), not used yet". Static. */
const char *mpt_gemm_bf16_describe(void);

/* The fallback's fixed shapes: K in tiles of KTILE (the last one shorter), op(A)'s rows in
 * blocks of MBLK (the last one padded). Every fp32 GEMM it calls is (MBLK, N, kt), single
 * threaded, so with oneDNN's sgemm a row of C is bit-identical whatever M, the thread count and
 * the rows around it ("batch-invariant": the same row gives the same bits alone, in a MoE
 * expert's micro-batch or in both replicas' rows under ep). OpenBLAS's rows are not (its kernel
 * rounds by a row's position in its tile; tests/test_bf16.c measures both). */
#define MPT_BF16_KTILE 256
#define MPT_BF16_MBLK 48
/* Scratch floats that let every GEMM with M + N <= max_rows + max_cols run in the scratch: the
 * B tile (KTILE x N), op(A)'s tile in whole blocks (at most; it takes one block per thread
 * that runs blocks), one block of staged C rows (MBLK x N).
 * For a model: max_rows = max(tokens N, D) (every weight has D, or its tp share, on one side,
 * so a weight gradient's M + N is at most D + its other side) and max_cols = the widest
 * weight side (3D/tp, F/tp, vocabulary rows). */
size_t mpt_gemm_bf16_workspace(size_t max_rows, size_t max_cols);
/* Scratch floats that let every GEMM of at most max_cols columns (N), whatever M and K, run in
 * the scratch when `threads` callers run one each at once inside a parallel region (each in its
 * 1/threads slice: MoE experts' tasks), or when one caller runs its row blocks on `threads`
 * threads. SIZE_MAX on overflow. */
size_t mpt_gemm_bf16_workspace_threads(size_t max_cols, int threads);
/* The fallback's scratch (not owned; the caller keeps it alive while GEMMs run). A GEMM that
 * does not fit (or none set: unit tests, inference) mallocs a temporary of its own size; the
 * K-tiles and row blocks stay the same, so the results do not depend on the scratch. Called
 * from inside a parallel region (MoE experts' tasks), each thread uses its 1/threads slice. */
void mpt_gemm_bf16_set_workspace(float *ws, size_t n);
/* How many temporaries the fallback has allocated in this process (GEMMs whose scratch, or
 * their thread's slice of it, was too small or not set); a training run sizes its scratch so
 * that it allocates none (model/gpt.c; t_bf16 checks it). */
size_t mpt_gemm_bf16_scratch_allocs(void);

/* The fp32 GEMM the fallback calls: row-major C(M,N) = alpha op(A) op(B) + beta C. */
typedef void (*mpt_sgemm_fn)(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                             const float *A, size_t lda, const float *B, size_t ldb, float beta,
                             float *C, size_t ldc);
/* C(M,N) = alpha bf16(op(A)) bf16(op(B)) + beta C with fp32 accumulation; A, B fp32 (their
 * values are rounded, not changed). ta/tb 'N' or 'T' as in BLAS, row-major. */
void mpt_gemm_bf16(mpt_sgemm_fn sgemm, char ta, char tb, size_t M, size_t N, size_t K,
                   float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                   float beta, float *C, size_t ldc);

#endif
