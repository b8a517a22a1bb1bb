/* kernels_internal.h — helpers shared by the kernels_*.c files (not public). */
#ifndef MPT_KERNELS_INTERNAL_H
#define MPT_KERNELS_INTERNAL_H

#include <math.h>
#include <omp.h>
#include <stddef.h>

static inline int omp_threads_(void) { return omp_get_num_threads(); }
static inline int omp_thread_id_(void) { return omp_get_thread_num(); }

#define GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

/* gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = GELU_S (x + GELU_C x^3), written with the identity
 * 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)): one vector expf and one division
 * instead of tanhf (cheaper with libmvec; bench/profile shows the GELU share). -2u is clamped to +-80 so that exp stays
 * finite (fast-math: no infinities); beyond that sigmoid is 0 or 1 to fp32 precision anyway. */
static inline float mpt_gelu_exp_m2u_(float x) {
    float z = -2.0f * GELU_S * (x + GELU_C * x * x * x);
    return expf(z > 80.0f ? 80.0f : (z < -80.0f ? -80.0f : z));
}

/* With oneDNN as the back end, single-threaded fp32 GEMMs C(M,N) = A^T B (ta 'T', tb 'N': the
 * weight gradients X^T dY, the attention's dV and dK tile products) whose output has at most
 * this many elements run on OpenBLAS instead: oneDNN's sgemm reaches 67-81% of its large-GEMM
 * rate on them (attn.c_proj's 384 x 384 x 2048 and the byte head's 256 x 384 x 2048 weight
 * gradients, attention's 256 x 64 x 64 tiles), OpenBLAS 77-94% (bench/gemm_rates.c: one
 * thread, CPU time, 9 rounds). Larger outputs (qkv, c_fc, c_proj at D 384) are as fast or
 * faster on oneDNN, and so are all other layouts. Library-threaded calls keep oneDNN: OpenBLAS
 * threads these small shapes worse. Fixed by shape, so results are reproducible run to run.
 * BLIS 0.9.0 (zen3 sub-configuration, bench/blis/gemm_blis.h, measured by bench_gemm_rates only) routes no shape: on one thread, CPU
 * time, it was never clearly above oneDNN on a shape of the bench model's or GPT-2 124M's step
 * (Aᵀ·B weight gradients 51-54% of the FMA peak against oneDNN's 62-76%, attention's Q Kᵀ
 * tiles 30-33% against 58-61%; bench/results/gemm_rates_*.txt, 2026-11-30 under load).
 * Re-read 2026-12-01 (one thread, CPU time, oneDNN and OpenBLAS alternating per round, three runs
 * of 15, 41 and 41 rounds, load 5-8; bench/results/gemm_route_tn_eighth.txt): attn.proj's
 * 384 x 384 x 2048 dW OpenBLAS 59.4-63.3 GFLOP/s against oneDNN 56.6-57.7 (medians), the
 * attention's 256 x 64 x 64 dV/dK tiles a tie (58.6-66.2 against 58.7-66.4), the byte head's dW
 * mixed; bench_gemm_rates' 9 rounds read oneDNN 3-10% ahead on all three. No shape clearly
 * better on oneDNN, so the routing stays.
 * Raised to 768 x 384 outputs 2026-12-01 (tenth session, tp): the tp 2 shards' weight gradients
 * at D 384 (c_fc's 384 x 768 in 4 row chunks of K 512, c_attn's 384 x 576 likewise, the
 * row-parallel mlp.c_proj's 768 x 384 x 2048) read OpenBLAS 84-87 GFLOP/s against oneDNN's
 * 75-78 (one thread, CPU time, alternating per round, 7-9 rounds, load ~4); the one-rank
 * shapes of the bench model (384 x 1152 and up) stay on oneDNN (a tie there). */
#define MPT_GEMM_TN_BLAS_MAX_ ((size_t)768 * 384)
static inline int mpt_gemm_tn_blas_(char ta, char tb, size_t M, size_t N) {
    return ta == 'T' && tb == 'N' && M * N <= MPT_GEMM_TN_BLAS_MAX_;
}

/* ---- GEMM routing (kernels_gemm.c) ---- */
/* GEMMs of fewer multiply-adds per thread than this (~40 us of one core) run as one call: a
 * region is not worth it, and oneDNN's kernels for tiny blocks round differently (a 64-row
 * block of test_kernels' 128 x 256 x 64 GEMM ended 1.06e-5 from the double reference, outside
 * its 1e-5, against < 1e-5 unsplit). The model's GEMMs are 30M multiply-adds and more. */
#define MPT_GEMM_SPLIT_MIN_ 4194304.0
/* Row-major C(M,N) = alpha op(A) op(B) + beta C, ta/tb 'N' or 'T', on the back end of
 * mpt_kernels_set_gemm. Called from one thread, or from inside our own OpenMP loop (attention),
 * where both libraries run single-threaded. */
void mpt_sgemm_(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* mpt_sgemm_ for the fp32 GEMMs of the linear layers and the head: single-threaded A^T B
 * products with a small output on OpenBLAS when oneDNN is the back end (mpt_gemm_tn_blas_). */
void mpt_sgemm_fp32_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                     const float *A, size_t lda, const float *B, size_t ldb, float beta,
                     float *C, size_t ldc);
/* MPT_GEMM_SPLIT: thread id's block of nth (called inside a parallel region); returns its rows
 * [*r0, *r1) and columns [*c0, *c1) of C (an empty range when it has none). */
void mpt_gemm_block_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                     const float *A, size_t lda, const float *B, size_t ldb, float beta,
                     float *C, size_t ldc, size_t id, size_t nth, size_t *r0, size_t *r1,
                     size_t *c0, size_t *c1);
/* Threads for a split GEMM of M x N x K: 0 when it runs as one call. Call from one thread. */
int mpt_gemm_split_threads_(size_t M, size_t N, size_t K);
/* The GEMMs of the linear layers and the head: fp32 (split or team threading), or bf16
 * operands with fp32 accumulation (core/gemm_bf16.h). Call from one thread. */
void mpt_gemm_(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
               size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* row[0..n) = softmax(row[0..n)) in place; the scale is already applied. Single-threaded. */
void mpt_softmax_inplace_(float *row, int n);

#endif
