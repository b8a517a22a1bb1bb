/* kernels_gemm.c — where the fp32 GEMMs of kernels.h run: the back-end switch (oneDNN or
 * OpenBLAS), the per-shape routing of small A^T B products to OpenBLAS, the opt-in split
 * threading and the bf16 path (core/kernels_internal.h declares the helpers). */
#include "core/kernels.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include "core/gemm_bf16.h"
#include "core/kernels_internal.h"

static mpt_gemm_backend gemm_backend_ = MPT_GEMM_ONEDNN;
static mpt_gemm_threading gemm_threading_ = MPT_GEMM_TEAM;
static int backward_pair_ = 0;

void mpt_kernels_set_gemm(mpt_gemm_backend b) { gemm_backend_ = b; }
mpt_gemm_backend mpt_kernels_gemm(void) { return gemm_backend_; }
void mpt_kernels_set_gemm_threading(mpt_gemm_threading t) { gemm_threading_ = t; }
mpt_gemm_threading mpt_kernels_gemm_threading(void) { return gemm_threading_; }
void mpt_kernels_set_backward_pair(int on) { backward_pair_ = on != 0; }
int mpt_kernels_backward_pair(void) { return backward_pair_; }

/* Row-major C(M,N) = alpha op(A) op(B) + beta C, ta/tb 'N' or 'T'. Called from one thread, or
 * from inside our own OpenMP loop (attention), where both libraries run single-threaded. */
void mpt_sgemm_(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                   size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (K == 0) { /* C = beta C, done here: dnnl_sgemm leaves C untouched when K is 0 (a tp
                   * rank whose vocabulary slice is all padding), and beta = 0 must give 0 */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    if (gemm_backend_ == MPT_GEMM_ONEDNN) {
        dnnl_sgemm(ta, tb, (dnnl_dim_t)M, (dnnl_dim_t)N, (dnnl_dim_t)K, alpha, A, (dnnl_dim_t)lda,
                   B, (dnnl_dim_t)ldb, beta, C, (dnnl_dim_t)ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta == 'T' ? CblasTrans : CblasNoTrans,
                tb == 'T' ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

/* sgemm_ for the fp32 GEMMs of the linear layers and the head: single-threaded A^T B products
 * with a small output on OpenBLAS when oneDNN is the back end (core/kernels_internal.h) */
void mpt_sgemm_fp32_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                        const float *A, size_t lda, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc) {
    if (gemm_backend_ == MPT_GEMM_ONEDNN && K > 0 && mpt_gemm_tn_blas_(ta, tb, M, N) &&
        (omp_in_parallel() || omp_get_max_threads() == 1)) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)N, (int)K, alpha, A,
                    (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
    mpt_sgemm_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* MPT_GEMM_SPLIT (kernels.h): C's larger dimension cut into one block per thread (rows in
 * multiples of 8, columns in multiples of 16 floats, so no two threads share a cache line of
 * C), each block one single-threaded sgemm_ over the whole K. Every element is thus summed
 * by one thread's kernel in its own order, and no barrier runs inside the GEMM.
 * gemm_block_ runs thread id's block of nth (called inside a parallel region) and returns its
 * rows [*r0, *r1) and columns [*c0, *c1) of C (an empty range when it has none). */
void mpt_gemm_block_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                        const float *A, size_t lda, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc, size_t id, size_t nth, size_t *r0, size_t *r1,
                        size_t *c0, size_t *c1) {
    int by_rows = M >= N;
    size_t unit = by_rows ? 8 : 16, len = by_rows ? M : N, units = (len + unit - 1) / unit;
    size_t i0 = units * id / nth * unit, i1 = units * (id + 1) / nth * unit;
    if (i1 > len) i1 = len;
    if (i0 > i1) i0 = i1;
    *r0 = by_rows ? i0 : 0, *r1 = by_rows ? i1 : M;
    *c0 = by_rows ? 0 : i0, *c1 = by_rows ? N : i1;
    if (i1 == i0) return;
    if (by_rows)
        mpt_sgemm_fp32_(ta, tb, i1 - i0, N, K, alpha, ta == 'N' ? A + i0 * lda : A + i0, lda, B,
                    ldb, beta, C + i0 * ldc, ldc);
    else
        mpt_sgemm_fp32_(ta, tb, M, i1 - i0, K, alpha, A, lda, tb == 'N' ? B + i0 : B + i0 * ldb,
                    ldb, beta, C + i0, ldc);
}

/* Threads for a split GEMM of M x N x K: 0 when it runs as one call (team threading, bf16,
 * one thread, inside a parallel region already, or too small to be worth a region). */
int mpt_gemm_split_threads_(size_t M, size_t N, size_t K) {
    if (gemm_threading_ != MPT_GEMM_SPLIT || mpt_gemm_dtype() == MPT_BF16 || omp_in_parallel())
        return 0;
    int nth = omp_get_max_threads();
    if (nth < 2 || (double)M * (double)N * (double)K < MPT_GEMM_SPLIT_MIN_ * nth) return 0;
    return nth;
}

/* The GEMMs of the linear layers and the head: fp32, or bf16 operands with fp32 accumulation
 * when mpt_gemm_set_dtype(MPT_BF16) (core/gemm_bf16.h). Attention stays fp32. */
void mpt_gemm_(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                  size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (mpt_gemm_dtype() == MPT_BF16) {
        mpt_gemm_bf16(mpt_sgemm_, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int nth = mpt_gemm_split_threads_(M, N, K);
    if (!nth) {
        mpt_sgemm_fp32_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        size_t r0, r1, c0, c1;
        mpt_gemm_block_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                    (size_t)omp_thread_id_(), (size_t)omp_threads_(), &r0, &r1, &c0, &c1);
    }
}
