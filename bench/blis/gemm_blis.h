/* gemm_blis.h — row-major fp32 GEMM through BLIS's typed API (bli_sgemm_ex), for
 * bench/gemm_rates.c only (the library does not link BLIS). BLIS's blis.h declares its own
 * cblas.h symbols, so only gemm_blis.c includes it. */
#ifndef MPT_GEMM_BLIS_H
#define MPT_GEMM_BLIS_H

#include <stddef.h>

/* Row-major C(M,N) = alpha op(A) op(B) + beta C, ta/tb 'N' or 'T', on `threads` BLIS threads
 * (its OpenMP build; 1 when called inside an OpenMP region, 0 = omp_get_max_threads()).
 * Any thread may call; no state is kept between calls. */
void mpt_blis_sgemm(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
                    int threads);

/* BLIS's run-time chosen sub-configuration ("zen3", "haswell", ...), for logs and benches. */
const char *mpt_blis_arch(void);

#endif
