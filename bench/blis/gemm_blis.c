/* gemm_blis.c — mpt_blis_sgemm (see gemm_blis.h): row-major GEMM on BLIS's typed API.
 *
 * BLIS takes a row and a column stride per operand, so every layout is described directly:
 * op(A) of 'N' is (rs lda, cs 1), of 'T' (rs 1, cs lda); no transpose flag, no copy. The thread
 * count goes in a per-call rntm_t, not BLIS's global state (BLIS_NUM_THREADS, read once), so
 * the run's --threads holds and a call inside our own OpenMP region (attention tiles, split
 * GEMM blocks) runs on its calling thread alone instead of forking a nested team. */
#include "blis/gemm_blis.h"

#include <blis.h>
#include <omp.h>

void mpt_blis_sgemm(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
                    int threads) {
    if (threads <= 0) threads = omp_get_max_threads();
    if (omp_in_parallel()) threads = 1;
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads((dim_t)threads, &rntm);
    inc_t rsa = ta == 'N' ? (inc_t)lda : 1, csa = ta == 'N' ? 1 : (inc_t)lda;
    inc_t rsb = tb == 'N' ? (inc_t)ldb : 1, csb = tb == 'N' ? 1 : (inc_t)ldb;
    /* BLIS's interface is not const-correct: A and B are only read */
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)M, (dim_t)N, (dim_t)K, &alpha,
                 (float *)A, rsa, csa, (float *)B, rsb, csb, &beta, C, (inc_t)ldc, 1, NULL,
                 &rntm);
}

const char *mpt_blis_arch(void) { return bli_arch_string(bli_arch_query_id()); }
